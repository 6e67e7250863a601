"""A copy of a video that browsers play: the file itself (linked) when it is H.264 in MP4/MOV or VP8/VP9/AV1 in
WebM, else re-encoded to H.264 MP4 by PyAV (the picture only: moments are found and shown by their frames)."""

from __future__ import annotations

import os
import threading
from fractions import Fraction
from pathlib import Path

from mmdemo.files import link_or_copy
from mmdemo.video.opening import open_video

PLAYABLE = {("mp4", "h264"), ("mov", "h264"), ("webm", "vp8"), ("webm", "vp9"), ("webm", "av1"), ("mp4", "av1")}


def playable_copy(source: str | Path, target: Path, name: str | None = None) -> Path:
    """`target` (an .mp4) holding what browsers play of `source`; made once (written atomically)."""
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open_video(source, name) as container:
            stream = container.streams.video[0]
            kinds = {part.strip() for part in (container.format.name or "").split(",")}
            if any((kind, stream.codec_context.name) in PLAYABLE for kind in kinds):
                link_or_copy(Path(source), tmp)
            else:
                _reencode(container, stream, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
    return target


def _reencode(container: object, stream: object, target: Path) -> None:
    import av

    rate = Fraction(stream.average_rate or 25)  # type: ignore[attr-defined]
    with av.open(str(target), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=rate, options={"preset": "veryfast", "crf": "26"})
        video.pix_fmt = "yuv420p"
        for number, frame in enumerate(container.decode(stream)):  # type: ignore[attr-defined]
            if number == 0:  # even sides: what yuv420p needs
                video.width, video.height = frame.width // 2 * 2, frame.height // 2 * 2
            frame = frame.reformat(width=video.width, height=video.height, format="yuv420p")
            frame.pts, frame.time_base = number, 1 / rate  # frame by frame at the stream's rate
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
