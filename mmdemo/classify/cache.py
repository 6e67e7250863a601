"""Label embeddings cached in memory and in SQLite, keyed by (weights, template set, label).

A label's embedding is its template embeddings averaged and re-normalised, so it depends on the
exact weights, the dtype they run in and the templates. `ClipModel.weights_key` names the first
two; models with random weights have none and are cached in memory only, per loaded instance.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS label_embedding (
    weights TEXT NOT NULL,
    templates TEXT NOT NULL,
    label TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (weights, templates, label)
) WITHOUT ROWID
"""
_STACKED_SETS = 8
_CHUNK = 500  # labels per SELECT, well under SQLite's limit on bound parameters


def templates_key(templates: Sequence[str]) -> str:
    """A short stable name for a template set."""
    return hashlib.sha256("\n".join(templates).encode()).hexdigest()[:16]


class LabelEmbeddingCache:
    """Thread-safe two-level cache; `path=None` keeps it in memory only."""

    def __init__(self, path: Path | None = None):
        self.path = path
        self._memory: dict[tuple[str, str, str], np.ndarray] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        # The last few whole label sets, stacked: a repeated call skips even the per-label lookups.
        self._stacked: OrderedDict[tuple[str, str, tuple[str, ...]], np.ndarray] = OrderedDict()
        self.hits = self.disk_hits = self.misses = 0

    def _connect(self) -> sqlite3.Connection | None:
        if self.path is None:
            return None
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One connection, used under self._lock from whichever worker thread calls.
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")  # readers never see a half-written batch
            self._db.execute(_SCHEMA)
        return self._db

    def get(self, weights: str, templates: str, labels: Sequence[str], persistent: bool) -> dict[str, np.ndarray]:
        """The cached embeddings among `labels` (memory first, then disk when `persistent`)."""
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for label in labels:
                vector = self._memory.get((weights, templates, label))
                if vector is not None:
                    found[label] = vector
            self.hits += len(found)
            missing = [label for label in labels if label not in found]
            db = self._connect() if persistent and missing else None
            for i in range(0, len(missing) if db else 0, _CHUNK):
                chunk = missing[i : i + _CHUNK]
                rows = db.execute(
                    f"SELECT label, vector FROM label_embedding WHERE weights = ? AND templates = ? "
                    f"AND label IN ({','.join('?' * len(chunk))})",
                    (weights, templates, *chunk),
                ).fetchall()
                for label, blob in rows:
                    vector = np.frombuffer(blob, dtype=np.float32)
                    self._memory[(weights, templates, label)] = found[label] = vector
                self.disk_hits += len(rows)
            self.misses += len(labels) - len(found)
        return found

    def put(self, weights: str, templates: str, vectors: dict[str, np.ndarray], persistent: bool) -> None:
        """Remember new embeddings; one transaction on disk, so a crash keeps all or none of them."""
        with self._lock:
            for label, vector in vectors.items():
                self._memory[(weights, templates, label)] = np.ascontiguousarray(vector, dtype=np.float32)
            db = self._connect() if persistent else None
            if db is not None and vectors:
                with db:  # BEGIN ... COMMIT
                    db.execute("BEGIN")
                    db.executemany(
                        "INSERT OR REPLACE INTO label_embedding VALUES (?, ?, ?, ?)",
                        [(weights, templates, label, self._memory[(weights, templates, label)].tobytes())
                         for label in vectors],
                    )  # fmt: skip

    def stacked(self, weights: str, templates: str, labels: tuple[str, ...]) -> np.ndarray | None:
        """The (L, D) matrix for exactly this label set, if it was stored with `keep_stacked`."""
        with self._lock:
            matrix = self._stacked.get((weights, templates, labels))
            if matrix is not None:
                self._stacked.move_to_end((weights, templates, labels))
                self.hits += len(labels)
            return matrix

    def keep_stacked(self, weights: str, templates: str, labels: tuple[str, ...], matrix: np.ndarray) -> None:
        """Remember a whole label set's matrix (a handful are kept, least recently used dropped)."""
        with self._lock:
            self._stacked[(weights, templates, labels)] = matrix
            while len(self._stacked) > _STACKED_SETS:
                self._stacked.popitem(last=False)

    def forget_memory(self) -> None:
        """Drop the in-memory level (the disk level stays)."""
        with self._lock:
            self._memory.clear()
            self._stacked.clear()
