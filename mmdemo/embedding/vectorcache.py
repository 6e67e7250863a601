"""Embeddings cached in memory and in SQLite, keyed by (space, key).

A space names everything a vector depends on besides its key: the exact weights and dtype
(`ClipModel.weights_key`), plus e.g. the prompt templates for label embeddings. Keys are labels,
or content hashes of images. Models with random weights are cached in memory only
(`persistent=False`): their vectors mean nothing to the next load.

The memory level is bounded (`max_bytes`, least recently used dropped): a long-running app sees
every photo anyone ever indexed. A dropped persistent vector is read back from disk when needed;
a dropped in-memory-only one is computed again.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmdemo.files import open_database

if TYPE_CHECKING:
    from mmdemo.config import Settings

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
    """Thread-safe two-level cache; `path=None` keeps it in memory only; `max_bytes=0`: unbounded."""

    def __init__(self, path: Path | None = None, max_bytes: int = 0):
        self.path = path
        self.max_bytes = max_bytes
        self._memory: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()  # least recently used first
        self.memory_bytes = 0
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        # The last few whole key lists, stacked: a repeated call skips even the per-key lookups.
        self._stacked: OrderedDict[tuple[str, tuple[str, ...]], np.ndarray] = OrderedDict()
        self.hits = self.disk_hits = self.misses = 0

    def _connect(self) -> sqlite3.Connection | None:
        if self.path is None:
            return None
        if self._db is None:
            # One connection, used under self._lock from whichever worker thread calls.
            self._db = open_database(self.path, _SCHEMA)
        return self._db

    def get(self, space: str, keys: Sequence[str], persistent: bool) -> dict[str, np.ndarray]:
        """The cached vectors among `keys` (memory first, then disk when `persistent`)."""
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for key in keys:
                vector = self._memory.get((space, key))
                if vector is not None:
                    self._memory.move_to_end((space, key))
                    found[key] = vector
            self.hits += len(found)
            missing = [key for key in dict.fromkeys(keys) if key not in found]
            db = self._connect() if persistent and missing else None
            for i in range(0, len(missing) if db is not None else 0, _CHUNK):
                assert db is not None  # for the type checker: the range is empty without one
                chunk = missing[i : i + _CHUNK]
                rows = db.execute(
                    f"SELECT key, vector FROM vector WHERE space = ? AND key IN ({','.join('?' * len(chunk))})",
                    (space, *chunk),
                ).fetchall()
                for key, blob in rows:
                    found[key] = self._remember((space, key), np.frombuffer(blob, dtype=np.float32))
                self.disk_hits += len(rows)
            self.misses += len(keys) - len(found)
        return found

    def put(self, space: str, vectors: dict[str, np.ndarray], persistent: bool) -> None:
        """Remember new vectors; one transaction on disk, so a crash keeps all or none of them."""
        with self._lock:
            rows = [(key, np.ascontiguousarray(vector, dtype=np.float32)) for key, vector in vectors.items()]
            for key, vector in rows:
                self._remember((space, key), vector)
            db = self._connect() if persistent else None
            if db is not None and rows:
                with db:  # BEGIN ... COMMIT
                    db.execute("BEGIN")
                    db.executemany(
                        "INSERT OR REPLACE INTO vector VALUES (?, ?, ?)",
                        [(space, key, vector.tobytes()) for key, vector in rows],
                    )

    def _remember(self, key: tuple[str, str], vector: np.ndarray) -> np.ndarray:
        """Keep `vector` in memory as most recently used, dropping the least recently used past max_bytes."""
        old = self._memory.pop(key, None)
        if old is not None:
            self.memory_bytes -= old.nbytes
        self._memory[key] = vector
        self.memory_bytes += vector.nbytes
        while self.max_bytes and self.memory_bytes > self.max_bytes and len(self._memory) > 1:
            _, dropped = self._memory.popitem(last=False)
            self.memory_bytes -= dropped.nbytes
        return vector

    def forget(self, scope: str) -> None:
        """Drop every vector of the spaces that end in `|scope` (a private gallery's own: see Gallery)."""
        suffix = f"|{scope}"
        with self._lock:
            for key in [k for k in self._memory if k[0].endswith(suffix)]:
                self.memory_bytes -= self._memory.pop(key).nbytes
            for stacked in [k for k in self._stacked if k[0].endswith(suffix)]:
                del self._stacked[stacked]
            if (db := self._connect()) is not None:
                db.execute("DELETE FROM vector WHERE substr(space, -?) = ?", (len(suffix), suffix))

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


def embedding_cache(settings: Settings) -> VectorCache:
    """The app's embedding cache: `embeddings.sqlite3` in the data dir, memory bounded by the settings."""
    return VectorCache(settings.data_dir / "embeddings.sqlite3", max_bytes=settings.vector_cache_mb * 1_000_000)
