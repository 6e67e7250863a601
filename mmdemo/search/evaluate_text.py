"""Text search, measured: Recall@1/5/10 of CLIP alone, the text alone and the two fused, per language,
and the OCR's character error rate where the truth is known (`python -m mmdemo eval text-search`)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mmdemo.search.ranking import Named, ranked, text_hits
from mmdemo.text.normalize import squash
from mmdemo.text.query import parse

if TYPE_CHECKING:
    from mmdemo.text.stage import TextStage

KS = (1, 5, 10)
RANKERS = ("substring", "clip", "text", "fused")  # substring: the query as typed in the raw OCR text (a baseline)


@dataclass(frozen=True)
class Query:
    """A row of the queries file: what is typed, the file it must find, and (optionally) the text in it."""

    query: str
    file: str
    truth: str = ""
    language: str = ""


@dataclass
class LanguageResult:
    """Ranks of the target per ranker (None: not in the top 10), and the OCR's edits per truth character."""

    ranks: dict[str, list[int | None]] = field(default_factory=lambda: {r: [] for r in RANKERS})
    edits: int = 0
    truth_chars: int = 0

    def recall(self, ranker: str, k: int) -> float:
        ranks = self.ranks[ranker]
        return sum(r is not None and r <= k for r in ranks) / max(len(ranks), 1)

    @property
    def cer(self) -> float | None:
        return self.edits / self.truth_chars if self.truth_chars else None


def read_queries(path: Path) -> list[Query]:
    """The queries file: CSV with a header row, columns query, file, and optionally truth, language."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"query", "file"} <= set(rows[0]):
        raise ValueError(f"{path}: a CSV with the columns query, file (and optionally truth, language)")
    return [Query(r["query"], r["file"], r.get("truth") or "", r.get("language") or "all") for r in rows]


def evaluate(named: Named, text: TextStage, queries: Sequence[Query]) -> dict[str, LanguageResult]:
    """Each query ranked by each ranker over the gallery; results per language (and "all")."""
    results: dict[str, LanguageResult] = {}
    by_name = {item.name: item for item in named.gallery.store.items()}
    raw = {
        name: reading.text.lower() for name, item in by_name.items() if (reading := text.reading(named.name, item.hash))
    }
    for q in queries:
        for language in {q.language, "all"}:
            result = results.setdefault(language, LanguageResult())
            rankings = _rankings(named, text, q.query)
            rankings["substring"] = [name for name, words in raw.items() if q.query.lower() in words][: max(KS)]
            for ranker, names in rankings.items():
                result.ranks[ranker].append(names.index(q.file) + 1 if q.file in names else None)
            if q.truth and (item := by_name.get(q.file)) is not None:
                reading = text.reading(named.name, item.hash)
                result.edits += edit_distance(squash(q.truth), squash(reading.text if reading else ""))
                result.truth_chars += len(squash(q.truth))
    return results


def _rankings(named: Named, text: TextStage, query: str) -> dict[str, list[str]]:
    k = max(KS)
    return {
        "clip": [hit.item.name for _, hit in ranked([named], None, query, None, k, -1.0)],
        "text": [hit.item.name for hit in text_hits([named], text, parse(query), k)],
        "fused": [hit.item.name for _, hit in ranked([named], text, query, None, k, -1.0)],
    }


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between `a` and the closest substring of `b` (the truth inside all the text read)."""
    previous = [0] * (len(b) + 1)  # a substring may start anywhere in b: no cost before it
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
        previous = current
    return min(previous)


def table(results: dict[str, LanguageResult]) -> str:
    """A Markdown table: per language and ranker, R@1/5/10; then the CER per language."""
    lines = ["| language | ranker | queries | R@1 | R@5 | R@10 | OCR CER |", "|---|---|---|---|---|---|---|"]
    for language in sorted(results, key=lambda name: (name == "all", name)):
        result = results[language]
        cer = f"{result.cer:.3f}" if result.cer is not None else "-"
        for ranker in RANKERS:
            recalls = " | ".join(f"{result.recall(ranker, k):.3f}" for k in KS)
            shown = cer if ranker == "fused" else ""
            lines.append(f"| {language} | {ranker} | {len(result.ranks[ranker])} | {recalls} | {shown} |")
    return "\n".join(lines)
