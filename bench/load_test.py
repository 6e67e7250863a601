"""Concurrent users: N gradio_client clients doing mixed chat / index / search / classify.

Starts `python app.py` with the tiny profile on a free loopback port (or uses --url), runs the
clients for --seconds, and prints p50/p95 latency per endpoint and what every request got:
an answer, "queue is full" (the bounded queue doing its job), or an error (a failure). A request
unanswered after --request-timeout counts as a hang. Exit status 1 on any error or hang.

    python bench/load_test.py                       # 8 clients, 60 s
    python bench/load_test.py --clients 8 --seconds 10 --max-queue-size 4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from common import start_app, table

ENDPOINTS = ("chat", "index_images", "search", "classify")


def start_tiny_app(data_dir: Path, max_queue_size: int, log: Path) -> tuple[str, subprocess.Popen]:
    """The tiny app on a free loopback port; its URL once it answers."""
    env = {"MMDEMO_PROFILE": "tiny", "MMDEMO_DATA_DIR": str(data_dir), "MMDEMO_MAX_QUEUE_SIZE": str(max_queue_size)}
    return start_app(env, log, wait_s=180)


def sample_images(folder: Path, seed: int, count: int = 4) -> list[Path]:
    """A user's own photos: distinct bytes per user, as real visitors have."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for i in range(count):
        path = folder / f"user{seed}-{i}.jpg"
        Image.new("RGB", (160, 120), tuple(rng.randrange(256) for _ in range(3))).save(path)
        paths.append(path)
    return paths


def call(client, endpoint: str, images: list[Path], rng: random.Random) -> object:
    """Submit one request of this kind; returns the gradio_client Job."""
    from gradio_client import handle_file

    image = handle_file(str(rng.choice(images)))
    if endpoint == "chat":
        message = {"text": "What is in this picture?", "files": [image]}
        return client.submit(message, [], max_new_tokens=16, api_name="/chat")
    if endpoint == "index_images":
        return client.submit([image], api_name="/index_images")
    if endpoint == "search":
        return client.submit(rng.choice(["a red car", "a dog", "the sea"]), None, 8, -1.0, api_name="/search")
    return client.submit(image, [], "cat, dog, car, tree", "custom", "a photo of a {}.", 3, api_name="/classify")


def run_clients(url: str, clients: int, seconds: float, photos: Path, request_timeout: float) -> dict:
    """Run the clients; per endpoint: latencies of answers and counts of each outcome."""
    from gradio_client import Client

    results: dict[str, dict] = defaultdict(lambda: {"latency": [], "ok": 0, "queue_full": 0, "error": 0, "hang": 0})
    errors: list[str] = []
    told: dict[str, str] = {}  # the first "queue is full" message, as users see it
    lock = threading.Lock()
    stop_at = time.time() + seconds

    def user(number: int) -> None:
        rng = random.Random(number)
        images = sample_images(photos, number)
        client = Client(url, verbose=False)
        endpoint, outcome = ENDPOINTS[0], "ok"
        while time.time() < stop_at:
            # Told the queue is full, a person tries the same thing again; otherwise, something else.
            endpoint = endpoint if outcome == "queue_full" else rng.choice(ENDPOINTS)
            started = time.perf_counter()
            outcome = "ok"
            try:
                call(client, endpoint, images, rng).result(timeout=request_timeout)
            except TimeoutError:
                outcome = "hang"
            except Exception as exc:  # noqa: BLE001 (every other outcome is classified by its message)
                text = str(exc)
                outcome = "queue_full" if "queue is full" in text.lower() else "error"
                if outcome == "queue_full":
                    told.setdefault("queue_full", text)
                if outcome == "error":
                    with lock:
                        errors.append(f"{endpoint}: {text[:300]}")
            with lock:
                results[endpoint][outcome] += 1
                if outcome == "ok":
                    results[endpoint]["latency"].append(time.perf_counter() - started)
            if outcome == "queue_full":
                time.sleep(0.2)  # back off, as a person would

    threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + request_timeout + 60)
    hung_threads = sum(thread.is_alive() for thread in threads)
    return {"endpoints": dict(results), "errors": errors, "hung_threads": hung_threads, "told": told}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max-queue-size", type=int, default=64, help="the app's MMDEMO_MAX_QUEUE_SIZE")
    parser.add_argument("--request-timeout", type=float, default=120)
    parser.add_argument("--url", help="an already running app (default: start the tiny app)")
    parser.add_argument("--data-dir", type=Path, help="the app's data dir (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mmdemo-load-") as tmp:
        proc = None
        url = args.url
        if not url:
            url, proc = start_tiny_app(args.data_dir or Path(tmp) / "data", args.max_queue_size, Path(tmp) / "app.log")
        try:
            figures = run_clients(url, args.clients, args.seconds, Path(tmp) / "photos", args.request_timeout)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
                log = (Path(tmp) / "app.log").read_text()
                figures["tracebacks_in_log"] = log.count("Traceback")
    rows = []
    for endpoint in ENDPOINTS:
        r = figures["endpoints"].get(endpoint, {"latency": [], "ok": 0, "queue_full": 0, "error": 0, "hang": 0})
        lat = sorted(r["latency"])
        p50 = statistics.median(lat) if lat else float("nan")
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else float("nan")
        rows.append([endpoint, r["ok"], r["queue_full"], r["error"], r["hang"], f"{p50:.2f}", f"{p95:.2f}"])
    print(f"{args.clients} clients, {args.seconds:.0f} s, queue max {args.max_queue_size}")
    print(table(rows, ("endpoint", "answered", "queue full", "errors", "hangs", "p50 (s)", "p95 (s)")))
    if "queue_full" in figures["told"]:
        print("a full queue answers:", figures["told"]["queue_full"])
    for error in figures["errors"][:10]:
        print("error:", error)
    if args.json:
        args.json.write_text(json.dumps({**figures, "rows": rows}, default=str))
    failed = figures["errors"] or figures["hung_threads"] or figures.get("tracebacks_in_log")
    failed = failed or any(r[4] for r in rows)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
