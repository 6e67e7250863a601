"""Chat on a CPU: mmdemo in process (fp32, and bf16 where the CPU has AVX512-BF16) vs llama.cpp (Q8_0, Q4_K_M).

    python bench/bench_cpu_chat.py                  # the real Qwen2.5-VL-3B shape, random weights (~25 GB disk)
    python bench/bench_cpu_chat.py --arch scaled    # the scaled model of bench_vqa.py: a quick run

The same architecture and weights everywhere: a random-weight Qwen2.5-VL saved once (bf16), loaded
in process through mmdemo's loader, and converted to GGUF + mmproj by llama.cpp's own script, then
quantized. One image (448x448) and a question, 128-token answers (random weights never stop early:
in process the model has no EOS; llama-server runs with --ignore-eos). Rows: time to first token and
decode tokens/s, each ratio against in-process fp32 measured in the same run; and for llama.cpp,
mmdemo's path (RemoteVLM, what the Chat tab uses) against the same request straight to the server
(the openai client), whole-answer time. Goals (issue #30): llama.cpp decodes >= 4x in-process
fp32; mmdemo's overhead over talking to the server directly <= 1.10x.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_vqa import build_model
from common import REPO, free_port, table

sys.path.insert(0, str(REPO))
from tests import llamacpp  # builds llama-server from source (cached), converts to GGUF


def cpu_has_bf16() -> bool:
    return "avx512_bf16" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else False


def in_process(model_dir: Path, dtype: str, prompts: list[list], tokens: int) -> tuple[float, float]:
    """(time to first token s, decode tokens/s), medians, of the model loaded through mmdemo's loader.

    Timed as `generate` calls (1 token, then `tokens`), not from streamed text: a random model's text
    has few spaces, and the streamer holds text back until one comes. (mmdemo's streaming path costs
    <= 1.05x bare `generate`: bench_vqa.py.)"""
    from mmdemo.chat.prompt import build_prompt
    from mmdemo.models import compute
    from mmdemo.models.device import placement_for
    from mmdemo.models.registry import resolve
    from mmdemo.models.vlm import load_vlm

    vlm = compute.run(load_vlm, resolve(str(model_dir)), placement_for("cpu", dtype), long=True)

    def generate(messages: list, n: int) -> float:
        inputs = build_prompt(vlm, messages).inputs
        started = time.perf_counter()
        compute.run(vlm.model.generate, **inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False, long=True)
        return time.perf_counter() - started

    firsts, rates = [], []
    for messages in prompts[:2]:
        first, whole = generate(messages, 1), generate(messages, tokens)
        firsts.append(first)
        rates.append((tokens - 1) / (whole - first))
    vlm.close()  # frees the weights before the next dtype's copy is loaded
    gc.collect()
    return statistics.median(firsts), statistics.median(rates)


def on_server(url: str, prompts: list[list], tokens: int) -> tuple[float, float, float, float]:
    """(TTFT, decode tokens/s, whole answer s) through mmdemo's RemoteVLM, and the whole answer s of the same
    request sent straight to the server with the openai client; medians, the two taken in turn. Every
    request has an image of its own: llama.cpp's prompt cache would otherwise make first tokens free."""
    import openai

    from mmdemo.chat.pipeline import AnswerOptions, AnswerStats, GenerationParams
    from mmdemo.chat.remote import RemoteVLM

    vlm = RemoteVLM(url, server="llamacpp")
    params = GenerationParams(max_new_tokens=tokens, greedy=True)
    client = openai.OpenAI(base_url=url, api_key="EMPTY")
    firsts, rates, ours, direct = [], [], [], []
    for mine, theirs in zip(prompts[::2], prompts[1::2], strict=True):  # the first pair warms up; not counted
        for messages in (mine, theirs):
            vlm.prepare(messages, 0)  # both sides send the image already encoded (mmdemo keeps encodings)
        request = {**vlm._request(vlm.prepare(theirs, 0).payload, params), "stream": True}
        stats, started = AnswerStats(), time.perf_counter()
        list(vlm.stream(vlm.prepare(mine, 0), AnswerOptions(params, threading.Event(), stats=stats)))
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        for _ in client.chat.completions.create(**request):
            pass
        direct.append(time.perf_counter() - started)
        firsts.append(stats.first_token_seconds)
        rates.append((stats.new_tokens - 1) / stats.decode_seconds)
    med = lambda xs: statistics.median(xs[1:])  # noqa: E731
    return med(firsts), med(rates), med(ours), med(direct)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["3b", "scaled"], default="3b")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quants", default="Q8_0,Q4_K_M")
    parser.add_argument("--work", type=Path, default=None, help="keep the model and GGUF files here (reused)")
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    from mmdemo.chat.prompt import ImageBudget, to_qwen_messages
    from mmdemo.models import compute

    work = args.work or Path(tempfile.mkdtemp(prefix="mmdemo-bench-cpu-chat-"))
    model_dir = work / f"qwen2.5-vl-{args.arch}"
    if not (model_dir / "config.json").is_file():
        compute.run(build_model, args.arch, model_dir, long=True)
    prompts = []
    for i in range(2 * (args.rounds + 1)):
        image = work / f"photo{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (448, 448, 3), dtype=np.uint8)).save(image)
        history = [{"role": "user", "content": {"path": str(image)}},
                   {"role": "user", "content": "Describe this picture in detail."}]  # fmt: skip
        prompts.append(to_qwen_messages(history, ImageBudget(min_pixels=448 * 448, max_pixels=448 * 448)))
    print(f"model: Qwen2.5-VL {args.arch}, random weights; {args.tokens}-token answers; one 448x448 image")

    results: list[tuple[str, float, float]] = []
    for dtype in ["float32", *(["bfloat16"] if cpu_has_bf16() else [])]:
        first, rate = in_process(model_dir, dtype, prompts, args.tokens)
        results.append((f"mmdemo in process, {dtype}", first, rate))
        print(f"  {results[-1]}", flush=True)
    model, mmproj = llamacpp.convert(model_dir, work / "gguf", "f16")
    overheads = []
    for quant in args.quants.split(","):
        quantized = llamacpp.quantize(model, quant)
        port = free_port()
        log = work / f"llama-{quant}.log"
        with log.open("w") as out:
            command = llamacpp.server_command(quantized, mmproj, port, 8192, "bench", "--ignore-eos")
            server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait(f"http://127.0.0.1:{port}/health", server, log)
            first, rate, ours, direct = on_server(f"http://127.0.0.1:{port}/v1", prompts, args.tokens)
        finally:
            server.terminate()
            server.wait(30)
        results.append((f"llama.cpp {quant}, through mmdemo", first, rate))
        overheads.append((quant, ours, direct))
        print(f"  {results[-1]}", flush=True)

    base_first, base_rate = results[0][1], results[0][2]
    rows = [(what, f"{first:.2f}", f"{base_first / first:.2f}x", f"{rate:.2f}", f"{rate / base_rate:.2f}x",
             ">= 4x" if "llama.cpp" in what else "") for what, first, rate in results]  # fmt: skip
    print(table(rows, ("path", "TTFT (s)", "faster", "decode (tok/s)", "vs fp32", "goal")))
    print(table([(q, f"{o:.2f}", f"{d:.2f}", f"{o / d:.3f}x", "<= 1.10x") for q, o, d in overheads],
                ("llama.cpp", "mmdemo (s)", "direct (s)", "overhead", "goal")))  # fmt: skip


def _wait(url: str, proc: subprocess.Popen, log: Path, seconds: float = 600) -> None:
    import urllib.request

    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama-server exited:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"llama-server did not answer within {seconds:.0f} s")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"bench_cpu_chat: {time.perf_counter() - started:.0f} s")
