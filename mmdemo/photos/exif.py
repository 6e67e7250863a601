"""What a photo's EXIF says of it: when it was taken (with its UTC offset), the camera, and where.

Pillow reads EXIF from JPEG, PNG, WebP, TIFF, AVIF and (with pillow-heif's opener,
mmdemo.embedding.images.register_formats) HEIC alike. Only the header is read, never the pixels.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import ExifTags, Image, UnidentifiedImageError

from mmdemo.embedding.images import register_formats

_DATE = re.compile(r"(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"[+-]\d{2}:\d{2}")
IFD = ExifTags.IFD
TAG = ExifTags.Base
GPS = ExifTags.GPS


@dataclass(frozen=True)
class Exif:
    """The facts read from one file ('' / None where it says nothing)."""

    taken: str = ""  # local wall-clock time, "YYYY-MM-DD HH:MM:SS"
    offset: str = ""  # its UTC offset, "+02:00", when the camera wrote one
    taken_from: str = ""  # "exif", or "file" (the file's modification time: no date in its EXIF)
    make: str = ""
    model: str = ""
    lat: float | None = None
    lon: float | None = None
    error: str = ""  # why nothing could be read

    @property
    def camera(self) -> str:
        """ "FUJIFILM X-T30": the model alone when it already names the make (Canon's "Canon EOS R5")."""
        if self.make and not self.model.lower().startswith(self.make.lower().split()[0]):
            return f"{self.make} {self.model}".strip()
        return self.model or self.make


def read_exif(path: str | Path, file_time: bool = False) -> Exif:
    """The EXIF facts of the image at `path`. With `file_time` (a file that stays where it is: the
    library), a photo without a date in its EXIF is dated by the file's modification time, marked so."""
    register_formats()
    try:
        with Image.open(path) as img:
            exif = img.getexif()
            facts = _facts(exif)
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        return Exif(error=f"{type(exc).__name__}: {exc}")
    if not facts.taken and file_time:
        try:
            stamp = datetime.fromtimestamp(os.stat(path).st_mtime)
        except OSError:
            return facts
        return _replace_date(facts, stamp.strftime("%Y-%m-%d %H:%M:%S"), "file")
    return facts


def _facts(exif: Image.Exif) -> Exif:
    details = exif.get_ifd(IFD.Exif)
    taken, offset = "", ""
    for date_tag, offset_tag in ((TAG.DateTimeOriginal, TAG.OffsetTimeOriginal), (TAG.DateTimeDigitized, 0x9012)):
        if taken := _date(details.get(date_tag)):
            offset = _text(details.get(offset_tag))
            offset = offset if _OFFSET.fullmatch(offset) else ""
            break
    lat, lon = _position(exif.get_ifd(IFD.GPSInfo))
    return Exif(
        taken=taken,
        offset=offset,
        taken_from="exif" if taken else "",
        make=_text(exif.get(TAG.Make)),
        model=_text(exif.get(TAG.Model)),
        lat=lat,
        lon=lon,
    )


def _replace_date(facts: Exif, taken: str, source: str) -> Exif:
    return Exif(taken, "", source, facts.make, facts.model, facts.lat, facts.lon)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).replace("\x00", "").strip()[:80] if value is not None else ""


def _date(value: object) -> str:
    """EXIF's "2019:06:01 14:30:00" as "2019-06-01 14:30:00" ('' for the blanks and zeros cameras write)."""
    found = _DATE.match(_text(value))
    if not found:
        return ""
    try:
        year, month, day, hour, minute, second = (int(part) for part in found.groups())
        return datetime(year, month, day, hour, minute, second).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:  # "0000:00:00 00:00:00"
        return ""


def _position(gps: dict[int, object]) -> tuple[float | None, float | None]:
    """Decimal degrees from the GPS IFD's degrees/minutes/seconds and hemispheres; (None, None) if absent
    or impossible (0, 0 is what some phones write without a fix)."""
    try:
        lat = _degrees(gps[GPS.GPSLatitude]) * (-1 if _text(gps.get(GPS.GPSLatitudeRef)).upper() == "S" else 1)
        lon = _degrees(gps[GPS.GPSLongitude]) * (-1 if _text(gps.get(GPS.GPSLongitudeRef)).upper() == "W" else 1)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None, None
    return plausible(lat, lon)


def plausible(lat: float, lon: float) -> tuple[float | None, float | None]:
    """(lat, lon) rounded to 6 places, or (None, None) when impossible (0, 0 is what some phones write without
    a fix). EXIF's GPS and a video's ISO 6709 tag alike (mmdemo.photos.videotags)."""
    if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180 or (lat == 0 and lon == 0):
        return None, None
    return round(lat, 6), round(lon, 6)


def _degrees(value: object) -> float:
    parts = [float(part) for part in value]  # type: ignore[attr-defined]  # IFDRational triples
    return parts[0] + (parts[1] if len(parts) > 1 else 0) / 60 + (parts[2] if len(parts) > 2 else 0) / 3600
