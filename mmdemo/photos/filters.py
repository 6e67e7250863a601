"""Filters typed in the search box, beside the words of the search.

    taken:2019  taken:2019-06  taken:2019-06-01    taken in that year, month or day (the photo's own clock)
    after:2019-06-01  before:2020-01-01            taken on or after / before that day (or month, or year)
    place:paris  place:"cape town"  place:japan    a city (within its radius: its districts count), a region,
                                                   a country, or any stored place name (mmdemo.photos.places)
    camera:fuji                                    make or model contains the word ("FUJIFILM X-T30")
    has:gps  has:text  has:date                    a position, text read in it, a date
    folder:trips                                   a folder of its path holds the word (the library's folders)
    text:word                                      its text holds the word (mmdemo.text.query)
    sort:newest  sort:oldest                       the results by date (else by relevance)
    type:video  type:photo                         a video's moments, or images

The same operator twice means either (place:paris place:rome); different ones must all hold. The
other words are the search as before; a query of filters only lists what matches, newest first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from mmdemo.errors import UserFacingError

OPERATORS = ("taken", "after", "before", "place", "camera", "has", "folder", "text", "sort", "type")
TYPES = ("photo", "video")
HAS = ("gps", "text", "date")
SORTS = ("relevance", "newest", "oldest")
_FILTER = re.compile(r'(?<!\S)([A-Za-z]+):(?:"([^"]*)"|(\S+))')
_PERIOD = re.compile(r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?")


@dataclass(frozen=True)
class Period:
    """From `start` (included) to `end` (excluded), on the photo's own clock."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class Filters:
    """What the results must be (see the module docstring)."""

    taken: tuple[Period, ...] = ()  # any of them
    after: datetime | None = None
    before: datetime | None = None
    places: tuple[str, ...] = ()  # any of them, as typed
    cameras: tuple[str, ...] = ()  # any of them
    has: tuple[str, ...] = ()  # all of them
    folders: tuple[str, ...] = ()  # any of them
    sort: str = ""  # "newest", "oldest", or "" (relevance; a listing of filters alone: newest)
    types: tuple[str, ...] = ()  # "photo", "video": any of them
    typed: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)  # operator -> values, as typed

    @property
    def empty(self) -> bool:
        return (
            not (self.taken or self.after or self.before or self.places or self.cameras or self.has or self.folders)
            and not self.types
        )


def split(query: str) -> tuple[Filters, str]:
    """The filters in `query`, and the rest of it (`text:` words stay in it, for the text search).

    Raises UserFacingError (in the visitor's language) for an unknown operator or a bad date."""
    typed: dict[str, list[str]] = {}
    rest: list[str] = []
    at = 0
    for found in _FILTER.finditer(query or ""):
        op, value = found[1].lower(), found[2] if found[2] is not None else found[3]
        if op not in OPERATORS:
            raise UserFacingError(key="filter.unknown", op=found[1], known=" ".join(f"{o}:" for o in OPERATORS))
        if op == "text":
            continue
        rest.append(query[at : found.start()])
        at = found.end()
        if value.strip():
            typed.setdefault(op, []).append(value.strip())
    rest.append((query or "")[at:])
    return _filters(typed), " ".join("".join(rest).split())


def described(query: str) -> str:
    """What a query says in words, for a reader (the chat model's re-rank): its filters left out, `text:`
    words kept as words; '' for filters alone, or a query with a mistake in its filters."""
    try:
        rest = split(query)[1]
    except UserFacingError:
        return ""
    return " ".join(word[5:] if word.lower().startswith("text:") else word for word in rest.split())


def _filters(typed: dict[str, list[str]]) -> Filters:
    has = tuple(dict.fromkeys(v.lower() for v in typed.get("has", [])))
    for value in has:
        if value not in HAS:
            raise UserFacingError(key="filter.bad_has", value=value, known=", ".join(HAS))
    types = tuple(dict.fromkeys(v.lower() for v in typed.get("type", [])))
    for value in types:
        if value not in TYPES:
            raise UserFacingError(key="filter.bad_type", value=value, known=", ".join(TYPES))
    sort = (typed.get("sort") or [""])[-1].lower()
    if sort and sort not in SORTS:
        raise UserFacingError(key="filter.bad_sort", value=sort, known=", ".join(SORTS))
    after = [period(v).start for v in typed.get("after", [])]
    before = [period(v).start for v in typed.get("before", [])]
    return Filters(
        taken=tuple(period(v) for v in typed.get("taken", [])),
        after=max(after) if after else None,
        before=min(before) if before else None,
        places=tuple(typed.get("place", [])),
        cameras=tuple(typed.get("camera", [])),
        has=has,
        folders=tuple(typed.get("folder", [])),
        sort="" if sort == "relevance" else sort,
        types=types,
        typed={op: tuple(values) for op, values in typed.items()},
    )


def period(value: str) -> Period:
    """ "2019", "2019-06" or "2019-06-01" as the period it names; UserFacingError for anything else."""
    found = _PERIOD.fullmatch(value.strip())
    try:
        if not found:
            raise ValueError(value)
        year, month, day = int(found[1]), int(found[2] or 0), int(found[3] or 0)
        if not month:
            return Period(datetime(year, 1, 1), datetime(year + 1, 1, 1))
        if not day:
            start = datetime(year, month, 1)
            return Period(start, datetime(year + month // 12, month % 12 + 1, 1))
        start = datetime(year, month, day)
        return Period(start, datetime.fromordinal(start.toordinal() + 1))
    except (ValueError, OverflowError):
        raise UserFacingError(key="filter.bad_date", value=value[:40]) from None


def with_filter(query: str, op: str, values: list[str] | str | None) -> str:
    """`query` with its `op:` filters replaced by `values` (none: removed): the Search tab's controls
    write the box's operators, so the two never disagree."""
    if isinstance(values, str) or values is None:
        values = [values] if values else []
    kept = _FILTER.sub(lambda m: m[0] if m[1].lower() != op else "", query or "")
    added = [f'{op}:"{v}"' if " " in v else f"{op}:{v}" for v in (v.strip() for v in values) if v]
    return " ".join([*kept.split(), *added])
