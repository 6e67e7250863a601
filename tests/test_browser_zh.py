"""The app in a browser whose language is Chinese: the UI in Chinese, a Chinese search, Chinese labels.

The English-only tiny CLIP (the shared app) flags a Chinese query; the app started with
MMDEMO_LANGUAGE=zh (the tiny multilingual CLIP) does not, and classifies with Chinese labels.
"""

from __future__ import annotations

import pytest

from tests.conftest import start_app, stop_app
from tests.test_browser import ARTIFACTS, CHROMIUM, FLAGS, pytestmark  # noqa: F401 - skipped without Chromium


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def chinese_page(browser, url: str):
    """A page as a Chinese visitor opens it (navigator.language and Accept-Language: zh-CN)."""
    page = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900}).new_page()
    page.goto(url)
    page.get_by_text("回答没有意义").first.wait_for(timeout=30_000)  # the test-profile banner, in Chinese
    return page


def search(page, query: str) -> None:
    page.get_by_role("tab", name="搜索").click()
    page.locator("#search-query textarea").fill(query)
    page.locator("#search-go").click()
    page.locator("#search-results img").first.wait_for(timeout=30_000)


@pytest.fixture(scope="module")
def multilingual_app(data_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("app-zh") / "app.log"
    url, proc = start_app(data_dir, log, MMDEMO_LANGUAGE="zh")
    yield url, log
    stop_app(proc)


def test_a_chinese_browser_gets_the_chinese_ui_and_a_notice_for_an_english_only_model(browser, served_app):
    page = chinese_page(browser, served_app[0])
    for name in ("对话", "搜索", "分类", "系统"):
        page.get_by_role("tab", name=name).wait_for()
    assert page.get_by_placeholder("就图片提问").count() == 1
    page.get_by_role("button", name="生成设置").wait_for()  # the chat's accordion
    page.get_by_role("tab", name="搜索").click()
    # Before any search, the empty results table's headers are Chinese too (they were built in English).
    page.locator("#search-table").get_by_text("排名").filter(visible=True).first.wait_for(timeout=10_000)
    search(page, "夕阳下的海滩")
    notice = page.locator("#search-notice")
    notice.get_by_text("只懂英文").wait_for(timeout=10_000)
    assert "MMDEMO_LANGUAGE=zh" in notice.inner_text()
    assert page.locator("#search-table").get_by_text("排名").count() >= 1  # the table's headers, translated
    page.screenshot(path=ARTIFACTS / "search-zh.png")
    page.context.close()


def test_with_the_multilingual_model_no_notice_and_chinese_labels_classify(browser, multilingual_app, images):
    url, log = multilingual_app
    page = chinese_page(browser, url)
    search(page, "夕阳下的海滩")
    page.wait_for_timeout(1000)  # the notice would follow the results at once
    assert page.locator("#search-notice").inner_text().strip() == ""

    page.get_by_role("tab", name="分类").click()
    page.locator("#classify-image input[type=file]").set_input_files(str(images[0]))
    page.locator("#classify-labels textarea").fill("猫，狗，汽车")
    page.locator("#classify-go").click()
    info = page.locator("#classify-info")
    info.get_by_text("中文模板").wait_for(timeout=30_000)  # Chinese labels, multilingual model
    assert "对各标签做 softmax" in info.inner_text()  # the scoring rule, in Chinese
    scores = page.locator("#classify-scores").inner_text()
    assert any(label in scores for label in ("猫", "狗", "汽车")), scores
    page.screenshot(path=ARTIFACTS / "classify-zh.png")
    page.context.close()
    assert "Traceback" not in log.read_text()
