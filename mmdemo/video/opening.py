"""Opening a video with PyAV, and naming why it cannot be used: every reader of videos (the scenes, the
playable copy, the chat's frames) says the same "not found" or "not a video (why)"."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmdemo.embedding.images import BadImageError


@contextlib.contextmanager
def open_video(path: str | Path, name: str | None = None) -> Iterator[Any]:
    """The video at `path`, opened by PyAV (an `av` input container with at least one video stream). A failure to
    open or decode it within the block is raised as BadImageError naming the file (`name`) and why."""
    import av

    name = name or Path(path).name
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise BadImageError(name, "skip.not_a_video", error="no video stream")
            yield container
    except FileNotFoundError:
        raise BadImageError(name, "skip.not_found") from None
    except (av.FFmpegError, IndexError, OSError, ValueError) as exc:
        raise BadImageError(name, "skip.not_a_video", error=exc) from None
