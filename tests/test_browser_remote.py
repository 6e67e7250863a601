"""The Chat tab in Chromium with the chat on a real `transformers serve` (MMDEMO_VLM_URL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import start_app, stop_app
from tests.test_browser import ARTIFACTS, CHROMIUM, FLAGS, ask_and_stop, set_max_new_tokens

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def remote_page(vlm_server, data_dir, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    url, model = vlm_server
    log = tmp_path_factory.mktemp("remote-app") / "app.log"
    env = {"MMDEMO_VLM_URL": url, "MMDEMO_VLM_SERVED_MODEL": model, "MMDEMO_MAX_NEW_TOKENS": "3000"}
    app_url, app = start_app(data_dir, log, **env)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app_url)
        page.get_by_text("answers are noise").first.wait_for(timeout=30_000)
        yield page, log
        browser.close()
    stop_app(app)


def test_chat_on_the_server_streams_two_images_then_stops_and_system_names_the_server(remote_page, images):
    page, log = remote_page
    page.get_by_role("tab", name="Chat").click()
    page.locator("input[type=file]").first.set_input_files([str(images[0]), str(images[1])])
    box = page.get_by_placeholder("Ask about an image")
    box.fill("Compare these two.")
    box.press("Enter")
    bot = page.locator("[data-testid=bot]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=bot]')].some(e => e.innerText.trim().length > 0)",
        timeout=60_000,
    )
    # Done: the line under the conversation is the server's kind (no in-process cache reuse).
    page.locator("#chat-stats").get_by_text("first token after").wait_for(timeout=60_000)

    # A long answer, stopped: nothing arrives afterwards.
    set_max_new_tokens(page, 3000)
    before, stopped = ask_and_stop(page, "Now tell me a very long story.")
    page.wait_for_timeout(1500)
    assert bot.nth(before).inner_text() == stopped
    page.screenshot(path=ARTIFACTS / "chat-remote.png")

    page.get_by_role("tab", name="System").click()
    page.get_by_role("button", name="Refresh").click()
    page.get_by_text("on http://127.0.0.1:").first.wait_for(timeout=30_000)
    assert "reachable" in page.get_by_text("on http://127.0.0.1:").first.inner_text()
    assert "Traceback" not in log.read_text()
