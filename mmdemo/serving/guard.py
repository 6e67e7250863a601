"""The app's front door, as ASGI middleware: how big a request may be, and who sent it.

**Size.** A request body over the cap is answered 413 before it is read: from its Content-Length,
or, for a chunked body, as soon as the bytes received pass the cap. (File uploads are streamed to
disk by Gradio and capped per file, so /gradio_api/upload is left to that.)

**Who.** Gradio's MCP server runs each queued tool call through a loopback client of its own,
forwarding the agent's headers: to the queue, every agent arrives from 127.0.0.1, with whatever
`X-Forwarded-For` it chose to send. So the guard stamps each MCP request with the peer it really
came from, signed with a key of this process (`x-mmdemo-peer`); the loopback call carries the stamp
on, and the guard makes its signed peer that call's client. A stamp is believed only with a valid
signature (an agent cannot forge or choose one) and is removed from every request it has read.

Forwarded headers themselves are uvicorn's to read, from the proxies the operator trusts only
(`forwarded_allow_ips`, which mmdemo.ui.serve sets from MMDEMO_TRUSTED_PROXIES): every
`X-Forwarded-For` line, right to left, past the trusted proxies.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PEER_HEADER = b"x-mmdemo-peer"
MCP_PATH = "/gradio_api/mcp"
UPLOAD_PATH = "/gradio_api/upload"


class BodyTooLarge(Exception):
    """A streamed body passed the cap."""


class RequestGuard:
    """ASGI middleware: the body cap and the MCP peer stamp (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, message: str = "Request body too large.") -> None:
        self.app, self.max_body, self.message = app, max_body_bytes, message
        self._key = secrets.token_bytes(32)  # this process's: the stamp never leaves it

    def sign(self, peer: str) -> str:
        """The stamp for `peer`: the address and its signature."""
        mac = hmac.new(self._key, peer.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
        return f"{peer} {mac}"

    def signed_peer(self, stamp: bytes) -> str | None:
        """The address in a stamp whose signature is this process's, else None."""
        peer = stamp.decode("latin-1").rpartition(" ")[0]
        return peer if peer and hmac.compare_digest(self.sign(peer).encode("latin-1", "replace"), stamp) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        self._identify(scope)
        path = scope.get("path", "")
        if scope["type"] != "http" or path.endswith(UPLOAD_PATH):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await self._refuse(send)
            return
        await self._capped(scope, receive, send)

    def _identify(self, scope: Scope) -> None:
        """Replace a valid stamp's peer for the socket's, drop any stamp, and stamp MCP requests."""
        headers = [(k, v) for k, v in scope.get("headers", []) if k != PEER_HEADER]
        stamps = [v for k, v in scope.get("headers", []) if k == PEER_HEADER]
        peer = self.signed_peer(stamps[-1]) if len(stamps) == 1 else None
        if peer is not None:
            scope["client"] = (peer, 0)
        elif MCP_PATH in scope.get("path", "") and scope.get("client"):
            headers.append((PEER_HEADER, self.sign(str(scope["client"][0])).encode("latin-1")))
        scope["headers"] = headers

    async def _capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        received, started, refused = 0, False, False

        async def counted_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body and not refused:
                    # Answered here and now: the app may catch the error and would answer 400 instead.
                    refused = True
                    if not started:
                        await self._refuse(send)
                    raise BodyTooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if refused:  # what the app answers after the refusal goes nowhere
                return
            started = started or message.get("type") == "http.response.start"
            await send(message)

        with contextlib.suppress(BodyTooLarge):  # answered 413 already
            await self.app(scope, counted_receive, watched_send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": self.message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": [*headers, (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
