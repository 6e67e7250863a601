"""A gallery's facts as columns beside its item ids: every filter is a few NumPy comparisons.

Built once per change of the gallery or of what its stages read (mmdemo.search.filtering caches
it), it answers a filter over a million images in milliseconds: dates as numbers, coordinates as
arrays, and the strings (cameras, folders, places), few and repeated, as codes into short lists
that are matched once each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from mmdemo.photos import places
from mmdemo.photos.filters import Filters
from mmdemo.photos.store import Columns

_EPOCH = datetime(1970, 1, 1)


def seconds(moment: datetime) -> float:
    """A wall-clock time as a number (seconds from 1970 on the same clock: no time zone involved)."""
    return (moment - _EPOCH).total_seconds()


class FactsTable:
    """Columns aligned with `ids` (see the module docstring)."""

    def __init__(
        self,
        ids: np.ndarray,
        hashes: Sequence[str],
        names: Sequence[str],
        facts: Columns,
        with_text: set[str],
        moments: Sequence[bool] = (),
    ):
        """`ids`, `hashes` and `names` (paths in the gallery) of its images, in id order, which of them are a
        video's moments; the facts read of them."""
        self.ids = np.asarray(ids, np.int64)
        self.moment = np.fromiter(moments, bool, len(moments)) if len(moments) else np.zeros(len(self.ids), bool)
        row_of = {h: n for n, h in enumerate(hashes)}
        rows = np.fromiter((row_of.get(h, -1) for h in facts.hashes), np.int64, len(facts.hashes))
        known = rows >= 0
        at = rows[known]
        self.taken, self.lat, self.lon = (
            _column(len(self.ids), at, values, known) for values in (facts.taken, facts.lat, facts.lon)
        )
        self.has_text = np.fromiter((h in with_text for h in hashes), bool, len(hashes))
        cameras, codes = _codes(facts.camera)  # few distinct values: folded once each
        self.cameras, self.camera = (
            ["", *(places.folded(c) for c in cameras)],
            _spread(len(self.ids), at, codes[known] + 1),
        )
        named, codes = _codes(facts.places)
        self.places = [places.Place(), *(places.Place(*p) for p in named)]
        self.place = _spread(len(self.ids), at, codes[known] + 1)
        folders, self.folder = _codes([name.rpartition("/")[0] for name in names])
        self.folders = [places.folded(folder) for folder in folders]
        self._passing: dict[Filters, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def passing(self, filters: Filters) -> np.ndarray:
        """The ids that pass `filters`, ascending; the same array for the same filters while this table lives
        (a search asked again, a re-rank's second pass: the index keeps what it built from it)."""
        if (ids := self._passing.get(filters)) is None:
            if len(self._passing) >= 16:
                self._passing.pop(next(iter(self._passing)))
            ids = self._passing[filters] = self.ids[self.mask(filters)]
        return ids

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
        if set(filters.types) == {"video"}:
            keep &= self.moment
        elif set(filters.types) == {"photo"}:
            keep &= ~self.moment
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


def _column(size: int, rows: np.ndarray, values: Sequence[float | None], known: np.ndarray) -> np.ndarray:
    """A float column of `size` rows: `values` (None as NaN) at `rows`, NaN elsewhere."""
    column = np.full(size, np.nan)
    column[rows] = np.array(values, np.float64)[known] if len(values) else []
    return column


def _spread(size: int, rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """A code column of `size` rows: `codes` at `rows`, 0 (nothing known) elsewhere."""
    column = np.zeros(size, np.int32)
    column[rows] = codes
    return column


def _in_folder(path: str, words: list[str]) -> bool:
    """Whether a folder of `path` (folded, "/"-separated) holds one of the words."""
    return any(word in part for word in words for part in path.split("/") if part)


def _codes(values: list[Any]) -> tuple[list[Any], np.ndarray]:
    """The distinct values, and each value's number among them."""
    numbers: dict[object, int] = {}
    codes = np.array([numbers.setdefault(v, len(numbers)) for v in values], np.int32)
    return list(numbers), codes
