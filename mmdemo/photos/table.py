"""A gallery's facts as columns beside its item ids: every filter is a few NumPy comparisons.

Built once per change of the gallery or of what its stages read (mmdemo.search.filtering caches
it), it answers a filter over a million images in milliseconds: dates as numbers, coordinates as
arrays, and the strings (cameras, folders, places), few and repeated, as codes into short lists
that are matched once each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from mmdemo.photos import places
from mmdemo.photos.filters import Filters
from mmdemo.photos.store import Facts

_EPOCH = datetime(1970, 1, 1)


def seconds(moment: datetime) -> float:
    """A wall-clock time as a number (seconds from 1970 on the same clock: no time zone involved)."""
    return (moment - _EPOCH).total_seconds()


@dataclass(frozen=True)
class Row:
    """What the table needs of one indexed image."""

    id: int
    hash: str
    name: str  # its path in the gallery ("trips/2019/x.jpg")


class FactsTable:
    """Columns aligned with `ids` (see the module docstring)."""

    def __init__(self, rows: Sequence[Row], facts: Sequence[Facts], with_text: set[str]):
        by_hash = {f.hash: f for f in facts}
        found = [by_hash.get(row.hash) for row in rows]
        self.ids = np.array([row.id for row in rows], np.int64)
        self.taken = np.array([_when(f) for f in found], np.float64)
        self.lat = np.array([_num(f.exif.lat) if f else np.nan for f in found], np.float64)
        self.lon = np.array([_num(f.exif.lon) if f else np.nan for f in found], np.float64)
        self.has_text = np.array([row.hash in with_text for row in rows], bool)
        self.cameras, self.camera = _codes([_camera(f) for f in found])
        self.folders, self.folder = _codes([str(PurePosixPath(row.name).parent).casefold() for row in rows])
        self.places, self.place = _codes([f.place if f else places.Place() for f in found])

    def __len__(self) -> int:
        return len(self.ids)

    def mask(self, filters: Filters) -> np.ndarray:
        """Which rows pass every filter."""
        keep = np.ones(len(self.ids), bool)
        if filters.taken:
            keep &= np.any([(self.taken >= seconds(p.start)) & (self.taken < seconds(p.end)) for p in filters.taken], 0)
        if filters.after is not None:
            keep &= self.taken >= seconds(filters.after)
        if filters.before is not None:
            keep &= self.taken < seconds(filters.before)
        if filters.places:
            keep &= np.any([self._in_place(name) for name in filters.places], 0)
        if filters.cameras:
            words = [places.folded(c) for c in filters.cameras]
            keep &= self._matching(self.camera, self.cameras, lambda cam: any(w in cam for w in words))
        if filters.folders:
            words = [places.folded(f) for f in filters.folders]
            keep &= self._matching(self.folder, self.folders, lambda path: _in_folder(path, words))
        for wanted in filters.has:
            keep &= {"gps": ~np.isnan(self.lat), "text": self.has_text, "date": ~np.isnan(self.taken)}[wanted]
        return keep

    def by_date(self, rows: np.ndarray, oldest: bool = False) -> np.ndarray:
        """These row numbers ordered by date, newest first (or oldest), undated last."""
        return rows[np.argsort(date_key(self.taken[rows], oldest), kind="stable")]

    def _in_place(self, name: str) -> np.ndarray:
        """Rows in the place typed: a country; a city (within its radius, or named so in its country);
        any other stored name (a region, a village); "paris, texas": named so, in a region or country so named."""
        key, _, within = (part.strip() for part in places.folded(name).partition(","))
        area = places.find(name)
        if area is not None and area.whole_country:
            return self._matching(self.place, self.places, lambda p: p.country == area.country)

        def named(p: places.Place) -> bool:
            if key not in p.names():
                return False
            if area is not None:  # the city typed, not a namesake elsewhere (Paris, Texas for "paris")
                return p.country == area.country
            return not within or within in (
                *p.names(),
                places.folded(p.country),
                places.folded(places.country_label(p.country)),
            )

        found = self._matching(self.place, self.places, named)
        if area is None:
            return found
        # A box first (cheap comparisons), then the great-circle distance inside it.
        reach = area.radius_km / 111.0
        box = np.flatnonzero(
            (np.abs(self.lat - area.lat) <= reach)
            & (np.abs(self.lon - area.lon) <= reach / max(np.cos(np.radians(area.lat)), 0.05))
        )
        found[box] |= places.distance_km(self.lat[box], self.lon[box], area.lat, area.lon) <= area.radius_km
        return found

    @staticmethod
    def _matching(codes: np.ndarray, values: list[Any], test: Callable[[Any], bool]) -> np.ndarray:
        hits = np.array([bool(test(v)) for v in values], bool)
        return hits[codes] if len(values) else np.zeros(len(codes), bool)


def date_key(taken: np.ndarray, oldest: bool = False) -> np.ndarray:
    """Ascending sort keys of dates (seconds) for newest first (or oldest): undated (NaN) last either way."""
    return np.where(np.isnan(taken), np.inf, taken if oldest else -taken)


def _when(facts: Facts | None) -> float:
    if facts is None or not facts.exif.taken:
        return np.nan
    return seconds(datetime.fromisoformat(facts.exif.taken))


def _num(value: float | None) -> float:
    return np.nan if value is None else float(value)


def _camera(facts: Facts | None) -> str:
    return places.folded(f"{facts.exif.make} {facts.exif.model}") if facts else ""


def _in_folder(path: str, words: list[str]) -> bool:
    parts = [places.folded(part) for part in PurePosixPath(path).parts]
    return any(word in part for word in words for part in parts if part != ".")


def _codes(values: list[Any]) -> tuple[list[Any], np.ndarray]:
    """The distinct values, and each value's number among them."""
    numbers: dict[object, int] = {}
    codes = np.array([numbers.setdefault(v, len(numbers)) for v in values], np.int32)
    return list(numbers), codes
