"""How the app is served: the shared model queue, logins, share links, MCP — Settings to `launch()`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr

from mmdemo.config import Settings
from mmdemo.errors import UserFacingError

log = logging.getLogger("mmdemo")

MODEL_QUEUE = "models"  # the one concurrency group every model-running event joins
SHARE_WARNING = (
    "Sharing without --auth: anyone with the link can use this app, upload files and run the models "
    "on this machine. Add --auth user:password (or MMDEMO_AUTH) to require a login."
)


def read_auth(spec: str) -> list[tuple[str, str]] | None:
    """'user:pw[,user2:pw2]' or the path of a file with one user:pw per line -> (user, pw) pairs.

    Blank lines and lines starting with # in a file are ignored. None when `spec` is empty.
    """
    spec = spec.strip()
    if not spec:
        return None
    path = Path(spec).expanduser()
    entries = path.read_text().splitlines() if path.is_file() else spec.split(",")
    pairs = []
    for entry in (e.strip() for e in entries):
        if not entry or entry.startswith("#"):
            continue
        user, sep, password = entry.partition(":")
        if not sep or not user or not password:
            where = str(path) if path.is_file() else "MMDEMO_AUTH / --auth"
            raise UserFacingError(f"{where}: expected user:password, got {entry.split(':')[0]!r}:…")
        pairs.append((user, password))
    if not pairs:
        raise UserFacingError(f"{spec}: no user:password entries")
    return pairs


def concurrency_limit(settings: Settings) -> int:
    """Model-running requests served at once: the setting, or 1 on a GPU and 2 on CPU."""
    if settings.concurrency_limit > 0:
        return settings.concurrency_limit
    from mmdemo.models.device import pick_device

    return 1 if pick_device(settings.device) != "cpu" else 2


def model_queue(settings: Settings) -> dict[str, Any]:
    """Event keyword arguments that put a model-running event in the shared queue."""
    return {"concurrency_id": MODEL_QUEUE, "concurrency_limit": concurrency_limit(settings)}


def launch_kwargs(settings: Settings) -> dict[str, Any]:
    """`Blocks.launch()` arguments for these settings."""
    return {
        "server_name": settings.host,
        "server_port": settings.port,
        "share": settings.share,
        "auth": read_auth(settings.auth),
        "auth_message": "mmdemo: log in to continue." if settings.auth else None,
        "root_path": settings.root_path or None,
        "mcp_server": settings.mcp,
        "max_file_size": f"{settings.max_upload_mb}mb",
        # e.g. a non-image sent to an image input through the API: say why it failed
        "show_error": True,
        "allowed_paths": [str(settings.data_dir / "galleries")],  # gallery thumbnails
    }


def share_warning(settings: Settings) -> str | None:
    """The warning to print when a share link has no login, else None."""
    return SHARE_WARNING if settings.share and not settings.auth else None


def serve(app: gr.Blocks, settings: Settings, **extra: Any) -> Any:
    """Queue and launch `app` (extra launch() arguments win); warns when a share link has no login."""
    if warning := share_warning(settings):
        log.warning("%s", warning)
        print(f"\n⚠️  {warning}\n", flush=True)
    # Model events join MODEL_QUEUE with their own limit; the rest (history edits, the System
    # table) are cheap and must not wait behind a long answer.
    app.queue(max_size=settings.max_queue_size, default_concurrency_limit=8)
    return app.launch(**{**launch_kwargs(settings), **extra})
