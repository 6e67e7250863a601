"""Feature logic (no UI) on tiny models: classification, gallery, chat messages, image opening."""

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from mmdemo.classify.zeroshot import build_classifier, classify, parse_labels, scores_from_similarity
from mmdemo.embedding.images import BadImageError, _decode_plain_jpeg, decode_pixels, open_image
from mmdemo.errors import UserFacingError
from tests.conftest import SHARED, needs_shared


def test_labels_are_trimmed_and_duplicates_and_empties_dropped_with_notices():
    labels, notices = parse_labels(" cat, dog, Cat ,, bird ", max_labels=10, max_chars=20)
    assert labels == ["cat", "dog", "bird"]
    assert any("duplicate" in n and "Cat" in n for n in notices) and any("empty" in n for n in notices)
    with pytest.raises(UserFacingError, match="limit is 2"):
        parse_labels("a, b, c", max_labels=2, max_chars=20)
    with pytest.raises(UserFacingError, match="10,000 characters"):
        parse_labels("x" * 10_000, max_labels=2, max_chars=200)


def test_softmax_and_sigmoid_scores_on_a_known_case():
    sims = np.array([[0.3, 0.1]])
    softmax = scores_from_similarity(sims, 10.0, 0.0, sigmoid=False)
    np.testing.assert_allclose(softmax, [[np.e**3 / (np.e**3 + np.e), np.e / (np.e**3 + np.e)]])
    sigmoid = scores_from_similarity(sims, 10.0, -2.0, sigmoid=True)
    np.testing.assert_allclose(sigmoid, 1 / (1 + np.exp(-np.array([[1.0, -1.0]]))))


def test_classifier_averages_templates_and_renormalises(session_manager):
    clip = session_manager.get("clip")
    weights = build_classifier(clip, ["cat", "dog"], ["a photo of a {}.", "a drawing of a {}."])
    direct = clip.encode_texts(["a photo of a cat.", "a drawing of a cat."]).mean(axis=0)
    np.testing.assert_allclose(weights[0], direct / np.linalg.norm(direct), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(weights, axis=1), 1.0, atol=1e-5)


def test_classify_gives_a_distribution_and_refuses_one_label(session_manager):
    clip = session_manager.get("clip")
    (prediction,) = classify(clip, [Image.new("RGB", (50, 50), "red")], ["cat", "dog", "car"])
    scores = list(prediction.scores.values())
    assert sum(scores) == pytest.approx(1.0, abs=1e-5) and scores == sorted(scores, reverse=True)
    assert prediction.top[0] in {"cat", "dog", "car"} and not prediction.multi_label
    with pytest.raises(UserFacingError, match="at least two labels"):
        classify(clip, [Image.new("RGB", (50, 50))], ["cat"])


def test_open_image_handles_orientation_modes_and_the_pixel_limit(tmp_path):
    rotated = Image.new("RGB", (40, 20), "white")
    exif = rotated.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    rotated.save(tmp_path / "rotated.jpg", exif=exif)
    assert open_image(tmp_path / "rotated.jpg", 10**6).size == (20, 40)
    for mode in ("CMYK", "RGBA", "P", "I;16", "1"):
        suffix = ".tif" if mode in ("CMYK", "I;16") else ".png"
        Image.new(mode, (8, 8)).save(tmp_path / f"m{suffix}")
        assert open_image(tmp_path / f"m{suffix}", 10**6).mode == "RGB"
    Image.new("1", (4000, 3000)).save(tmp_path / "big.png")
    with pytest.raises(BadImageError, match=r"big\.png: 4000x3000 is over the 10 MP limit"):
        open_image(tmp_path / "big.png", 10_000_000)


def _photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(noise).filter(ImageFilter.GaussianBlur(1.5))


def test_decode_pixels_gives_open_images_pixels_whichever_decoder_runs(tmp_path):
    """Plain JPEGs go straight to libjpeg-turbo through torchvision, the rest through Pillow: same pixels."""
    rotated = _photo((60, 40), 1)
    exif = rotated.getexif()
    exif[0x0112] = 6
    files = {
        "plain.jpg": (_photo((60, 40)), {}),
        "444.jpg": (_photo((61, 39), 2), {"subsampling": 0, "quality": 95}),
        "progressive.jpg": (_photo((500, 375), 3), {"progressive": True}),
        "phone.jpg": (_photo((1200, 900), 4), {}),  # big enough for DCT scaling: Pillow's draft mode
        "grey.jpg": (_photo((60, 40), 5).convert("L"), {}),
        "rotated.jpg": (rotated, {"exif": exif}),
        "cmyk.jpg": (_photo((60, 40), 6).convert("CMYK"), {}),
        "lossless.png": (_photo((60, 40), 7), {}),
    }
    for name, (image, options) in files.items():
        image.save(tmp_path / name, **options)
        decoded = decode_pixels(tmp_path / name, 10**8, min_side=224)
        reference = open_image(tmp_path / name, 10**8, min_side=224)
        assert np.array_equal(decoded.pixels, np.asarray(reference)), name
        assert decoded.source_size == image.size and decoded.pixels.flags.writeable
        with Image.open(tmp_path / name) as img:
            direct = _decode_plain_jpeg(img, 224) is not None
        assert direct == (name in ("plain.jpg", "444.jpg", "progressive.jpg")), name
    assert decoded.image().size == (60, 40)
    data = (tmp_path / "plain.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match=r"cut\.jpg: corrupt or truncated image"):
        decode_pixels(tmp_path / "cut.jpg", 10**8, min_side=224)
    with pytest.raises(BadImageError, match="over the 1 MP limit"):
        decode_pixels(tmp_path / "phone.jpg", 10**6)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through Linux's /proc")
def test_decoding_in_a_helper_thread_starts_no_openmp_team(tmp_path):
    """A torch op that went parallel in a decoder thread would start an OpenMP team of its own
    (libgomp's slow mode for the whole process, models/compute.py): decoding must not."""
    paths = []
    for i, size in enumerate([(500, 375), (640, 480), (60, 40)]):
        paths.append(tmp_path / f"{i}.jpg")
        _photo(size, i).save(paths[-1])
    counts: list[int] = []

    def decode() -> None:  # counted from inside: the team's workers live as long as this thread
        counts.append(len(os.listdir("/proc/self/task")))
        for path in paths:
            decode_pixels(path, 10**8, min_side=224)
        counts.append(len(os.listdir("/proc/self/task")))

    helper = threading.Thread(target=decode)
    helper.start()
    helper.join()
    assert counts[0] == counts[1]


@needs_shared
def test_decode_pixels_matches_open_image_on_real_photos():
    """Real files (camera JPEGs with EXIF, odd formats, Flickr photos): the two decoders agree."""
    data = SHARED / "data"
    paths = [p for folder in ("mixed_formats", "photos") for p in sorted((data / folder).iterdir())]
    paths += sorted((data / "flickr8k_1k" / "images").glob("*.jpg"))[::50]
    decoded = 0
    for path in paths:
        try:
            reference = open_image(path, 10**8, min_side=224)
        except BadImageError:  # not an image at all (a .txt, a .json): both must refuse it
            with pytest.raises(BadImageError):
                decode_pixels(path, 10**8, min_side=224)
            continue
        assert np.array_equal(decode_pixels(path, 10**8, min_side=224).pixels, np.asarray(reference)), path.name
        decoded += 1
    assert decoded >= 40
