"""Cutting a video into moments (issue #37): seconds of CPU per minute of 720p video, against decoding alone.

    python bench/bench_video.py [--seconds 60] [--fps 30]

A generated 1280x720 H.264 video (scenes of Flickr8k photos slowly zoomed, 2 to 8 s each): the CPU
time (both cores counted) and wall time of PyAV decoding every frame and nothing else (the floor),
of `mmdemo.video.scenes.moments` at the default sampling (4 comparisons a second, a 640 px keyframe
per scene), and of encoding those keyframes with a random ViT-B-32 (what indexing adds to them).
Goal: at least 10x faster than real time, in CPU seconds.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

from common import SHARED_FLICKR, load_vit_b_32, table


def timed(fn):
    """(result, wall seconds, CPU seconds of this process: every thread, both cores)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def decode_only(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args()

    from mmdemo.video.samples import make_video
    from mmdemo.video.scenes import moments

    rng = random.Random(0)
    lengths: list[float] = []
    while sum(lengths) < args.seconds:
        lengths.append(rng.choice([2.0, 3.0, 4.0, 6.0, 8.0]))
    photos = sorted(SHARED_FLICKR.glob("*.jpg"))[: len(lengths)]
    folder = Path(tempfile.mkdtemp(prefix="mmdemo-bench-video-"))
    try:
        path = folder / "720p.mp4"
        make_video(photos, path, lengths, size=(1280, 720), fps=args.fps)
        minutes = sum(lengths) / 60
        frames, decode_wall, decode_cpu = timed(lambda: decode_only(path))
        found, cut_wall, cut_cpu = timed(lambda: moments(path))
        clip = load_vit_b_32()
        _, encode_wall, encode_cpu = timed(lambda: clip.encode_images([m.keyframe for m in found]))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    video_s = minutes * 60

    def row(what: str, wall: float, cpu: float, goal: str = "") -> tuple[str, str, str, str, str]:
        return what, f"{cpu / minutes:.1f} s", f"{wall / minutes:.1f} s", f"{video_s / cpu:.1f}x", goal

    print(f"{video_s:.0f} s of 1280x720 at {args.fps} fps ({frames} frames): {len(lengths)} scenes, {len(found)} found")
    rows = [
        row("decode every frame (PyAV, FFmpeg's threads)", decode_wall, decode_cpu),
        row("moments(): decode, compare 4 a second, keyframes", cut_wall, cut_cpu, ">= 10x"),
        row(f"+ ViT-B-32 on the {len(found)} keyframes", encode_wall, encode_cpu),
        row("moments() + keyframes embedded", cut_wall + encode_wall, cut_cpu + encode_cpu, ">= 10x"),
    ]
    print(table(rows, ("what", "CPU s / video min", "wall s / video min", "faster than real time (CPU)", "goal")))


if __name__ == "__main__":
    main()
