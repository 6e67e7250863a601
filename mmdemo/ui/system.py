"""System tab: what the model manager holds, and the machine's memory; load and unload for the operator."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import gradio as gr

from mmdemo.chat.pipeline import ChatBackend
from mmdemo.config import Settings
from mmdemo.errors import UserFacingError
from mmdemo.i18n import DEFAULT, text
from mmdemo.models.device import gpu_memory
from mmdemo.models.manager import ModelManager
from mmdemo.models.registry import resolve
from mmdemo.serving import metrics
from mmdemo.ui.common import friendly_errors, indexing_said
from mmdemo.ui.i18n import headers, language, say, t, table_value
from mmdemo.ui.serve import admin_queue, is_operator

if TYPE_CHECKING:
    from mmdemo.search.stages import Stages
    from mmdemo.search.videoqueue import VideoQueue

log = logging.getLogger("mmdemo.ui")

COLUMNS = (
    "model",
    "roles",
    "device",
    "dtype",
    "quantization",
    "parameters",
    "memory",
    "load",
    "last_used",
    "loads",
    "pinned",
)


TRAFFIC_COLUMNS = ("feature", "per_minute", "p50", "p95", "failed")  # locale keys system.traffic_col.*
TRAFFIC_EVERY_S = 5.0


def model_rows(manager: ModelManager, lang: str = DEFAULT) -> list[list[Any]]:
    """Resident models as table rows."""
    now = time.time()
    return [
        [
            s.id,
            ", ".join(s.roles),
            s.device,
            s.dtype,
            s.quantization,
            round(s.parameters / 1e6, 2),
            round(s.resident_bytes / 1e6, 1),
            s.load_seconds,
            text("system.ago", lang, s=f"{now - s.last_used:.0f}"),
            s.loads,
            s.pinned,
        ]
        for s in manager.stats()
    ]


def summary(settings: Settings, manager: ModelManager, backend: ChatBackend | None = None, lang: str = DEFAULT) -> str:
    """Where the chat runs, memory, budget, roles, notes and load errors as Markdown.

    Notes and load errors come from the model code, in English (they name files and settings)."""
    roles = ", ".join(f"{role} → `{mid}`" for role, mid in manager.aliases.items())
    lines = [
        *([backend.describe(lang)] if backend is not None else []),
        text("system.profile", lang, profile=settings.profile, roles=roles),
        text(
            "system.memory",
            lang,
            used=f"{manager.resident_bytes / 1e9:.2f}",
            budget=f"{manager.budget_bytes / 1e9:.1f}",
        ),
    ]
    gpu = gpu_memory()
    used_total = {"used": f"{gpu[1] / 1e9:.1f}", "total": f"{gpu[0] / 1e9:.1f}"} if gpu else {}
    lines.append(text("system.gpu", lang, **used_total) if gpu else text("system.no_gpu", lang))
    lines += [f"- {line}" for line in model_cards(manager, lang)]
    lines += [f"- {note}" for note in manager.notes]
    lines += [f"- {s.id}: {note}" for s in manager.stats() for note in s.notes]
    lines += [f"- {text('system.load_failed', lang, model=mid, error=err)}" for mid, err in manager.errors.items()]
    return "\n\n".join(lines)


def model_cards(manager: ModelManager, lang: str = DEFAULT) -> list[str]:
    """A line per configured model: its license (what a deployment may do with it) and notes."""
    lines = []
    for role, model_id in manager.aliases.items():
        try:
            spec = resolve(model_id)
        except UserFacingError:  # a setting that does not resolve: its load error says why
            continue
        tags = (text("system.multilingual", lang) if spec.multilingual else "", spec.note)
        extra = "".join(f" · {x}" for x in tags if x)
        lines.append(text("system.card", lang, model=model_id, role=role, license=spec.license, extra=extra))
    return lines


class LoadBanner:
    """A line at the top of the page for every model that could not be loaded, as soon as that is
    known (the preload runs in the background: the banner looks every 2 s until it has ended)."""

    def __init__(self, settings: Settings, manager: ModelManager) -> None:
        self.settings, self.manager = settings, manager

    def render(self, app: gr.Blocks) -> None:
        banner = gr.Markdown(elem_id="mmdemo-load-errors", elem_classes="mmdemo-banner", visible=False)
        timer = gr.Timer(2.0)
        app.load(self.show, None, [banner, timer], api_visibility="private")
        timer.tick(self.show, None, [banner, timer], api_visibility="private", queue=False)

    def show(self, request: gr.Request | None = None) -> tuple[Any, Any]:
        errors = dict(self.manager.errors)
        pending = [
            name
            for name in self.settings.local_preload
            if not self.manager.is_loaded(name) and self.manager.resolve_id(name) not in errors
        ]
        lines = [
            say(request, "banner.load_failed", model=mid, error=err.splitlines()[0]) for mid, err in errors.items()
        ]
        return gr.Markdown("\n\n".join(lines), visible=bool(lines)), gr.Timer(active=bool(pending))


class SystemTab:
    """The System tab: layout in `render`, one method per event."""

    def __init__(
        self,
        settings: Settings,
        manager: ModelManager,
        backend: ChatBackend | None = None,
        stages: Stages | None = None,
        videos: VideoQueue | None = None,
    ) -> None:
        self.settings, self.manager, self.backend, self.stages = settings, manager, backend, stages
        self.videos = videos

    def render(self, app: gr.Blocks) -> None:
        """Lay out the tab and wire its events (inside a `gr.Tab`)."""
        info = gr.Markdown()
        indexing = gr.Markdown(elem_id="system-indexing")  # the background stages (text read), while they run
        table = gr.Dataframe(
            headers=headers("system.col", COLUMNS), label=t("system.resident"), interactive=False, wrap=True
        )
        # Live figures (the same as /metrics counts), refreshed every few seconds while the page is open.
        traffic = gr.Dataframe(
            headers=headers("system.traffic_col", TRAFFIC_COLUMNS),
            label=t("system.traffic"),
            interactive=False,
            elem_id="system-traffic",
        )
        gr.Timer(TRAFFIC_EVERY_S).tick(self.traffic, None, [traffic, indexing], api_visibility="private", queue=False)
        app.load(self.traffic, None, [traffic, indexing], api_visibility="private", queue=False)
        with gr.Row():
            choices = [(f"{mid} ({role})", mid) for role, mid in self.manager.aliases.items()]
            model = gr.Dropdown(
                choices,
                value=choices[0][1] if choices else None,
                label=t("system.model"),
                scale=3,
                elem_id="system-model",
            )
            load = gr.Button(t("system.load"), size="sm", elem_id="system-load")
            unload = gr.Button(t("system.unload"), size="sm", elem_id="system-unload")
            retry = gr.Button(t("system.retry"), size="sm", elem_id="system-retry")
            refresh = gr.Button(t("system.refresh"), size="sm")
        gr.api(self.stats, api_name="stats")  # an endpoint with no component of its own
        note = gr.Markdown(elem_id="system-note")  # why the buttons are off, for a visitor
        shown = [table, info]
        refresh.click(self.refresh, None, shown, api_name="system")
        # preprocess=False: the id reaches `_checked` as sent, so a refusal is our one-line message
        # (the dropdown's own check would log a traceback for every probe).
        load.click(self.load_model, model, shown, api_name="load_model", preprocess=False, **admin_queue())
        unload.click(self.unload_model, model, shown, api_name="unload_model", preprocess=False, **admin_queue())
        retry.click(self.retry_load, model, shown, api_name="retry_load", preprocess=False, **admin_queue())
        app.load(self.on_page_load, None, [*shown, note, model, load, unload, retry], api_visibility="private")

    def refresh(self, request: gr.Request | None = None) -> tuple[Any, str]:
        """Resident models (one row each) and a memory summary."""
        lang = language(request)
        rows = table_value("system.col", COLUMNS, model_rows(self.manager, lang), request)
        return rows, summary(self.settings, self.manager, self.backend, lang)

    def traffic(self, request: gr.Request | None = None) -> tuple[Any, str]:
        """Requests per minute, p50 / p95 seconds and failures per feature, over the last 10 minutes; and
        what indexing does in the background."""
        rows = [
            [r.feature, r.per_minute, round(r.p50_seconds, 3), round(r.p95_seconds, 3), r.failed]
            for r in metrics.TRAFFIC.rows()
        ]
        background = indexing_said(self.stages, request)
        videos, galleries = self.videos.totals() if self.videos is not None else (0, 0)
        if videos:
            background += ("\n\n" if background else "") + say(request, "system.videos", n=videos, galleries=galleries)
        return table_value("system.traffic_col", TRAFFIC_COLUMNS, rows, request), background

    def stats(self) -> list[dict[str, Any]]:
        """Resident models with device, dtype, quantization, parameters, bytes, load time."""
        return [asdict(s) for s in self.manager.stats()]

    @friendly_errors
    def load_model(self, model_id: str, request: gr.Request) -> tuple[list[list[Any]], str]:
        """Load a model (one of the configured roles' ids) and keep it resident; returns the refreshed table.

        Operators only: from the machine the app runs on, or a user named in MMDEMO_ADMINS.

        Args:
            model_id: a model id of the configured roles, as the System tab lists it (e.g. "clip-vit-b-32").
        """
        self.manager.get(self._checked("load", model_id, request))
        gr.Info(say(request, "system.is_resident", model=model_id))
        return self.refresh(request)

    @friendly_errors
    def retry_load(self, model_id: str, request: gr.Request) -> tuple[list[list[Any]], str]:
        """Try a model whose load failed again now (e.g. once the network is back), instead of
        waiting for MMDEMO_LOAD_RETRY_S; returns the refreshed table. Operators only, like /load_model.

        Args:
            model_id: a model id of the configured roles, as the System tab lists it (e.g. "clip-vit-b-32").
        """
        model_id = self._checked("load", model_id, request)
        self.manager.retry(model_id)
        self.manager.get(model_id)
        gr.Info(say(request, "system.is_resident", model=model_id))
        return self.refresh(request)

    @friendly_errors
    def unload_model(self, model_id: str, request: gr.Request) -> tuple[list[list[Any]], str]:
        """Unload a model and free its memory (it loads again on next use); returns the refreshed table.

        Operators only, like /load_model.

        Args:
            model_id: a model id of the configured roles, as the System tab lists it (e.g. "clip-vit-b-32").
        """
        unloaded = self.manager.unload(self._checked("unload", model_id, request))
        gr.Info(say(request, "system.unloaded" if unloaded else "system.not_loaded", model=model_id))
        return self.refresh(request)

    def on_page_load(self, request: gr.Request) -> tuple[Any, ...]:
        allowed = is_operator(self.settings, request)
        note = "" if allowed else f"*{say(request, 'system.operator_only')}*"
        return (*self.refresh(request), note, *(gr.update(interactive=allowed) for _ in range(4)))

    def _checked(self, action: str, model_id: Any, request: gr.Request) -> str:
        """`model_id` if this request may manage it; else refused with one log line and a message."""
        who = getattr(request, "username", None) or getattr(getattr(request, "client", None), "host", "?")
        if not is_operator(self.settings, request):
            log.warning("refused %s of %r: %s is not an operator", action, model_id, who)
            raise gr.Error(say(request, "system.operator_only"), print_exception=False)
        roles = set(self.manager.aliases.values())
        if not isinstance(model_id, str) or model_id not in roles:
            # Never resolved, planned or loaded: an arbitrary id could name a hub repo or a file.
            log.warning("refused %s of %r from %s: not a configured model", action, model_id, who)
            models = ", ".join(sorted(roles))
            raise gr.Error(say(request, f"system.only_configured_{action}", models=models), print_exception=False)
        return model_id


def build(
    settings: Settings,
    manager: ModelManager,
    app: gr.Blocks,
    backend: ChatBackend | None = None,
    stages: Stages | None = None,
    videos: VideoQueue | None = None,
) -> None:
    """Add the system components and events to the current Blocks."""
    SystemTab(settings, manager, backend, stages, videos).render(app)
