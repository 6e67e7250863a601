"""Search latency over 10k / 100k / 1M random unit vectors (d=512), against the memory floor.

    python bench/bench_search.py [--sizes 10000,100000,1000000]

For each size: the memory-bandwidth floor (time to read the index's bytes once, all cores,
measured here), p50 latency of one exact query through mmdemo's index (goal <= 1.3x the floor)
and through FAISS's own flat scan, for comparison. At 100k, a text query end to end (ViT-B-32
text encoder + search). At 1M, the IVF index: build time, calibrated nprobe, p50 latency and
recall@10 against exact search, on uniform random vectors (no structure: IVF must probe
nearly every list) and on clustered vectors (closer to real photo embeddings).
"""

from __future__ import annotations

import argparse
import time

from common import load_vit_b_32, median_seconds, table


def p50(fn, rounds: int = 21) -> float:
    """Median latency of fn() (one warm-up call)."""
    return median_seconds(fn, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    args = parser.parse_args()

    import numpy as np
    import torch

    from mmdemo.search.index import VectorIndex, build_ivf, recall_at_k

    rng = np.random.default_rng(0)
    dim = 512

    def unit(a):
        return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)

    rows = []
    clip = None
    for n in [int(s) for s in args.sizes.split(",")]:
        vectors = np.empty((n, dim), np.float32)
        for i in range(0, n, 100_000):  # in chunks: keeps peak memory near the index size
            vectors[i : i + 100_000] = unit(rng.standard_normal((min(100_000, n - i), dim), dtype=np.float32))
        index = VectorIndex(dim)
        index.add(np.arange(n), vectors)
        query = unit(rng.standard_normal((1, dim), dtype=np.float32))
        _, stored = index._stored()
        view = torch.from_numpy(stored)
        floor = p50(lambda: view.sum())  # noqa: B023
        ours = p50(lambda: index.search(query, 10))  # noqa: B023
        faiss_flat = p50(lambda: index.index.search(query, 10))  # noqa: B023
        mb = vectors.nbytes / 1e6
        rows.append((f"{n:,} exact: read floor ({mb:.0f} MB)", f"{floor * 1e3:.2f} ms", "1.00x", ""))
        rows.append((f"{n:,} exact: mmdemo p50", f"{ours * 1e3:.2f} ms", f"{ours / floor:.2f}x", "<= 1.3x"))
        rows.append(
            (f"{n:,} exact: FAISS flat scan p50", f"{faiss_flat * 1e3:.2f} ms", f"{faiss_flat / floor:.2f}x", "")
        )
        if n == 100_000:
            clip = clip or load_vit_b_32()
            text = p50(lambda: index.search(clip.encode_texts(["a dog running on the beach"]), 10), 11)  # noqa: B023
            rows.append((f"{n:,} text query end to end (encode + search)", f"{text * 1e3:.2f} ms", "", ""))
        if n >= 1_000_000:
            queries = unit(rng.standard_normal((100, dim), dtype=np.float32))
            truth = index.index.search(queries, 10)[1]
            rows += _ivf_rows("uniform", np.arange(n), vectors, queries, truth, build_ivf, recall_at_k, p50)
            centers = unit(rng.standard_normal((2000, dim), dtype=np.float32))
            for i in range(0, n, 100_000):
                m = min(100_000, n - i)
                noise = rng.standard_normal((m, dim), dtype=np.float32) * np.float32(1.0 / np.sqrt(dim))
                vectors[i : i + m] = unit(centers[rng.integers(0, 2000, m)] + noise)
            exact = VectorIndex(dim)
            exact.add(np.arange(n), vectors)
            near = unit(vectors[rng.integers(0, n, 100)] + rng.standard_normal((100, dim), dtype=np.float32) * 0.03)
            truth = exact.index.search(near, 10)[1]
            rows += _ivf_rows("clustered", np.arange(n), vectors, near, truth, build_ivf, recall_at_k, p50)
    print(f"threads={torch.get_num_threads()} dim={dim}")
    print(table(rows, ("what", "time", "vs floor", "goal")))


def _ivf_rows(name, ids, vectors, queries, truth, build_ivf, recall_at_k, p50):
    start = time.perf_counter()
    ivf = build_ivf(ids, vectors)
    built = time.perf_counter() - start
    recall = recall_at_k(ivf.search(queries, 10)[1], truth)
    latency = p50(lambda: ivf.search(queries[:1], 10))
    return [
        (f"1M IVF {name}: build (train + add + calibrate)", f"{built:.1f} s", "", ""),
        (f"1M IVF {name}: nprobe {ivf.nprobe}/{ivf.nlist}, recall@10 {recall:.3f}", f"{latency * 1e3:.2f} ms", "",
         ">= 0.95 recall"),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
