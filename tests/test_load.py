"""A short run of bench/load_test.py: 8 concurrent clients, mixed requests, a small queue."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e  # starts app.py (or a benchmark) in processes of its own


def test_eight_clients_are_all_answered_or_told_the_queue_is_full(data_dir, tmp_path):
    out = tmp_path / "load.json"
    command = [sys.executable, "bench/load_test.py", "--clients", "8", "--seconds", "12", "--max-queue-size", "4",
               "--request-timeout", "90", "--data-dir", str(data_dir), "--json", str(out)]  # fmt: skip
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=400)
    print(run.stdout)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]  # no error, hang or traceback
    figures = json.loads(out.read_text())
    assert not figures["errors"] and figures["hung_threads"] == 0 and figures["tracebacks_in_log"] == 0
    answered = {row[0]: row[1] for row in figures["rows"]}
    assert all(answered[e] >= 1 for e in ("chat", "index_images", "search", "classify")), answered
    assert sum(row[2] for row in figures["rows"]) >= 1, "8 clients against 2 slots + 4 places: some told"
    assert "Queue is full" in figures["told"]["queue_full"]
