"""Model families, registered once: what the manager's planner and loaders need to know of each.

Adding a family (say a SigLIP-2 or a Florence) is one `Family` here, one loader module, and its
registry entries; nothing else compares family names. The loaders' modules are imported only when
a model of the family is planned or loaded (they import torch and friends).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmdemo.config import Settings
    from mmdemo.models.manager import LoadPlan, Resident
    from mmdemo.models.registry import ModelSpec


@dataclass(frozen=True)
class Family:
    """One family of models and how this app handles it."""

    name: str
    load: Callable[[LoadPlan, Settings], Resident]  # on the compute thread
    # Before the load, on the requesting thread: download (returns the local folder, or None) and,
    # offline, fail at once for a model that is not cached.
    fetch: Callable[[ModelSpec, bool], Path | None]
    needs_transformers: Callable[[ModelSpec], bool]
    quantizable: bool = False  # bitsandbytes weight quantization applies (CUDA only)
    random_weights_built: bool = False  # its random-weight models are built into a folder, like tiny ones


def _load_clip(plan: LoadPlan, settings: Settings) -> Resident:
    from mmdemo.models.clip import load_clip

    return load_clip(plan.spec, plan.placement, plan.location, batch_size=settings.clip_batch_size)


def _fetch_clip(spec: ModelSpec, online: bool) -> Path | None:
    from mmdemo.models.clip import require_cached_clip

    if not online:
        require_cached_clip(spec)
    return None  # open_clip downloads (or finds) its own weights


def _clip_needs_transformers(spec: ModelSpec) -> bool:
    from mmdemo.models.clip import needs_transformers

    return needs_transformers(spec)


def _load_vlm(plan: LoadPlan, settings: Settings) -> Resident:
    from mmdemo.models.vlm import load_vlm

    return load_vlm(plan.spec, plan.placement, plan.location)


def _fetch_vlm(spec: ModelSpec, online: bool) -> Path | None:
    from mmdemo.models.vlm import fetch_vlm

    return fetch_vlm(spec)


FAMILIES: dict[str, Family] = {
    "clip": Family("clip", _load_clip, _fetch_clip, _clip_needs_transformers),
    "qwen_vl": Family("qwen_vl", _load_vlm, _fetch_vlm, lambda spec: True, quantizable=True, random_weights_built=True),
}


def family(name: str) -> Family:
    """The registered family `name`."""
    return FAMILIES[name]
