"""Image files -> CLIP vectors: decoder threads decode, the compute thread preprocesses and encodes.

Decoders open files and hand over uint8 pixels at about the model's scale (images.decode_pixels:
plain JPEGs straight from libjpeg-turbo, JPEG draft mode and whole-factor reduction for the
rest: memory and time stay bounded). Resizing to the model's input then runs on the compute
thread in torch's vectorised uint8 kernels (3-4x faster here than Pillow's resampling), a model
batch at a time, as soon as that batch is decoded.

On a GPU the decoders run one model batch ahead, so a batch is always ready while the GPU works.
On a CPU they take turns with the model instead: its forward already keeps every core busy, and
a decoder thread running beside it (holding the GIL, preempting an OpenMP worker that the rest
of its team waits for at the next barrier) slowed the forward by far more than the decode it
hid: on 2 cores a busy decoder thread cut ViT-B-32's forward from 150 to 20 img/s. So on a CPU,
decoders also wait while any model job runs (another user's chat, say), but not while a batch
is resized: that job uses one core (compute.submit_light). Pillow, libjpeg and numpy release
the GIL in the heavy parts, so plain threads decode in parallel well enough (a process pool
cost more in start-up and pickling than it gained), each taking a few files per task.

Not done, on purpose: decoders at idle priority (SCHED_IDLE) beside the forward. On an idle
machine they did about a quarter of the decoding for free, but a thread that starves while
holding the GIL stalls the whole process: with two busy processes beside it, ingest took 1.8x
longer and the server froze for up to 1.1 s at a time.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np

from mmdemo.embedding.images import BadImageError, Decoded, Skipped, decode_pixels
from mmdemo.i18n import DEFAULT, text
from mmdemo.models import compute

if TYPE_CHECKING:
    from mmdemo.models.clip import ClipModel

T = TypeVar("T")
# Model batches per turn on a CPU: a turn's fixed costs (waking the decoders, the model's OpenMP
# workers spinning down, the last file of a turn leaving a core idle) are shared by more images.
CPU_BATCHES_PER_TURN = 8
DECODE_CHUNK = 8  # files per decoder task (a task per file took ~10% longer to decode a turn)


@dataclass(frozen=True)
class EmbeddedBatch(Generic[T]):
    """One model batch: the items that decoded, their unit vectors, and the files skipped."""

    items: tuple[T, ...]
    vectors: np.ndarray  # (len(items), D) float32
    skipped: tuple[Skipped, ...]


@dataclass(frozen=True)
class ImageFile:
    """A file to embed: where it is, and the name to report it by."""

    path: str
    name: str


def decode_workers() -> int:
    """Decoder threads: one per core, at least two so a slow file never stalls the batch."""
    return max(2, min(8, os.cpu_count() or 2))


def embed_files(
    clip: ClipModel,
    files: Sequence[T],
    max_pixels: int,
    path_of: Callable[[T], ImageFile],
    workers: int | None = None,
    on_decoded: Callable[[T, Decoded], None] | None = None,
    overlap: bool | None = None,
) -> Iterator[EmbeddedBatch[T]]:
    """Yield embedded batches of `files` in order; unreadable files are skipped with their reason.

    `path_of` maps an item to its file, so callers can carry their own records through;
    `on_decoded(item, decoded)` runs in the decoder thread (e.g. to write a thumbnail). Files are
    decoded a turn at a time and encoded in model batches; see the module docstring. `overlap`
    (decode ahead while the model runs) defaults to whether the model is off the CPU.
    """
    if not files:
        return
    size = clip.batch_size
    overlap = clip.placement.device != "cpu" if overlap is None else overlap
    turn = size if overlap else size * CPU_BATCHES_PER_TURN
    turns = (len(files) + turn - 1) // turn
    ahead = 2 if overlap else 1  # turns submitted before the model takes one
    # On a CPU, decode between model jobs, this request's or another's (unless this call is
    # itself a model job: its decoders would wait for it forever).
    take_turns = not overlap and not compute.on_compute_thread()

    load = _Loader(path_of, max_pixels, clip.input_size, take_turns, on_decoded)

    def decode(chunk: Sequence[T]) -> list[np.ndarray | Skipped]:
        return [load(item) for item in chunk]

    def submit(pool: ThreadPoolExecutor, index: int) -> list[list[Future]]:
        """Turn `index` queued for decoding: per model batch, a task per DECODE_CHUNK files."""
        part = files[index * turn : (index + 1) * turn]
        return [[pool.submit(decode, chunk) for chunk in chunks(batch, DECODE_CHUNK)] for batch in chunks(part, size)]

    with ThreadPoolExecutor(workers or decode_workers(), thread_name_prefix="mmdemo-decode") as pool:
        pending = deque(submit(pool, index) for index in range(min(ahead, turns)))
        for index in range(turns):
            # The whole turn is decoded before the model runs; each model batch is resized as soon
            # as its files are decoded (on one core, while the decoders go on with the next).
            batches = [_preprocess(clip, tasks) for tasks in pending.popleft()]
            for number, (pixels, kept, skipped) in enumerate(batches):
                vectors = clip.encode_pixels(pixels.result()) if pixels else np.zeros((0, clip.embed_dim), np.float32)
                if number == len(batches) - 1 and index + ahead < turns:  # the model is done with this turn
                    pending.append(submit(pool, index + ahead))
                items = tuple(files[index * turn + number * size + i] for i in kept)
                yield EmbeddedBatch(items, vectors, skipped)


@dataclass(frozen=True)
class _Loader(Generic[T]):
    """One file decoded on a decoder thread (between model jobs when `take_turns`), `on_decoded` run on it."""

    path_of: Callable[[T], ImageFile]
    max_pixels: int
    min_side: int
    take_turns: bool
    on_decoded: Callable[[T, Decoded], None] | None

    def __call__(self, item: T) -> np.ndarray | Skipped:
        if self.take_turns:
            compute.wait_idle()
        file = self.path_of(item)
        try:
            decoded = decode_pixels(file.path, self.max_pixels, file.name, min_side=self.min_side)
        except BadImageError as exc:
            return exc.skipped
        if self.on_decoded is not None:
            try:
                self.on_decoded(item, decoded)
            except OSError as exc:  # e.g. its thumbnail: the disk is full, or the file just went
                return Skipped.keyed(file.name, "skip.not_stored", error=exc.strerror or exc)
        return decoded.pixels


def chunks(items: Sequence[T], n: int) -> list[Sequence[T]]:
    """`items` in consecutive slices of n (the last may be shorter)."""
    return [items[start : start + n] for start in range(0, len(items), n)]


def _preprocess(clip: ClipModel, tasks: list[Future]) -> tuple[Future | None, list[int], tuple[Skipped, ...]]:
    """Wait for a model batch's decoder tasks; queue its resize (a light compute job): (pixels, kept, skipped)."""
    decoded = [d for task in tasks for d in task.result()]
    kept = [i for i, d in enumerate(decoded) if not isinstance(d, Skipped)]
    skipped = tuple(d for d in decoded if isinstance(d, Skipped))
    pixels = compute.submit_light(clip.pixels, [decoded[i] for i in kept]) if kept else None
    return pixels, kept, skipped


@dataclass
class Throughput:
    """Counts for a progress line: done / total and images per second."""

    total: int
    done: int = 0
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = time.perf_counter()

    def advance(self, n: int) -> None:
        """Count n more files handled."""
        self.done += n

    @property
    def rate(self) -> float:
        """Files per second so far."""
        elapsed = time.perf_counter() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def describe(self, language: str = DEFAULT) -> str:
        """e.g. '120 / 500 images · 85.3 img/s', in `language`."""
        return text("ingest.progress", language, done=self.done, total=self.total, rate=f"{self.rate:.1f}")
