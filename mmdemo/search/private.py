"""Who holds which private gallery: a registry in the data dir, shared by every process that serves it.

A private gallery is a page session's uploads or an agent's collection. Its secret token is known
only to its holder; on disk it is named by a key derived from the token (`gallery_key`), so that
neither folder names nor image URLs give the token away. The registry keeps, per key: which kind it
is, a hash of the client that made it, and when it was made and last used. That makes three things
hold across processes — the replicas of a deployment and a restarted app:

- a token made on one replica is known on every other (an MCP agent carries no affinity cookie);
- the caps count every gallery of the data dir: in total, and per client;
- the sweep deletes galleries unused for `idle_s`, and folders that no entry owns (left by a crash,
  or by an app from before the registry), whichever replica runs it.

SQLite does the locking between processes (each change is one transaction; `BEGIN IMMEDIATE`
makes count-then-insert atomic), as the gallery stores do. The sweep and `create` also take an
exclusive `flock` on `private.lock`, so that a sweep never removes the folder of a gallery being
made: its entry is written before its folder, under the same lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mmdemo.embedding.images import Skipped
from mmdemo.errors import UserFacingError
from mmdemo.files import open_database

T = TypeVar("T")

log = logging.getLogger(__name__)

KINDS = ("page", "agent")
ORPHAN_GRACE_S = 600.0  # a folder without an entry is left alone this long (an older app may be writing it)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gallery (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    created REAL NOT NULL,
    used REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS gallery_owner ON gallery (owner);
"""


def gallery_key(token: str) -> str:
    """The on-disk name of the private gallery with this token: 32 hex characters of its SHA-256."""
    if not (isinstance(token, str) and token.isascii() and token.isalnum()):
        raise ValueError("a gallery token is ASCII letters and digits")
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def owner_key(client: str) -> str:
    """How the registry names a client (a user name or an address: personal data, so only its hash is kept)."""
    return hashlib.sha256(client.encode("utf-8", "surrogatepass")).hexdigest()[:24]


@dataclass(frozen=True)
class Caps:
    """How many private galleries may exist: in total, per client; and how long an unused one lives."""

    total: int
    per_client: int
    idle_s: float


def within_cap(named: Sequence[tuple[T, str]], held: int, limit: int) -> tuple[list[tuple[T, str]], list[Skipped]]:
    """The (file, name) pairs a gallery holding `held` images may still take under `limit`, and the rest as
    skipped with why; UserFacingError when it is full already."""
    if held >= limit:
        raise UserFacingError(key="private.gallery_full", n=held, limit=limit)
    room = limit - held
    return list(named[:room]), [Skipped.keyed(name, "skip.gallery_full", limit=limit) for _, name in named[room:]]


class PrivateRegistry:
    """The private galleries of one data dir (see the module docstring). `remove_folders(key)` deletes
    a gallery's files; the registry calls it for what it sweeps."""

    def __init__(self, data_dir: Path, caps: Caps, remove_folders: Callable[[str], None]) -> None:
        self.caps, self.remove_folders = caps, remove_folders
        data_dir.mkdir(parents=True, exist_ok=True)
        self._path, self._lock_path = data_dir / "private.sqlite3", data_dir / "private.lock"
        self._db = open_database(self._path, _SCHEMA, timeout=30)
        self._lock = threading.Lock()  # one statement sequence at a time on the one connection

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """This process's lock, the file lock every process takes, then an immediate (write) transaction."""
        with self._lock, self._lock_path.open("a+b") as lockfile:
            fcntl.flock(lockfile, fcntl.LOCK_EX)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def create(self, kind: str, client: str) -> str:
        """A new gallery's token, registered to `client`; UserFacingError beyond a cap."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        owner, now = owner_key(client), time.time()
        with self._exclusive():
            self._expire(now)
            (total,) = self._db.execute("SELECT COUNT(*) FROM gallery").fetchone()
            if total >= self.caps.total:
                log.warning("refused a private gallery: the data dir holds %d (MMDEMO_MAX_GALLERIES)", total)
                raise UserFacingError(key="private.full", limit=self.caps.total)
            (mine,) = self._db.execute("SELECT COUNT(*) FROM gallery WHERE owner = ?", (owner,)).fetchone()
            if mine >= self.caps.per_client:
                raise UserFacingError(key="private.client_full", limit=self.caps.per_client)
            token = secrets.token_hex(16)
            self._db.execute("INSERT INTO gallery VALUES (?, ?, ?, ?, ?)", (gallery_key(token), kind, owner, now, now))
        return token

    def touch(self, token: str) -> bool:
        """Mark the gallery with this token used now; False when there is none (never made, swept, removed)."""
        try:
            key = gallery_key(token)
        except ValueError:
            return False
        now = time.time()
        with self._lock:
            changed = self._db.execute(
                "UPDATE gallery SET used = ? WHERE key = ? AND used >= ?", (now, key, now - self.caps.idle_s)
            ).rowcount
        return changed > 0

    def owner(self, key: str) -> str | None:
        """The (hashed) client that made the gallery with this key; None when there is none."""
        with self._lock:
            row = self._db.execute("SELECT owner FROM gallery WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def forget(self, key: str) -> None:
        """Remove the entry of the gallery with this key (its files are the caller's to remove)."""
        with self._lock:
            self._db.execute("DELETE FROM gallery WHERE key = ?", (key,))

    def sweep(self, folders: Callable[[], dict[str, float]], now: float | None = None) -> list[str]:
        """Delete galleries unused for `idle_s`, and the folders (named by key, with their last change time,
        as `folders()` lists them) that no entry owns; the keys removed."""
        now = time.time() if now is None else now
        with self._exclusive():
            stale = self._expire(now)
            owned = {row[0] for row in self._db.execute("SELECT key FROM gallery")}
            orphans = [key for key, changed in folders().items() if key not in owned and now - changed > ORPHAN_GRACE_S]
            for key in dict.fromkeys([*stale, *orphans]):
                self.remove_folders(key)
        if stale or orphans:
            log.info("swept %d unused private galleries and %d orphaned folders", len(stale), len(orphans))
        return [*stale, *orphans]

    def _expire(self, now: float) -> list[str]:
        """Drop the entries unused for `idle_s` (inside a transaction); their keys (folders not yet removed)."""
        cutoff = now - self.caps.idle_s
        stale = [row[0] for row in self._db.execute("SELECT key FROM gallery WHERE used < ?", (cutoff,))]
        self._db.execute("DELETE FROM gallery WHERE used < ?", (cutoff,))
        return stale

    def close(self) -> None:
        with self._lock:
            self._db.close()
