"""First start on a machine with no route to the Hugging Face Hub, default profile, empty cache."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, stop_app, wait_until_answers
from tests.test_browser import CHROMIUM, FLAGS

pytestmark = pytest.mark.e2e  # starts app.py (or a benchmark) in processes of its own


def test_first_start_offline_answers_at_once_with_the_message_and_logs_one_line(tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    # A "Hub" that accepts connections and never answers: what a firewall dropping packets looks like
    # (worse than a refused connection: every library would wait for its timeouts and retries).
    with socket.socket() as hub:
        hub.bind(("127.0.0.1", 0))
        hub.listen(64)
        port = free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "", "HF_ENDPOINT": f"http://127.0.0.1:{hub.getsockname()[1]}",
               "HF_HOME": str(tmp_path / "hf"), "MMDEMO_DATA_DIR": str(tmp_path / "data"),
               "MMDEMO_PORT": str(port), "MMDEMO_PROFILE": "default"}  # fmt: skip
        env.pop("MMDEMO_VLM_URL", None)
        log = tmp_path / "app.log"
        start = time.monotonic()
        with log.open("w") as out:
            proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_until_answers(url, proc, log, "app.py", 60)
            client = Client(url, verbose=False, download_files=False)
            with pytest.raises(AppError, match="not available offline"):
                client.predict("a cat", None, 3, -1, api_name="/search")
            first = time.monotonic() - start
            assert first <= 10, f"the first answer took {first:.1f} s from start"
            later = []
            for _ in range(3):  # remembered: no new attempt, no waiting
                began = time.monotonic()
                with pytest.raises(AppError, match="not available offline"):
                    client.predict("a dog", None, 3, -1, api_name="/search")
                later.append(time.monotonic() - began)
            assert max(later) <= 1
            print(f"offline: first answer {first:.1f} s after start, later ones within {max(later):.2f} s")
            _, info = client.predict(api_name="/system")
            assert "could not be loaded" in info
            began = time.monotonic()  # the operator's Retry: tried again at once, offline still
            with pytest.raises(AppError, match="not available offline"):
                client.predict("clip-vit-b-32", api_name="/retry_load")
            assert time.monotonic() - began <= 2
            if Path(CHROMIUM).exists():  # the page says it before anyone asks
                from playwright.sync_api import sync_playwright

                with sync_playwright() as pw:
                    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
                    page = browser.new_page()
                    page.goto(url)
                    banner = page.locator("#mmdemo-load-errors")
                    banner.get_by_text("clip-vit-b-32").wait_for(timeout=15_000)
                    assert "could not be loaded" in banner.inner_text() and "qwen2.5-vl" in banner.inner_text()
                    page.get_by_role("tab", name="System").click()
                    assert page.get_by_role("button", name="Retry load").is_enabled()
                    browser.close()
        finally:
            stop_app(proc)
    text = log.read_text()
    assert "offline mode" in text and "Traceback" not in text, text[-3000:]
    # One line per failed load: the preload's, and the operator's retry (not one per request).
    assert text.count("could not be downloaded") == 3, text[-3000:]
