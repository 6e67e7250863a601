"""VQA chat: prefix reuse, history edits, media, context budget, stop, and the chat API."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmdemo.chat.history import pop_last_turn, without_last_answer
from mmdemo.chat.local import stream_reply
from mmdemo.chat.media import check_attachments, load_image
from mmdemo.chat.pipeline import GenerationParams
from mmdemo.chat.prompt import ImageBudget, build_prompt, to_qwen_messages
from mmdemo.chat.reuse import PrefixCache, VisualSpan, reusable_prefix
from mmdemo.errors import UserFacingError
from mmdemo.models import compute, tiny
from mmdemo.models.device import placement_for
from mmdemo.models.registry import REGISTRY
from mmdemo.models.vlm import load_vlm
from tests.conftest import free_port

SMALL = ImageBudget(min_pixels=4 * 784, max_pixels=224 * 224, max_frames=4, video_total_pixels=4 * 224 * 224)
GREEDY = GenerationParams(max_new_tokens=10, greedy=True)


def write_video(path: Path, frames: int = 16, size: tuple[int, int] = (96, 64)) -> Path:
    """A small MPEG-4 video whose frames get brighter."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            pixels = np.full((size[1], size[0], 3), i * 15, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def noisy(path: Path, size: tuple[int, int], seed: int) -> Path:
    """A distinct image (random noise), so two images of one size differ in content."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _turn(history, *files_and_text):
    *files, text = files_and_text
    return [
        *history,
        *({"role": "user", "content": {"path": str(f)}} for f in files),
        {"role": "user", "content": text},
    ]


def _answer(vlm, history, prefix=None):
    return list(stream_reply(vlm, to_qwen_messages(history, SMALL), GREEDY, prefix=prefix))[-1]


def test_prefix_reuse_gives_the_same_tokens_as_recomputing(lively_vlm, tmp_path):
    """Follow-ups, a new image, a video, regenerate and an edited question: reuse == full recompute."""
    a, b = noisy(tmp_path / "a.png", (96, 64), 0), noisy(tmp_path / "b.png", (64, 96), 1)
    video = write_video(tmp_path / "v.mp4")
    prefix = PrefixCache()
    history: list = []
    previous = 0
    turns = [("first turn", (a, "What is this?")), ("text follow-up", ("Why?",)),
             ("new image", (b, "And this one?")), ("video", (video, "What happens here?"))]  # fmt: skip
    for name, turn in turns:
        history = _turn(history, *turn)
        reused = _answer(lively_vlm, history, prefix)
        assert reused == _answer(lively_vlm, history), name
        assert reused.strip(), name
        if name != "first turn":  # the whole previous prompt comes from the cache
            assert prefix.last.reused >= previous, (name, prefix.last)
        previous = prefix.last.total
        history = [*history, {"role": "assistant", "content": reused}]
    # Regenerate: the same prompt again; everything but the last prompt token is reused.
    again = without_last_answer(history)
    assert _answer(lively_vlm, again, prefix) == _answer(lively_vlm, again)
    assert prefix.last.reused == prefix.last.total - 1
    # Undo + a different question: the cache is cut back to where the prompts diverge.
    edited, _, _ = pop_last_turn(history)
    edited = _turn(edited, "Something else?")
    assert _answer(lively_vlm, edited, prefix) == _answer(lively_vlm, edited)
    assert 0 < prefix.last.reused < prefix.last.total


def test_a_different_image_of_the_same_size_is_not_taken_from_the_cache(lively_vlm, tmp_path):
    a, b = noisy(tmp_path / "a.png", (96, 64), 0), noisy(tmp_path / "b.png", (96, 64), 1)
    prefix = PrefixCache()
    _answer(lively_vlm, _turn([], a, "What is this?"), prefix)
    swapped = _turn([], b, "What is this?")  # same token ids, other pixels
    assert _answer(lively_vlm, swapped, prefix) == _answer(lively_vlm, swapped)
    image = next(s for s in prefix.spans if s.kind == "image")
    assert prefix.last.reused == image.start


def test_reusable_prefix_rules():
    img = VisualSpan("image", 2, 5, "k1")
    ids = [1, 2, 9, 9, 9, 3, 4]
    assert reusable_prefix(ids, [img], [*ids, 5, 6], [img]) == 7
    assert reusable_prefix(ids, [img], ids, [img]) == 6  # one token is always forwarded
    assert reusable_prefix(ids, [img], [*ids, 5], [VisualSpan("image", 2, 5, "k2")]) == 2  # other pixels
    assert reusable_prefix(ids[:4], [VisualSpan("image", 2, 4, "k1")], [*ids, 5], [img]) == 2  # partial image
    assert reusable_prefix([], [], ids, [img]) == 0


def test_history_edits():
    history = [
        {"role": "user", "content": {"path": "/x/a.png"}},
        {"role": "user", "content": "first?"},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": [{"type": "file", "file": {"path": "/x/b.png"}}]},
        {"role": "user", "content": [{"type": "text", "text": "second?"}]},
        {"role": "assistant", "content": "two"},
    ]
    assert without_last_answer(history) == history[:5]
    rest, text, files = pop_last_turn(history)
    assert (rest, text, files) == (history[:3], "second?", ["/x/b.png"])
    assert pop_last_turn([]) == ([], "", [])


def test_history_becomes_qwen_turns_with_decoded_media(images, tmp_path):
    video = write_video(tmp_path / "clip.mp4")
    history = [
        {"role": "user", "content": [{"type": "file", "file": {"path": str(images[0])}}]},
        {"role": "user", "content": [{"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": "A square."},
        {"role": "user", "content": {"path": str(video)}},
        {"role": "user", "content": "And this?"},
    ]
    messages = to_qwen_messages(history, SMALL)
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    first = messages[0]["content"]
    assert first[0]["type"] == "image" and first[0]["image"].size == (64, 48) and first[1]["text"] == "What is it?"
    clip = messages[2]["content"][0]
    assert clip["type"] == "video" and len(clip["video"]) == 4 and clip["sample_fps"] == pytest.approx(2.0)
    assert clip["video"][0].getpixel((0, 0))[0] < clip["video"][-1].getpixel((0, 0))[0]  # spread over time


def test_bad_attachments_are_named_and_the_rest_kept(images, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(Image.open(images[0]).tobytes()[:100])
    (tmp_path / "page.jpg").write_text("<html><script>alert(1)</script></html>")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    Image.new("1", (8000, 8000)).save(tmp_path / "huge.png")
    paths = [str(images[0]), *(str(tmp_path / n) for n in ("broken.jpg", "page.jpg", "broken.mp4", "huge.png"))]
    good, skipped = check_attachments(paths, max_file_pixels=50_000_000, max_pixels=224 * 224, max_frames=4)
    assert good == [str(images[0])]
    reasons = {s.name: s.reason for s in skipped}
    assert set(reasons) == {"broken.jpg", "page.jpg", "broken.mp4", "huge.png"}
    assert "not an image" in reasons["page.jpg"] and "video" in reasons["broken.mp4"]
    assert "over the 50 MP limit" in reasons["huge.png"]


def test_a_50_megapixel_photo_is_shrunk_to_max_pixels(session_manager, tmp_path):
    path = tmp_path / "phone.jpg"
    Image.new("RGB", (8160, 6120), (90, 120, 200)).save(path, quality=80)  # 50 MP
    decoded = load_image(path, 64_000_000, 1280 * 784)
    assert decoded.width * decoded.height < 8160 * 6120 / 10  # JPEG draft: decoded at 1/4 scale
    vlm = session_manager.get("vlm")
    prompt = build_prompt(vlm, to_qwen_messages(_turn([], path, "What?"), ImageBudget(max_pixels=256 * 784)))
    image_tokens = int((prompt.inputs["input_ids"] == vlm.model.config.image_token_id).sum())
    assert 200 <= image_tokens <= 256


def test_the_context_budget_drops_the_oldest_turns(session_manager, images):
    vlm = session_manager.get("vlm")
    history = _turn([], images[0], "First question?")
    for i in range(4):
        history = _turn([*history, {"role": "assistant", "content": f"answer {i} " * 20}], f"question {i}?")
    messages = to_qwen_messages(history, SMALL)
    full = build_prompt(vlm, messages)
    assert full.dropped == 0
    fitted = build_prompt(vlm, messages, max_tokens=full.tokens - 30)
    assert fitted.dropped >= 2 and fitted.dropped % 2 == 0 and fitted.tokens <= full.tokens - 30
    assert fitted.inputs.get("pixel_values") is None  # the image was in the dropped first turn
    with pytest.raises(UserFacingError, match="context budget"):
        build_prompt(vlm, messages, max_tokens=10)


def test_a_system_prompt_replaces_the_default_and_survives_the_budget(session_manager, images):
    vlm = session_manager.get("vlm")
    history = _turn([], images[0], "First question?")
    for i in range(4):
        history = _turn([*history, {"role": "assistant", "content": f"answer {i} " * 20}], f"question {i}?")
    tokenizer = vlm.processor.tokenizer
    default = tokenizer.decode(build_prompt(vlm, to_qwen_messages(history, SMALL)).inputs["input_ids"][0])
    messages = to_qwen_messages(history, SMALL, system_prompt="Answer like a pirate.")
    full = build_prompt(vlm, messages)
    text = tokenizer.decode(full.inputs["input_ids"][0])
    assert "Answer like a pirate." in text and "You are a helpful assistant" in default
    assert "You are a helpful assistant" not in text
    fitted = build_prompt(vlm, messages, max_tokens=full.tokens - 30)
    assert fitted.dropped >= 2 and "Answer like a pirate." in tokenizer.decode(fitted.inputs["input_ids"][0])


def test_stop_ends_generation_within_a_second_and_no_token_follows(session_manager):
    vlm = session_manager.get("vlm")
    stop, prefix = threading.Event(), PrefixCache()
    messages = to_qwen_messages([{"role": "user", "content": "Go on."}], SMALL)
    stream = stream_reply(vlm, messages, GenerationParams(max_new_tokens=2000), stop, prefix)
    for _ in range(5):
        next(stream)
    stop.set()
    stopped = time.perf_counter()
    rest = list(stream)
    assert time.perf_counter() - stopped < 1.0
    assert rest == []  # nothing more reaches the user
    assert not compute.busy()  # generate() has returned
    assert len(prefix.ids) - prefix.last.total < 100  # generate() really ended, far short of 2000


def test_out_of_memory_frees_the_cache_and_says_what_to_do(data_dir, images):
    import torch

    folder = tiny.ensure_built("tiny-qwen2.5-vl", data_dir / "models")
    vlm = load_vlm(REGISTRY["tiny-qwen2.5-vl"], placement_for("cpu", "float32"), folder)
    prefix = PrefixCache()
    _answer(vlm, _turn([], images[0], "What?"), prefix)
    assert prefix.cache is not None

    def out_of_memory(*_):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    vlm.model.model.visual.register_forward_pre_hook(out_of_memory)
    with pytest.raises(UserFacingError, match="Out of GPU memory"):
        _answer(vlm, _turn([], images[1], "What?"), prefix)
    assert prefix.cache is None and prefix.ids == []


@pytest.fixture(scope="module")
def chat_client(tiny_settings, session_manager):
    """The tiny-profile app served in this process, so tests can see its threads."""
    from gradio_client import Client

    from mmdemo.ui import build_app

    app = build_app(tiny_settings, session_manager)
    port = free_port()
    app.queue(default_concurrency_limit=1).launch(server_port=port, prevent_thread_lock=True, quiet=True)
    yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    app.close()


def test_chat_api_multi_image_multi_turn_video_and_regenerate(chat_client, images, tmp_path):
    from gradio_client import handle_file

    video = write_video(tmp_path / "clip.mp4")
    first = {"text": "Compare these.", "files": [handle_file(str(p)) for p in images[:2]]}
    history, _ = chat_client.predict(first, [], max_new_tokens=6, temperature=1.0, api_name="/chat")
    assert [m["role"] for m in history] == ["user", "user", "user", "assistant"]
    second = {"text": "And the video?", "files": [handle_file(str(video))]}
    history, _ = chat_client.predict(second, history, max_new_tokens=6, temperature=1.0, api_name="/chat")
    assert len(history) == 7 and history[-1]["role"] == "assistant" and history[-1]["content"]
    again = chat_client.predict(history, max_new_tokens=6, temperature=1.0, api_name="/regenerate")
    assert [m["role"] for m in again] == [m["role"] for m in history]
    assert again[-2]["content"][0]["text"] == "And the video?" and again[-1]["content"]


def test_the_conversation_downloads_as_json_and_markdown(chat_client, images):
    import json

    from gradio_client import handle_file

    first = {"text": "What is this?", "files": [handle_file(str(images[0]))]}
    history, _ = chat_client.predict(first, [], max_new_tokens=4, system_prompt="Be brief.", api_name="/chat")
    answer = history[-1]["content"][0]["text"]
    files = chat_client.predict(history, "Be brief.", api_name="/export_conversation")
    by_suffix = {Path(f).suffix: Path(f) for f in files}
    transcript = json.loads(by_suffix[".json"].read_text())
    assert transcript == [
        {"role": "system", "text": "Be brief.", "files": []},
        {"role": "user", "text": "What is this?", "files": ["img0.png"]},  # by name: no server path
        {"role": "assistant", "text": answer, "files": []},
    ]
    markdown = by_suffix[".md"].read_text()
    assert "### You\n\n*Attached: img0.png*\n\nWhat is this?" in markdown and "/tmp" not in markdown
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Nothing to download yet"):
        chat_client.predict([], "", api_name="/export_conversation")


def test_chat_api_refuses_what_it_cannot_take(chat_client, images):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="20000 characters; the limit is 8000"):
        chat_client.predict({"text": "x" * 20000, "files": []}, [], api_name="/chat")
    with pytest.raises(AppError, match="9 files in one message; the limit is 8"):
        chat_client.predict({"text": "?", "files": [handle_file(str(images[0]))] * 9}, [], api_name="/chat")
    with pytest.raises(AppError, match="Nothing to regenerate"):
        chat_client.predict([], api_name="/regenerate")


def test_closing_the_connection_mid_answer_stops_generation(chat_client):
    job = chat_client.submit({"text": "Tell me everything.", "files": []}, [], max_new_tokens=512, api_name="/chat")
    deadline = time.time() + 30
    while not compute.busy() and time.time() < deadline:
        time.sleep(0.02)
    assert compute.busy(), "generation never started"
    time.sleep(0.3)  # a few tokens in; 512 of them would take seconds
    job.cancel()
    cancelled = time.perf_counter()
    while compute.busy():
        assert time.perf_counter() - cancelled < 1.0, "generation still running 1 s after the client left"
        time.sleep(0.02)


def test_answer_stats_count_tokens_and_what_the_cache_saved(session_manager):
    from mmdemo.chat.pipeline import AnswerStats

    vlm = session_manager.get("vlm")
    prefix = PrefixCache()
    history = [{"role": "user", "content": "Hello there."}]
    first = AnswerStats()
    answer = list(stream_reply(vlm, to_qwen_messages(history, SMALL), GenerationParams(8, greedy=True), None, prefix,
                               stats=first))[-1]  # fmt: skip
    assert 1 <= first.new_tokens <= 8 and first.prompt_tokens > 0 and first.reused_tokens == 0
    history += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And then?"}]
    second = AnswerStats()
    list(stream_reply(vlm, to_qwen_messages(history, SMALL), GenerationParams(8, greedy=True), None, prefix,
                      stats=second))  # fmt: skip
    assert 0 < second.reused_tokens < second.prompt_tokens  # the first turn came from the cache
    assert f"{second.new_tokens} tokens · " in second.describe() and "prompt tokens reused" in second.describe()
