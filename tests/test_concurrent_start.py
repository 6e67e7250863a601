"""A request that arrives while the background preload is still importing libraries must work.

transformers resolves its names lazily; a thread that does its first `from transformers import X`
while another thread is half-way through importing transformers gets "cannot import name X".
This runs in a fresh interpreter, because the race only exists before the first import.
"""

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e  # starts app.py (or a benchmark) in processes of its own

SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from mmdemo.config import Settings
    from mmdemo.models.factory import build_manager
    from mmdemo.models.tiny import ensure_built

    data = Path(sys.argv[1])
    manager = build_manager(Settings(profile="tiny", data_dir=data, preload=(), dtype="float32"))
    preload = manager.preload(["clip"], background=True)  # imports open_clip, which imports transformers
    while "transformers" not in sys.modules and preload.is_alive():
        time.sleep(0.001)  # the request lands while transformers is initialising
    vlm = manager.get("vlm")
    preload.join()
    assert manager.is_loaded("clip") and vlm.model is not None, manager.errors
    print("ok")
    """
)


def test_first_request_during_preload_imports(data_dir):
    # Build first, so the subprocess spends its time on imports and loads, not on building.
    from mmdemo.models.tiny import ensure_built

    for model_id in ("tiny-clip", "tiny-qwen2.5-vl"):
        ensure_built(model_id, data_dir / "models")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(data_dir)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
