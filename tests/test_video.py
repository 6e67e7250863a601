"""Videos cut into moments (issue #37, its first part): the scenes of generated videos found at their
times, each keyframe from its own scene, the cap per minute, and files that are not videos named with
the reason. Real H.264 files, encoded and decoded by PyAV (FFmpeg)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from mmdemo.embedding.images import BadImageError
from mmdemo.video.samples import make_video
from mmdemo.video.scenes import Cutting, clock, moments
from tests.conftest import SHARED, needs_shared

PHOTOS = SHARED / "data" / "flickr8k_1k" / "images"
pytestmark = needs_shared


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 27-second video of six scenes (2 to 8 s), the fourth with a sign on it; and its truth."""
    photos = sorted(PHOTOS.glob("*.jpg"))[100:106]
    path = tmp_path_factory.mktemp("video") / "trip.mp4"
    return path, make_video(photos, path, [4.0, 2.0, 8.0, 3.0, 6.0, 4.0], signs={3: "CAKE SHOP"}), photos


def test_scenes_are_found_at_their_times_each_with_its_own_keyframe(clip):
    path, truth, photos = clip
    found = moments(path)
    assert len(found) == len(truth)
    for moment, scene in zip(found, truth, strict=True):
        assert abs(moment.start - scene.start) <= 0.3 and abs(moment.end - scene.end) <= 0.3
        assert scene.start <= moment.at < scene.end and moment.keyframe.shape == (360, 640, 3)
    # Each keyframe is nearest its own scene's photo (the zoom aside).
    small = [np.asarray(Image.open(p).convert("L").resize((64, 36)), np.float32) for p in photos]
    for number, moment in enumerate(found):
        grey = np.asarray(Image.fromarray(moment.keyframe).convert("L").resize((64, 36)), np.float32)
        assert int(np.argmin([np.abs(grey - s).mean() for s in small])) == number
    assert [m.label for m in found[:3]] == ["0:00", "0:04", "0:06"] and clock(3725) == "1:02:05"


def test_moments_stay_within_the_cap_per_minute_and_short_scenes_join_the_one_before(clip):
    path, truth, _ = clip
    capped = moments(path, Cutting(per_minute=2))  # 27 s: one minute begun, at most 2
    assert len(capped) == 2 and capped[0].start == 0 and capped[-1].end == pytest.approx(truth[-1].end, abs=0.3)
    assert all(a.end == b.start for a, b in itertools.pairwise(capped))  # no gap, no overlap
    joined = moments(path, Cutting(min_scene_s=2.5))  # the 2-second scene joins the one before
    assert len(joined) == 5 and joined[0].end == pytest.approx(6.0, abs=0.3)


def test_a_file_that_is_not_a_usable_video_is_named_with_the_reason(clip, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    for path, key in [(broken, "skip.not_a_video"), (tmp_path / "gone.mp4", "skip.not_found")]:
        with pytest.raises(BadImageError) as caught:
            moments(path)
        assert caught.value.skipped.key == key and caught.value.name == path.name
    with pytest.raises(BadImageError) as caught:
        moments(clip[0], Cutting(max_seconds=20))
    assert caught.value.skipped.key == "skip.video_too_long" and "0.333333 minutes" in caught.value.reason
    assert "视频超过" in caught.value.translated("zh-CN")


@pytest.fixture(scope="module")
def video_set(tmp_path_factory):
    """Three videos of five scenes from distinct Flickr8k photos, a sign in each; their truth."""
    from mmdemo.video.samples import make_video_set

    folder = tmp_path_factory.mktemp("video-set")
    return folder, make_video_set(sorted(PHOTOS.glob("*.jpg"))[200:], folder, videos=3, scenes=5)


def test_videos_in_the_library_are_found_by_an_image_of_a_scene_and_by_the_words_on_screen(
    tiny_settings, session_manager, video_set, tmp_path
):
    """hit@1 as `eval moments` measures it: the right video, a moment holding the scene's middle."""
    from mmdemo.search.evaluate_video import evaluate_moments
    from mmdemo.search.galleries import Galleries

    folder, truth = video_set
    settings = tiny_settings.replace(data_dir=tmp_path / "data", gallery_dir=folder / "videos", ocr=True)
    galleries = Galleries(settings, session_manager)
    library = galleries.library(wait=True)
    assert galleries.stages.wait(300)  # the keyframes' text, read in the background
    items = library.store.items()
    assert len(items) == len(truth) and all(it.moment and it.name.startswith("clip-") for it in items)
    assert all(library.store.video_path(it.video).is_file() for it in items)  # what the page plays
    search = lambda q, image: [h for _, h in galleries.search(q, image, 1, -1.0)]  # noqa: E731
    results = evaluate_moments(search, truth, folder / "stills")
    assert [(r.kind, r.queries, r.hit_at_1) for r in results] == [("image", 15, 1.0), ("text", 3, 1.0)]
    assert {h.item.moment for _, h in galleries.search("type:video", None, 48, -1.0)} == {True}
    assert galleries.search("type:photo", None, 48, -1.0) == []


def test_an_upload_mixes_videos_and_photos_and_a_bad_video_loses_nothing_else(
    tiny_settings, session_manager, clip, tmp_path
):
    from mmdemo.embedding.ingest import ImageFile
    from mmdemo.search.galleries import Galleries, session_gallery

    galleries = Galleries(tiny_settings.replace(data_dir=tmp_path / "data"), session_manager)
    token = galleries.new_private("page", "tester")
    gallery = galleries.get(session_gallery(token))
    broken = tmp_path / "broken.mov"
    broken.write_bytes(b"not a video at all")
    path, truth, photos = clip
    files = [ImageFile(str(path), "trip.mp4"), ImageFile(str(broken), "broken.mov"), ImageFile(str(photos[0]), "a.jpg")]
    report = gallery.add_files(files, read_now=True)
    assert sorted(report.added) == ["a.jpg", "trip.mp4"] and [s.name for s in report.skipped] == ["broken.mov"]
    assert "not a video" in report.skipped[0].reason
    again = gallery.add_files([ImageFile(str(path), "copy.mp4")])
    assert again.duplicates == (("copy.mp4", "trip.mp4"),)  # the same bytes: known by the video's hash
    hits = galleries.search("", str(photos[4]), 1, -1.0, token)
    moment = hits[0][1].item
    assert hits[0][0] == "yours" and moment.moment and moment.start == pytest.approx(truth[4].start, abs=0.3)
    # Asking about it gives the chat model the moment's clip (its frames only), cut once from the playable copy.
    from mmdemo.ask.service import PhotoAsker
    from mmdemo.chat.backend import chat_backend

    asker = PhotoAsker(tiny_settings, galleries, chat_backend(tiny_settings, session_manager))
    shown = asker.shown(1, moment, "yours", token)
    assert shown.name == f"trip.mp4 @ {clock(moment.start)}" and shown.path.endswith(f"{moment.hash}.mp4")
    import av

    with av.open(shown.path) as container:
        stream = container.streams.video[0]
        seconds = sum(1 for _ in container.decode(stream)) / float(stream.average_rate)
    assert seconds == pytest.approx(moment.end - moment.start, abs=0.2)
    # ... and the chat model (the tiny Qwen2.5-VL, in process) answers about that clip, read as a video.
    import threading

    from mmdemo.ask.each import ask_each
    from mmdemo.chat.local import LocalVLM
    from mmdemo.chat.pipeline import GenerationParams
    from tests.test_ask import BUDGET

    params = GenerationParams(max_new_tokens=4, greedy=True)
    rows = list(
        ask_each(LocalVLM(session_manager, "cpu"), [shown], ["What happens?"], BUDGET, params, threading.Event(), 4096)
    )
    assert len(rows) == 1 and rows[0].image == shown.name


def test_a_video_browsers_cannot_play_gets_a_playable_copy_and_a_playable_one_is_linked(clip, tmp_path):
    import av

    from mmdemo.video.playable import playable_copy

    source = tmp_path / "old.mkv"  # MPEG-4 Part 2 in Matroska: no browser plays it
    with av.open(str(source), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for n in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), n * 10, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    copy = playable_copy(source, tmp_path / "out" / "a.mp4")
    with av.open(str(copy)) as container:
        stream = container.streams.video[0]
        times = [frame.time for frame in container.decode(stream)]
    assert stream.codec_context.name == "h264" and len(times) == 20 and times[-1] == pytest.approx(1.9)
    linked = playable_copy(clip[0], tmp_path / "out" / "b.mp4")  # H.264 in MP4 already: the same bytes
    assert linked.read_bytes() == clip[0].read_bytes()
