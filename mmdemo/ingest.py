"""Image files -> CLIP vectors, decoding in worker threads while the model encodes.

Decoders run at most two model batches ahead, writing into two reused pixel buffers: a batch
is always ready and memory stays flat. Pillow and numpy release the GIL in the heavy parts, so
plain threads overlap well (no process pool, no pickling of images).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from mmdemo.images import BadImageError, Skipped, open_image

T = TypeVar("T")


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
    clip: Any,
    files: Sequence[T],
    max_pixels: int,
    path_of: Callable[[T], ImageFile],
    workers: int | None = None,
    on_decoded: Callable[[T, Any], None] | None = None,
) -> Iterator[EmbeddedBatch[T]]:
    """Yield embedded batches of `files` in order; unreadable files are skipped with their reason.

    `path_of` maps an item to its file, so callers can carry their own records through;
    `on_decoded(item, image)` runs in the decoder thread (e.g. to write a thumbnail). Files
    go in chunks of one model batch; decoder threads write each image straight into its slot of
    a preallocated pixel buffer, and fill the next chunk's buffer while the model runs on this
    one (two buffers, reused: no per-batch allocation, no stacking on the model's thread).
    """
    if not files:
        return
    import torch

    size = clip.batch_size
    # dtype spelled out: transformers' from_config(dtype=...) switches torch's *global* default
    # dtype while it builds a model, and a load may be running on the compute thread right now.
    shape = (size, *clip.pixel_shape)
    buffers = [torch.empty(shape, dtype=torch.float32) for _ in range(2 if len(files) > size else 1)]

    def load(item: T, slot: np.ndarray) -> None:
        file = path_of(item)
        image = open_image(file.path, max_pixels, file.name, min_side=clip.input_size)
        if on_decoded is not None:
            on_decoded(item, image)
        clip.prepare_into(image, slot)

    def submit(pool: ThreadPoolExecutor, chunk: int) -> list[Future]:
        items, slots = files[chunk * size : (chunk + 1) * size], buffers[chunk % len(buffers)].numpy()
        return [pool.submit(load, item, slot) for item, slot in zip(items, slots, strict=False)]

    chunks = (len(files) + size - 1) // size
    with ThreadPoolExecutor(workers or decode_workers(), thread_name_prefix="mmdemo-decode") as pool:
        pending = deque(submit(pool, chunk) for chunk in range(min(2, chunks)))
        for chunk in range(chunks):
            futures = pending.popleft()
            kept, skipped = [], []
            for slot, future in enumerate(futures):
                try:
                    future.result()
                    kept.append(slot)
                except BadImageError as exc:
                    skipped.append(Skipped(exc.name, exc.reason))
            items = [files[chunk * size + slot] for slot in kept]
            pixels = buffers[chunk % len(buffers)]
            pixels = pixels[: len(kept)] if len(kept) == len(futures) else pixels[kept]
            vectors = clip.encode_pixels(pixels) if kept else np.zeros((0, clip.embed_dim), np.float32)
            if chunk + 2 < chunks:  # this chunk's buffer is free again: decode two chunks ahead
                pending.append(submit(pool, chunk + 2))
            yield EmbeddedBatch(tuple(items), vectors, tuple(skipped))


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

    def describe(self) -> str:
        """e.g. '120 / 500 images · 85.3 img/s'."""
        return f"{self.done} / {self.total} images · {self.rate:.1f} img/s"
