"""Crash safety: SIGKILL an ingest (and a label encoding) mid-way, restart, and lose nothing committed."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # starts app.py (or a benchmark) in processes of its own

COMMIT_EVERY = 100


def _generation(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute("SELECT value FROM state WHERE key = 'generation'").fetchone()
            return int(row[0]) if row else 0
    except sqlite3.Error:  # not created yet
        return 0


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None or time.time() > deadline:
            pytest.fail(f"the process ended (or stalled) before the kill point:\n{proc.stdout.read()[-2000:]}")
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no cleanup handlers, no atexit
    proc.wait()


def _env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "MMDEMO_PROFILE": "tiny", "MMDEMO_DATA_DIR": str(data_dir),
            "MMDEMO_INDEX_COMMIT_EVERY": str(COMMIT_EVERY), "MMDEMO_CLIP_BATCH_SIZE": "20"}  # fmt: skip


def test_sigkill_mid_ingest_keeps_exactly_the_committed_batches(data_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(500):
        pixels = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((320, 240)).save(photos / f"{i:03d}.jpg", quality=85)
    gallery = f"crash{os.getpid()}"
    command = [sys.executable, "-m", "mmdemo", "index", str(photos), "--gallery", gallery]
    env = _env(data_dir)
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    db = None

    def two_commits() -> bool:
        nonlocal db
        db = db or next(iter(data_dir.glob(f"galleries/*/{gallery}/meta.sqlite3")), None)
        return db is not None and _generation(db) >= 2

    _kill_when(proc, two_commits)
    committed = _generation(db)
    assert committed < 500 // COMMIT_EVERY, "killed too late to prove anything"

    # Restart: the last committed state loads as it was, without error or recomputation.
    from mmdemo.config import Settings
    from mmdemo.models.factory import build_manager
    from mmdemo.search.gallery import open_gallery

    settings = Settings.from_env(env)
    reopened = open_gallery(data_dir, build_manager(settings).get("clip"), gallery, None, settings)
    names = [item.name for item in reopened.store.items()]
    assert names == [f"{i:03d}.jpg" for i in range(committed * COMMIT_EVERY)], "exactly the committed batches"
    assert len(reopened.store.index) == len(names)
    reopened.store.close()

    # Resume: committed images are duplicates, images embedded after the last commit come from
    # the embedding cache, and only the rest is encoded.
    out = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300).stdout
    pattern = r"Indexed (\d+) image\(s\).*; (\d+) duplicate\(s\), \d+ near-dup\S+, (\d+) skipped, (\d+) from cache"
    summary = re.search(pattern, out)
    indexed, duplicates, skipped, from_cache = map(int, summary.groups())
    assert duplicates == committed * COMMIT_EVERY and skipped == 0
    assert indexed == 500 - duplicates
    assert "holds 500 image(s)" in out
    print(f"killed after {committed} commits ({duplicates} images); resumed: {from_cache} from cache, "
          f"{indexed - from_cache} encoded")  # fmt: skip


LABEL_SCRIPT = """
import sys
from mmdemo.classify.templates import templates_for
from mmdemo.classify.zeroshot import cached_classifier
from mmdemo.config import Settings
from mmdemo.models.factory import build_manager
from mmdemo.embedding.vectorcache import VectorCache

settings = Settings.from_env()
clip = build_manager(settings).get("clip")
cache = VectorCache(settings.data_dir / "embeddings.sqlite3")
labels = [f"crash label {i}" for i in range(int(sys.argv[1]))]
classifier = cached_classifier(clip, labels, templates_for("openai-80", ""), cache)
print("encoded", classifier.encoded, "misses", cache.misses, "disk hits", cache.disk_hits)
"""


def test_sigkill_mid_label_encoding_keeps_the_finished_chunks(data_dir):
    from mmdemo.classify.zeroshot import LABEL_CHUNK

    labels = 12 * LABEL_CHUNK
    env = _env(data_dir)
    db = data_dir / "embeddings.sqlite3"

    def cached() -> int:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                sql = "SELECT COUNT(*) FROM vector WHERE key LIKE 'crash label %'"
                return conn.execute(sql).fetchone()[0]
        except sqlite3.Error:
            return 0

    command = [sys.executable, "-c", LABEL_SCRIPT, str(labels)]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _kill_when(proc, lambda: cached() >= 2 * LABEL_CHUNK)
    kept = cached()
    assert kept % LABEL_CHUNK == 0 and kept < labels, "whole chunks only, and killed before the end"
    out = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    encoded, misses, hits = map(int, re.search(r"encoded (\d+) misses (\d+) disk hits (\d+)", out.stdout).groups())
    assert hits == kept and encoded == labels - kept == misses
    assert cached() == labels
