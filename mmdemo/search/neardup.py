"""Near-duplicates: a resized, re-encoded, lightly cropped or EXIF-rotated copy of an indexed image.

Identical bytes are caught by the content hash; copies that differ in bytes are caught here by two
perceptual hashes from ImageHash, a difference hash and a DCT hash (64 bits each, of the stored
thumbnail), that must both be close. Measured on ../shared/data/photos (20 photos) and copies of each
(50% resize, JPEG quality 50, 2.5% cropped off every side, rotation through the EXIF tag): a copy is
at most 14 (dhash) and 22 (phash) bits from its original (the worst: a cropped brick texture, whose
pattern shifts); within the limits below no two of the 20 different photos match, and among 320
photos (Flickr8k's added) 5 of 51,040 pairs of different photos do (near-identical scenes). So
"near-duplicate" is a report, and leaving them out is a setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

DHASH_MAX = 14  # bits of 64
PHASH_MAX = 26


def perceptual_hash(path: str | Path) -> str:
    """32 hex digits: the image's dhash then its phash (upright: the EXIF orientation applied)."""
    import imagehash
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image).convert("RGB")
    return f"{imagehash.dhash(upright)}{imagehash.phash(upright)}"


def _halves(hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    d = np.array([int(h[:16], 16) for h in hashes], dtype=np.uint64)
    p = np.array([int(h[16:], 16) for h in hashes], dtype=np.uint64)
    return d, p


class NearIndex:
    """Perceptual hashes of indexed images, for finding the closest one within both limits."""

    def __init__(self, hashes: Sequence[str] = (), names: Sequence[str] = ()):
        self.names = list(names)
        self._d: np.ndarray
        self._p: np.ndarray
        self._d, self._p = _halves(hashes) if hashes else (np.zeros(0, np.uint64), np.zeros(0, np.uint64))

    def match(self, phash: str) -> str | None:
        """The name of the closest indexed image this one is a near-duplicate of, or None."""
        if not phash or not len(self.names):
            return None
        d, p = _halves([phash])
        dd = np.bitwise_count(self._d ^ d[0])
        dp = np.bitwise_count(self._p ^ p[0])
        close = (dd <= DHASH_MAX) & (dp <= PHASH_MAX)
        if not close.any():
            return None
        score = np.where(close, dd.astype(int) + dp, 1 << 30)
        return self.names[int(score.argmin())]

    def add(self, phash: str, name: str) -> None:
        d, p = _halves([phash])
        self._d, self._p = np.concatenate([self._d, d]), np.concatenate([self._p, p])
        self.names.append(name)
