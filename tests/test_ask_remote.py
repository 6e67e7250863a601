"""Ask your photos on an inference server: a real `transformers serve` of the tiny Qwen2.5-VL
(asking about results, and the one-token re-rank it falls back to: it refuses `logprobs`), and
vLLM's `logprobs` response, whose shape is checked against vLLM's documented schema."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from mmdemo.ask.about import Shown, answer, ask_budget, ask_history
from mmdemo.ask.rerank import Candidate, ScoreCache, rerank
from mmdemo.chat.pipeline import GenerationParams
from mmdemo.chat.prompt import PATCH_AREA, to_qwen_messages
from mmdemo.chat.remote import RemoteVLM
from mmdemo.errors import UserFacingError
from tests.conftest import free_port

BUDGET = ask_budget(64 * PATCH_AREA, 10_000_000)


@pytest.fixture
def candidates(images: list[Path]) -> list[Candidate]:
    return [Candidate(f"hash{i}", str(p), 0.3 - i / 10) for i, p in enumerate(images)]


def test_a_question_about_results_is_answered_by_the_server(vlm_server, images):
    url, model = vlm_server
    shown = [Shown(i + 1, p.name, str(p)) for i, p in enumerate(images)]
    history = ask_history(shown, "Which one is red?")
    vlm = RemoteVLM(url, model=model)
    prepared = vlm.prepare(to_qwen_messages(history, BUDGET), 16384)
    sent = [p for m in prepared.payload for p in m["content"] if isinstance(m["content"], list)]
    assert [p["type"] for p in sent].count("image_url") == 3
    assert "[1] img0.png" in [p.get("text") for p in sent]
    text = answer(vlm, history, BUDGET, GenerationParams(max_new_tokens=8, greedy=True), threading.Event(), 16384)
    assert text  # (the tiny model's greedy answer may be blank lines: its weights are random)


def test_transformers_serve_re_ranks_by_one_token_answers_and_the_page_is_told_it_is_coarse(vlm_server, candidates):
    """A server that is not vLLM or SGLang is not sent `logprobs`; one set to "vllm" by mistake is, and this
    transformers serve answers without them: either way the first token is read as yes or no."""
    url, model = vlm_server
    for server in ("other", "vllm"):
        vlm, cache = RemoteVLM(url, model=model, server=server), ScoreCache()
        run = rerank(vlm, "a red square", candidates, BUDGET, cache, batch_size=2)
        assert not run.exact and set(run.scores) <= {0.0, 1.0} and sorted(run.order) == [0, 1, 2]
        again = rerank(vlm, "a red square", candidates, BUDGET, cache, batch_size=2)
        assert again.cached == 0  # coarse yes/no answers are not cached


class VLLMStandIn(BaseHTTPRequestHandler):
    """A chat completions answer in vLLM's documented shape (vllm.entrypoints.openai.protocol:
    ChatCompletionResponse -> choices[].logprobs: ChatCompletionLogProbs -> content[]:
    ChatCompletionLogProbsContent {token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}).
    No vLLM runs here (no CPU wheel): this checks the request we send and our reading of its answer."""

    requests: ClassVar[list[dict]] = []
    top: ClassVar[list[tuple[str, float]]] = [("Yes", math.log(0.6)), ("No", math.log(0.3)), (" yes", math.log(0.05))]

    refuse_logprobs = False  # answer 422 to a request with logprobs, as a strict server would

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).requests.append(request)
        if self.refuse_logprobs and "logprobs" in request:
            return self.answer(422, {"detail": "Unexpected field: logprobs"})
        tops = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in self.top]
        body = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": request["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Yes", "tool_calls": []},
                    "logprobs": {"content": [{**tops[0], "top_logprobs": tops[: request.get("top_logprobs", 0)]}]}
                    if request.get("logprobs")
                    else None,
                    "finish_reason": "length",
                    "stop_reason": None,
                }
            ],
            "usage": {"prompt_tokens": 90, "total_tokens": 91, "completion_tokens": 1},
        }
        self.answer(200, body)

    def answer(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


def test_vllm_top_logprobs_give_exact_scores_that_are_cached(candidates):
    server = ThreadingHTTPServer(("127.0.0.1", 0), VLLMStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        vlm, cache = RemoteVLM(f"http://127.0.0.1:{server.server_port}/v1", model="m", server="vllm"), ScoreCache()
        run = rerank(vlm, "a dog", candidates, BUDGET, cache, batch_size=3)
        sent = VLLMStandIn.requests[-1]
        assert sent["logprobs"] is True and sent["top_logprobs"] == 20 and sent["max_tokens"] == 1
        assert sent["temperature"] == 0.0 and "repetition_penalty" not in sent
        assert run.exact and run.scores == pytest.approx([0.65 / 0.95] * 3)
        assert rerank(vlm, "a dog", candidates, BUDGET, cache, batch_size=3).cached == 3
    finally:
        server.shutdown()


def test_a_dead_server_skips_the_rerank_and_the_search_still_answers(tiny_settings, session_manager, tmp_path):
    from mmdemo.ask.service import PhotoAsker
    from mmdemo.search.galleries import Galleries
    from mmdemo.ui.search import SearchTab

    settings = tiny_settings.replace(data_dir=tmp_path / "data")
    galleries = Galleries(settings, session_manager)
    dead = RemoteVLM(f"http://127.0.0.1:{free_port()}/v1", model="m", retries=0)
    tab = SearchTab(settings, galleries, PhotoAsker(settings, galleries, dead))
    shown, table, _, _, line = tab.search("a rocket", None, 5, -1.0, 3, None, progress=lambda *a, **k: None)
    assert len(shown) == 5 and len(table["data"]) == 5 and table["headers"][:2] == ["rank", "score"]
    assert line.startswith("Re-rank skipped (the CLIP results are shown): Could not reach the chat server")
    with pytest.raises(Exception, match="at most 32 results can be re-ranked"):
        tab.search("a rocket", None, 5, -1.0, 40, None)
    with pytest.raises(UserFacingError):
        PhotoAsker(settings, galleries, dead).rerank("a rocket", [], 33)


def test_a_server_that_refuses_logprobs_is_asked_without_them_from_then_on(candidates):
    handler = type("Strict", (VLLMStandIn,), {"refuse_logprobs": True, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        vlm = RemoteVLM(f"http://127.0.0.1:{server.server_port}/v1", model="m", server="vllm")
        run = rerank(vlm, "a dog", candidates[:1], BUDGET, ScoreCache(), batch_size=1)
        assert not run.exact and run.scores == [1.0]  # "Yes", read as text
        assert ["logprobs" in r for r in handler.requests] == [True, False]
        rerank(vlm, "a cat", candidates[:1], BUDGET, ScoreCache(), batch_size=1)
        assert "logprobs" not in handler.requests[-1] and len(handler.requests) == 3
    finally:
        server.shutdown()
