"""The Gradio app: builds without launching, keeps torch out of ui/, and serves every tab."""

import ast
import urllib.request

import pytest

from mmdemo.ui import build_app
from tests.conftest import REPO, free_port

API = {"chat", "regenerate", "search", "index_images", "classify", "system", "stats"}


def test_build_app_builds_all_tabs_without_launching(tiny_settings):
    from mmdemo.models.factory import build_manager

    manager = build_manager(tiny_settings)
    app = build_app(tiny_settings, manager)
    api_names = {dep.get("api_name") for dep in app.config["dependencies"]}
    assert api_names >= API
    # Labels are translation keys the page looks up in the browser's language (mmdemo/locales/).
    labels = {getattr(c.get("props", {}).get("label"), "key", None) for c in app.config["components"]}
    assert {"tab.chat", "tab.search", "tab.classify", "tab.system"} <= labels
    assert manager.stats() == [], "building the UI must not load models"


def test_ui_modules_never_import_torch():
    for path in (REPO / "mmdemo" / "ui").glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "torch" not in imported, path.name


def test_app_serves_each_tab_through_gradio_client(served_app, images):
    from gradio_client import Client, handle_file

    url, log = served_app
    client = Client(url, verbose=False)
    hits, table, _ = client.predict("a cat", None, 3, -1, api_name="/search")
    assert len(hits) == 3 and all("·" in h["caption"] for h in hits)
    assert [row[0] for row in table["data"]] == [1, 2, 3] and {row[3] for row in table["data"]} == {"shared"}
    label, info, _, _ = client.predict(
        handle_file(str(images[0])), [], "cat, dog, car", "custom", "a photo of a {}.", 5, api_name="/classify"
    )
    assert label["label"] in {"cat", "dog", "car"} and len(label["confidences"]) == 3
    assert "softmax over the labels (CLIP)" in info
    message = {"text": "What is in this image?", "files": [handle_file(str(images[1]))]}
    # Sampling, not greedy: a random-weight model's greedy answer can be all whitespace.
    history, _ = client.predict(message, [], max_new_tokens=8, temperature=1.0, top_p=1.0, api_name="/chat")
    assert history[-2]["content"][0]["text"] == "What is in this image?"
    assert history[-1]["role"] == "assistant" and history[-1]["content"][0]["text"].strip()
    stats = client.predict(api_name="/stats")
    assert {s["id"] for s in stats} == {"tiny-clip", "tiny-qwen2.5-vl"}
    report = client.predict([handle_file(str(p)) for p in images], api_name="/index_images")
    assert report.startswith("Indexed **3** image(s)")
    config = urllib.request.urlopen(url + "config", timeout=5).read().decode()  # what the page renders
    assert "random-weight models, answers are noise" in config
    assert "Traceback" not in log.read_text()


def test_bad_input_gets_a_message_not_a_trace(served_app):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    url, _ = served_app
    client = Client(url, verbose=False)
    with pytest.raises(AppError, match="Type what you are looking for"):
        client.predict("   ", None, 3, -1, api_name="/search")
    with pytest.raises(AppError, match="Upload an image to classify"):
        client.predict(None, [], "cat, dog", "custom", "a photo of a {}.", 5, api_name="/classify")
    with pytest.raises(AppError, match="Type a question, or attach an image"):
        client.predict({"text": "", "files": []}, [], api_name="/chat")


def test_a_missing_model_is_explained_in_the_ui(tiny_settings):
    """Real CLIP weights are not on this machine: the Search tab says which, where, and how to fix it."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from mmdemo.models.factory import build_manager

    settings = tiny_settings.replace(clip_model="clip-vit-b-32")
    app = build_app(settings, build_manager(settings))
    port = free_port()
    app.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        with pytest.raises(AppError, match=r"Model 'clip-vit-b-32' .* not available offline") as info:
            client.predict("a cat", None, 3, -1, api_name="/search")
        assert "hf download laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in str(info.value)
        assert "Traceback" not in str(info.value)
    finally:
        app.close()
