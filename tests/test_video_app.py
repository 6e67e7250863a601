"""Moments of a video from the outside: `python app.py` whose library holds a generated video (scenes of
known times, a sign on one), driven through `gradio_client`, raw HTTP, the real `mcp` client and
Chromium. The tiny CLIP is random: the words on screen find the moment (OCR on its keyframe)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from mmdemo.video.samples import make_video
from tests.conftest import SHARED, needs_shared, start_app, stop_app
from tests.test_browser import CHROMIUM, add_to_my_gallery, search_page
from tests.test_mcp import call, text

PHOTOS = SHARED / "data" / "flickr8k_1k" / "images"
pytestmark = needs_shared


@pytest.fixture(scope="module")
def video_app(tmp_path_factory):
    """The app (OCR and MCP on) whose library is one 27-second video; the sign is on the 14-17 s scene. An add
    cuts up to 20 s of video itself: the library's video, and a visitor's long one, are cut in the background."""
    library = tmp_path_factory.mktemp("video-library")
    photos = sorted(PHOTOS.glob("*.jpg"))[300:306]
    make_video(photos, library / "party.mp4", [4.0, 2.0, 8.0, 3.0, 6.0, 4.0], signs={3: "CAKE SHOP"})
    data = tmp_path_factory.mktemp("video-data")
    url, proc = start_app(data, data / "app.log", MMDEMO_OCR="true", MMDEMO_MCP="1", MMDEMO_GALLERY_DIR=str(library),
                          MMDEMO_VIDEO_INLINE_SECONDS="20")  # fmt: skip
    yield url
    stop_app(proc)


def _short_video() -> bytes:
    """Two scenes of two seconds, as an MP4's bytes."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mine.mp4"
        make_video(sorted(PHOTOS.glob("*.jpg"))[400:402], path, [2.0, 2.0])
        return path.read_bytes()


def _long_video(path: Path, first: int) -> Path:
    """Three scenes of eight seconds (24 s: longer than an add cuts itself), from photos `first`..`first + 2`."""
    make_video(sorted(PHOTOS.glob("*.jpg"))[first : first + 3], path, [8.0, 8.0, 8.0])
    return path


def _found(client) -> dict:
    """The moment the sign's words find, once its keyframe's text is read (in the background)."""
    for _ in range(600):
        table = client.predict("text:cake", None, 4, -1.0, 0, None, api_name="/search")[1]
        if table["data"]:
            return dict(zip(table["headers"], table["data"][0], strict=True))
    raise AssertionError("the keyframes' text was never read")


def test_api_and_mcp_return_the_moment_with_its_video_and_seconds(video_app):
    import httpx
    from gradio_client import Client

    client = Client(video_app, verbose=False)
    row = _found(client)
    assert row["name"] == "party.mp4 @ 0:14" and row["start (s)"] == pytest.approx(14.0, abs=0.3)
    assert row["end (s)"] == pytest.approx(17.0, abs=0.3) and row["video"].endswith(".mp4")
    shown = client.predict("type:video", None, 48, -1.0, 0, None, api_name="/search")[0]
    assert len(shown) == 6 and all(" @ " in tile["caption"] for tile in shown)  # one per moment, not per frame
    video = httpx.get(row["video"], headers={"Range": "bytes=0-99"})  # a player seeks: ranges are served
    assert video.status_code == 206 and video.headers["content-type"] == "video/mp4" and len(video.content) == 100
    uri = "data:video/mp4;base64," + base64.b64encode(_short_video()).decode()  # an agent's own video
    _, (found, added) = call(video_app, [("search_images", {"query": "cake shop", "top_k": 1}),
                                         ("add_images", {"images": [uri]})])  # fmt: skip
    token = re.search(r'collection="(\w+)"', text(added))[1]  # type: ignore[index]
    _, (mine,) = call(video_app, [("search_images", {"query": "type:video", "collection": token, "top_k": 48})])
    assert sum(" · collection · " in line and " · video http" in line for line in text(mine).splitlines()) == 2
    line = text(found)
    assert "party.mp4" in line and re.search(r" · video http://\S+/media/shared/videos/[0-9a-f]{32}\.mp4 · ", line)
    assert re.search(r"from 14\.\d s to 1[67]\.\d s · http://\S+\.jpg$", line)  # the keyframe's URL last


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium not installed (apt-get install chromium)")
def test_a_visitor_types_what_is_on_screen_and_the_video_plays_from_that_second(video_app):
    from gradio_client import Client

    from tests.test_browser import ARTIFACTS

    _found(Client(video_app, verbose=False))
    with search_page(video_app) as page:
        query = page.get_by_label("Describe what you are looking for")
        query.fill("cake shop")
        query.press("Enter")
        results = page.locator("#search-results")
        tile = results.locator("button").filter(has=page.locator("img")).filter(has_text="party.mp4 @ 0:14")
        tile.first.wait_for(timeout=60_000)
        tile.first.click()
        page.keyboard.press("Escape")
        video = page.locator("#search-player video")
        video.wait_for(timeout=30_000)
        page.wait_for_function(
            "() => { const v = document.querySelector('#search-player video'); return v && v.readyState >= 1; }",
            timeout=30_000,
        )
        at = page.evaluate("() => document.querySelector('#search-player video').currentTime")
        assert 13.7 <= at <= 17.2, at  # it plays from the moment, not from the start
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "search-video-moment.png", full_page=True)


def test_a_long_upload_is_cut_in_the_background_and_its_visitor_sees_how_far(video_app, tmp_path):
    """From the outside: /index_images answers at once with "waits to be cut"; /my_images says how far the cut
    is, then what it found; /search finds the visitor's moments."""
    import time

    from gradio_client import Client, handle_file

    client = Client(video_app, verbose=False)
    video = _long_video(tmp_path / "hike.mp4", 410)
    report = client.predict([handle_file(str(video))], api_name="/index_images")  # this client's own gallery
    assert "**hike.mp4** (0.4 min of video) waits to be cut into moments in the background" in report
    assert "Indexed **0** image(s)" in report
    deadline = time.monotonic() + 300
    while "Cut: **hike.mp4**, 3 moment(s)" not in (info := client.predict(1, api_name="/my_images")[1]):
        assert time.monotonic() < deadline, info
        assert "Cutting **hike.mp4**" in info or "Waiting to be cut: hike.mp4" in info or "Cut:" not in info, info
    found = client.predict("type:video", None, 48, -1.0, 0, None, api_name="/search")[1]
    mine = [row for row in found["data"] if row[3] == "yours"]
    assert sorted(row[2] for row in mine) == ["hike.mp4 @ 0:00", "hike.mp4 @ 0:08", "hike.mp4 @ 0:16"]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium not installed (apt-get install chromium)")
def test_a_visitor_adds_a_long_video_sees_it_cut_and_finds_its_moment(video_app, tmp_path):
    from tests.test_browser import ARTIFACTS

    video = _long_video(tmp_path / "walk.mp4", 420)
    with search_page(video_app) as page:
        add_to_my_gallery(page, video)
        page.locator("#search-report").get_by_text("waits to be cut into moments").wait_for(timeout=60_000)
        # The line under the results says how far the cut is (every 5 s), then what it found.
        page.locator("#search-text-progress").get_by_text("3 moment(s)").wait_for(timeout=300_000)
        query = page.get_by_label("Describe what you are looking for")
        query.fill("type:video")
        query.press("Enter")
        results = page.locator("#search-results")
        results.get_by_text("walk.mp4 @ 0:08").first.wait_for(timeout=60_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "search-video-cut-in-background.png", full_page=True)
        # Asked about, the moments go to the chat model as clips (the tiny Qwen2.5-VL, in the app's process) ...
        page.locator("#ask-question textarea").fill("What happens in these moments?")
        page.locator("#ask-go").click()
        page.locator("#ask-answer").get_by_text("Asked over the top").wait_for(timeout=120_000)
        # ... and Continue in Chat carries them there: the visitor's message holds the clips, played as videos.
        page.locator("#ask-continue").click()
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=user] video').length >= 1", timeout=30_000
        )
        assert "What happens in these moments?" in page.locator("[data-testid=user]").last.inner_text()
