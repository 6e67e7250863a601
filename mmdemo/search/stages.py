"""Indexing in stages: what is read from an image besides its CLIP vector, each in a room of its own.

Adding an image commits its CLIP vector first (it is searchable at once); then each registered
stage reads what it reads from the same file (its text; its date, camera and place; video scenes next)
and stores it by content hash in tables of its own, apart from the CLIP model's store, so that a
gallery indexed again with another CLIP reads nothing twice. A stage is a class with a `name` that
`register` records; `Stages` runs every enabled one:

- inline, for a small add whose files go away after it (an upload, an agent's collection), and for
  every add of a stage that only reads a file's header (`inline`: EXIF), whatever the add's size;
- in the background, on one thread, for the rest: the library, big uploads, and the backfill of
  images indexed before a stage existed (found when a gallery is first opened). The thread takes
  turns with the model jobs (searches, chats) between images, and reads in batches of a few images,
  each committed in one transaction: killed midway, it loses at most the batch it was reading,
  and the images without a reading are simply read at the next start.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from mmdemo.models import compute

if TYPE_CHECKING:
    from mmdemo.config import Settings
    from mmdemo.search.store import Item

log = logging.getLogger(__name__)

LIBRARY = "library"  # the shared gallery's name (the others are private: mmdemo.search.private)
BATCH = 8  # images read per transaction in the background
QUIET_S = 0.2  # in the background, an image is read once visitors' model jobs have paused this long...
PATIENCE_S = 2.0  # ... or after this long, under a steady stream of them
INLINE_MAX = 32  # an add this small is read on its own request (its files may not outlive it)
# Images waiting for the background thread, at most (~400 bytes each). Beyond, an add's images are left for the
# backfill of the gallery's next opening by a process (the next start): the queue's memory stays bounded.
MAX_QUEUED = 100_000
Factory = Callable[["Settings"], "Stage | None"]  # None: the settings turn the stage off
_STAGES: dict[str, Factory] = {}
STAGE_MODULES = ("mmdemo.text.stage", "mmdemo.photos.stage")  # imported by `build`: each registers its stage


@dataclass(frozen=True)
class Source:
    """An indexed image to read: its content hash, its file, and the thumbnail to read if the file is gone."""

    hash: str
    path: str
    thumb: str = ""
    kept: bool = False  # the file stays where it is (the library's folders), not an upload deleted after the add
    video: str = ""  # a video's moment: the video's file (its date and place are the video's), while it is there


def source_of(item: Item, path: str = "", kept: bool | None = None) -> Source:
    """What a stage reads of an indexed item: its file (`path`, else the source it was indexed from), or, for a
    video's moment, its keyframe (the thumbnail: a stage reads pictures) and the video's file."""
    kept = bool(item.source) if kept is None else kept
    if item.video:
        return Source(item.hash, "", item.thumb, kept, video=path or item.source)
    return Source(item.hash, path or item.source, item.thumb, kept)


class Stage(Protocol):
    """One thing read from each image, stored by content hash per gallery."""

    name: str
    inline: bool  # cheap (a file's header): read with every add, whatever its size, while its files exist

    def pending(self, gallery: str, hashes: Sequence[str]) -> list[str]:
        """The hashes of `gallery` not read yet."""
        ...

    def read(self, gallery: str, sources: Sequence[Source], background: bool = False) -> None:
        """Read these images and store what was read in one transaction (an unreadable one is stored as such).
        In the `background`, each image waits for a pause in visitors' model jobs first (`quiet`)."""
        ...

    def forget(self, gallery: str) -> None:
        """Delete what was read for `gallery` (the gallery is being deleted)."""
        ...


F = TypeVar("F", bound=Factory)


def register(name: str) -> Callable[[F], F]:
    """Decorator of a stage's factory: builds stage `name` from Settings, or returns None when they turn it off."""

    def add(factory: F) -> F:
        _STAGES[name] = factory
        return factory

    return add


@dataclass
class Progress:
    """A stage's background work: images done of those queued since it was last idle."""

    done: int = 0
    total: int = 0
    failed: int = 0

    @property
    def busy(self) -> bool:
        return self.done < self.total


@dataclass(order=True)
class _Job:
    priority: int  # 0: an add someone waits on; 1: the library and backfills
    number: int
    gallery: str = field(compare=False)
    sources: tuple[Source, ...] = field(compare=False)
    stages: tuple[Stage, ...] = field(compare=False, default=())


class Stages:
    """The enabled stages and the thread that runs them in the background (see the module docstring)."""

    def __init__(self, stages: Sequence[Stage]):
        self.stages = list(stages)
        self.progress = {stage.name: Progress() for stage in self.stages}
        self._queue: queue.PriorityQueue[_Job] = queue.PriorityQueue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._jobs = 0
        self._numbers = itertools.count()  # first in, first out within a priority
        self._thread: threading.Thread | None = None

    def indexed(self, gallery: str, sources: Sequence[Source], now: bool = False) -> None:
        """Images just committed to `gallery`: read now (`now` and few) or queued for the background thread."""
        if not self.stages or not sources:
            return
        here = now and len(sources) <= INLINE_MAX
        for stage in self.stages:
            if here or stage.inline:
                self._run(stage, gallery, sources)
        self._enqueue(gallery, sources, 0 if now else 1, [s for s in self.stages if not (here or s.inline)])

    def backfill(self, gallery: str, sources: Sequence[Source]) -> int:
        """Queue the images of `gallery` that some stage has not read yet; returns how many."""
        wanted: set[str] = set()
        for stage in self.stages:
            wanted |= set(stage.pending(gallery, [s.hash for s in sources]))
        missing = [s for s in sources if s.hash in wanted]
        self._enqueue(gallery, missing, 1, self.stages)
        return len(missing)

    def run_now(self, gallery: str, sources: Sequence[Source], progress: Callable[[str, int, int], None]) -> None:
        """Every stage over the images it has not read, here and now (the CLI), with progress (stage, done, total)."""
        for stage in self.stages:
            wanted = set(stage.pending(gallery, [s.hash for s in sources]))
            todo = [s for s in sources if s.hash in wanted]
            for start in range(0, len(todo), BATCH):
                progress(stage.name, start, len(todo))
                self._run(stage, gallery, todo[start : start + BATCH])
            progress(stage.name, len(todo), len(todo))

    def forget(self, gallery: str) -> None:
        for stage in self.stages:
            stage.forget(gallery)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the background thread has nothing left; True if so."""
        with self._idle:
            return self._idle.wait_for(lambda: self._jobs == 0, timeout)

    def _enqueue(self, gallery: str, sources: Sequence[Source], priority: int, stages: Sequence[Stage]) -> None:
        if not stages or not sources:
            return
        with self._lock:
            waiting = max(p.total - p.done for p in self.progress.values())
            if waiting + len(sources) > MAX_QUEUED:
                log.warning(
                    "%d image(s) of %s left for a later backfill: %d wait already", len(sources), gallery, waiting
                )
                return
            for stage in stages:
                self.progress[stage.name].total += len(sources)
            for start in range(0, len(sources), BATCH):
                self._jobs += 1
                part = tuple(sources[start : start + BATCH])
                self._queue.put(_Job(priority, next(self._numbers), gallery, part, tuple(stages)))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="mmdemo-stages", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            for stage in job.stages:
                self._run(stage, job.gallery, job.sources, background=True)
                with self._lock:
                    self.progress[stage.name].done += len(job.sources)
            with self._idle:
                self._jobs -= 1
                if self._jobs == 0:
                    for progress in self.progress.values():
                        progress.done = progress.total = 0
                    self._idle.notify_all()

    def _run(self, stage: Stage, gallery: str, sources: Sequence[Source], background: bool = False) -> None:
        try:
            wanted = set(stage.pending(gallery, [s.hash for s in sources]))
            if wanted:
                stage.read(gallery, [s for s in sources if s.hash in wanted], background)
        except Exception:  # one stage failing must not stop indexing, nor the other stages
            log.exception("indexing stage %s failed on %d image(s) of %s", stage.name, len(sources), gallery)
            with self._lock:
                self.progress[stage.name].failed += len(sources)


def build(settings: Settings) -> Stages:
    """The stages these settings enable."""
    import importlib

    for module in STAGE_MODULES:
        importlib.import_module(module)
    stages = [factory(settings) for factory in _STAGES.values()]
    return Stages([stage for stage in stages if stage is not None])


def quiet() -> None:
    """Before a background stage reads an image: wait for a pause in visitors' model jobs (at most PATIENCE_S)."""
    compute.wait_quiet(QUIET_S, PATIENCE_S)
