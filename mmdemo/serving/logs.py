"""A repeated warning or error is logged a few times per interval, with a count of the rest: a failure that
every request meets (a full disk, no file handles left) must not write the same line thousands of times a
second."""

from __future__ import annotations

import logging
import threading
import time

INTERVAL_S = 60.0
BURST = 5  # lines of one kind let through in each interval
LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio")  # whose handlers are throttled


class RepeatFilter(logging.Filter):
    """Lets the first `burst` records of a kind through in each `interval`, holds back the rest, and says how
    many it held back on the next record of that kind it lets through.

    A kind is (logger, level, message, exception type): the same line again. An operator's occasional
    repeat (a retried load) is logged as ever; a failure every request meets is logged a few times a
    minute. Records below WARNING pass untouched.
    """

    def __init__(self, interval: float = INTERVAL_S, burst: int = BURST) -> None:
        super().__init__()
        self.interval, self.burst = interval, burst
        self._seen: dict[tuple[str, int, str, str], list[float]] = {}  # kind -> [window start, passed, held]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        kind = (record.name, record.levelno, record.getMessage(), exc)
        now = time.monotonic()
        with self._lock:
            window = self._seen.get(kind)
            if window is None or now - window[0] >= self.interval:
                held = int(window[2]) if window else 0
                if len(self._seen) > 10_000:  # kinds are few; a flood of distinct ones must not grow this forever
                    self._seen.clear()
                self._seen[kind] = [now, 1, 0]
            elif window[1] < self.burst:
                window[1] += 1
                held = 0
            else:
                window[2] += 1
                return False
        if held:
            record.msg, record.args = f"{record.getMessage()} [{held} more like this in the last minute or so]", ()
        return True


_FILTER = RepeatFilter()


def throttle_repeats() -> None:
    """Put the repeat filter on the handlers of the root logger and of uvicorn's and asyncio's loggers
    (call again once uvicorn has configured its own)."""
    for name in LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
