"""One `Gallery.add_files` under way: the rows embedded and not yet committed, screened for
near-duplicates, committed every `commit_every` images, each commit handed to the indexing stages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from mmdemo.embedding.images import Decoded
from mmdemo.embedding.ingest import EmbeddedBatch, ImageFile, decode_workers
from mmdemo.search.neardup import NearIndex, perceptual_hash
from mmdemo.search.stages import Source, source_of
from mmdemo.search.store import GalleryStore, NewImage
from mmdemo.search.thumbs import save_thumbnail


@dataclass(frozen=True)
class Pending:
    """A file to add: not indexed yet (nor a duplicate within the add), hashed."""

    file: ImageFile
    hash: str
    size: int


# The stages' hook: the images a commit added, and whether the add's caller waits for them to be read.
StageHook = Callable[[Sequence[Source], bool], None]


@dataclass
class Adding:
    """The state of one add (see the module docstring)."""

    store: GalleryStore
    near: NearIndex | None
    near_mode: str  # report (and index), skip, or off
    commit_every: int
    keep_source: bool
    stages: StageHook | None = None
    read_now: bool = False
    paths: dict[str, str] = field(default_factory=dict)  # hash -> the file it is indexed from
    rows: list[NewImage] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    nears: list[tuple[str, str]] = field(default_factory=list)  # (name, the indexed image it is a copy of)
    _sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    _phashes: dict[str, str] = field(default_factory=dict)  # taken while decoding

    def track(self, pending: Sequence[Pending]) -> None:
        """The files this add may commit (their paths: the stages read them, `prune` checks kept sources)."""
        self.paths.update({p.hash: str(Path(p.file.path).resolve()) for p in pending})

    def take(self, rows: Sequence[NewImage], vectors: Sequence[np.ndarray]) -> None:
        """Rows to commit; committed as soon as `commit_every` are waiting."""
        self.rows += rows
        self.vectors += vectors
        if len(self.rows) >= self.commit_every:
            self.commit()

    def take_batch(self, batch: EmbeddedBatch[Pending]) -> None:
        """An embedded model batch (its thumbnails were drawn by `on_decoded`)."""
        rows = [NewImage(p.hash, p.file.name, *self._sizes.pop(p.hash), p.size) for p in batch.items]
        self.take(rows, list(batch.vectors))

    def on_decoded(self, item: Pending, decoded: Decoded) -> None:
        """On a decode thread, beside the forward pass: the thumbnail, and its perceptual hash."""
        self._sizes[item.hash] = save_thumbnail(decoded, self.store.thumb_path(item.hash), item.file.path)
        if self.near is not None:
            self._phashes[item.hash] = try_perceptual(self.store.thumb_path(item.hash))

    def commit(self) -> None:
        """Commit the waiting rows, then hand what was added to the stages."""
        rows, vectors = self._screened()
        self.rows, self.vectors = [], []
        if self.keep_source:
            rows = [replace(row, source=self.paths[row.hash]) for row in rows]
        if not rows:
            return
        added = self.store.add(rows, np.stack(vectors))
        if self.stages is not None and added:
            self.stages([source_of(it, self.paths.get(it.hash, ""), self.keep_source) for it in added], self.read_now)

    def _screened(self) -> tuple[list[NewImage], list[np.ndarray]]:
        """Rows with their perceptual hash (of the thumbnail: small, upright, already on disk);
        near-duplicates of what is indexed (or of earlier rows) noted, and left out in skip mode."""
        if self.near is None:
            return self.rows, self.vectors
        near = self.near

        def perceptual(row: NewImage) -> str:
            if row.video:  # a video's moments look alike by nature: not screened
                return ""
            return self._phashes.pop(row.hash, None) or try_perceptual(self.store.thumb_path(row.hash))

        with ThreadPoolExecutor(decode_workers()) as pool:
            hashes = list(pool.map(perceptual, self.rows))
        kept_rows, kept_vectors = [], []
        for row, vector, phash in zip(self.rows, self.vectors, hashes, strict=True):
            if phash and (original := near.match(phash)) is not None:
                self.nears.append((row.name, original))
                if self.near_mode == "skip":
                    continue
            if phash:
                near.add(phash, row.name)
            kept_rows.append(replace(row, phash=phash))
            kept_vectors.append(vector)
        return kept_rows, kept_vectors


def try_perceptual(path: Path) -> str:
    """The perceptual hash of an image file, or '' when it cannot be taken (then no near-duplicate check)."""
    try:
        return perceptual_hash(path)
    except (OSError, ValueError, Image.DecompressionBombError):
        return ""


def header_row(file: ImageFile, content_hash: str, size: int) -> NewImage:
    """The row of a file whose vector was cached: its size from the header (no decode)."""
    try:
        with Image.open(file.path) as img:
            width, height = img.size
    except (OSError, ValueError, Image.DecompressionBombError):
        width, height = 0, 0
    return NewImage(content_hash, file.name, width, height, size)
