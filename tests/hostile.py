"""Hostile and odd files, built on the fly: what a passed-around demo link gets uploaded."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ENDPOINTS = ("index", "search", "classify", "chat")


@dataclass(frozen=True)
class Case:
    """One input file and what every entry point must make of it."""

    name: str
    path: Path
    good: bool  # a usable image: processed; otherwise a clear per-file message
    bomb: bool = False  # decompresses to far more than its size: memory must stay bounded
    zip: bool = False  # only the upload/index entry point takes archives
    vlm_ok: bool | None = None  # the chat model's own limits, where they differ from `good`

    @property
    def chat_ok(self) -> bool:
        """Whether the chat uses it (else it is skipped, with a warning, and the question answered)."""
        return self.good if self.vlm_ok is None else self.vlm_ok


def _jpeg(size: tuple[int, int], seed: int = 0, **save: object) -> bytes:
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).resize(size, Image.BILINEAR)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=80, **save)
    return out.getvalue()


def _png(image: Image.Image, **save: object) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", **save)
    return out.getvalue()


def build_cases(folder: Path, zip_limit_bytes: int) -> list[Case]:
    """Write every hostile/odd input into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(name: str, data: bytes, good: bool, **kw: bool | None) -> None:
        path = folder / name
        path.write_bytes(data)
        cases.append(Case(name, path, good, **kw))

    photo = _jpeg((640, 480), seed=1)
    add("truncated.jpg", photo[: len(photo) // 2], False)
    add("empty.jpg", b"", False)
    add("random-bytes.jpg", np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes(), False)
    add("page.jpg", b"<html><script>alert(document.cookie)</script></html>", False)
    add("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>', False)
    # 400 megapixels of one bit: ~50 KB on disk, 1.2 GB as RGB.
    bomb = Image.new("1", (20_000, 20_000))
    add("pixel-bomb.png", _png(bomb, optimize=True), False, bomb=True)
    add("photo-48mp.jpg", _jpeg((8000, 6000), seed=3), True)
    add("cmyk.jpg", _jpeg_mode("CMYK"), True)
    add("sixteen-bit.png", _png(Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16))), True)
    add("rgba.png", _png(Image.new("RGBA", (64, 48), (200, 10, 10, 128))), True)
    add("palette.png", _png(Image.new("RGB", (64, 48), (10, 200, 10)).convert("P")), True)
    frames = [Image.new("RGB", (64, 48), c) for c in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    add("animated.gif", out.getvalue(), True)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    add("exif-rotated.jpg", _jpeg((80, 40), seed=4, exif=exif.tobytes()), True)
    add("one-pixel.png", _png(Image.new("RGB", (1, 1), (1, 2, 3))), True)
    add("strip-8000x2.png", _png(Image.new("RGB", (8000, 2), (90, 90, 90))), True, vlm_ok=False)  # 4000:1
    add("ünïcødé name with spaces.jpg", _jpeg((120, 90), seed=5), True)

    def archive(name: str, members: dict[str, bytes], **kw: bool) -> None:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for member, data in members.items():
                z.writestr(member, data)
        add(name, out.getvalue(), True, zip=True, **kw)

    archive("nested.zip", {"trip/day1/a.jpg": _jpeg((64, 48), 6), "trip/day2/b.png": _png(Image.new("RGB", (9, 9))),
                           "trip/notes.txt": b"not an image", "__MACOSX/._a.jpg": b"junk"})  # fmt: skip
    archive("traversal.zip", {"../../escaped.jpg": _jpeg((64, 48), 7), "/abs/escaped2.jpg": _jpeg((64, 48), 8)})
    # A zip bomb: far more than the limit once unpacked, a few hundred KB on disk.
    archive("zip-bomb.zip", {"huge.jpg": b"\0" * (4 * zip_limit_bytes)}, bomb=True)
    archive("many-members.zip", {f"f{i}.jpg": b"x" for i in range(2000)}, bomb=True)
    return cases


def _jpeg_mode(mode: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 120, 200)).convert(mode).save(out, "JPEG")
    return out.getvalue()
