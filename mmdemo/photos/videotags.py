"""When, where and with what a video was filmed, from its container's tags (PyAV; the header only).

Phones write these as MP4/QuickTime metadata, not EXIF: iPhones `com.apple.quicktime.creationdate`
(local time with its offset), `...location.ISO6709` and `...make` / `...model`; Android and most cameras
`creation_time` (UTC) and `location` ("+48.8577+002.2950/"). The facts come back as a photo's do
(mmdemo.photos.exif.Exif), so a video's moments are found by `taken:`, `place:` and `camera:` too.
"""

from __future__ import annotations

import contextlib
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mmdemo.photos.exif import Exif, plausible

_ISO6709 = re.compile(r"([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)")
_STAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?\s*(Z|[+-]\d{2}:?\d{2})?")


def read_video_facts(path: str | Path, file_time: bool = False) -> Exif:
    """The facts of the video at `path`. With `file_time` (a file that stays where it is: the library), a
    video without a date is dated by the file's modification time, marked so."""
    import av

    try:
        with av.open(str(path)) as container:
            tags = {key.lower(): str(value) for key, value in container.metadata.items()}
            if container.streams.video:
                tags = {**{k.lower(): str(v) for k, v in container.streams.video[0].metadata.items()}, **tags}
    except (av.FFmpegError, OSError, ValueError) as exc:
        return Exif(error=f"{type(exc).__name__}: {exc}")
    taken, offset = (
        _when(tags.get("com.apple.quicktime.creationdate", "")) or _when(tags.get("creation_time", "")) or ("", "")
    )
    lat, lon = _where(tags.get("com.apple.quicktime.location.iso6709") or tags.get("location", ""))
    make = tags.get("com.apple.quicktime.make") or tags.get("make") or tags.get("com.android.manufacturer", "")
    model = tags.get("com.apple.quicktime.model") or tags.get("model") or tags.get("com.android.model", "")
    if not taken and file_time:
        with contextlib.suppress(OSError):
            taken = datetime.fromtimestamp(os.stat(path).st_mtime).strftime("%Y-%m-%d %H:%M:%S")
        return Exif(taken, "", "file" if taken else "", make[:80], model[:80], lat, lon)
    return Exif(taken, offset, "video" if taken else "", make[:80], model[:80], lat, lon)


def _when(value: str) -> tuple[str, str] | None:
    """("YYYY-MM-DD HH:MM:SS", "+02:00") from an ISO 8601 stamp; a UTC one ("Z") stays in UTC ("+00:00"). None
    for none, and for the zero date (1904 or 1970) files without a date carry."""
    found = _STAMP.match(value.strip())
    if not found:
        return None
    year, month, day, hour, minute, second = (int(part) for part in found.groups()[:6])
    zone = found[7]
    try:
        when = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    if when.year <= 1970:
        return None
    if not zone:
        return when.strftime("%Y-%m-%d %H:%M:%S"), ""
    if zone == "Z":
        return when.strftime("%Y-%m-%d %H:%M:%S"), "+00:00"
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    shift = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    offset = datetime(2000, 1, 1, tzinfo=timezone(sign * shift)).strftime("%z")
    return when.strftime("%Y-%m-%d %H:%M:%S"), f"{offset[:3]}:{offset[3:]}"


def _where(value: str) -> tuple[float | None, float | None]:
    """Latitude and longitude from ISO 6709 ("+64.1533-021.9956+012.000/"); (None, None) if absent or impossible."""
    found = _ISO6709.match(value.strip())
    if not found:
        return None, None
    return plausible(float(found[1]), float(found[2]))
