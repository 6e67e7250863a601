"""Tiny models saved to disk load back through the production loaders, and run."""

import threading

import numpy as np
import pytest
from PIL import Image

from mmdemo.chat.local import stream_reply
from mmdemo.chat.pipeline import GenerationParams
from mmdemo.chat.prompt import ImageBudget, to_qwen_messages
from mmdemo.models import compute, tiny
from mmdemo.models.clip import load_clip
from mmdemo.models.device import placement_for
from mmdemo.models.factory import build_manager
from mmdemo.models.registry import REGISTRY
from mmdemo.models.vlm import load_vlm


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tiny_clip_embeddings_are_unit_vectors_of_the_configured_size(data_dir, dtype):
    folder = tiny.ensure_built("tiny-clip", data_dir / "models")
    clip = load_clip(REGISTRY["tiny-clip"], placement_for("cpu", dtype), folder, batch_size=4)
    pictures = [Image.new("RGB", (40 + i, 30), (i * 20, 0, 0)) for i in range(10)]  # 3 batches
    image_vectors = clip.encode_images(pictures)
    text_vectors = clip.encode_texts(["a red square", "a photo of a dog", "x"])
    dim = tiny.TINY_CLIP_CONFIG["embed_dim"]
    for vectors, rows in ((image_vectors, 10), (text_vectors, 3)):
        assert vectors.shape == (rows, dim) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert str(next(clip.model.parameters()).dtype) == f"torch.{dtype}"


def test_tiny_clip_build_is_cached(data_dir):
    first = tiny.ensure_built("tiny-clip", data_dir / "models")
    stamp = (first / "open_clip_model.safetensors").stat().st_mtime_ns
    assert tiny.ensure_built("tiny-clip", data_dir / "models") == first
    assert (first / "open_clip_model.safetensors").stat().st_mtime_ns == stamp


def _ask(vlm, image_path, tokens=6):
    history = [{"role": "user", "content": {"path": str(image_path)}}, {"role": "user", "content": "What is this?"}]
    messages = to_qwen_messages(history, ImageBudget(min_pixels=28 * 28 * 4, max_pixels=224 * 224))
    chunks = list(stream_reply(vlm, messages, GenerationParams(max_new_tokens=tokens, greedy=True)))
    return messages, chunks


@pytest.mark.parametrize(("model_id", "cls"), [("tiny-qwen2.5-vl", "Qwen2_5_VLForConditionalGeneration"),
                                               ("tiny-qwen3-vl", "Qwen3VLForConditionalGeneration")])  # fmt: skip
def test_tiny_vlm_loads_and_answers_about_an_image(data_dir, images, model_id, cls):
    folder = tiny.ensure_built(model_id, data_dir / "models")
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    vlm = load_vlm(REGISTRY[model_id], placement_for("cpu", "float32"), folder)
    assert type(vlm.model).__name__ == cls
    messages, chunks = _ask(vlm, images[0])
    assert messages[0]["content"][0]["type"] == "image"
    assert chunks and chunks[-1].startswith(chunks[0])  # the text grows as tokens stream in
    # the processor put the image tokens in the prompt
    from mmdemo.chat.prompt import prepare_inputs

    inputs = prepare_inputs(vlm, messages)
    image_token = vlm.model.config.image_token_id
    assert int((inputs["input_ids"] == image_token).sum()) == int(inputs["image_grid_thw"].prod(-1).sum()) // 4


def test_without_the_real_qwen_files_a_small_tokenizer_is_trained(tmp_path, images, monkeypatch):
    monkeypatch.setattr(tiny, "shared_qwen_files", lambda: None)
    folder = tiny.ensure_built("tiny-qwen2.5-vl", tmp_path)
    vlm = load_vlm(REGISTRY["tiny-qwen2.5-vl"], placement_for("cpu", "float32"), folder)
    assert len(vlm.processor.tokenizer) < 2000  # the fallback, not the 151k-token release
    tokenizer = vlm.processor.tokenizer
    assert vlm.model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert vlm.model.get_input_embeddings().num_embeddings == len(tokenizer)
    _, chunks = _ask(vlm, images[1])
    assert chunks and chunks[-1]  # decodes to text (random weights: any text, even whitespace)


def test_stop_ends_generation_and_the_worker_thread(session_manager, images):
    vlm = session_manager.get("vlm")
    stop = threading.Event()
    history = [{"role": "user", "content": {"path": str(images[0])}}, {"role": "user", "content": "Go on."}]
    stream = stream_reply(vlm, to_qwen_messages(history, ImageBudget()), GenerationParams(max_new_tokens=2000), stop)
    next(stream)
    stop.set()
    rest = list(stream)
    assert len(rest) <= 1
    assert not compute.busy()  # generate() has returned


def test_random_profile_clip_is_the_real_vit_b_32(tmp_path):
    manager = build_manager(tiny_settings_for_random(tmp_path))
    clip = manager.get("clip")
    (stats,) = manager.stats()
    assert stats.id == "random-clip-vit-b-32" and 149e6 < stats.parameters < 153e6
    assert clip.embed_dim == 512


def tiny_settings_for_random(tmp_path):
    from mmdemo.config import Settings

    return Settings(profile="random", data_dir=tmp_path, preload=())
