"""Per-session chat state kept on the server: a stop flag and the last answer's KV cache.

Caches are bounded: only the `max_cached` most recently active conversations keep one, in
`max_bytes` together (each holds keys/values for its whole prompt, which on a GPU is real
memory: the model manager's budget is that much smaller, see models/factory.py); older ones fall back
to a full prefill on their next turn.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from mmdemo.chat.reuse import PrefixCache


class ChatSessions:
    """Stop flags and prefix caches by session id."""

    def __init__(self, max_cached: int = 4, max_bytes: int = 0) -> None:
        self.max_cached, self.max_bytes = max_cached, max_bytes  # max_bytes 0: no byte bound
        self._stops: dict[str, threading.Event] = {}
        self._caches: OrderedDict[str, PrefixCache] = OrderedDict()
        self._lock = threading.Lock()

    def begin(self, session: str) -> tuple[threading.Event, PrefixCache | None]:
        """A fresh stop flag for the generation about to start, and the session's cache."""
        with self._lock:
            stop = self._stops[session] = threading.Event()
            if self.max_cached <= 0:
                return stop, None
            cache = self._caches.pop(session, None) or PrefixCache()
            self._caches[session] = cache  # most recently used last
            while len(self._caches) > self.max_cached:
                _, evicted = self._caches.popitem(last=False)
                evicted.clear()
            return stop, cache

    def trim(self, keep: str) -> None:
        """After an answer: drop the least recently used caches until all fit in max_bytes
        (`keep`'s last, and only if it alone is too big)."""
        if self.max_bytes <= 0:
            return
        with self._lock:
            sizes = {session: cache.nbytes for session, cache in self._caches.items()}
            order = [s for s in self._caches if s != keep] + ([keep] if keep in self._caches else [])
            for session in order:
                if sum(sizes.values()) <= self.max_bytes:
                    break
                self._caches.pop(session).clear()
                del sizes[session]

    @property
    def nbytes(self) -> int:
        """Bytes held by all kept caches."""
        with self._lock:
            return sum(cache.nbytes for cache in self._caches.values())

    def stop(self, session: str) -> None:
        """Stop this session's running generation, if any."""
        with self._lock:
            event = self._stops.pop(session, None)
        if event is not None:
            event.set()

    def finish(self, session: str, stop: threading.Event) -> None:
        """The generation that `begin` gave `stop` ended: drop its flag (unless a newer one replaced it)."""
        with self._lock:
            if self._stops.get(session) is stop:
                del self._stops[session]

    def forget(self, session: str) -> None:
        """Stop and free everything of this session (Clear, or the browser tab closed)."""
        self.stop(session)
        with self._lock:
            cache = self._caches.pop(session, None)
        if cache is not None:
            cache.clear()
