"""Photos' facts and videos' moments from the command line: `eval make-photo-set` (photos with known EXIF),
`eval filters` (precision and recall of each search-box filter on it), `eval make-video-set` (videos of
scenes of known times) and `eval moments` (hit@1 by a still and by on-screen words)."""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmdemo.config import Settings

if TYPE_CHECKING:
    from mmdemo.models.manager import ModelManager


def add_commands(evaluate: Any) -> None:
    """The subcommands of this module, added to the CLI's `eval` parser (mmdemo.commands.cli)."""
    make = evaluate.add_parser("make-photo-set", help="photos with EXIF dates, cameras, GPS in cities; HEIC too")
    make.add_argument("--photos", type=Path, required=True, help="e.g. ../shared/data/flickr8k_1k/images")
    make.add_argument("--out", type=Path, required=True, help="folder for the photos and truth.csv")
    make.add_argument("--per-city", type=int, default=5)
    filters = evaluate.add_parser("filters", help="precision and recall of each search filter on make-photo-set's set")
    filters.add_argument("--images", type=Path, required=True, help="make-photo-set's --out")
    filters.add_argument("--json", type=Path, help="also write the figures to this file")
    videos = evaluate.add_parser("make-video-set", help="videos of photo scenes of known times, a sign in each")
    videos.add_argument("--photos", type=Path, required=True, help="e.g. ../shared/data/flickr8k_1k/images")
    videos.add_argument("--out", type=Path, required=True, help="videos/, stills/ and truth.csv go here")
    videos.add_argument("--videos", type=int, default=4)
    found = evaluate.add_parser("moments", help="hit@1 of moments by a still of a scene and by the words on screen")
    found.add_argument("--set", type=Path, required=True, help="make-video-set's --out")


def run(args: argparse.Namespace, settings: Settings, manager: ModelManager) -> int:
    """One of this module's subcommands; returns the exit status."""
    if args.task == "make-photo-set":
        from mmdemo.photos.samples import make_photo_set

        photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        rows = make_photo_set(photos, args.out, args.per_city)
        print(f"{len(rows)} photos in {args.out}; what each one is: {args.out / 'truth.csv'}")
        return 0
    if args.task == "make-video-set":
        from mmdemo.video.samples import make_video_set

        photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        scenes = make_video_set(photos, args.out, args.videos)
        print(f"{args.videos} videos, {len(scenes)} scenes in {args.out / 'videos'}; truth: {args.out / 'truth.csv'}")
        return 0
    if args.task == "moments":
        return _moments(args, settings, manager)
    return _eval(args, settings, manager)


def _moments(args: argparse.Namespace, settings: Settings, manager: ModelManager) -> int:
    from mmdemo.commands.text import _indexed
    from mmdemo.search import stages
    from mmdemo.search.evaluate_video import evaluate_moments, table
    from mmdemo.search.filtering import Filtering
    from mmdemo.search.ranking import Named, ranked
    from mmdemo.video.samples import read_scenes

    built = stages.build(settings)
    text = next((s for s in built.stages if s.name == "text"), None)
    name = "eval-video-" + hashlib.blake2b(str(args.set.resolve()).encode(), digest_size=6).hexdigest()
    started = time.perf_counter()
    gallery = _indexed(settings, manager, name, args.set / "videos", built.stages)
    print(f"indexed {len(gallery)} moments in {time.perf_counter() - started:.1f} s")
    named, facts = [Named("", name, gallery)], Filtering(None, text)  # type: ignore[arg-type]

    def search(words: str, image: str | None) -> list:  # type: ignore[type-arg]
        return [hit for _, hit in ranked(named, text, words, image, 1, -1.0, facts)]  # type: ignore[arg-type]

    results = evaluate_moments(search, read_scenes(args.set / "truth.csv"), args.set / "stills")
    print(table(results))
    return 0


def _eval(args: argparse.Namespace, settings: Settings, manager: ModelManager) -> int:
    from mmdemo.commands.text import _indexed
    from mmdemo.photos.samples import read_truth
    from mmdemo.search import stages
    from mmdemo.search.evaluate_filters import evaluate, table
    from mmdemo.search.filtering import Filtering
    from mmdemo.search.ranking import Named

    built = stages.build(settings)
    text = next((s for s in built.stages if s.name == "text"), None)
    photos = next((s for s in built.stages if s.name == "photo"), None)
    name = "eval-photos-" + hashlib.blake2b(str(args.images.resolve()).encode(), digest_size=6).hexdigest()
    started = time.perf_counter()
    gallery = _indexed(settings, manager, name, args.images, built.stages)
    read = ", ".join(stage.name for stage in built.stages)
    print(f"indexed {len(gallery)} images ({read}) in {time.perf_counter() - started:.1f} s")
    filtering = Filtering(photos, text)  # type: ignore[arg-type]  # the stages by name
    results = evaluate(Named("", name, gallery), text, filtering, read_truth(args.images / "truth.csv"))  # type: ignore[arg-type]
    print(table(results))
    if args.json:
        figures = {r.query: {"expected": r.expected, "precision": r.precision, "recall": r.recall} for r in results}
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    return 0 if all(r.perfect for r in results) else 1
