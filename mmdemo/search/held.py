"""Per-gallery databases held open, the least recently used closed beyond a bound.

Each open SQLite database holds three files (the database, its WAL and shared memory): a flood of
agents' collections must not add up to the process's open-files limit. The library's stays open.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from mmdemo.search.stages import LIBRARY

OPEN_STORES = 8  # held open at most besides the library's


class Releasable(Protocol):
    def release(self) -> None: ...


S = TypeVar("S", bound=Releasable)


class HeldStores(Generic[S]):
    """`get(gallery)` opens a gallery's store once, and closes the least recently used beyond `keep`."""

    def __init__(self, open_store: Callable[[str], S], keep: int = OPEN_STORES):
        self._open, self.keep = open_store, keep
        self._stores: OrderedDict[str, S] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, gallery: str) -> S:
        with self._lock:
            if gallery not in self._stores:
                self._stores[gallery] = self._open(gallery)
            self._stores.move_to_end(gallery)
            store = self._stores[gallery]  # the most recent: never among those closed
            others = [name for name in self._stores if name != LIBRARY]  # oldest first: the current one is last
            closed = [self._stores.pop(name) for name in others[: max(len(others) - self.keep, 0)]]
        for old in closed:
            old.release()
        return store

    def drop(self, gallery: str) -> None:
        """Close the store of `gallery`, if open (it is being deleted)."""
        with self._lock:
            store = self._stores.pop(gallery, None)
        if store is not None:
            store.release()

    def __len__(self) -> int:
        return len(self._stores)
