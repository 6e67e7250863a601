"""Shared fixtures: tiny random-weight models built once per test session, offline."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

# Tests never reach a model hub: a missing file must fail at once, not after a network timeout.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Reading text (OCR: real weights, ~0.3 s an image) is off in every app and command the tests start, but for
# the tests of it (tests/test_text.py, tests/test_text_app.py), which turn it on.
os.environ.setdefault("MMDEMO_OCR", "false")

from mmdemo.config import Settings

REPO = Path(__file__).resolve().parents[1]
# Tests that use one of these start app.py, a browser or an inference server: marked e2e, so that
# `pytest -m "not e2e"` is the fast lane (modules that start processes themselves say so with pytestmark).
E2E_FIXTURES = {
    "served_app",
    "vlm_server",
    "page",
    "hostile_app",
    "hostile_setup",
    "flood_app",
    "mcp_app",
    "launch",
    "chat_client",
    "sign_app",
    "photo_app",
    "video_app",
}
SHARED = REPO.parent / "shared"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared is absent (a user's clone)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
    # The slow lane (kill -9 mid-write, the quality goals on generated sets): left out of a plain `pytest`, run by
    # `pytest -m slow` (CI runs both) and whenever a file or test is named (each test runnable alone).
    named = config.args != list(config.getini("testpaths"))
    if named or "slow" in (config.getoption("markexpr") or ""):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir per session: tiny models are built into it on first use and reused."""
    return tmp_path_factory.mktemp("mmdemo-data")


@pytest.fixture(scope="session")
def tiny_settings(data_dir: Path) -> Settings:
    """Tiny profile, nothing preloaded, fp32 (exact comparisons; bf16 is tested separately)."""
    return Settings(profile="tiny", data_dir=data_dir, preload=(), dtype="float32", ocr=False)


@pytest.fixture(scope="session")
def session_manager(tiny_settings: Settings):
    """A manager shared by tests that only read from it (feature and UI tests)."""
    from mmdemo.models.factory import build_manager

    return build_manager(tiny_settings)


@pytest.fixture(scope="module", params=["tiny-qwen2.5-vl", "tiny-qwen3-vl"])
def lively_vlm(request, data_dir):
    """A tiny VLM with larger random weights: greedy answers vary token to token, so comparing
    two answers can fail (the stock init answers every prompt with the same repeated token)."""
    import torch

    from mmdemo.models import tiny
    from mmdemo.models.device import placement_for
    from mmdemo.models.registry import REGISTRY
    from mmdemo.models.vlm import load_vlm

    folder = tiny.ensure_built(request.param, data_dir / "models")
    vlm = load_vlm(REGISTRY[request.param], placement_for("cpu", "float32"), folder)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in vlm.model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.1)
    return vlm


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Three small, distinct RGB images on disk."""
    from PIL import Image

    paths = []
    for i, color in enumerate([(220, 30, 30), (30, 200, 40), (20, 40, 230)]):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (64 + 16 * i, 48), color).save(path)
        paths.append(path)
    return paths


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(data_dir: Path, log: Path, **env: str) -> tuple[str, subprocess.Popen]:
    """`python app.py` with the tiny profile on a free port, as a user would start it; its URL once
    it is ready (GET /ready: the preloaded models resident, the bundled photos indexed)."""
    url, proc = spawn_app(data_dir, log, **env)
    wait_until_answers(url + "ready", proc, log, "app.py", 180)
    return url, proc


def spawn_app(data_dir: Path, log: Path, **env: str) -> tuple[str, subprocess.Popen]:
    """`python app.py` with the tiny profile on a free port, started and not waited for: its URL."""
    port = free_port()
    env = {**os.environ, "MMDEMO_PROFILE": "tiny", "MMDEMO_DATA_DIR": str(data_dir), "MMDEMO_PORT": str(port), **env}
    # Every test client is this machine, and the session's apps share one data dir: one client, many tests.
    # (tests/test_strangers.py tests the per-client cap on apps of its own.)
    env.setdefault("MMDEMO_MAX_GALLERIES_PER_CLIENT", "1000")
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    return f"http://127.0.0.1:{port}/", proc


def wait_until_answers(url: str, proc: subprocess.Popen, log: Path, what: str, seconds: float) -> None:
    """Return once `url` answers 2xx (from the app itself, not app.py's starting page); fail with the
    end of `log` if `proc` exits or time runs out."""
    from mmdemo.serving.starting import MARKER

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.headers.get(MARKER) is None:
                    return
            time.sleep(0.3)
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"{what} exited early:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
    proc.kill()
    pytest.fail(f"{what} did not answer within {seconds:.0f} s:\n{log.read_text()[-3000:]}")


def stop_app(proc: subprocess.Popen) -> None:
    """Stop an app started by start_app."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def launch(session_manager):
    """Build and serve the tiny app in-process on a free port with some settings; closed afterwards."""
    from mmdemo.ui import build_app
    from mmdemo.ui.serve import serve

    apps = []

    def start(settings):
        app = build_app(settings, session_manager)
        serve(app, settings.replace(port=free_port()), manager=session_manager, prevent_thread_lock=True, quiet=True)
        apps.append(app)
        return app, app.local_url

    yield start
    for app in apps:
        app.close()


def start_vlm_server(model_dir: Path, log: Path, port: int | None = None) -> tuple[str, subprocess.Popen]:
    """`transformers serve` pinned to `model_dir` on a loopback port: a real OpenAI-compatible
    server (the one the dev requirements bring); its /v1 URL once GET /health answers."""
    port = port or free_port()
    serve = Path(sys.executable).with_name("transformers")
    cmd = [str(serve), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"]
    with log.open("a") as out:
        proc = subprocess.Popen(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=out, stderr=subprocess.STDOUT)
    wait_until_answers(f"http://127.0.0.1:{port}/health", proc, log, "transformers serve", 120)
    return f"http://127.0.0.1:{port}/v1", proc


@pytest.fixture(scope="session")
def tiny_vlm_dir(data_dir: Path) -> Path:
    """The tiny Qwen2.5-VL folder (weights, processor, chat template) the production loader reads."""
    from mmdemo.models.tiny import ensure_built

    return ensure_built("tiny-qwen2.5-vl", data_dir / "models")


@pytest.fixture(scope="session")
def vlm_server(tiny_vlm_dir, tmp_path_factory):
    """A `transformers serve` of the tiny Qwen2.5-VL shared by the session: (v1 URL, model name)."""
    url, proc = start_vlm_server(tiny_vlm_dir, tmp_path_factory.mktemp("vlm-server") / "server.log")
    yield url, str(tiny_vlm_dir)
    stop_app(proc)


@pytest.fixture(scope="session")
def served_app(data_dir, tmp_path_factory):
    """The tiny app served by `python app.py` (shared by the session's tests): (url, log path)."""
    log = tmp_path_factory.mktemp("app") / "app.log"
    url, proc = start_app(data_dir, log)
    yield url, log
    stop_app(proc)
