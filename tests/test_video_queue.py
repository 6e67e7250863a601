"""Long videos cut in the background (issue #37): an add leaves them in its gallery's line and returns; one
thread cuts them, the galleries taking turns; each gallery may have a few waiting; what waits is kept on disk,
inside its gallery's folder, until it is cut (also across a restart) or the gallery is deleted. And a video's
date, place and camera, from its tags. Real H.264 files, the tiny CLIP, the real galleries."""

from __future__ import annotations

import shutil

import pytest

from mmdemo.embedding.ingest import ImageFile
from mmdemo.search.galleries import Galleries, session_gallery
from mmdemo.search.videoqueue import VideoQueue
from mmdemo.video.samples import make_video
from tests.conftest import SHARED, needs_shared

PHOTOS = SHARED / "data" / "flickr8k_1k" / "images"
pytestmark = needs_shared


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Four videos of 12 s (three scenes each, from distinct photos); the photos of each."""
    folder = tmp_path_factory.mktemp("long-videos")
    photos = sorted(PHOTOS.glob("*.jpg"))[500:512]
    made = []
    for number in range(4):
        own = photos[number * 3 : number * 3 + 3]
        make_video(own, folder / f"v{number}.mp4", [4.0, 4.0, 4.0])
        made.append((folder / f"v{number}.mp4", own))
    return made


def _galleries(settings, manager, tmp_path, start: bool = True, per_client: int = 3) -> Galleries:
    """The app's galleries cutting at most 5 s of video in an add; their line started or held (`start`)."""
    settings = settings.replace(data_dir=tmp_path / "data", video_inline_seconds=5.0)
    galleries = Galleries(settings, manager)
    waiting = settings.data_dir / "waiting"
    galleries.videos = VideoQueue(waiting, galleries.get, per_client, start=start, turn_of=galleries.client_of)
    return galleries


def _upload(path, tmp_path, name: str) -> ImageFile:
    """A copy of `path` as an upload's file (deleted by the caller once added, as uploads are)."""
    copy = tmp_path / "upload" / path.name
    copy.parent.mkdir(exist_ok=True)
    shutil.copyfile(path, copy)
    return ImageFile(str(copy), name)


def test_a_long_upload_waits_in_line_and_its_moments_are_found_once_cut(
    tiny_settings, session_manager, videos, tmp_path
):
    galleries = _galleries(tiny_settings, session_manager, tmp_path)
    token = galleries.new_private("page", "visitor")
    name = session_gallery(token)
    mine = galleries.get(name)
    (path, photos), photo = videos[0], videos[1][1][0]
    upload = _upload(path, tmp_path, "../../holiday.mp4")  # a name is the client's: never part of a path
    report = mine.add_files([upload, ImageFile(str(photo), "a.jpg")], read_now=True)
    upload_path = upload.path
    __import__("os").remove(upload_path)  # the upload is gone once the add returns
    assert report.added == ("a.jpg",) and [n for n, _ in report.queued] == ["../../holiday.mp4"]
    assert report.queued[0][1] == pytest.approx(12.0, abs=0.5)
    assert "waits to be cut into moments in the background" in report.summary()
    assert "后台排队切分" in report.summary("zh-CN")
    assert galleries.videos.wait(180)
    state = galleries.videos.state(name)
    assert state.finished == (("../../holiday.mp4", 3),) and not state.busy and not state.failed
    hits = galleries.search("", str(photos[1]), 1, -1.0, token)
    moment = hits[0][1].item
    assert hits[0][0] == "yours" and moment.moment and moment.start == pytest.approx(4.0, abs=0.3)
    assert mine.store.video_path(moment.video).is_file()  # the page plays it
    held = tmp_path / "data" / "waiting"
    assert [p for p in held.rglob("*") if p.is_file()] == []  # the copy went once cut
    again = mine.add_files([ImageFile(str(path), "again.mp4")])
    assert again.duplicates == (("again.mp4", "../../holiday.mp4"),) and not again.queued


def test_clients_take_turns_and_each_may_have_only_a_few_waiting(tiny_settings, session_manager, videos, tmp_path):
    galleries = _galleries(tiny_settings, session_manager, tmp_path, start=False, per_client=2)
    first, second = (session_gallery(galleries.new_private("page", who)) for who in ("first", "second"))
    busy = galleries.get(first).add_files([_upload(p, tmp_path, f"a{n}.mp4") for n, (p, _) in enumerate(videos[:3])])
    assert [n for n, _ in busy.queued] == ["a0.mp4", "a1.mp4"]  # the third is refused, with the reason
    assert [s.name for s in busy.skipped] == ["a2.mp4"] and "2 of your videos already wait" in busy.skipped[0].reason
    assert "已有 2 个你的视频在排队切分" in busy.skipped[0].said("zh-CN")
    # Another gallery of the same client (a second tab, a collection) has no room of its own: the cap is the client's.
    again = galleries.get(session_gallery(galleries.new_private("agent", "first")))
    assert [s.key for s in again.add_files([_upload(videos[2][0], tmp_path, "c.mp4")]).skipped] == [
        "skip.video_line_full"
    ]
    while_waiting = galleries.get(first).add_files([ImageFile(str(videos[0][0]), "copy.mp4")])
    assert while_waiting.duplicates == (("copy.mp4", "a0.mp4"),)  # known while it waits
    galleries.get(second).add_files([_upload(videos[3][0], tmp_path, "b0.mp4")])
    # All clients together have a cap too: with room for three in all, a third client finds the line busy.
    galleries.videos.in_all = 3
    busy = galleries.get(session_gallery(galleries.new_private("page", "third"))).add_files(
        [_upload(videos[2][0], tmp_path, "t.mp4")]
    )
    assert [s.key for s in busy.skipped] == ["skip.video_line_busy"] and "3 videos already wait" in busy.skipped[
        0
    ].reason
    # The second client's video is cut after the first client's first, not after all of theirs.
    assert [w.name for w in galleries.videos.order()] == ["a0.mp4", "b0.mp4", "a1.mp4"]
    assert galleries.videos.state(first).waiting == ("a0.mp4", "a1.mp4") and galleries.videos.totals() == (3, 2)
    galleries.videos.start()
    assert galleries.videos.wait(300)
    assert [n for n, _ in galleries.videos.state(first).finished] == ["a0.mp4", "a1.mp4"]
    assert galleries.videos.state(second).finished == (("b0.mp4", 3),)
    assert {h.item.name for _, h in galleries.search("type:video", None, 48, -1.0, None)} == set()  # not shared


def test_deleting_a_gallery_empties_its_line_and_its_folder(tiny_settings, session_manager, videos, tmp_path):
    galleries = _galleries(tiny_settings, session_manager, tmp_path, start=False)
    token = galleries.new_private("page", "leaver")
    name = session_gallery(token)
    galleries.get(name).add_files([_upload(videos[0][0], tmp_path, "v.mp4")])
    folder = tmp_path / "data" / "waiting" / name
    assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".mp4"]  # named by the content hash
    assert all(p.stem == next(folder.iterdir()).stem for p in folder.iterdir())
    galleries.drop(name)
    assert not folder.exists() and galleries.videos.totals() == (0, 0)
    galleries.videos.start()
    assert galleries.videos.wait(60) and galleries.videos.state(name).finished == ()


def test_a_video_left_in_line_by_a_stopped_process_is_cut_at_the_next_start(
    tiny_settings, session_manager, videos, tmp_path
):
    before = _galleries(tiny_settings, session_manager, tmp_path, start=False)  # stopped before it cut anything
    token = before.new_private("page", "patient")
    before.get(session_gallery(token)).add_files([_upload(videos[2][0], tmp_path, "later.mp4")])
    after = Galleries(before.settings, session_manager)  # the next start: the line is read back from disk
    after.get(session_gallery(token))
    assert after.videos.wait(180)
    assert after.videos.state(session_gallery(token)).finished == (("later.mp4", 3),)
    hits = after.search("", str(videos[2][1][2]), 1, -1.0, token)
    assert hits[0][0] == "yours" and hits[0][1].item.start == pytest.approx(8.0, abs=0.3)


def test_a_gallery_deleted_while_its_video_is_cut_leaves_nothing_behind(
    tiny_settings, session_manager, videos, tmp_path
):
    """Deleted at once after the add: whether its video still waits or is being cut, nothing of it stays."""
    galleries = _galleries(tiny_settings, session_manager, tmp_path)
    for number in range(3):
        token = galleries.new_private("page", f"hasty{number}")
        name = session_gallery(token)
        galleries.get(name).add_files([_upload(videos[number][0], tmp_path, "v.mp4")])
        galleries.drop(name)
        assert galleries.videos.wait(60) and galleries.videos.state(name) == type(galleries.videos.state(name))()
        data = tmp_path / "data"
        assert not [p for p in data.glob(f"**/{name.split('/')[1]}*")], number  # no gallery, media, waiting folder


def test_a_phone_video_is_found_by_when_where_and_which_camera(tiny_settings, session_manager, tmp_path):
    """The container's tags, as an iPhone (local time and offset) or Android (UTC) writes them, become the
    moments' date, place and camera: `taken:`, `place:` and `camera:` find them, and the caption says them."""
    from mmdemo.photos.videotags import read_video_facts

    photos = sorted(PHOTOS.glob("*.jpg"))[520:522]
    iphone, android = tmp_path / "IMG_0042.MOV", tmp_path / "VID_2021.mp4"
    apple = "com.apple.quicktime."
    iphone_tags = {f"{apple}creationdate": "2019-06-04T09:12:00+0200", f"{apple}make": "Apple",
                   f"{apple}location.ISO6709": "+64.1533-021.9956+012.000/", f"{apple}model": "iPhone 12"}  # fmt: skip
    make_video(photos, iphone, [2.0, 2.0], tags=iphone_tags)
    make_video(photos[::-1], android, [2.0, 2.0], tags={"creation_time": "2021-12-31T23:30:00.000000Z"})
    facts = read_video_facts(iphone)
    assert (facts.taken, facts.offset, facts.camera, facts.lat) == (
        "2019-06-04 09:12:00",
        "+02:00",
        "Apple iPhone 12",
        64.1533,
    )
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    assert read_video_facts(android).offset == "+00:00" and read_video_facts(tmp_path / "broken.mp4").error
    galleries = Galleries(tiny_settings.replace(data_dir=tmp_path / "data"), session_manager)
    token = galleries.new_private("page", "filmer")
    report = galleries.get(session_gallery(token)).add_files(
        [ImageFile(str(iphone), iphone.name), ImageFile(str(android), android.name)], read_now=True
    )
    assert sorted(report.added) == ["IMG_0042.MOV", "VID_2021.mp4"]

    def names(query: str) -> set[str]:
        return {h.item.name for _, h in galleries.search(query, None, 48, -1.0, token)}

    assert names("type:video place:reykjavik taken:2019-06 camera:iphone") == {"IMG_0042.MOV"}
    assert names("taken:2021") == {"VID_2021.mp4"} and names("has:gps") == {"IMG_0042.MOV"}
    hit = galleries.search("place:reykjavik", None, 1, -1.0, token)[0][1]
    assert hit.facts is not None and hit.facts.exif.taken == "2019-06-04 09:12:00"
