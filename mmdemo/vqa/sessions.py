"""Per-session chat state kept on the server: a stop flag and the last answer's KV cache.

Caches are bounded: only the `max_cached` most recently active conversations keep one (each
holds keys/values for its whole prompt, which on a GPU is real memory); older ones fall back
to a full prefill on their next turn.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from mmdemo.vqa.reuse import PrefixCache


class ChatSessions:
    """Stop flags and prefix caches by session id."""

    def __init__(self, max_cached: int = 4) -> None:
        self.max_cached = max_cached
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

    def stop(self, session: str) -> None:
        """Stop this session's running generation, if any."""
        with self._lock:
            event = self._stops.pop(session, None)
        if event is not None:
            event.set()

    def forget(self, session: str) -> None:
        """Stop and free everything of this session (Clear, or the browser tab closed)."""
        self.stop(session)
        with self._lock:
            cache = self._caches.pop(session, None)
        if cache is not None:
            cache.clear()
