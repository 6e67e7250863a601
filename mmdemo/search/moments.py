"""Videos added to a gallery: each cut into moments (mmdemo.video.scenes), each moment a row of its own —
its keyframe's CLIP vector, the keyframe as its thumbnail (what the text stage reads too), the video's
content hash, and its start and end seconds; beside the thumbnails, a copy of the video that browsers
play (mmdemo.video.playable). Moments are not screened as near-duplicates: a video's
scenes look alike by nature."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from mmdemo.embedding.images import BadImageError, Skipped
from mmdemo.models import compute
from mmdemo.search.store import NewImage
from mmdemo.video.playable import playable_copy
from mmdemo.video.scenes import Cutting, Moment, moments

if TYPE_CHECKING:
    from mmdemo.models.clip import ClipModel
    from mmdemo.search.adding import Adding, Pending


def moment_hash(video: str, start: float) -> str:
    """A moment's own hash: the video's, and its start in milliseconds (thumbnails are named by it)."""
    return f"{video}-{round(start * 1000):09d}"


def add_videos(
    clip: ClipModel, run: Adding, videos: Sequence[Pending], cutting: Cutting, skipped: list[Skipped]
) -> list[str]:
    """Cut each video into moments and hand their rows to the add (`run`); the names of those added. A video
    that cannot be decoded is skipped with the reason; the others, and every image of the add, are kept."""
    added = []
    take_turns = clip.placement.device == "cpu" and not compute.on_compute_thread()
    for pending in videos:
        if take_turns:  # decoding takes turns with model jobs, as images' decoding does (mmdemo.embedding.ingest)
            compute.wait_idle()
        try:
            found = moments(pending.file.path, cutting, pending.file.name)
            # What the page plays from a moment's second (an upload's file is deleted after the add).
            playable_copy(pending.file.path, run.store.video_path(pending.hash), pending.file.name)
        except BadImageError as exc:
            skipped.append(exc.skipped)
            continue
        vectors = clip.encode_images([moment.keyframe for moment in found])
        rows = [_row(run, pending, moment) for moment in found]
        run.take(rows, list(vectors))
        added.append(pending.file.name)
    return added


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
