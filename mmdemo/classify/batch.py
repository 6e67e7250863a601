"""Classify many image files at once: a table of top-1 / top-5 per image, and its CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmdemo.classify.zeroshot import Classifier, Prediction, cached_classifier, check_labels, predict
from mmdemo.embedding.images import Skipped
from mmdemo.embedding.ingest import ImageFile, embed_files
from mmdemo.embedding.vectorcache import VectorCache

if TYPE_CHECKING:
    from mmdemo.models.clip import ClipModel

COLUMNS = ("image", "top-1", "score", "top-5")


@dataclass(frozen=True)
class BatchResult:
    """Predictions per image name (input order), files skipped, and the classifier used."""

    predictions: tuple[tuple[str, Prediction], ...]
    skipped: tuple[Skipped, ...]
    classifier: Classifier

    def rows(self, k: int = 5) -> list[list[Any]]:
        """Table rows: image, top-1 label, its score, and the top-k as 'label (score)'."""
        return [
            [name, p.top[0], round(p.top[1], 4), "; ".join(f"{label} ({score:.3f})" for label, score in p.top_k(k))]
            for name, p in self.predictions
        ]

    def to_csv(self, k: int = 5) -> str:
        """The table as CSV text, with a header row."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        writer.writerows(self.rows(k))
        return out.getvalue()


def classify_files(
    clip: ClipModel,
    files: Sequence[ImageFile],
    labels: Sequence[str],
    templates: Sequence[str],
    max_pixels: int,
    cache: VectorCache | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> BatchResult:
    """Classify image files; unreadable ones are skipped with their reason, the rest classified.

    `on_batch(n)` is called after each model batch with the number of files it handled.
    """
    check_labels(clip, labels)
    classifier = cached_classifier(clip, labels, templates, cache)
    predictions: list[tuple[str, Prediction]] = []
    skipped: list[Skipped] = []
    for batch in embed_files(clip, files, max_pixels, path_of=lambda f: f):
        predictions += zip((f.name for f in batch.items), predict(clip, batch.vectors, classifier), strict=True)
        skipped += batch.skipped
        if on_batch:
            on_batch(len(batch.items) + len(batch.skipped))
    return BatchResult(tuple(predictions), tuple(skipped), classifier)
