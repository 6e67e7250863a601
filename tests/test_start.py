"""Starting fast: app.py answers on its port at once, and CLIP-only commands leave transformers out."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from mmdemo.models.registry import resolve
from mmdemo.serving.starting import MARKER, StartingPage
from tests.conftest import REPO, free_port, spawn_app, stop_app, wait_until_answers

pytestmark = pytest.mark.e2e  # starts app.py (or a benchmark) in processes of its own

PAGE = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser sends for a page


def _get(
    url: str, headers: dict[str, str] | None = None, data: bytes | None = None
) -> tuple[int, dict[str, str], str] | None:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, data=data, headers=headers or PAGE), timeout=2
        ) as answer:
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()
    except OSError:
        return None


def test_app_py_answers_with_a_starting_page_until_the_app_takes_the_port_over(data_dir, tmp_path):
    log = tmp_path / "app.log"
    url, proc = spawn_app(data_dir, log)
    try:
        first = None
        deadline = time.monotonic() + 60
        while first is None and time.monotonic() < deadline:
            first = _get(url)
            time.sleep(0.02)
        assert first is not None, log.read_text()
        status, headers, body = first
        # Gradio and torch take seconds to import: the first answer is the starting page.
        assert status == 200 and headers.get(MARKER) == "1", headers
        assert "Starting" in body and "正在启动" in body
        ready = _get(url + "ready")
        assert ready is not None and ready[0] == 503 and json.loads(ready[2])["ready"] is False
        assert url.rstrip("/") in log.read_text()  # the URL, printed as soon as it answers
        wait_until_answers(url, proc, log, "app.py", 120)  # then the app itself, on the same port
        status, headers, body = _get(url)
        assert status == 200 and MARKER not in headers and "gradio" in body.lower()
    finally:
        stop_app(proc)


def test_while_starting_only_a_page_request_gets_the_page_and_everything_else_a_503_with_json():
    page = StartingPage("127.0.0.1", free_port())
    assert page.start()
    url = f"http://127.0.0.1:{page.port}"
    try:
        status, headers, body = _get(url + "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html") and "Starting" in body
        not_ready = [
            _get(url + "/config"),  # what gradio_client asks first: JSON, or it fails to parse a page
            _get(url + "/config", PAGE),  # even from a browser: never a page where data was asked for
            _get(url + "/gradio_api/info"),
            _get(url + "/ready", PAGE),
            _get(url + "/", {"Accept": "application/json"}),
            _get(url + "/gradio_api/queue/join", {"Content-Type": "application/json"}, data=b'{"fn_index": 0}'),
        ]
        for status, headers, body in not_ready:
            assert status == 503 and headers["Retry-After"] == "2" and headers[MARKER] == "1", headers
            assert headers["Content-Type"] == "application/json" and json.loads(body)["starting"] is True
    finally:
        page.stop()


def test_an_auth_app_never_answers_config_without_a_login_starting_or_not(data_dir, tmp_path):
    log = tmp_path / "app.log"
    url, proc = spawn_app(data_dir, log, MMDEMO_AUTH="ada:lovelace", MMDEMO_PRELOAD="")
    seen: set[tuple[int, bool]] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            answer = _get(url + "config", {"Accept": "application/json"})
            if answer is None:
                assert proc.poll() is None, log.read_text()[-3000:]
                continue
            status, headers, _ = answer
            seen.add((status, MARKER in headers))
            assert status != 200, f"/config answered 200 without a login ({'starting' if MARKER in headers else 'app'})"
            if MARKER not in headers:
                break
            time.sleep(0.05)
        assert (503, True) in seen and any(not starting for _, starting in seen), seen  # both servers were asked
    finally:
        stop_app(proc)


def test_the_starting_page_steps_aside_when_the_port_is_taken():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        assert StartingPage("127.0.0.1", taken.getsockname()[1]).start() is False
    port = free_port()
    page = StartingPage("127.0.0.1", port)
    assert page.start() is True
    page.stop()
    page.stop()  # idempotent
    with socket.socket() as again:  # the port is free for Gradio at once
        again.bind(("127.0.0.1", port))


@pytest.mark.parametrize(
    ("model", "needs"),
    [("clip-vit-b-32", False), ("tiny-clip", False), ("clip-xlm-roberta-b-32", True),
     ("clip-siglip-i18n-b-16", True), ("clip-nllb-siglip-b", True), ("tiny-clip-multilingual", True),
     ("hf-hub:org/model", True), ("ViT-L-14:datacomp_xl_s13b_b90k", False)],
)  # fmt: skip
def test_which_clips_need_transformers(model, needs):
    from mmdemo.models.clip import needs_transformers

    assert needs_transformers(resolve(model)) is needs


def test_the_index_command_imports_neither_transformers_gradio_nor_qwen_vl_utils(data_dir, images):
    probe = ("import sys; from mmdemo.commands.cli import main; code = main(sys.argv[1:]); "
             "print('MODULES', *sorted(m for m in sys.modules if sys.modules[m] is not None and '.' not in m)); "
             "sys.exit(code)")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", probe, "index", str(images[0].parent), "--profile", "tiny", "--gallery", "startup"],
        cwd=REPO, env={**os.environ, "MMDEMO_DATA_DIR": str(data_dir)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Indexed 3 image(s)" in done.stdout  # the work is done (and kept: see test_manage)
    imported = set(done.stdout.split("MODULES", 1)[1].split())
    assert {"torch", "open_clip", "faiss"} <= imported
    assert not imported & {"transformers", "gradio", "qwen_vl_utils"}


def test_python_m_mmdemo_exits_with_the_commands_status(data_dir, tmp_path):
    """`python -m mmdemo` leaves without finalising the libraries: its status must still be the command's."""
    env = {**os.environ, "MMDEMO_DATA_DIR": str(data_dir)}
    missing = subprocess.run([sys.executable, "-m", "mmdemo", "index", str(tmp_path / "nowhere"), "--profile", "tiny"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_a_browser_arriving_while_the_app_starts_sees_the_starting_page_then_the_app(data_dir, tmp_path):
    from pathlib import Path

    from tests.test_browser import ARTIFACTS, CHROMIUM, FLAGS

    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)  # first: the app starts in seconds
        log = tmp_path / "app.log"
        url, proc = spawn_app(data_dir, log)
        try:
            while (answer := _get(url)) is None:
                assert proc.poll() is None, log.read_text()
                time.sleep(0.02)
            page = browser.new_page()
            page.goto(url)
            assert answer[1].get(MARKER) == "1"
            page.get_by_text("Starting").wait_for(timeout=5_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=ARTIFACTS / "starting.png")
            # The page reloads itself once the app answers: no refused connection, no manual reload.
            page.get_by_role("tab", name="Chat").wait_for(timeout=120_000)
            page.get_by_text("answers are noise").first.wait_for(timeout=10_000)
        finally:
            stop_app(proc)
            browser.close()
