"""Filters in the search box (issue #36): a filtered search's p50 against the same search unfiltered, and what
reading EXIF adds to indexing.

    python bench/bench_filters.py [--size 1000000] [--photos 96]

Search: `--size` clustered unit vectors (d=512, like photo embeddings) in a gallery store with the
app's default index (IVF past 50,000 images) and, for comparison, an exact one; each image has facts
(dates over 15 years, 60% with GPS in 30 cities, 12 cameras, 100 folders). For each filter: p50 of
the vector search alone (the index's ID selector / masked scan) and of `ranked()` end to end (the
query's text encoded by a random ViT-B-32, the filters parsed and masked over the facts table), both
against the unfiltered search from the same run (goal <= 1.5x), and the filtered IVF's recall@10
against an exact search of the same filtered images. Indexing: `--photos` generated photos with
EXIF (some HEIC) into a fresh gallery, with and without the photo stage (goal <= 1.10x).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import SHARED_FLICKR, load_vit_b_32, median_seconds, table

FILTERS = ("taken:2019", "place:paris", "camera:fuji", "has:gps", "folder:trip-7", "place:japan taken:2021")
CITIES = [("paris", 48.8566, 2.3522), ("tokyo", 35.6812, 139.7671), ("kyoto", 35.0116, 135.7681)] + [
    (f"city{n}", -40 + n * 3.1, -170 + n * 11.3) for n in range(27)
]
CAMERAS = [("FUJIFILM", "X-T30"), ("Apple", "iPhone 13 Pro")] + [(f"Make{n}", f"Model {n}") for n in range(10)]


def clustered(size: int, dim: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((1000, dim), dtype=np.float32)
    vectors = centers[rng.integers(0, 1000, size)] + 0.6 * rng.standard_normal((size, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def facts_for(size: int):
    """Synthetic facts, one per image (see the module docstring)."""
    from mmdemo.photos.exif import Exif
    from mmdemo.photos.places import Place
    from mmdemo.photos.store import Facts

    rng = random.Random(0)
    out = []
    for n in range(size):
        when = f"{rng.randint(2010, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} 12:00:00"
        make, model = rng.choice(CAMERAS)
        lat = lon = None
        place = Place()
        if rng.random() < 0.6:
            city, lat0, lon0 = rng.choice(CITIES)
            lat, lon = lat0 + rng.uniform(-0.05, 0.05), lon0 + rng.uniform(-0.05, 0.05)
            country = {"paris": "FR", "tokyo": "JP", "kyoto": "JP"}.get(city, "ZZ")
            place = Place(city.title(), city.title(), "", country)
        out.append(Facts(f"{n:032x}", Exif(when, "", "exif", make, model, lat, lon), place))
    return out


def search_rows(size: int, data: Path) -> list[tuple[str, str, str, str]]:
    import numpy as np

    from mmdemo.photos.stage import PhotoStage
    from mmdemo.search.filtering import Filtering
    from mmdemo.search.gallery import Gallery
    from mmdemo.search.index import VectorIndex
    from mmdemo.search.ranking import Named, ranked
    from mmdemo.search.store import GalleryStore, NewImage

    clip = load_vit_b_32()
    vectors = clustered(size, clip.embed_dim)
    rows = [NewImage(f"{n:032x}", f"trip-{n % 100}/image{n}.jpg", 640, 480, 1) for n in range(size)]
    started = time.perf_counter()
    store = GalleryStore(data / "big", clip.embed_dim, ann_threshold=50_000)
    store.add(rows, vectors)
    print(
        f"store of {size:,} ({store.index.kind}, nprobe {store.index.nprobe}) in {time.perf_counter() - started:.0f} s"
    )
    photos = PhotoStage(data)
    facts = facts_for(size)
    for start in range(0, size, 50_000):
        photos.store("big").put(facts[start : start + 50_000])
    filtering = Filtering(photos, None)
    named = [Named("shared", "big", Gallery(clip, store, None, 50_000_000))]
    started = time.perf_counter()
    filtering.table(named[0])
    print(f"facts table of {size:,} built in {time.perf_counter() - started:.1f} s (once per change)")
    exact = VectorIndex(clip.embed_dim)
    exact.add(np.arange(1, size + 1), vectors)
    query = clustered(1, clip.embed_dim, seed=1)[0]
    out = []
    base = {
        "ivf": median_seconds(lambda: store.search(query, 12), rounds=21),
        "exact": median_seconds(lambda: exact.search(query, 12), rounds=21),
        "ranked": median_seconds(lambda: ranked(named, None, "a dog", None, 12, -1.0, filtering), rounds=21),
    }
    for name, seconds in base.items():
        out.append((f"unfiltered: {name}", f"{seconds * 1000:.1f} ms", "1.00x", ""))
    from mmdemo.photos.filters import split

    for query_text in FILTERS:
        allowed = filtering.allowed(named[0], split(query_text)[0])
        share = len(allowed) / size
        ivf = median_seconds(lambda a=allowed: store.search(query, 12, allowed=a), rounds=21)
        # A filter not searched before: its ids' bitmap is built first (later searches with it reuse it).
        fresh = median_seconds(
            lambda a=allowed: (setattr(store.index, "_filter", None), store.search(query, 12, allowed=a)), rounds=21
        )
        flat = median_seconds(lambda a=allowed: exact.search(query, 12, a), rounds=21)
        end = median_seconds(
            lambda q=query_text: ranked(named, None, f"a dog {q}", None, 12, -1.0, filtering), rounds=21
        )
        found = {hit.item.id for hit in store.search(query, 10, allowed=allowed)}
        truth = set(exact.search(query, 10, allowed)[1][0].tolist())
        recall = len(found & truth) / max(len(truth), 1)
        label = f"`{query_text}` ({share:.1%})"
        out.append(
            (f"{label}: IVF (recall@10 {recall:.2f})", f"{ivf * 1000:.1f} ms", f"{ivf / base['ivf']:.2f}x", "<= 1.5x")
        )
        out.append((f"{label}: IVF, a new filter", f"{fresh * 1000:.1f} ms", f"{fresh / base['ivf']:.2f}x", ""))
        out.append((f"{label}: exact", f"{flat * 1000:.1f} ms", f"{flat / base['exact']:.2f}x", "<= 1.5x"))
        out.append((f"{label}: ranked() end to end", f"{end * 1000:.1f} ms", f"{end / base['ranked']:.2f}x", "<= 1.5x"))
    return out


def ingest_rows(photos: int, data: Path) -> list[tuple[str, str, str, str]]:
    """Index the generated photos into fresh galleries, photo stage off and on, three times each (medians)."""
    from mmdemo.config import Settings
    from mmdemo.embedding.ingest import ImageFile
    from mmdemo.photos.samples import make_photo_set
    from mmdemo.search.gallery import Gallery
    from mmdemo.search.stages import build
    from mmdemo.search.store import GalleryStore

    source = sorted(SHARED_FLICKR.glob("*.jpg"))
    made = make_photo_set(source, data / "set", per_city=max(1, (photos - 12) // 8))
    files = [ImageFile(str(data / "set" / t.file), t.file) for t in made]
    clip = load_vit_b_32()
    times: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(3):
        for facts in (False, True):
            folder = Path(tempfile.mkdtemp(dir=data))
            gallery = Gallery(clip, GalleryStore(folder / "store", clip.embed_dim), None, 50_000_000)
            stages = build(Settings(data_dir=folder, ocr=False, photo_facts=facts))
            gallery.stages = lambda sources, now, s=stages: s.indexed("bench", sources, now=False)
            started = time.perf_counter()
            gallery.add_files(files, keep_source=True)
            stages.wait()
            if round_:  # the first round warms the caches (and loads the place tables once)
                times[facts].append(time.perf_counter() - started)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    return [
        (f"index {len(files)} photos with EXIF: CLIP alone", f"{off:.2f} s", "1.00x", ""),
        (
            f"index {len(files)} photos with EXIF: + dates, cameras, places",
            f"{on:.2f} s",
            f"{on / off:.2f}x",
            "<= 1.10x",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--photos", type=int, default=96)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="mmdemo-bench-filters-"))
    try:
        rows = ingest_rows(args.photos, data) + search_rows(args.size, data)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    print(table(rows, ("what", "p50 / time", "ratio", "goal")))


if __name__ == "__main__":
    main()
