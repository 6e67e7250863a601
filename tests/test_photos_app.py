"""Dates, places and cameras from the outside: `python app.py` whose library is the generated photo set
(make_photo_set: EXIF dates, cameras and GPS points in city districts; HEIC and AVIF among them),
driven through `gradio_client`, the real `mcp` client and Chromium."""

from __future__ import annotations

import base64
import io
import re
from datetime import datetime
from pathlib import Path

import pytest

from mmdemo.photos.samples import exif_for, make_photo_set
from tests.conftest import SHARED, needs_shared, start_app, stop_app
from tests.test_browser import CHROMIUM, add_to_my_gallery, search_page
from tests.test_mcp import call, text
from tests.test_text import photo

PHOTOS = SHARED / "data" / "flickr8k_1k" / "images"
pytestmark = needs_shared


@pytest.fixture(scope="module")
def photo_app(tmp_path_factory):
    """The app (MCP on; OCR off: the tests' default) whose bundled library is 28 photos with known facts."""
    library = tmp_path_factory.mktemp("photo-library")
    make_photo_set(sorted(PHOTOS.glob("*.jpg")), library, per_city=2)
    data = tmp_path_factory.mktemp("photo-data")
    url, proc = start_app(data, data / "app.log", MMDEMO_MCP="1", MMDEMO_GALLERY_DIR=str(library))
    yield url
    stop_app(proc)


def _indexed(client) -> None:
    """Wait for the 28 photos (the library is indexed in the background after the first search)."""
    for _ in range(600):
        if len(client.predict("has:date", None, 48, -1.0, 0, None, api_name="/search")[1]["data"]) == 28:
            return
    raise AssertionError("the library was never indexed")


def _heic(when: str, point: tuple[float, float]) -> bytes:
    buffer = io.BytesIO()
    exif = exif_for(datetime.fromisoformat(when), "+00:00", "Canon", "Canon EOS R5", point)
    photo(3).save(buffer, "HEIF", exif=exif.tobytes(), quality=80)
    return buffer.getvalue()


def test_api_search_filters_and_shows_the_library_places_at_city_level(photo_app):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(photo_app, verbose=False)
    _indexed(client)
    table = client.predict("place:paris taken:2018", None, 48, -1.0, 0, None, api_name="/search")[1]
    rows = [dict(zip(table["headers"], row, strict=True)) for row in table["data"]]
    assert {row["name"].split("/")[1] for row in rows} == {"paris"} and len(rows) == 2
    assert table["headers"][7:10] == ["taken", "camera", "place"]
    assert all(row["place"] == "Paris, Ile-de-France, France" for row in rows)  # city level: no district, no numbers
    assert rows[0]["taken"] > rows[1]["taken"] and rows[0]["camera"] == "FUJIFILM X-T30"  # filters alone: newest first
    shown = client.predict("a dog place:tokyo", None, 48, -1.0, 0, None, api_name="/search")[0]
    assert len(shown) == 2 and all(tile["caption"].endswith("· Tokyo, Japan") for tile in shown)
    with pytest.raises(AppError, match=r"Unknown filter “when:”"):
        client.predict("dog when:2019", None, 4, -1.0, 0, None, api_name="/search")
    with pytest.raises(AppError, match=r"“June” is not a date"):
        client.predict("taken:June", None, 4, -1.0, 0, None, api_name="/search")


def test_an_agent_filters_its_search_and_its_own_heic_photo_is_placed_exactly(photo_app):
    from gradio_client import Client

    _indexed(Client(photo_app, verbose=False))
    uri = "data:image/heic;base64," + base64.b64encode(_heic("2019-06-04 09:12:00", (64.1122, -21.9129))).decode()
    _, (japan, added) = call(photo_app, [("search_images", {"query": "place:japan", "top_k": 10}),
                                         ("add_images", {"images": [uri]})])  # fmt: skip
    lines = text(japan).splitlines()
    assert len(lines) == 4 and all(", Japan · http" in line for line in lines)
    assert all(re.search(r" · http://\S+/media/\S+\.jpg$", line) for line in lines)  # the URL stays last
    token = re.search(r'collection="(\w+)"', text(added))[1]  # type: ignore[index]
    _, (mine,) = call(photo_app, [("search_images", {"query": "place:reykjavik taken:2019", "collection": token})])
    line = text(mine)
    assert "collection" in line and "Canon EOS R5" in line and "2019-06-04 09:12 (UTC+00:00)" in line
    assert "Kopavogur · Reykjavík, Capital Region, Iceland (64.1122, -21.9129)" in line  # theirs: exact


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium not installed (apt-get install chromium)")
def test_a_newcomer_finds_their_phone_photo_by_city_and_year_and_the_controls_follow(photo_app, tmp_path):
    from gradio_client import Client

    from tests.test_browser import ARTIFACTS

    _indexed(Client(photo_app, verbose=False))
    heic = tmp_path / "IMG_0042.HEIC"
    heic.write_bytes(_heic("2019-06-04 09:12:00", (64.1533, -21.9956)))  # Seltjarnarnes, by Reykjavik
    with search_page(photo_app) as page:
        add_to_my_gallery(page, heic)
        page.locator("#search-report").get_by_text("Indexed 1 image(s)").wait_for(timeout=60_000)
        query = page.get_by_label("Describe what you are looking for")
        query.fill('place:"reykjavik" taken:2019')
        query.press("Enter")
        results = page.locator("#search-results")
        results.get_by_text("IMG_0042.HEIC").first.wait_for(timeout=60_000)
        assert "2019-06-04 09:12" in results.inner_text() and "Reykjavík" in results.inner_text()
        # The box's operators set the controls; a control writes its operator back.
        page.get_by_text("Filters (they write their operators").click()
        page.locator("#search-place input, #search-place textarea").first.wait_for(timeout=10_000)
        assert page.locator("#search-place textarea, #search-place input").first.input_value() == "reykjavik"
        camera = page.locator("#search-camera textarea, #search-camera input").first
        camera.press_sequentially("canon")  # typed, as a visitor does (Gradio's input event)
        box = "document.querySelector('#search-query textarea, #search-query input')"
        page.wait_for_function(f"() => {box}.value.includes('camera:canon')", timeout=10_000)
        page.get_by_role("button", name="Search", exact=True).click()
        page.wait_for_function(  # the score table's camera column (a wide table: the cell may be scrolled away)
            "() => document.querySelector('#search-table').textContent.includes('Canon EOS R5')", timeout=60_000
        )
        results.locator("button").filter(has=page.locator("img")).filter(has_text="IMG_0042.HEIC").first.click()
        page.keyboard.press("Escape")
        try:
            page.locator("#search-full").get_by_text("Seltjarnarnes").first.wait_for(timeout=30_000)  # theirs: exact
        finally:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=ARTIFACTS / "search-photo-filters.png", full_page=True)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "search-photo-filters.png", full_page=True)
