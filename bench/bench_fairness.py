"""Fair sharing: does a search or a classification wait for someone else's chat answer?

    python bench/bench_fairness.py                  # CPU: random ViT-B-32 + the scaled Qwen2.5-VL of bench_vqa
    python bench/bench_fairness.py --device cuda --vlm 7b

Starts `python app.py` (random-weight ViT-B-32 and a random-weight Qwen2.5-VL, scaled as in
bench_vqa.py unless `--vlm 7b`) on a loopback port and drives it with `gradio_client`, as visitors:
- a probe visitor sending a text search and a one-image classification in turn, `--gap` seconds
  apart, (a) with nothing else running and (b) while 1 and 3 other visitors (processes of their
  own) stream long chat answers: p50 / p95 latency, and (b)/(a). Goal: (b)/(a) <= 1.5x at p50.
- the chat's decode rate (tokens/s, from the first to the last streamed chunk of an answer that
  always runs to max_new_tokens) alone and with the search/classify traffic beside it. Goal:
  slowdown <= 1.15x.
The phases run in turn `--repeat` times and are pooled: this machine drifts run to run by about as
much as the effects measured.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import REPO, start_app, table

sys.path.insert(0, str(REPO / "bench"))
from bench_vqa import build_model
from load_test import sample_images


def start_bench_app(data_dir: Path, vlm: Path, device: str, log: Path) -> tuple[str, subprocess.Popen]:
    """The app with random ViT-B-32 and the VLM in `vlm`; its URL once it answers."""
    env = {"MMDEMO_PROFILE": "random", "MMDEMO_VLM_MODEL": str(vlm), "MMDEMO_DATA_DIR": str(data_dir),
           "MMDEMO_DEVICE": device}  # fmt: skip
    return start_app(env, log)


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def chat_forever(url: str, image: Path, tokens: int) -> None:
    """A visitor (its own process, as visitors are) streaming long answers one after another.

    Prints "streaming" when its first answer starts, then each answer's decode rate in tokens/s.
    """
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False)
    while True:
        message = {"text": "Describe this picture in detail.", "files": [handle_file(str(image))]}
        job = client.submit(message, [], max_new_tokens=tokens, greedy=True, api_name="/chat")
        first = last = None
        for update in job:
            last = time.perf_counter()
            if first is None and update[0][-1]["role"] == "assistant":
                first = last
                print("streaming", flush=True)
        if first is not None and last > first:
            # The first update carries at least one token; the answer always runs to `tokens`.
            print(f"rate {(tokens - 1) / (last - first):.3f}", flush=True)


class Chatter:
    """`chat_forever` in a child process, read from a thread."""

    def __init__(self, url: str, image: Path, tokens: int) -> None:
        self.rates: list[float] = []
        self.streaming = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--chatter", url, str(image), str(tokens)], stdout=subprocess.PIPE, text=True
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("streaming"):
                self.streaming.set()
            elif line.startswith("rate "):
                self.rates.append(float(line.split()[1]))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.reader.join(5)


def chat_alone(url: str, image: Path, tokens: int, answers: int = 2) -> list[float]:
    """Decode rates of `answers` whole answers with nothing beside them."""
    chatter = Chatter(url, image, tokens)
    chatter.streaming.wait(300)
    while len(chatter.rates) < answers:
        time.sleep(0.1)
    chatter.stop()
    return chatter.rates[:answers]


def probe(url: str, image: Path, rounds: int, gap: float) -> dict[str, list[float]]:
    """One visitor alternating a text search and a one-image classification: latencies in seconds."""
    from gradio_client import Client, handle_file

    # download_files=False: the answer's latency, not that of fetching 12 thumbnails one by one
    # afterwards (a browser fetches them in parallel, as it renders the results).
    client = Client(url, verbose=False, download_files=False)
    times: dict[str, list[float]] = {"search": [], "classify": []}
    queries = ["a red car", "a dog on the beach", "mountains at sunset", "a bowl of fruit"]
    for i in range(rounds):
        start = time.perf_counter()
        client.predict(queries[i % len(queries)], None, 12, -1.0, api_name="/search")
        times["search"].append(time.perf_counter() - start)
        time.sleep(gap)
        start = time.perf_counter()
        client.predict(handle_file(str(image)), [], "cat, dog, car, tree, person", "custom", "a photo of a {}.", 5,
                       api_name="/classify")  # fmt: skip
        times["classify"].append(time.perf_counter() - start)
        time.sleep(gap)
    return times


def main() -> None:
    if sys.argv[1:2] == ["--chatter"]:
        url, image, tokens = sys.argv[2:5]
        return chat_forever(url, Path(image), int(tokens))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--vlm", choices=("scaled", "7b"), default="scaled")
    parser.add_argument("--rounds", type=int, default=8, help="searches and classifications per phase and repeat")
    parser.add_argument("--repeat", type=int, default=3, help="times the phases run in turn (pooled)")
    parser.add_argument("--tokens", type=int, default=400, help="tokens per chat answer")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between the probe's requests")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mmdemo-fair-") as tmp:
        tmp_path = Path(tmp)
        build_model("scaled" if args.vlm == "scaled" else "7b", tmp_path / "vlm")
        image = sample_images(tmp_path / "photos", 0, 1)[0]
        url, proc = start_bench_app(tmp_path / "data", tmp_path / "vlm", args.device, tmp_path / "app.log")
        try:
            probe(url, image, 2, 0)  # warm-up: models resident, library indexed, label vectors cached
            # Phases in turn, `--repeat` times, pooled: this machine drifts (clock, neighbours) by as
            # much as the effect measured, and interleaving spreads the drift over every phase.
            results: dict[str, dict[str, list[float]]] = {}
            rates_alone: list[float] = []
            rate_shared: list[float] = []

            def pool(phase: str, times: dict[str, list[float]]) -> None:
                for kind, values in times.items():
                    results.setdefault(phase, {}).setdefault(kind, []).extend(values)

            for _ in range(args.repeat):
                pool("alone", probe(url, image, args.rounds, args.gap))
                rates_alone += chat_alone(url, image, args.tokens, answers=1)
                for chatters in (1, 3):
                    group = [Chatter(url, image, args.tokens) for _ in range(chatters)]
                    group[0].streaming.wait(300)
                    pool(f"{chatters} chatting", probe(url, image, args.rounds, args.gap))
                    while not group[0].rates:  # an answer generated while the probe ran
                        time.sleep(0.1)
                    for chatter in group:
                        chatter.stop()
                        rate_shared += chatter.rates
            rate_alone = statistics.median(rates_alone)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        tracebacks = (tmp_path / "app.log").read_text().count("Traceback")

    rows = []
    for kind in ("search", "classify"):
        base, _ = percentiles(results["alone"][kind])
        for phase, times in results.items():
            p50, p95 = percentiles(times[kind])
            goal = "" if phase == "alone" else ("<= 1.5x (met)" if p50 / base <= 1.5 else "<= 1.5x (NOT met)")
            rows.append((kind, phase, f"{p50:.3f}", f"{p95:.3f}", f"{p50 / base:.2f}x", goal))
    slowdown = rate_alone / statistics.median(rate_shared) if rate_shared else float("nan")
    print(
        f"VLM: {args.vlm}, device: {args.device}, {args.tokens}-token answers, "
        f"{args.rounds} rounds per phase x {args.repeat}, a probe request every ~{args.gap:.1f} s + its latency"
    )
    print(table(rows, ("request", "while", "p50 (s)", "p95 (s)", "p50 / alone", "goal")))
    print(
        f"chat decode: {rate_alone:.1f} tok/s alone, {statistics.median(rate_shared):.1f} tok/s with search/classify "
        f"beside it: slowdown {slowdown:.2f}x (goal <= 1.15x: {'met' if slowdown <= 1.15 else 'NOT met'})"
    )
    print(f"tracebacks in the app log: {tracebacks}")


if __name__ == "__main__":
    main()
