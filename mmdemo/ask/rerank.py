"""Re-rank CLIP's hits with the chat model: P(yes) to one fixed question about the query, per image.

The question (RERANK_QUESTION) is the only prompt; the score is mmdemo.chat.judge's P(yes).
Scores are cached by (question, image content hash, model), so a repeated query costs nothing.
Ties (a server's coarse yes/no) keep CLIP's order.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mmdemo.chat.pipeline import ChatBackend
from mmdemo.chat.prompt import ImageBudget, to_qwen_messages

RERANK_QUESTION = 'Does this image show "{query}"? Answer yes or no.'
CACHE_ENTRIES = 100_000  # (question, image, model) scores kept, least recently used dropped first


@dataclass(frozen=True)
class Candidate:
    """A CLIP hit to re-rank: its image's content hash (the cache key), a file to read, CLIP's score."""

    key: str
    path: str
    clip_score: float


@dataclass(frozen=True)
class Reranked:
    """The new order (indices into the candidates, best first), P(yes) per candidate, what it cost."""

    order: list[int]
    scores: list[float]
    seconds: float
    cached: int  # scores taken from the cache
    exact: bool  # False: a server without token probabilities answered yes/no (a coarse ranking)


class ScoreCache:
    """P(yes) by (question, image hash, model identity), least recently used dropped first."""

    def __init__(self, entries: int = CACHE_ENTRIES) -> None:
        self.entries = entries
        self._scores: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> float | None:
        with self._lock:
            if (score := self._scores.get(key)) is not None:
                self._scores.move_to_end(key)
            return score

    def put(self, key: tuple[str, str, str], score: float) -> None:
        with self._lock:
            self._scores[key] = score
            while len(self._scores) > self.entries:
                self._scores.popitem(last=False)


def rerank_question(query: str) -> str:
    return RERANK_QUESTION.format(query=" ".join(query.split()))


def judge_messages(path: str, question: str, budget: ImageBudget) -> list[dict[str, Any]]:
    """One Qwen conversation: the image, then the yes/no question."""
    return to_qwen_messages(
        [{"role": "user", "content": {"path": path}}, {"role": "user", "content": question}], budget
    )


def rerank(
    backend: ChatBackend[Any],
    query: str,
    candidates: Sequence[Candidate],
    budget: ImageBudget,
    cache: ScoreCache,
    batch_size: int,
) -> Reranked:
    """Score each candidate (from the cache where it can), and order them by P(yes), CLIP's order on ties."""
    started = time.monotonic()
    question, model = rerank_question(query), backend.identity
    scores: list[float | None] = [cache.get((question, c.key, model)) for c in candidates]
    todo = [i for i, s in enumerate(scores) if s is None]
    exact = True
    if todo:
        judged = backend.yes_scores([judge_messages(candidates[i].path, question, budget) for i in todo], batch_size)
        exact = judged.exact
        for i, score in zip(todo, judged.scores, strict=True):
            scores[i] = score
            if judged.exact:  # a coarse yes/no is not kept: a server that gives probabilities later does better
                cache.put((question, candidates[i].key, model), score)
    final = [float(s) for s in scores if s is not None]
    order = sorted(range(len(candidates)), key=lambda i: (-final[i], i))
    return Reranked(order, final, time.monotonic() - started, len(candidates) - len(todo), exact)
