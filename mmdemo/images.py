"""Opening user images safely: one place for format quirks, size limits and error messages."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from mmdemo.errors import UserFacingError

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
}


class BadImageError(UserFacingError):
    """A file that cannot be used as an image; the message names the file and the reason."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason
        super().__init__(f"{name}: {reason}")


@dataclass(frozen=True)
class Skipped:
    """A file left out of a batch, and why."""

    name: str
    reason: str


def open_image(path: str | Path, max_pixels: int, name: str | None = None, min_side: int = 0) -> Image.Image:
    """Decode an image fully into RGB, honouring EXIF orientation, or raise BadImageError.

    The pixel limit is checked from the header before any pixel is decoded, so a decompression
    bomb costs nothing. Animated images give their first frame. With `min_side`, a JPEG is
    decoded at the smallest 1/2, 1/4 or 1/8 scale whose sides stay >= min_side (libjpeg's DCT
    scaling): a 12 MP phone photo wanted at 224 px decodes ~30x fewer pixels.
    """
    name = name or Path(path).name
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise BadImageError(name, f"{width}x{height} is over the {max_pixels / 1e6:.0f} MP limit")
            img.seek(0)
            if min_side and img.format == "JPEG":
                img.draft("RGB", (min_side, min_side))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. palette images with transparency
                rgb = ImageOps.exif_transpose(img).convert("RGB")
            rgb.load()
            return rgb
    except BadImageError:
        raise
    except FileNotFoundError:
        raise BadImageError(name, "file not found") from None
    except UnidentifiedImageError:
        raise BadImageError(name, "not an image Pillow can read") from None
    except Image.DecompressionBombError:
        raise BadImageError(name, "too many pixels (decompression bomb guard)") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated/corrupt data
        raise BadImageError(name, f"corrupt or truncated image ({exc})") from None


def set_pixel_limit(max_pixels: int) -> None:
    """Make Pillow's own decompression-bomb guard match our limit (it errors at twice this)."""
    Image.MAX_IMAGE_PIXELS = max_pixels
