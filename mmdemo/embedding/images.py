"""Opening user images safely: one place for format quirks, size limits and error messages."""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from mmdemo.errors import UserFacingError
from mmdemo.i18n import DEFAULT, text

ORIENTATION = ExifTags.Base.Orientation

# What Pillow decodes that people keep photos in; matched case-insensitively.
IMAGE_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".jp2",
    ".ppm",
    ".pgm",
    ".pbm",
    ".pnm",
    ".heic",  # phones' photos (iPhones write HEIC by default): pillow-heif's opener, registered on first use
    ".heif",
    ".avif",  # Pillow's own AVIF plugin (Pillow >= 11.3)
}
HEIF_SUFFIXES = {".heic", ".heif"}
# Videos: the chat takes them, and the gallery indexes their moments (mmdemo.video.scenes); decoded by PyAV.
VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".avi", ".mkv", ".m4v"}
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES  # what a gallery indexes


def is_video_file(path: str | Path) -> bool:
    """True for the video containers mmdemo reads (by the name's suffix)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


class BadImageError(UserFacingError):
    """A file that cannot be used as an image; the message names the file and the reason, the reason
    given as a key of the app's words (skip.*) with its fields, so that a visitor reads it in their language."""

    def __init__(self, name: str, reason_key: str, **fields: object):
        self.name = name
        self.skipped = Skipped.keyed(name, reason_key, **fields)
        self.reason = self.skipped.reason
        super().__init__(key="skip.line", name=name, reason=self.reason)

    def translated(self, language: str) -> str:
        return text("skip.line", language, name=self.name, reason=self.skipped.said(language))


@dataclass(frozen=True)
class Skipped:
    """A file left out of a batch, and why (in English; `said(language)` in the visitor's language)."""

    name: str
    reason: str
    key: str = ""  # of the app's words (skip.*), when the reason was given as one
    fields: dict[str, object] = field(default_factory=dict)

    @classmethod
    def keyed(cls, name: str, key: str, **fields: object) -> Skipped:
        return cls(name, text(key, DEFAULT, **fields), key, fields)

    def said(self, language: str) -> str:
        """The reason in `language`."""
        return text(self.key, language, **self.fields) if self.key else self.reason


@dataclass(frozen=True)
class Decoded:
    """An image decoded for a model: its RGB pixels, and the file's own size before any reduction."""

    pixels: np.ndarray  # (H, W, 3) uint8
    source_size: tuple[int, int]  # (width, height)

    def image(self) -> Image.Image:
        """The pixels as a Pillow image (to draw a thumbnail from, say)."""
        return Image.fromarray(self.pixels)


@functools.cache
def register_formats() -> bool:
    """Teach Pillow HEIC/HEIF (pillow-heif), once; False when the package does not import (then such files
    are skipped as not images, and the log says why)."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError as exc:
        logging.getLogger(__name__).warning("HEIC photos cannot be read: %s", exc)
        return False
    register_heif_opener()
    return True


def open_image(path: str | Path, max_pixels: int, name: str | None = None, min_side: int = 0) -> Image.Image:
    """Decode an image fully into RGB, honouring EXIF orientation, or raise BadImageError.

    The pixel limit is checked from the header before any pixel is decoded, so a decompression
    bomb costs nothing. Animated images give their first frame. With `min_side`, a JPEG is
    decoded at the smallest 1/2, 1/4 or 1/8 scale whose sides stay >= min_side (libjpeg's DCT
    scaling): a 12 MP phone photo wanted at 224 px decodes ~30x fewer pixels. Other formats
    are box-reduced by the largest whole factor that keeps their shorter side >= 2 * min_side
    (Pillow's thumbnail() does the same with reducing_gap=2), so a 50 MP PNG costs no more
    than a phone photo further down the line. The file's own size, before either, is kept in
    the result's `info["source_size"]`.
    """
    name = name or Path(path).name
    register_formats()
    with _reading(name), Image.open(path) as img:
        _check_pixels(img, max_pixels, name)
        return _load(img, min_side)


def decode_pixels(path: str | Path, max_pixels: int, name: str | None = None, min_side: int = 0) -> Decoded:
    """open_image's pixels as a uint8 array, which is what a model batch is built from.

    A plain JPEG with nothing to reduce or rotate (the usual gallery photo) goes straight from
    libjpeg-turbo into an array through torchvision: the same pixels as Pillow's, in two thirds of
    the time on 2 threads (no Pillow image to build and convert). Every other file, and a JPEG
    that libjpeg rejects, goes through open_image, whose errors name the file and the problem.
    """
    name = name or Path(path).name
    register_formats()
    with _reading(name), Image.open(path) as img:
        _check_pixels(img, max_pixels, name)
        pixels = _decode_plain_jpeg(img, min_side)
        if pixels is not None:
            return Decoded(pixels, img.size)
        image = _load(img, min_side)
        return Decoded(np.array(image), image.info["source_size"])


@contextlib.contextmanager
def _reading(name: str) -> Iterator[None]:
    """Turn what Pillow raises on a bad file into a BadImageError that names it."""
    try:
        yield
    except BadImageError:
        raise
    except FileNotFoundError:
        raise BadImageError(name, "skip.not_found") from None
    except UnidentifiedImageError:
        raise BadImageError(name, "skip.not_an_image") from None
    except Image.DecompressionBombError:
        raise BadImageError(name, "skip.bomb") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated/corrupt data
        raise BadImageError(name, "skip.corrupt", error=exc) from None


def _check_pixels(img: Image.Image, max_pixels: int, name: str) -> None:
    width, height = img.size
    if width * height > max_pixels:
        raise BadImageError(name, "skip.too_many_pixels", width=width, height=height, limit=f"{max_pixels / 1e6:.0f}")


def _load(img: Image.Image, min_side: int) -> Image.Image:
    width, height = img.size
    img.seek(0)
    jpeg = img.format == "JPEG"
    if min_side and jpeg:
        img.draft("RGB", (min_side, min_side))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. palette images with transparency
        img.load()
        # Both steps copy the image even when there is nothing to do: skip them then.
        if img.getexif().get(ORIENTATION, 1) != 1:
            img = ImageOps.exif_transpose(img)
        rgb = img if img.mode == "RGB" else img.convert("RGB")
    factor = min(rgb.size) // (2 * min_side) if min_side and not jpeg else 0
    rgb = rgb.reduce(factor) if factor >= 2 else rgb
    rgb.info["source_size"] = (width, height)
    return rgb


def _decode_plain_jpeg(img: Image.Image, min_side: int) -> np.ndarray | None:
    """A colour JPEG's pixels decoded by torchvision, or None where Pillow has to do it.

    That is: other formats and modes (CMYK, grey), EXIF rotations, JPEGs big enough for DCT
    scaling (Pillow's draft mode does that), and files libjpeg finds truncated or corrupt. The
    decoder runs on one thread (no OpenMP), so it is safe in helper threads (models/compute.py).
    """
    if img.format != "JPEG" or img.mode != "RGB" or (min_side and min(img.size) >= 2 * min_side):
        return None
    if img.getexif().get(ORIENTATION, 1) != 1:
        return None
    try:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:  # Pillow alone does it all, a little slower
        return None
    fp = img.fp  # type: ignore[attr-defined]  # an ImageFile's source file (Pillow types it on ImageFile only)
    fp.seek(0)
    data = bytearray(fp.read())  # writable: torch wraps it as it is
    try:
        chw = decode_jpeg(torch.frombuffer(data, dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError:
        return None
    return chw.permute(1, 2, 0).numpy()  # (H, W, 3): libjpeg's own layout, no copy


def set_pixel_limit(max_pixels: int) -> None:
    """Make Pillow's own decompression-bomb guard match our limit (it errors at twice this)."""
    Image.MAX_IMAGE_PIXELS = max_pixels
