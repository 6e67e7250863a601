"""A photo's facts as people read them: "2019-06-04 09:12 (UTC+00:00) · Canon EOS R5 · Reykjavík, Iceland".

How much of a place is said is the caller's choice (`exact`): the shared library shows the city
(MMDEMO_LIBRARY_PLACES=city, no coordinates); a visitor's own uploads show the nearest place and
the coordinates, to that visitor only.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmdemo.i18n import DEFAULT, text
from mmdemo.photos import places
from mmdemo.photos.store import Facts


@dataclass(frozen=True)
class Said:
    """Each fact as shown ('' when unknown)."""

    taken: str = ""
    camera: str = ""
    place: str = ""

    def line(self) -> str:
        return " · ".join(part for part in (self.taken, self.camera, self.place) if part)


def said(facts: Facts | None, language: str = DEFAULT, exact: bool = False) -> Said:
    """What is shown of `facts` in `language`; coordinates only when `exact`."""
    if facts is None:
        return Said()
    exif = facts.exif
    taken = ""
    if exif.taken:
        taken = exif.taken[:16]
        if exif.taken_from == "file":
            taken = text("photo.file_time", language, when=taken)
        elif exif.offset:
            taken = f"{taken} (UTC{exif.offset})"
    place = places.label(facts.place, language, exact) if facts.place.country else ""
    if exact and exif.lat is not None and exif.lon is not None:
        place = f"{place} ({exif.lat:.4f}, {exif.lon:.4f})" if place else f"{exif.lat:.4f}, {exif.lon:.4f}"
    return Said(taken, exif.camera, place)


def public(facts: Facts | None, exact: bool) -> dict[str, object]:
    """The facts an API answer carries: the date, camera and place as shown; coordinates only when `exact`."""
    if facts is None:
        return {}
    exif, place = facts.exif, facts.place
    out: dict[str, object] = {"taken": exif.taken, "offset": exif.offset, "taken_from": exif.taken_from}
    out |= {"camera": exif.camera, "city": place.city or place.name, "region": place.region, "country": place.country}
    if exact:
        out |= {"place": place.name, "lat": exif.lat, "lon": exif.lon}
    return {key: value for key, value in out.items() if value not in ("", None)}


def exact_places(source: str, library_places: str) -> bool:
    """Whether a hit's exact place (nearest place, coordinates) may be shown: a visitor's own images ("yours")
    always, to that visitor; the shared library's only with MMDEMO_LIBRARY_PLACES=exact."""
    return source != "shared" or library_places == "exact"
