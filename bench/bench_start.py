"""Start-up: how long until `python -m mmdemo index` is done, and until `python app.py` answers?

    python bench/bench_start.py                 # 100 photos (Flickr8k from ../shared, else generated)
    git worktree add /tmp/before HEAD~3 && python bench/bench_start.py --before /tmp/before

- `index`: `python -m mmdemo index` on N photos (random-weight ViT-B-32: no download) against the
  textbook loop in one script (import open_clip, create the same model, encode the photos in batches
  of 32, exit), both as fresh processes. Prints wall times, the indexing time `index` reports,
  their difference (start-up and shut-down), the ratio to the textbook loop, and which heavy
  libraries the command imported (a CLIP-only command should import neither transformers, gradio
  nor qwen-vl-utils). `--before DIR` measures another checkout the same way, interleaved.
- `app.py` (tiny profile, models built by a first, unmeasured start): seconds from start to its
  first HTTP answer on `/` (the starting page, mmdemo/serving/starting.py), to a URL printed, to the app's
  own page and to `GET /ready` 200; against a bare `gr.Blocks().launch()` started the same way.
  Goal: first answer <= 3 s.
Each figure is the median of `--repeat` runs; the machine's speed drifts, so compare ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from common import REPO, free_port, sample_photos, table

TEXTBOOK = """
import sys, torch, open_clip
from PIL import Image
paths = sys.argv[1:]
model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32")
model.eval()
with torch.inference_mode():
    for i in range(0, len(paths), 32):
        batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[i:i + 32]])
        model.encode_image(batch)
"""
HELLO = "import gradio as gr\nwith gr.Blocks() as demo:\n    gr.Markdown('hello')\ndemo.launch(server_port={port})\n"
PHASES = """
import json, sys, time
marks, start = [], time.perf_counter()
def mark(name):
    marks.append((name, time.perf_counter()))
from pathlib import Path
from mmdemo.config import Settings
from mmdemo.models.factory import build_manager
mark("python + mmdemo's own imports")
settings = Settings(profile="random", data_dir=Path(sys.argv[2]), preload=())
manager = build_manager(settings, ("clip",))
mark("model manager (imports torch: which device?)")
from mmdemo.models.libs import import_model_libraries
from mmdemo.models.registry import resolve
from mmdemo.models.clip import needs_transformers
import_model_libraries(transformers=needs_transformers(resolve(manager.resolve_id("clip"))))
mark("model libraries (open_clip, without transformers)")
clip = manager.get("clip")
mark("CLIP build (random ViT-B-32; a checkpoint load for real weights)")
from mmdemo.search.gallery import open_gallery
from mmdemo.embedding.vectorcache import embedding_cache
gallery = open_gallery(settings.data_dir, clip, "phases", embedding_cache(settings), settings)
mark("store open (SQLite, FAISS)")
report = gallery.add_folder(Path(sys.argv[1]), lambda c: None)
mark("indexing: hash, decode, encode, commit")
previous, rows = start, []
for name, at in marks:
    rows.append((name, round(at - previous, 2)))
    previous = at
print(json.dumps(rows))
"""
HEAVY = ("transformers", "gradio", "qwen_vl_utils", "open_clip", "torch", "faiss")


def run_index(repo: Path, folder: Path, data_dir: Path, gallery: str) -> tuple[float, float]:
    """(wall s, indexing s as reported) of one `python -m mmdemo index` of `repo`."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(repo)}
    command = ["index", str(folder), "--gallery", gallery, "--profile", "random", "--data-dir", str(data_dir)]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mmdemo", *command], cwd=repo, env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    wall = time.perf_counter() - start
    return wall, float(re.search(r"image\(s\) in ([\d.]+) s", done.stdout).group(1))


def imported_by_index(repo: Path, folder: Path, data_dir: Path) -> list[str]:
    """The heavy libraries `index` imports (from sys.modules once it is done, in the same process)."""
    probe = ("import sys; from mmdemo.commands.cli import main; main(sys.argv[1:]); "
             f"print(*(m for m in {HEAVY!r} if sys.modules.get(m) is not None))")  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(repo)}
    command = ["index", str(folder), "--gallery", "probe", "--profile", "random", "--data-dir", str(data_dir)]
    done = subprocess.run([sys.executable, "-c", probe, *command], cwd=repo, env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return done.stdout.split("\n")[-2].split()


def phases(folder: Path, data_dir: Path) -> list[tuple[str, float]]:
    """Where `index`'s time goes, step by step, in a fresh process (the exit is not counted)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", PHASES, str(folder), str(data_dir)], cwd=REPO, env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return [tuple(row) for row in json.loads(done.stdout.strip().splitlines()[-1])]


def run_textbook(photos: list[Path]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", TEXTBOOK, *map(str, photos)], check=True, capture_output=True)
    return time.perf_counter() - start


def first_answers(
    command: list[str], env: dict[str, str], port: int, bare: bool = False, repo: Path = REPO
) -> list[float]:
    """Seconds from start to: the first HTTP answer on /, a URL printed, the app's own page on /
    (not the starting page), and GET /ready 200 (not for the bare app, which has no /ready)."""
    base = f"http://127.0.0.1:{port}/"
    times = {name: float("nan") for name in ("answer", "url", "page", "ready")}
    checks = {
        "answer": lambda: _status(base) is not None,
        "url": lambda: "http://" in out.read_text(),
        "page": lambda: _status(base) == "app",
        "ready": lambda: bare or _status(base + "ready") == "app",
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.log"
        with out.open("w") as log:
            start = time.perf_counter()
            proc = subprocess.Popen(command, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while time.perf_counter() - start < 180 and any(v != v for v in times.values()):  # nan: not yet
                for name, check in checks.items():
                    if times[name] != times[name] and check():
                        times[name] = time.perf_counter() - start
                time.sleep(0.05)
        finally:
            proc.terminate()
            proc.wait(30)
    return [times[name] for name in ("answer", "url", "page", "ready")]


def _status(url: str) -> str | None:
    """None: no answer; "starting": app.py's starting page (or a 503); "app": the app's own 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return "starting" if answer.headers.get("X-Mmdemo-Starting") else "app"
    except urllib.error.HTTPError:
        return "starting"
    except OSError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--before", type=Path, help="another checkout to measure the same way (e.g. a git worktree)")
    args = parser.parse_args()

    photos = sample_photos(args.photos)
    folder = Path(tempfile.mkdtemp(prefix="mmdemo-start-"))
    for p in photos:  # one folder holding exactly these photos
        (folder / p.name).symlink_to(p.resolve())
    repos = {"this checkout": REPO, **({"before": args.before.resolve()} if args.before else {})}
    rows, apps = [], []
    with tempfile.TemporaryDirectory(prefix="mmdemo-start-data-") as data:
        textbook = []
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in repos}
        for i in range(args.repeat):  # interleaved: the machine's drift spreads over every row
            textbook.append(run_textbook(sorted(folder.iterdir())))
            for name, repo in repos.items():
                runs[name].append(run_index(repo, folder, Path(data) / name, f"bench{i}"))  # all photos encoded
        base = statistics.median(textbook)
        rows.append((f"textbook loop ({len(photos)} photos)", f"{base:.2f}", "", "1.00x", ""))
        for name, repo in repos.items():
            wall, indexing = (statistics.median(r[k] for r in runs[name]) for k in (0, 1))
            heavy = ", ".join(imported_by_index(repo, folder, Path(data) / name))
            rows.append((f"index, {name}", f"{wall:.2f}", f"{wall - indexing:.2f} (indexing {indexing:.2f})",
                         f"{wall / base:.2f}x", heavy))  # fmt: skip
        print(table(rows, ("command", "wall (s)", "outside the indexing", "/ textbook", "heavy libraries imported")))
        steps = phases(folder, Path(data) / "phases")
        print(table([(name, f"{s:.2f}") for name, s in steps], ("`index` step (this checkout)", "s")))

        env = {**os.environ, "HF_HUB_OFFLINE": "1", "MMDEMO_PROFILE": "tiny", "GRADIO_ANALYTICS_ENABLED": "False"}
        results: dict[str, list[list[float]]] = {"bare gr.Blocks().launch()": [], **{n: [] for n in repos}}
        for name, repo in repos.items():  # a first start builds the tiny models: not what is measured
            port = free_port()
            first_answers([sys.executable, "app.py"], {**env, "MMDEMO_PORT": str(port),
                          "MMDEMO_DATA_DIR": str(Path(data) / f"app-{name}")}, port, repo=repo)  # fmt: skip
        for _ in range(args.repeat):
            port = free_port()
            hello = [sys.executable, "-c", HELLO.format(port=port)]
            results["bare gr.Blocks().launch()"].append(first_answers(hello, env, port, bare=True))
            for name, repo in repos.items():
                port = free_port()
                app_env = {**env, "MMDEMO_PORT": str(port), "MMDEMO_DATA_DIR": str(Path(data) / f"app-{name}")}
                results[name].append(first_answers([sys.executable, "app.py"], app_env, port, repo=repo))
    medians = {name: [statistics.median(run[i] for run in runs) for i in range(4)] for name, runs in results.items()}
    bare = medians["bare gr.Blocks().launch()"][0]
    for name, med in medians.items():
        label = name if name.startswith("bare") else f"python app.py (tiny), {name}"
        ready = "" if name.startswith("bare") else f"{med[3]:.2f}"
        apps.append((label, *(f"{m:.2f}" for m in med[:3]), ready, f"{med[0] / bare:.2f}x"))
    print(table(apps, ("app", "first answer (s)", "URL printed (s)", "app page (s)", "/ready (s)", "answer / bare")))
    first = medians["this checkout"][0]
    print(f"goal: app.py's first answer <= 3 s: {'met' if first <= 3 else 'NOT met'} ({first:.2f} s)")


if __name__ == "__main__":
    main()
