"""Fair sharing: short model jobs (CLIP) run between a long job's steps (a chat answer) instead of after it."""

from __future__ import annotations

import threading
import time

from mmdemo.chat.local import stream_reply
from mmdemo.chat.pipeline import GenerationParams
from mmdemo.chat.prompt import ImageBudget, to_qwen_messages
from mmdemo.chat.reuse import PrefixCache
from mmdemo.models import compute

SMALL = ImageBudget(max_pixels=64 * 28 * 28)


def _long_job_with_safe_points(release: threading.Event, steps: list[int]) -> str:
    while not release.is_set():
        steps.append(compute.between_steps())
        time.sleep(0.005)  # a decode step
    return "answered"


def test_a_short_job_runs_between_a_long_jobs_steps():
    release, steps = threading.Event(), []
    long = compute.submit(_long_job_with_safe_points, release, steps, long=True)
    while not steps:
        time.sleep(0.001)
    try:
        ran_on: list[str] = []
        short = compute.submit(lambda: ran_on.append(threading.current_thread().name) or "encoded")
        assert short.result(timeout=2) == "encoded"
        assert not long.done(), "the short job waited for the whole long job"
        assert ran_on[0].startswith(compute.THREAD_NAME)  # the one compute thread: one OpenMP team
    finally:
        release.set()
    assert long.result(timeout=5) == "answered" and sum(steps) >= 1


def test_short_jobs_go_before_queued_long_ones_and_a_long_job_does_not_hold_decoders():
    release, order = threading.Event(), []
    first = compute.submit(lambda: (release.wait(5), order.append("long 1")), long=True)  # no safe points
    time.sleep(0.05)
    second = compute.submit(lambda: order.append("long 2"), long=True)
    short = compute.submit(lambda: order.append("short"))
    assert compute.busy() and compute.wait_idle(timeout=0) is False  # a short job waits: decoders wait too
    release.set()
    for job in (first, second, short):
        job.result(timeout=5)
    assert order == ["long 1", "short", "long 2"]
    release.clear()
    hold = compute.submit(lambda: release.wait(5), long=True)
    try:
        assert compute.wait_idle(timeout=0.2), "decoding for a search must not wait for a whole chat answer"
        assert compute.busy()
    finally:
        release.set()
        hold.result(timeout=5)


def test_a_search_runs_while_an_answer_streams_and_stop_still_stops_at_once(session_manager):
    """The tiny VLM answers at length; a CLIP text encode issued meanwhile returns long before it ends."""
    vlm, clip = session_manager.get("vlm"), session_manager.get("clip")
    stop, prefix = threading.Event(), PrefixCache()
    messages = to_qwen_messages([{"role": "user", "content": "Tell me everything."}], SMALL)
    stream = stream_reply(vlm, messages, GenerationParams(max_new_tokens=4000), stop, prefix)
    next(stream)  # generation is under way
    chunks = []
    reader = threading.Thread(target=lambda: chunks.extend(stream))
    reader.start()
    try:
        for _ in range(3):
            started = time.perf_counter()
            vectors = clip.encode_texts(["a dog on the beach"])
            assert vectors.shape[0] == 1
            assert reader.is_alive(), "the encode waited for the whole answer"
            assert time.perf_counter() - started < 2.0
    finally:
        stop.set()
        stopped = time.perf_counter()
        reader.join(5)
    assert not reader.is_alive() and time.perf_counter() - stopped < 1.0
    assert not compute.busy()
    assert prefix.last.total + 4000 > len(prefix.ids), "generate() ended early, at Stop"


def test_clearing_a_conversation_while_its_answer_streams_is_not_an_error(session_manager):
    """Clear or a closed tab frees the session's cache while generate() still runs (it ends at the next token)."""
    vlm = session_manager.get("vlm")
    stop, prefix = threading.Event(), PrefixCache()
    messages = to_qwen_messages([{"role": "user", "content": "Go on."}], SMALL)
    stream = stream_reply(vlm, messages, GenerationParams(max_new_tokens=2000), stop, prefix)
    for _ in range(3):
        next(stream)
    prefix.clear()  # what ChatSessions.forget does, from another thread
    stop.set()
    assert list(stream) == []  # and no AttributeError from the finished generate()
    assert prefix.cache is None and prefix.ids == []


def test_a_search_through_the_app_is_answered_while_another_visitor_streams(served_app):
    from gradio_client import Client
    from gradio_client.utils import Status

    url, log = served_app
    chat = Client(url, verbose=False).submit(
        {"text": "Tell me a very long story.", "files": []}, [], max_new_tokens=512, temperature=1.0, api_name="/chat"
    )
    try:
        deadline = time.time() + 60
        while not compute_is_streaming(chat) and time.time() < deadline:
            time.sleep(0.05)
        hits, *_ = Client(url, verbose=False, download_files=False).predict("a cat", None, 3, -1, api_name="/search")
        assert len(hits) == 3
        assert not chat.done(), "the search waited for the chat answer to end"
        # A second chat waits in the chat's own line, and is told its place in it.
        second = Client(url, verbose=False).submit({"text": "And you?", "files": []}, [], api_name="/chat")
        deadline = time.time() + 10
        while (status := second.status()).code != Status.IN_QUEUE and time.time() < deadline:
            time.sleep(0.02)
        assert status.code == Status.IN_QUEUE and status.rank == 0 and not chat.done()
        second.cancel()
    finally:
        chat.cancel()
    assert "Traceback" not in log.read_text()


def compute_is_streaming(job) -> bool:
    """True once the chat's answer has begun to arrive."""
    outputs = job.outputs()
    return bool(outputs) and outputs[-1][0][-1]["role"] == "assistant"


def test_a_stream_of_short_jobs_cannot_starve_a_long_one():
    """Many visitors searching at once: a chat still starts, and gets a step in about every DRAIN_BUDGET."""
    busy_until = time.monotonic() + 1.5

    def visitor() -> None:
        while time.monotonic() < busy_until:
            compute.run(time.sleep, 0.01)  # a 10 ms forward, and the next right after

    visitors = [threading.Thread(target=visitor) for _ in range(4)]
    for thread in visitors:
        thread.start()
    time.sleep(0.1)  # the visitors keep the short queue full from now on
    release, steps = threading.Event(), []
    queued = time.monotonic()
    long = compute.submit(_long_job_with_safe_points, release, steps, long=True)
    while not steps and time.monotonic() < busy_until:
        time.sleep(0.005)
    started = time.monotonic() - queued
    time.sleep(1.0)
    count = len(steps)
    release.set()
    for thread in visitors:
        thread.join()
    long.result(timeout=5)
    assert started < 0.5, f"the long job started {started:.2f} s after it was queued"
    # Without the budget the long job would wait for the visitors' whole stream.
    assert count >= 5, f"{count} steps in 1 s of other visitors' jobs"


def test_chat_caches_are_held_to_their_bytes_and_counted_in_the_budget(session_manager, tiny_settings):
    """The KV caches kept for prefix reuse fit in chat_cache_mb, which the models' budget leaves free."""
    from mmdemo.chat.sessions import ChatSessions
    from mmdemo.models.factory import build_manager

    settings = tiny_settings.replace(memory_budget_gb=10.0, chat_cache_mb=2048)
    from mmdemo.models.registry import GB

    assert build_manager(settings).budget_bytes == 10 * GB - 2048 * 1_000_000
    assert build_manager(settings.replace(chat_cache_sessions=0)).budget_bytes == 10 * GB

    vlm = session_manager.get("vlm")
    sessions = ChatSessions(max_cached=4)
    for session in ("ann", "bob"):
        stop, prefix = sessions.begin(session)
        messages = to_qwen_messages([{"role": "user", "content": f"Hello, I am {session}."}], SMALL)
        list(stream_reply(vlm, messages, GenerationParams(max_new_tokens=8, greedy=True), stop, prefix))
    one = sessions.nbytes // 2
    assert one > 0
    sessions.max_bytes = one * 3 // 2  # room for one of the two
    sessions.trim(keep="bob")
    assert 0 < sessions.nbytes <= sessions.max_bytes
    _, ann = sessions.begin("ann")
    assert ann.cache is None, "the least recently used cache went, not the one just answered"
