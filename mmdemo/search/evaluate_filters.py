"""The search box's filters, measured: precision and recall of each operator, alone and combined with
words, on the photo set of `python -m mmdemo eval make-photo-set` (`python -m mmdemo eval filters`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmdemo.photos.samples import Truth
from mmdemo.search.ranking import Named, ranked

if TYPE_CHECKING:
    from mmdemo.search.filtering import Filtering
    from mmdemo.text.stage import TextStage

Want = Callable[[Truth], bool]


def _city(*names: str) -> Want:
    return lambda t: t.city in names


# (query, what it must find, needs the text stage). Dates: make_photo_set's trips run from 2018 to 2022.
QUERIES: tuple[tuple[str, Want, bool], ...] = (
    ("taken:2019", lambda t: t.taken.startswith("2019"), False),
    ("taken:2019-06", lambda t: t.taken.startswith("2019-06"), False),
    ("taken:2017", lambda t: t.taken.startswith("2017"), False),  # the scans: dated by their file's time
    ("after:2021-01-01", lambda t: t.taken >= "2021-01-01", False),
    ("before:2018-06-01", lambda t: bool(t.taken) and t.taken < "2018-06-01", False),
    ("after:2020-01-01 before:2021-01-01", lambda t: "2020-01-01" <= t.taken < "2021-01-01", False),
    ("place:paris", _city("paris"), False),
    ('place:"cape town"', _city("cape town"), False),
    ("place:shanghai", _city("shanghai"), False),
    ("place:reykjavik", _city("reykjavik"), False),
    ("place:sydney", _city("sydney"), False),
    ("place:japan", lambda t: t.country == "JP", False),
    ("place:france", lambda t: t.country == "FR", False),
    ("place:巴黎", _city("paris"), False),
    ("place:日本", lambda t: t.country == "JP", False),
    ('place:"paris, us"', _city("paris texas"), False),
    ("camera:fuji", lambda t: t.camera.startswith("FUJIFILM"), False),
    ("camera:iphone", lambda t: "iPhone" in t.camera, False),
    ("has:gps", lambda t: bool(t.lat), False),
    ("has:date", lambda t: bool(t.taken), False),
    # The drawn signs; a photo of the set may hold real text too (one Flickr photo shows a street sign).
    ("has:text", lambda t: bool(t.sign), True),
    ("folder:scans", lambda t: t.file.startswith("scans/"), False),
    ("folder:trips", lambda t: t.file.startswith("trips/"), False),
    ("place:japan taken:2021", lambda t: t.country == "JP" and t.taken.startswith("2021"), False),
    ("camera:iphone has:gps", lambda t: "iPhone" in t.camera and bool(t.lat), False),
    ("a dog place:tokyo", _city("tokyo"), False),
    ("people outside camera:fuji taken:2018", lambda t: t.camera.startswith("FUJIFILM") and t.taken < "2019", False),
    ("text:pharmacie place:paris", lambda t: t.sign == "PHARMACIE", True),
    ("boulangerie has:gps", lambda t: t.sign == "BOULANGERIE", True),
)


@dataclass(frozen=True)
class Measured:
    """One query: how many it should find, found, and of those rightly."""

    query: str
    expected: int
    found: int
    right: int

    @property
    def precision(self) -> float:
        return self.right / self.found if self.found else float(self.expected == 0)

    @property
    def recall(self) -> float:
        return self.right / self.expected if self.expected else 1.0


def evaluate(named: Named, text: TextStage | None, filtering: Filtering, truth: Sequence[Truth]) -> list[Measured]:
    """Each query over the gallery, with room for every image (filters alone must list all that pass; with
    words, every image that passes is a candidate, so recall is the filter's). The text stage's queries are
    left out without it. A query of words and filters takes the filters' images: its words only rank them,
    except a `text:` word or (with `has:` beside it) a sign's word, which must match the text read."""
    k = len(truth) + 1
    results = []
    for query, want, needs_text in QUERIES:
        if needs_text and text is None:
            continue
        found = {hit.item.name for _, hit in ranked([named], text, query, None, k, -1.0, filtering)}
        if query.startswith("boulangerie"):  # a bare word: the sign is first, the rest ranked after it
            first = ranked([named], text, query, None, 1, -1.0, filtering)
            found = {hit.item.name for _, hit in first}
        expected = {t.file for t in truth if want(t)}
        results.append(Measured(query, len(expected), len(found), len(found & expected)))
    return results


def table(results: Sequence[Measured]) -> str:
    """A Markdown table of the figures."""
    lines = ["| query | expected | found | precision | recall |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| `{r.query}` | {r.expected} | {r.found} | {r.precision:.3f} | {r.recall:.3f} |")
    return "\n".join(lines)
