"""A moment as a clip of its own: the frames from its start to its end, re-encoded (H.264 MP4, at most 640 px),
for the chat model (asked about this moment: it samples the clip at the chat's fps and pixel budget)."""

from __future__ import annotations

import os
import threading
from fractions import Fraction
from pathlib import Path

from mmdemo.embedding.images import BadImageError

CLIP_SIDE = 640


def cut_clip(source: str | Path, start: float, end: float, target: Path) -> Path:
    """`target` holding `source` from `start` to `end` seconds; made once (written atomically)."""
    if target.is_file():
        return target
    import av

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with av.open(str(source)) as container, av.open(str(tmp), "w", format="mp4") as out:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            container.seek(int(max(start - 1.0, 0) / float(stream.time_base or 1e-6)), stream=stream)
            rate = Fraction(stream.average_rate or 25)
            video = out.add_stream("libx264", rate=rate, options={"preset": "veryfast"})
            video.pix_fmt = "yuv420p"
            count = 0
            for frame in container.decode(stream):
                when = float(frame.time or 0.0)
                if when < start:
                    continue
                if when >= end:
                    break
                if not video.width:
                    scale = min(1.0, CLIP_SIDE / max(frame.width, frame.height))
                    video.width, video.height = int(frame.width * scale) // 2 * 2, int(frame.height * scale) // 2 * 2
                picture = frame.reformat(width=video.width, height=video.height, format="yuv420p")
                picture.pts, picture.time_base = count, 1 / rate  # the clip's own clock, frame by frame
                count += 1
                out.mux(video.encode(picture))
            out.mux(video.encode(None))
    except (av.FFmpegError, IndexError, OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise BadImageError(Path(source).name, "skip.not_a_video", error=exc) from None
    os.replace(tmp, target)
    return target
