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
    capped = moments(path, Cutting(per_minute=6))  # 27 s: at most 3
    assert len(capped) == 3 and capped[0].start == 0 and capped[-1].end == pytest.approx(truth[-1].end, abs=0.3)
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
