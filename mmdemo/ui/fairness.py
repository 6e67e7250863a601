"""A fair share of the queues per client: who a request comes from, and how many of its requests may wait.

Gradio caps what waits in all queues together (`max_queue_size`), and a session id is whatever the
client sends: one client that picks a fresh `session_hash` per request could fill the whole queue
and have every other visitor told "queue is full" for minutes. So waiting requests are counted per
*client* — the logged-in user, else the address the request came from — in each concurrency group,
and a client at its cap is refused with a message of its own while everyone else still gets a place.

The address is the socket's peer as uvicorn and the app's guard leave it: behind a reverse proxy the
operator named as trusted (`MMDEMO_TRUSTED_PROXIES`), the right-most `X-Forwarded-For` entry that is not
itself a trusted proxy; for an MCP tool call, the agent's own address (mmdemo.serving.guard). An IPv6
client is its /64 network: one machine usually holds a whole /64, and would otherwise be 2^64 clients.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any

import gradio as gr

from mmdemo.config import Settings
from mmdemo.i18n import language_of, text

log = logging.getLogger(__name__)

IPV6_CLIENT_PREFIX = 64


def client_address(host: str | None) -> str:
    """How a client is counted by its address: an IPv4 address as it is, IPv6 by its /64 network."""
    try:
        ip = ipaddress.ip_address((host or "").strip())
    except ValueError:
        return host or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(ip)


def client_id(request: Any, username: str | None = None) -> str:
    """Who sent `request` (a Starlette request or a gr.Request): 'user:NAME' when logged in, else 'addr:ADDRESS'."""
    username = username or getattr(request, "username", None)
    if username:
        return f"user:{username}"
    return f"addr:{client_address(getattr(getattr(request, 'client', None), 'host', None))}"


# A queued event that needs another queue's resources for some inputs: (does it, for these inputs?, the twin event
# with the same inputs and function, registered in that queue). E.g. an API search asked to re-rank is chat work.
Reroute = tuple[Callable[[list[Any]], bool], int]


def reroute(event: dict[str, Any], twin: dict[str, Any], when: Callable[[list[Any]], bool]) -> None:
    """Queue `event` as `twin` (the same function and inputs, in another queue) whenever `when(inputs)` holds.

    Call while the Blocks is being built (events are the Dependency objects Gradio's listeners return). The
    queue's gate (ClientQuota.install) reroutes at join, before any cap is counted: an API search asked to
    re-rank waits, and runs, in the chat's queue, and never holds a search slot while the chat model works.
    """
    app = gr.context.Context.root_block
    if app is None:
        raise RuntimeError("reroute() is for use inside a gr.Blocks")
    app.__dict__.setdefault(REROUTES, {})[event["id"]] = (when, twin["id"])


REROUTES = "mmdemo_reroutes"


class ClientQuota:
    """Counts a client's waiting events in each concurrency group of a Gradio queue and refuses beyond the cap.

    Installed by wrapping the queue's `push` (the one place every `queue/join` passes through; see
    docs/private-apis.md): Gradio keeps its own global `max_size` check behind ours.
    """

    def __init__(self, settings: Settings) -> None:
        self.cap = settings.max_waiting_per_client
        self._lock = asyncio.Lock()  # check and enqueue as one step: two joins at once cannot both pass
        self.reroutes: dict[int, Reroute] = {}  # fn_index -> reroute (set by the tabs before launch)

    def client(self, request: Any, username: str | None) -> str:
        """Who sent `request`: see client_id."""
        return client_id(request, username)

    def waiting(self, queue: Any, concurrency_id: str, client: str) -> int:
        """How many events of `client` wait (not yet running) in the group `concurrency_id`."""
        group = queue.event_queue_per_concurrency_id.get(concurrency_id)
        events = group.queue if group is not None else []
        return sum(1 for event in events if self.client(event.request, event.username) == client)

    def install(self, app: gr.Blocks) -> None:
        """Put the cap (when > 0) in front of `app`'s queue (after `app.queue()`), and stamp each request
        with when it joined which queue (the handler's wrapper records its wait: mmdemo.serving.metrics)."""
        queue = app._queue
        push = queue.push
        self.reroutes.update(app.__dict__.get(REROUTES, {}))

        async def capped_push(body: Any, request: Any, username: str | None) -> Any:
            fn = app.fns.get(body.fn_index) if body.fn_index is not None else None
            if fn is None or not fn.queue:
                return await push(body, request, username)
            if (route := self.reroutes.get(body.fn_index)) is not None and _wants(route[0], body.data):
                body.fn_index, fn = route[1], app.fns[route[1]]
            request.state.mmdemo_joined = time.monotonic()
            request.state.mmdemo_queue = queue_name(fn.concurrency_id)
            if self.cap <= 0:
                return await push(body, request, username)
            client = self.client(request, username)
            async with self._lock:
                if self.waiting(queue, fn.concurrency_id, client) >= self.cap:
                    log.info("refused a request of %s: %d already waiting in %s", client, self.cap, fn.concurrency_id)
                    lang = language_of(request.headers.get("accept-language"))
                    return False, text("error.too_busy", lang, n=self.cap), "queue_full"
                return await push(body, request, username)

        queue.push = capped_push


def _wants(test: Callable[[list[Any]], bool], data: Any) -> bool:
    try:
        return isinstance(data, list) and test(data)
    except (TypeError, ValueError, IndexError, OverflowError):  # whatever a client sent: not a reroute
        return False


def queue_name(concurrency_id: Any) -> str:
    """A queue's name for the metrics: the app's named groups (clip, vlm, admin), else "default"."""
    return concurrency_id if isinstance(concurrency_id, str) and not concurrency_id.isdigit() else "default"


def queue_lengths(app: gr.Blocks) -> dict[str, int]:
    """Requests waiting now, per queue (read at scrape time)."""
    lengths: dict[str, int] = {}
    queue = getattr(app, "_queue", None)
    for concurrency_id, group in dict(getattr(queue, "event_queue_per_concurrency_id", {})).items():
        name = queue_name(concurrency_id)
        lengths[name] = lengths.get(name, 0) + len(group.queue)
    return lengths
