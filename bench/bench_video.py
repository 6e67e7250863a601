"""Cutting a video into moments (issue #37): seconds of CPU per minute of 720p video, against decoding alone.

    python bench/bench_video.py [--seconds 60] [--fps 30]

A generated 1280x720 H.264 video (scenes of Flickr8k photos slowly zoomed, 2 to 8 s each): the CPU
time (both cores counted) and wall time of PyAV decoding every frame and nothing else (the floor),
of `mmdemo.video.scenes.moments` at the default sampling (4 comparisons a second, a 640 px keyframe
per scene), and of encoding those keyframes with a random ViT-B-32 (what indexing adds to them).
Goal: at least 10x faster than real time, in CPU seconds. Then a search in words over 100,000 rows, all
images against half of them videos' moments (and `type:video`); and the same search while a long video
is cut beside it: as the background line cuts it (one core, visitors' model jobs first) and as a request
cut it before (FFmpeg's threads on every core, no turns).
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


def while_cutting(path: Path, search) -> list[tuple[str, float]]:
    """p50 of `search` alone, then while `path` is cut again and again on another thread: as the background line
    cuts (mmdemo.search.videoqueue) and as an add's request used to."""
    import threading

    from common import median_seconds

    from mmdemo.models import compute
    from mmdemo.video.scenes import Cutting, moments

    out = [("alone", median_seconds(search, rounds=21))]
    for what, cutting, turns in (
        ("while the background line cuts a video (1 core, turns)", Cutting(threads=1), True),
        ("while a request cuts a video (every core, no turns)", Cutting(), False),
    ):
        stop = threading.Event()

        def cut(cutting: Cutting = cutting, turns: bool = turns, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                moments(path, cutting, progress=(lambda _s: compute.wait_idle()) if turns else None)

        worker = threading.Thread(target=cut, daemon=True)
        worker.start()
        time.sleep(1.0)  # the cut is under way
        out.append((what, median_seconds(search, rounds=21)))
        stop.set()
        worker.join()
    return out


def search_rows(size: int, folder: Path, video: Path) -> list[tuple[str, str, str, str, str]]:
    """p50 of a search in words over `size` random vectors: all images, then half of them videos' moments
    (and with `type:video`), end to end (`ranked()`: the text encoded by a random ViT-B-32)."""
    import numpy as np
    from common import median_seconds

    from mmdemo.search.filtering import Filtering
    from mmdemo.search.gallery import Gallery
    from mmdemo.search.ranking import Named, ranked
    from mmdemo.search.store import GalleryStore, NewImage

    clip = load_vit_b_32()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((size, clip.embed_dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    out = []
    for kind, moment in (("images only", False), ("half of them moments", True)):
        rows = [
            NewImage(f"{n:032x}", f"v{n // 6}.mp4", 640, 360, 1, "", "", f"{n // 6:032x}", n % 6 * 5.0, n % 6 * 5.0 + 5)
            if moment and n % 2
            else NewImage(f"{n:032x}", f"{n}.jpg", 640, 360, 1)
            for n in range(size)
        ]
        store = GalleryStore(folder / kind.replace(" ", "-"), clip.embed_dim)
        store.add(rows, vectors)
        named = [Named("shared", kind, Gallery(clip, store, None, 50_000_000))]
        facts = Filtering(None, None)
        for query in ("a dog", "a dog type:video") if moment else ("a dog",):
            p50 = median_seconds(lambda q=query, n=named, f=facts: ranked(n, None, q, None, 12, -1.0, f), rounds=21)
            out.append((f"search '{query}' over {size:,}: {kind}", p50))
        if not moment:
            busy = while_cutting(video, lambda n=named, f=facts: ranked(n, None, "a dog", None, 12, -1.0, f))
            out += [(f"search 'a dog' over {size:,} images {what}", p50) for what, p50 in busy[1:]]
    base = out[0][1]
    return [(what, f"{p50 * 1000:.1f} ms", "", f"{p50 / base:.2f}x", "") for what, p50 in out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", type=int, default=100_000, help="rows in the search rows")
    args = parser.parse_args()

    from mmdemo.video.samples import make_video
    from mmdemo.video.scenes import Cutting, moments

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
        _, one_wall, one_cpu = timed(lambda: moments(path, Cutting(threads=1)))
        clip = load_vit_b_32()
        _, encode_wall, encode_cpu = timed(lambda: clip.encode_images([m.keyframe for m in found]))
        searches = search_rows(args.size, folder, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    video_s = minutes * 60

    def row(what: str, wall: float, cpu: float, goal: str = "") -> tuple[str, str, str, str, str]:
        return what, f"{cpu / minutes:.1f} s", f"{wall / minutes:.1f} s", f"{video_s / cpu:.1f}x", goal

    print(f"{video_s:.0f} s of 1280x720 at {args.fps} fps ({frames} frames): {len(lengths)} scenes, {len(found)} found")
    rows = [
        row("decode every frame (PyAV, FFmpeg's threads)", decode_wall, decode_cpu),
        row("moments(): decode, compare 4 a second, keyframes", cut_wall, cut_cpu, ">= 10x"),
        row("moments() on one core (the background line)", one_wall, one_cpu),
        row(f"+ ViT-B-32 on the {len(found)} keyframes", encode_wall, encode_cpu),
        row("moments() + keyframes embedded", cut_wall + encode_wall, cut_cpu + encode_cpu, ">= 10x"),
    ]
    print(table(rows, ("what", "CPU s / video min", "wall s / video min", "faster than real time (CPU)", "goal")))
    print(f"one core: {one_wall / cut_wall:.2f}x the wall time of every core")
    print(table(searches, ("what", "p50", "", "ratio", "")))


if __name__ == "__main__":
    main()
