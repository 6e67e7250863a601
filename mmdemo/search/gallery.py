"""A searchable gallery: a CLIP model, a persistent store and an embedding cache, passed in.

Like rclip's `RClip(model, db)`, the gallery builds none of its parts. Adding files hashes them
first (in threads): bytes already in the gallery are reported as duplicates, bytes seen before
by this model reuse their cached vector, and only new images are decoded and encoded.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmdemo.embedding.images import (
    MEDIA_SUFFIXES,
    BadImageError,
    Skipped,
    decode_pixels,
    is_video_file,
    open_image,
)
from mmdemo.embedding.ingest import ImageFile, Throughput, chunks, decode_workers, embed_files
from mmdemo.embedding.vectorcache import VectorCache
from mmdemo.errors import UserFacingError
from mmdemo.i18n import DEFAULT, text
from mmdemo.models import compute
from mmdemo.search.adding import Adding, Pending, StageHook, header_row
from mmdemo.search.moments import VideoLine, add_videos, cut_video
from mmdemo.search.neardup import NearIndex
from mmdemo.search.store import GalleryStore, Hit
from mmdemo.search.thumbs import media_folder, move_legacy_thumbnails, save_thumbnail
from mmdemo.video.scenes import Cutting, Progress

if TYPE_CHECKING:
    from mmdemo.config import Settings
    from mmdemo.models.clip import ClipModel

COMMIT_EVERY = 2048  # default images per commit during a long ingest (MMDEMO_INDEX_COMMIT_EVERY)


@dataclass(frozen=True)
class AddReport:
    """What an add did, per file: indexed, duplicate of an indexed image, or skipped (with why)."""

    added: tuple[str, ...] = ()
    duplicates: tuple[tuple[str, str], ...] = ()  # (name, name of the image already indexed)
    skipped: tuple[Skipped, ...] = ()
    from_cache: int = 0  # vectors reused from the embedding cache: no model time
    seconds: float = 0.0
    near_duplicates: tuple[tuple[str, str], ...] = ()  # (name, the indexed image it is a copy of)
    near_skipped: bool = False  # near-duplicates were left out (MMDEMO_NEAR_DUPLICATES=skip)
    queued: tuple[tuple[str, float], ...] = ()  # (name, seconds): videos left to be cut in the background

    def summary(self, language: str = DEFAULT) -> str:
        """A Markdown report in `language`: counts, then one line per duplicate and per skipped file."""
        rate = len(self.added) / self.seconds if self.seconds > 0 else 0.0
        lines = [
            text(
                "search.report",
                language,
                added=len(self.added),
                seconds=f"{self.seconds:.1f}",
                rate=f"{rate:.1f}",
                duplicates=len(self.duplicates),
                near=len(self.near_duplicates),
                skipped=len(self.skipped),
                cached=self.from_cache,
            )
        ]
        lines += [f"- {text('search.report_duplicate', language, name=n, first=f)}" for n, f in self.duplicates]
        near = "search.report_near" if self.near_skipped else "search.report_near_kept"
        lines += [f"- {text(near, language, name=n, first=f)}" for n, f in self.near_duplicates]
        lines += [f"- {text('search.skipped', language, name=s.name, reason=s.said(language))}" for s in self.skipped]
        lines += [
            f"- {text('search.report_queued', language, name=n, minutes=f'{s / 60:.1f}')}" for n, s in self.queued
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class Named:
    """A gallery searched: the tag its hits carry ("shared", "yours"), its name, and the gallery."""

    tag: str
    name: str
    gallery: Gallery


def content_hash(path: str | Path) -> tuple[str, int]:
    """(blake2b hex digest of the file's bytes, byte count)."""
    digest = hashlib.blake2b(digest_size=16)
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class Gallery:
    """Images searchable by text or by example, stored in `store`, embedded by `clip`."""

    def __init__(
        self,
        clip: ClipModel,
        store: GalleryStore,
        cache: VectorCache | None,
        max_pixels: int,
        commit_every: int = COMMIT_EVERY,
        near_duplicates: str = "report",
        cache_scope: str = "",
        cutting: Cutting | None = None,
    ):
        self.clip, self.store, self.cache, self.max_pixels = clip, store, cache, max_pixels
        self.commit_every = commit_every
        self.near_mode = near_duplicates  # report (and index), skip, or off
        self.cutting = cutting or Cutting()  # how a video is cut into moments (mmdemo.video.scenes)
        # A private gallery reuses only the vectors of its own earlier adds (`cache_scope`: its name). Shared
        # with everyone's, "3 from cache" (and how fast an add is) would tell a visitor that somebody else
        # had indexed those exact bytes.
        self.stages: StageHook | None = None  # set by mmdemo.search.galleries: the other indexing stages
        self.videos: VideoLine | None = None  # ... and the line where long videos wait to be cut
        self.inline_video_s = math.inf  # seconds of video an add cuts itself; the rest waits in `videos`
        self._space = f"images|{clip.weights_key}" + (f"|{cache_scope}" if cache_scope else "")

    def __len__(self) -> int:
        return len(self.store)

    def add_files(
        self,
        files: Sequence[ImageFile],
        progress: Callable[[Throughput], None] | None = None,
        keep_source: bool = False,
        read_now: bool = False,
    ) -> AddReport:
        """Index image files; see the module docstring. Nothing already committed is ever lost.

        With `keep_source`, each item records the path it came from (for `prune`): files that stay
        where they are (a folder, the bundled photos), not uploads, which are deleted once indexed.
        With `read_now`, a small add's other stages (its text) run before this returns: for files
        that go once it has (mmdemo.search.stages).
        """
        started = time.perf_counter()
        count = Throughput(len(files))
        skipped: list[Skipped] = []
        duplicates: list[tuple[str, str]] = []
        pending = self._new_files(files, count, skipped, duplicates)
        run = Adding(self.store, self._near_index(), self.near_mode, self.commit_every, keep_source)
        run.stages, run.read_now = self.stages, read_now
        run.track(pending)
        videos = [p for p in pending if is_video_file(p.file.path)]
        pending = [p for p in pending if not is_video_file(p.file.path)]
        persistent = self.clip.stable_weights
        cached = self.cache.get(self._space, [p.hash for p in pending], persistent) if self.cache else {}
        reuse = self._with_thumbnails([p for p in pending if p.hash in cached], count, skipped)
        run.take([header_row(p.file, p.hash, p.size) for p in reuse], [cached[p.hash] for p in reuse])
        added = [p.file.name for p in reuse]
        to_embed = [p for p in pending if p.hash not in cached]
        for batch in embed_files(self.clip, to_embed, self.max_pixels, lambda p: p.file, on_decoded=run.on_decoded):
            skipped += batch.skipped
            added += [p.file.name for p in batch.items]
            if self.cache and batch.items:
                fresh = {p.hash: v for p, v in zip(batch.items, batch.vectors, strict=True)}
                self.cache.put(self._space, fresh, persistent)
            run.take_batch(batch)
            count.advance(len(batch.items) + len(batch.skipped))
            if progress:
                progress(count)
        cut = add_videos(self.clip, run, videos, self.cutting, skipped, self.videos, self.inline_video_s)
        added += cut.added  # their moments, a row each (or, for `cut.queued`, later)
        count.advance(len(videos))
        run.commit()
        if progress:
            progress(count)
        if self.near_mode == "skip":
            left_out = {name for name, _ in run.nears}
            added = [name for name in added if name not in left_out]
        seconds = time.perf_counter() - started
        skip_near = self.near_mode == "skip"
        return AddReport(
            tuple(added), tuple(duplicates), tuple(skipped), len(reuse), seconds, tuple(run.nears), skip_near,
            tuple(cut.queued),
        )  # fmt: skip

    def cut_waiting(
        self, file: ImageFile, content_hash: str, size: int, kept: bool, progress: Progress
    ) -> tuple[Adding, int]:
        """A video that waited in line (mmdemo.search.videoqueue), cut into moments on one core: the add holding
        their rows, for the caller to commit, and how many. BadImageError when it cannot be cut."""
        run = Adding(self.store, None, "off", self.commit_every, kept)
        run.stages = self.stages
        pending = Pending(file, content_hash, size)
        run.track([pending])
        if self.store.by_video(content_hash) is not None:  # cut already (a process stopped before forgetting it)
            return run, 0
        found = cut_video(self.clip, run, pending, replace(self.cutting, threads=1), progress)
        return run, found

    def _new_files(
        self, files: Sequence[ImageFile], count: Throughput, skipped: list[Skipped], duplicates: list[tuple[str, str]]
    ) -> list[Pending]:
        """The files to index, hashed (on the decode threads): unreadable ones and duplicates of indexed
        images (or of each other) are noted in `skipped` and `duplicates` instead."""
        pending: list[Pending] = []
        seen: dict[str, str] = {}
        take_turns = self.clip.placement.device == "cpu" and not compute.on_compute_thread()
        with ThreadPoolExecutor(decode_workers()) as pool:  # a few files per task: one each took 2x longer
            parts = pool.map(lambda part: [self._hash(file, take_turns) for file in part], chunks(files, 16))
            hashes = [hashed for part in parts for hashed in part]
        for file, hashed in zip(files, hashes, strict=True):
            if isinstance(hashed, Skipped):
                skipped.append(hashed)
                count.advance(1)
                continue
            digest, size = hashed
            first = self.store.by_hash(digest) or self.store.by_video(digest)
            waiting = self.videos.waiting(digest) if self.videos is not None else None
            if first is not None or waiting is not None or digest in seen:
                duplicates.append((file.name, first.name if first else waiting or seen[digest]))
                count.advance(1)
                continue
            seen[digest] = file.name
            pending.append(Pending(file, digest, size))
        return pending

    def _with_thumbnails(self, reuse: list[Pending], count: Throughput, skipped: list[Skipped]) -> list[Pending]:
        """Bytes this model has embedded before: no model time, at most a thumbnail to draw (those that
        cannot be drawn are skipped)."""
        with ThreadPoolExecutor(decode_workers()) as pool:
            drawn = list(pool.map(self._ensure_thumbnail, reuse))
        skipped += [s for s in drawn if isinstance(s, Skipped)]
        count.advance(len(drawn))
        return [p for p, s in zip(reuse, drawn, strict=True) if not isinstance(s, Skipped)]

    def _near_index(self) -> NearIndex | None:
        if self.near_mode == "off":
            return None
        items = [it for it in self.store.items() if it.phash]
        return NearIndex([it.phash for it in items], [it.name for it in items])

    def _hash(self, file: ImageFile, take_turns: bool) -> tuple[str, int] | Skipped:
        if take_turns:  # between model jobs, like decoding (see ingest.py)
            compute.wait_idle()
        return _try_hash(file)

    def _ensure_thumbnail(self, p: Pending) -> Skipped | None:
        path = self.store.thumb_path(p.hash)
        if path.is_file():
            return None
        try:
            save_thumbnail(decode_pixels(p.file.path, self.max_pixels, p.file.name), path, p.file.path)
        except BadImageError as exc:
            return exc.skipped
        return None

    def add_folder(self, folder: str | Path, progress: Callable[[Throughput], None] | None = None) -> AddReport:
        """Index every image and video file below `folder` (recursively, sorted by path)."""
        root = Path(folder)
        paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
        return self.add_files([ImageFile(str(p), str(p.relative_to(root))) for p in paths], progress, keep_source=True)

    def remove(self, ids: Sequence[int]) -> int:
        """Remove images by id; returns how many were removed."""
        return len(self.store.remove(ids))

    def search_vector(
        self, query: np.ndarray, k: int, min_score: float = -1.0, allowed: np.ndarray | None = None
    ) -> list[Hit]:
        """The k nearest images to a unit query vector, best first (among the `allowed` ids, if given)."""
        return self.store.search(query.reshape(1, -1).astype(np.float32), k, min_score, allowed)

    def query_vector(self, text: str | None = None, image: str | Path | None = None) -> np.ndarray:
        """The unit vector of a search: of the image at `image` if given, else of the description."""
        if image is not None:
            decoded = open_image(image, self.max_pixels, min_side=self.clip.input_size)
            return self.clip.encode_images([decoded])[0]
        text = (text or "").strip()
        if not text:
            raise UserFacingError(key="search.empty_query")
        return self.clip.encode_texts([text])[0]


def gallery_root(data_dir: Path, clip: ClipModel, name: str) -> Path:
    """Folder of gallery `name` for these weights. Random weights get a fresh folder per load
    (under galleries/unsaved/, safe to delete): their vectors mean nothing to the next load."""
    if not clip.stable_weights:
        return Path(data_dir) / "galleries" / "unsaved" / clip.weights_key.removeprefix("random:") / name
    space = hashlib.blake2b(clip.weights_key.encode(), digest_size=6).hexdigest()
    return Path(data_dir) / "galleries" / f"{clip.model_id}-{space}" / name


def open_store(data_dir: Path, clip: ClipModel, name: str, ann_threshold: int) -> GalleryStore:
    """The store of gallery `name` for these weights (created empty if new), last committed state."""
    root = gallery_root(data_dir, clip, name)
    thumbs = media_folder(data_dir, name)
    if "/" not in name:
        move_legacy_thumbnails(root.parent / "thumbs", thumbs)
    return GalleryStore(root, clip.embed_dim, ann_threshold, thumbs=thumbs)


def open_gallery(data_dir: Path, clip: ClipModel, name: str, cache: VectorCache | None, settings: Settings) -> Gallery:
    """The persistent gallery `name` over `clip`."""
    store = open_store(data_dir, clip, name, settings.ann_threshold)
    cutting = cutting_of(settings)
    return Gallery(
        clip,
        store,
        cache,
        settings.max_image_pixels,
        settings.index_commit_every,
        settings.near_duplicates,
        cutting=cutting,
    )


def cutting_of(settings: Settings) -> Cutting:
    """How these settings cut a video into moments."""
    return Cutting(per_minute=settings.video_moments_per_minute, max_seconds=settings.video_max_minutes * 60)


def _try_hash(file: ImageFile) -> tuple[str, int] | Skipped:
    try:
        return content_hash(file.path)
    except FileNotFoundError:
        return Skipped.keyed(file.name, "skip.not_found")
    except OSError as exc:
        return Skipped.keyed(file.name, "skip.unreadable", error=exc.strerror or exc)
