"""Helpers shared by the benchmarks: the real ViT-B-32 at mmdemo's dtype, timing, sample photos."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED_FLICKR = REPO.parent / "shared" / "data" / "flickr8k_1k" / "images"


def load_vit_b_32(dtype: str = "auto", batch_size: int = 32):
    """ViT-B-32 with random weights through mmdemo's loader, at the dtype mmdemo would pick."""
    from mmdemo.models import compute
    from mmdemo.models.clip import load_clip
    from mmdemo.models.device import pick_device, placement_for
    from mmdemo.models.registry import REGISTRY

    placement = placement_for(pick_device("auto"), dtype)
    # On the compute thread, like every torch op in mmdemo: a second thread running torch ops
    # slows OpenMP down for the whole process (mmdemo/models/compute.py).
    return compute.run(load_clip, REGISTRY["random-clip-vit-b-32"], placement, batch_size=batch_size)


def median_seconds(fn: Callable[[], object], rounds: int = 5, warmup: int = 1) -> float:
    """Median wall time of fn() over `rounds` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def seconds(fn: Callable[[], object]) -> float:
    """Wall time of one fn() call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sample_photos(n: int) -> list[Path]:
    """n photos: Flickr8k from ../shared when present, else generated JPEGs (500x375, noisy)."""
    if SHARED_FLICKR.is_dir():
        photos = sorted(SHARED_FLICKR.glob("*.jpg"))[:n]
        if len(photos) == n:
            return photos
    import numpy as np
    from PIL import Image

    folder = Path(tempfile.mkdtemp(prefix="mmdemo-bench-"))
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        base = rng.integers(0, 255, (1, 1, 3))
        noise = rng.integers(0, 60, (375, 500, 3))
        path = folder / f"photo{i:04d}.jpg"
        Image.fromarray((base + noise).clip(0, 255).astype("uint8")).save(path, quality=90)
        paths.append(path)
    return paths


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """A fixed-width text table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(env: dict[str, str], log: Path, wait_s: float = 300) -> tuple[str, subprocess.Popen]:
    """`python app.py` on a free loopback port with these MMDEMO_* settings; its URL once it answers."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **env, "MMDEMO_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + wait_s
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.headers.get("X-Mmdemo-Starting") is None:  # the app, not its starting page
                    return url, proc
            time.sleep(0.5)
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"app.py did not start:\n{log.read_text()[-3000:]}")
