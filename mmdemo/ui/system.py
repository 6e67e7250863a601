"""System tab: what the model manager holds, and the machine's memory."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import gradio as gr

from mmdemo.config import Settings
from mmdemo.models.device import gpu_memory
from mmdemo.models.manager import ModelManager
from mmdemo.ui.common import friendly_errors
from mmdemo.ui.serve import model_queue

COLUMNS = ["model", "roles", "device", "dtype", "quantization", "parameters (M)", "memory (MB)",
           "load (s)", "last used", "loads", "pinned"]  # fmt: skip


def model_rows(manager: ModelManager) -> list[list[Any]]:
    """Resident models as table rows."""
    now = time.time()
    return [
        [s.id, ", ".join(s.roles), s.device, s.dtype, s.quantization, round(s.parameters / 1e6, 2),
         round(s.resident_bytes / 1e6, 1), s.load_seconds, f"{now - s.last_used:.0f} s ago", s.loads, s.pinned]
        for s in manager.stats()
    ]  # fmt: skip


def summary(settings: Settings, manager: ModelManager) -> str:
    """Memory, budget, roles, notes and load errors as Markdown."""
    lines = [
        f"**Profile:** {settings.profile} · **roles:** "
        + ", ".join(f"{role} → `{mid}`" for role, mid in manager.aliases.items()),
        f"**Resident models:** {manager.resident_bytes / 1e9:.2f} GB of a {manager.budget_bytes / 1e9:.1f} GB budget",
    ]
    gpu = gpu_memory()
    lines.append(f"**GPU memory:** {gpu[1] / 1e9:.1f} / {gpu[0] / 1e9:.1f} GB used" if gpu else "**GPU:** none")
    lines += [f"- {note}" for note in manager.notes]
    lines += [f"- {s.id}: {note}" for s in manager.stats() for note in s.notes]
    lines += [f"- ⚠️ **{mid}** could not be loaded: {err}" for mid, err in manager.errors.items()]
    return "\n\n".join(lines)


def may_manage(settings: Settings, request: gr.Request | None) -> bool:
    """Loading and unloading is for the operator: on a share link, only for a logged-in user."""
    return not settings.share or bool(getattr(request, "username", None))


def build(settings: Settings, manager: ModelManager, app: gr.Blocks) -> None:
    """Add the system components and events to the current Blocks."""

    def refresh() -> tuple[list[list[Any]], str]:
        """Resident models (one row each) and a memory summary."""
        return model_rows(manager), summary(settings, manager)

    def stats() -> list[dict[str, Any]]:
        """Resident models with device, dtype, quantization, parameters, bytes, load time."""
        return [asdict(s) for s in manager.stats()]

    def check_access(request: gr.Request) -> None:
        if not may_manage(settings, request):
            raise gr.Error("Loading and unloading models needs a login on a share link (start with --auth).")

    @friendly_errors
    def load_model(model_id: str, request: gr.Request) -> tuple[list[list[Any]], str]:
        """Load a model (a role's model id) and keep it resident; returns the refreshed table."""
        check_access(request)
        manager.get(model_id)
        gr.Info(f"{model_id} is resident.")
        return refresh()

    @friendly_errors
    def unload_model(model_id: str, request: gr.Request) -> tuple[list[list[Any]], str]:
        """Unload a model and free its memory (it loads again on next use); returns the refreshed table."""
        check_access(request)
        gr.Info(f"{model_id} unloaded." if manager.unload(model_id) else f"{model_id} was not loaded.")
        return refresh()

    def on_load(request: gr.Request) -> tuple[Any, ...]:
        allowed = may_manage(settings, request)
        return (*refresh(), *(gr.update(interactive=allowed) for _ in range(3)))

    info = gr.Markdown()
    table = gr.Dataframe(headers=COLUMNS, label="Resident models", interactive=False, wrap=True)
    with gr.Row():
        choices = [(f"{mid} ({role})", mid) for role, mid in manager.aliases.items()]
        model = gr.Dropdown(choices, value=choices[0][1] if choices else None, label="Model", scale=3)
        load = gr.Button("Load", size="sm")
        unload = gr.Button("Unload", size="sm")
        button = gr.Button("Refresh", size="sm")
        hidden = gr.JSON(visible=False)
        gr.Button("stats (API)", visible=False).click(stats, None, hidden, api_name="stats")
    button.click(refresh, None, [table, info], api_name="system")
    load.click(load_model, model, [table, info], api_name="load_model", **model_queue(settings))
    unload.click(unload_model, model, [table, info], api_name="unload_model")
    app.load(on_load, None, [table, info, model, load, unload], api_visibility="private")
