"""Zero-shot classification cost with 1,000 labels x 7 templates, on the real ViT-B-32 architecture.

    python bench/bench_classify.py [--labels 1000] [--images 100]

Rows, each against a baseline measured in the same run:
- repeat call (same 1,000 labels, cache warm) vs encoding the image alone: goal <= 1.1x;
- first call (7,000 prompts encoded), and a reload from the on-disk cache vs recomputing;
- 100 images x 1,000 classes from files (decode, classify) vs model-only image encoding.
Random weights get a fixed weights key here so the disk cache is exercised as for a real checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from common import load_vit_b_32, median_seconds, sample_photos, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import torch

    from mmdemo.classify.batch import classify_files
    from mmdemo.classify.templates import preset_labels, templates_for
    from mmdemo.classify.zeroshot import cached_classifier, classify
    from mmdemo.embedding.images import open_image
    from mmdemo.embedding.ingest import ImageFile
    from mmdemo.embedding.vectorcache import VectorCache

    clip = dataclasses.replace(load_vit_b_32(), weights_key="bench:vit-b-32-random")
    labels = list(preset_labels("ImageNet-1k"))[: args.labels]
    templates = templates_for("openai-7")
    photos = sample_photos(args.images)
    image = open_image(photos[0], 10**8)
    db = Path(tempfile.mkdtemp(prefix="mmdemo-bench-")) / "labels.sqlite3"

    start = time.perf_counter()
    cached_classifier(clip, labels, templates, VectorCache(db))
    first = time.perf_counter() - start
    reload = median_seconds(lambda: cached_classifier(clip, labels, templates, VectorCache(db)), 3)

    cache = VectorCache(db)
    encode_one = median_seconds(lambda: clip.encode_images([image]), args.rounds)
    repeat = median_seconds(lambda: classify(clip, [image], labels, templates, cache), args.rounds)

    files = [ImageFile(str(p), p.name) for p in photos]
    batch = median_seconds(lambda: classify_files(clip, files, labels, templates, 10**8, cache), 3)
    pixels = clip.pixels([open_image(p, 10**8) for p in photos])
    model_only = median_seconds(
        lambda: [clip.encode_pixels(pixels[i : i + clip.batch_size]) for i in range(0, len(pixels), clip.batch_size)],
        3,
    )

    n = len(photos)
    print(f"device={clip.placement.device} dtype={clip.placement.dtype} threads={torch.get_num_threads()} "
          f"labels={len(labels)} templates={len(templates)} images={n} ({photos[0].parent})")  # fmt: skip
    rows = [
        ("encode 1 image (baseline)", f"{encode_one * 1e3:.1f} ms", "1.00x", ""),
        ("classify 1 image, labels cached", f"{repeat * 1e3:.1f} ms", f"{repeat / encode_one:.2f}x", "<= 1.1x"),
        (f"first call: encode {len(labels)}x{len(templates)} prompts", f"{first:.2f} s", "1.00x", ""),
        ("reload labels from disk cache", f"{reload * 1e3:.1f} ms", f"{reload / first:.4f}x", "vs first call"),
        (f"model-only encode {n} images", f"{n / model_only:.1f} img/s", "1.00x", ""),
        (f"classify {n} files x {len(labels)} classes", f"{n / batch:.1f} img/s", f"{model_only / batch:.2f}x", ""),
    ]
    print(table(rows, ("what", "time / rate", "ratio", "goal")))


if __name__ == "__main__":
    main()
