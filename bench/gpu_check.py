"""Everything in mmdemo that needs CUDA, in one run of a few minutes: one table, also written as JSON.

    python bench/gpu_check.py --out gpu_check.json     # one CUDA GPU (bench/gpu_check.md: what to carry)
    python bench/gpu_check.py --smoke                  # CPU, tiny models, seconds: keeps this script working

Rows: CLIP ViT-B-32 images/s at fp32 / fp16 / bf16 and at the dtype mmdemo picks; for the
Qwen2.5-VL-7B architecture (random weights made on the GPU) at bf16, 8-bit and nf4: load time,
resident bytes as the model manager counts them against `torch.cuda.memory_allocated`, turn-1 and
turn-2 (prefix reuse) time to first token, decode tokens/s, and how much GPU memory `unload()`
gives back (goal >= 95%); and the VLM mmdemo picks for this GPU. --smoke runs the same code on the
tiny models (quantization needs CUDA: those rows say so).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

Row = dict[str, Any]


def clip_rows(device: str, smoke: bool, work: Path) -> list[Row]:
    """Images/s of CLIP's image tower at each dtype (random weights, 224 px, batches of 32)."""
    from PIL import Image

    from mmdemo.models import compute
    from mmdemo.models.clip import load_clip
    from mmdemo.models.device import placement_for
    from mmdemo.models.registry import REGISTRY
    from mmdemo.models.tiny import ensure_built

    spec = REGISTRY["tiny-clip" if smoke else "random-clip-vit-b-32"]
    location = ensure_built(spec.id, work) if smoke else None
    images = [Image.new("RGB", (320, 240), (i * 7 % 255, 90, 160)) for i in range(64 if not smoke else 8)]
    rows = []
    picked = placement_for(device, "auto").dtype
    for dtype in ("float32", "float16", "bfloat16") if not smoke else ("float32", picked):
        placement = placement_for(device, dtype)
        clip = compute.run(load_clip, spec, placement, location, 32)
        clip.encode_images(images[:8])  # warm-up (kernels, allocator)
        start = time.perf_counter()
        for _ in range(3):
            clip.encode_images(images)
        _sync(device)
        rate = 3 * len(images) / (time.perf_counter() - start)
        note = "mmdemo's pick" if dtype == picked else ""
        rows.append({"check": f"CLIP {spec.id} images/s, {dtype}", "value": round(rate, 1), "note": note})
        clip.close()
    return rows


def vlm_rows(device: str, smoke: bool, work: Path) -> list[Row]:
    """Load, memory, time to first token (turn 1, turn 2 with prefix reuse), decode rate, unload."""
    import torch
    from PIL import Image

    from mmdemo.chat.prompt import ImageBudget
    from mmdemo.models import compute
    from mmdemo.models.factory import build_manager

    model_dir = work / "vlm"
    compute.run(_build_vlm, smoke, device, model_dir, work)
    image = work / "photo.png"
    Image.new("RGB", (448, 448), (200, 120, 40)).save(image)
    budget = ImageBudget(min_pixels=448 * 448, max_pixels=448 * 448)
    rows: list[Row] = []
    for quant in ("none", "8bit", "4bit"):
        if quant != "none" and device != "cuda":
            rows.append({"check": f"VLM {quant}", "value": "skipped", "note": "bitsandbytes needs CUDA"})
            continue
        from mmdemo.config import Settings

        settings = Settings(vlm_model=str(model_dir), device=device, quantization=quant, preload=(),
                            data_dir=work / "data", chat_cache_sessions=0)  # fmt: skip
        manager = build_manager(settings)
        before = torch.cuda.memory_allocated() if device == "cuda" else 0
        start = time.perf_counter()
        vlm = manager.get("vlm")
        load_s = time.perf_counter() - start
        allocated = (torch.cuda.memory_allocated() - before) if device == "cuda" else 0
        arch = "tiny Qwen2.5-VL" if smoke else "Qwen2.5-VL-7B"
        tag = f"{arch} {vlm.placement.dtype}" + (f" {quant}" if quant != "none" else "")
        rows.append({"check": f"{tag}: load", "value": round(load_s, 2), "note": "s"})
        note = f"cuda.memory_allocated: {allocated / 1e9:.2f} GB" if device == "cuda" else "CPU: no CUDA counter"
        rows.append({"check": f"{tag}: resident (manager)", "value": round(vlm.resident_bytes / 1e9, 3), "note": note})
        rows += _turns(vlm, tag, image, budget)
        if quant == "none":
            rows += _rerank(vlm, tag, work, device)
        del vlm
        manager.unload("vlm")
        if device == "cuda":
            freed = allocated - (torch.cuda.memory_allocated() - before)
            share = freed / allocated if allocated else 0.0
            rows.append({"check": f"{tag}: unload() gave back", "value": f"{share:.1%}",
                         "note": "goal >= 95%: " + ("met" if share >= 0.95 else "NOT met")})  # fmt: skip
    return rows


def _turns(vlm: Any, tag: str, image: Path, budget: Any) -> list[Row]:
    """Turn-1 and turn-2 (prefix reuse) time to first token, and the decode rate."""
    from mmdemo.chat.local import stream_reply
    from mmdemo.chat.pipeline import GenerationParams
    from mmdemo.chat.prompt import build_prompt, to_qwen_messages
    from mmdemo.chat.reuse import PrefixCache
    from mmdemo.models import compute

    history = [{"role": "user", "content": {"path": str(image)}}, {"role": "user", "content": "What is this?"}]
    one = GenerationParams(max_new_tokens=1, greedy=True)
    cache = PrefixCache()
    short = GenerationParams(max_new_tokens=16, greedy=True)
    answer = list(stream_reply(vlm, to_qwen_messages(history, budget), short, prefix=cache))
    history += [{"role": "assistant", "content": answer[-1]}, {"role": "user", "content": "And its colour?"}]
    ttft1 = _median(lambda: list(stream_reply(vlm, to_qwen_messages(history[:2], budget), one)))
    kept = compute.run(copy.deepcopy, cache)
    ttft2 = _median(lambda: list(stream_reply(vlm, to_qwen_messages(history, budget), one,
                                              prefix=compute.run(copy.deepcopy, kept))))  # fmt: skip
    prompt = build_prompt(vlm, to_qwen_messages(history[:2], budget))
    n = 64
    started = time.perf_counter()
    compute.run(vlm.model.generate, **prompt.inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False)
    decode = (n - 1) / max(time.perf_counter() - started - ttft1, 1e-6)
    return [
        {"check": f"{tag}: turn-1 TTFT", "value": round(ttft1 * 1e3, 1), "note": "ms"},
        {"check": f"{tag}: turn-2 TTFT, prefix reuse", "value": round(ttft2 * 1e3, 1), "note": "ms"},
        {"check": f"{tag}: decode", "value": round(decode, 1), "note": "tokens/s"},
    ]


def _rerank(vlm: Any, tag: str, work: Path, device: str, k: int = 20) -> list[Row]:
    """The in-process re-rank of k images (issue #28): batched as the app does it, vs k single prefills."""
    import numpy as np
    from PIL import Image

    from mmdemo.ask.about import ask_budget
    from mmdemo.ask.rerank import judge_messages, rerank_question
    from mmdemo.chat.judge import score_local
    from mmdemo.config import Settings

    rng = np.random.default_rng(0)
    paths = []
    for i in range(k):
        paths.append(work / f"rerank{i}.jpg")
        Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)).save(paths[-1])
    settings = Settings()
    budget = ask_budget(settings.ask_max_pixels, 64_000_000)
    conversations = [judge_messages(str(p), rerank_question("a dog in the snow"), budget) for p in paths]

    def scored(batch: int) -> None:
        score_local(vlm, conversations, batch)
        _sync(device)

    batched, single = _median(lambda: scored(settings.rerank_batch)), _median(lambda: scored(1))
    return [
        {"check": f"{tag}: re-rank k={k}, batches of {settings.rerank_batch}", "value": round(batched, 3),
         "note": f"s; {batched / single:.2f}x of {k} single-image prefills (goal <= 0.5x)"},
    ]  # fmt: skip


def _build_vlm(smoke: bool, device: str, out: Path, work: Path) -> None:
    """The tiny model (smoke), or the real 7B config with random bf16 weights made on the GPU (no
    slow CPU init) and saved, so the quantized loads read a checkpoint as they do in production."""
    if smoke:
        import shutil

        from mmdemo.models.tiny import ensure_built

        shutil.copytree(ensure_built("tiny-qwen2.5-vl", work), out)
        return
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from mmdemo.models import tiny

    processor = tiny.build_qwen_processor("qwen2_5_vl")
    config = AutoConfig.for_model(**tiny.qwen_config("qwen2_5_vl", "7b"))
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id = None  # random weights: always run to max_new_tokens
    model.save_pretrained(out)
    processor.save_pretrained(out)
    del model
    torch.cuda.empty_cache()


def _median(fn: Any, rounds: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny models: seconds")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    args = parser.parse_args()
    import torch

    from mmdemo.models.device import gpu_memory
    from mmdemo.models.registry import default_vlm

    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --smoke on CPU", file=sys.stderr)
        return 2
    started = time.perf_counter()
    rows: list[Row] = []
    memory = gpu_memory()
    choice = default_vlm(memory[0] if memory else None)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (smoke)"
    rows.append({"check": f"device: {name}", "value": f"{memory[0] / 2**30:.0f} GiB" if memory else "-", "note": ""})
    rows.append({"check": "mmdemo's VLM for this machine", "value": f"{choice.model_id} ({choice.quantization})",
                 "note": choice.reason})  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mmdemo-gpu-check-") as tmp:
        for part in (clip_rows, vlm_rows):
            try:
                rows += part(device, args.smoke, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - one failing part must not hide the others' rows
                rows.append({"check": part.__name__, "value": "FAILED", "note": f"{type(exc).__name__}: {exc}"})
    rows.append({"check": "total time", "value": round(time.perf_counter() - started, 1), "note": "s"})
    width = max(len(r["check"]) for r in rows)
    for row in rows:
        print(f"{row['check']:<{width}}  {row['value']!s:>14}  {row['note']}")
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if any(r["value"] == "FAILED" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
