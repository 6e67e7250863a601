"""Re-rank cost in process: scoring k images for one query in batches vs k single-image prefills.

    python bench/bench_rerank.py                    # CPU: the scaled Qwen2.5-VL of bench_vqa, k = 20
    python bench/bench_rerank.py --arch 7b --device cuda

The re-rank (mmdemo.chat.judge) reads P(yes) from one prefill per image, no generation. Rows, each
against the baseline measured in the same run, the textbook way: k single-image prefills,
`model(**inputs).logits[:, -1]`, one after another. Goal (issue #28): the app's re-rank of k = 20,
batched, <= 0.5x. Also shown: batch size 1 of the app's path (what keeping one position's logits
alone gives), other batch sizes, and a repeated query (every score from the cache).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench_vqa import build_model
from common import median_seconds, sample_photos, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["scaled", "7b"], default="scaled")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--batches", default="1,4,8,20", help="batch sizes of the app's path to measure")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    from mmdemo.ask.about import ask_budget
    from mmdemo.ask.rerank import Candidate, ScoreCache, judge_messages, rerank, rerank_question
    from mmdemo.chat.judge import prepare_batch, score_local
    from mmdemo.config import Settings
    from mmdemo.models import compute
    from mmdemo.models.device import pick_device, placement_for
    from mmdemo.models.registry import resolve
    from mmdemo.models.vlm import load_vlm

    work = Path(tempfile.mkdtemp(prefix="mmdemo-bench-rerank-"))
    compute.run(build_model, args.arch, work / "model")
    device = pick_device(args.device)
    vlm = compute.run(load_vlm, resolve(str(work / "model")), placement_for(device, args.dtype))
    budget = ask_budget(Settings().ask_max_pixels, 64_000_000)
    photos = [str(p) for p in sample_photos(args.k)]
    question = rerank_question("a dog playing in the snow")
    conversations = [judge_messages(p, question, budget) for p in photos]
    print(f"model: Qwen2.5-VL {args.arch}, random weights, {vlm.model.dtype} on {device}; k = {len(photos)}")

    def textbook() -> None:
        for conversation in conversations:
            with torch.inference_mode():
                vlm.model(**prepare_batch(vlm, [conversation])).logits[:, -1].float().softmax(-1)

    def app_path(batch: int) -> None:
        score_local(vlm, conversations, batch)

    baseline = median_seconds(lambda: compute.run(textbook, long=True), args.rounds)
    rows = [(f"{len(photos)} single-image prefills (baseline)", f"{baseline:.2f} s", "1.00x", "")]
    for batch in (int(b) for b in args.batches.split(",")):
        spent = median_seconds(lambda batch=batch: app_path(batch), args.rounds)
        goal = "<= 0.5x" if batch == Settings().rerank_batch else ""
        rows.append((f"re-rank, batches of {batch}", f"{spent:.2f} s", f"{spent / baseline:.2f}x", goal))

    class Judge:  # what rerank() asks of a backend: LocalVLM's, over this model rather than a manager's
        identity = "bench"

        def yes_scores(self, conversations, batch_size):
            return score_local(vlm, conversations, batch_size)

    backend, cache = Judge(), ScoreCache()
    candidates = [Candidate(p, p, 0.0) for p in photos]
    rerank(backend, "a dog playing in the snow", candidates, budget, cache, Settings().rerank_batch)
    again = median_seconds(lambda: rerank(backend, "a dog playing in the snow", candidates, budget, cache, 8), 3)
    rows.append(("the same query again (cached)", f"{again:.4f} s", f"{again / baseline:.4f}x", ""))
    print(table(rows, ("what", "time", "ratio", "goal")))


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"bench_rerank: {time.perf_counter() - started:.0f} s")
