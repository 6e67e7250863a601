"""A video's moments: PyAV decodes it, frame changes cut it into scenes, one keyframe per scene.

Frames are compared `sample_fps` times a second on a 32x18 grey thumbnail and its histogram
(both made by FFmpeg's scaler, not in Python): a scene ends where a frame differs sharply from the
one before (a cut) or has drifted far from the scene's first frame (a pan, a slow change). A
scene's keyframe is the frame half a second in (past a cut's blur), at most `max_side` pixels
long. Scenes shorter than `min_scene_s` join the one before, and a video never yields more than
`per_minute` moments in each minute begun (the shortest scenes merged first): search results stay
one per distinct moment, whatever the editing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmdemo.embedding.images import BadImageError
from mmdemo.video.opening import open_video

SMALL = (32, 18)  # the comparison thumbnail (16:9)
KEYFRAME_DELAY_S = 0.5


@dataclass(frozen=True)
class Cutting:
    """How a video is cut into moments (the Settings' video_* fields)."""

    sample_fps: float = 4.0
    cut: float = 0.18  # mean grey difference (0..1) with the frame before that makes a cut
    drift: float = 0.30  # ... with the scene's first frame
    min_scene_s: float = 1.0
    per_minute: int = 12
    max_seconds: float = 3600.0
    max_side: int = 640
    threads: int = 0  # FFmpeg's decoding threads (0: its choice, every core); a background cut takes one


@dataclass(frozen=True)
class Moment:
    """A scene: from `start` to `end` seconds, and its keyframe (taken at `at`)."""

    start: float
    end: float
    at: float
    keyframe: np.ndarray = field(repr=False)  # (H, W, 3) uint8

    @property
    def label(self) -> str:
        """ "m:ss" (or "h:mm:ss") of its start, as a caption says it."""
        return clock(self.start)


def clock(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class _Scene:
    start: float
    anchor: np.ndarray  # its first frame, small and grey: what later frames drift from
    first: np.ndarray  # its first frame as a picture: the keyframe of a scene too short for the delay
    at: float = -1.0
    keyframe: np.ndarray | None = None

    def keyframe_or_first(self) -> tuple[np.ndarray, float]:
        return (self.keyframe, self.at) if self.keyframe is not None else (self.first, self.start)


Progress = Callable[[float], None]  # seconds of the video cut so far; may wait (take turns) or raise (stop)


def moments(
    path: str | Path, cutting: Cutting = Cutting(), name: str | None = None, progress: Progress | None = None
) -> list[Moment]:
    """The moments of the video at `path` (see the module docstring); BadImageError naming the file and why
    it cannot be used (not a video, too long, no frames). `progress` hears each sampled second."""
    name = name or Path(path).name
    with open_video(path, name) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # FFmpeg's own threads: decoding is most of the cost
        if cutting.threads:
            stream.codec_context.thread_count = cutting.threads
        _check_length(_duration(container, stream), cutting, name)
        scenes, end = _scenes(container.decode(stream), cutting, progress)
    if not scenes:
        raise BadImageError(name, "skip.few_frames")
    return _capped(_closed(scenes, end, cutting.min_scene_s), cutting.per_minute, end)


def seconds(path: str | Path, cutting: Cutting = Cutting(), name: str | None = None) -> float:
    """How long the video at `path` is, from its header (no decoding); BadImageError as `moments` raises it for a
    file that is not a video or is too long."""
    name = name or Path(path).name
    with open_video(path, name) as container:
        duration = _duration(container, container.streams.video[0])
    _check_length(duration, cutting, name)
    return duration


def _check_length(duration: float, cutting: Cutting, name: str) -> None:
    if duration > cutting.max_seconds:
        raise BadImageError(name, "skip.video_too_long", minutes=f"{cutting.max_seconds / 60:g}")


def _duration(container: object, stream: object) -> float:
    """Seconds, from the container or the stream (0 when neither says)."""
    for owner, base in ((container, 1e-6), (stream, float(getattr(stream, "time_base", 0) or 0))):
        value = getattr(owner, "duration", None)
        if value:
            return float(value) * base
    return 0.0


def _scenes(frames: object, cutting: Cutting, progress: Progress | None = None) -> tuple[list[_Scene], float]:
    """Walk the decoded frames: the scenes found (keyframes taken), and the video's end in seconds."""
    scenes: list[_Scene] = []
    previous: np.ndarray | None = None
    next_sample, end, step = 0.0, 0.0, 1.0 / cutting.sample_fps
    for frame in frames:  # type: ignore[attr-defined]  # av's VideoFrame iterator
        when = float(frame.time or 0.0)
        end = max(end, when + step / 2)
        if when > cutting.max_seconds:
            break
        scene = scenes[-1] if scenes else None
        if scene is not None and scene.keyframe is None and when >= scene.start + KEYFRAME_DELAY_S:
            scene.keyframe, scene.at = _picture(frame, cutting.max_side), when
        if when + 1e-6 < next_sample:
            continue
        next_sample = when + step
        if progress is not None:
            progress(when)
        small = frame.reformat(width=SMALL[0], height=SMALL[1], format="gray").to_ndarray().astype(np.float32) / 255
        if scene is None or _differ(small, previous, scene.anchor, cutting):
            scenes.append(_Scene(when, small, _picture(frame, cutting.max_side)))
        previous = small
    return scenes, end


def _differ(small: np.ndarray, previous: np.ndarray | None, anchor: np.ndarray, cutting: Cutting) -> bool:
    """A cut (far from the frame before) or a drift (far from the scene's first frame): the mean of the pixel
    difference and of the histogram difference, each 0..1."""
    return (previous is not None and _distance(small, previous) > cutting.cut) or _distance(
        small, anchor
    ) > cutting.drift


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    pixels = float(np.abs(a - b).mean())
    ha, _ = np.histogram(a, 16, (0, 1))
    hb, _ = np.histogram(b, 16, (0, 1))
    histogram = float(np.abs(ha - hb).sum()) / (2 * a.size)
    return (pixels + histogram) / 2


def _picture(frame: object, max_side: int) -> np.ndarray:
    """A frame as RGB, its longest side at most `max_side` (scaled by FFmpeg)."""
    width, height = frame.width, frame.height  # type: ignore[attr-defined]
    scale = min(1.0, max_side / max(width, height))
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    return frame.reformat(width=size[0], height=size[1], format="rgb24").to_ndarray()  # type: ignore[attr-defined]


def _closed(scenes: list[_Scene], end: float, min_scene_s: float) -> list[Moment]:
    """Moments from the scenes' starts; a scene shorter than `min_scene_s` joins the one before."""
    out: list[Moment] = []
    for number, scene in enumerate(scenes):
        stop = scenes[number + 1].start if number + 1 < len(scenes) else end
        if out and stop - scene.start < min_scene_s:
            out[-1] = Moment(out[-1].start, stop, out[-1].at, out[-1].keyframe)
            continue
        keyframe, at = scene.keyframe_or_first()
        out.append(Moment(scene.start, stop, at, keyframe))
    return out


def _capped(found: list[Moment], per_minute: int, end: float) -> list[Moment]:
    """At most `per_minute` moments in each minute begun (a 23 s video may keep 12 scenes, a 90 s one 24): the
    shortest merged into its shorter neighbour."""
    cap = max(1, per_minute * max(1, math.ceil(end / 60)))
    moments = list(found)
    while len(moments) > cap:
        shortest = min(range(len(moments)), key=lambda i: moments[i].end - moments[i].start)
        if shortest == 0:
            into = 1
        elif shortest == len(moments) - 1:
            into = shortest - 1
        else:
            before, after = moments[shortest - 1], moments[shortest + 1]
            into = shortest - 1 if before.end - before.start <= after.end - after.start else shortest + 1
        first, second = sorted((shortest, into))
        keep = max(moments[first], moments[second], key=lambda m: m.end - m.start)  # the longer one's keyframe
        moments[first : second + 1] = [Moment(moments[first].start, moments[second].end, keep.at, keep.keyframe)]
    return moments
