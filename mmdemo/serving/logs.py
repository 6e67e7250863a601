"""A repeated warning or error is logged once per interval, with a count: a failure that every request
meets (a full disk, no file handles left) must not write the same line thousands of times a second."""

from __future__ import annotations

import logging
import threading
import time

INTERVAL_S = 60.0
LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio")  # whose handlers are throttled


class RepeatFilter(logging.Filter):
    """Lets the first of a kind of record through, then one per `interval` with how many were held back.

    A kind is (logger, level, message, exception type): the same line again. Records below WARNING pass
    untouched.
    """

    def __init__(self, interval: float = INTERVAL_S) -> None:
        super().__init__()
        self.interval = interval
        self._seen: dict[tuple[str, int, str, str], tuple[float, int]] = {}  # kind -> (when shown, held back since)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        kind = (record.name, record.levelno, record.getMessage(), exc)
        now = time.monotonic()
        with self._lock:
            shown, held = self._seen.get(kind, (-self.interval, 0))
            if now - shown < self.interval:
                self._seen[kind] = (shown, held + 1)
                return False
            self._seen[kind] = (now, 0)
            if len(self._seen) > 10_000:  # kinds are few; a flood of distinct ones must not grow this forever
                self._seen = {kind: (now, 0)}
        if held:
            record.msg, record.args = (
                f"{record.getMessage()} [{held} more like this in the last {self.interval:.0f} s]",
                (),
            )
        return True


_FILTER = RepeatFilter()


def throttle_repeats() -> None:
    """Put the repeat filter on the handlers of the root logger and of uvicorn's and asyncio's loggers
    (call again once uvicorn has configured its own)."""
    for name in LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
