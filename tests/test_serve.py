"""How the app is served: logins, the shared model queue, MCP, the System tab's controls, ZeroGPU."""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from mmdemo.errors import UserFacingError
from mmdemo.ui import build_app
from mmdemo.ui.serve import (
    ADMIN_QUEUE,
    CLIP_QUEUE,
    OPERATOR_ONLY,
    SHARE_WARNING,
    VLM_QUEUE,
    is_operator,
    read_auth,
    serve,
    share_warning,
)
from tests.conftest import free_port

QUEUES = {"chat": VLM_QUEUE, "regenerate": VLM_QUEUE, "search": CLIP_QUEUE, "index_images": CLIP_QUEUE,
          "classify": CLIP_QUEUE, "load_model": ADMIN_QUEUE, "unload_model": ADMIN_QUEUE}  # fmt: skip


def test_auth_from_a_string_or_a_file(tmp_path):
    assert read_auth("") is None
    assert read_auth("ann:pw1, bob:p:w2") == [("ann", "pw1"), ("bob", "p:w2")]
    users = tmp_path / "users.txt"
    users.write_text("# operators\nann:pw1\n\ncarl:secret\n")
    assert read_auth(str(users)) == [("ann", "pw1"), ("carl", "secret")]
    users.write_text("ann\n")
    with pytest.raises(UserFacingError, match="expected user:password"):
        read_auth(str(users))


def test_sharing_without_a_login_warns(tiny_settings):
    assert share_warning(tiny_settings.replace(share=True)) == SHARE_WARNING
    assert share_warning(tiny_settings.replace(share=True, auth="ann:pw")) is None
    assert share_warning(tiny_settings) is None


def test_each_model_role_has_its_own_queue(tiny_settings, launch):
    """A search never waits in the chat's line: chats, CLIP requests and model management queue apart."""
    app, _ = launch(tiny_settings.replace(concurrency_limit=3, max_queue_size=5))
    grouped = {fn.api_name: fn for fn in app.fns.values() if fn.api_name in QUEUES}
    assert {name: fn.concurrency_id for name, fn in grouped.items()} == QUEUES
    limits = {fn.concurrency_id: fn.concurrency_limit for fn in grouped.values()}
    assert limits == {VLM_QUEUE: 1, CLIP_QUEUE: 3, ADMIN_QUEUE: 1}
    others = [fn for fn in app.fns.values() if fn.api_name in ("system", "stats")]
    assert others and all(fn.concurrency_id not in limits for fn in others)
    assert app._queue.max_size == 5
    assert not app.analytics_enabled


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_auth_refuses_requests_without_credentials(tiny_settings, launch):
    _, url = launch(tiny_settings.replace(auth="ann:s3cret"))
    status, page = _get(url)
    assert status == 200 and "mmdemo: log in to continue." in page  # the login page, not the app
    assert _get(url + "config")[0] == 401
    assert _get(url + "gradio_api/info")[0] == 401
    call = urllib.request.Request(
        url + "gradio_api/call/system", data=b'{"data": []}', headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(call, timeout=10)
    assert refused.value.code == 401
    wrong = urllib.parse.urlencode({"username": "ann", "password": "nope"}).encode()
    with pytest.raises(urllib.error.HTTPError) as bad_login:
        urllib.request.urlopen(urllib.request.Request(url + "login", data=wrong), timeout=10)
    assert bad_login.value.code == 400

    from gradio_client import Client

    client = Client(url, auth=("ann", "s3cret"), verbose=False)
    _, info = client.predict(api_name="/system")
    assert "Profile:" in info


def test_media_urls_ask_for_a_login_behind_auth(tiny_settings, session_manager, launch, tmp_path):
    import httpx

    from mmdemo.search.galleries import Galleries

    settings = tiny_settings.replace(auth="ann:s3cret", data_dir=tmp_path / "data")
    Galleries(settings, session_manager).library(wait=True)  # the bundled photos' thumbnails
    thumb = next((settings.data_dir / "media" / "shared").glob("*/*.jpg"))
    _, url = launch(settings)
    name = f"media/shared/{thumb.parent.name}/{thumb.name}"
    assert httpx.get(url + name).status_code == 401
    with httpx.Client(base_url=url) as logged_in:
        assert logged_in.post("login", data={"username": "ann", "password": "s3cret"}).status_code == 200
        answer = logged_in.get(name)
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
        assert answer.content == thumb.read_bytes()


def test_mcp_schema_lists_the_tools_for_agents_only(tiny_settings, launch):
    _, url = launch(tiny_settings.replace(mcp=True))
    status, body = _get(url + "gradio_api/mcp/schema")
    assert status == 200
    # The schema lists every endpoint with its kind; an MCP client is offered the "tool" ones only.
    tools = {tool["name"]: tool for tool in json.loads(body) if tool["meta"]["mcp_type"] == "tool"}
    assert set(tools) == {"search_images", "ask_image", "ask_results", "ask_each", "classify_image", "add_images",
                          "list_images", "delete_images", "read_text"}  # fmt: skip
    assert "Zero-shot classify" in tools["classify_image"]["description"]
    # Every public endpoint's every argument has its meaning (from the docstring's Args), tool or not:
    # the API page and MCP clients read the same descriptions.
    for endpoint in json.loads(body):
        for name, schema in endpoint["inputSchema"]["properties"].items():
            assert schema.get("description"), f"{endpoint['name']}({name}) is not described"


class _Request:
    """What is_operator reads of a gr.Request: who logged in, the socket's peer, the headers."""

    def __init__(self, host: str = "127.0.0.1", username: str | None = None, headers: dict | None = None):
        self.client = type("Client", (), {"host": host})()
        self.username, self.headers = username, headers or {}


def test_only_operators_may_manage_models(tiny_settings):
    local = tiny_settings  # bound to 127.0.0.1: only this machine can reach it
    assert is_operator(local, _Request("127.0.0.1")) and is_operator(local.replace(host="::1"), _Request("::1"))
    assert not is_operator(local, _Request("127.0.0.1", headers={"x-forwarded-for": "203.0.113.9"}))  # a proxy
    assert not is_operator(local.replace(share=True), _Request("127.0.0.1"))  # the share tunnel arrives locally
    public = tiny_settings.replace(host="0.0.0.0", auth="ann:pw1,bob:pw2", admins=("ann",))  # Docker, Spaces
    assert not is_operator(public, _Request("127.0.0.1")) and not is_operator(public, _Request("172.17.0.1"))
    assert is_operator(public, _Request("198.51.100.7", username="ann"))
    assert not is_operator(public, _Request("198.51.100.7", username="bob"))
    assert not is_operator(public, None)


def _call(url: str, api: str, data: list) -> str:
    """A raw Gradio API call (no client-side checks): the SSE text of its result."""
    request = urllib.request.Request(
        url + f"gradio_api/call/{api}", data=json.dumps({"data": data}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        event = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(url + f"gradio_api/call/{api}/{event}", timeout=60) as response:
        return response.read().decode()


def test_a_visitor_of_a_public_app_cannot_load_or_unload(tiny_settings, launch):
    from gradio_client import Client

    _, url = launch(tiny_settings.replace(host="0.0.0.0"))  # reached here through loopback, like a proxy
    client = Client(url, verbose=False)
    for api in ("/load_model", "/unload_model"):
        with pytest.raises(Exception, match="for the operator"):
            client.predict("tiny-clip", api_name=api)
    assert OPERATOR_ONLY.split(":")[0] in _call(url, "unload_model", ["tiny-clip"])


def test_an_admin_may_load_and_a_logged_in_visitor_may_not(tiny_settings, launch):
    from gradio_client import Client

    settings = tiny_settings.replace(host="0.0.0.0", auth="ann:pw1,bob:pw2", admins=("ann",))
    _, url = launch(settings)
    table, _ = Client(url, auth=("ann", "pw1"), verbose=False).predict("tiny-clip", api_name="/load_model")
    assert "tiny-clip" in [row[0] for row in table["data"]]
    with pytest.raises(Exception, match="for the operator"):
        Client(url, auth=("bob", "pw2"), verbose=False).predict("tiny-clip", api_name="/unload_model")


def test_load_model_takes_only_the_configured_models(tiny_settings, launch, caplog, tmp_path):
    """Any other id could name a hub repo or a file: refused before it is resolved, in one log line."""
    _, url = launch(tiny_settings)  # the operator: loopback on a loopback-bound app
    before = sorted(tiny_settings.data_dir.rglob("*"))
    caplog.set_level("INFO", logger="mmdemo")
    for model_id in ("hf-hub:org/x", "ViT-B-32:/etc/passwd", str(tmp_path), "../../etc"):
        caplog.clear()
        answer = _call(url, "load_model", [model_id])
        assert "event: error" in answer and "Only the configured models" in answer
        assert "tiny-clip" in answer and "Traceback" not in answer
        refusals = [r for r in caplog.records if r.name.startswith("mmdemo")]
        assert len(refusals) == 1 and refusals[0].exc_info is None and "not a configured model" in refusals[0].message
    assert sorted(tiny_settings.data_dir.rglob("*")) == before  # nothing planned, built or downloaded


def test_load_and_unload_from_the_system_tab(data_dir, tiny_settings, launch):
    from gradio_client import Client

    from mmdemo.models.factory import build_manager

    manager = build_manager(tiny_settings)  # its own manager: this test unloads
    app = build_app(tiny_settings, manager)
    serve(app, tiny_settings.replace(port=free_port()), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(app.local_url, verbose=False)
        table, _ = client.predict("tiny-clip", api_name="/load_model")
        assert [row[0] for row in table["data"]] == ["tiny-clip"] and manager.is_loaded("clip")
        table, _ = client.predict("tiny-clip", api_name="/unload_model")
        assert not manager.is_loaded("clip")
    finally:
        app.close()


def test_with_spaces_installed_the_gpu_handlers_run_on_cpu(tiny_settings, launch, images):
    spaces = pytest.importorskip("spaces")
    from gradio_client import Client, handle_file

    from mmdemo.serving import hosting

    def probe(x: int) -> int:
        return x + 1

    assert hosting.import_spaces() is spaces
    assert hosting.gpu(10)(probe)(1) == 2  # off ZeroGPU, spaces.GPU hands the function back
    _, url = launch(tiny_settings)
    assert "spaces" in sys.modules
    label, _, _, _ = Client(url, verbose=False).predict(
        handle_file(str(images[0])), [], "red, green", "custom", "a photo of a {}.", 2, api_name="/classify"
    )
    assert label["label"] in {"red", "green"}


def test_spaces_bind_all_interfaces_and_zero_gpu_places_models_on_cuda(tiny_settings, monkeypatch):
    from mmdemo.serving import hosting

    assert hosting.for_this_host(tiny_settings) == tiny_settings  # a laptop: unchanged
    monkeypatch.setenv("SPACE_ID", "someone/mmdemo")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    on_space = hosting.for_this_host(tiny_settings)
    assert (on_space.host, on_space.port, on_space.device) == ("0.0.0.0", 7861, "auto")
    assert on_space.chat_cache_sessions == tiny_settings.chat_cache_sessions > 0
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    zero = hosting.for_this_host(tiny_settings)
    # Answers run in forked workers there: no KV cache is kept (it would be invisible here).
    assert zero.device == "cuda" and zero.chat_cache_sessions == 0


def test_stop_cancels_the_answer_event_so_it_reaches_a_zero_gpu_worker(tiny_settings, session_manager):
    """On ZeroGPU only Gradio's cancellation reaches the worker running the answer (spaces sets the
    worker's stop event when the handler's generator is closed): every Stop must cancel its event."""
    from mmdemo.ui import build_app

    config = build_app(tiny_settings, session_manager).get_config_file()
    deps = config["dependencies"]
    ids = {d.get("api_name"): d["id"] for d in deps}
    stops = [d for d in deps if any(event == "stop" for _, event in d["targets"])]
    (box_stop,) = [d for d in stops if d["cancels"]]  # the chat box's Stop (others stop no answer)
    assert box_stop["cancels"] == [ids["chat"]]
    # Regenerate's Stop cancels regenerate alone; Undo's and Clear's first steps cancel both.
    cancelling = sorted(d["cancels"] for d in deps if d["cancels"] and d is not box_stop)
    assert cancelling == [[ids["chat"], ids["regenerate"]]] * 2 + [[ids["regenerate"]]]


def test_the_readme_api_examples_run(served_app, images, tmp_path, monkeypatch):
    """The gradio_client calls of the "API and MCP" guide (docs/api.md), against `python app.py`."""
    import re
    import shutil
    import zipfile

    from tests.conftest import REPO

    section = REPO.joinpath("docs", "api.md").read_text().split("## API and MCP", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    for name, source in (("query.jpg", images[0]), ("a.jpg", images[1]), ("cat.jpg", images[2])):
        shutil.copy(source, name)
    with zipfile.ZipFile("photos.zip", "w") as archive:
        archive.write(images[0], "holiday/one.png")
    code = code.replace("http://127.0.0.1:7860/", served_app[0]).replace('"clip-vit-b-32"', '"tiny-clip"')
    names: dict = {}
    exec(compile(code, "docs/api.md", "exec"), names)
    assert len(names["hits"]) == 12 and "·" in names["hits"][0]["caption"]
    assert names["report"].startswith("Indexed")
    assert len(names["mine"]) == 2  # a.jpg and the image inside photos.zip
    assert names["removed"].startswith("Removed 1 image(s)")
    assert set(names["scores"]) == {"label", "confidences"} and len(names["scores"]["confidences"]) == 3
    assert "Profile:" in names["summary"] and any(m["id"] == "tiny-clip" for m in names["models"])
    assert sorted(Path(f).name for f in names["files"]) == ["conversation.json", "conversation.md"]
    assert "license" in names["summary"]  # each configured model's licence (ModelSpec.license, now read)


def _ready(url: str) -> tuple[int, dict]:
    status, body = _get(url + "ready")
    return status, json.loads(body)


def test_ready_reports_models_and_library_and_needs_no_login(data_dir, tiny_settings):
    """/ready is 503 while models load, 200 once they are resident and the bundled photos indexed."""
    from mmdemo.models import compute
    from mmdemo.models.factory import build_manager
    from mmdemo.search.galleries import Galleries
    from mmdemo.ui.serve import readiness

    settings = tiny_settings.replace(preload=("clip",), auth="ann:pw1", port=free_port())
    manager = build_manager(settings)
    galleries = Galleries(settings, manager)
    release = threading.Event()
    hold = compute.submit(release.wait, 30, long=True)  # the compute thread is busy: CLIP cannot load yet
    app = build_app(settings, manager, galleries)  # starts loading CLIP and indexing the bundled photos
    serve(app, settings, ready=lambda: readiness(settings, manager, galleries), prevent_thread_lock=True, quiet=True)
    try:
        status, body = _ready(app.local_url)  # no credentials: probes do not log in
        assert (status, body["ready"], body["models"]) == (503, False, {"tiny-clip": "loading"})
        release.set()
        hold.result(10)
        galleries.library(wait=True)
        status, body = _ready(app.local_url)
        assert (status, body) == (200, {"ready": True, "models": {"tiny-clip": "resident"}, "library": "indexed"})
        assert _get(app.local_url + "config")[0] == 401  # the app itself still needs the login
    finally:
        app.close()


def test_ready_names_a_failed_load(tiny_settings):
    from mmdemo.models.factory import build_manager
    from mmdemo.search.galleries import Galleries
    from mmdemo.ui.serve import readiness

    settings = tiny_settings.replace(clip_model="clip-vit-b-32", preload=("clip",))  # no weights offline
    manager = build_manager(settings)
    manager.preload(settings.preload, background=True).join(60)
    ready, body = readiness(settings, manager, Galleries(settings, manager))
    assert not ready and body["models"]["clip-vit-b-32"].startswith("failed: Model 'clip-vit-b-32'")
