"""What an OpenAI-compatible server's failures mean to a visitor: one keyed message each (server.*),
naming the server by its redacted URL, never its key."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit


def redact(url: str) -> str:
    """`url` without credentials or query (what may be shown and logged)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def client_errors() -> tuple[type[BaseException], ...]:
    """What the openai client and the stream under it raise (imported late: see `client`)."""
    import httpx
    import openai

    return openai.OpenAIError, httpx.HTTPError, OSError


def explain(exc: BaseException, model: str, retries: int, timeout: float) -> tuple[str, dict[str, object]]:
    """The user's message for an exception of the openai client or of the stream under it: a key of
    the app's words (server.*) and its fields; the caller adds the server's name."""
    import httpx
    import openai

    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
        return "server.timeout", {"seconds": f"{timeout:.0f}"}
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        cause = _root(exc)
        if isinstance(cause, ConnectionRefusedError):
            reason = "connection refused"
        elif isinstance(cause, socket.gaierror):
            reason = "host name not found"
        elif isinstance(exc, httpx.RemoteProtocolError) or isinstance(cause, httpx.RemoteProtocolError):
            reason = "the connection broke"
        else:
            reason = str(cause) or type(cause).__name__
        return "server.unreachable", {"reason": reason}
    if isinstance(exc, openai.APIStatusError):
        code, detail = exc.status_code, _detail(exc)
        names_model = (model and repr(model) in detail) or "model" in detail.lower()
        # vLLM: "maximum context length"; llama.cpp: "exceeds the available context size"
        too_long = any(s in detail.lower() for s in ("context length", "maximum context", "context size", "too long"))
        if code in (401, 403):
            return "server.key_refused", {"code": code}
        if code == 404 or (code == 400 and names_model and "context" not in detail.lower()):
            return "server.no_model", {"code": code, "detail": detail, "model": repr(model)}
        if code == 429:
            return "server.busy", {"retries": retries}
        if code == 400 and too_long:
            return "server.too_long", {"detail": detail}
        if code == 422:
            return "server.rejected", {"detail": detail}
        if code >= 500:
            return "server.failed", {"code": code, "detail": detail}
        return "server.refused", {"code": code, "detail": detail}
    return "server.unexpected", {"kind": type(exc).__name__, "error": str(exc)}


def _detail(exc: Any) -> str:
    """The server's own short explanation from an error response."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        text = inner.get("message") or inner.get("detail") if isinstance(inner, dict) else inner
        text = text or body.get("detail") or body.get("message")
    else:
        text = body
    text = str(text or getattr(exc, "message", "") or "no details")
    return text if len(text) <= 300 else text[:300] + "…"


def _root(exc: BaseException) -> BaseException:
    while (cause := exc.__cause__ or exc.__context__) is not None:
        exc = cause
    return exc
