"""The text stage (issue #35): OCR throughput, what it adds to indexing, and text search latency.

    python bench/bench_text.py [--photos 24] [--size 100000]

1. OCR images/s on 640 px photos, with text (a sign drawn on) and without: RapidOCR called directly on
   the files (the baseline) vs mmdemo's text stage on the same files (decode, read, keep, store).
   Goal: the stage >= 0.8x the direct call.
2. Indexing the same photos (random ViT-B-32, mmdemo's dtype): CLIP alone vs CLIP and the text stage.
3. Search latency over `--size` images (random unit vectors, d=512; every image with a line of text):
   a query in words through mmdemo.search.ranking, CLIP alone vs CLIP and the text fused. Goal: p50 <= 1.5x.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import load_vit_b_32, median_seconds, sample_photos, table

WORDS = [
    "gate",
    "exit",
    "room",
    "hotel",
    "bakery",
    "coffee",
    "station",
    "platform",
    "invoice",
    "total",
    "order",
    "street",
    "museum",
    "garden",
]


def photos_640(n: int, folder: Path) -> tuple[list[Path], list[Path]]:
    """n photos brought to 640 px on the long side: (with a sign drawn on, as they were)."""
    from PIL import Image

    from mmdemo.text.signs import Damage, draw_sign

    signs, plain = [], []
    for number, source in enumerate(sample_photos(2 * n)):
        with Image.open(source) as img:
            img = img.convert("RGB")
            img.thumbnail((640, 640))
            scale = 640 / max(img.size)
            img = img.resize((round(img.width * scale), round(img.height * scale)))
            if number < n:
                path = folder / f"sign{number:03d}.jpg"
                phrase = f"{random.Random(number).choice(WORDS).upper()} {100 + number}"
                draw_sign(img, phrase, Damage.random(random.Random(number)), seed=number).save(path)
                signs.append(path)
            else:
                path = folder / f"plain{number:03d}.jpg"
                img.save(path, quality=90)
                plain.append(path)
    return signs, plain


def ocr_rates(files: list[Path], data: Path) -> tuple[float, float]:
    """(images/s of RapidOCR called directly, images/s of the text stage), each median of 3 passes."""
    from rapidocr_onnxruntime import RapidOCR

    from mmdemo.config import Settings
    from mmdemo.search.stages import Source
    from mmdemo.text.stage import text_stage

    direct = RapidOCR()
    stage = text_stage(Settings(data_dir=data))
    assert stage is not None
    sources = [Source(f"{n:032x}", str(path)) for n, path in enumerate(files)]
    direct_s = median_seconds(lambda: [direct(str(path)) for path in files], rounds=3)
    stage_s = median_seconds(lambda: [stage.read_one(source) for source in sources], rounds=3)
    return len(files) / direct_s, len(files) / stage_s


def ingest_seconds(files: list[Path], data: Path, ocr: bool) -> float:
    """Seconds to index `files` into a fresh gallery (random ViT-B-32), with or without the text stage."""
    from mmdemo.config import Settings
    from mmdemo.embedding.ingest import ImageFile
    from mmdemo.search.gallery import Gallery
    from mmdemo.search.stages import build
    from mmdemo.search.store import GalleryStore

    clip = load_vit_b_32()
    folder = Path(tempfile.mkdtemp(dir=data))
    gallery = Gallery(clip, GalleryStore(folder / "store", clip.embed_dim), None, 50_000_000)
    stages = build(Settings(data_dir=folder, ocr=ocr))
    gallery.stages = lambda sources, now: stages.indexed("bench", sources, now=False)
    started = time.perf_counter()
    gallery.add_files([ImageFile(str(p), p.name) for p in files])
    stages.wait()
    return time.perf_counter() - started


def search_while_reading(files: list[Path], data: Path) -> tuple[float, float]:
    """p50 seconds of a search in words (ViT-B-32 text encoder + search), idle and while the text stage reads
    `files` in the background (a backfill)."""
    from mmdemo.config import Settings
    from mmdemo.embedding.ingest import ImageFile
    from mmdemo.search.gallery import Gallery
    from mmdemo.search.ranking import Named, ranked
    from mmdemo.search.stages import Source, build
    from mmdemo.search.store import GalleryStore

    clip = load_vit_b_32()
    folder = Path(tempfile.mkdtemp(dir=data))
    gallery = Gallery(clip, GalleryStore(folder / "store", clip.embed_dim), None, 50_000_000)
    gallery.add_files([ImageFile(str(p), p.name) for p in files], keep_source=True)
    named = [Named("shared", "bench", gallery)]
    queries = iter(f"a photo of a street sign number {n}" for n in range(10_000))  # no query twice: no cache

    def latencies(count: int, until: Callable[[], bool] = lambda: False) -> list[float]:
        times = []
        while len(times) < count and not until():
            started = time.perf_counter()
            ranked(named, None, next(queries), None, 12, -1.0)
            times.append(time.perf_counter() - started)
        return times

    idle = statistics.median(latencies(21))
    stages = build(Settings(data_dir=folder, ocr=True))
    stages.backfill("bench", [Source(it.hash, it.source, it.thumb) for it in gallery.store.items()])
    busy = latencies(10_000, until=lambda: not stages.progress["text"].busy)
    stages.wait()
    return idle, statistics.median(busy)


def search_p50(size: int, data: Path) -> tuple[float, ...]:
    """p50 seconds of two queries in words over `size` images, each by CLIP alone, then CLIP and text fused."""
    import numpy as np

    from mmdemo.models.ocr import TextLine
    from mmdemo.search.gallery import Gallery
    from mmdemo.search.ranking import Named, ranked
    from mmdemo.search.store import GalleryStore, NewImage
    from mmdemo.text.stage import TextStage
    from mmdemo.text.store import Reading

    clip = load_vit_b_32()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((size, clip.embed_dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = GalleryStore(data / "big", clip.embed_dim)
    rows = [NewImage(f"{n:032x}", f"image{n}.jpg", 640, 480, 1) for n in range(size)]
    store.add(rows, vectors)
    stage = TextStage(data, None, 50_000_000, ("zh", "en"))  # type: ignore[arg-type]  # search only: no model
    words = random.Random(0)
    box = ((0, 0), (1, 0), (1, 1), (0, 1))
    for start in range(0, size, 10_000):
        stage.store("big").put(
            [
                Reading(row.hash, (TextLine(f"{words.choice(WORDS).upper()} {words.randint(1, 9999)}", box, 0.9),))
                for row in rows[start : start + 10_000]
            ]
        )
    named = [Named("shared", "big", Gallery(clip, store, None, 50_000_000))]

    def timed(text: TextStage | None, query: str) -> float:
        times = []
        for _ in range(21):
            started = time.perf_counter()
            ranked(named, text, query, None, 12, -1.0)
            times.append(time.perf_counter() - started)
        return statistics.median(times[1:])

    # An image's words, and a description for CLIP (its words in few texts: the text search's slow path).
    return tuple(timed(text, query) for query in ("hotel 4217", "a dog on the beach") for text in (None, stage))


def row(what: str, value: float, baseline: float, unit: str, goal: str = "") -> tuple[str, str, str, str]:
    return what, f"{value:.2f} {unit}", f"{value / baseline:.2f}x", goal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=24, help="photos with a sign, and as many without")
    parser.add_argument("--size", type=int, default=100_000, help="images in the search benchmark")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="mmdemo-bench-text-"))
    try:
        signs, plain = photos_640(args.photos, data)
        direct_sign, stage_sign = ocr_rates(signs, data / "a")
        direct_plain, stage_plain = ocr_rates(plain, data / "b")
        clip_only = ingest_seconds(signs + plain, data, ocr=False)
        with_text = ingest_seconds(signs + plain, data, ocr=True)
        idle_p50, busy_p50 = search_while_reading(signs + plain, data)
        clip_p50, fused_p50, clip_p50b, fused_p50b = search_p50(args.size, data)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    n, size = 2 * args.photos, f"{args.size:,}"
    rows = [
        row("OCR, 640 px with a sign: RapidOCR directly", direct_sign, direct_sign, "img/s"),
        row("OCR, 640 px with a sign: the text stage", stage_sign, direct_sign, "img/s", ">= 0.8x"),
        row("OCR, 640 px without text: RapidOCR directly", direct_plain, direct_plain, "img/s"),
        row("OCR, 640 px without text: the text stage", stage_plain, direct_plain, "img/s", ">= 0.8x"),
        row(f"index {n} photos: CLIP alone", clip_only, clip_only, "s"),
        row(f"index {n} photos: CLIP + text", with_text, clip_only, "s"),
        row("search in words, p50: idle", idle_p50 * 1000, idle_p50 * 1000, "ms"),
        row("search in words, p50: while a backfill reads text", busy_p50 * 1000, idle_p50 * 1000, "ms"),
        row(f"'hotel 4217' over {size}: CLIP alone", clip_p50 * 1000, clip_p50 * 1000, "ms"),
        row(f"'hotel 4217' over {size}: fused", fused_p50 * 1000, clip_p50 * 1000, "ms", "<= 1.5x"),
        row(f"'a dog on the beach' over {size}: CLIP alone", clip_p50b * 1000, clip_p50b * 1000, "ms"),
        row(f"'a dog on the beach' over {size}: fused", fused_p50b * 1000, clip_p50b * 1000, "ms", "<= 1.5x"),
    ]
    print(table(rows, ("what", "figure", "ratio", "goal")))


if __name__ == "__main__":
    main()
