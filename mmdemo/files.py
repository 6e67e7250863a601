"""File-system writes and deletes that cannot leave their folder.

Every path the app writes or removes on a visitor's behalf is built from a folder it owns and
names it generated (a hashed session key, a random token, a content hash). These helpers check
that once more on the resolved path, so that a future bug refuses instead of deleting or writing
somewhere else: `Path("/data") / "/etc"` *is* `/etc`, and `..` or a symlink can climb out too.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path


class OutsideFolderError(PermissionError):
    """A path that would leave the folder it must stay in."""


def session_key(session_id: str | None) -> str:
    """A file-name-safe key for a session id the client chose: 32 hex characters, whatever it sent
    (an absolute path, `..`, NUL, 10 kB of text). The same id always gives the same key."""
    return hashlib.sha256((session_id or "api").encode("utf-8", "surrogatepass")).hexdigest()[:32]


def inside(root: Path, *parts: str | Path) -> Path:
    """`root / parts`, resolved, after checking it lies strictly below resolved `root`.

    Raises OutsideFolderError otherwise (an absolute part, `..`, a symlink out, or `root` itself).
    """
    base = Path(root).resolve()
    try:
        path = base.joinpath(*parts).resolve()
    except (ValueError, OSError) as exc:  # a NUL byte, a name too long
        raise OutsideFolderError(f"not a usable path below {base}: {exc}") from None
    if path == base or not path.is_relative_to(base):
        raise OutsideFolderError(f"{path} is not inside {base}")
    return path


def remove_tree(root: Path, *parts: str | Path) -> None:
    """Delete the folder (or file) `root / parts`, only when it is strictly inside `root`; a missing
    one is fine."""
    path = inside(root, *parts)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def link_or_copy(source: Path, target: Path) -> None:
    """`target` as a hard link to `source` (no bytes copied), else a copy (another filesystem, links refused)."""
    import os

    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def open_database(path: Path, schema: str = "", timeout: float = 5.0) -> sqlite3.Connection:
    """A SQLite database (its folder made) as mmdemo uses each: one connection shared by threads under the
    caller's lock, autocommit (transactions are explicit `BEGIN`s), WAL (readers never see a half-written
    batch, and other processes read while one writes), `schema` applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout)
    conn.execute("PRAGMA journal_mode=WAL")
    if schema:
        conn.executescript(schema)
    return conn


class HashedStore:
    """What a stage read from a gallery's images, by content hash, in one SQLite file of its own (`FILE` in
    `root`, `SCHEMA`, rows in `TABLE` keyed by `hash`): opened on first use, closed by `release()` and opened
    again when used; safe to share between threads. The stages' stores (text, photo facts) are these."""

    FILE = ""
    SCHEMA = ""
    TABLE = ""
    CHUNK = 500  # hashes per SELECT

    def __init__(self, root: Path):
        self.root = Path(root)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.writes = 0  # this process's commits: with SQLite's data_version, tells a cached table it is stale

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_database(self.root / self.FILE, self.SCHEMA)
        return self._conn

    def release(self) -> None:
        """Close the database (reopened on the next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def version(self) -> tuple[int, int]:
        """Changes when anything was written, by this process or another."""
        with self._lock:
            return self.writes, int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def known(self, hashes: Iterable[str]) -> set[str]:
        """The hashes already read (or found unreadable)."""
        wanted, found = list(hashes), set()
        with self._lock:
            for start in range(0, len(wanted), self.CHUNK):
                part = wanted[start : start + self.CHUNK]
                marks = ",".join("?" * len(part))
                found |= {
                    r[0] for r in self._db.execute(f"SELECT hash FROM {self.TABLE} WHERE hash IN ({marks})", part)
                }
        return found
