"""Retrieval quality both ways, as the field's benchmark tools report it: text -> image (each
caption's own image) and image -> text (any of the image's captions), Recall@1/5/10 and median rank."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmdemo.embedding.ingest import ImageFile, embed_files
from mmdemo.errors import UserFacingError

if TYPE_CHECKING:
    from mmdemo.models.clip import ClipModel


@dataclass(frozen=True)
class RetrievalMetrics:
    """Recall@1/5/10 (fraction of queries whose target ranks within K) and the median rank (1 = best).
    Text -> image: `captions` queries among `images` candidates; image -> text the other way round."""

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


@dataclass(frozen=True)
class BothWays:
    """Text -> image and image -> text metrics of one run."""

    text_to_image: RetrievalMetrics
    image_to_text: RetrievalMetrics

    def table(self) -> str:
        """A plain-text report, one column per direction."""
        t, i = self.text_to_image, self.image_to_text
        rows = [
            ("", "text->image", "image->text"),
            ("R@1", t.recall_at_1, i.recall_at_1),
            ("R@5", t.recall_at_5, i.recall_at_5),
            ("R@10", t.recall_at_10, i.recall_at_10),
        ]
        lines = [f"captions: {t.captions}  images: {t.images}"]
        lines += [
            f"{a:<12}{b:>12}{c:>12}" if isinstance(b, str) else f"{a:<12}{b:>12.4f}{c:>12.4f}" for a, b, c in rows
        ]
        lines.append(f"{'median rank':<12}{t.median_rank:>12g}{i.median_rank:>12g}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"text_to_image": asdict(self.text_to_image), "image_to_text": asdict(self.image_to_text)}


def image_to_text_metrics(similarity: np.ndarray, targets: np.ndarray) -> RetrievalMetrics:
    """Image -> text metrics from the same caption x image similarities (C, I) and caption targets (C,).

    An image's rank is 1 + the number of captions scoring strictly higher than the best of its own
    captions (it is found as soon as any of them is). Images without a caption are not queries.
    """
    by_image = similarity.T  # (I, C)
    own = np.zeros(by_image.shape, dtype=bool)
    own[targets, np.arange(len(targets))] = True
    queries = own.any(axis=1)
    best_own = np.where(own, by_image, -np.inf).max(axis=1)
    ranks = (1 + (np.where(own, -np.inf, by_image) > best_own[:, None]).sum(axis=1))[queries]
    return RetrievalMetrics(
        float((ranks <= 1).mean()),
        float((ranks <= 5).mean()),
        float((ranks <= 10).mean()),
        float(np.median(ranks)),
        len(targets),
        int(queries.sum()),
    )


def read_captions(path: Path) -> list[tuple[str, str]]:
    """(image file name, caption) rows of a CSV with `image` and `caption` columns."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"image", "caption"} <= set(reader.fieldnames):
            raise UserFacingError(f"{path} needs 'image' and 'caption' columns; it has {reader.fieldnames}.")
        return [(row["image"], row["caption"]) for row in reader]


@dataclass(frozen=True)
class Scored:
    """Caption x image similarities (C, I), each caption's image column, the image files, the captions."""

    similarity: np.ndarray
    targets: np.ndarray
    images: list[str]
    captions: list[str]


def score_retrieval(clip: ClipModel, images: Path, captions: Path, max_pixels: int) -> Scored:
    """Embed every captioned image in `images` and every caption; their similarities."""
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
    texts = [text for _, text in pairs]
    similarity = clip.similarity(clip.encode_texts(texts), np.concatenate(vectors))
    return Scored(similarity, np.array([c for c, _ in pairs]), [str(images / name) for name in kept], texts)


def evaluate_retrieval(clip: ClipModel, images: Path, captions: Path, max_pixels: int) -> BothWays:
    """Embed every captioned image in `images` and every caption, then rank both ways."""
    scored = score_retrieval(clip, images, captions, max_pixels)
    return BothWays(
        retrieval_metrics(scored.similarity, scored.targets), image_to_text_metrics(scored.similarity, scored.targets)
    )
