"""Feature logic (no UI) on tiny models: classification, gallery, chat messages, image opening."""

import numpy as np
import pytest
from PIL import Image

from mmdemo.classify.zeroshot import build_classifier, classify, parse_labels, scores_from_similarity
from mmdemo.errors import UserFacingError
from mmdemo.images import BadImageError, open_image


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
