"""Many chat users: the app with the VLM in process vs the app on an inference server.

    python bench/bench_serving.py                 # CPU: transformers serve, the scaled Qwen2.5-VL
    python bench/bench_serving.py --server-url http://127.0.0.1:8000/v1 --served-model qwen2.5-vl-7b \
        --vlm 7b --device cuda                   # a GPU: vLLM started by you (bench/README)

N = 1, 4 and 8 visitors (`gradio_client`, one thread each) send one image and a question at once,
each answer a fixed length (the random-weight model never stops early). The same architecture runs
(a) in the app, on its compute thread, and (b) in `transformers serve`, with the app forwarding
(MMDEMO_VLM_URL). Printed: aggregate tokens/s, p50/p95 time to first token, and
- the remote path's own overhead at N=1: the app's answer time over the same request sent straight
  to the server with the `openai` client (goal <= 1.10x);
- that the app forwards concurrent chats at once: at N=8, the spread of the 8 requests' arrival at
  the server (read from its request log as it is written; goal <= 0.5 s).
`transformers serve` generates one request at a time for Qwen2.5-VL, so (b)'s throughput is (a)'s
here; the batching gain needs vLLM on a GPU (see bench/README).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_fairness import percentiles, sample_images
from bench_vqa import build_model
from common import free_port, start_app, table

QUESTION = "Describe this picture in detail."


class ServerLog:
    """`transformers serve` on a free port, its log read as it is written: when each request arrived."""

    def __init__(self, model: Path, dtype: str) -> None:
        self.port = free_port()
        cmd = [str(Path(sys.executable).with_name("transformers")), "serve", str(model), "--host", "127.0.0.1",
               "--port", str(self.port), "--dtype", dtype, "--log-level", "info"]  # fmt: skip
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.arrivals: list[float] = []
        self.ready = threading.Event()
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(180):
            raise SystemExit("transformers serve did not start:\n" + "".join(self.lines[-40:]))
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if "Request received" in line:
                self.arrivals.append(time.perf_counter())
            elif "Uvicorn running" in line or "Application startup complete" in line:
                self.ready.set()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def visit(url: str, image: Path, tokens: int, start: threading.Barrier, out: list[dict]) -> None:
    """One visitor: wait for the others, send, and time the first token and the end."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False)
    start.wait()
    sent = time.perf_counter()
    job = client.submit({"text": QUESTION, "files": [handle_file(str(image))]}, [], max_new_tokens=tokens,
                        greedy=True, api_name="/chat")  # fmt: skip
    first = None
    for history, _ in job:
        if first is None and history and history[-1]["role"] == "assistant" and _text(history[-1]):
            first = time.perf_counter()
    job.result()
    out.append({"ttft": (first or time.perf_counter()) - sent, "sent": sent, "done": time.perf_counter()})


def _text(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content if isinstance(p, dict))


def round_of(url: str, image: Path, users: int, tokens: int) -> dict[str, float]:
    """`users` visitors at once: aggregate tokens/s and TTFT percentiles."""
    results: list[dict] = []
    barrier = threading.Barrier(users)
    threads = [threading.Thread(target=visit, args=(url, image, tokens, barrier, results)) for _ in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    span = max(r["done"] for r in results) - min(r["sent"] for r in results)
    p50, p95 = percentiles([r["ttft"] for r in results])
    return {"tok/s": users * tokens / span, "ttft p50": p50, "ttft p95": p95, "answer": span}


def direct(server_url: str, model: str, image: Path, tokens: int) -> float:
    """The same request straight to the server with the openai client: seconds to the last token."""
    from openai import OpenAI

    from mmdemo.chat.prompt import ImageBudget, to_qwen_messages
    from mmdemo.chat.remote import RemoteVLM

    vlm = RemoteVLM(server_url, model=model)
    turn = [{"role": "user", "content": {"path": str(image)}}, {"role": "user", "content": QUESTION}]
    messages = to_qwen_messages(turn, ImageBudget(max_pixels=512 * 28 * 28))  # the app's CPU default
    payload = vlm.prepare(messages, 0).payload
    client = OpenAI(base_url=server_url, api_key="EMPTY")
    start = time.perf_counter()
    for _ in client.chat.completions.create(model=model, messages=payload, max_tokens=tokens, temperature=0.0,
                                            top_p=1.0, stream=True):  # fmt: skip
        pass
    return time.perf_counter() - start


def measure(url: str, image: Path, args: argparse.Namespace) -> dict[int, dict[str, float]]:
    round_of(url, image, 1, 4)  # warm-up: models resident, first-request costs paid
    return {n: round_of(url, image, n, args.tokens) for n in args.users}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--vlm", choices=("scaled", "7b"), default="scaled")
    parser.add_argument("--tokens", type=int, default=48, help="tokens per answer")
    parser.add_argument("--users", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 8])
    parser.add_argument("--server-url", default="", help="an already running server (e.g. vLLM) instead of ours")
    parser.add_argument("--served-model", default="", help="its model name (with --server-url)")
    args = parser.parse_args()
    from mmdemo.models.device import pick_device, placement_for

    dtype = placement_for(pick_device(args.device), "auto").dtype
    with tempfile.TemporaryDirectory(prefix="mmdemo-serving-") as tmp:
        tmp_path = Path(tmp)
        image = sample_images(tmp_path / "photos", 0, 1)[0]
        if not args.server_url:  # else the server has its own model
            build_model(args.vlm, tmp_path / "vlm")
        base = {"MMDEMO_PROFILE": "random", "MMDEMO_DEVICE": args.device, "MMDEMO_DATA_DIR": str(tmp_path / "data"),
                "MMDEMO_VLM_MAX_PIXELS": str(512 * 28 * 28)}  # fmt: skip
        results, server = {}, None
        if not args.server_url:
            url, app = start_app({**base, "MMDEMO_VLM_MODEL": str(tmp_path / "vlm")}, tmp_path / "local.log")
            try:
                results["in process"] = measure(url, image, args)
            finally:
                app.terminate()
                app.wait(timeout=30)
            server = ServerLog(tmp_path / "vlm", dtype)
        server_url = args.server_url or server.url
        model = args.served_model or str(tmp_path / "vlm")
        try:
            remote = {**base, "MMDEMO_VLM_URL": server_url, "MMDEMO_VLM_SERVED_MODEL": model}
            url, app = start_app(remote, tmp_path / "remote.log")
            try:
                alone = statistics.median(direct(server_url, model, image, args.tokens) for _ in range(3))
                results["on the server"] = {}
                for n in args.users:
                    before = len(server.arrivals) if server else 0
                    results["on the server"][n] = round_of(url, image, n, args.tokens)
                    if server:
                        got = server.arrivals[before:]
                        results["on the server"][n]["spread"] = max(got) - min(got) if len(got) == n else float("nan")
                via_app = statistics.median(round_of(url, image, 1, args.tokens)["answer"] for _ in range(3))
            finally:
                app.terminate()
                app.wait(timeout=30)
            tracebacks = sum((tmp_path / f).read_text().count("Traceback") for f in ("remote.log",))
        finally:
            if server:
                server.stop()

    rows = []
    for backend, by_n in results.items():
        for n, r in by_n.items():
            spread = f"{r['spread']:.2f} s" if "spread" in r else ""
            rows.append((backend, str(n), f"{r['tok/s']:.1f}", f"{r['ttft p50']:.2f}", f"{r['ttft p95']:.2f}", spread))
    print(f"VLM: {args.vlm} ({dtype}), device: {args.device}, {args.tokens}-token answers, one image each")
    print(table(rows, ("backend", "users", "tokens/s", "TTFT p50 (s)", "TTFT p95 (s)", "arrival spread")))
    overhead = via_app / alone
    print(f"remote overhead at N=1: {via_app:.2f} s through the app vs {alone:.2f} s straight to the server: "
          f"{overhead:.3f}x (goal <= 1.10x: {'met' if overhead <= 1.10 else 'NOT met'})")  # fmt: skip
    if server and 8 in results["on the server"]:
        spread = results["on the server"][8]["spread"]
        print(f"N=8: all requests reached the server within {spread:.2f} s of each other "
              f"(goal <= 0.5 s: {'met' if spread <= 0.5 else 'NOT met'})")  # fmt: skip
    print(f"tracebacks in the app log: {tracebacks}")


if __name__ == "__main__":
    main()
