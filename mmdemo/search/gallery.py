"""An in-memory searchable gallery: image paths, their CLIP vectors, and a FAISS index.

Like rclip's `RClip(model, db)`, the parts are passed in: the gallery gets a CLIP model and
owns only its index.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmdemo.errors import UserFacingError
from mmdemo.images import IMAGE_SUFFIXES, BadImageError, Skipped, open_image


@dataclass(frozen=True)
class Hit:
    """One search result."""

    path: str
    name: str
    score: float  # cosine similarity, -1..1


@dataclass(frozen=True)
class AddReport:
    """What an `add` did: names indexed, and files skipped with the reason."""

    added: tuple[str, ...]
    skipped: tuple[Skipped, ...] = field(default=())


class Gallery:
    """Images and their embeddings in an exact inner-product FAISS index (ids = row numbers)."""

    def __init__(self, clip: Any, max_pixels: int):
        import faiss

        self.clip = clip
        self.max_pixels = max_pixels
        self._index = faiss.IndexFlatIP(clip.embed_dim)
        self._items: list[tuple[str, str]] = []  # (path, display name), row-aligned with the index
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, paths: Iterable[str | Path], names: Iterable[str] | None = None) -> AddReport:
        """Decode, embed and index images; unreadable files are skipped with their reason.

        Works one CLIP batch at a time, so only that many decoded images are in memory at once.
        """
        paths = [str(p) for p in paths]
        names = list(names) if names is not None else [Path(p).name for p in paths]
        added: list[str] = []
        skipped: list[Skipped] = []
        step = self.clip.batch_size
        for i in range(0, len(paths), step):
            images, kept = [], []
            for path, name in zip(paths[i : i + step], names[i : i + step], strict=True):
                try:
                    images.append(open_image(path, self.max_pixels, name))
                    kept.append((path, name))
                except BadImageError as exc:
                    skipped.append(Skipped(exc.name, exc.reason))
            if images:
                vectors = self.clip.encode_images(images)
                with self._lock:
                    self._index.add(vectors)
                    self._items.extend(kept)
                added += [name for _, name in kept]
        return AddReport(tuple(added), tuple(skipped))

    def add_folder(self, folder: str | Path) -> AddReport:
        """Index every image file below `folder` (recursively, sorted by path)."""
        files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        return self.add(files)

    def search_vector(self, query: np.ndarray, k: int) -> list[Hit]:
        """The k nearest images to a unit query vector, best first."""
        with self._lock:
            if not self._items:
                return []
            scores, rows = self._index.search(query.reshape(1, -1).astype(np.float32), min(k, len(self._items)))
            return [Hit(*self._items[r], float(s)) for s, r in zip(scores[0], rows[0], strict=True) if r >= 0]

    def search_text(self, query: str, k: int = 12) -> list[Hit]:
        """Images that best match a description."""
        if not query.strip():
            raise UserFacingError("Type what you are looking for, e.g. 'a cat on a sofa'.")
        return self.search_vector(self.clip.encode_texts([query.strip()])[0], k)


def merge_hits(*groups: list[Hit], k: int) -> list[Hit]:
    """Best k of several result lists."""
    return sorted((h for g in groups for h in g), key=lambda h: h.score, reverse=True)[:k]
