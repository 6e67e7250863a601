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
