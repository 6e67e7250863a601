"""Every event of the app, called by a hostile client over raw HTTP.

The suite reads the events from `/config` — public and private, the tab-close (unload) handlers
too — so an event added later is walked without anyone listing it. Each is called through
`queue/join` (or `run/predict` for the few that skip the queue) with hostile session ids and,
input by input, hostile values for the input's component type. After every call: nothing outside
the data dir was created, changed or removed (a canary tree beside it is checksummed), the answer
holds no traceback and its errors no server path, and the app still answers another client.
Writes the table of what it walked to test-artifacts/hostile-clients.md.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from mmdemo.files import session_key
from tests.conftest import REPO, start_app, stop_app
from tests.rawclient import Outcome, RawClient

# Never in any answer: a traceback, a server source path, or our "unexpected error" (a handler that failed
# where it should have refused with a reason).
LEAKS = ("Traceback", 'File "/', "site-packages", "Something went wrong")


def hostile_sessions(canary: Path, data_dir: Path) -> list[str]:
    """Session ids a client may choose: paths (the canary tree's, the data dir's), climbs, NUL, 10 kB, non-ASCII."""
    return [
        str(canary),
        str(canary / "made-by-the-app"),
        "../" * 12 + str(canary).lstrip("/"),
        str(data_dir),
        "..",
        "a\x00b",
        "A" * 10_000,
        "会话/ü/🙂",
    ]


def build_canary(root: Path) -> Path:
    """A small tree beside the data dir (a folder, files, an image a hostile input may name)."""
    (root / "nested").mkdir(parents=True, exist_ok=True)
    (root / "secret.txt").write_text("canary: must never change or be served\n")
    (root / "nested" / "notes.md").write_text("# canary\n")
    Image.new("RGB", (32, 32), (1, 2, 3)).save(root / "nested" / "photo.png")
    return root


def checksum(root: Path) -> str:
    """Every path under `root` with its bytes' hash: any create, change or delete shows."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def file_data(path: Path | str) -> dict[str, Any]:
    return {"path": str(path), "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}


def hostile_values(kind: str, server_file: Path) -> list[Any]:
    """Wrong types, huge strings, file data naming a server file: what an input of `kind` may be sent."""
    huge, named = "x" * 1_000_000, file_data(server_file)
    common: list[Any] = [{"unexpected": "object"}]
    values: dict[str, list[Any]] = {
        "textbox": [huge, ["a", "list"], 12345],
        "multimodaltextbox": [
            {"text": "hi", "files": [named]},
            {"text": huge, "files": []},
            "plain text",
            {"text": "hi", "files": [str(server_file)]},
        ],
        "chatbot": [
            [{"role": "user", "content": {"path": str(server_file)}}],
            [{"role": "user", "content": [{"type": "file", "file": named}]}],
            "not a list",
            [{"bogus": 1}],
        ],
        "slider": [1e308, -1e308, "abc", None],
        "number": [1e308, -5, "abc"],
        "checkbox": ["yes", 7],
        "image": [named, str(server_file), {"url": f"file://{server_file}"}, 5],
        "file": [[named], [str(server_file)], named, "x"],
        "dropdown": ["../../etc", ["a"], 5],
        "radio": ["nope", 5],
        "dataset": [999_999, -1, "x"],
        "state": [str(server_file.parent)],  # ignored: the server keeps state itself
    }
    return values.get(kind, ["x"]) + common


class Walk:
    """The calls made, and the checks after each."""

    def __init__(self, client: RawClient, config: dict[str, Any], canary: Path, data_dir: Path, tmp: Path):
        self.client, self.config, self.canary, self.data_dir, self.tmp = client, config, canary, data_dir, tmp
        self.components = {c["id"]: c for c in config["components"]}
        self.expected = checksum(canary)
        self.rows: list[tuple[str, str, str, str]] = []
        self.calls = 0
        self.search = next(d for d in config["dependencies"] if d.get("api_name") == "search")

    def kind(self, component_id: int) -> str:
        return self.components[component_id]["type"]

    def plausible(self, component_id: int) -> Any:
        """A value the page itself would send (a fresh upload for file inputs)."""
        kind, props = self.kind(component_id), self.components[component_id].get("props", {})
        if kind in ("image", "file"):
            path = self.tmp / f"upload-{self.calls}.png"
            Image.new("RGB", (40, 30), (200, 40, 40)).save(path)
            uploaded = self.client.upload(path)
            return [uploaded] if kind == "file" else uploaded
        if kind == "multimodaltextbox":
            return {"text": "What is this?", "files": []}
        if kind == "dataset":
            return 0
        if kind in ("chatbot", "state"):
            return [] if kind == "chatbot" else None
        return props.get("value")

    def call(self, dep: dict[str, Any], data: list[Any], session: str, what: str) -> Outcome:
        self.calls += 1
        trigger = dep["targets"][0][0] if dep["targets"] else None
        event_data = {"index": 0, "value": None, "selected": True} if dep["collects_event_data"] else None
        outcome = self.client.call(
            dep["id"], data, session, queued=dep["queue"], trigger_id=trigger, event_data=event_data
        )
        where = f"event {dep['id']} ({dep['api_name']}) {what}, session {session[:40]!r}: {outcome.said}"
        assert not any(leak in outcome.text for leak in LEAKS), where
        if not outcome.success:
            for server_path in (str(self.data_dir), str(REPO)):
                assert server_path not in (outcome.error or ""), where
        assert checksum(self.canary) == self.expected, f"the canary tree changed after {where}"
        self.rows.append(
            (
                f"{dep['id']} {dep['api_name']}",
                what,
                session[:24].encode("unicode_escape").decode(),
                outcome.said.replace("|", "/").replace("\n", " ")[:100],
            )
        )
        return outcome

    def still_answers(self, after: str) -> None:
        """Another, ordinary client still gets a search answered."""
        data = ["a photo", None, 3, -1.0, 0, None]
        outcome = self.client.call(self.search["id"], data, f"bystander-{self.calls}", trigger_id=None)
        assert outcome.success, f"after {after}, a plain search failed: {outcome.said}"


@pytest.fixture(scope="module")
def hostile_setup(data_dir, tmp_path_factory):
    canary = build_canary(data_dir.parent / "canary-beside-the-data-dir")
    log = tmp_path_factory.mktemp("hostile-clients") / "app.log"
    # Short answers: the walk calls the chat a hundred times.
    url, proc = start_app(data_dir, log, MMDEMO_MAX_NEW_TOKENS="4", MMDEMO_PRELOAD="clip,vlm")
    client = RawClient(url)
    yield client, canary, log
    client.close()
    stop_app(proc)


def test_every_event_survives_hostile_session_ids_and_inputs(hostile_setup, data_dir, tmp_path):
    client, canary, log = hostile_setup
    config = client.config()
    walk = Walk(client, config, canary, data_dir, tmp_path)
    server_file = canary / "nested" / "photo.png"
    sessions = hostile_sessions(canary, data_dir)
    events = [d for d in config["dependencies"] if d["backend_fn"]]
    walked: dict[int, int] = {}
    for dep in events:
        before = walk.calls
        inputs = dep["inputs"]
        for session in sessions:  # what a page would send, from every hostile session id
            walk.call(dep, [walk.plausible(i) for i in inputs], session, "plausible inputs")
        for slot, component_id in enumerate(inputs):  # then each input hostile in turn
            for n, value in enumerate(hostile_values(walk.kind(component_id), server_file)):
                data = [walk.plausible(i) for i in inputs]
                data[slot] = value
                walk.call(dep, data, sessions[n % len(sessions)], f"input {slot} ({walk.kind(component_id)}) #{n}")
        walk.call(dep, [], sessions[0], "no inputs")  # missing fields
        walk.call(dep, [walk.plausible(i) for i in inputs] + ["extra"], sessions[1], "one input too many")
        walk.still_answers(f"event {dep['id']}")
        walked[dep["id"]] = walk.calls - before

    table = ["| event | call | session id | what the client got |", "|---|---|---|---|"]
    table += [f"| {e} | {w} | {s} | {said} |" for e, w, s, said in walk.rows]
    names = ", ".join(f"{d['id']} {d['api_name']} ({walked[d['id']]})" for d in events)
    summary = f"{len(events)} events walked, {walk.calls} calls: {names}"
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    (REPO / "test-artifacts" / "hostile-clients.md").write_text(summary + "\n\n" + "\n".join(table) + "\n")
    print(summary)
    # Every event with a server function was walked, the tab-close handlers among them.
    assert set(walked) == {d["id"] for d in config["dependencies"] if d["backend_fn"]}
    assert any(t[1] == "unload" for d in events for t in d["targets"])
    assert (data_dir / "galleries").is_dir() and any((data_dir / "models").iterdir())  # the data dir survived
    # Gradio logs its own refusals of malformed inputs with tracebacks; our handlers never failed unexpectedly.
    assert "unexpected error in" not in log.read_text()


def test_closing_a_tab_with_a_hostile_session_id_removes_only_that_sessions_files(hostile_setup, data_dir, tmp_path):
    """The unload handlers, reached the way a browser reaches them: its heartbeat connection closing."""
    client, canary, _ = hostile_setup
    config = client.config()
    classify = next(d for d in config["dependencies"] if d.get("api_name") == "classify")
    expected = checksum(canary)
    image = tmp_path / "cat.png"
    Image.new("RGB", (40, 30), (90, 90, 200)).save(image)
    # Session ids without "/" (a heartbeat takes it in the URL path, where "/" cannot pass), and
    # without NUL (Gradio's heartbeat fails on it before any handler runs: the walk above covers it).
    for session in ("..", "...", "A" * 10_000, "会话ü🙂", str(canary).replace("/", "\\")):
        data = [client.upload(image), None, "cat, dog", "custom", "a photo of a {}.", 2]
        assert client.call(classify["id"], data, session).success
        csv = data_dir / "outputs" / "classify" / session_key(session) / "classify.csv"
        assert csv.is_file()  # the session's file, under its key
        with httpx.Client(base_url=client.url, timeout=30) as http:
            # Every byte percent-encoded, dots too: a client would otherwise have ".." folded away.
            quoted = quote(session, safe="").replace(".", "%2E")
            with http.stream("GET", f"/gradio_api/heartbeat/{quoted}") as beat:
                next(beat.iter_lines())  # connected: the server sees the tab open
        # The connection closed: the tab-close handlers run (classify's is the last one registered).
        deadline = time.monotonic() + 30
        while csv.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not csv.exists(), session[:40]
        assert checksum(canary) == expected, session[:40]


def _event(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(d for d in config["dependencies"] if d.get("api_name") == name)


def test_clear_with_a_folder_as_session_id_removes_nothing_there(hostile_setup, tmp_path):
    """It did: the private Clear event ran shutil.rmtree(outputs / session_hash), and a path joined
    with an absolute path is that path."""
    client, _, _ = hostile_setup
    victim = tmp_path / "victim"
    (victim / "inner").mkdir(parents=True)
    (victim / "inner" / "keep.txt").write_text("keep")
    forget = _event(client.config(), "forget")  # Clear: private, yet reachable by fn_index
    for session in (str(victim), "../" * 12 + str(victim).lstrip("/")):
        assert client.call(forget["id"], [], session).success
        assert (victim / "inner" / "keep.txt").read_text() == "keep"


def test_export_with_a_path_as_session_id_writes_inside_the_data_dir(hostile_setup, data_dir, tmp_path):
    """It wrote conversation.json / .md under whatever folder the session id named."""
    client, _, _ = hostile_setup
    export = _event(client.config(), "export_conversation")
    history = [
        {"role": role, "content": [{"type": "text", "text": said}]}
        for role, said in (("user", "hi"), ("assistant", "hello"))
    ]
    outputs = (data_dir / "outputs" / "chat").resolve()
    for session in (str(tmp_path / "chosen"), "../../../" + str(tmp_path / "climbed").lstrip("/")):
        outcome = client.call(export["id"], [history, ""], session)
        assert outcome.success, outcome.said
        served = [Path(f["path"]).resolve() for f in outcome.output[0]]  # Gradio's copies, in its cache
        assert all(path.is_relative_to(data_dir.resolve()) for path in served), served
        assert len(list((outputs / session_key(session)).glob("*/conversation.*"))) == 2  # ours, under the key
    assert not list(tmp_path.rglob("conversation.*"))


def test_a_queued_event_cannot_be_called_past_the_queue(hostile_setup):
    """POST /gradio_api/run/... would run a queued event outside its queue (no limits, no per-client cap)."""
    client, _, _ = hostile_setup
    chat = _event(client.config(), "chat")
    answer = client.http.post("/gradio_api/run/predict", json={"data": [], "fn_index": chat["id"], "session_hash": "x"})
    assert answer.status_code == 404 and "join the queue" in answer.text
