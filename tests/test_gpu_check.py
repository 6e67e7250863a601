"""bench/gpu_check.py stays working: its --smoke mode runs the same code on CPU with tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # starts app.py (or a benchmark) in processes of its own


def test_gpu_check_smoke_runs_every_part_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "bench/gpu_check.py", "--smoke", "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {row["check"]: row for row in json.loads(out.read_text())}
    assert any(c.startswith("CLIP tiny-clip images/s") and r["value"] > 0 for c, r in rows.items())
    vlm = {c.split(": ", 1)[1]: r["value"] for c, r in rows.items() if c.startswith("tiny Qwen2.5-VL ")}  # any dtype
    rerank = "re-rank k=20, batches of 8"
    assert {"load", "resident (manager)", "turn-1 TTFT", "turn-2 TTFT, prefix reuse", "decode", rerank} == set(vlm)
    assert all(value > 0 for value in vlm.values())
    assert rows["VLM 8bit"]["value"] == "skipped" and "FAILED" not in done.stdout
    assert rows["mmdemo's VLM for this machine"]["value"].startswith("qwen2.5-vl")
