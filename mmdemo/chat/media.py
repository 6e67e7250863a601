"""Images and videos of a chat turn: decoded once, checked, named when they fail.

The conversation is re-read on every turn (the prompt is rebuilt from the history), so decoded
media are kept in a small LRU cache keyed by path, modification time and size budget.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from mmdemo.embedding.images import VIDEO_SUFFIXES, BadImageError, Skipped, open_image
from mmdemo.video.opening import open_video


@dataclass(frozen=True)
class Frames:
    """Frames sampled from a video, and the rate they were sampled at (frames per second)."""

    images: tuple[Image.Image, ...]
    sample_fps: float


def is_video(path: str | Path) -> bool:
    """True for the video containers the chat accepts."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


MAX_ASPECT = 200  # qwen_vl_utils refuses images stretched further than this


def load_image(path: str | Path, max_file_pixels: int, max_pixels: int) -> Image.Image:
    """An RGB image for the VLM; JPEGs are decoded no larger than `max_pixels` needs.

    A 50 MP phone photo wanted at ~1 MP decodes at 1/4 or 1/8 scale; qwen_vl_utils then resizes
    it to the patch grid within `max_pixels`.
    """
    return _load_image(str(path), _mtime(path), max_file_pixels, max_pixels)


@functools.lru_cache(maxsize=32)
def _load_image(path: str, mtime: int, max_file_pixels: int, max_pixels: int) -> Image.Image:
    # The shorter side of the final image is at most sqrt(max_pixels): decoding at least that
    # many pixels per side loses nothing.
    return open_image(path, max_file_pixels, min_side=math.isqrt(max_pixels))


def read_video(path: str | Path, max_frames: int, fps: float = 2.0) -> Frames:
    """Up to `max_frames` frames, evenly spread, at most `fps` per second (PyAV), or BadImageError."""
    return _read_video(str(path), _mtime(path), max_frames, fps)


@functools.lru_cache(maxsize=4)
def _read_video(path: str, mtime: int, max_frames: int, fps: float) -> Frames:
    name = Path(path).name
    with open_video(path, name) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        # Count frames from packets (no decoding), then decode keeping only the picked ones:
        # memory stays at max_frames frames however long the video is.
        total = sum(1 for packet in container.demux(stream) if packet.size)
        if total < 2:
            raise BadImageError(name, "skip.video_frames", n=total)
        duration = total / rate
        # An even count: Qwen-VL merges frames in pairs (temporal patch size 2).
        count = max(2, min(max_frames, total, math.ceil(duration * fps)) // 2 * 2)
        picks = {round(i * (total - 1) / (count - 1)) for i in range(count)}
        container.seek(0)
        frames = [f.to_image().convert("RGB") for i, f in enumerate(container.decode(stream)) if i in picks]
    if len(frames) < 2:
        raise BadImageError(name, "skip.few_frames")
    frames = frames[: len(frames) // 2 * 2]
    return Frames(tuple(frames), sample_fps=len(frames) / duration)


def _mtime(path: str | Path) -> int:
    """Part of the decode-cache key: a file replaced under the same name is decoded again."""
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return 0  # missing: the decoder reports it by name


def check_attachments(
    paths: Sequence[str], max_file_pixels: int, max_pixels: int, max_frames: int
) -> tuple[list[str], list[Skipped]]:
    """Split a turn's files into usable ones and skipped ones (name and reason)."""
    good, skipped = [], []
    for path in paths:
        try:
            if is_video(path):
                read_video(path, max_frames)
            else:
                image = load_image(path, max_file_pixels, max_pixels)
                if max(image.size) > MAX_ASPECT * min(image.size):
                    raise BadImageError(Path(path).name, "skip.too_thin", ratio=MAX_ASPECT)
            good.append(path)
        except BadImageError as exc:
            skipped.append(exc.skipped)
    return good, skipped
