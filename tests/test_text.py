"""Words in pictures: text read at index time by the real PP-OCRv4 models (RapidOCR's wheel carries
them), searched forgivingly, fused with CLIP. The tiny CLIP has random weights, so whatever finds a
sign here found it by its text."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmdemo.models import ocr
from mmdemo.text.signs import Damage, draw_sign, find_font
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(not ocr.available(), reason="rapidocr-onnxruntime not installed")
needs_cjk = pytest.mark.skipif(
    find_font(cjk=True) is None, reason="no Chinese font (apt-get install fonts-wqy-microhei)"
)
SHARED_PHOTOS = REPO.parent / "shared" / "data" / "flickr8k_1k" / "images"


def photo(seed: int) -> Image.Image:
    """A 640x480 'photo' with no text: smooth colours and noise."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(0, 1, 640), np.linspace(0, 1, 480))
    base = np.stack([x * 200, y * 180, (1 - x) * 160], axis=-1) + rng.normal(0, 12, (480, 640, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


MILD = Damage(tilt=5, blur=0.6)


def sign(folder: Path, name: str, phrase: str, seed: int = 0, damage: Damage = MILD) -> Path:
    path = folder / name
    draw_sign(photo(seed), phrase, damage, seed=seed).save(path)
    return path


@pytest.fixture
def text_settings(tiny_settings, tmp_path):
    return tiny_settings.replace(data_dir=tmp_path / "data", ocr=True, gallery_dir=tmp_path / "no-bundled-photos")


def test_a_rendered_sign_is_read_back_with_its_box(tmp_path):
    path = sign(tmp_path, "gate.jpg", "GATE B22 EXIT", damage=Damage(tilt=8, blur=1.0, contrast=0.8, quality=50))
    lines = ocr.OcrModel().read(np.asarray(Image.open(path).convert("RGB")))
    read = "".join(line.text for line in lines).replace(" ", "").upper()
    assert "GATEB22" in read and "EXIT" in read, lines
    xs, ys = [x for x, _ in lines[0].box], [y for _, y in lines[0].box]
    assert 0 <= min(xs) < max(xs) <= 640 and 0 <= min(ys) < max(ys) <= 480 and 0.5 <= lines[0].confidence <= 1


def test_text_search_forgives_case_width_spacing_and_ocr_confusions(tmp_path):
    """FTS5 trigram (3+ characters), instr (1-2 character Chinese), folding on both sides, one edit."""
    from mmdemo.text.query import parse
    from mmdemo.text.store import Reading, TextStore

    store = TextStore(tmp_path / "readings")
    box = ((0, 0), (10, 0), (10, 10), (0, 10))
    lines = {"plate": "RE16TGK", "invoice": "INV0ICE 2041", "beach": "夕阳下的海滩出口", "room": "Ro0m 12"}
    store.put([Reading(h, (ocr.TextLine(t, box, 0.9),)) for h, t in lines.items()])

    def found(query: str) -> list[str]:
        return [m.hash for m in store.search(parse(query))]

    assert found("RE16") == ["plate"]  # a substring; "RE16 TGK" (the space OCR lost) too
    assert found("re16 tgk") == ["plate"]
    assert found("invoice") == ["invoice"]  # O/0 folded
    assert found("ＩＮＶＯＩＣＥ") == ["invoice"]  # full-width
    assert found("lnvoice") == ["invoice"]  # I/l/1
    assert found("invoise") == ["invoice"]  # one edit in a word of five letters or more
    assert found("出口") == ["beach"] and found("海滩出口") == ["beach"]  # 2 characters: no trigram
    assert found('"gate b22"') == []
    assert found("text:room") == ["room"] and found("text:hotel room") == []
    match = store.search(parse("2041"))[0]
    assert match.marked == "INV0ICE «2041»" and match.exact == 2
    store.put([Reading("plate", (ocr.TextLine("XY99 ABC", box, 0.9),))])  # read again: replaced, index too
    assert found("RE16") == [] and found("xy99") == ["plate"] and store.count() == (4, 4)


def test_a_word_painted_on_an_upload_finds_it_in_english_and_chinese(text_settings, session_manager, tmp_path):
    from mmdemo.embedding.ingest import ImageFile
    from mmdemo.search.galleries import Galleries, session_gallery

    galleries = Galleries(text_settings, session_manager)
    token = galleries.new_private("page", "tester")
    files = [
        sign(tmp_path, "receipt.jpg", "INVOICE 2041", seed=1),
        sign(tmp_path, "station.jpg", "火车站出口", seed=2) if find_font(cjk=True) else None,
        tmp_path / "plain.jpg",
    ]
    photo(3).save(files[2])
    mine = galleries.get(session_gallery(token))
    report = mine.add_files([ImageFile(str(p), p.name) for p in files if p], read_now=True)
    assert len(report.added) == len([p for p in files if p])
    source, hit = galleries.search("inv0ice", None, 3, -1.0, token)[0]
    assert (source, hit.item.name) == ("yours", "receipt.jpg")
    assert hit.matched.startswith("«INVOICE»") and "2041" in hit.matched  # OCR may drop the space
    assert hit.scores.text == 1.0 and hit.scores.clip is not None
    assert hit.scores.fused > max(h.scores.fused for _, h in galleries.search("inv0ice", None, 3, -1.0, token)[1:])
    if find_font(cjk=True):
        assert galleries.search("出口", None, 3, -1.0, token)[0][1].item.name == "station.jpg"
    # Strict: a text: word keeps images whose text holds it, and only those.
    assert [h.item.name for _, h in galleries.search("text:invoice", None, 3, -1.0, token)] == ["receipt.jpg"]


def test_images_indexed_before_are_read_by_the_backfill_without_new_clip_work(text_settings, session_manager, tmp_path):
    from mmdemo.embedding.ingest import ImageFile
    from mmdemo.search.galleries import LIBRARY, Galleries

    before = Galleries(text_settings.replace(ocr=False), session_manager)
    library = before.library()
    library.add_files([ImageFile(str(sign(tmp_path, "exit.jpg", "FIRE EXIT", seed=4)), "exit.jpg")], keep_source=True)
    generation = library.store.generation
    assert before.text is None and before.search("fire exit", None, 1, -1.0)[0][1].matched == ""

    after = Galleries(text_settings, session_manager)  # a restart with OCR on
    after.library()  # opening the gallery queues what was never read
    assert after.stages.wait(120)
    assert after.get(LIBRARY).store.generation == generation  # no re-embedding: nothing committed
    assert after.search("fire exit", None, 1, -1.0)[0][1].matched == "«FIRE» «EXIT»"


def test_the_chat_model_is_given_the_text_read_in_each_result(text_settings, session_manager, tmp_path):
    from mmdemo.ask.about import ask_history
    from mmdemo.ask.service import PhotoAsker
    from mmdemo.chat.backend import chat_backend
    from mmdemo.embedding.ingest import ImageFile
    from mmdemo.search.galleries import Galleries, session_gallery

    galleries = Galleries(text_settings, session_manager)
    token = galleries.new_private("page", "tester")
    path = sign(tmp_path, "receipt.jpg", "TOTAL 18.40", seed=5)
    galleries.get(session_gallery(token)).add_files([ImageFile(str(path), path.name)], read_now=True)
    asker = PhotoAsker(text_settings, galleries, chat_backend(text_settings, session_manager))
    hits = galleries.search("total", None, 1, -1.0, token)
    turn = ask_history(asker.shown_hits(hits, token), "What is the total?")
    notes = [m["content"] for m in turn if isinstance(m["content"], str) and "OCR" in m["content"]]
    assert len(notes) == 1 and "18.40" in notes[0] and "TOTAL" in notes[0]
    off = PhotoAsker(text_settings.replace(ocr_in_chat=False), galleries, asker.backend)
    assert not any("OCR" in str(m["content"]) for m in ask_history(off.shown_hits(hits, token), "?"))


def _index(data: Path, folder: Path) -> subprocess.Popen:
    env = {**os.environ, "MMDEMO_OCR": "true"}
    command = [sys.executable, "-m", "mmdemo", "index", str(folder), "--profile", "tiny", "--data-dir", str(data)]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _read_count(data: Path) -> int:
    db = data / "readings" / "library" / "text.sqlite3"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT count(*) FROM reading").fetchone()[0])
    except sqlite3.OperationalError:  # created, its tables not yet
        return 0


@pytest.mark.e2e
@pytest.mark.slow
def test_kill_9_during_the_text_stage_loses_nothing(tmp_path):
    """`python -m mmdemo index` killed while it reads text: the CLIP index and the text read so far stay; the
    next run reads only what was left, and every sign is found (CLI `search` and `list --text`)."""
    folder = tmp_path / "signs"
    folder.mkdir()
    phrases = [f"ROOM {100 + n}" for n in range(24)]
    for n, phrase in enumerate(phrases):
        sign(folder, f"room{n:02d}.jpg", phrase, seed=n)
    data = tmp_path / "data"
    proc = _index(data, folder)
    deadline = time.monotonic() + 300
    while _read_count(data) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the database for the first committed batch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    read_before = _read_count(data)
    assert 0 < read_before < len(phrases), read_before
    done = _index(data, folder)
    out, _ = done.communicate(timeout=600)
    assert done.returncode == 0, out
    assert f"text: {len(phrases) - read_before} / {len(phrases) - read_before} images" in out  # only the rest
    assert _read_count(data) == len(phrases)
    cli = [sys.executable, "-m", "mmdemo", "search", "room 117", "--profile", "tiny", "--data-dir", str(data)]
    on = {**os.environ, "MMDEMO_OCR": "true"}
    found = subprocess.run(cli, cwd=REPO, env=on, capture_output=True, text=True, timeout=300, check=True).stdout
    first = found.splitlines()[0]  # "1  <id>  room17.jpg  clip 0.150  «ROOM» «117»" (or as OCR read it: «RO0M»)
    assert first.split("\t")[2] == "room17.jpg" and "«117»" in first and "«RO" in first
    listed = subprocess.run(
        [sys.executable, "-m", "mmdemo", "list", "--text", "--profile", "tiny", "--data-dir", str(data)],
        cwd=REPO, env=on, capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    # With reading text off, `search` is CLIP's alone (no text marked), not an error.
    off = subprocess.run(cli, cwd=REPO, capture_output=True, text=True, timeout=300, check=True).stdout
    assert len(off.splitlines()) == 10 and "«" not in off
    assert re.search(r"\n\tRO[O0]M( / | )?103\n", listed), listed  # the lines read, in reading order


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(not SHARED_PHOTOS.is_dir(), reason="../shared/data/flickr8k_1k is absent")
@needs_cjk
def test_eval_text_search_reaches_the_recall_goals_on_the_generated_set(tmp_path):
    """`eval make-text-set` draws every phrase onto a Flickr8k photo; `eval text-search` measures. With the
    random tiny CLIP only the text can find them: fused R@1 >= 0.9 and R@5 >= 0.95 in each language."""
    base = [sys.executable, "-m", "mmdemo", "eval"]
    out = tmp_path / "set"
    make = [*base, "make-text-set", "--photos", str(SHARED_PHOTOS), "--out", str(out), "--plain", "10"]
    subprocess.run(make, cwd=REPO, check=True, capture_output=True, timeout=300)
    figures = tmp_path / "figures.json"
    run = [*base, "text-search", "--images", str(out), "--queries", str(out / "queries.csv"), "--json", str(figures)]
    env = {**os.environ, "MMDEMO_OCR": "true"}
    flags = ["--profile", "tiny", "--data-dir", str(tmp_path / "data")]
    done = subprocess.run([*run, *flags], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(figures.read_text())
    for language in ("en", "zh"):
        assert result[language]["fused_r@1"] >= 0.9 and result[language]["fused_r@5"] >= 0.95, (language, result)
        assert result[language]["clip_r@5"] < 0.5  # random CLIP: the text found them
    assert result["all"]["cer"] < 0.1


def test_an_image_the_ocr_cannot_read_is_indexed_without_text_and_says_why(text_settings, tmp_path, caplog):
    from mmdemo.search.stages import Source
    from mmdemo.text.stage import text_stage

    stage = text_stage(text_settings)
    assert stage is not None
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with caplog.at_level("INFO", logger="mmdemo.text.stage"):
        stage.read("library", [Source("ab" * 16, str(broken))])
    reading = stage.reading("library", "ab" * 16)
    assert reading is not None and reading.lines == () and reading.error  # stored: not read again at each start
    assert stage.pending("library", ["ab" * 16]) == []
    assert "broken.jpg" in caplog.text


def test_text_databases_held_open_stay_few_however_many_galleries(text_settings):
    """A flood of agents' collections must not hold a text database (three files each) open per collection."""
    from mmdemo.search.held import OPEN_STORES
    from mmdemo.search.stages import Source
    from mmdemo.text.stage import text_stage

    stage = text_stage(text_settings)
    assert stage is not None
    stage.pending("library", ["00" * 16])
    for n in range(3 * OPEN_STORES):
        stage.read(f"sessions/{n:032x}", [Source(f"{n:032x}", "/nonexistent.jpg")])
    open_now = [name for name, store in stage.stores._stores.items() if store._conn is not None]
    assert len(open_now) == OPEN_STORES + 1 and "library" in open_now
    assert stage.reading(f"sessions/{0:032x}", f"{0:032x}") is not None  # a closed one opens again


def test_the_background_queue_is_bounded(text_settings, monkeypatch, caplog):
    """Images waiting to be read are capped in total (a flood of big uploads cannot grow the queue without end):
    beyond the cap an add's images are left for a later backfill, and said so."""
    from mmdemo.search import stages
    from mmdemo.search.stages import Source, Stages
    from mmdemo.text.stage import text_stage

    monkeypatch.setattr(stages, "MAX_QUEUED", 10)
    stage = text_stage(text_settings)
    assert stage is not None
    queue = Stages([stage])
    queue._thread = object()  # type: ignore[assignment]  # no worker: what is queued stays queued
    queue.backfill("library", [Source(f"{n:032x}", "/nonexistent.jpg") for n in range(8)])
    with caplog.at_level("WARNING", logger="mmdemo.search.stages"):
        queue.indexed("library", [Source(f"{n:032x}", "/nonexistent.jpg") for n in range(8, 12)])
    assert queue.progress["text"].total == 8 and queue._queue.qsize() == 1
    assert "left for a later backfill" in caplog.text
