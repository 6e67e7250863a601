"""Zero-shot classification: label texts through prompt templates into a linear classifier.

`build_classifier` mirrors open_clip's `build_zero_shot_classifier`: every template per label,
embedded in batches, averaged and re-normalised. `cached_classifier` does the same but only
encodes labels the cache has not seen with these weights and templates.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mmdemo.classify.templates import DEFAULT_TEMPLATE
from mmdemo.embedding.vectorcache import VectorCache
from mmdemo.errors import UserFacingError
from mmdemo.i18n import DEFAULT, text

if TYPE_CHECKING:
    from mmdemo.models.clip import ClipModel

__all__ = ["DEFAULT_TEMPLATE", "Classifier", "Prediction", "build_classifier", "cached_classifier", "classify"]


@dataclass(frozen=True)
class Prediction:
    """Scores for one image, best first."""

    scores: dict[str, float]
    multi_label: bool  # True: independent sigmoid scores (SigLIP); False: softmax over labels

    @property
    def top(self) -> tuple[str, float]:
        """Best label and its score."""
        return next(iter(self.scores.items()))

    def top_k(self, k: int) -> list[tuple[str, float]]:
        """The k best (label, score) pairs."""
        return list(self.scores.items())[:k]


@dataclass(frozen=True)
class Classifier:
    """Unit label embeddings (L, D), row-aligned with `labels`, and how many had to be encoded."""

    labels: tuple[str, ...]
    weights: np.ndarray
    encoded: int  # labels encoded by the model for this call; the rest came from the cache


def scoring_rule(clip: ClipModel, language: str = DEFAULT) -> str:
    """How scores are computed for this model: a line for the UI, in `language`."""
    return text("classify.rule_sigmoid" if clip.siglip else "classify.rule_softmax", language)


def parse_labels(typed: str, max_labels: int, max_chars: int, language: str = DEFAULT) -> tuple[list[str], list[str]]:
    """Labels one per line (or comma-separated on one line) -> (unique trimmed labels, notices in `language`).

    With several lines, commas stay inside labels ("pickup truck, red" is one label). Chinese
    commas (，、) separate labels too.
    """
    typed = typed or ""
    separator = r"\n" if "\n" in typed.strip() else r"[,，、]"
    raw = [part.strip() for part in re.split(separator, typed)]
    labels, notices, seen = [], [], set()
    empties = sum(1 for part in raw if not part) if any(raw) else 0
    for label in (part for part in raw if part):
        if len(label) > max_chars:
            raise UserFacingError(key="classify.label_too_long", label=label[:40], n=f"{len(label):,}", limit=max_chars)
        if label.lower() in seen:
            notices.append(text("classify.duplicate_label", language, label=label))
            continue
        seen.add(label.lower())
        labels.append(label)
    if empties > 0:
        notices.append(text("classify.empty_labels", language, n=empties))
    if len(labels) > max_labels:
        raise UserFacingError(key="classify.too_many_labels", n=f"{len(labels):,}", limit=f"{max_labels:,}")
    return labels, notices


LABEL_CHUNK = 64  # labels encoded (x templates) and committed to the cache at a time


def build_classifier(clip: ClipModel, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """(len(labels), D) unit vectors: each label's template embeddings averaged and re-normalised."""
    texts = [template.replace("{}", label) for label in labels for template in templates]
    embedded = clip.encode_texts(texts).reshape(len(labels), len(templates), -1).mean(axis=1)
    return embedded / np.linalg.norm(embedded, axis=1, keepdims=True)


def label_space(clip: ClipModel, templates: Sequence[str]) -> str:
    """Cache space of label embeddings: the weights and the template set."""
    digest = hashlib.sha256("\n".join(templates).encode()).hexdigest()[:16]
    return f"labels|{clip.weights_key}|{digest}"


def cached_classifier(
    clip: ClipModel, labels: Sequence[str], templates: Sequence[str], cache: VectorCache | None
) -> Classifier:
    """`build_classifier`, encoding only the labels `cache` lacks for these weights and templates."""
    if cache is None:
        return Classifier(tuple(labels), build_classifier(clip, labels, templates), len(labels))
    space, persistent, labels = label_space(clip, templates), clip.stable_weights, tuple(labels)
    matrix = cache.stacked(space, labels)
    if matrix is not None:
        return Classifier(labels, matrix, 0)
    found = cache.get(space, labels, persistent)
    missing = [label for label in labels if label not in found]
    # Committed chunk by chunk: ImageNet-1k x 80 templates takes minutes on a CPU, and a crash or
    # restart part-way keeps what was done.
    for start in range(0, len(missing), LABEL_CHUNK):
        chunk = missing[start : start + LABEL_CHUNK]
        fresh = dict(zip(chunk, build_classifier(clip, chunk, templates), strict=True))
        cache.put(space, fresh, persistent)
        found.update(fresh)
    matrix = np.stack([found[label] for label in labels])
    cache.keep_stacked(space, labels, matrix)
    return Classifier(labels, matrix, len(missing))


def scores_from_similarity(similarity: np.ndarray, logit_scale: float, logit_bias: float, sigmoid: bool) -> np.ndarray:
    """Cosine similarities (N, L) -> probabilities: softmax over labels, or per-label sigmoid."""
    logits = similarity * logit_scale + logit_bias
    if sigmoid:
        return 1.0 / (1.0 + np.exp(-logits))
    logits = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def check_labels(clip: ClipModel, labels: Sequence[str]) -> None:
    """Refuse label sets the model's scoring cannot rank."""
    if not labels:
        raise UserFacingError(key="classify.no_labels")
    if not clip.siglip and len(labels) < 2:
        raise UserFacingError(key="classify.two_labels")


def predict(clip: ClipModel, image_vectors: np.ndarray, classifier: Classifier) -> list[Prediction]:
    """Predictions for already-embedded images (N, D) against a classifier."""
    similarity = clip.similarity(image_vectors, classifier.weights)
    probs = scores_from_similarity(similarity, clip.logit_scale, clip.logit_bias, clip.siglip)
    labels = classifier.labels
    return [Prediction({labels[i]: float(row[i]) for i in np.argsort(-row)}, clip.siglip) for row in probs]


def classify(
    clip: ClipModel,
    images: Sequence[Any],
    labels: Sequence[str],
    templates: Sequence[str] = (DEFAULT_TEMPLATE,),
    cache: VectorCache | None = None,
) -> list[Prediction]:
    """Score each PIL image against the labels."""
    check_labels(clip, labels)
    classifier = cached_classifier(clip, labels, templates, cache)
    return predict(clip, clip.encode_images(images), classifier)
