"""Gallery indexing throughput on the real ViT-B-32 architecture (random weights).

    python bench/bench_index.py [--images 1000] [--textbook 200] [--phone 24]

Rows, all measured in this run on the same photos (../shared/data/flickr8k_1k/images, or
generated photos when absent):
  (a) textbook loop: open, open_clip preprocess, encode one image at a time, fp32;
  (b) model only: batched forward at mmdemo's dtype on pre-decoded, preprocessed tensors;
  (c) mmdemo ingest end to end: hash, decode, preprocess, encode, thumbnail, index, persist.
(b) and (c) alternate, round by round, so that both see the same drift in the machine's speed.
Goals: c/a >= 3.5 and c/b >= 0.9. Then phone photos (the same images re-saved as 4000x3000
JPEGs): mmdemo's decode + preprocess vs a naive full-resolution decode, goal >= 5x.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import load_vit_b_32, median_seconds, sample_photos, seconds, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--textbook", type=int, default=200, help="images for the slow textbook loop")
    parser.add_argument("--phone", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of (b) and (c)")
    args = parser.parse_args()

    import torch
    from PIL import Image

    from mmdemo.embedding.images import open_image
    from mmdemo.embedding.ingest import ImageFile
    from mmdemo.models import compute
    from mmdemo.search.gallery import Gallery
    from mmdemo.search.store import GalleryStore

    photos = sample_photos(args.images)
    fast = load_vit_b_32()
    fp32 = load_vit_b_32("float32")

    def textbook() -> None:
        with torch.inference_mode():
            for path in photos[: args.textbook]:
                image = fp32.preprocess(Image.open(path).convert("RGB")).unsqueeze(0)
                fp32.model.encode_image(image)

    a = args.textbook / median_seconds(lambda: compute.run(textbook), rounds=1, warmup=0)

    pixels = fast.pixels([open_image(p, 10**8) for p in photos])
    size = fast.batch_size

    def model_only() -> None:
        for i in range(0, len(pixels), size):
            fast.encode_pixels(pixels[i : i + size])

    def ingest() -> None:
        root = Path(tempfile.mkdtemp(prefix="mmdemo-bench-"))
        gallery = Gallery(fast, GalleryStore(root, fast.embed_dim), None, 10**8)
        report = gallery.add_files([ImageFile(str(p), p.name) for p in photos])
        assert len(report.added) == len(photos) and (root / f"index.{gallery.store.generation}.faiss").is_file()

    model_only()  # warm-up
    ingest()
    rounds = [(seconds(model_only), seconds(ingest)) for _ in range(args.rounds)]
    b = len(photos) / statistics.median(tb for tb, _ in rounds)
    c = len(photos) / statistics.median(tc for _, tc in rounds)
    pixels = None  # free the pre-decoded batch

    phone_dir = Path(tempfile.mkdtemp(prefix="mmdemo-phone-"))
    phone = []
    for i, path in enumerate(photos[: args.phone]):
        target = phone_dir / f"phone{i:03d}.jpg"
        Image.open(path).convert("RGB").resize((4000, 3000), Image.BICUBIC).save(target, quality=90)
        phone.append(target)
    naive = median_seconds(
        lambda: compute.run(lambda: [fast.preprocess(Image.open(p).convert("RGB")) for p in phone]), rounds=2
    )
    ours = median_seconds(lambda: fast.pixels([open_image(p, 10**8, min_side=fast.input_size) for p in phone]), 2)

    print(f"device={fast.placement.device} dtype={fast.placement.dtype} threads={torch.get_num_threads()} "
          f"images={len(photos)} ({photos[0].parent})")  # fmt: skip
    rows = [
        ("(a) textbook loop, fp32, 1 at a time", f"{a:.1f} img/s", "1.00x", ""),
        ("(b) model only, batched, " + fast.placement.dtype, f"{b:.1f} img/s", f"{b / a:.2f}x", ""),
        ("(c) mmdemo ingest end to end", f"{c:.1f} img/s", f"{c / a:.2f}x", "c/a >= 3.5"),
        ("    c / b (rounds: " + " ".join(f"{tb / tc:.2f}" for tb, tc in rounds) + ")", "", f"{c / b:.2f}", ">= 0.9"),
        (f"phone 4000x3000: naive full decode ({len(phone)})", f"{len(phone) / naive:.1f} img/s", "1.00x", ""),
        ("phone 4000x3000: mmdemo (JPEG draft)", f"{len(phone) / ours:.1f} img/s", f"{naive / ours:.2f}x", ">= 5x"),
    ]
    print(table(rows, ("what", "rate", "ratio", "goal")))


if __name__ == "__main__":
    main()
