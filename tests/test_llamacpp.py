"""The chat on llama.cpp: a real `llama-server` (built from llama.cpp's source, tests/llamacpp.py)
serving the tiny random-weight Qwen2.5-VL converted to GGUF with its mmproj, driven through
RemoteVLM and through the running app: images, streaming, Stop that frees the server, a dead
server, the answer's cost, a GGUF without its mmproj, a server set to llamacpp that is not one, a
prompt beyond the context, and the re-rank's exact scores from llama.cpp's top_logprobs."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from mmdemo.ask.about import ask_budget
from mmdemo.ask.rerank import Candidate, ScoreCache, rerank
from mmdemo.chat.pipeline import AnswerOptions, AnswerStats, GenerationParams
from mmdemo.chat.prompt import PATCH_AREA, ImageBudget, to_qwen_messages
from mmdemo.chat.remote import RemoteVLM
from mmdemo.errors import UserFacingError
from tests import llamacpp
from tests.conftest import free_port, start_app, stop_app, wait_until_answers

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(bool(llamacpp.available()), reason=llamacpp.available() or "-")]
LONG = GenerationParams(max_new_tokens=2000, temperature=1.0)


@pytest.fixture(scope="module")
def gguf(data_dir) -> tuple[Path, Path]:
    """The tiny Qwen2.5-VL as GGUF: (language model, mmproj), converted by llama.cpp's own script."""
    from mmdemo.models import tiny

    return llamacpp.convert(tiny.ensure_built("tiny-qwen2.5-vl", data_dir / "models"), data_dir / "gguf")


def serve(model: Path, mmproj: Path | None, log: Path, context: int = 4096) -> tuple[str, subprocess.Popen]:
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            llamacpp.server_command(model, mmproj, port, context), stdout=out, stderr=subprocess.STDOUT
        )
    wait_until_answers(f"http://127.0.0.1:{port}/health", proc, log, "llama-server", 120)
    return f"http://127.0.0.1:{port}/v1", proc


@pytest.fixture(scope="module")
def llama(gguf, tmp_path_factory):
    """llama-server with the model and its mmproj: its /v1 URL."""
    url, proc = serve(*gguf, tmp_path_factory.mktemp("llama") / "server.log")
    yield url
    stop_app(proc)


@pytest.fixture(scope="module")
def blind(gguf, tmp_path_factory):
    """llama-server with the model only (no mmproj) and a short context: its /v1 URL."""
    url, proc = serve(gguf[0], None, tmp_path_factory.mktemp("blind") / "server.log", context=512)
    yield url
    stop_app(proc)


def streamed(vlm: RemoteVLM, messages: list[dict], params: GenerationParams, stats: AnswerStats | None = None):
    options = AnswerOptions(params, threading.Event(), stats=stats or AnswerStats())
    return list(vlm.stream(vlm.prepare(messages, 16384), options))


def test_an_image_chat_streams_from_llama_server_with_its_cost(llama, images):
    vlm = RemoteVLM(llama)  # the kind and the model from /models: owned_by "llamacpp"
    assert vlm.server() == "llamacpp" and vlm.model() == "tiny-qwen2.5-vl"
    history = [{"role": "user", "content": {"path": str(p)}} for p in images[:2]]
    messages = to_qwen_messages([*history, {"role": "user", "content": "Compare these."}], ImageBudget())
    stats = AnswerStats()
    pieces = streamed(vlm, messages, GenerationParams(max_new_tokens=24, temperature=1.0), stats)
    assert len(pieces) > 1 and pieces[-1].startswith(pieces[0])  # it grew, streamed
    # The server's own count (usage, streamed because it is llama.cpp): both images' tokens are in it.
    assert stats.new_tokens == 24 and stats.prompt_tokens > 2 * 4 and stats.reused_tokens is None
    request = vlm._request([], GenerationParams())
    assert request["extra_body"] == {"repeat_penalty": 1.05, "cache_prompt": True}
    info = vlm.describe()
    assert "llama.cpp: 4096 tokens of context per slot, 1 slot(s), images: yes" in info


def test_stop_frees_the_server_at_once(llama):
    """One slot: had the 2000-token answer gone on after Stop, the next request would wait for it."""
    vlm = RemoteVLM(llama)
    hello = to_qwen_messages([{"role": "user", "content": "hello"}], ImageBudget())

    def timed(params: GenerationParams) -> float:
        start = time.monotonic()
        streamed(vlm, hello, params)
        return time.monotonic() - start

    alone = timed(GenerationParams(max_new_tokens=40, temperature=1.0))
    long_alone = timed(GenerationParams(max_new_tokens=400, temperature=1.0))
    stop = threading.Event()
    updates = vlm.stream(vlm.prepare(hello, 0), AnswerOptions(LONG, stop))
    for _, _ in zip(range(3), updates, strict=False):
        pass
    stop.set()  # what the Stop button does
    assert list(updates) == []
    assert timed(GenerationParams(max_new_tokens=40, temperature=1.0)) < min(2 * alone + 0.5, long_alone)


def test_a_dead_server_and_a_prompt_beyond_the_context_get_clear_messages(blind):
    dead = RemoteVLM(f"http://127.0.0.1:{free_port()}/v1", model="m", server="llamacpp", retries=0)
    hello = to_qwen_messages([{"role": "user", "content": "hello"}], ImageBudget())
    with pytest.raises(UserFacingError, match=r"Could not reach the chat server at http://127\.0\.0\.1:\d+/v1"):
        streamed(dead, hello, GenerationParams(max_new_tokens=4))
    long = to_qwen_messages([{"role": "user", "content": "word " * 2000}], ImageBudget())
    with pytest.raises(UserFacingError, match="too long for the model"):
        streamed(RemoteVLM(blind), long, GenerationParams(max_new_tokens=4))


def test_a_gguf_without_its_mmproj_refuses_images_in_words_and_still_chats(blind, images):
    vlm = RemoteVLM(blind)
    with_image = to_qwen_messages([{"role": "user", "content": {"path": str(images[0])}},
                                   {"role": "user", "content": "What is it?"}], ImageBudget())  # fmt: skip
    with pytest.raises(UserFacingError, match=r"cannot see images: llama\.cpp was started without the model's mmproj"):
        streamed(vlm, with_image, GenerationParams(max_new_tokens=4))
    text = to_qwen_messages([{"role": "user", "content": "Hello"}], ImageBudget())
    assert streamed(vlm, text, GenerationParams(max_new_tokens=4))
    assert "images: no" in vlm.describe()


def test_a_server_set_to_llamacpp_that_is_not_one_gets_standard_fields(vlm_server, images):
    url, model = vlm_server  # transformers serve: no /props
    vlm = RemoteVLM(url, model=model, server="llamacpp")
    messages = to_qwen_messages([{"role": "user", "content": "Hello"}], ImageBudget())
    assert streamed(vlm, messages, GenerationParams(max_new_tokens=4))  # no 422 for llama.cpp's fields
    assert vlm.server() == "other" and "is not a llama.cpp server (it has no /props)" in vlm.describe()


def test_the_rerank_asks_llama_cpp_for_top_logprobs_and_reads_them(llama, images):
    """llama.cpp returns the first token's top_logprobs (vLLM's schema): the re-rank asks for them. The tiny
    model's random weights rarely put "yes" or "no" among its top 20 (a real model's first answer token
    is one of them), so this checks the request and the reading, not the exactness of random scores."""
    import openai

    vlm = RemoteVLM(llama)
    candidates = [Candidate(f"h{i}", str(p), 0.1) for i, p in enumerate(images)]
    run = rerank(vlm, "a red square", candidates, ask_budget(64 * PATCH_AREA, 10_000_000), ScoreCache(), 1)
    assert vlm._logprobs and sorted(run.order) == [0, 1, 2] and all(0.0 <= s <= 1.0 for s in run.scores)
    question = [{"role": "user", "content": "Is the sky blue? Answer yes or no."}]
    request = {**vlm._request(question, GenerationParams(max_new_tokens=1, greedy=True)), "logprobs": True}
    answer = openai.OpenAI(base_url=llama, api_key="-").chat.completions.create(**request, top_logprobs=20)
    first = answer.choices[0].logprobs.content[0]
    assert len(first.top_logprobs) == 20 and all(t.logprob <= 0 for t in first.top_logprobs)


def test_the_app_chats_through_llama_server(llama, data_dir, tmp_path, images):
    from gradio_client import Client, handle_file

    url, app = start_app(data_dir, tmp_path / "app.log", MMDEMO_VLM_URL=llama, MMDEMO_VLM_SERVER="llamacpp")
    try:
        client = Client(url, verbose=False)
        message = {"text": "What is in this picture?", "files": [handle_file(str(images[0]))]}
        history, _ = client.predict(message, [], max_new_tokens=16, api_name="/chat")
        assert history[-1]["role"] == "assistant" and history[-1]["content"]
        _, info = client.predict(api_name="/system")
        assert "llama.cpp:" in info and "images: yes" in info
    finally:
        stop_app(app)
