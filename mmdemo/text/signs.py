"""Signs drawn onto photos: a test set for text search, made here (no download, no hand labelling).

Each sign is a phrase on a plate of its own colour, pasted onto a photo, then damaged the way real
photos of text are: tilted, blurred, low in contrast, JPEG-compressed. `python -m mmdemo eval
make-text-set` writes such a set; the tests draw single signs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

# Fonts looked for, in order (Debian's packages: fonts-dejavu-core, fonts-liberation, fonts-wqy-microhei
# or fonts-noto-cjk for Chinese).
LATIN_FONTS = ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf", "DejaVuSans.ttf")
CJK_FONTS = ("wqy-microhei.ttc", "wqy-zenhei.ttc", "NotoSansCJK-Regular.ttc", "NotoSansCJK-Bold.ttc")
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")


@lru_cache(maxsize=4)
def find_font(cjk: bool) -> Path | None:
    """A TrueType font that draws Latin (or, with `cjk`, Chinese) text, or None when none is installed."""
    for name in CJK_FONTS if cjk else LATIN_FONTS:
        for folder in FONT_DIRS:
            if folder.is_dir() and (found := next(folder.rglob(name), None)) is not None:
                return found
    return None


@dataclass(frozen=True)
class Damage:
    """How hard a sign is to read: tilt in degrees, blur radius, contrast 0..1 (1: black on white), JPEG quality."""

    tilt: float = 0.0
    blur: float = 0.0
    contrast: float = 1.0
    quality: int = 92

    @classmethod
    def random(cls, rng: random.Random) -> Damage:
        tilt, blur = rng.uniform(-12, 12), rng.choice([0, 0, 0.6, 1.0])
        return cls(tilt, blur, rng.choice([1.0, 0.8, 0.55]), rng.randint(35, 90))


def draw_sign(photo: Image.Image, phrase: str, damage: Damage = Damage(), seed: int = 0) -> Image.Image:
    """`photo` with `phrase` on a plate pasted onto it (somewhere in its middle), damaged."""
    rng = random.Random(seed)
    font_path = find_font(cjk=any(ord(ch) > 0x2E80 for ch in phrase))
    if font_path is None:
        raise RuntimeError("no font to draw this phrase with: install fonts-dejavu-core and fonts-wqy-microhei")
    photo = photo.convert("RGB")
    size = max(18, photo.width // max(8, len(phrase) + 2))
    font = ImageFont.truetype(str(font_path), size)
    left, top, right, bottom = font.getbbox(phrase)
    pad = size // 3
    shade = int(255 * (1 - damage.contrast) * 0.6)
    plate = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), (255 - shade // 3,) * 3)
    ImageDraw.Draw(plate).text((pad - left, pad - top), phrase, font=font, fill=(shade,) * 3)
    plate = plate.convert("RGBA").rotate(damage.tilt, expand=True, resample=Image.BICUBIC)
    x = rng.randint(0, max(0, photo.width - plate.width))
    y = rng.randint(photo.height // 4, max(photo.height // 4, photo.height - plate.height))
    photo.paste(plate, (x, y), plate)
    if damage.blur:
        photo = photo.filter(ImageFilter.GaussianBlur(damage.blur))
    buffer = BytesIO()
    photo.save(buffer, "JPEG", quality=damage.quality)
    return Image.open(BytesIO(buffer.getvalue()))
