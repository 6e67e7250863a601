"""Does a query for a resident model wait for another model's load?

    python bench/bench_load.py                  # CPU: random ViT-B-32 + the scaled Qwen2.5-VL of bench_vqa
    python bench/bench_load.py --vlm 3b         # the real 3B shape (random weights, ~7.5 GB of files)

Saves a random-weight Qwen2.5-VL (scaled as in bench_vqa.py unless `--vlm 7b`) and loads it from its
safetensors through the model manager, as the app does, while a visitor sends text queries to the
resident ViT-B-32 (random weights) back to back. Prints the query's p50 / max latency while the VLM
loads over its latency with nothing loading (goal: p50 <= 2x, the load uses the same cores; and the
slowest query well under the load's time: without safe points in loads a query waited for all of
it), and the load's time through the manager (with safe points) over a plain `load_vlm` on the
compute thread (their cost; goal <= 1.25x). One stall of up to a second per load remains: parsing
the tokenizer's JSON holds the GIL, wherever it runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import REPO, table

sys.path.insert(0, str(REPO / "bench"))
from bench_vqa import build_model


def query_times(clip, until: threading.Event | None, rounds: int) -> list[float]:
    """Latencies of text queries sent one after another: `rounds` of them, or until `until` is set."""
    times: list[float] = []
    queries = ["a red car", "a dog on the beach", "mountains at sunset", "a bowl of fruit"]
    while (until is None and len(times) < rounds) or (until is not None and not until.is_set()):
        start = time.perf_counter()
        clip.encode_texts([queries[len(times) % len(queries)]])
        times.append(time.perf_counter() - start)
    return times


def timed_load(manager, meanwhile) -> float:
    """Seconds to load the VLM through the manager while `meanwhile(done_event)` runs here."""
    done = threading.Event()
    start = time.perf_counter()
    loader = threading.Thread(target=lambda: (manager.get("vlm"), done.set()))
    loader.start()
    meanwhile(done)
    loader.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vlm", choices=("scaled", "3b", "7b"), default="scaled")
    parser.add_argument("--repeat", type=int, default=3, help="loads of each kind (alternating)")
    args = parser.parse_args()

    from mmdemo.config import Settings
    from mmdemo.models import compute
    from mmdemo.models.factory import build_manager
    from mmdemo.models.registry import resolve
    from mmdemo.models.vlm import load_vlm

    with tempfile.TemporaryDirectory(prefix="mmdemo-load-") as tmp:
        folder = Path(tmp) / "vlm"
        build_model(args.vlm, folder)
        settings = Settings(profile="random", vlm_model=str(folder), data_dir=Path(tmp) / "data", preload=())
        manager = build_manager(settings)
        clip = manager.get("clip")
        idle = query_times(clip, None, 20)
        during: list[float] = []
        plain, alone, shared = [], [], []  # load seconds: plain load_vlm, manager, manager + queries
        for _ in range(args.repeat):
            manager.unload("vlm")
            shared.append(timed_load(manager, lambda done: during.extend(query_times(clip, done, 0))))
            vlm = manager.loaded("vlm")
            spec, placement = resolve(vlm.model_id), vlm.placement
            manager.unload("vlm")
            alone.append(timed_load(manager, lambda done: done.wait()))
            manager.unload("vlm")
            start = time.perf_counter()
            compute.run(load_vlm, spec, placement, long=True).close()
            plain.append(time.perf_counter() - start)

    base = statistics.median(idle)
    p50, worst = statistics.median(during), max(during)
    load_ratio = statistics.median(alone) / statistics.median(plain)
    print(f"VLM: {args.vlm} (random weights, read from safetensors); {len(during)} queries during {args.repeat} loads")
    print(table([
        ("text query, nothing loading", f"{base * 1e3:.1f}", f"{max(idle) * 1e3:.1f}", "1.00x", ""),
        ("text query, while the VLM loads", f"{p50 * 1e3:.1f}", f"{worst * 1e3:.1f}", f"{p50 / base:.2f}x",
         f"<= 2x ({'met' if p50 / base <= 2 else 'NOT met'})"),
    ], ("request", "p50 (ms)", "max (ms)", "p50 / idle", "goal")))  # fmt: skip
    print(
        f"VLM load with the queries beside it: {statistics.median(shared):.2f} s (median); the slowest query "
        f"waited {worst / statistics.median(shared):.0%} of that"
    )
    print(f"VLM load through the manager (safe points) / plain load: {load_ratio:.2f}x "
          f"(goal <= 1.25x: {'met' if load_ratio <= 1.25 else 'NOT met'})")  # fmt: skip


if __name__ == "__main__":
    main()
