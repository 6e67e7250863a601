"""Videos added to a gallery: each cut into moments (mmdemo.video.scenes), each moment a row of its own —
its keyframe's CLIP vector, the keyframe as its thumbnail (what the text stage reads too), the video's
content hash, and its start and end seconds; beside the thumbnails, a copy of the video that browsers
play (mmdemo.video.playable). Moments are not screened as near-duplicates: a video's
scenes look alike by nature.

An add cuts its videos in its own request up to `inline_s` seconds of video in all; the longer ones wait
in the gallery's line (mmdemo.search.videoqueue) and are cut in the background, so that no request
holds a model slot for minutes."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from PIL import Image

from mmdemo.embedding.images import BadImageError, Skipped
from mmdemo.models import compute
from mmdemo.search.store import NewImage
from mmdemo.video.playable import playable_copy
from mmdemo.video.scenes import Cutting, Moment, Progress, moments, seconds

if TYPE_CHECKING:
    from mmdemo.models.clip import ClipModel
    from mmdemo.search.adding import Adding, Pending


def moment_hash(video: str, start: float) -> str:
    """A moment's own hash: the video's, and its start in milliseconds (thumbnails are named by it)."""
    return f"{video}-{round(start * 1000):09d}"


class VideoLine(Protocol):
    """Where a gallery's long videos wait to be cut in the background (mmdemo.search.videoqueue)."""

    def hold(self, pending: Pending, seconds: float, kept: bool) -> None:
        """Keep the video until it is cut (BadImageError when this gallery has too many waiting)."""
        ...

    def waiting(self, content_hash: str) -> str | None:
        """The name of the video with these bytes waiting in this gallery's line, if one is."""
        ...


@dataclass
class VideosAdded:
    """What an add did with its videos: cut here, or left in the line (by name)."""

    added: list[str] = field(default_factory=list)
    queued: list[tuple[str, float]] = field(default_factory=list)  # (name, seconds)


def add_videos(
    clip: ClipModel,
    run: Adding,
    videos: Sequence[Pending],
    cutting: Cutting,
    skipped: list[Skipped],
    line: VideoLine | None = None,
    inline_s: float = math.inf,
) -> VideosAdded:
    """Cut each video into moments and hand their rows to the add (`run`), up to `inline_s` seconds of video;
    the others wait in `line`. A video that cannot be decoded is skipped with the reason; the others, and
    every image of the add, are kept."""
    done = VideosAdded()
    take_turns = clip.placement.device == "cpu" and not compute.on_compute_thread()
    for pending in videos:
        try:
            length = seconds(pending.file.path, cutting, pending.file.name)
            if line is not None and length > inline_s:
                line.hold(pending, length, run.keep_source)
                done.queued.append((pending.file.name, length))
                continue
            inline_s -= length
            if take_turns:  # decoding takes turns with model jobs, as images' decoding does (ingest.py)
                compute.wait_idle()
            cut_video(clip, run, pending, cutting)
        except BadImageError as exc:
            skipped.append(exc.skipped)
            continue
        done.added.append(pending.file.name)
    return done


def cut_video(
    clip: ClipModel, run: Adding, pending: Pending, cutting: Cutting, progress: Progress | None = None
) -> int:
    """Cut one video into moments and hand their rows to `run`; how many. BadImageError when it cannot be."""
    found = moments(pending.file.path, cutting, pending.file.name, progress)
    # What the page plays from a moment's second (an upload's file is deleted after the add).
    playable_copy(pending.file.path, run.store.video_path(pending.hash), pending.file.name)
    vectors = clip.encode_images([moment.keyframe for moment in found])
    run.take([_row(run, pending, moment) for moment in found], list(vectors))
    return len(found)


def _row(run: Adding, pending: Pending, moment: Moment) -> NewImage:
    own = moment_hash(pending.hash, moment.start)
    save_keyframe(moment, run.store.thumb_path(own))
    run.paths[own] = run.paths[pending.hash]  # the file it came from (a kept source: the video)
    height, width = moment.keyframe.shape[:2]
    start, end = round(moment.start, 3), round(moment.end, 3)
    return NewImage(own, pending.file.name, width, height, pending.size, "", "", pending.hash, start, end)


def save_keyframe(moment: Moment, path: Path) -> None:
    """The keyframe as a JPEG (written atomically: sessions may add the same video at once)."""
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    Image.fromarray(moment.keyframe).save(tmp, "JPEG", quality=85)
    os.replace(tmp, path)
