"""Zero-shot classification: label texts through prompt templates into a linear classifier.

`build_classifier` mirrors open_clip's `build_zero_shot_classifier`: every template per label,
embedded, averaged and re-normalised. Templates are data.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmdemo.errors import UserFacingError

DEFAULT_TEMPLATE = "a photo of a {}."


@dataclass(frozen=True)
class Prediction:
    """Scores for one image, best first."""

    scores: dict[str, float]
    multi_label: bool  # True: independent sigmoid scores (SigLIP); False: softmax over labels

    @property
    def top(self) -> tuple[str, float]:
        """Best label and its score."""
        return next(iter(self.scores.items()))


def parse_labels(text: str, max_labels: int, max_chars: int) -> tuple[list[str], list[str]]:
    """Comma- or newline-separated labels -> (unique trimmed labels, notices about what was dropped)."""
    raw = [part.strip() for part in re.split(r"[,\n]", text or "")]
    labels, notices, seen = [], [], set()
    empties = sum(1 for part in raw if not part) if any(raw) else 0
    for label in (part for part in raw if part):
        if len(label) > max_chars:
            raise UserFacingError(f"Label '{label[:40]}...' is {len(label)} characters; the limit is {max_chars}.")
        if label.lower() in seen:
            notices.append(f"dropped duplicate label '{label}'")
            continue
        seen.add(label.lower())
        labels.append(label)
    if empties > 0:
        notices.append(f"dropped {empties} empty label(s)")
    if len(labels) > max_labels:
        raise UserFacingError(f"{len(labels)} labels given; the limit is {max_labels}.")
    return labels, notices


def build_classifier(clip: Any, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """(len(labels), D) unit vectors: each label's template embeddings averaged and re-normalised."""
    texts = [template.format(label) for label in labels for template in templates]
    embedded = clip.encode_texts(texts).reshape(len(labels), len(templates), -1).mean(axis=1)
    return embedded / np.linalg.norm(embedded, axis=1, keepdims=True)


def scores_from_similarity(similarity: np.ndarray, logit_scale: float, logit_bias: float, sigmoid: bool) -> np.ndarray:
    """Cosine similarities (N, L) -> probabilities: softmax over labels, or per-label sigmoid."""
    logits = similarity * logit_scale + logit_bias
    if sigmoid:
        return 1.0 / (1.0 + np.exp(-logits))
    logits = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def classify(
    clip: Any, images: Sequence[Any], labels: Sequence[str], templates: Sequence[str] = (DEFAULT_TEMPLATE,)
) -> list[Prediction]:
    """Score each PIL image against the labels."""
    if not clip.siglip and len(labels) < 2:
        raise UserFacingError(
            "Give at least two labels: CLIP's scores are a softmax over the labels, so a single label "
            "always scores 100%."
        )
    classifier = build_classifier(clip, labels, templates)
    probs = scores_from_similarity(
        clip.encode_images(images) @ classifier.T, clip.logit_scale, clip.logit_bias, clip.siglip
    )
    predictions = []
    for row in probs:
        order = np.argsort(-row)
        predictions.append(Prediction({labels[i]: float(row[i]) for i in order}, clip.siglip))
    return predictions
