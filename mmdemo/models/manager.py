"""The model manager: loads each model once, keeps it resident, evicts to fit a memory budget.

It knows nothing about *how* a model is loaded: a planner turns an id into a `LoadPlan` and a
loader per family turns a plan into a resident model object (anything with `num_parameters`,
`resident_bytes` and `close()`). That keeps identity and lifetime (here) apart from loading
(`clip.py`, `vlm.py`), as immich's model cache does.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mmdemo.errors import UserFacingError
from mmdemo.models import compute
from mmdemo.models.device import Placement, free_accelerator_memory
from mmdemo.models.registry import ModelSpec

log = logging.getLogger(__name__)


class Resident(Protocol):
    """What a loader returns."""

    num_parameters: int
    resident_bytes: int

    def close(self) -> None: ...


@dataclass(frozen=True)
class LoadPlan:
    """Everything needed to load one model: what, where, and its expected size."""

    spec: ModelSpec
    placement: Placement
    location: Path | None = None  # built folder for tiny/random models
    estimate_bytes: int = 0


@dataclass(frozen=True)
class ModelStats:
    """One resident model, as the System tab shows it."""

    id: str
    roles: tuple[str, ...]
    family: str
    device: str
    dtype: str
    quantization: str
    parameters: int
    resident_bytes: int
    load_seconds: float
    last_used: float  # time.time() of the last get()
    loads: int  # how many times this id was loaded since start (1 unless evicted and reloaded)
    pinned: bool
    notes: tuple[str, ...] = ()


@dataclass
class _Entry:
    model: Resident
    plan: LoadPlan
    load_seconds: float
    last_used: float = field(default_factory=time.time)


def _load_between_requests(loader: Callable[[LoadPlan], Resident], plan: LoadPlan) -> Resident:
    """Load on the compute thread, letting other models' short jobs (a search) run meanwhile."""
    with compute.safe_points():
        return loader(plan)


class ModelManager:
    """Thread-safe cache of resident models with LRU eviction under a memory budget."""

    def __init__(
        self,
        planner: Callable[[str], LoadPlan],
        loaders: Mapping[str, Callable[[LoadPlan], Resident]],
        *,
        budget_bytes: int,
        pinned: Iterable[str] = (),
        aliases: Mapping[str, str] | None = None,
        notes: Iterable[str] = (),
        retry_after_s: float = 0.0,
    ):
        self._planner = planner
        self._loaders = dict(loaders)
        self.budget_bytes = budget_bytes
        self.aliases = dict(aliases or {})
        self._pinned = {self.resolve_id(name) for name in pinned}
        self.notes = list(notes)  # app-level notes (e.g. why this VLM was chosen)
        self.errors: dict[str, str] = {}  # last load error per id, shown in the System tab
        # A load that failed is not tried again for every request (each try may wait on a network):
        # its error is raised at once until retry() or, when > 0, until retry_after_s have passed.
        self.retry_after_s = retry_after_s
        self._failed: dict[str, tuple[float, UserFacingError]] = {}
        self._entries: dict[str, _Entry] = {}
        self._loads: dict[str, int] = {}
        self._load_failures: dict[str, int] = {}
        self._listeners: list[Callable[[str], None]] = []  # told the id of each model once it is resident
        self._lock = threading.Lock()  # guards the dicts; never held during a load
        self._id_locks: dict[str, threading.Lock] = {}

    def resolve_id(self, name: str) -> str:
        """A role ("clip", "vlm") or model id -> model id."""
        return self.aliases.get(name, name)

    def get(self, name: str) -> Any:
        """The resident model for `name`, loading it first if needed.

        Concurrent callers for one id wait for a single load. Loads run on the compute thread
        (mmdemo.models.compute), one at a time, with safe points: requests for resident models
        (a search while the VLM loads) run between the load's torch calls. A model whose load
        failed raises that error again at once, without trying, until `retry()` (or `retry_after_s`).
        """
        model_id = self.resolve_id(name)
        entry = self._touch(model_id)
        if entry is not None:
            return entry.model
        self._raise_if_failed(model_id)
        with self._id_lock(model_id):
            entry = self._touch(model_id)  # loaded while we waited
            if entry is not None:
                return entry.model
            self._raise_if_failed(model_id)  # failed while we waited
            try:
                plan = self._planner(model_id)  # may download: on this thread, not the compute thread
            except UserFacingError as exc:
                self._remember_failure(model_id, exc)
                raise
            self._make_room(plan.estimate_bytes, keep=model_id)
            start = time.perf_counter()
            try:
                # On the compute thread: loading runs torch ops (random init, dtype casts) too.
                model = compute.run(_load_between_requests, self._loaders[plan.spec.family], plan, long=True)
            except UserFacingError as exc:
                self._remember_failure(model_id, exc)
                raise
            entry = _Entry(model, plan, time.perf_counter() - start)
            with self._lock:
                self._entries[model_id] = entry
                self._loads[model_id] = self._loads.get(model_id, 0) + 1
                self.errors.pop(model_id, None)
            log.info("%s resident: %.1f MB in %.1fs", model_id, model.resident_bytes / 1e6, entry.load_seconds)
            self._make_room(0, keep=model_id)  # the estimate may have been low
            self._tell_loaded(model_id)
            return model

    def on_load(self, listener: Callable[[str], None]) -> None:
        """Call `listener(model_id)` each time a model becomes resident (on the loading thread: keep it short)."""
        self._listeners.append(listener)

    def _tell_loaded(self, model_id: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(model_id)
            except Exception:  # a listener's failure must not fail the load
                log.exception("a listener of %s's load failed", model_id)

    def retry(self, name: str) -> None:
        """Forget a failed load of `name`: the next get() tries again (System's Retry load)."""
        with self._lock:
            self._failed.pop(self.resolve_id(name), None)

    def _remember_failure(self, model_id: str, exc: UserFacingError) -> None:
        with self._lock:
            self._failed[model_id] = (time.monotonic(), exc)
            self.errors[model_id] = str(exc)
            self._load_failures[model_id] = self._load_failures.get(model_id, 0) + 1
        log.error("%s", exc)  # already a full explanation: one line (no traceback) per failed load

    def _raise_if_failed(self, model_id: str) -> None:
        with self._lock:
            failed = self._failed.get(model_id)
            if failed is not None and self.retry_after_s > 0 and time.monotonic() - failed[0] >= self.retry_after_s:
                del self._failed[model_id]  # long enough: the next caller tries again
                failed = None
        if failed is not None:
            raise failed[1].again()  # a fresh error each time (raised in many threads), keyed as the first was

    def loaded(self, name: str) -> Any | None:
        """The resident model for `name`, or None; never loads."""
        with self._lock:
            entry = self._entries.get(self.resolve_id(name))
            return entry.model if entry is not None else None

    def is_loaded(self, name: str) -> bool:
        """True when the model is resident."""
        with self._lock:
            return self.resolve_id(name) in self._entries

    def unload(self, name: str) -> bool:
        """Drop a model and free its memory. True if it was resident.

        A caller still running a forward pass keeps its own reference until it returns; the
        memory is released then.
        """
        model_id = self.resolve_id(name)
        with self._lock:
            entry = self._entries.pop(model_id, None)
        if entry is None:
            return False
        entry.model.close()
        del entry
        gc.collect()
        free_accelerator_memory()
        log.info("unloaded %s", model_id)
        return True

    def preload(self, names: Iterable[str], *, background: bool = False) -> threading.Thread | None:
        """Load models now. In the background, failures are logged and kept in `errors`."""
        names = list(names)

        def run() -> None:
            for name in names:
                try:
                    self.get(name)
                except UserFacingError:
                    pass  # logged and recorded by get()
                except Exception:  # a preload must not kill the app
                    log.exception("preloading %s failed", name)
                    self.errors[self.resolve_id(name)] = "failed to load; see the server log"

        if not background:
            for name in names:
                self.get(name)
            return None
        thread = threading.Thread(target=run, name="mmdemo-preload", daemon=True)
        thread.start()
        return thread

    def stats(self) -> list[ModelStats]:
        """One row per resident model, most recently used first."""
        with self._lock:
            items = sorted(self._entries.items(), key=lambda kv: kv[1].last_used, reverse=True)
            loads, pinned = dict(self._loads), set(self._pinned)
        roles: dict[str, list[str]] = {}
        for role, model_id in self.aliases.items():
            roles.setdefault(model_id, []).append(role)
        return [
            ModelStats(
                id=model_id,
                roles=tuple(roles.get(model_id, ())),
                family=entry.plan.spec.family,
                device=entry.plan.placement.device,
                dtype=entry.plan.placement.dtype,
                quantization=entry.plan.placement.quantization,
                parameters=entry.model.num_parameters,
                resident_bytes=entry.model.resident_bytes,
                load_seconds=round(entry.load_seconds, 3),
                last_used=entry.last_used,
                loads=loads.get(model_id, 0),
                pinned=model_id in pinned,
                notes=entry.plan.placement.notes,
            )
            for model_id, entry in items
        ]

    def load_counts(self) -> dict[str, tuple[int, int]]:
        """Per model id that was ever asked for: (loads that succeeded, loads that failed)."""
        with self._lock:
            ids = set(self._loads) | set(self._load_failures)
            return {mid: (self._loads.get(mid, 0), self._load_failures.get(mid, 0)) for mid in sorted(ids)}

    @property
    def resident_bytes(self) -> int:
        """Bytes held by all resident models."""
        with self._lock:
            return sum(e.model.resident_bytes for e in self._entries.values())

    def _touch(self, model_id: str) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(model_id)
            if entry is not None:
                entry.last_used = time.time()
            return entry

    def _id_lock(self, model_id: str) -> threading.Lock:
        with self._lock:
            return self._id_locks.setdefault(model_id, threading.Lock())

    def _make_room(self, incoming_bytes: int, keep: str) -> None:
        """Unload least-recently-used, unpinned models until `incoming_bytes` more fit."""
        while True:
            with self._lock:
                used = sum(e.model.resident_bytes for e in self._entries.values())
                if used + incoming_bytes <= self.budget_bytes:
                    return
                victims = sorted(
                    (e.last_used, mid) for mid, e in self._entries.items() if mid != keep and mid not in self._pinned
                )
            if not victims:
                log.warning(
                    "memory budget %.1f GB exceeded (%.1f GB resident + %.1f GB incoming) and nothing left to evict",
                    self.budget_bytes / 1e9,
                    used / 1e9,
                    incoming_bytes / 1e9,
                )
                return
            log.info("evicting %s to fit the memory budget", victims[0][1])
            self.unload(victims[0][1])
