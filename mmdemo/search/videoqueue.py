"""Long videos wait here to be cut into moments in the background (mmdemo.search.moments).

An add cuts up to `MMDEMO_VIDEO_INLINE_SECONDS` of video in its own request and leaves longer videos in
its gallery's line, so that no request holds a model slot, and its visitor's page, for minutes. One
thread cuts one video at a time and takes the clients in turn — whoever made a page's gallery or an
agent's collection (`turn_of`), and the library — so one client's hour of video delays another's short
one by the video under way, not by the hour. It decodes on one core and, between samples, lets visitors'
model jobs go first (compute.wait_idle): searches and chats are served while it cuts.

A client may have `per_client` copies waiting, over all its galleries, and all clients `in_all` together
(`IN_ALL`: at most that many uploads on disk, whatever the number of clients); beyond, a video is skipped
with the reason. What waits
is kept on disk: `root/<gallery>/<content hash><suffix>` (a copy of an upload; the library's own files
stay where they are) and what it was called, in `<hash>.json`, so a process stopped midway cuts it
when the gallery is next opened. No client value becomes a path: a file is named by the hash computed
here and a suffix from the known video suffixes, inside `root`. Forgetting a gallery empties its line,
stops its cut and deletes its folder.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mmdemo.embedding.images import VIDEO_SUFFIXES, BadImageError, Skipped
from mmdemo.embedding.ingest import ImageFile
from mmdemo.files import inside, link_or_copy, remove_tree
from mmdemo.models import compute

if TYPE_CHECKING:
    from mmdemo.search.adding import Pending
    from mmdemo.search.gallery import Gallery

log = logging.getLogger(__name__)
IN_ALL = 64  # uploaded videos waiting to be cut, all clients together (each within MMDEMO_MAX_UPLOAD_MB)
REMEMBERED = 8  # videos cut (or not) that a gallery's line still tells its visitor about


@dataclass(frozen=True)
class Waiting:
    """A video in a gallery's line: its bytes' hash, name and size, the file to cut, its length."""

    gallery: str
    hash: str
    name: str
    size: int
    path: str
    kept: bool  # the library's own file, cut where it lies (not a copy deleted once cut)
    seconds: float
    turn: str = ""  # whose turn it waits for: the client that made its gallery


@dataclass(frozen=True)
class LineState:
    """What a gallery's visitor is told about its videos: the one being cut, those waiting, the last ones done."""

    cutting: str = ""
    done_s: float = 0.0
    total_s: float = 0.0
    waiting: tuple[str, ...] = ()
    finished: tuple[tuple[str, int], ...] = ()  # (name, moments found)
    failed: tuple[Skipped, ...] = ()

    @property
    def busy(self) -> bool:
        return bool(self.cutting or self.waiting)


class _Stopped(Exception):
    """The gallery of the video being cut was deleted."""


@dataclass
class _Told:
    finished: deque[tuple[str, int]] = field(default_factory=lambda: deque(maxlen=REMEMBERED))
    failed: deque[Skipped] = field(default_factory=lambda: deque(maxlen=REMEMBERED))


class VideoQueue:
    """The galleries' lines and the thread that cuts them (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        open_gallery: Callable[[str], Gallery],
        per_client: int = 3,
        start: bool = True,
        in_all: int = IN_ALL,
        turn_of: Callable[[str], str] = str,
    ):
        self.root, self.per_client, self.in_all = Path(root), per_client, in_all
        self._open, self._turn_of = open_gallery, turn_of
        self._lines: OrderedDict[str, deque[Waiting]] = OrderedDict()  # each client's, taken in turn, first to last
        self._told: dict[str, _Told] = {}
        self._cutting: Waiting | None = None
        self._done_s = 0.0
        self._stop = False  # the video being cut belongs to a gallery being deleted
        self._lock = threading.Condition()
        self._commit = threading.Lock()  # a cut's rows are committed, or its gallery deleted, never both at once
        self._thread: threading.Thread | None = None
        self._started = start

    def line(self, gallery: str) -> GalleryLine:
        """Gallery `gallery`'s line, as its adds see it (mmdemo.search.moments.VideoLine)."""
        return GalleryLine(self, gallery)

    def hold(self, gallery: str, pending: Pending, seconds: float, kept: bool) -> None:
        """Keep a video (a copy of it, unless `kept`) until it is cut; BadImageError when its client's line is full."""
        turn = self._turn_of(gallery)
        if refused := self._refusal(turn, kept):  # refused before copying; checked again as it joins the line
            raise self._refused(pending.file.name, refused)
        suffix = Path(pending.file.path).suffix.lower()
        folder = inside(self.root, gallery)
        path = (
            Path(pending.file.path) if kept else folder / f"{pending.hash}{suffix if suffix in VIDEO_SUFFIXES else ''}"
        )
        said = {"name": pending.file.name, "size": pending.size, "seconds": seconds, "kept": str(path) if kept else ""}
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not kept:
                _hold_copy(Path(pending.file.path), path)
            inside(folder, f"{pending.hash}.json").write_text(json.dumps(said), encoding="utf-8")
        except OSError as exc:  # the disk is full, say: this video is skipped, the add goes on
            _forget_files(folder, pending.hash, keep_video=kept)
            raise BadImageError(pending.file.name, "skip.unreadable", error=exc.strerror or exc) from None
        waiting = Waiting(gallery, pending.hash, pending.file.name, pending.size, str(path), kept, seconds, turn)
        if refused := self._add(waiting):
            _forget_files(folder, pending.hash, keep_video=kept)  # other adds filled the line meanwhile
            raise self._refused(pending.file.name, refused)

    def waiting(self, gallery: str, content_hash: str) -> str | None:
        """The name of the video with these bytes in `gallery`'s line (or being cut), if one is."""
        with self._lock:
            now = self._cutting
            if now is not None and now.gallery == gallery and now.hash == content_hash:
                return now.name
            return next((w.name for w in self._of(gallery) if w.hash == content_hash), None)

    def resume(self, gallery: str) -> int:
        """Put back in line the videos `gallery` kept on disk (a process stopped before cutting them); how many."""
        folder = inside(self.root, gallery)
        found = 0
        for said_path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            content_hash = said_path.stem
            try:
                said = json.loads(said_path.read_text(encoding="utf-8"))
                kept = bool(said["kept"])
                path = said["kept"] if kept else next(str(p) for p in folder.glob(f"{content_hash}*") if p != said_path)
                name, size, seconds = str(said["name"]), int(said["size"]), float(said["seconds"])
                waiting = Waiting(gallery, content_hash, name, size, path, kept, seconds, self._turn_of(gallery))
            except (OSError, ValueError, KeyError, TypeError, StopIteration):  # half written: cut again when added
                _forget_files(folder, content_hash)
                continue
            if self.waiting(gallery, content_hash) is None:
                self._add(waiting, resumed=True)
                found += 1
        return found

    def state(self, gallery: str) -> LineState:
        """What `gallery`'s visitor is told about its videos."""
        with self._lock:
            now = self._cutting if self._cutting is not None and self._cutting.gallery == gallery else None
            told = self._told.get(gallery, _Told())
            return LineState(
                now.name if now else "",
                self._done_s if now else 0.0,
                now.seconds if now else 0.0,
                tuple(w.name for w in self._of(gallery)),
                tuple(told.finished),
                tuple(told.failed),
            )

    def totals(self) -> tuple[int, int]:
        """(videos waiting or being cut, galleries they belong to): for the System tab and metrics."""
        with self._lock:
            galleries = {w.gallery for line in self._lines.values() for w in line}
            galleries |= {self._cutting.gallery} if self._cutting else set()
            return sum(map(len, self._lines.values())) + (self._cutting is not None), len(galleries)

    def forget(self, gallery: str) -> None:
        """Gallery `gallery` is being deleted: its line emptied, its cut under way stopped, its folder deleted."""
        with self._commit, self._lock:
            for turn, line in list(self._lines.items()):
                kept = deque(w for w in line if w.gallery != gallery)
                if kept:
                    self._lines[turn] = kept
                else:
                    del self._lines[turn]
            self._told.pop(gallery, None)
            if self._cutting is not None and self._cutting.gallery == gallery:
                self._stop = True
        remove_tree(self.root, gallery)

    def start(self) -> None:
        """Start cutting (a queue made with `start=False` only holds until then)."""
        with self._lock:
            self._started = True
            self._start_thread()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every line is empty and nothing is being cut; True if so."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._lines and self._cutting is None, timeout)

    def _of(self, gallery: str) -> list[Waiting]:
        """The videos of `gallery` waiting, first to last (called with the lock held)."""
        return [w for line in self._lines.values() for w in line if w.gallery == gallery]

    def _refusal(self, turn: str, kept: bool) -> str:
        """Why one more copy of client `turn` cannot wait ('' when it can; the library's own files take no room)."""
        with self._lock:
            if kept:
                return ""
            if sum(not w.kept for w in self._lines.get(turn, ())) >= self.per_client:
                return "skip.video_line_full"
            if sum(not w.kept for line in self._lines.values() for w in line) >= self.in_all:
                return "skip.video_line_busy"
            return ""

    def _refused(self, name: str, key: str) -> BadImageError:
        return BadImageError(name, key, n=self.per_client if key == "skip.video_line_full" else self.in_all)

    def _add(self, waiting: Waiting, resumed: bool = False) -> str:
        """`waiting` joins its client's line; else why not (what a stopped process left always joins)."""
        with self._lock:
            if not resumed and (refused := self._refusal(waiting.turn, waiting.kept)):
                return refused
            self._lines.setdefault(waiting.turn, deque()).append(waiting)
            self._start_thread()
            self._lock.notify_all()
            return ""

    def _start_thread(self) -> None:
        if self._started and self._thread is None:
            self._thread = threading.Thread(target=self._work, name="mmdemo-videos", daemon=True)
            self._thread.start()

    def order(self) -> list[Waiting]:
        """Every video waiting, in the order they will be cut (the galleries taking turns)."""
        with self._lock:
            lines = OrderedDict((gallery, deque(line)) for gallery, line in self._lines.items())
        return [_take_turn(lines) for _ in range(sum(map(len, lines.values())))]

    def _next(self) -> Waiting:
        with self._lock:
            self._lock.wait_for(lambda: bool(self._lines))
            waiting = _take_turn(self._lines)
            self._cutting, self._done_s, self._stop = waiting, 0.0, False
            return waiting

    def _work(self) -> None:
        while True:
            waiting = self._next()
            moments: int | Skipped
            try:
                moments = self._cut(waiting)
            except BadImageError as exc:
                moments = exc.skipped
            except _Stopped:
                moments = 0
            except Exception:  # a background thread: nobody else would see it
                log.exception("cutting video %s of %s failed", waiting.hash, waiting.gallery)
                moments = Skipped.keyed(waiting.name, "skip.not_a_video", error="internal error")
            with self._lock:
                if not self._stop:
                    told = self._told.setdefault(waiting.gallery, _Told())
                    if isinstance(moments, Skipped):
                        told.failed.append(moments)
                    else:
                        told.finished.append((waiting.name, moments))
                self._cutting = None
                self._lock.notify_all()
            if not self._stop:
                _forget_files(inside(self.root, waiting.gallery), waiting.hash, keep_video=waiting.kept)

    def _cut(self, waiting: Waiting) -> int:
        def progress(second: float) -> None:
            if self._stop:
                raise _Stopped
            self._done_s = second
            compute.wait_idle()  # visitors' model jobs first

        with self._commit:  # not reopened (its folders made again) once `forget` has begun deleting it
            if self._stop:
                raise _Stopped
            gallery = self._open(waiting.gallery)
        run, moments = gallery.cut_waiting(ImageFile(waiting.path, waiting.name), waiting.hash, waiting.size,
                                           waiting.kept, progress)  # fmt: skip
        with self._commit:
            if self._stop:
                raise _Stopped
            run.commit()
        return moments


class GalleryLine:
    """One gallery's line, as its adds see it (mmdemo.search.moments.VideoLine)."""

    def __init__(self, queue: VideoQueue, gallery: str):
        self.queue, self.gallery = queue, gallery

    def hold(self, pending: Pending, seconds: float, kept: bool) -> None:
        self.queue.hold(self.gallery, pending, seconds, kept)

    def waiting(self, content_hash: str) -> str | None:
        return self.queue.waiting(self.gallery, content_hash)


def _take_turn(lines: OrderedDict[str, deque[Waiting]]) -> Waiting:
    """The first video of the client whose turn it is (the first); that client goes to the back of the turns."""
    turn, line = next(iter(lines.items()))
    waiting = line.popleft()
    del lines[turn]
    if line:
        lines[turn] = line
    return waiting


def _hold_copy(source: Path, target: Path) -> None:
    """`target`: the upload's bytes, linked or copied, written atomically (two adds may hold the same video)."""
    if target.is_file():
        return
    tmp = target.with_name(f".{target.name}.{threading.get_ident()}.tmp")
    link_or_copy(source, tmp)
    os.replace(tmp, target)


def _forget_files(folder: Path, content_hash: str, keep_video: bool = False) -> None:
    """Delete a cut video's copy and its `.json` (the library's own file stays: `keep_video`)."""
    for path in folder.glob(f"{content_hash}*") if folder.is_dir() else ():
        if path.suffix == ".json" or not keep_video:
            path.unlink(missing_ok=True)
