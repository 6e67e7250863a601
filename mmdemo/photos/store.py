"""The dates, cameras and places read from a gallery's images, by content hash.

One SQLite file per gallery (`data_dir/readings/<gallery>/photo.sqlite3`), beside the text stage's:
a gallery re-indexed with another CLIP keeps them. Coordinates are kept (the `place:` filter measures
distances); what is shown of them is the caller's choice (mmdemo.photos.facts.PlaceDetail).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from mmdemo.files import HashedStore
from mmdemo.photos.exif import Exif
from mmdemo.photos.places import Place

_SCHEMA = """
CREATE TABLE IF NOT EXISTS photo (
    hash TEXT PRIMARY KEY,
    taken TEXT NOT NULL,
    offset TEXT NOT NULL,
    taken_from TEXT NOT NULL,
    make TEXT NOT NULL,
    model TEXT NOT NULL,
    lat REAL,
    lon REAL,
    place TEXT NOT NULL,
    city TEXT NOT NULL,
    region TEXT NOT NULL,
    country TEXT NOT NULL,
    error TEXT NOT NULL,
    at REAL NOT NULL
);
"""
_CHUNK = 500  # hashes per SELECT


@dataclass(frozen=True)
class Facts:
    """What the photo stage read from one image."""

    hash: str
    exif: Exif
    place: Place = field(default_factory=Place)


@dataclass(frozen=True)
class Columns:
    """The facts of a gallery's images, column by column (None where unknown)."""

    hashes: list[str]
    taken: list[float | None]  # seconds from 1970 on the photo's own clock (its wall-clock time read as UTC)
    lat: list[float | None]
    lon: list[float | None]
    camera: list[str]  # "make model"
    places: list[tuple[str, str, str, str]]  # (place, city, region, country)


class PhotoStore(HashedStore):
    """The facts of one gallery (see the module docstring); safe to share between threads."""

    FILE, SCHEMA, TABLE = "photo.sqlite3", _SCHEMA, "photo"

    def put(self, facts: Sequence[Facts]) -> None:
        """Store (or replace) facts, in one transaction."""
        now = time.time()
        rows = [(f.hash, *_columns(f), now) for f in facts]
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(f"INSERT OR REPLACE INTO photo VALUES ({','.join('?' * 14)})", rows)
            self.writes += 1

    def get(self, content_hash: str) -> Facts | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM photo WHERE hash = ?", (content_hash,)).fetchone()
        return _facts(row) if row else None

    def columns(self) -> Columns:
        """Every image's facts as columns, the date already a number (for the filters' table, in one query)."""
        sql = (
            "SELECT hash, CAST(strftime('%s', NULLIF(taken, '')) AS REAL), lat, lon, trim(make || ' ' || model),"
            " place, city, region, country FROM photo"
        )
        with self._lock:
            rows = self._db.execute(sql).fetchall()
        hashes, taken, lat, lon, camera, *named = zip(*rows, strict=True) if rows else ((),) * 9
        return Columns(list(hashes), list(taken), list(lat), list(lon), list(camera), list(zip(*named, strict=True)))

    def every(self) -> list[Facts]:
        """Every image's facts (for the filters' table, mmdemo.photos.table)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM photo").fetchall()
        return [_facts(row) for row in rows]


def _columns(f: Facts) -> tuple[object, ...]:
    e, p = f.exif, f.place
    place = (p.name, p.city, p.region, p.country)
    return (e.taken, e.offset, e.taken_from, e.make, e.model, e.lat, e.lon, *place, e.error)


def _facts(row: tuple[object, ...]) -> Facts:
    h, taken, offset, source, make, model, lat, lon, name, city, region, country, error, _ = row
    exif = Exif(str(taken), str(offset), str(source), str(make), str(model), lat, lon, str(error))  # type: ignore[arg-type]
    return Facts(str(h), exif, Place(str(name), str(city), str(region), str(country)))
