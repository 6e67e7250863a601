"""A fair share of the queue per client: one client's flood (fresh session ids on every request) leaves
room for everyone else. Clients are told apart by address; here, behind a trusted proxy (loopback),
by X-Forwarded-For."""

from __future__ import annotations

import statistics
import time
from types import SimpleNamespace
from typing import Any

import pytest

from mmdemo.config import Settings
from mmdemo.ui.fairness import ClientQuota, client_address, proxy_networks
from tests.conftest import start_app, stop_app
from tests.rawclient import RawClient

FLOOD = 100
CAP = 4


def test_the_client_address_trusts_x_forwarded_for_only_from_a_trusted_proxy():
    proxies = proxy_networks(["10.0.0.0/8", "127.0.0.1"])
    assert client_address("203.0.113.7", "1.2.3.4", proxies) == "203.0.113.7"  # not a proxy: its header is a lie
    assert client_address("203.0.113.7", "1.2.3.4", []) == "203.0.113.7"
    assert client_address("127.0.0.1", "198.51.100.9", proxies) == "198.51.100.9"
    # The right-most hop that is not a trusted proxy; what the client wrote to its left is not believed.
    assert client_address("10.0.0.2", "6.6.6.6, 198.51.100.9, 10.0.0.5", proxies) == "198.51.100.9"
    assert client_address("10.0.0.2", "10.0.0.3", proxies) == "10.0.0.2"  # only proxies: the socket's peer
    assert client_address("10.0.0.2", "not-an-address", proxies) == "not-an-address"


def test_a_logged_in_user_is_one_client_wherever_it_connects_from():
    quota = ClientQuota(Settings(trusted_proxies=("127.0.0.1",)))
    request = SimpleNamespace(client=SimpleNamespace(host="127.0.0.1"), headers={"x-forwarded-for": "1.1.1.1"})
    assert quota.client(request, "ada") == "user:ada"
    assert quota.client(request, None) == "addr:1.1.1.1"


def _values(config: dict[str, Any], dep: dict[str, Any]) -> list[Any]:
    """The inputs the page would send by default (its components' values)."""
    components = {c["id"]: c for c in config["components"]}
    return [components[i].get("props", {}).get("value") for i in dep["inputs"]]


def _event(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(d for d in config["dependencies"] if d.get("api_name") == name)


@pytest.fixture(scope="module")
def flood_app(data_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("flood") / "app.log"
    url, proc = start_app(
        data_dir,
        log,
        MMDEMO_TRUSTED_PROXIES="127.0.0.1",
        MMDEMO_MAX_NEW_TOKENS="256",
        MMDEMO_MAX_WAITING_PER_CLIENT=str(CAP),
        MMDEMO_PRELOAD="clip,vlm",
    )
    yield url
    stop_app(proc)


def _search_seconds(client: RawClient, search: dict[str, Any], n: int, tag: str) -> float:
    times = []
    for i in range(n):
        start = time.perf_counter()
        outcome = client.call(search["id"], ["a dog on a beach", None, 12, -1.0, 0, None], f"{tag}-{i}")
        times.append(time.perf_counter() - start)
        assert outcome.success, outcome.said
    return statistics.median(times)


def test_a_flood_of_chats_from_one_client_leaves_room_for_another(flood_app):
    mallory = RawClient(flood_app, headers={"X-Forwarded-For": "203.0.113.7"})
    alice = RawClient(flood_app, headers={"X-Forwarded-For": "198.51.100.9"})
    config = alice.config()
    chat, search = _event(config, "chat"), _event(config, "search")
    idle = _search_seconds(alice, search, 11, "idle")
    message = {"text": "Describe every detail of a long journey.", "files": []}
    long_chat = [message, [], *_values(config, chat)[2:]]
    long_chat[2] = 256  # max_new_tokens: each answer keeps the model busy for a while
    answers = [mallory.join(chat["id"], long_chat, f"flood-{i}") for i in range(FLOOD)]  # a fresh session each
    accepted = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 503]
    assert len(accepted) + len(refused) == FLOOD
    # One answering (the in-process chat answers one at a time), CAP waiting; a few more only if some finished.
    assert CAP + 1 <= len(accepted) <= CAP + 3, len(accepted)
    assert all(f"You already have {CAP} requests waiting" in a.text for a in refused), refused[0].text

    busy = _search_seconds(alice, search, 11, "busy")
    joined = alice.join(chat["id"], [{"text": "Hello?", "files": []}, [], *long_chat[2:]], "alice-chat")
    assert joined.status_code == 200, joined.text  # a place in the chat's queue, behind the flood's few
    event_id = joined.json()["event_id"]
    rank = None
    with alice.http.stream("GET", "/gradio_api/queue/data", params={"session_hash": "alice-chat"}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and event_id in line and '"estimation"' in line:
                rank = __import__("json").loads(line[5:]).get("rank")
                break
    print(
        f"\nflood: {FLOOD} chats from one client: {len(accepted)} accepted, {len(refused)} refused; "
        f"another client's search: idle {idle * 1000:.0f} ms, during the flood {busy * 1000:.0f} ms "
        f"({busy / idle:.2f}x); its chat's place in the queue: {rank}"
    )
    assert rank is not None and rank <= CAP + 2
    # The 2x goal is measured by bench/bench_flood.py (pooled rounds: this machine is shared and noisy);
    # here, a guard that fails when the search waits behind the flood (one queued chat takes seconds: 50x).
    assert busy <= 3 * idle, f"search during the flood {busy / idle:.2f}x its idle time"
    mallory.close()
    alice.close()
