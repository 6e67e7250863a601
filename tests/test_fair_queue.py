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
from mmdemo.ui.fairness import ClientQuota, client_address
from tests.conftest import start_app, stop_app
from tests.rawclient import RawClient

FLOOD = 100
CAP = 4


def test_a_client_is_its_address_and_an_ipv6_client_its_64_network():
    assert client_address("203.0.113.7") == "203.0.113.7"
    assert client_address("2001:db8:1:2:aaaa::1") == client_address("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_address("2001:db8:1:3::1") != client_address("2001:db8:1:2::1")
    assert client_address("::ffff:198.51.100.9") == "198.51.100.9"
    assert client_address(None) == "unknown"


def test_a_logged_in_user_is_one_client_wherever_it_connects_from():
    quota = ClientQuota(Settings())
    request = SimpleNamespace(client=SimpleNamespace(host="198.51.100.9"), headers={"x-forwarded-for": "1.1.1.1"})
    assert quota.client(request, "ada") == "user:ada"
    # The address is the request's client as uvicorn and the guard left it; a header is never read here.
    assert quota.client(request, None) == "addr:198.51.100.9"


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
