"""Where the app is hosted: Hugging Face Spaces and ZeroGPU, detected from the environment.

On a ZeroGPU Space the GPU exists only inside functions decorated with `spaces.GPU`; each call
runs in a forked worker that holds a GPU for at most `duration` seconds. Everywhere else
`spaces.GPU` returns the function unchanged, so the same code runs on CPUs and plain GPUs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from mmdemo.config import Settings

F = TypeVar("F", bound=Callable[..., Any])


def _true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "t", "true", "yes")


def on_spaces() -> bool:
    """True inside a Hugging Face Space (Spaces set SPACE_ID)."""
    return bool(os.environ.get("SPACE_ID"))


def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space: models go to `cuda` at startup and model calls borrow a GPU."""
    return _true("SPACES_ZERO_GPU")


def import_spaces() -> Any | None:
    """Import the `spaces` package if it is installed (on ZeroGPU it must precede torch)."""
    try:
        import spaces
    except ImportError:
        return None
    return spaces


def gpu(duration: int) -> Callable[[F], F]:
    """`spaces.GPU(duration=...)` when the `spaces` package is importable, else the identity.

    `duration` is the longest a call may hold the GPU, in seconds: shorter requests queue ahead
    on a busy ZeroGPU Space, so each handler asks for what it needs.
    """
    spaces = import_spaces()
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def for_this_host(settings: Settings) -> Settings:
    """Settings adjusted to the host: a Space serves on 0.0.0.0 (its proxy connects from outside
    the container) at GRADIO_SERVER_PORT; ZeroGPU wants the models on `cuda` at startup, and
    keeps no chat KV caches (see below)."""
    if on_spaces():
        settings = settings.replace(host="0.0.0.0", port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    if on_zero_gpu() and settings.device == "auto":
        settings = settings.replace(device="cuda")
    if on_zero_gpu():
        # Each chat answer runs in a forked ZeroGPU worker (spaces/zero/wrappers.py): a KV cache kept
        # there is invisible to this process, lost whenever another worker is forked, and would hold
        # CUDA memory after the GPU went back. Every turn is a full prefill there.
        settings = settings.replace(chat_cache_sessions=0)
    return settings
