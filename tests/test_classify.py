"""Zero-shot classification: templates, the label-embedding cache, batches, evaluation, the tab."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from mmdemo.classify.batch import classify_files
from mmdemo.classify.evaluate import confusion_png, zeroshot_metrics
from mmdemo.classify.templates import CIFAR10, CIFAR100, preset_labels, templates_for
from mmdemo.classify.zeroshot import build_classifier, cached_classifier, parse_labels
from mmdemo.embedding.ingest import ImageFile
from mmdemo.embedding.vectorcache import VectorCache
from mmdemo.errors import UserFacingError
from tests.conftest import SHARED, needs_shared


def test_template_sets_and_presets_are_open_clips():
    assert len(templates_for("openai-7")) == 7 and len(templates_for("openai-80")) == 80
    assert all(t.count("{}") == 1 for t in templates_for("openai-80"))
    assert templates_for("custom", "  ") == ("a photo of a {}.",)
    with pytest.raises(UserFacingError, match="exactly one"):
        templates_for("custom", "a photo")
    assert len(preset_labels("ImageNet-1k")) == 1000 and preset_labels("ImageNet-1k")[0] == "tench"
    assert len(CIFAR10) == 10 and len(set(CIFAR100)) == 100 and "aquarium fish" in CIFAR100


def test_labels_one_per_line_keep_their_commas():
    labels, notices = parse_labels("pickup truck, red\n\ncat\n  cat  \n", 10, 50)
    assert labels == ["pickup truck, red", "cat"]
    assert notices == ["dropped duplicate label 'cat'", "dropped 2 empty label(s)"]


def test_label_limits_are_enforced_with_the_setting_named():
    with pytest.raises(UserFacingError, match="2,000 labels given; the limit is 1,000"):
        parse_labels("\n".join(f"label {i}" for i in range(2000)), 1000, 200)
    with pytest.raises(UserFacingError, match="10,000 characters; the limit is 200"):
        parse_labels("cat, " + "x" * 10_000, 1000, 200)


def test_cache_hits_partial_hits_and_reloads_from_disk(session_manager, tmp_path):
    clip = session_manager.get("clip")
    templates = templates_for("openai-7")
    path = tmp_path / "labels.sqlite3"
    cache = VectorCache(path)
    first = cached_classifier(clip, ["cat", "dog", "car"], templates, cache)
    assert first.encoded == 3
    np.testing.assert_allclose(first.weights, build_classifier(clip, ["cat", "dog", "car"], templates), atol=1e-6)
    again = cached_classifier(clip, ["car", "cat", "dog"], templates, cache)
    assert again.encoded == 0 and again.labels == ("car", "cat", "dog")
    np.testing.assert_array_equal(again.weights[0], first.weights[2])
    overlap = cached_classifier(clip, ["dog", "bird"], templates, cache)
    assert overlap.encoded == 1, "only the new label is encoded"
    other_templates = cached_classifier(clip, ["dog"], ("a sketch of a {}.",), cache)
    assert other_templates.encoded == 1, "a different template set is a different embedding"

    reloaded = VectorCache(path)  # a new process, same data dir
    from_disk = cached_classifier(clip, ["cat", "dog", "car", "bird"], templates, reloaded)
    assert from_disk.encoded == 0 and reloaded.disk_hits == 4
    np.testing.assert_array_equal(from_disk.weights[:3], first.weights)


def test_random_weights_are_never_cached_on_disk(session_manager, tmp_path):
    clip = session_manager.get("clip")
    assert clip.stable_weights, "tiny models are saved files: their embeddings may be cached"
    from dataclasses import replace

    random_clip = replace(clip, weights_key="random:123")
    cache = VectorCache(tmp_path / "labels.sqlite3")
    assert cached_classifier(random_clip, ["cat", "dog"], ["{}"], cache).encoded == 2
    assert cached_classifier(random_clip, ["cat", "dog"], ["{}"], cache).encoded == 0, "memory still works"
    fresh_process = VectorCache(tmp_path / "labels.sqlite3")
    assert cached_classifier(random_clip, ["cat", "dog"], ["{}"], fresh_process).encoded == 2


def test_batch_skips_bad_files_by_name_and_writes_a_csv(session_manager, images, tmp_path):
    clip = session_manager.get("clip")
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    files = [ImageFile(str(p), p.name) for p in images[:2]] + [ImageFile(str(bad), bad.name)]
    files.append(ImageFile(str(images[2]), images[2].name))
    done: list[int] = []
    result = classify_files(clip, files, ["red", "green", "blue"], ["{}"], 10**8, on_batch=done.append)
    assert [name for name, _ in result.predictions] == ["img0.png", "img1.png", "img2.png"]
    assert [(s.name, s.reason) for s in result.skipped] == [("notes.txt", "not an image Pillow can read")]
    assert sum(done) == 4
    rows = list(csv.reader(io.StringIO(result.to_csv(k=2))))
    assert rows[0] == ["image", "top-1", "score", "top-5"] and len(rows) == 4
    _, top1, score, top = rows[1]
    assert top1 in {"red", "green", "blue"} and 0 < float(score) <= 1 and top.count(";") == 1


def test_metrics_on_a_known_case(tmp_path):
    scores = np.array(
        [
            [0.9, 0.05, 0.05, 0, 0, 0],  # true 0, top-1 right
            [0.5, 0.4, 0.1, 0, 0, 0],  # true 1, top-1 wrong (0), in top-5
            [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],  # true 0, rank 6: not in top-5
            [0.1, 0.2, 0.7, 0, 0, 0],  # true 2, right
        ]
    )
    classes = ["a", "b", "c", "d", "e", "f"]
    metrics = zeroshot_metrics(scores, [0, 1, 0, 2], classes)
    assert metrics.top1 == 0.5 and metrics.top5 == 0.75
    assert metrics.per_class["a"] == 0.5 and metrics.per_class["b"] == 0.0 and metrics.per_class["c"] == 1.0
    assert np.isnan(metrics.per_class["d"])
    assert metrics.confusion[0, 0] == 1 and metrics.confusion[1, 0] == 1 and metrics.confusion[0, 5] == 1
    assert metrics.confusion.sum() == 4
    png = confusion_png(metrics, tmp_path / "cm.png")
    assert Image.open(png).size[0] > 6 * 28


@needs_shared
def test_eval_zeroshot_cli_end_to_end_on_cifar10(data_dir, tmp_path, capsys):
    from mmdemo.commands.cli import main

    folder = SHARED / "data" / "cifar10_1k"
    argv = ["eval", "zeroshot", "--folder", str(folder), "--out", str(tmp_path), "--templates", "custom"]
    assert main([*argv, "--profile", "tiny", "--data-dir", str(data_dir), "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "images: 1000" in out and "top-1:" in out and "airplane" in out
    top1 = float(out.split("top-1:")[1].split()[0])
    assert 0.0 <= top1 <= 0.3, "a random-weight model is near chance (0.1)"
    assert Image.open(tmp_path / "confusion_matrix.png").size[0] > 200


def test_eval_zeroshot_cli_explains_a_bad_folder(data_dir, tmp_path, capsys):
    from mmdemo.commands.cli import main

    assert main(["eval", "zeroshot", "--folder", str(tmp_path), "--profile", "tiny", "--data-dir", str(data_dir)]) == 2
    assert "one subfolder per class" in capsys.readouterr().err


def _classify(client, image, files=(), labels="cat, dog, car", template_set="custom", template="a photo of a {}."):
    from gradio_client import handle_file

    return client.predict(
        handle_file(str(image)) if image else None,
        [handle_file(str(f)) for f in files],
        labels,
        template_set,
        template,
        3,
        api_name="/classify",
    )


def test_classify_tab_batch_gives_a_table_and_a_csv(served_app, images, tmp_path):
    from gradio_client import Client

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    client = Client(served_app[0], verbose=False)
    label, info, table, csv_path = _classify(client, None, [*images, bad], "red\ngreen\nblue\ngreen", "openai-7")
    assert not (label or {}).get("confidences"), "several images: a table, not one score list"
    assert [row[0] for row in table["data"]] == ["img0.png", "img1.png", "img2.png"]
    assert "skipped **broken.jpg**" in info and "dropped duplicate label 'green'" in info
    assert "3 labels x 7 template(s)" in info
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "top-1", "score", "top-5"] and len(rows) == 4
    _, info, _, _ = _classify(client, None, images, "red\ngreen\nblue\npurple", "openai-7")
    assert "1 label(s) encoded now, 3 from cache" in info


@pytest.mark.parametrize(
    ("image", "labels", "template", "message"),
    [
        (None, "cat, dog", "a photo of a {}.", "Upload an image to classify"),
        ("img", "  , ", "a photo of a {}.", "Type some candidate labels"),
        ("img", "cat", "a photo of a {}.", "at least two labels: CLIP's scores are a softmax"),
        ("img", "\n".join(f"c{i}" for i in range(2000)), "a photo of a {}.", "2,000 labels given; the limit"),
        ("img", "cat, " + "x" * 10_000, "a photo of a {}.", "10,005 characters|10,000 characters"),
        ("img", "cat, dog", "a photo of a", "exactly one {}"),
        ("txt", "cat, dog", "a photo of a {}.", "notes.txt: not an image Pillow can read"),
    ],
    ids=["no-image", "no-labels", "one-label", "2000-labels", "long-label", "bad-template", "non-image"],
)
def test_classify_tab_explains_bad_input(served_app, images, tmp_path, image, labels, template, message):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    upload = {"img": images[0], "txt": None, None: None}[image]
    files = [text_file] if image == "txt" else []
    with pytest.raises(AppError, match=message) as info:
        _classify(Client(served_app[0], verbose=False), upload, files, labels, template=template)
    assert "Traceback" not in str(info.value)


def test_the_memory_level_of_the_vector_cache_is_bounded_by_bytes(tmp_path):
    """Least recently used vectors leave memory past max_bytes; persistent ones come back from disk."""
    vector = np.ones(512, np.float32)  # 2,048 bytes
    cache = VectorCache(tmp_path / "vectors.sqlite3", max_bytes=10 * vector.nbytes)
    cache.put("space", {f"k{i}": vector * i for i in range(8)}, persistent=True)
    cache.get("space", ["k0"], persistent=True)  # k0 is now the most recently used
    cache.put("space", {f"k{i}": vector * i for i in range(8, 14)}, persistent=True)
    assert cache.memory_bytes <= 10 * vector.nbytes
    disk_hits = cache.disk_hits
    again = cache.get("space", ["k0", "k13"], persistent=True)  # both still in memory
    assert cache.disk_hits == disk_hits and set(again) == {"k0", "k13"}
    back = cache.get("space", ["k1"], persistent=True)  # dropped from memory, read from disk
    assert cache.disk_hits == disk_hits + 1 and np.array_equal(back["k1"], vector)
    assert cache.memory_bytes <= 10 * vector.nbytes
    memory_only = VectorCache(None, max_bytes=2 * vector.nbytes)
    memory_only.put("space", {"a": vector, "b": vector, "c": vector}, persistent=False)
    assert set(memory_only.get("space", ["a", "b", "c"], persistent=False)) == {"b", "c"}  # a is computed again


def test_a_batch_csv_is_written_under_the_data_dir_and_goes_with_the_session(served_app, data_dir, images):
    """Not to the system temp folder, never removed: one CSV per session, deleted when the tab closes."""
    import tempfile
    from pathlib import Path

    from gradio_client import Client, handle_file

    from mmdemo.config import Settings
    from mmdemo.files import session_key
    from mmdemo.ui.classify import ClassifyTab

    temp_before = set(Path(tempfile.gettempdir()).glob("mmdemo-classify-*"))
    batch = [handle_file(str(p)) for p in images]
    client = Client(served_app[0], verbose=False)
    _, _, rows, csv_path = client.predict(
        None, batch, "red, green, blue", "custom", "a photo of a {}.", 3, api_name="/classify"
    )
    assert len(rows["data"]) == 3 and Path(csv_path).read_text().startswith("image,top-1")
    written = data_dir / "outputs" / "classify" / session_key(client.session_hash) / "classify.csv"
    assert written.is_file() and set(Path(tempfile.gettempdir()).glob("mmdemo-classify-*")) == temp_before

    tab = ClassifyTab(Settings(profile="tiny", data_dir=data_dir), manager=None)
    session = type("Request", (), {"session_hash": client.session_hash})()
    tab.end_session(session)  # what the tab's unload event does
    assert not written.parent.exists()
