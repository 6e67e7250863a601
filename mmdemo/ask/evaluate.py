"""How much re-ranking with the chat model changes text -> image retrieval: R@1/5/10 of CLIP alone and
after re-ranking CLIP's top K, on the same captions, and the seconds it added per query."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mmdemo.ask.rerank import Candidate, ScoreCache, rerank
from mmdemo.search.evaluate import RetrievalMetrics

if TYPE_CHECKING:
    from mmdemo.chat.pipeline import ChatBackend
    from mmdemo.chat.prompt import ImageBudget
    from mmdemo.search.evaluate import Scored


@dataclass(frozen=True)
class RerankEval:
    """Text -> image metrics before and after the re-rank, and what it cost."""

    clip: RetrievalMetrics
    reranked: RetrievalMetrics
    k: int
    seconds_per_query: float

    def table(self) -> str:
        """A plain-text report: one column before the re-rank, one after."""
        c, r = self.clip, self.reranked
        lines = [f"captions: {c.captions}  images: {c.images}  re-ranked: top {self.k}"]
        lines.append(f"{'':<12}{'CLIP':>10}{'re-ranked':>12}")
        for name, field in (("R@1", "recall_at_1"), ("R@5", "recall_at_5"), ("R@10", "recall_at_10")):
            lines.append(f"{name:<12}{getattr(c, field):>10.4f}{getattr(r, field):>12.4f}")
        lines.append(f"{'median rank':<12}{c.median_rank:>10g}{r.median_rank:>12g}")
        lines.append(f"re-rank cost: {self.seconds_per_query:.2f} s per query")
        return "\n".join(lines)


def _metrics(ranks: np.ndarray, images: int) -> RetrievalMetrics:
    r1, r5, r10 = (float((ranks <= k).mean()) for k in (1, 5, 10))
    return RetrievalMetrics(r1, r5, r10, float(np.median(ranks)), len(ranks), images)


def evaluate_rerank(
    scored: Scored,
    backend: ChatBackend[Any],
    k: int,
    queries: int,
    budget: ImageBudget,
    batch_size: int,
    progress: Callable[[int, int], None] | None = None,
) -> RerankEval:
    """Re-rank CLIP's top `k` for the first `queries` captions; a caption's image beyond the top `k` keeps its rank."""
    similarity, targets = scored.similarity[:queries], scored.targets[:queries]
    order = np.argsort(-similarity, axis=1, kind="stable")
    clip_ranks = 1 + (similarity > similarity[np.arange(len(targets)), targets][:, None]).sum(axis=1)
    reranked, cache, spent = clip_ranks.copy(), ScoreCache(), 0.0
    for q, (row, target) in enumerate(zip(order, targets, strict=True)):
        top = [int(i) for i in row[:k]]
        candidates = [Candidate(scored.images[i], scored.images[i], float(similarity[q, i])) for i in top]
        started = time.monotonic()
        run = rerank(backend, scored.captions[q], candidates, budget, cache, batch_size)
        spent += time.monotonic() - started
        if target in top:
            reranked[q] = 1 + run.order.index(top.index(int(target)))
        if progress:
            progress(q + 1, len(targets))
    images = similarity.shape[1]
    return RerankEval(_metrics(clip_ranks, images), _metrics(reranked, images), k, spent / max(1, len(targets)))
