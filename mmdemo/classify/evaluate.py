"""Zero-shot accuracy on an image folder with one subfolder per class (ImageFolder layout)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmdemo.classify.batch import classify_files
from mmdemo.embedding.images import IMAGE_SUFFIXES
from mmdemo.embedding.ingest import ImageFile
from mmdemo.embedding.vectorcache import VectorCache
from mmdemo.errors import UserFacingError

if TYPE_CHECKING:
    from mmdemo.models.clip import ClipModel


@dataclass(frozen=True)
class ZeroShotMetrics:
    """Top-1/top-5 accuracy, accuracy per class, and the confusion matrix (rows: true class)."""

    classes: tuple[str, ...]
    top1: float
    top5: float
    per_class: dict[str, float]
    confusion: np.ndarray  # (C, C) counts, confusion[true, predicted]
    count: int

    def table(self) -> str:
        """A plain-text report."""
        lines = [f"images: {self.count}", f"top-1: {self.top1:.4f}", f"top-5: {self.top5:.4f}", "per class:"]
        lines += [f"  {name:<24} {acc:.4f}" for name, acc in self.per_class.items()]
        return "\n".join(lines)


def image_folder(folder: Path) -> tuple[list[ImageFile], list[int], tuple[str, ...]]:
    """Files, their class index, and class folder names (sorted) of an ImageFolder tree."""
    classes = tuple(sorted(d.name for d in Path(folder).iterdir() if d.is_dir()))
    if len(classes) < 2:
        raise UserFacingError(f"{folder} needs one subfolder per class (at least two).")
    files, targets = [], []
    for index, name in enumerate(classes):
        for path in sorted((Path(folder) / name).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                files.append(ImageFile(str(path), f"{name}/{path.name}"))
                targets.append(index)
    return files, targets, classes


def zeroshot_metrics(scores: np.ndarray, targets: Sequence[int], classes: Sequence[str]) -> ZeroShotMetrics:
    """Metrics from scores (N, C) and true class indices (N,)."""
    truth = np.asarray(targets)
    ranked = np.argsort(-scores, axis=1)
    top1 = ranked[:, 0] == truth
    top5 = (ranked[:, :5] == truth[:, None]).any(axis=1)
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(confusion, (truth, ranked[:, 0]), 1)
    per_class = {
        name: float(top1[truth == i].mean()) if (truth == i).any() else float("nan") for i, name in enumerate(classes)
    }
    return ZeroShotMetrics(tuple(classes), float(top1.mean()), float(top5.mean()), per_class, confusion, len(targets))


def evaluate_folder(
    clip: ClipModel, folder: Path, templates: Sequence[str], max_pixels: int, cache: VectorCache | None = None
) -> ZeroShotMetrics:
    """Classify every image of `folder` against its class names (underscores read as spaces)."""
    files, targets, classes = image_folder(folder)
    labels = [name.replace("_", " ") for name in classes]
    result = classify_files(clip, files, labels, templates, max_pixels, cache)
    kept = {name: i for i, (name, _) in enumerate(result.predictions)}
    scores = np.array([[p.scores[label] for label in labels] for _, p in result.predictions])
    kept_targets = [t for f, t in zip(files, targets, strict=True) if f.name in kept]
    return zeroshot_metrics(scores, kept_targets, classes)


def confusion_png(metrics: ZeroShotMetrics, path: Path, cell: int = 28) -> Path:
    """Draw the row-normalised confusion matrix as a heat map PNG (Pillow only)."""
    from PIL import Image, ImageDraw

    n = len(metrics.classes)
    margin = 8 + 7 * max(len(c) for c in metrics.classes)
    size = (margin + n * cell + 8, margin + n * cell + 8)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    rows = metrics.confusion / np.maximum(metrics.confusion.sum(axis=1, keepdims=True), 1)
    draw.text((4, 4), "rows: true class / columns: predicted", fill="black")
    for i, name in enumerate(metrics.classes):
        draw.text((4, margin + i * cell + cell // 3), name, fill="black")  # true class, left
        draw.text((margin + i * cell + 2, margin - 28 + (i % 2) * 12), name[:6], fill="black")  # predicted, top
        for j in range(n):
            shade = int(255 * (1 - rows[i, j]))
            box = (margin + j * cell, margin + i * cell, margin + (j + 1) * cell - 1, margin + (i + 1) * cell - 1)
            draw.rectangle(box, fill=(shade, shade, 255))
            if metrics.confusion[i, j]:
                color = "white" if rows[i, j] > 0.5 else "black"
                draw.text((box[0] + 3, box[1] + cell // 3), str(metrics.confusion[i, j]), fill=color)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
