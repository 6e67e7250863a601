"""Embeddings cached in memory and in SQLite, keyed by (space, key).

A space names everything a vector depends on besides its key: the exact weights and dtype
(`ClipModel.weights_key`), plus e.g. the prompt templates for label embeddings. Keys are labels,
or content hashes of images. Models with random weights are cached in memory only
(`persistent=False`): their vectors mean nothing to the next load.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vector (
    space TEXT NOT NULL,
    key TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (space, key)
) WITHOUT ROWID
"""
_STACKED_SETS = 8
_CHUNK = 500  # keys per SELECT, well under SQLite's limit on bound parameters


class VectorCache:
    """Thread-safe two-level cache; `path=None` keeps it in memory only."""

    def __init__(self, path: Path | None = None):
        self.path = path
        self._memory: dict[tuple[str, str], np.ndarray] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        # The last few whole key lists, stacked: a repeated call skips even the per-key lookups.
        self._stacked: OrderedDict[tuple[str, tuple[str, ...]], np.ndarray] = OrderedDict()
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

    def get(self, space: str, keys: Sequence[str], persistent: bool) -> dict[str, np.ndarray]:
        """The cached vectors among `keys` (memory first, then disk when `persistent`)."""
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for key in keys:
                vector = self._memory.get((space, key))
                if vector is not None:
                    found[key] = vector
            self.hits += len(found)
            missing = [key for key in dict.fromkeys(keys) if key not in found]
            db = self._connect() if persistent and missing else None
            for i in range(0, len(missing) if db else 0, _CHUNK):
                chunk = missing[i : i + _CHUNK]
                rows = db.execute(
                    f"SELECT key, vector FROM vector WHERE space = ? AND key IN ({','.join('?' * len(chunk))})",
                    (space, *chunk),
                ).fetchall()
                for key, blob in rows:
                    self._memory[(space, key)] = found[key] = np.frombuffer(blob, dtype=np.float32)
                self.disk_hits += len(rows)
            self.misses += len(keys) - len(found)
        return found

    def put(self, space: str, vectors: dict[str, np.ndarray], persistent: bool) -> None:
        """Remember new vectors; one transaction on disk, so a crash keeps all or none of them."""
        with self._lock:
            for key, vector in vectors.items():
                self._memory[(space, key)] = np.ascontiguousarray(vector, dtype=np.float32)
            db = self._connect() if persistent else None
            if db is not None and vectors:
                with db:  # BEGIN ... COMMIT
                    db.execute("BEGIN")
                    db.executemany(
                        "INSERT OR REPLACE INTO vector VALUES (?, ?, ?)",
                        [(space, key, self._memory[(space, key)].tobytes()) for key in vectors],
                    )

    def stacked(self, space: str, keys: tuple[str, ...]) -> np.ndarray | None:
        """The (N, D) matrix for exactly these keys, if it was stored with `keep_stacked`."""
        with self._lock:
            matrix = self._stacked.get((space, keys))
            if matrix is not None:
                self._stacked.move_to_end((space, keys))
                self.hits += len(keys)
            return matrix

    def keep_stacked(self, space: str, keys: tuple[str, ...], matrix: np.ndarray) -> None:
        """Remember a whole key list's matrix (a handful are kept, least recently used dropped)."""
        with self._lock:
            self._stacked[(space, keys)] = matrix
            while len(self._stacked) > _STACKED_SETS:
                self._stacked.popitem(last=False)
