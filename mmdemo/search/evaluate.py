"""Text -> image retrieval quality: Recall@K and median rank of each caption's own image."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmdemo.errors import UserFacingError
from mmdemo.ingest import ImageFile, embed_files


@dataclass(frozen=True)
class RetrievalMetrics:
    """Recall@1/5/10 (fraction of captions whose image ranks within K) and the median rank (1 = best)."""

    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    median_rank: float
    captions: int
    images: int

    def table(self) -> str:
        """A plain-text report."""
        return "\n".join(
            [
                f"captions: {self.captions}  images: {self.images}",
                f"R@1:  {self.recall_at_1:.4f}",
                f"R@5:  {self.recall_at_5:.4f}",
                f"R@10: {self.recall_at_10:.4f}",
                f"median rank: {self.median_rank:g}",
            ]
        )


def retrieval_metrics(similarity: np.ndarray, targets: np.ndarray) -> RetrievalMetrics:
    """Metrics from caption x image similarities (C, I) and each caption's image column (C,).

    A caption's rank is 1 + the number of images scoring strictly higher than its own image.
    """
    own = similarity[np.arange(len(targets)), targets]
    ranks = 1 + (similarity > own[:, None]).sum(axis=1)
    return RetrievalMetrics(
        float((ranks <= 1).mean()),
        float((ranks <= 5).mean()),
        float((ranks <= 10).mean()),
        float(np.median(ranks)),
        len(targets),
        similarity.shape[1],
    )


def read_captions(path: Path) -> list[tuple[str, str]]:
    """(image file name, caption) rows of a CSV with `image` and `caption` columns."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"image", "caption"} <= set(reader.fieldnames):
            raise UserFacingError(f"{path} needs 'image' and 'caption' columns; it has {reader.fieldnames}.")
        return [(row["image"], row["caption"]) for row in reader]


def evaluate_retrieval(clip: Any, images: Path, captions: Path, max_pixels: int) -> RetrievalMetrics:
    """Embed every captioned image in `images` and every caption, then rank."""
    rows = read_captions(captions)
    names = sorted({name for name, _ in rows if (images / name).is_file()})
    if not names:
        raise UserFacingError(f"None of the images named in {captions} is in {images}.")
    files = [ImageFile(str(images / name), name) for name in names]
    kept, vectors = [], []
    for batch in embed_files(clip, files, max_pixels, path_of=lambda f: f):
        kept += [f.name for f in batch.items]
        vectors.append(batch.vectors)
    column = {name: i for i, name in enumerate(kept)}
    pairs = [(column[name], text) for name, text in rows if name in column]
    texts = clip.encode_texts([text for _, text in pairs])
    similarity = clip.similarity(texts, np.concatenate(vectors))
    return retrieval_metrics(similarity, np.array([c for c, _ in pairs]))
