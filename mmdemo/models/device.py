"""Where a model runs and in which dtype: the hardware-aware rules in one place."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """Device, dtype and quantization chosen for one model, plus any fallback notes."""

    device: str  # "cuda", "mps" or "cpu"
    dtype: str  # "float32", "bfloat16" or "float16"
    quantization: str = "none"  # "none", "8bit" or "4bit"
    notes: tuple[str, ...] = ()

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


def pick_device(requested: str = "auto") -> str:
    """cuda > mps > cpu for "auto"; a forced device that is missing is an error."""
    import torch

    available = {
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if requested == "auto":
        return next(name for name in ("cuda", "mps", "cpu") if available[name])
    if not available.get(requested, False):
        raise ValueError(f"device '{requested}' was asked for but is not available on this machine")
    return requested


@cache
def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 matmul (AVX512-BF16 or AMX), where bf16 beats fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: be conservative
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(device: str, requested: str = "auto") -> str:
    """bf16 where the hardware runs it natively, fp16 on older GPUs, else fp32."""
    if requested != "auto":
        return requested
    if device == "cuda":
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "mps":
        return "float16"
    return "bfloat16" if cpu_has_bf16() else "float32"


def placement_for(device: str = "auto", dtype: str = "auto", quantization: str = "none") -> Placement:
    """Resolve the settings for one model into a concrete placement.

    Quantization (asked for only for families that take it: models.families) applies only on CUDA
    (bitsandbytes): elsewhere the request falls back to unquantized weights with a note the UI shows.
    """
    resolved_device = pick_device(device)
    resolved_dtype = pick_dtype(resolved_device, dtype)
    notes: list[str] = []
    quant = "none" if quantization == "auto" else quantization
    if quant != "none" and resolved_device != "cuda":
        notes.append(
            f"{quant} quantization needs a CUDA GPU (bitsandbytes); "
            f"loading unquantized {resolved_dtype} weights on {resolved_device} instead."
        )
        log.warning(notes[-1])
        quant = "none"
    if quant != "none" and resolved_dtype == "float32":
        resolved_dtype = "bfloat16"  # compute dtype of the quantized layers
    return Placement(resolved_device, resolved_dtype, quant, tuple(notes))


def gpu_memory() -> tuple[int, int] | None:
    """(total, used) bytes of the current CUDA device, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return total, total - free


def system_memory_bytes() -> int:
    """Total RAM in bytes."""
    import psutil

    return int(psutil.virtual_memory().total)


def auto_budget_bytes(device: str) -> int:
    """Default memory budget: 90% of the GPU, or 80% of RAM when models live on the CPU."""
    gpu = gpu_memory() if device == "cuda" else None
    if gpu is not None:
        return int(gpu[0] * 0.9)
    return int(system_memory_bytes() * 0.8)


def footprint(module) -> tuple[int, int]:
    """(parameter count, bytes held by parameters and buffers) of a torch module.

    Quantized bitsandbytes weights are packed tensors, so summing their storage gives the real
    resident size rather than the unquantized one.
    """
    params = sum(p.numel() for p in module.parameters())
    tensors = [*module.parameters(), *module.buffers()]
    return params, sum(t.numel() * t.element_size() for t in tensors)


def free_accelerator_memory() -> None:
    """Return cached blocks to the driver after models were dropped (no-op without CUDA)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
