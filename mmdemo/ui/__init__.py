"""The Gradio app: one tab per feature plus System. No torch here; models come from the manager."""

from __future__ import annotations

import gradio as gr

from mmdemo.ask.service import PhotoAsker
from mmdemo.chat.backend import chat_backend
from mmdemo.chat.pipeline import ChatBackend
from mmdemo.config import Settings
from mmdemo.models.manager import ModelManager
from mmdemo.search.galleries import Galleries
from mmdemo.serving import metrics
from mmdemo.ui import chat, classify, search, system, tools
from mmdemo.ui.common import CSS, theme
from mmdemo.ui.i18n import I18N, t

__all__ = ["CSS", "I18N", "build_app", "theme"]


def build_app(
    settings: Settings, manager: ModelManager, galleries: Galleries | None = None, backend: ChatBackend | None = None
) -> gr.Blocks:
    """Build (not launch) the app over these models, galleries and chat backend (by default, the
    ones the settings ask for).

    Launch with `mmdemo.ui.serve.serve(app, settings, theme=theme(), css=CSS)`.
    """
    galleries = galleries or Galleries(settings, manager)
    backend = backend or chat_backend(settings, manager)
    metrics.watch_backlog(galleries.backlog)  # GET /metrics: what waits in the background
    # delete_cache: uploads and outputs older than a day go (checked hourly), and all at shutdown.
    with gr.Blocks(title="mmdemo", analytics_enabled=settings.analytics, delete_cache=(3600, 86400)) as app:
        gr.Markdown(t("app.header"))
        if settings.is_synthetic:
            gr.Markdown(t("app.synthetic"), elem_classes="mmdemo-banner")
        system.LoadBanner(settings, manager).render(app)
        asker = PhotoAsker(settings, galleries, backend)  # the chat model over search results
        with gr.Tabs() as tabs:
            with gr.Tab(t("tab.chat"), id="chat"):
                chat_tab = chat.build(settings, backend, app)
            with gr.Tab(t("tab.search"), id="search"):
                search_tab = search.build(settings, galleries, asker, app)
            with gr.Tab(t("tab.classify"), id="classify"):
                classify.build(settings, manager, app)
            with gr.Tab(t("tab.system"), id="system"):
                system.build(settings, manager, app, backend, galleries.stages, galleries.videos)
        search_tab.ask.connect(chat_tab.chatbot, chat_tab.box, chat_tab.add_photos, tabs)
        tools.build(settings, manager, galleries, backend, asker)  # for machine clients: API endpoints and MCP tools
    tools.only_tools_for_mcp(app)
    return app
