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
    ("has:text", lambda t: bool(t.sign), True),  # the drawn signs; see OPEN_TRUTH
    ("folder:scans", lambda t: t.file.startswith("scans/"), False),
    ("folder:trips", lambda t: t.file.startswith("trips/"), False),
    ("place:japan taken:2021", lambda t: t.country == "JP" and t.taken.startswith("2021"), False),
    ("camera:iphone has:gps", lambda t: "iPhone" in t.camera and bool(t.lat), False),
    ("a dog place:tokyo", _city("tokyo"), False),
    ("people outside camera:fuji taken:2018", lambda t: t.camera.startswith("FUJIFILM") and t.taken < "2019", False),
    ("text:pharmacie place:paris", lambda t: t.sign == "PHARMACIE", True),
    ("boulangerie has:gps", lambda t: t.sign == "BOULANGERIE", True),
)


# Queries whose truth is what the generator made, while the photos may hold more: a Flickr photo of the set
# shows a real street sign ("Strandgata"), which has:text rightly finds. Their precision is a lower bound.
OPEN_TRUTH = {"has:text"}


@dataclass(frozen=True)
class Measured:
    """One query: how many it should find, found, and of those rightly."""

    query: str
    expected: int
    found: int
    right: int
    by_nearest_name: float | None = None  # recall of `place:` by the nearest place's name alone (a baseline)

    @property
    def precision(self) -> float:
        return self.right / self.found if self.found else float(self.expected == 0)

    @property
    def recall(self) -> float:
        return self.right / self.expected if self.expected else 1.0

    @property
    def perfect(self) -> bool:
        """Every image it should find, and (unless its truth is open) nothing else."""
        return self.recall == 1.0 and (self.precision == 1.0 or self.query in OPEN_TRUTH)


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
        baseline = _nearest_name(named, filtering, query, expected) if query.startswith("place:") else None
        results.append(Measured(query, len(expected), len(found), len(found & expected), baseline))
    return results


def _nearest_name(named: Named, filtering: Filtering, query: str, expected: set[str]) -> float | None:
    """Recall of a place filter that compares the typed name with the nearest named place only (what a
    reverse geocoder gives: Hongkou, not Shanghai), for comparison."""
    from mmdemo.photos.filters import split
    from mmdemo.photos.places import country_code, folded

    typed = split(query)[0].places[0]
    if filtering.photos is None or country_code(folded(typed)):
        return None  # a country is matched by its code either way
    hits = set()
    for item in named.gallery.store.items():
        facts = filtering.photos.facts(named.name, item.hash)
        if facts is not None and folded(facts.place.name) == folded(typed):
            hits.add(item.name)
    return len(hits & expected) / len(expected) if expected else None


def table(results: Sequence[Measured]) -> str:
    """A Markdown table of the figures."""
    lines = [
        "| query | expected | found | precision | recall | recall by the nearest place's name alone |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        base = "" if r.by_nearest_name is None else f"{r.by_nearest_name:.3f}"
        lines.append(f"| `{r.query}` | {r.expected} | {r.found} | {r.precision:.3f} | {r.recall:.3f} | {base} |")
    return "\n".join(lines)
