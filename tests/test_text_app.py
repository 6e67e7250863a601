"""Text search from the outside: `python app.py` with a library of signs, driven through raw HTTP's
`gradio_client`, the real `mcp` client and Chromium. The tiny CLIP is random: what finds the signs is
their text, read by the real PP-OCRv4 models at index time."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest

from mmdemo.models import ocr
from mmdemo.text.signs import find_font
from tests.conftest import start_app, stop_app
from tests.test_browser import CHROMIUM, search_page
from tests.test_mcp import call, text
from tests.test_text import photo, sign

pytestmark = pytest.mark.skipif(not ocr.available(), reason="rapidocr-onnxruntime not installed")
CJK = find_font(cjk=True) is not None


@pytest.fixture(scope="module")
def sign_app(tmp_path_factory):
    """The app (OCR on, MCP on) whose bundled library is three signs and two plain photos."""
    library = tmp_path_factory.mktemp("sign-library")
    sign(library, "gate.jpg", "GATE B22 EXIT", seed=1)
    sign(library, "receipt.jpg", "INVOICE 2041", seed=2)
    if CJK:
        sign(library, "beach.jpg", "夕阳下的海滩出口", seed=3)
    for n in range(2):
        photo(10 + n).save(library / f"plain{n}.jpg")
    log = tmp_path_factory.mktemp("sign-app") / "app.log"
    data = tmp_path_factory.mktemp("sign-data")
    url, proc = start_app(data, log, MMDEMO_OCR="true", MMDEMO_MCP="1", MMDEMO_GALLERY_DIR=str(library))
    yield url
    stop_app(proc)


def _library_read(client) -> None:
    """Wait for the library's text: the background stage reads it after the CLIP index (progress in System)."""
    for _ in range(600):
        table = client.predict("text:exit", None, 4, -1.0, 0, None, api_name="/search")[1]
        if table["data"]:
            return
    raise AssertionError("the library's text was never read")


def test_api_search_carries_the_matched_text_and_read_text_returns_lines(sign_app):
    from gradio_client import Client

    client = Client(sign_app, verbose=False)
    _library_read(client)
    shown, table, *_ = client.predict("inv0ice", None, 4, -1.0, 0, None, api_name="/search")
    assert table["headers"][4:7] == ["CLIP", "text match", "text read (matched words in « »)"]
    first = dict(zip(table["headers"], table["data"][0], strict=True))
    assert first["name"] == "receipt.jpg" and first["text match"] == 1.0 and first["CLIP"] is not None
    # The text as OCR read it (the space may be lost), the query's word marked.
    assert re.fullmatch(r"«INVOICE» ?2041", first["text read (matched words in « »)"])
    # Then when it was taken: no EXIF, so the library file's own time, marked as such.
    assert re.fullmatch(r"«INVOICE» ?2041 · receipt\.jpg\n.* \(file time\)", shown[0]["caption"])
    if CJK:
        table = client.predict("出口", None, 4, -1.0, 0, None, api_name="/search")[1]
        assert table["data"][0][2] == "beach.jpg"
    buffer = io.BytesIO()
    photo(0).save(buffer, "PNG")  # no text: an empty list, not an error
    empty = json.loads(
        client.predict(
            "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(), "", api_name="/read_text"
        )
    )
    assert empty["lines"] == [] and empty["text"] == ""


def test_an_agent_reads_the_text_of_an_indexed_image_and_of_a_data_uri(sign_app, tmp_path):
    from gradio_client import Client

    _library_read(Client(sign_app, verbose=False))
    path = sign(tmp_path, "platform.png", "PLATFORM 9", seed=4)
    uri = "data:image/jpeg;base64," + base64.b64encode(Path(path).read_bytes()).decode()
    tools, (found, of_uri) = call(sign_app, [("search_images", {"query": "gate b22", "top_k": 1}),
                                             ("read_text", {"image": uri})])  # fmt: skip
    assert "read_text" in {t.name for t in tools}
    line = text(found)
    assert "gate.jpg" in line and " · text «GATE" in line  # "«GATE» «B22» EXIT", or "«GATEB22»EXIT" as OCR read it
    item_id = line.split(" · id ")[1].split(" ")[0]
    assert re.search(r" · http://\S+/media/\S+\.jpg$", line)  # the image URL stays last
    _, (of_id,) = call(sign_app, [("read_text", {"image": item_id})])
    read = json.loads(text(of_id))
    assert read["image"] == "gate.jpg" and "EXIT" in read["text"]
    assert all(len(line["box"]) == 4 and 0.5 <= line["confidence"] <= 1 for line in read["lines"])
    assert "PLATFORM" in json.loads(text(of_uri))["text"].replace(" ", "")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium not installed (apt-get install chromium)")
def test_a_visitor_finds_a_sign_by_its_words_and_sees_what_was_read(sign_app):
    from gradio_client import Client

    from tests.test_browser import ARTIFACTS

    _library_read(Client(sign_app, verbose=False))
    with search_page(sign_app, height=1000) as page:
        page.get_by_label("Describe what you are looking for").fill("exit")
        page.get_by_role("button", name="Search", exact=True).click()
        results = page.locator("#search-results")
        first = results.locator("button").filter(has=page.locator("img")).first
        first.get_by_text("«EXIT» · gate.jpg").wait_for(timeout=60_000)  # the matched word, marked
        first.click()
        page.keyboard.press("Escape")
        read = page.locator("#search-text-read textarea")
        read.wait_for(timeout=30_000)
        assert "EXIT" in read.input_value()
        assert page.locator("#search-text-read").get_by_role("button", name="Copy").count() == 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "search-text.png", full_page=True)
