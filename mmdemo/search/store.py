"""One gallery on disk: SQLite metadata, a FAISS index and thumbnails, committed atomically.

Layout of `root`:
    meta.sqlite3        images (id, hash, name, thumb, width, height, bytes, phash, source; for a video's moment
                        also video, start_s, end_s: one row per moment) + the committed generation
    index.<gen>.faiss   the vector index of generation <gen>
    (thumbnails live in the data dir's media/ folder, which holds images only: see mmdemo.search.thumbs)
    .lock               flock: commits exclusive, reloads shared (several processes may share a gallery)

A commit writes `index.<gen+1>.faiss` (temp file, fsync, rename), then in one SQLite transaction
inserts/deletes the rows and sets the generation to gen+1. A crash before the transaction commits
leaves generation <gen> and its rows: the stray newer index file is deleted at the next open. So
the index and the metadata always match, and opening never recomputes anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from mmdemo.files import open_database
from mmdemo.photos.store import Facts
from mmdemo.search.index import VectorIndex

_SCHEMA = """
CREATE TABLE IF NOT EXISTS image (
    id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    thumb TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    phash TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    video TEXT NOT NULL DEFAULT '',
    start_s REAL NOT NULL DEFAULT -1,
    end_s REAL NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_ADDED_COLUMNS = (  # in the order they were added (an older gallery gets them appended in this order)
    ("phash", "TEXT NOT NULL DEFAULT ''"),
    ("source", "TEXT NOT NULL DEFAULT ''"),
    ("video", "TEXT NOT NULL DEFAULT ''"),
    ("start_s", "REAL NOT NULL DEFAULT -1"),
    ("end_s", "REAL NOT NULL DEFAULT -1"),
)


@dataclass(frozen=True)
class NewImage:
    """An image to commit: what indexing learned of it, before the store gives it an id and a thumbnail path."""

    hash: str  # of its bytes
    name: str
    width: int
    height: int
    bytes: int
    phash: str = ""  # perceptual hash (mmdemo.search.neardup); '' when not taken
    source: str = ""  # the file it was indexed from ('' for uploads: they are not kept)
    video: str = ""  # a video's moment: the video's content hash (the row's own hash is the moment's)
    start: float = -1.0  # ... and the moment's seconds in it
    end: float = -1.0


@dataclass(frozen=True)
class Item:
    """One indexed image."""

    id: int
    hash: str
    name: str
    thumb: str  # path of the stored thumbnail (what the UI shows)
    width: int
    height: int
    bytes: int
    phash: str = ""  # perceptual hash (mmdemo.search.neardup); '' for images indexed before it existed
    source: str = ""  # the file it was indexed from ('' for uploads: they are not kept)
    video: str = ""  # a moment of a video: the video's content hash ('' for an image); its thumb is the keyframe
    start: float = -1.0  # the moment, in seconds from the video's start
    end: float = -1.0

    @property
    def moment(self) -> bool:
        """A video's moment (not an image)."""
        return bool(self.video)


@dataclass(frozen=True)
class Scores:
    """Why a result is where it is: each ranker's own score, and the fused one it is ranked by."""

    clip: float | None = None  # cosine similarity, -1..1 (None: not among CLIP's candidates)
    text: float | None = None  # share of the query found in the image's text, 0..1 (None: no match)
    fused: float = 0.0  # the rank (mmdemo.search.fusion); CLIP's cosine when CLIP ranked alone


@dataclass(frozen=True)
class Hit:
    """One search result: the image, its scores, the text read from it that matched (words marked « »), and
    what its EXIF says."""

    item: Item
    scores: Scores
    matched: str = ""
    facts: Facts | None = None  # its date, camera and place (mmdemo.photos), when read

    @property
    def score(self) -> float:
        """What the results are ordered by (`scores.fused`)."""
        return self.scores.fused

    @property
    def clip(self) -> float | None:
        """CLIP's cosine similarity (None: found by its text alone)."""
        return self.scores.clip


class GalleryStore:
    """A persistent gallery: add/remove/search under one lock, every change committed atomically.

    Its files (the database and the lock file) are opened on first use and closed by `release()`;
    a released store opens them again when used, so an app can hold many galleries with a bounded
    number of files open (mmdemo.search.galleries keeps the most recently used ones open).
    """

    def __init__(self, root: Path, dim: int, ann_threshold: int = 0, thumbs: Path | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # Thumbnails are content-addressed, so galleries of one data dir can share a folder.
        self.thumbs = Path(thumbs) if thumbs else self.root / "thumbs"
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._lockfile: BinaryIO | None = None
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(image)")}
        for column, kind in _ADDED_COLUMNS:  # a gallery from before these existed: same rows, no values
            if column not in columns:
                self._db.execute(f"ALTER TABLE image ADD COLUMN {column} {kind}")
        self._dim, self._ann_threshold = dim, ann_threshold
        with self._file_lock(fcntl.LOCK_EX):
            self._load()
            for stray in self.root.glob("index.*.faiss*"):  # from a commit that never finished
                if stray != self._index_path(self.generation):
                    stray.unlink()

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_database(self.root / "meta.sqlite3")
        return self._conn

    def release(self) -> None:
        """Close the database and the lock file (reopened on the next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._lockfile is not None:
                self._lockfile.close()
                self._lockfile = None

    close = release

    def _load(self) -> None:
        """Read the committed generation: its rows and its index file."""
        self.generation = int(self._state("generation", "0"))
        path = self._index_path(self.generation)
        dim, threshold = self._dim, self._ann_threshold
        self.index = VectorIndex.load(path, dim, threshold) if self.generation else VectorIndex(dim, threshold)
        # The thumbnail's place follows the store's thumbnail folder, whatever path the row recorded.
        rows = self._db.execute("SELECT * FROM image")
        self._items = {row[0]: Item(*self._with_thumb(row)) for row in rows}
        self._by_hash = {item.hash: item for item in self._items.values()}
        self._by_video = {item.video: item for item in self._items.values() if item.video}
        if len(self.index) != len(self._items):
            raise RuntimeError(f"{self.root}: index holds {len(self.index)} vectors for {len(self._items)} rows")

    def _with_thumb(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        return (*row[:3], str(self.thumb_path(row[1])), *row[4:])

    def _sync(self, *, locked: bool = False) -> None:
        """Reload if another process committed since (one SQLite read when nothing changed)."""
        if int(self._state("generation", "0")) == self.generation:
            return
        if locked:  # the caller holds the exclusive lock
            self._load()
            return
        with self._file_lock(fcntl.LOCK_SH):
            self._load()

    @contextlib.contextmanager
    def _file_lock(self, mode: int) -> Iterator[None]:
        # Another process may share this gallery (`python -m mmdemo index` while the app serves,
        # a replica, a ZeroGPU worker): commits hold an exclusive file lock, reloads a shared one.
        with self._lock:
            if self._lockfile is None:
                self._lockfile = open(self.root / ".lock", "a+b")  # noqa: SIM115 (open until release())
            lockfile = self._lockfile
            fcntl.flock(lockfile, mode)
            try:
                yield
            finally:
                fcntl.flock(lockfile, fcntl.LOCK_UN)

    def __len__(self) -> int:
        with self._lock:
            self._sync()
            return len(self._items)

    def thumb_path(self, content_hash: str) -> Path:
        """Where the thumbnail of an image with this content hash lives."""
        return self.thumbs / content_hash[:2] / f"{content_hash}.jpg"

    def video_path(self, content_hash: str) -> Path:
        """Where the browser-playable copy of the video with this content hash lives (beside the thumbnails)."""
        return self.thumbs / "videos" / f"{content_hash}.mp4"

    def by_hash(self, content_hash: str) -> Item | None:
        """The item with these bytes, if indexed."""
        return self._by_hash.get(content_hash)

    def by_video(self, content_hash: str) -> Item | None:
        """A moment of the video with these bytes, if it is indexed."""
        return self._by_video.get(content_hash)

    def item(self, item_id: int) -> Item | None:
        """The item with this id, if indexed."""
        with self._lock:
            self._sync()
            return self._items.get(item_id)

    def items(self) -> list[Item]:
        """Every item, in insertion order."""
        with self._lock:
            self._sync()
            return sorted(self._items.values(), key=lambda item: item.id)

    def add(self, items: Sequence[NewImage], vectors: np.ndarray) -> list[Item]:
        """Commit new images with their vectors.

        Thumbnails must already be at `thumb_path(hash)`. Hashes already present are ignored.
        """
        with self._lock, self._file_lock(fcntl.LOCK_EX):
            self._sync(locked=True)
            fresh = [(new, v) for new, v in zip(items, vectors, strict=True) if new.hash not in self._by_hash]
            if not fresh:
                return []
            next_id = max(self._items, default=0) + 1
            added = [
                Item(
                    next_id + i,
                    n.hash,
                    n.name,
                    str(self.thumb_path(n.hash)),
                    n.width,
                    n.height,
                    n.bytes,
                    n.phash,
                    n.source,
                    n.video,
                    n.start,
                    n.end,
                )
                for i, (n, _) in enumerate(fresh)
            ]
            self.index.add(np.array([it.id for it in added]), np.stack([v for _, v in fresh]))
            self._commit(added, [])
            return added

    def remove(self, ids: Sequence[int]) -> list[Item]:
        """Remove images by id (thumbnails are kept: they are content-addressed and cheap)."""
        with self._lock, self._file_lock(fcntl.LOCK_EX):
            self._sync(locked=True)
            gone = [self._items[i] for i in ids if i in self._items]
            if gone:
                self.index.remove(np.array([it.id for it in gone]))
                self._commit([], gone)
            return gone

    def search(
        self, query: np.ndarray, k: int, min_score: float = -1.0, allowed: np.ndarray | None = None
    ) -> list[Hit]:
        """The k best images for a unit query vector, best first, at least `min_score` (among `allowed` ids)."""
        with self._lock:
            self._sync()
            scores, ids = self.index.search(query, k, allowed)
            return [
                Hit(self._items[int(i)], Scores(clip=float(s), fused=float(s)))
                for s, i in zip(scores[0], ids[0], strict=True)
                if i >= 0 and s >= min_score
            ]

    def _commit(self, added: list[Item], removed: list[Item]) -> None:
        try:
            self._write(added, removed)
        except BaseException:
            # Disk full, interrupted...: drop the uncommitted in-memory change with the file.
            self._index_path(self.generation + 1).unlink(missing_ok=True)
            self._load()
            raise

    def _write(self, added: list[Item], removed: list[Item]) -> None:
        generation = self.generation + 1
        self.index.save(self._index_path(generation))
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                f"INSERT INTO image VALUES ({', '.join('?' * 12)})",
                [astuple(it) for it in added],  # the columns in the fields' order
            )
            self._db.executemany("DELETE FROM image WHERE id = ?", [(it.id,) for it in removed])
            self._db.execute("INSERT OR REPLACE INTO state VALUES ('generation', ?)", (str(generation),))
        old, self.generation = self._index_path(self.generation), generation
        old.unlink(missing_ok=True)
        for it in added:
            self._items[it.id] = it
            self._by_hash[it.hash] = it
            if it.video:
                self._by_video.setdefault(it.video, it)
        for it in removed:
            del self._items[it.id]
            del self._by_hash[it.hash]
        if any(it.video for it in removed):  # another moment of the video stands for it, if one is left
            self._by_video = {item.video: item for item in self._items.values() if item.video}

    def _state(self, key: str, default: str) -> str:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _index_path(self, generation: int) -> Path:
        return self.root / f"index.{generation}.faiss"
