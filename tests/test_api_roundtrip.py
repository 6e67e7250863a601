"""What the API returns can be sent back as it is: a chat history with an image, through gradio_client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def red(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "red.png"
    Image.new("RGB", (64, 48), (220, 20, 20)).save(path)
    return path


@pytest.mark.parametrize("download_files", [True, False], ids=["files-downloaded", "files-kept-on-server"])
def test_a_history_with_an_image_goes_back_to_chat_regenerate_and_export_as_it_is(served_app, red, download_files):
    from gradio_client import Client, handle_file

    client = Client(served_app[0], verbose=False, download_files=download_files)
    history, _ = client.predict({"text": "What is this?", "files": [handle_file(str(red))]}, [], max_new_tokens=4,
                                api_name="/chat")  # fmt: skip
    assert history[0]["content"][0]["type"] == "file"
    history, _ = client.predict({"text": "And its colour?", "files": []}, history, max_new_tokens=4, api_name="/chat")
    assert [m["role"] for m in history] == ["user", "user", "assistant", "user", "assistant"]
    again = client.predict(history, max_new_tokens=4, api_name="/regenerate")
    assert len(again) == 5 and again[0]["content"][0]["type"] == "file"
    files = client.predict(again, "", api_name="/export_conversation")
    paths = [f if isinstance(f, str) else f["path"] for f in files]
    transcript = json.loads(Path(next(p for p in paths if p.endswith(".json"))).read_text())
    assert "red.png" in json.dumps(transcript)  # the image, by name


def test_what_cannot_be_accepted_is_said_in_one_readable_line(served_app, tmp_path, red):
    from gradio_client import Client

    client = Client(served_app[0], verbose=False)
    elsewhere = tmp_path / ("ab" * 32)  # looks like a download folder, but no upload has these bytes
    elsewhere.mkdir()
    (elsewhere / "red.png").write_bytes(red.read_bytes() + b"!")
    cases = {
        "a path on the client's machine": ([{"role": "user", "content": [{"type": "file", "file": str(red)}]}],
                                           "history[0]: the file 'red.png' is not one of this app's files"),
        "a download path with other bytes": (
            [{"role": "user", "content": [{"type": "file", "file": str(elsewhere / "red.png")}]}],
            "is not one of this app's files"),
        "a server file outside the uploads": (
            [{"role": "user", "content": [{"type": "file", "file": served_app[0] + "gradio_api/file=/etc/passwd"}]}],
            "the file 'passwd' is not one of this app's files"),
        "a message without content": ([{"role": "user"}], "history[0].content: Field required."),
    }  # fmt: skip
    for what, (history, expected) in cases.items():
        with pytest.raises(Exception) as refused:
            client.predict({"text": "Hi", "files": []}, history, max_new_tokens=2, api_name="/chat")
        said = str(refused.value)
        assert expected in said and "validation error" not in said and len(said.splitlines()) == 1, (what, said)


def test_plain_text_messages_are_accepted(served_app):
    from gradio_client import Client

    history = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}]
    answered, _ = Client(served_app[0], verbose=False).predict(
        {"text": "How are you?", "files": []}, history, max_new_tokens=2, api_name="/chat"
    )
    assert answered[0]["content"] == [{"text": "Hello", "type": "text"}] and len(answered) == 4
