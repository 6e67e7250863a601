"""Ask your photos in a real browser (Debian Chromium via Playwright) against `python app.py`.

The app's chat model is the tiny random-weight Qwen2.5-VL with one change to its generation
config (a `sequence_bias`, a transformers generation feature): it answers "[2][2]…", so that an
answer cites a result, as a real model's answers do. Everything else is the real path: the page's
events, the chat queue, the model's forward and generate.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import needs_shared, start_app, stop_app
from tests.test_browser import ARTIFACTS, CHROMIUM, FLAGS

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium not installed (apt-get install chromium)"),
    needs_shared,  # the real Qwen tokenizer: "[", "2" and "]" are the token ids below
]
OPEN, TWO, CLOSE = 58, 17, 60  # Qwen2.5's ids of "[", "2", "]"


@pytest.fixture(scope="module")
def citing_model(data_dir, tmp_path_factory) -> Path:
    """The tiny Qwen2.5-VL, whose greedy answers cite result [2] again and again."""
    from mmdemo.models import tiny

    folder = tmp_path_factory.mktemp("citing") / "tiny-qwen2.5-vl"
    shutil.copytree(tiny.ensure_built("tiny-qwen2.5-vl", data_dir / "models"), folder)
    config = json.loads((folder / "generation_config.json").read_text())
    config["sequence_bias"] = [[[OPEN], 40.0], [[OPEN, TWO], 80.0], [[OPEN, TWO, CLOSE], 80.0]]
    (folder / "generation_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def ask_app(citing_model, tmp_path_factory):
    data = tmp_path_factory.mktemp("ask-data")
    log = data / "app.log"
    url, proc = start_app(data, log, MMDEMO_VLM_MODEL=str(citing_model), MMDEMO_MAX_NEW_TOKENS="48")
    yield url, log
    stop_app(proc)


@pytest.fixture(scope="module")
def page(ask_app):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page.goto(ask_app[0])
        page.get_by_text("answers are noise").first.wait_for(timeout=30_000)
        yield page
        browser.close()


def search(page, query: str, rerank: int = 0) -> None:
    page.get_by_role("tab", name="Search").click()
    page.locator("#search-rerank input[type=number]").fill(str(rerank))
    page.locator("#search-rerank input[type=number]").press("Enter")
    page.locator("#search-query textarea").fill(query)
    page.locator("#search-go").click()
    page.wait_for_function(
        "() => document.querySelectorAll('#search-results button.thumbnail-item').length > 0"
        " && document.querySelectorAll('#search-table [role=row] [role=gridcell]').length > 0",
        timeout=60_000,
    )


def table_rows(page, selector: str) -> list[list[str]]:
    """A Dataframe's rows as shown (its header row left out)."""
    rows = page.evaluate(
        f"""() => [...document.querySelectorAll('{selector} [role=row]')].map(
            row => [...row.querySelectorAll('[role=gridcell]')].map(cell => cell.innerText.trim()))"""
    )
    return [row for row in rows if row]


def table_headers(page, selector: str) -> list[str]:
    return page.evaluate(
        f"() => [...document.querySelectorAll('{selector} [role=columnheader]')].map(c => c.innerText.trim())"
    )


def test_an_answer_about_the_results_cites_them_and_a_reference_selects_its_result(page, ask_app):
    search(page, "a rocket")
    second = table_rows(page, "#search-table")[1][2]  # rank 2's name
    page.locator("#ask-question textarea").fill("Which of these shows a launch?")
    page.locator("#ask-go").click()
    reference = page.locator('#ask-answer a[href="#result-2"]').first
    reference.wait_for(timeout=60_000)
    page.locator("#ask-answer").get_by_text("Asked over the top 8 results").wait_for(timeout=60_000)
    reference.click()
    full = page.locator("#search-full")
    full.wait_for(state="visible", timeout=30_000)
    page.wait_for_function(
        f"() => document.querySelector('#search-full').innerText.includes({json.dumps(second)})", timeout=30_000
    )
    page.screenshot(path=ARTIFACTS / "ask-results.png", full_page=True)
    # Continue in Chat: the Chat tab opens with the result images, the question and the answer.
    page.locator("#ask-continue").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=bot]')].some(e => e.innerText.includes('[2]'))"
        " && document.querySelectorAll('[data-testid=user] img').length >= 8",
        timeout=30_000,
    )
    assert "Which of these shows a launch?" in page.locator("[data-testid=user]").last.inner_text()
    assert "Traceback" not in ask_app[1].read_text()


def test_a_rerank_shows_both_ranks_both_scores_and_its_cost(page):
    search(page, "a cup of coffee", rerank=5)
    page.locator("#search-rerank-info").get_by_text("Re-ranked the top 5 with the chat model").wait_for(timeout=60_000)
    headers = table_headers(page, "#search-table")
    assert any("CLIP rank" in h for h in headers) and any("P(yes)" in h for h in headers), headers
    rows = table_rows(page, "#search-table")
    assert sorted(int(r[1]) for r in rows[:5]) == [1, 2, 3, 4, 5]  # the top 5, re-ordered among themselves
    yes = [float(r[3]) for r in rows[:5]]
    assert yes == sorted(yes, reverse=True) and all(0 <= p <= 1 for p in yes)
    # The same query again: every score from the cache.
    search(page, "a cup of coffee", rerank=5)
    page.locator("#search-rerank-info").get_by_text("(5 scores from the cache)").wait_for(timeout=60_000)
    page.screenshot(path=ARTIFACTS / "ask-rerank.png", full_page=True)


def test_ask_every_image_fills_a_table_and_a_csv_and_stop_keeps_the_rows(page, tmp_path):
    search(page, "anything")
    page.locator("#ask-each-box").get_by_text("Ask every image").first.click()
    page.locator("#ask-each-questions textarea").fill("What is it?\nIs it outdoors?")
    page.locator("#ask-each-go").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#ask-each-table [role=row]')]"
        ".filter(row => row.querySelector('[role=gridcell]')).length >= 2",
        timeout=60_000,
    )
    page.locator("#ask-each-stop").click()
    page.locator("#ask-each-status").get_by_text("Stopped:").wait_for(timeout=60_000)
    rows = table_rows(page, "#ask-each-table")
    assert 2 <= len(rows) < 24 and rows[0][1] == "What is it?" and rows[1][1] == "Is it outdoors?"
    with page.expect_download() as download:
        page.locator("#ask-each-csv a").first.click()
    path = tmp_path / "answers.csv"
    download.value.save_as(path)
    saved = list(csv.reader(path.open(encoding="utf-8-sig")))
    assert saved[0] == ["image", "question", "answer"] and len(saved) - 1 == len(rows)
    page.screenshot(path=ARTIFACTS / "ask-each.png", full_page=True)


def test_add_from_my_photos_attaches_the_clicked_result_to_the_next_message(page):
    search(page, "a cat")
    page.locator("#search-results button.thumbnail-item").nth(2).click()
    page.locator("#search-full").wait_for(state="visible", timeout=30_000)
    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-clear").click()
    page.locator("#chat-add-photos").click()
    box = page.get_by_placeholder("Ask about an image")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=multimodal-textbox] img, .thumbnail-item img').length >= 1",
        timeout=30_000,
    )
    box.fill("What is in this photo?")
    box.press("Enter")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=user] img').length == 1"
        " && [...document.querySelectorAll('[data-testid=bot]')].some(e => e.innerText.trim().length > 0)",
        timeout=60_000,
    )
    page.screenshot(path=ARTIFACTS / "ask-add-photos.png", full_page=True)
