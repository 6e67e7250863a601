"""CLIP ViT-B-32 image-encoding throughput: fp32 baseline vs bf16, through mmdemo's CLIP loader.

    python bench/bench_dtype.py [--batch 32] [--rounds 5]

Backs the "auto" dtype rule: bf16 on CPUs with native bf16 (AVX512-BF16 / AMX) and on GPUs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from mmdemo.models.clip import load_clip
from mmdemo.models.device import cpu_has_bf16, pick_device, placement_for
from mmdemo.models.registry import REGISTRY


def images_per_second(dtype: str, device: str, batch: int, rounds: int) -> float:
    clip = load_clip(REGISTRY["random-clip-vit-b-32"], placement_for(device, dtype))
    pixels = torch.randn(batch, 3, 224, 224)
    clip.encode_pixels(pixels)  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        clip.encode_pixels(pixels)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    device = pick_device("auto")
    dtypes = ["float32", "bfloat16"] + (["float16"] if device == "cuda" else [])
    rates = {d: images_per_second(d, device, args.batch, args.rounds) for d in dtypes}
    print(f"device={device} cpu_bf16={cpu_has_bf16()} threads={torch.get_num_threads()} batch={args.batch}")
    print(f"{'dtype':<10} {'images/s':>10} {'vs fp32':>8}")
    for dtype, rate in rates.items():
        print(f"{dtype:<10} {rate:>10.1f} {rate / rates['float32']:>7.2f}x")


if __name__ == "__main__":
    main()
