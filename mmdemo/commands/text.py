"""The text in images from the command line: `search` (CLIP and text fused, the matched text shown),
`eval text-search` (Recall@1/5/10 of CLIP, text and fused; OCR CER) and `eval make-text-set`."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmdemo.config import Settings

if TYPE_CHECKING:
    from mmdemo.models.manager import ModelManager
    from mmdemo.search.gallery import Gallery
    from mmdemo.search.stages import Stage
    from mmdemo.text.stage import TextStage


def add_commands(commands: Any, evaluate: Any) -> None:
    """The subcommands of this module, added to the CLI's parser (mmdemo.commands.cli)."""
    search = commands.add_parser("search", help="search a gallery by words (CLIP and the text read, fused)")
    search.add_argument(
        "query", help='words; "quoted phrase" exact; text:word; filters: taken:2019 place:paris camera:fuji has:gps ...'
    )
    search.add_argument("--gallery", default="library", help="gallery name; the app searches 'library'")
    search.add_argument("-k", type=int, default=10, help="results")
    text = evaluate.add_parser("text-search", help="R@1/5/10 of CLIP, text and fused; OCR character error rate")
    text.add_argument("--images", type=Path, required=True, help="a folder of images (make-text-set's --out)")
    text.add_argument("--queries", type=Path, required=True, help="CSV: query, file, optional truth, language")
    text.add_argument("--json", type=Path, help="also write the figures to this file")
    make = evaluate.add_parser("make-text-set", help="draw signs (English, Chinese) onto photos: a text-search set")
    make.add_argument("--photos", type=Path, required=True, help="e.g. ../shared/data/flickr8k_1k/images")
    make.add_argument("--out", type=Path, required=True, help="folder for the images and queries.csv")
    make.add_argument("--plain", type=int, default=40, help="photos without a sign beside them")
    make.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace, settings: Settings, manager: ModelManager) -> int:
    """One of this module's subcommands; returns the exit status."""
    if args.command == "search":
        return _search(args, settings, manager)
    if args.task == "make-text-set":
        from mmdemo.text.signs import make_text_set

        photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        rows = make_text_set(photos, args.out, args.plain, args.seed)
        print(f"{len(rows)} signs and {args.plain} plain photos in {args.out}; queries: {args.out / 'queries.csv'}")
        return 0
    return _eval(args, settings, manager)


def _reader(settings: Settings) -> TextStage:
    from mmdemo.errors import UserFacingError
    from mmdemo.text.stage import text_stage

    stage = text_stage(settings)
    if stage is None:
        raise UserFacingError(key="ocr.off" if not settings.ocr else "ocr.missing")
    return stage


def _indexed(
    settings: Settings, manager: ModelManager, name: str, folder: Path | None, stages: Sequence[Stage]
) -> Gallery:
    """The gallery `name`, with `folder` added to it and every stage read (progress on stderr)."""
    from mmdemo.embedding.vectorcache import embedding_cache
    from mmdemo.search.gallery import open_gallery
    from mmdemo.search.stages import Stages, source_of

    gallery = open_gallery(settings.data_dir, manager.get("clip"), name, embedding_cache(settings), settings)
    if folder is not None:
        gallery.add_folder(folder, lambda c: print(f"\r{c.describe()}", end="", file=sys.stderr, flush=True))

    def show(stage: str, done: int, total: int) -> None:
        print(f"\r{stage}: {done} / {total} images", end="", file=sys.stderr, flush=True)

    if stages:
        sources = [source_of(it) for it in gallery.store.items()]
        Stages(stages).run_now(name, sources, show)
        print(file=sys.stderr)
    return gallery


def _search(args: argparse.Namespace, settings: Settings, manager: ModelManager) -> int:
    from mmdemo.photos.facts import said
    from mmdemo.search import stages
    from mmdemo.search.filtering import Filtering
    from mmdemo.search.ranking import Named, ranked

    built = stages.build(settings)  # the text (None with MMDEMO_OCR=false: CLIP alone), dates and places
    text = next((s for s in built.stages if s.name == "text"), None)
    photos = next((s for s in built.stages if s.name == "photo"), None)
    gallery = _indexed(settings, manager, args.gallery, None, built.stages)
    facts = Filtering(photos, text)  # type: ignore[arg-type]  # the stages by name: a TextStage, a PhotoStage
    hits = ranked([Named("", args.gallery, gallery)], text, args.query, None, args.k, -1, facts)  # type: ignore[arg-type]
    exact = settings.library_places == "exact" or args.gallery != "library"
    for rank, (_, hit) in enumerate(hits, 1):
        clip = "-" if hit.clip is None else f"{hit.clip:.3f}"
        print(
            f"{rank}\t{hit.item.id}\t{hit.item.name}\tclip {clip}\t{hit.matched}\t{said(hit.facts, exact=exact).line()}"
        )
    return 0


def _eval(args: argparse.Namespace, settings: Settings, manager: ModelManager) -> int:
    from mmdemo.search.evaluate_text import evaluate, read_queries, table
    from mmdemo.search.ranking import Named

    queries = read_queries(args.queries)
    stage = _reader(settings)
    name = "eval-text-" + hashlib.blake2b(str(args.images.resolve()).encode(), digest_size=6).hexdigest()
    started = time.perf_counter()
    gallery = _indexed(settings, manager, name, args.images, [stage])
    print(f"indexed {len(gallery)} images (CLIP and text) in {time.perf_counter() - started:.1f} s")
    results = evaluate(Named("", name, gallery), stage, queries)
    print(f"model: {manager.resolve_id('clip')}  queries: {len(queries)}")
    print(table(results))
    if args.json:
        figures = {
            language: {
                "cer": r.cer,
                **{f"{ranker}_r@{k}": r.recall(ranker, k) for ranker in r.ranks for k in (1, 5, 10)},
            }
            for language, r in results.items()
        }
        args.json.write_text(json.dumps({"model": manager.resolve_id("clip"), **figures}, indent=2) + "\n")
    return 0
