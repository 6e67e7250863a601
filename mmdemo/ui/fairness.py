"""A fair share of the queues per client: who a request comes from, and how many of its requests may wait.

Gradio caps what waits in all queues together (`max_queue_size`), and a session id is whatever the
client sends: one client that picks a fresh `session_hash` per request could fill the whole queue
and have every other visitor told "queue is full" for minutes. So waiting requests are counted per
*client* — the logged-in user, else the address the request came from — in each concurrency group,
and a client at its cap is refused with a message of its own while everyone else still gets a place.

The address is the socket's peer, except behind a reverse proxy the operator named as trusted
(`MMDEMO_TRUSTED_PROXIES`): then it is the right-most `X-Forwarded-For` entry that is not itself a
trusted proxy (entries to its left are whatever the client wrote there).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Sequence
from typing import Any

import gradio as gr

from mmdemo.config import Settings
from mmdemo.i18n import language_of, text

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def proxy_networks(specs: Sequence[str]) -> list[Network]:
    """The trusted proxies' addresses or CIDR ranges, parsed (Settings checked them)."""
    return [ipaddress.ip_network(spec.strip(), strict=False) for spec in specs]


def _in(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: `peer`, or behind trusted proxies the right-most untrusted X-Forwarded-For entry."""
    address = peer or "unknown"
    if not trusted or not _in(address, trusted) or not forwarded_for:
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _in(hop, trusted):
            return hop
    return address


class ClientQuota:
    """Counts a client's waiting events in each concurrency group of a Gradio queue and refuses beyond the cap.

    Installed by wrapping the queue's `push` (the one place every `queue/join` passes through; see
    docs/private-apis.md): Gradio keeps its own global `max_size` check behind ours.
    """

    def __init__(self, settings: Settings) -> None:
        self.cap = settings.max_waiting_per_client
        self.trusted = proxy_networks(settings.trusted_proxies)
        self._lock = asyncio.Lock()  # check and enqueue as one step: two joins at once cannot both pass

    def client(self, request: Any, username: str | None) -> str:
        """Who sent `request` (a Starlette request): 'user:NAME' when logged in, else 'addr:ADDRESS'."""
        if username:
            return f"user:{username}"
        peer = getattr(getattr(request, "client", None), "host", None)
        headers = getattr(request, "headers", None) or {}
        return f"addr:{client_address(peer, headers.get('x-forwarded-for'), self.trusted)}"

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

        async def capped_push(body: Any, request: Any, username: str | None) -> Any:
            fn = app.fns.get(body.fn_index) if body.fn_index is not None else None
            if fn is None or not fn.queue:
                return await push(body, request, username)
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
