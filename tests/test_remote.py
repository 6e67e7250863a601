"""The chat on an OpenAI-compatible server: a real `transformers serve` of the tiny Qwen2.5-VL,
started by the tests, driven through RemoteVLM and through the running app (gradio_client)."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from mmdemo.chat.pipeline import AnswerOptions, GenerationParams
from mmdemo.chat.prompt import ImageBudget, to_qwen_messages
from mmdemo.chat.remote import RemoteVLM, redact
from mmdemo.errors import UserFacingError
from tests.conftest import free_port, start_app, start_vlm_server, stop_app

LONG = GenerationParams(max_new_tokens=3000, temperature=1.0)  # the tiny model never stops early at 1.0


def conversation(images: list[Path]) -> list[dict]:
    """Two turns: two images and a question, an answer, then a third image and a follow-up."""
    return [
        {"role": "user", "content": {"path": str(images[0])}},
        {"role": "user", "content": {"path": str(images[1])}},
        {"role": "user", "content": "Compare these."},
        {"role": "assistant", "content": "They differ in colour."},
        {"role": "user", "content": {"path": str(images[2])}},
        {"role": "user", "content": "And this one?"},
    ]


def answer(vlm: RemoteVLM, messages: list[dict], params: GenerationParams, stop=None) -> list[str]:
    prepared = vlm.prepare(messages, 16384)
    return list(vlm.stream(prepared, AnswerOptions(params, stop or threading.Event())))


def test_a_multi_image_multi_turn_chat_streams_and_every_image_reaches_the_server(vlm_server, tmp_path):
    from PIL import Image

    images = []
    for i, size in enumerate([(640, 480), (480, 640), (800, 600)]):
        images.append(tmp_path / f"photo{i}.jpg")
        Image.radial_gradient("L").resize(size).convert("RGB").save(images[-1])
    url, model = vlm_server
    vlm = RemoteVLM(url, model=model)
    messages = to_qwen_messages(conversation(images), ImageBudget())
    prepared = vlm.prepare(messages, 16384)
    sent = [p for m in prepared.payload if isinstance(m["content"], list) for p in m["content"]]
    assert [p["type"] for p in sent].count("image_url") == 3
    assert all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in sent if p["type"] == "image_url")
    # The server counts the prompt itself: all three images arrived (the estimate counts them
    # exactly, text generously; without them the prompt would be ~60 tokens, not ~1000).
    usage = vlm.client.chat.completions.create(model=model, messages=prepared.payload, max_tokens=1).usage
    assert 0.8 * prepared.tokens <= usage.prompt_tokens <= prepared.tokens
    updates = answer(vlm, messages, GenerationParams(max_new_tokens=200, temperature=1.0))
    assert len(updates) > 1 and all(b.startswith(a) for a, b in itertools.pairwise(updates))
    assert updates[-1].strip()


def test_the_system_prompt_goes_first_and_stays_when_the_budget_drops_turns(vlm_server, images):
    url, model = vlm_server
    history = conversation(images)
    messages = to_qwen_messages(history, ImageBudget(), system_prompt="Be brief.")
    vlm = RemoteVLM(url, model=model)
    full = vlm.prepare(messages, 0)
    assert full.payload[0] == {"role": "system", "content": "Be brief."}
    fitted = vlm.prepare(messages, full.tokens - 10)
    assert fitted.dropped == 2 and fitted.payload[0]["role"] == "system" and len(fitted.payload) == 2
    assert answer(vlm, [*messages[:1], *messages[-1:]], GenerationParams(max_new_tokens=8))[-1]


def test_stop_ends_the_work_on_the_server(vlm_server):
    url, model = vlm_server
    vlm = RemoteVLM(url, model=model)
    hello = to_qwen_messages([{"role": "user", "content": "hello"}], ImageBudget())

    def timed(params: GenerationParams) -> float:
        start = time.monotonic()
        answer(vlm, hello, params)
        return time.monotonic() - start

    alone = timed(GenerationParams(max_new_tokens=60, temperature=1.0))
    stop = threading.Event()
    updates = vlm.stream(vlm.prepare(hello, 0), AnswerOptions(LONG, stop))
    for _, _ in zip(range(3), updates, strict=False):
        pass
    stop.set()  # what the Stop button does
    assert list(updates) == []  # nothing more comes once stopped
    # transformers serve generates one request at a time: had the 3000-token answer (~50x the
    # second one) gone on, the second would wait for it.
    assert timed(GenerationParams(max_new_tokens=60, temperature=1.0)) < 2 * alone + 0.5


def test_wrong_url_model_and_key_get_one_clear_message(vlm_server, caplog):
    url, model = vlm_server
    hello = to_qwen_messages([{"role": "user", "content": "hello"}], ImageBudget())
    refused = f"http://user:hunter2@127.0.0.1:{free_port()}/v1?key=hunter2"
    with pytest.raises(UserFacingError, match=r"127\.0\.0\.1:\d+/v1 \(connection refused\)") as error:
        answer(RemoteVLM(refused, api_key="sk-secret", model="m", retries=0), hello, GenerationParams())
    assert "hunter2" not in str(error.value) and "sk-secret" not in str(error.value)
    with pytest.raises(UserFacingError, match="host name not found"):
        answer(RemoteVLM("http://no-such-host.invalid/v1", model="m", retries=0), hello, GenerationParams())
    with pytest.raises(UserFacingError, match=r"does not serve the model 'qwen-72b'.*MMDEMO_VLM_SERVED_MODEL"):
        answer(RemoteVLM(url, model="qwen-72b"), hello, GenerationParams())
    with pytest.raises(UserFacingError, match=r"HTTP 404.*check that MMDEMO_VLM_URL ends in /v1"):
        answer(RemoteVLM(url.removesuffix("/v1") + "/api", model=model), hello, GenerationParams())
    # transformers serve's GET /v1/models fails without a hub cache: the message says what to set.
    with pytest.raises(UserFacingError, match=r"listing its models.*MMDEMO_VLM_SERVED_MODEL"):
        answer(RemoteVLM(url, retries=0), hello, GenerationParams())
    assert "hunter2" not in caplog.text and "sk-secret" not in caplog.text
    assert redact(refused).endswith("/v1") and "hunter2" not in redact(refused)


class StandIn(BaseHTTPRequestHandler):
    """Answers every request with one status and body. Stands in only for what transformers
    serve cannot be made to send: it checks no key (401), is never busy (429, 503), and takes any
    prompt length (vLLM's context-length 400, body as vLLM words it)."""

    status, body, hits = 503, {}, 0  # hits: chat requests seen

    def do_POST(self) -> None:
        type(self).hits += self.command == "POST"
        self.rfile.read(int(self.headers.get("content-length", 0)))
        payload = json.dumps(self.body).encode()
        self.send_response(self.status)
        for key, value in {"content-type": "application/json", **self.headers_out}.items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST
    headers_out: ClassVar[dict] = {}

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "body", "headers", "message"),
    [
        (401, {"error": {"message": "Unauthorized"}}, {}, r"refused the API key \(HTTP 401\)\. Check MMDEMO_VLM_API"),
        (429, {"error": {"message": "busy"}}, {"retry-after": "0"}, r"busy \(HTTP 429, still after 2 retries\)"),
        (503, {"error": {"message": "loading"}}, {"retry-after": "0"}, r"failed \(HTTP 503: loading\)"),
        (400, {"error": {"message": "This model's maximum context length is 4096 tokens. However, you requested "
                         "5000 tokens.", "type": "BadRequestError", "code": 400}}, {},
         r"too long for the model.*MMDEMO_MAX_CONTEXT_TOKENS"),
    ],
)  # fmt: skip
def test_status_codes_a_real_server_here_cannot_send(status, body, headers, message):
    handler = type("Handler", (StandIn,), {"status": status, "body": body, "headers_out": headers, "hits": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        vlm = RemoteVLM(f"http://127.0.0.1:{server.server_port}/v1", api_key="sk-secret", model="m", retries=2)
        hello = to_qwen_messages([{"role": "user", "content": "hello"}], ImageBudget())
        with pytest.raises(UserFacingError, match=message) as error:
            answer(vlm, hello, GenerationParams())
        assert "sk-secret" not in str(error.value)
        # 429 and 5xx are retried (Retry-After honoured), the rest are not.
        assert handler.hits == (3 if status in (429, 503) else 1)
    finally:
        server.shutdown()


def test_a_server_that_never_answers_times_out_with_a_message():
    """A socket that accepts and stays silent (what a stuck server looks like; transformers serve
    cannot be made to hang on purpose)."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        vlm = RemoteVLM(f"http://127.0.0.1:{listener.getsockname()[1]}/v1", model="m", timeout=1.0, retries=0)
        hello = to_qwen_messages([{"role": "user", "content": "hello"}], ImageBudget())
        start = time.monotonic()
        with pytest.raises(UserFacingError, match=r"did not answer within 1 s"):
            answer(vlm, hello, GenerationParams())
        assert time.monotonic() - start < 5


@pytest.fixture
def remote_app(tiny_vlm_dir, data_dir, tmp_path):
    """`python app.py` chatting through its own `transformers serve` (so a test may kill it)."""
    port = free_port()
    server_url, server = start_vlm_server(tiny_vlm_dir, tmp_path / "server.log", port)
    env = {"MMDEMO_VLM_URL": server_url, "MMDEMO_VLM_SERVED_MODEL": str(tiny_vlm_dir), "MMDEMO_VLM_API_KEY": "sk-x1",
           "MMDEMO_MAX_NEW_TOKENS": "3000"}  # fmt: skip
    url, app = start_app(data_dir, tmp_path / "app.log", **env)
    state = {"server": server}
    yield url, state, lambda: state.update(server=start_vlm_server(tiny_vlm_dir, tmp_path / "server.log", port)[1])
    stop_app(app)
    stop_app(state["server"])
    assert "sk-x1" not in (tmp_path / "app.log").read_text()


def test_the_app_chats_through_the_server_and_keeps_a_cut_answer(remote_app, images):
    from gradio_client import Client, handle_file

    url, state, restart = remote_app
    client = Client(url, verbose=False)
    controls = [3000, 1.0, 0.9, 1.05, False, 3136, 401408, 8, 3211264]
    first = {"text": "Compare these.", "files": [handle_file(str(images[0])), handle_file(str(images[1]))]}
    history, _ = client.predict(first, [], *[24, *controls[1:]], api_name="/chat")
    assert history[-1]["role"] == "assistant" and history[-1]["content"]
    # No local VLM: the System tab lists CLIP only, and says where the chat runs.
    _, info = client.predict(api_name="/system")
    assert "on `http://127.0.0.1:" in info and "sk-x1" not in info
    assert all("qwen" not in row["id"] for row in client.predict(api_name="/stats"))
    ready = json.load(urllib.request.urlopen(url + "ready", timeout=10))  # 200: CLIP resident, library indexed
    assert ready["chat_server"]["reachable"] and list(ready["models"]) == ["tiny-clip"]

    # Stop through the app (the client cancels): the server drops the 3000-token answer at once.
    def timed_chat() -> float:
        start = time.monotonic()
        client.predict({"text": "Hi.", "files": []}, [], *[60, *controls[1:]], api_name="/chat")
        return time.monotonic() - start

    alone = timed_chat()
    job = client.submit({"text": "Tell me everything.", "files": []}, [], *controls, api_name="/chat")
    while len(job.outputs()) < 4 and not job.done():
        time.sleep(0.05)
    job.cancel()
    assert timed_chat() < 2 * alone + 1.0  # had the long answer gone on, this one would wait ~50x as long

    # The server dies mid-answer: the part that came stays, marked as cut.
    job = client.submit({"text": "Go on, at length.", "files": [handle_file(str(images[2]))]}, history, *controls,
                        api_name="/chat")  # fmt: skip
    while len(job.outputs()) < 4 and not job.done():
        time.sleep(0.05)
    state["server"].send_signal(signal.SIGKILL)
    cut, _ = job.result()
    text = cut[-1]["content"][0]["text"]
    assert cut[-1]["role"] == "assistant" and text.endswith(" …") and len(text) > 2
    with pytest.raises(Exception, match=r"Could not reach the chat server at http://127\.0\.0\.1"):
        client.predict({"text": "Still there?", "files": []}, cut, *controls, api_name="/chat")
    # The rest of the app works meanwhile, and once the server is back so does the chat.
    hits, *_ = Client(url, verbose=False, download_files=False).predict("a cat", None, 3, -1, api_name="/search")
    assert len(hits) == 3
    restart()
    again, _ = client.predict({"text": "Still there?", "files": []}, cut, *[8, *controls[1:]], api_name="/chat")
    assert again[-1]["role"] == "assistant" and again[-1]["content"][0]["text"] and len(again) == len(cut) + 2
