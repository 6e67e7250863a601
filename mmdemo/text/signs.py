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
MIN_SIDE = 640  # longest side of the photos signs are drawn onto
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
    if max(photo.size) < MIN_SIDE:  # small dataset photos: brought to a phone-photo-like size first
        scale = MIN_SIDE / max(photo.size)
        photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.BICUBIC)
    size = max(18, photo.width // max(6, len(phrase)))
    while True:  # the largest size whose sign fits in 85% of the photo's width
        font = ImageFont.truetype(str(font_path), size)
        left, top, right, bottom = font.getbbox(phrase)
        if right - left + size <= 0.85 * photo.width or size <= 12:
            break
        size = int(size * 0.9)
    pad = size // 3
    shade = int(255 * (1 - damage.contrast) * 0.6)
    plate = Image.new("RGB", (int(right - left) + 2 * pad, int(bottom - top) + 2 * pad), (255 - shade // 3,) * 3)
    ImageDraw.Draw(plate).text((pad - left, pad - top), phrase, font=font, fill=(shade,) * 3)
    plate = plate.convert("RGBA").rotate(damage.tilt, expand=True, resample=Image.Resampling.BICUBIC)
    x = rng.randint(0, max(0, photo.width - plate.width))
    y = rng.randint(photo.height // 4, max(photo.height // 4, photo.height - plate.height))
    photo.paste(plate, (x, y), plate)
    if damage.blur:
        photo = photo.filter(ImageFilter.GaussianBlur(damage.blur))
    buffer = BytesIO()
    photo.save(buffer, "JPEG", quality=damage.quality)
    return Image.open(BytesIO(buffer.getvalue()))


# (phrase drawn, query typed): each query finds its own sign only; words from shops, stations, receipts.
ENGLISH = (
    ("INVOICE 2041", "invoice"),
    ("GATE B22", "gate b22"),
    ("RE16 TGK", "RE16"),
    ("ROOM 101", "room 101"),
    ("EXIT ONLY", "exit only"),
    ("PLATFORM 9", "platform 9"),
    ("FRESH BAGELS", "bagels"),
    ("NO PARKING", "no parking"),
    ("OPEN 24 HOURS", "24 hours"),
    ("TOTAL 18.40", "total"),
    ("MAPLE STREET", "maple street"),
    ("COFFEE & TEA", "coffee"),
    ("SALE 50% OFF", "sale"),
    ("HOTEL SAVOY", "savoy"),
    ("BUS STOP 42", "bus stop"),
    ("WELCOME HOME", "welcome"),
    ("KEEP OUT", "keep out"),
    ("PHARMACY", "pharmacy"),
    ("LIBRARY", "library"),
    ("BAKERY", "bakery"),
    ("TICKETS", "tickets"),
    ("DANGER HIGH VOLTAGE", "high voltage"),
    ("CITY MUSEUM", "museum"),
    ("CAR WASH", "car wash"),
    ("BOOKSHOP", "bookshop"),
    ("ZONE 7", "zone 7"),
    ("FLIGHT BA117", "BA117"),
    ("ORDER #5821", "5821"),
    ("WIFI GUEST", "wifi"),
    ("MENU OF THE DAY", "menu"),
    ("POST OFFICE", "post office"),
    ("FIRE EXIT", "fire exit"),
    ("GARDEN CENTRE", "garden"),
    ("LOBBY", "lobby"),
    ("CHECK IN", "check in"),
    ("SUNSET BEACH", "sunset beach"),
    ("PIZZA NAPOLI", "pizza"),
    ("STATION ROAD", "station road"),
    ("LOST & FOUND", "lost found"),
    ("QUIET PLEASE", "quiet"),
)
CHINESE = (
    ("夕阳下的海滩出口", "海滩"),
    ("北京火车站", "火车站"),
    ("欢迎光临", "欢迎光临"),
    ("禁止吸烟", "禁止吸烟"),
    ("安全出口", "安全出口"),
    ("停车场入口", "停车场"),
    ("图书馆", "图书馆"),
    ("咖啡馆", "咖啡"),
    ("人民医院", "医院"),
    ("地铁二号线", "地铁"),
    ("营业时间", "营业时间"),
    ("小心地滑", "小心地滑"),
    ("洗手间", "洗手间"),
    ("售票处", "售票"),
    ("新年快乐", "新年快乐"),
    ("中国银行", "银行"),
    ("公共汽车站", "汽车站"),
    ("请勿触摸", "请勿触摸"),
    ("会议室", "会议室"),
    ("面包店", "面包"),
)


@dataclass(frozen=True)
class SetRow:
    """One query of a text-search set: what is typed, the file it must find, the text drawn, its language."""

    query: str
    file: str
    truth: str
    language: str


def make_text_set(photos: list[Path], out: Path, plain: int = 40, seed: int = 0) -> list[SetRow]:
    """Draw every phrase (ENGLISH, CHINESE) onto a photo of its own, damaged at random, into `out`, beside
    `plain` photos left as they are; write `out/queries.csv` (query, file, truth, language)."""
    import csv

    phrases = [(p, q, "en") for p, q in ENGLISH] + [(p, q, "zh") for p, q in CHINESE]
    if len(photos) < len(phrases) + plain:
        raise ValueError(f"{len(phrases) + plain} photos needed, {len(photos)} given")
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for number, ((phrase, query, language), photo) in enumerate(zip(phrases, photos, strict=False)):
        name = f"sign-{number:03d}.jpg"
        with Image.open(photo) as img:
            draw_sign(img, phrase, Damage.random(rng), seed=number).save(out / name)
        rows.append(SetRow(query, name, phrase, language))
    for number, photo in enumerate(photos[len(phrases) : len(phrases) + plain]):
        with Image.open(photo) as img:
            img.convert("RGB").save(out / f"photo-{number:03d}.jpg", quality=90)
    with open(out / "queries.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["query", "file", "truth", "language"])
        writer.writerows([[r.query, r.file, r.truth, r.language] for r in rows])
    return rows
