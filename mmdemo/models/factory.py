"""Wire Settings to a ModelManager: which model plays each role, where it runs, how it loads."""

from __future__ import annotations

import logging
from collections.abc import Callable

from mmdemo.config import Settings
from mmdemo.models import device as dev
from mmdemo.models.families import FAMILIES, Family, family
from mmdemo.models.hub import hub_reachable
from mmdemo.models.libs import import_model_libraries
from mmdemo.models.manager import LoadPlan, ModelManager, Resident
from mmdemo.models.registry import GB, MULTILINGUAL_CLIP, PROFILE_DEFAULTS, default_vlm, resolve

log = logging.getLogger(__name__)


def build_manager(settings: Settings, roles_wanted: tuple[str, ...] = ("clip", "vlm")) -> ModelManager:
    """A manager for these settings, with the roles "clip" and "vlm" bound to model ids.

    `roles_wanted=("clip",)`: a process that runs CLIP only (the `index` command): it then never
    imports transformers for a CLIP that does without (starts a second sooner on 2 cores).
    """
    device = dev.pick_device(settings.device)
    roles, vlm_quantization, notes = _roles(settings, device, roles_wanted)

    def plan(model_id: str) -> LoadPlan:
        spec = resolve(model_id)
        kind = family(spec.family)
        location = None
        if not spec.synthetic:
            # Before the torch imports, on the requesting thread: offline mode is decided once (no
            # per-library download retries), the VLM's files are downloaded here rather than on the
            # compute thread (a first 15 GB download must not hold up other visitors' searches), and a
            # model that is missing offline fails in milliseconds.
            location = kind.fetch(spec, hub_reachable())
        # Before any build or load: see libs.py for the race it prevents.
        import_model_libraries(transformers="vlm" in roles_wanted or kind.needs_transformers(spec))
        quant = vlm_quantization if model_id == roles.get("vlm") and kind.quantizable else "none"
        placement = dev.placement_for(device, settings.dtype, quant)
        if spec.tiny or (spec.random_weights and kind.random_weights_built):
            from mmdemo.models.tiny import ensure_built

            location = ensure_built(spec.id, settings.data_dir / "models")
        return LoadPlan(spec, placement, location, spec.approx_bytes(placement.dtype, placement.quantization))

    budget = int(settings.memory_budget_gb * GB) if settings.memory_budget_gb > 0 else dev.auto_budget_bytes(device)
    if settings.chat_cache_sessions > 0 and settings.chat_cache_mb > 0 and not settings.remote_vlm:
        # The chat's KV caches share the same memory: models get the budget less what they may hold.
        reserved = min(settings.chat_cache_mb * 1_000_000, budget // 2)
        budget -= reserved
        notes.append(f"{reserved / 1e9:.1f} GB of the memory budget kept for chat KV caches (MMDEMO_CHAT_CACHE_MB)")

    def loader(kind: Family) -> Callable[[LoadPlan], Resident]:
        return lambda plan: kind.load(plan, settings)

    loaders = {name: loader(kind) for name, kind in FAMILIES.items()}

    manager = ModelManager(
        plan,
        loaders,
        budget_bytes=budget,
        pinned=settings.pinned,
        aliases=roles,
        notes=notes,
        retry_after_s=settings.load_retry_s,
    )
    for note in notes:
        log.info("%s", note)
    return manager


def _roles(settings: Settings, device: str, roles_wanted: tuple[str, ...]) -> tuple[dict[str, str], str, list[str]]:
    """Which model plays each role (clip, vlm), the VLM's quantization, and notes on the choices."""
    roles = dict(PROFILE_DEFAULTS[settings.profile])
    notes: list[str] = []
    if settings.clip_model != "auto":
        roles["clip"] = settings.clip_model
    elif settings.language == "zh" and settings.profile != "random":
        # Chinese queries and labels: a CLIP that reads them (registry.MULTILINGUAL_CLIP says why this one).
        roles["clip"] = "tiny-clip-multilingual" if settings.profile == "tiny" else MULTILINGUAL_CLIP
        notes.append(f"CLIP: {roles['clip']} (MMDEMO_LANGUAGE=zh: queries and labels in Chinese)")
    vlm_quantization = "none" if settings.quantization == "auto" else settings.quantization
    if settings.vlm_model != "auto":
        roles["vlm"] = settings.vlm_model
    elif roles["vlm"] == "auto":
        gpu = dev.gpu_memory() if device == "cuda" else None
        choice = default_vlm(gpu[0] if gpu else None)
        roles["vlm"] = choice.model_id
        if settings.quantization == "auto":
            vlm_quantization = choice.quantization
        notes.append(f"VLM: {choice.model_id} ({choice.reason})")
    if "vlm" not in roles_wanted:
        del roles["vlm"]  # a CLIP-only process
    elif settings.remote_vlm:
        # The chat runs on an inference server: no local VLM to plan, load, or show as loadable.
        del roles["vlm"]
        notes.append("VLM: served by the inference server at MMDEMO_VLM_URL (see the Chat line above)")
    if settings.is_synthetic:
        notes.append(f"{settings.profile} profile: random-weight models, answers are noise")

    return roles, vlm_quantization, notes
