"""Figures for the people who run the app: Prometheus metrics, and the recent traffic the System tab shows.

Counted where things happen: each feature's request (outcome and seconds) by the UI's handler
wrapper, queue waits where requests enter and leave their queue, chat tokens after each answer.
Read at scrape time: queue lengths, resident model memory, model loads and failures, the background's backlog. All names
start with `mmdemo_`; the registry is the app's own (one per process), served at GET /metrics
(who may read it: MMDEMO_METRICS) or on MMDEMO_METRICS_PORT. No gradio here.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from mmdemo.models.manager import ModelManager

disable_created_metrics()  # no *_created series: a timestamp per series that no dashboard here reads
REGISTRY = CollectorRegistry()
SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
OUTCOMES = ("ok", "refused", "error", "cancelled")  # refused: the user's input was not usable (a clear message)

REQUESTS = Counter(
    "mmdemo_requests",
    "Requests by feature and outcome (ok, refused, error, cancelled).",
    ["feature", "outcome"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "mmdemo_request_seconds",
    "Seconds to answer a request, by feature (its queue wait not included).",
    ["feature"],
    buckets=SECONDS,
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "mmdemo_queue_wait_seconds",
    "Seconds a request waited in its queue before it ran, by queue.",
    ["queue"],
    buckets=SECONDS,
    registry=REGISTRY,
)
CHAT_TOKENS = Counter("mmdemo_chat_tokens", "Tokens the chat model generated.", registry=REGISTRY)
CHAT_SPEED = Histogram(
    "mmdemo_chat_tokens_per_second",
    "Decode speed of each chat answer, in tokens per second.",
    buckets=(0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500),
    registry=REGISTRY,
)


@dataclass(frozen=True)
class TrafficRow:
    """One feature's recent traffic, as the System tab shows it."""

    feature: str
    per_minute: float  # requests in the last minute
    p50_seconds: float  # over the window
    p95_seconds: float
    failed: int  # errors (not refusals) in the window


class Traffic:
    """Requests of the last `window_s` seconds, for live figures (Prometheus keeps the long view)."""

    def __init__(self, window_s: float = 600.0, max_kept: int = 20_000) -> None:
        self.window_s = window_s
        self._seen: deque[tuple[float, str, float, str]] = deque(maxlen=max_kept)  # (time, feature, seconds, outcome)
        self._lock = threading.Lock()

    def record(self, feature: str, seconds: float, outcome: str, now: float | None = None) -> None:
        with self._lock:
            self._seen.append((time.monotonic() if now is None else now, feature, seconds, outcome))

    def rows(self, now: float | None = None) -> list[TrafficRow]:
        """Per feature seen in the window: requests per minute, p50 / p95 seconds, errors."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [r for r in self._seen if now - r[0] <= self.window_s]
        rows = []
        for feature in sorted({r[1] for r in recent}):
            mine = [r for r in recent if r[1] == feature]
            times = sorted(r[2] for r in mine)
            rows.append(
                TrafficRow(
                    feature,
                    per_minute=float(sum(1 for r in mine if now - r[0] <= 60)),
                    p50_seconds=_quantile(times, 0.50),
                    p95_seconds=_quantile(times, 0.95),
                    failed=sum(1 for r in mine if r[3] == "error"),
                )
            )
        return rows


def _quantile(ordered: list[float], q: float) -> float:
    """The q-quantile of sorted values (nearest rank)."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


TRAFFIC = Traffic()


def record_request(feature: str, outcome: str, seconds: float) -> None:
    """One request of `feature` ended with `outcome` after `seconds`."""
    REQUESTS.labels(feature, outcome).inc()
    LATENCY.labels(feature).observe(seconds)
    TRAFFIC.record(feature, seconds, outcome)


def record_wait(queue: str, seconds: float) -> None:
    """A request of `queue` waited `seconds` before it ran."""
    QUEUE_WAIT.labels(queue).observe(max(0.0, seconds))


def record_answer(new_tokens: int, decode_seconds: float) -> None:
    """A chat answer generated `new_tokens` in `decode_seconds` (first token to last)."""
    CHAT_TOKENS.inc(new_tokens)
    if new_tokens > 1 and decode_seconds > 0:
        CHAT_SPEED.observe((new_tokens - 1) / decode_seconds)


class AppCollector(Collector):
    """What is read at scrape time: queue lengths, resident model memory, model loads and failures."""

    def __init__(self, manager: ModelManager, queue_lengths: Callable[[], dict[str, int]]) -> None:
        self.manager, self.queue_lengths = manager, queue_lengths

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily("mmdemo_queue_length", "Requests waiting in each queue now.", labels=["queue"])
        for queue, length in sorted(self.queue_lengths().items()):
            waiting.add_metric([queue], length)
        yield waiting
        memory = GaugeMetricFamily(
            "mmdemo_model_resident_bytes", "Memory held by each resident model, in bytes.", labels=["model", "device"]
        )
        for stats in self.manager.stats():
            memory.add_metric([stats.id, stats.device], stats.resident_bytes)
        yield memory
        loads = CounterMetricFamily(
            "mmdemo_model_loads", "Model loads by outcome (ok, failed).", labels=["model", "outcome"]
        )
        for model_id, (ok, failed) in self.manager.load_counts().items():
            loads.add_metric([model_id, "ok"], ok)
            loads.add_metric([model_id, "failed"], failed)
        yield loads
        backlog = GaugeMetricFamily(
            "mmdemo_background_backlog",
            "Work waiting in the background: images whose text or photo facts are not read yet, videos not cut yet.",
            labels=["work"],
        )
        for read in _backlogs:
            for work, count in sorted(read().items()):
                backlog.add_metric([work], count)
        yield backlog


_watched: list[AppCollector] = []
_backlogs: list[Callable[[], dict[str, int]]] = []


def watch_backlog(backlog: Callable[[], dict[str, int]]) -> None:
    """Report `backlog()` (work waiting in the background, by kind) at scrape time (replacing the app's before)."""
    _backlogs[:] = [backlog]


def watch(manager: ModelManager, queue_lengths: Callable[[], dict[str, int]]) -> None:
    """Report this app's manager and queues at scrape time (replacing an app watched before in this process)."""
    while _watched:
        REGISTRY.unregister(_watched.pop())
    collector = AppCollector(manager, queue_lengths)
    REGISTRY.register(collector)
    _watched.append(collector)
