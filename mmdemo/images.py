"""Opening user images safely: one place for format quirks, size limits and error messages."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from mmdemo.errors import UserFacingError

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
    scaling): a 12 MP phone photo wanted at 224 px decodes ~30x fewer pixels. Other formats
    are box-reduced by the largest whole factor that keeps their shorter side >= 2 * min_side
    (Pillow's thumbnail() does the same with reducing_gap=2), so a 50 MP PNG costs no more
    than a phone photo further down the line. The file's own size, before either, is kept in
    the result's `info["source_size"]`.
    """
    name = name or Path(path).name
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise BadImageError(name, f"{width}x{height} is over the {max_pixels / 1e6:.0f} MP limit")
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
