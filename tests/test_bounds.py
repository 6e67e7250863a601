"""What no client may exceed, in process: private galleries per client and in total, images per gallery,
open gallery stores, repeated log lines, the judge's prompt, and where outbound fetches connect."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import pytest

from mmdemo.errors import UserFacingError
from mmdemo.search.private import Caps, PrivateRegistry, gallery_key, within_cap


def _registry(
    tmp_path: Path, total: int = 5, per_client: int = 2, idle_s: float = 3600
) -> tuple[PrivateRegistry, list[str]]:
    removed: list[str] = []
    return PrivateRegistry(tmp_path, Caps(total, per_client, idle_s), removed.append), removed


def test_private_galleries_are_capped_per_client_and_in_total(tmp_path):
    registry, _ = _registry(tmp_path)
    mine = [registry.create("agent", "addr:203.0.113.7") for _ in range(2)]
    with pytest.raises(UserFacingError) as refused:
        registry.create("agent", "addr:203.0.113.7")
    assert refused.value.key == "private.client_full" and "2" in str(refused.value)
    others = [registry.create("page", f"addr:198.51.100.{i}") for i in range(3)]
    with pytest.raises(UserFacingError) as full:
        registry.create("page", "addr:192.0.2.1")
    assert full.value.key == "private.full"
    assert all(registry.touch(t) for t in mine + others)
    assert not registry.touch("0" * 32) and not registry.touch("../etc")
    registry.forget(gallery_key(mine[0]))  # a tab closed: a place is free again
    registry.create("agent", "addr:203.0.113.7")
    # The registry names owners by a hash only (an address is personal data) and tokens not at all.
    raw = (tmp_path / "private.sqlite3").read_bytes()
    assert b"203.0.113.7" not in raw and mine[1].encode() not in raw


def test_a_second_process_sees_the_same_galleries_and_the_caps_count_them(tmp_path):
    first, _ = _registry(tmp_path)
    second, _ = _registry(tmp_path)  # another replica (or a restart) on the same data dir
    token = first.create("agent", "addr:203.0.113.7")
    assert second.touch(token)
    second.create("agent", "addr:203.0.113.7")
    with pytest.raises(UserFacingError):
        first.create("agent", "addr:203.0.113.7")


def test_the_sweep_removes_unused_galleries_and_folders_nobody_owns(tmp_path):
    registry, removed = _registry(tmp_path, idle_s=60)
    old = registry.create("agent", "addr:a")
    registry.create("agent", "addr:b")
    now = time.time()
    live = registry.create("agent", "addr:c")
    folders = {gallery_key(live): now, "f" * 32: now - 3600, "e" * 32: now}  # an orphan, and one just made
    swept = registry.sweep(lambda: folders, now=now + 120)
    assert gallery_key(old) in swept and gallery_key(live) in swept  # unused for two minutes: gone
    assert "f" * 32 in swept and "e" * 32 not in swept  # an orphan past its grace; a fresh folder is left
    assert set(removed) == set(swept) and not registry.touch(old)


def test_galleries_keep_a_bounded_number_of_stores_open(tiny_settings, session_manager, tmp_path, images):
    from mmdemo.embedding.ingest import ImageFile
    from mmdemo.search.galleries import Galleries, session_gallery

    settings = tiny_settings.replace(data_dir=tmp_path / "data", open_galleries=3)
    galleries = Galleries(settings, session_manager)
    fds = len(os.listdir("/proc/self/fd"))
    tokens = [galleries.new_private("agent", f"addr:198.51.100.{i}") for i in range(12)]
    for i, token in enumerate(tokens):
        gallery = galleries.get(session_gallery(token))
        gallery.add_files([ImageFile(str(images[i % 3]), f"img{i}.png")])
    assert galleries.open_stores() <= 3
    # Each open gallery store holds 4 files; each open photo-stage database 3 (bounded alike); the registry's, spare.
    assert len(os.listdir("/proc/self/fd")) - fds <= 3 * 4 + 3 * 3 + 6
    # An evicted store still answers: it opens its files again.
    assert [it.name for it in galleries.get(session_gallery(tokens[0])).store.items()] == ["img0.png"]
    # Thumbnails live in the media folder, which holds images only; nothing of a private one names its token.
    media = settings.data_dir / "media"
    assert {p.suffix for p in media.rglob("*") if p.is_file()} == {".jpg"}
    everything = [str(p) for p in settings.data_dir.rglob("*")]
    assert not any(token in path for token in tokens for path in everything)


def test_a_private_gallery_reports_cached_vectors_of_its_own_adds_only(
    tiny_settings, session_manager, tmp_path, images
):
    from mmdemo.embedding.ingest import ImageFile
    from mmdemo.search.galleries import Galleries, session_gallery

    settings = tiny_settings.replace(data_dir=tmp_path / "data")
    galleries = Galleries(settings, session_manager)
    files = [ImageFile(str(p), p.name) for p in images]
    alice, mallory = (galleries.new_private("agent", f"addr:{who}") for who in ("alice", "mallory"))
    galleries.get(session_gallery(alice)).add_files(files)
    probe = galleries.get(session_gallery(mallory)).add_files(files)  # the same bytes as alice's
    assert probe.from_cache == 0 and len(probe.added) == 3  # nothing says somebody else had them
    mine = galleries.get(session_gallery(mallory))
    mine.remove([it.id for it in mine.store.items()])
    assert mine.add_files(files).from_cache == 3  # its own earlier adds are reused
    galleries.drop(session_gallery(mallory))
    assert (
        galleries.cache.get(mine._space, [it.hash for it in galleries.get(session_gallery(alice)).store.items()], True)
        == {}
    )


def test_a_full_gallery_takes_what_fits_and_says_why_for_the_rest():
    kept, over = within_cap([(f"f{i}", f"name{i}") for i in range(5)], held=7, limit=10)
    assert [f for f, _ in kept] == ["f0", "f1", "f2"]
    assert [s.name for s in over] == ["name3", "name4"] and "MMDEMO_MAX_IMAGES_PER_GALLERY" in over[0].reason
    with pytest.raises(UserFacingError) as full:
        within_cap([("f", "n")], held=10, limit=10)
    assert full.value.key == "private.gallery_full"


def test_a_repeated_error_is_logged_a_few_times_per_interval_with_a_count():
    from mmdemo.serving.logs import RepeatFilter

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("mmdemo.test.repeats")
    handler = Keep()
    handler.addFilter(RepeatFilter(interval=0.3, burst=3))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        for _ in range(10_000):
            logger.error("[Errno 24] Too many open files: %s", "meta.sqlite3")
        logger.error("another line is not held back: %s", "meta.sqlite3")
        logger.info("an info line is never held back")
        time.sleep(0.35)
        logger.error("[Errno 24] Too many open files: %s", "meta.sqlite3")
    finally:
        logger.removeHandler(handler)
    line = "[Errno 24] Too many open files: meta.sqlite3"
    assert records == [
        line,
        line,
        line,
        "another line is not held back: meta.sqlite3",
        "an info line is never held back",
        f"{line} [9997 more like this in the last minute or so]",
    ]


def test_the_judge_refuses_a_prompt_beyond_its_token_bound_before_the_forward(lively_vlm, images):
    from mmdemo.ask.rerank import judge_messages, rerank_question
    from mmdemo.chat.judge import MAX_JUDGE_TOKENS, prepare_batch
    from mmdemo.chat.prompt import ImageBudget

    budget = ImageBudget(max_pixels=64 * 28 * 28, max_file_pixels=10**8)
    long = judge_messages(str(images[0]), rerank_question("word " * (MAX_JUDGE_TOKENS + 10)), budget)
    with pytest.raises(UserFacingError) as refused:
        prepare_batch(lively_vlm, [long])
    assert refused.value.key == "ask.prompt_too_long"


@pytest.mark.parametrize(
    "address",
    ["::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1", "64:ff9b:1::a00:1", "2002:7f00:1::1", "2001:0:4136::1"],
)
def test_ipv6_forms_of_an_ipv4_address_are_refused(monkeypatch, address):
    from mmdemo.serving import fetch

    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(socket.AF_INET6, 1, 6, "", (address, 0, 0, 0))])
    with pytest.raises(UserFacingError) as refused:
        fetch.fetch_image("http://images.example/cat.png", Path("/nonexistent"), 10**6)
    assert refused.value.key == "fetch.private"


def test_a_fetch_connects_to_the_address_it_checked(monkeypatch, tmp_path):
    """DNS rebinding: the name answers a public address to the check, loopback afterwards. The connection
    must go to the address checked; here it is refused before a packet leaves (no traffic off this machine)."""
    from mmdemo.serving import fetch

    answers = iter(["93.184.215.14"] + ["127.0.0.1"] * 10)
    real_getaddrinfo = socket.getaddrinfo
    connected: list[tuple[str, int]] = []

    def rebinding(host, *args, **kwargs):
        if host == "rebind.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), 80))]
        return real_getaddrinfo(host, *args, **kwargs)

    def refuse(address, *args, **kwargs):
        connected.append(address)
        raise ConnectionRefusedError("the test allows no connection")

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(Exception):  # noqa: B017 (refused by the stand-in: whatever httpx makes of it)
        fetch.fetch_image("http://rebind.example/cat.png", tmp_path, 10**6)
    assert connected and {host for host, _ in connected} == {"93.184.215.14"}
