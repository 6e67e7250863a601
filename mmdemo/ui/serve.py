"""How the app is served: the queues, logins, share links, MCP — Settings to `launch()`."""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
from starlette.middleware import Middleware
from starlette.requests import Request  # at module level: FastAPI resolves the route's annotations here

from mmdemo.config import Settings
from mmdemo.errors import UserFacingError
from mmdemo.i18n import text
from mmdemo.serving.guard import RequestGuard
from mmdemo.serving.media import add_media_route
from mmdemo.ui.fairness import ClientQuota, queue_lengths
from mmdemo.ui.i18n import I18N

if TYPE_CHECKING:
    from mmdemo.chat.pipeline import ChatBackend
    from mmdemo.models.manager import ModelManager
    from mmdemo.search.galleries import Galleries

log = logging.getLogger("mmdemo")

# Gradio concurrency groups. Each has its own limit and its own line (a visitor waiting in one sees
# their place in it); a search never waits in the chat's line. What they share is the compute
# thread, where CLIP jobs run between a chat's decode steps (mmdemo.models.compute).
CLIP_QUEUE = "clip"
VLM_QUEUE = "vlm"
ADMIN_QUEUE = "admin"
REMOTE_CHAT_CONCURRENCY = 32  # chats forwarded at once to an inference server (it batches them)
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


# Headers a reverse proxy adds: a request that carries one came from elsewhere, whatever its socket says.
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
OPERATOR_ONLY = text("system.operator_only")  # in English; the System tab says it in the visitor's language


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_operator(settings: Settings, request: Any) -> bool:
    """May this request load and unload models?

    Yes for a logged-in user named in `admins`, and for a request from this machine to an app that
    is bound to loopback only (nobody else can reach it). Not through a share link or a reverse
    proxy: their requests arrive from loopback too, on behalf of anyone.
    """
    username = getattr(request, "username", None)
    if username and username in settings.admins:
        return True
    if settings.share or not _is_loopback(settings.host):
        return False
    headers = getattr(request, "headers", None) or {}
    if any(h in headers for h in PROXY_HEADERS):
        return False
    client = getattr(request, "client", None)
    return _is_loopback(getattr(client, "host", None))


def concurrency_limit(settings: Settings) -> int:
    """CLIP requests (search, indexing, classification) served at once: the setting, or 2.

    Their model jobs take turns on the compute thread anyway (between a chat's decode steps too);
    the second slot lets one request decode its files while another's model job runs.
    """
    return settings.concurrency_limit if settings.concurrency_limit > 0 else 2


def chat_concurrency_limit(settings: Settings) -> int:
    """Chat answers generated at once: the setting, or 1 in process (`generate()` runs one at a time),
    or 32 on an inference server: there the server batches them, and the app only forwards streams."""
    if settings.chat_concurrency_limit > 0:
        return settings.chat_concurrency_limit
    return REMOTE_CHAT_CONCURRENCY if settings.remote_vlm else 1


def clip_queue(settings: Settings) -> dict[str, Any]:
    """Event arguments for a CLIP-running event (search, indexing, classification)."""
    return {"concurrency_id": CLIP_QUEUE, "concurrency_limit": concurrency_limit(settings)}


def chat_queue(settings: Settings) -> dict[str, Any]:
    """Event arguments for a chat answer: a queue of its own, so a waiting chat shows its place in line."""
    return {"concurrency_id": VLM_QUEUE, "concurrency_limit": chat_concurrency_limit(settings)}


def admin_queue() -> dict[str, Any]:
    """Event arguments for loading and unloading: one at a time, and never ahead of a user's request."""
    return {"concurrency_id": ADMIN_QUEUE, "concurrency_limit": 1}


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
        "i18n": I18N,  # the UI's fixed strings, in the browser's language
        # Gallery thumbnails (the media folder holds JPEGs and nothing else: never a gallery's database or
        # lock file), and files handlers return (classify CSVs) from their session's folder: outside the
        # system temp dir, Gradio would refuse to serve them.
        "allowed_paths": [str(settings.data_dir / "media"), str(settings.data_dir / "outputs")],
        # The body cap and who sent a request (an MCP agent's tool calls counted as the agent's): ASGI
        # middleware, inside uvicorn's forwarded-header handling (set from MMDEMO_TRUSTED_PROXIES in serve()).
        "app_kwargs": {"middleware": [request_guard(settings)]},
    }


def request_guard(settings: Settings) -> Middleware:
    """The app's RequestGuard (mmdemo.serving.guard) for these settings."""
    message = text("error.request_too_large", mb=settings.max_request_mb)
    return Middleware(RequestGuard, max_body_bytes=settings.max_request_mb * 1_000_000, message=message)


def share_warning(settings: Settings) -> str | None:
    """The warning to print when a share link has no login, else None."""
    return SHARE_WARNING if settings.share and not settings.auth else None


def readiness(
    settings: Settings, manager: ModelManager, galleries: Galleries, backend: ChatBackend | None = None
) -> tuple[bool, dict[str, Any]]:
    """Is the app ready for visitors: every preloaded model resident, and (when CLIP is preloaded)
    the bundled photos indexed? With what is still loading and what failed (the recorded message).

    An inference server's state is reported, not required: without it Search and Classify still
    work, and the chat says what is wrong (a replica taken out of service would help nobody)."""
    models = {}
    for name in settings.local_preload:
        model_id = manager.resolve_id(name)
        error = manager.errors.get(model_id)
        models[model_id] = "resident" if manager.is_loaded(name) else f"failed: {error}" if error else "loading"
    if galleries.library_indexed():
        library = "indexed"
    elif manager.resolve_id("clip") in models or galleries.indexing_library():
        library = "indexing"
    else:
        library = "indexed once CLIP is resident"
    # Not ready while the bundled photos of a preloaded CLIP are indexed; a CLIP loaded on demand later
    # indexes them then, without taking the replica out of service.
    waits_for_library = manager.resolve_id("clip") in models and library == "indexing"
    ready = all(state == "resident" for state in models.values()) and not waits_for_library
    body = {"ready": ready, "models": models, "library": library}
    health = backend.health() if backend is not None else None
    if health is not None and health.remote:
        body["chat_server"] = {"url": health.where, "reachable": health.reachable}
    return ready, body


def add_readiness_route(app: gr.Blocks, check: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
    """GET /ready on the launched app: 200 when `check` says ready, else 503; both with its details.

    For Docker's HEALTHCHECK and Kubernetes' readiness probe (no login needed, nothing secret in
    it); `/` stays the liveness check: it answers as soon as the server does.
    """
    from fastapi.responses import JSONResponse

    def ready() -> JSONResponse:
        ok, body = check()
        return JSONResponse(body, status_code=200 if ok else 503)

    app.app.add_api_route("/ready", ready, methods=["GET"])


def add_metrics_route(app: gr.Blocks, settings: Settings, manager: ModelManager) -> None:
    """GET /metrics in Prometheus' text format, for whom MMDEMO_METRICS allows; and on MMDEMO_METRICS_PORT.

    Off the Gradio routes (as /ready), so no login is asked: "operators" is decided by where the
    request comes from (is_operator), and "everyone" is for a scraper on a private network.
    """
    from fastapi.responses import PlainTextResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server

    from mmdemo.serving import metrics

    metrics.watch(manager, lambda: queue_lengths(app))
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host, registry=metrics.REGISTRY)
    if settings.metrics == "off":
        return

    def scrape(request: Request) -> Response:
        if settings.metrics == "operators" and not is_operator(settings, request):
            return PlainTextResponse(text("system.metrics_operators"), status_code=403)
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    app.app.add_api_route("/metrics", scrape, methods=["GET"])


def serve(
    app: gr.Blocks,
    settings: Settings,
    ready: Callable[[], tuple[bool, dict[str, Any]]] | None = None,
    before_launch: Callable[[], None] | None = None,
    manager: ModelManager | None = None,
    after_launch: Callable[[], None] | None = None,
    **extra: Any,
) -> Any:
    """Queue and launch `app` (extra launch() arguments win), with GET /ready from `ready` and GET
    /metrics on `manager`; warns when a share link has no login. `before_launch` runs just before
    the port is bound (app.py's starting page lets go of it there), `after_launch` once the server runs
    (app.py throttles repeated log lines there: uvicorn's loggers have their handlers by then)."""
    if warning := share_warning(settings):
        log.warning("%s", warning)
        print(f"\n⚠️  {warning}\n", flush=True)
    # Model events join their role's group (above); the rest (history edits, the System table)
    # are cheap and run at once. max_size counts what waits in all groups together (Gradio's rule).
    # api_open=False: a queued event cannot be called past the queue (POST /gradio_api/run/...), where
    # neither the concurrency limits nor the per-client cap would see it. (Gradio's default off Spaces is open.)
    app.queue(max_size=settings.max_queue_size, default_concurrency_limit=8, api_open=False)
    ClientQuota(settings).install(app)  # and no client may fill it alone (ui/fairness.py)
    block = not extra.pop("prevent_thread_lock", False)
    # Gradio starts uvicorn with its forwarded-header handling on and no list of proxies, so uvicorn would
    # take X-Forwarded-For from any loopback connection (a share link's tunnel, Gradio's own MCP client
    # re-submitting an agent's call with the agent's headers): anyone could choose their address. uvicorn
    # reads this variable when its Config is made (in launch): only the operator's proxies are believed.
    os.environ["FORWARDED_ALLOW_IPS"] = ",".join(settings.trusted_proxies)
    if before_launch is not None:
        before_launch()
    launched = app.launch(**{**launch_kwargs(settings), **extra, "prevent_thread_lock": True})
    if after_launch is not None:
        after_launch()
    add_media_route(app, settings.data_dir / "media")
    if ready is not None:
        add_readiness_route(app, ready)
    if manager is not None:
        add_metrics_route(app, settings, manager)
    if block:
        app.block_thread()
    return launched
