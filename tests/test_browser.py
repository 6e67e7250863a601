"""Every tab driven in a real browser (Debian Chromium via Playwright) against `python app.py`.

Screenshots land in test-artifacts/. Skipped when Chromium is not installed; never downloads one.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium not installed (apt-get install chromium)")
ARTIFACTS = REPO / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip


@contextlib.contextmanager
def search_page(url: str, height: int = 1100) -> Iterator[Any]:
    """Chromium showing the Search tab of the app at `url` (a Playwright page; the browser closes after)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": height})
            page.goto(url)
            page.get_by_role("tab", name="Search").click()
            yield page
        finally:
            browser.close()


def add_to_my_gallery(page, *paths: Path) -> None:
    """Open "Add your own images", choose `paths` and press "Add to my gallery" (the report is the caller's)."""
    page.get_by_text("Add your own images").click()
    page.locator("#search-uploads input[type=file]").set_input_files([str(path) for path in paths])
    page.get_by_role("button", name="Add to my gallery").click()


def set_max_new_tokens(page, n: int) -> None:
    """Open the chat's generation settings and set "Max new tokens"."""
    page.get_by_role("button", name="Generation settings").click()
    tokens = page.get_by_label("number input for Max new tokens")
    tokens.fill(str(n))
    tokens.press("Enter")


def ask_and_stop(page, question: str) -> tuple[int, str]:
    """Send `question`, press Stop once its answer has begun; (its index among answers, the text kept)."""
    bot = page.locator("[data-testid=bot]")
    box = page.get_by_placeholder("Ask about an image")
    before = bot.count()
    box.fill(question)
    box.press("Enter")
    page.wait_for_function(
        f"() => document.querySelectorAll('[data-testid=bot]').length > {before}"
        f" && document.querySelectorAll('[data-testid=bot]')[{before}].innerText.trim().length > 0",
        timeout=60_000,
    )
    page.get_by_role("button", name="Stop").click()
    box.wait_for(state="visible")
    page.wait_for_function("() => !document.querySelector('textarea[data-testid=textbox]')?.disabled", timeout=10_000)
    return before, bot.nth(before).inner_text()


def watch_answer_gone(page, index: int) -> None:
    """From now on, set `window.answerGone` once the page holds no more than `index` answers (a
    Regenerate takes the old answer away first: waiting for that keeps its text from passing for the
    new one)."""
    page.evaluate(
        f"""() => {{
            window.answerGone = false;
            new MutationObserver(() => {{
                if (document.querySelectorAll('[data-testid=bot]').length <= {index}) window.answerGone = true;
            }}).observe(document.body, {{childList: true, subtree: true}});
        }}"""
    )


@pytest.fixture(scope="module")
def page(served_app):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(served_app[0])
        page.get_by_text("answers are noise").first.wait_for(timeout=30_000)
        yield page
        browser.close()


def test_chat_streams_an_answer_about_an_uploaded_image(page, images):
    page.get_by_role("tab", name="Chat").click()
    page.locator("input[type=file]").first.set_input_files(str(images[0]))
    box = page.get_by_placeholder("Ask about an image")
    box.fill("What is in this image?")
    box.press("Enter")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=bot]')].some(e => e.innerText.trim().length > 0)",
        timeout=60_000,
    )
    # Under the conversation, once the answer is done: what it cost.
    page.locator("#chat-stats").get_by_text("tokens/s").wait_for(timeout=30_000)
    assert "prompt tokens reused from the cache" in page.locator("#chat-stats").inner_text()
    # The model runs in process on the CPU: said once, with where a faster path is described.
    assert (
        "a llama.cpp server with 4-bit weights answers several times faster" in page.locator("#chat-stats").inner_text()
    )
    page.screenshot(path=ARTIFACTS / "chat.png")


def test_chat_stop_regenerate_and_undo(page, served_app):
    """Stop ends a long answer; Regenerate answers again; Undo puts the question back in the box."""
    page.get_by_role("tab", name="Chat").click()
    bot = page.locator("[data-testid=bot]")
    box = page.get_by_placeholder("Ask about an image")
    before, stopped = ask_and_stop(page, "Tell me a very long story.")
    page.wait_for_timeout(1500)
    assert bot.nth(before).inner_text() == stopped  # nothing arrives after Stop
    # Regenerate first takes the old answer away: wait for that, or the old text would pass for the
    # new one and Undo could reach the server before Regenerate does (seen on a loaded machine).
    watch_answer_gone(page, before)
    page.get_by_role("button", name="Regenerate").click()
    page.wait_for_function(
        f"() => window.answerGone"
        f" && document.querySelectorAll('[data-testid=bot]')[{before}]?.innerText.trim().length > 0",
        timeout=60_000,
    )
    page.wait_for_timeout(500)
    page.locator("#chat-stats").get_by_text("tokens/s").wait_for(timeout=30_000)
    assert "llama.cpp" not in page.locator("#chat-stats").inner_text()  # once per session, not per answer
    page.get_by_role("button", name="Undo last turn").click()
    page.wait_for_function(f"() => document.querySelectorAll('[data-testid=bot]').length == {before}", timeout=30_000)
    assert box.input_value() == "Tell me a very long story."
    log = served_app[1].read_text()
    assert "Traceback" not in log, log[-3000:]


def test_chat_regenerate_can_be_stopped_and_the_conversation_downloads(page, served_app):
    page.get_by_role("tab", name="Chat").click()
    bot = page.locator("[data-testid=bot]")
    # A conversation of its own, whatever the earlier tests left (Clear also cancels what may still run
    # of theirs): one question, answered to its end (the box is given back when the answer's event ends).
    page.locator("#chat-clear").click()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=bot]').length == 0", timeout=30_000)
    set_max_new_tokens(page, 512)  # long answers: Regenerate's below is stopped while it streams
    box = page.get_by_placeholder("Ask about an image")
    box.fill("Say something short.")
    box.press("Enter")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=bot]').length == 1"
        " && document.querySelector('[data-testid=bot]').innerText.trim().length > 0"
        " && !document.querySelector('textarea[data-testid=textbox]')?.disabled",
        timeout=60_000,
    )
    page.locator("#chat-system-prompt textarea").fill("Answer in one word.")
    last = bot.count() - 1
    watch_answer_gone(page, last)
    page.get_by_role("button", name="Regenerate").click()
    stop = page.locator("#chat-stop-regenerate")
    stop.wait_for(state="visible", timeout=10_000)  # a Stop beside Regenerate while it answers
    page.wait_for_function(
        f"() => window.answerGone && document.querySelectorAll('[data-testid=bot]')[{last}]?.innerText.trim().length",
        timeout=60_000,
    )
    stop.click()
    stop.wait_for(state="hidden", timeout=10_000)
    stopped = bot.nth(last).inner_text()
    page.wait_for_timeout(1500)
    assert bot.nth(last).inner_text() == stopped  # nothing arrives after Stop
    page.get_by_role("button", name="Download conversation").click()
    # Two download links, by name (gradio shows a name as stem and suffix in separate spans).
    page.wait_for_function(
        "() => [...document.querySelectorAll('#chat-transcript a')].map(a => a.href).join(' ')"
        ".match(/conversation\\.json.*conversation\\.md/)",
        timeout=30_000,
    )
    log = served_app[1].read_text()
    assert "Traceback" not in log, log[-3000:]


def test_search_shows_gallery_results_with_scores(page):
    page.get_by_role("tab", name="Search").click()
    query = page.get_by_label("Describe what you are looking for")
    query.fill("a cat on a sofa")
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator("#search-results").get_by_text("·").first.wait_for(timeout=60_000)
    assert page.locator("text=/0\\.\\d{3} · .+\\.jpg/").count() > 0
    # A Chinese query on the (English-only) tiny CLIP: said under the results, once.
    query.fill("夕阳下的海滩")
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator("#search-notice").get_by_text("reads English only").wait_for(timeout=60_000)


def test_search_indexes_three_uploads_and_finds_one_by_example(page, images):
    page.get_by_role("tab", name="Search").click()
    page.get_by_text("Add your own images").click()
    page.locator("#search-uploads input[type=file]").set_input_files([str(p) for p in images])
    page.get_by_role("button", name="Add to my gallery").click()
    page.locator("#search-report").get_by_text("Indexed 3 image(s)").wait_for(timeout=60_000)
    page.locator("#search-query-image input[type=file]").set_input_files(str(images[2]))
    page.get_by_role("button", name="Search", exact=True).click()
    # The same image is its own best match: score 1.000, in this session's gallery.
    page.get_by_text("1.000 · img2.png").first.wait_for(timeout=60_000)
    page.locator("#search-table").get_by_text("yours").first.wait_for(timeout=10_000)  # the table names its gallery
    page.screenshot(path=ARTIFACTS / "search.png", full_page=True)


def test_remove_selected_removes_the_image_clicked_and_never_one_of_newer_results(page):
    """The selection is the clicked image, and a new search clears it (it used to be an index into
    whatever results came next, so Remove could delete an image never clicked)."""
    results = page.locator("#search-results")
    search = page.get_by_role("button", name="Search", exact=True)
    remove = page.get_by_role("button", name="Remove selected result")
    report = page.locator("#search-report")
    count = page.get_by_label("number input for Results")

    def search_for(k: int) -> None:
        count.fill(str(k))
        count.press("Enter")
        search.click()
        page.wait_for_function(
            f"() => document.querySelectorAll('#search-results button img').length == {k}", timeout=60_000
        )

    page.get_by_role("tab", name="Search").click()
    search_for(15)  # by the example image still set (img2.png): everything, img2.png first
    results.locator("button").filter(has=page.locator("img")).nth(3).click()  # some other image
    page.keyboard.press("Escape")  # leave the preview the click opened
    search_for(2)  # new results: the click above no longer counts
    remove.click()
    report.get_by_text("Click one of the results first.").wait_for(timeout=10_000)
    results.locator("button").filter(has=page.locator("img")).first.click()  # img2.png, score 1.000
    page.keyboard.press("Escape")
    remove.click()
    report.get_by_text("Removed 1 image").wait_for(timeout=10_000)
    search_for(14)  # one image fewer, and it is the one clicked
    assert results.get_by_text("img2.png").count() == 0 and results.get_by_text("img1.png").count() > 0


def test_a_result_opens_full_size_finds_similar_and_is_deleted_from_your_images(page):
    """One of your uploads, end to end: click it among the results, see it at full size (the kept
    original), find images like it, then delete it from "Your images"."""
    page.get_by_role("tab", name="Search").click()
    results = page.locator("#search-results")
    page.get_by_role("button", name="Search", exact=True).click()
    mine_result = results.locator("button").filter(has=page.locator("img")).filter(has_text="img1.png")
    mine_result.first.wait_for(timeout=60_000)
    mine_result.first.click()
    page.keyboard.press("Escape")
    # Full size from the copy kept for this session (not the thumbnail), with its real dimensions.
    page.locator("#search-full").get_by_text(re.compile(r"img1\.png · 80×48$")).wait_for(timeout=30_000)
    assert page.locator("#search-full").get_by_role("button", name="Download").count() == 1
    page.get_by_role("button", name="Find similar to the selected result").click()
    page.wait_for_function(
        "() => { const first = [...document.querySelectorAll('#search-results button')]"
        ".find(b => b.querySelector('img'));"
        " return first && first.innerText.includes('img1.png') && /0\\.9\\d\\d|1\\.000/.test(first.innerText); }",
        timeout=60_000,
    )
    page.locator("#search-mine-box").get_by_text("Your images").first.click()  # open the accordion
    info = page.locator("#search-mine-info")
    info.get_by_text("2 image(s)").wait_for(timeout=30_000)  # three uploaded, one removed by the test above
    page.locator("#search-mine button").filter(has=page.locator("img")).filter(has_text="img1.png").first.click()
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Delete selected").click()
    info.get_by_text("1 image(s)").wait_for(timeout=30_000)
    assert page.locator("#search-mine").get_by_text("img1.png").count() == 0
    assert page.locator("#search-mine").get_by_text("img0.png").count() == 1


def test_classify_scores_the_labels(page, images):
    page.get_by_role("tab", name="Classify").click()
    page.locator("#classify-image input[type=file]").set_input_files(str(images[1]))
    page.get_by_role("button", name="Classify", exact=True).click()
    top = page.locator("[data-testid=label-output-value]")
    top.wait_for(timeout=60_000)
    assert top.inner_text().strip() in {"cat", "dog", "car", "person"}
    page.screenshot(path=ARTIFACTS / "classify.png", full_page=True)


def test_system_lists_the_resident_models(page):
    page.get_by_role("tab", name="System").click()
    page.get_by_role("button", name="Refresh").click()
    page.get_by_text("tiny-clip").first.wait_for(timeout=30_000)
    for name in ("Load", "Unload"):  # enabled: this app is not shared
        assert page.get_by_role("button", name=name, exact=True).is_enabled()
    page.screenshot(path=ARTIFACTS / "system.png")


def test_system_shows_live_traffic_after_a_search(page):
    page.get_by_role("tab", name="Search").click()
    page.get_by_label("Describe what you are looking for").fill("a rocket")
    page.get_by_role("button", name="Search", exact=True).click()
    page.locator("#search-results").get_by_text("·").first.wait_for(timeout=60_000)
    page.get_by_role("tab", name="System").click()
    # No click: the table refreshes itself (gr.Timer) with the search just made.
    traffic = page.locator("#system-traffic")
    traffic.get_by_text("requests / min").wait_for(timeout=15_000)
    traffic.get_by_text("search", exact=True).filter(visible=True).first.wait_for(timeout=15_000)
    page.screenshot(path=ARTIFACTS / "system-traffic.png")


def test_closing_the_tab_deletes_its_private_gallery(page, served_app, data_dir, images):
    def session_galleries() -> set:
        return {p for p in data_dir.glob("galleries/**/sessions/*") if p.is_dir()}

    before = session_galleries()
    context = page.context.browser.new_context()
    other = context.new_page()
    other.goto(served_app[0])
    other.get_by_role("tab", name="Search").click()
    other.get_by_text("Add your own images").click()
    other.locator("#search-uploads input[type=file]").set_input_files(str(images[0]))
    other.get_by_role("button", name="Add to my gallery").click()
    other.locator("#search-report").get_by_text("Indexed 1 image(s)").wait_for(timeout=60_000)
    (mine,) = session_galleries() - before
    other.close()
    context.close()
    deadline = time.time() + 60
    while mine.exists() and time.time() < deadline:
        time.sleep(0.5)
    assert not mine.exists(), "the closed session's gallery (index, thumbnails) is deleted"


def test_model_management_is_for_admins_only(page, data_dir, tmp_path):
    """On a public app (bound to 0.0.0.0, with logins) Load/Unload are enabled for an admin only."""
    from tests.conftest import start_app, stop_app

    env = {"MMDEMO_HOST": "0.0.0.0", "MMDEMO_AUTH": "ann:pw1,bob:pw2", "MMDEMO_ADMINS": "ann", "MMDEMO_PRELOAD": ""}
    url, proc = start_app(data_dir, tmp_path / "app.log", **env)
    try:
        for user, password, allowed in (("bob", "pw2", False), ("ann", "pw1", True)):
            context = page.context.browser.new_context(viewport={"width": 1280, "height": 900})
            visitor = context.new_page()
            visitor.goto(url)
            visitor.get_by_label("username").fill(user)
            visitor.get_by_label("password").fill(password)
            visitor.get_by_role("button", name="Login").click()
            visitor.get_by_role("tab", name="System").click()
            visitor.get_by_text("Profile:").first.wait_for(timeout=30_000)
            for name in ("load", "unload"):
                visitor.wait_for_function(
                    f"() => document.querySelector('#system-{name}')?.disabled === {str(not allowed).lower()}",
                    timeout=10_000,
                )
            assert ("for the operator" in visitor.locator("#system-note").inner_text()) is not allowed
            visitor.screenshot(path=ARTIFACTS / f"system-{user}.png")
            context.close()
    finally:
        stop_app(proc)
    assert "Traceback" not in (tmp_path / "app.log").read_text()
