"""A set of real photos with known dates, cameras and places, to measure the filters on.

`python -m mmdemo eval make-photo-set --photos ../shared/data/flickr8k_1k/images --out DIR` copies
photos into folders as a phone and cameras would have left them: EXIF dates with their UTC offset,
makes and models, GPS points in the districts of several cities (where the nearest named place is
not the city: Hongkou in Shanghai, Kopavogur by Reykjavik, Balmain in Sydney), in Paris, Texas as
well as Paris, France; some saved as HEIC or AVIF, some with no EXIF at all (dated by the file's
time only), a few with a sign drawn on them (text to read). `truth.csv` says what each one is.
"""

from __future__ import annotations

import csv
import os
import random
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path

from PIL import ExifTags, Image

from mmdemo.embedding.images import register_formats

# (city, country, UTC offset, points: real coordinates in the city's districts and suburbs)
CITIES = (
    ("paris", "FR", "+02:00", ((48.8867, 2.3431), (48.8397, 2.2399), (48.8530, 2.3499))),
    ("shanghai", "CN", "+08:00", ((31.2646, 121.5051), (31.2215, 121.5447), (31.2100, 121.4700))),
    ("reykjavik", "IS", "+00:00", ((64.1122, -21.9129), (64.1533, -21.9956), (64.1466, -21.9426))),
    ("sydney", "AU", "+10:00", ((-33.8580, 151.1800), (-33.8915, 151.2767), (-33.8688, 151.2093))),
    ("cape town", "ZA", "+02:00", ((-33.9170, 18.3860), (-33.9375, 18.4706), (-33.9249, 18.4241))),
    ("tokyo", "JP", "+09:00", ((35.6618, 139.7041), (35.7148, 139.7967), (35.6812, 139.7671))),
    ("kyoto", "JP", "+09:00", ((35.0116, 135.7681), (34.9671, 135.7727))),
    ("paris texas", "US", "-05:00", ((33.6609, -95.5555), (33.6700, -95.5400))),
)
CAMERAS = (("FUJIFILM", "X-T30"), ("Apple", "iPhone 13 Pro"), ("Canon", "Canon EOS R5"), ("SONY", "ILCE-7M3"))
SIGN_WORDS = ("BOULANGERIE", "PHARMACIE", "METRO")


@dataclass(frozen=True)
class Truth:
    """What one generated photo is (the columns of truth.csv)."""

    file: str
    taken: str = ""  # "YYYY-MM-DD HH:MM:SS", '' when none
    taken_from: str = ""  # exif or file
    camera: str = ""  # "make model"
    city: str = ""  # a key of CITIES
    country: str = ""
    lat: str = ""
    lon: str = ""
    sign: str = ""  # the word drawn on it


def make_photo_set(photos: list[Path], out: Path, per_city: int = 5, seed: int = 0) -> list[Truth]:
    """Write the set into `out` (see the module docstring) and its truth.csv; returns the rows."""
    register_formats()
    rng = random.Random(seed)
    pool = iter(photos)
    rows: list[Truth] = []
    start = datetime(2018, 3, 1, 9, 0, 0)
    for trip, (city, country, offset, points) in enumerate(CITIES):
        day = start + timedelta(days=int(trip * 230))  # trips from 2018 to 2022
        make, model = CAMERAS[trip % len(CAMERAS)]
        for n in range(per_city):
            lat, lon = points[n % len(points)]
            when = day + timedelta(hours=n * 3, minutes=rng.randrange(60))
            suffix = (".jpg", ".jpg", ".heic", ".jpg", ".avif")[n % 5]
            name = f"trips/{city.replace(' ', '-')}/{when:%Y%m%d}-{n:02d}{suffix}"
            sign = SIGN_WORDS[n] if city == "paris" and n < len(SIGN_WORDS) else ""
            exif = exif_for(when, offset, make, model, (lat, lon))
            _save(next(pool), out / name, exif, sign)
            taken, camera = f"{when:%Y-%m-%d %H:%M:%S}", f"{make} {model}"
            rows.append(Truth(name, taken, "exif", camera, city, country, str(lat), str(lon), sign))
    for n in range(6):  # a phone's photos with no GPS fix: date and camera only
        when = datetime(2023, 7, 1 + n, 18, 0, 0)
        name = f"phone/IMG_{n:04d}{'.heic' if n % 2 else '.jpg'}"
        _save(next(pool), out / name, exif_for(when, "+01:00", "Apple", "iPhone 13 Pro", None), "")
        rows.append(Truth(name, f"{when:%Y-%m-%d %H:%M:%S}", "exif", "Apple iPhone 13 Pro"))
    for n in range(6):  # scans: no EXIF at all; the file's own time says when (the library's files keep theirs)
        when = datetime(2017, 12, 24, 12, 0, 0) + timedelta(days=n)
        name = f"scans/scan-{n:02d}.png"
        _save(next(pool), out / name, None, "")
        os.utime(out / name, (when.timestamp(), when.timestamp()))
        rows.append(Truth(name, f"{when:%Y-%m-%d %H:%M:%S}", "file"))
    with open(out / "truth.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, [field.name for field in fields(Truth)])
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    return rows


def read_truth(path: Path) -> list[Truth]:
    """truth.csv, as written by make_photo_set."""
    with open(path, newline="", encoding="utf-8") as f:
        return [Truth(**row) for row in csv.DictReader(f)]


def exif_for(when: datetime, offset: str, make: str, model: str, point: tuple[float, float] | None) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make], exif[ExifTags.Base.Model] = make, model
    details = exif.get_ifd(ExifTags.IFD.Exif)
    details[ExifTags.Base.DateTimeOriginal] = f"{when:%Y:%m:%d %H:%M:%S}"
    details[ExifTags.Base.OffsetTimeOriginal] = offset
    if point is not None:
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        for (ref, value, tag), (plus, minus) in zip(
            (
                (ExifTags.GPS.GPSLatitudeRef, point[0], ExifTags.GPS.GPSLatitude),
                (ExifTags.GPS.GPSLongitudeRef, point[1], ExifTags.GPS.GPSLongitude),
            ),
            (("N", "S"), ("E", "W")),
            strict=True,
        ):
            gps[ref] = plus if value >= 0 else minus
            gps[tag] = _dms(abs(value))
    return exif


def _dms(value: float) -> tuple[float, float, float]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    return float(degrees), float(minutes), round((value - degrees - minutes / 60) * 3600, 4)


def _save(photo: Path, path: Path, exif: Image.Exif | None, sign: str) -> None:
    from mmdemo.text.signs import Damage, draw_sign

    path.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(photo) as img:
        image = draw_sign(img, sign, Damage(), seed=len(sign)) if sign else img.convert("RGB")
        if exif is not None:
            image.save(path, quality=88, exif=exif.tobytes())
        else:
            image.save(path, quality=88)
