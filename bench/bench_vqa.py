"""Chat turn cost: prefix reuse vs full recompute, and streaming vs bare `generate()`.

    python bench/bench_vqa.py                      # CPU: a scaled Qwen2.5-VL, random weights
    python bench/bench_vqa.py --arch 7b --device cuda --quantization none,8bit,4bit

A conversation: turn 1 is one 448x448 image + a question, answered with a short reply; turn 2 is
a text follow-up. Rows, each against a baseline measured in the same run:
- turn-2 time to first token: mmdemo (KV cache of turn 1 reused) vs full recompute (the textbook
  chat: the image through the vision encoder again, every token through prefill). Goal <= 0.5x.
- answering turn 1 with N tokens: mmdemo's streaming path (worker thread + TextIteratorStreamer
  + stop criterion + KV bookkeeping) vs bare `model.generate` on the same inputs. Goal <= 1.05x.
- decode tokens/s.
`--arch 7b` uses the real Qwen2.5-VL-7B config (from ../shared/qwen when present) with random
weights; 8-bit/4-bit go through bitsandbytes (CUDA only), from a random checkpoint saved to disk.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

from common import median_seconds, table

# Qwen2.5-VL with every size scaled down ~4-8x, so a CPU run takes well under a minute while the
# vision encoder / prefill / decode proportions stay those of a real model.
SCALED = {
    "hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 6, "num_attention_heads": 8,
    "num_key_value_heads": 2, "max_window_layers": 6, "rope_scaling": {"type": "mrope", "mrope_section": [8, 12, 12]},
    "vision_config": {"depth": 8, "hidden_size": 320, "intermediate_size": 864, "num_heads": 5,
                      "out_hidden_size": 512, "fullatt_block_indexes": [3, 7]},
}  # fmt: skip


def build_model(arch: str, out: Path) -> None:
    """Save a random-weight Qwen2.5-VL (scaled, or the real 3B or 7B config) with the real processor."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from mmdemo.models import tiny

    processor = tiny.build_qwen_processor("qwen2_5_vl")
    base = tiny.qwen_config("qwen2_5_vl", "tiny" if arch == "scaled" else arch)
    if arch == "scaled":
        base = tiny._merge(base, SCALED)
    if tiny.shared_qwen_files() is None:  # the small fallback vocabulary
        base = tiny._retarget_token_ids(base, processor.tokenizer)
    config = AutoConfig.for_model(**base)
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id = None  # random weights: always run to max_new_tokens
    model.save_pretrained(out)
    processor.save_pretrained(out)


def measure(vlm, tag: str, image: Path, budget, args: argparse.Namespace) -> list[tuple[str, ...]]:
    """The rows for one loaded model."""
    from mmdemo.chat.local import stream_reply
    from mmdemo.chat.pipeline import GenerationParams
    from mmdemo.chat.prompt import build_prompt, to_qwen_messages
    from mmdemo.chat.reuse import PrefixCache
    from mmdemo.models import compute

    rows: list[tuple[str, ...]] = []
    history = [{"role": "user", "content": {"path": str(image)}},
               {"role": "user", "content": "What is in this picture?"}]  # fmt: skip
    short = GenerationParams(max_new_tokens=args.answer_tokens, greedy=True)
    first_token = GenerationParams(max_new_tokens=1, greedy=True)

    # Turn 1 through the app's path, keeping its KV cache.
    after_turn1 = PrefixCache()
    answer = list(stream_reply(vlm, to_qwen_messages(history, budget), short, prefix=after_turn1))[-1]
    history += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And what colour is it?"}]

    def turn2(reuse: bool) -> None:
        prefix = compute.run(copy.deepcopy, after_turn1) if reuse else None  # the state right after turn 1
        list(stream_reply(vlm, to_qwen_messages(history, budget), first_token, prefix=prefix))

    full = median_seconds(lambda: turn2(False), rounds=args.rounds)
    reused = median_seconds(lambda: turn2(True), rounds=args.rounds)
    probe = compute.run(copy.deepcopy, after_turn1)
    list(stream_reply(vlm, to_qwen_messages(history, budget), first_token, prefix=probe))
    rows += [
        (f"{tag}: turn-2 TTFT, full recompute", f"{full * 1e3:.0f} ms", "1.00x", ""),
        (f"{tag}: turn-2 TTFT, prefix reuse ({probe.last.reused}/{probe.last.total} tokens cached)",
         f"{reused * 1e3:.0f} ms", f"{reused / full:.2f}x", "<= 0.5x"),
    ]  # fmt: skip

    # Streaming vs bare generate on turn 1's inputs, same token count.
    prompt = build_prompt(vlm, to_qwen_messages(history[:2], budget))
    n = args.stream_tokens
    params = GenerationParams(max_new_tokens=n, greedy=True)

    def bare() -> None:
        compute.run(vlm.model.generate, **prompt.inputs, **params.generate_kwargs())

    def streamed() -> None:
        for _ in stream_reply(vlm, prompt, params, prefix=PrefixCache()):
            pass

    bare_s = median_seconds(bare, rounds=args.rounds)
    stream_s = median_seconds(streamed, rounds=args.rounds)
    ttft = median_seconds(lambda: compute.run(vlm.model.generate, **prompt.inputs, **first_token.generate_kwargs()))
    rows += [
        (f"{tag}: {n} tokens, bare model.generate", f"{bare_s:.2f} s", "1.00x", ""),
        (f"{tag}: {n} tokens, mmdemo streaming", f"{stream_s:.2f} s", f"{stream_s / bare_s:.3f}x", "<= 1.05x"),
        (f"{tag}: turn-1 TTFT / decode", f"{ttft * 1e3:.0f} ms / {(n - 1) / (bare_s - ttft):.1f} tok/s", "", ""),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["scaled", "7b"], default="scaled")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--quantization", default="none", help="comma-separated: none,8bit,4bit (CUDA)")
    parser.add_argument("--answer-tokens", type=int, default=24)
    parser.add_argument("--stream-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    from mmdemo.chat.prompt import ImageBudget
    from mmdemo.models import compute
    from mmdemo.models.device import pick_device, placement_for
    from mmdemo.models.registry import resolve
    from mmdemo.models.vlm import load_vlm

    work = Path(tempfile.mkdtemp(prefix="mmdemo-bench-vqa-"))
    # Every torch op on mmdemo's compute thread, the baseline's too: a second thread running torch
    # ops puts OpenMP into a slower mode for the whole process (see mmdemo/models/compute.py).
    compute.run(build_model, args.arch, work / "model")
    image = work / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (448, 448, 3), dtype=np.uint8)).save(image)
    budget = ImageBudget(min_pixels=448 * 448, max_pixels=448 * 448)
    device = pick_device(args.device)
    print(f"model: Qwen2.5-VL {args.arch}, random weights, device {device}")

    rows = []
    for quant in args.quantization.split(","):
        placement = placement_for(device, args.dtype, quant)
        vlm = compute.run(load_vlm, resolve(str(work / "model")), placement)
        tag = f"{placement.dtype}" + (f" {quant}" if quant != "none" else "")
        rows += measure(vlm, tag, image, budget, args)
        vlm.close()
    print(table(rows, ("what", "time", "ratio", "goal")))


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"bench_vqa: {time.perf_counter() - started:.0f} s")
