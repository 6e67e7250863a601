"""`python -m mmdemo ...`: the app's features from the command line.

Every Settings flag of `python app.py` works here too (`--profile tiny`, `--clip-model ...`),
after the subcommand's own arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmdemo.config import Settings
from mmdemo.errors import UserFacingError

if TYPE_CHECKING:
    from mmdemo.models.manager import ModelManager
    from mmdemo.search.evaluate import Scored


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mmdemo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    index = commands.add_parser("index", help="index folders (recursively) or image files into the shared library")
    index.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="folders (searched recursively) or images")
    for name, text in (
        ("list", "list a gallery's images"),
        ("stats", "count, size and files of a gallery"),
        ("prune", "drop images whose source file is gone"),
        ("remove", "remove images by id or name"),
    ):
        verb = commands.add_parser(name, help=text)
        if name == "remove":
            verb.add_argument("which", nargs="+", help="image ids or names (as `list` shows them)")
        verb.add_argument("--gallery", default="library", help="gallery name; the app searches 'library'")
        if name == "list":
            verb.add_argument("--text", action="store_true", help="also print the text read in each image")
    index.add_argument("--gallery", default="library", help="gallery name; the app searches 'library'")
    evaluate = commands.add_parser("eval", help="evaluate the models on your data").add_subparsers(
        dest="task", required=True
    )
    zeroshot = evaluate.add_parser("zeroshot", help="zero-shot accuracy on a folder with one subfolder per class")
    zeroshot.add_argument("--folder", type=Path, required=True, help="e.g. ../shared/data/cifar10_1k")
    zeroshot.add_argument("--templates", default="openai-7", choices=("custom", "openai-7", "openai-80"))
    zeroshot.add_argument("--template", default="a photo of a {}.", help="the custom template")
    zeroshot.add_argument("--out", type=Path, default=Path("eval-out"), help="where confusion_matrix.png goes")
    vqa = evaluate.add_parser("vqa", help="VQAv2 accuracy, exact match and latency on a JSONL of questions")
    vqa.add_argument(
        "--data",
        type=Path,
        default=Path("assets/vqa_sample.jsonl"),
        help="JSONL: image (relative to the file), question, answers, optional type and id",
    )
    vqa.add_argument("--limit", type=int, default=0, help="ask at most this many questions (0 = all)")
    vqa.add_argument("--out", type=Path, default=Path("eval-out"), help="where predictions.jsonl and summary.json go")
    vqa.add_argument("--max-new-tokens", type=int, default=16)
    retrieval = evaluate.add_parser("retrieval", help="text->image Recall@1/5/10 and median rank")
    retrieval.add_argument("--images", type=Path, required=True, help="e.g. ../shared/data/flickr8k_1k/images")
    retrieval.add_argument("--captions", type=Path, required=True, help="CSV with image,caption columns")
    retrieval.add_argument("--json", type=Path, help="also write the metrics of both directions to this file")
    retrieval.add_argument(
        "--rerank", type=int, default=0, metavar="K", help="also re-rank CLIP's top K with the chat model (0 = no)"
    )
    retrieval.add_argument("--queries", type=int, default=100, help="captions to re-rank for (with --rerank)")
    from mmdemo.commands import photos as photo_commands
    from mmdemo.commands import text as text_commands

    text_commands.add_commands(commands, evaluate)
    photo_commands.add_commands(evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the exit status."""
    args, rest = _parser().parse_known_args(argv)
    settings = Settings.from_cli(rest)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("mmdemo").setLevel(settings.log_level.upper())
    from mmdemo.embedding.images import set_pixel_limit
    from mmdemo.models.factory import build_manager

    set_pixel_limit(settings.max_image_pixels)
    chat = args.command == "eval" and (args.task == "vqa" or getattr(args, "rerank", 0) > 0)
    manager = build_manager(settings, ("clip", "vlm") if chat else ("clip",))  # CLIP-only commands start sooner
    try:
        if args.command == "index":
            return _index(args, settings, manager)
        if args.command in ("list", "stats", "prune", "remove"):
            from mmdemo.commands.manage import run

            return run(args, settings, manager)
        if args.command == "eval" and args.task == "zeroshot":
            return _eval_zeroshot(args, settings, manager)
        if args.command == "eval" and args.task == "vqa":
            return _eval_vqa(args, settings, manager)
        if args.command == "eval" and args.task == "retrieval":
            return _eval_retrieval(args, settings, manager)
        if args.command == "eval" and args.task in ("make-photo-set", "filters", "make-video-set", "moments"):
            from mmdemo.commands.photos import run as run_photos

            return run_photos(args, settings, manager)
        from mmdemo.commands.text import run as run_text

        return run_text(args, settings, manager)
    except UserFacingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


def _eval_zeroshot(args: argparse.Namespace, settings: Settings, manager: ModelManager) -> int:
    from mmdemo.classify.evaluate import confusion_png, evaluate_folder
    from mmdemo.classify.templates import templates_for
    from mmdemo.embedding.vectorcache import embedding_cache

    cache = embedding_cache(settings)
    templates = templates_for(args.templates, args.template)
    metrics = evaluate_folder(manager.get("clip"), args.folder, templates, settings.max_image_pixels, cache)
    print(f"model: {manager.resolve_id('clip')}  templates: {args.templates} ({len(templates)})")
    print(metrics.table())
    print(f"confusion matrix: {confusion_png(metrics, args.out / 'confusion_matrix.png')}")
    return 0


def _index(args: argparse.Namespace, settings: Settings, manager: ModelManager) -> int:
    from mmdemo.commands.manage import ignored_files
    from mmdemo.embedding.ingest import ImageFile
    from mmdemo.embedding.vectorcache import embedding_cache
    from mmdemo.search.gallery import open_gallery
    from mmdemo.search.stages import build, source_of

    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        raise UserFacingError(f"{', '.join(missing)} does not exist.")
    gallery = open_gallery(settings.data_dir, manager.get("clip"), args.gallery, embedding_cache(settings), settings)

    def show(count) -> None:
        print(f"\r{count.describe()}", end="", file=sys.stderr, flush=True)

    for path in args.paths:
        if path.is_dir():
            report = gallery.add_folder(path, show)
            if ignored := ignored_files(path):
                print(
                    f"{path}: ignored {sum(ignored.values())} non-image file(s): "
                    + ", ".join(f"{ext} x{n}" for ext, n in sorted(ignored.items()))
                )
        else:
            report = gallery.add_files([ImageFile(str(path), path.name)], show, keep_source=True)
        print(file=sys.stderr)
        print(f"{path}: " + report.summary().replace("**", ""))

    def reading(stage: str, done: int, total: int) -> None:
        print(f"\r{stage}: {done} / {total} images", end="", file=sys.stderr, flush=True)

    # The other stages (the text in the images: MMDEMO_OCR) over every image not read yet, new or older.
    sources = [source_of(it) for it in gallery.store.items()]
    build(settings).run_now(args.gallery, sources, reading)
    print(file=sys.stderr)
    print(f"gallery '{args.gallery}' holds {len(gallery)} image(s) in {gallery.store.root}")
    return 0


def _eval_vqa(args: argparse.Namespace, settings: Settings, manager: ModelManager) -> int:
    from mmdemo.chat.backend import chat_backend
    from mmdemo.chat.evaluate import evaluate_vqa, read_questions
    from mmdemo.chat.pipeline import GenerationParams
    from mmdemo.chat.prompt import PATCH_AREA, ImageBudget

    questions = read_questions(args.data)[: args.limit or None]
    backend = chat_backend(settings, manager)  # the Chat tab's: in process, or MMDEMO_VLM_URL's server
    budget = ImageBudget(
        max_pixels=settings.vlm_max_pixels or 512 * PATCH_AREA, max_file_pixels=settings.max_image_pixels
    )
    params = GenerationParams(max_new_tokens=args.max_new_tokens, greedy=True)
    predictions = args.out / "predictions.jsonl"

    def show(done: int, total: int) -> None:
        print(f"\r{done}/{total} questions", end="", file=sys.stderr, flush=True)

    summary = evaluate_vqa(backend, questions, predictions, budget, params, settings.max_context_tokens, show)
    print(file=sys.stderr)
    where = backend.health().where
    print(f"model: {where}")
    print(summary.table())
    (args.out / "summary.json").write_text(json.dumps({"model": where, **asdict(summary)}, indent=2) + "\n")
    print(f"predictions: {predictions} (a rerun resumes; delete it to start over)")
    return 0


def _eval_retrieval(args: argparse.Namespace, settings: Settings, manager: ModelManager) -> int:
    from mmdemo.search.evaluate import BothWays, image_to_text_metrics, retrieval_metrics, score_retrieval

    scored = score_retrieval(manager.get("clip"), args.images, args.captions, settings.max_image_pixels)
    metrics = BothWays(
        retrieval_metrics(scored.similarity, scored.targets), image_to_text_metrics(scored.similarity, scored.targets)
    )
    print(f"model: {manager.resolve_id('clip')}")
    print(metrics.table())
    result: dict[str, Any] = {"model": manager.resolve_id("clip"), **metrics.as_dict()}
    if args.rerank > 0:
        result["rerank"] = _eval_rerank(args, settings, manager, scored)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _eval_rerank(args: argparse.Namespace, settings: Settings, manager: ModelManager, scored: Scored) -> dict[str, Any]:
    """Text -> image before and after re-ranking CLIP's top K with the chat model (in process or --vlm-url)."""
    from mmdemo.ask.about import ask_budget
    from mmdemo.ask.evaluate import evaluate_rerank
    from mmdemo.chat.backend import chat_backend

    backend = chat_backend(settings, manager)

    def show(done: int, total: int) -> None:
        print(f"\rre-ranking: {done}/{total} queries", end="", file=sys.stderr, flush=True)

    budget = ask_budget(settings.ask_max_pixels, settings.max_image_pixels)
    result = evaluate_rerank(scored, backend, args.rerank, args.queries, budget, settings.rerank_batch, show)
    print(file=sys.stderr)
    print(f"\nre-ranked by: {backend.health().where}")
    print(result.table())
    return {"by": backend.health().where, **asdict(result)}
