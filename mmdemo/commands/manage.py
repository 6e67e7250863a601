"""Looking after a gallery from the command line: list, stats, prune, remove (`python -m mmdemo ...`)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from mmdemo.config import Settings
from mmdemo.embedding.images import MEDIA_SUFFIXES
from mmdemo.errors import UserFacingError

if TYPE_CHECKING:
    from mmdemo.models.manager import ModelManager
    from mmdemo.text.store import TextStore


def ignored_files(folder: Path) -> Counter[str]:
    """Files below `folder` that indexing passes over, by extension ('(none)' for none)."""
    return Counter(
        p.suffix.lower() or "(none)"
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() not in MEDIA_SUFFIXES and not p.name.startswith(".")
    )


def run(args: argparse.Namespace, settings: Settings, manager: ModelManager) -> int:
    """One management verb on the gallery `args.gallery`; prints what it did."""
    from mmdemo.search.gallery import open_gallery

    gallery = open_gallery(settings.data_dir, manager.get("clip"), args.gallery, None, settings)
    items = gallery.store.items()
    if args.command == "list":
        texts = _texts(settings, args.gallery) if args.text else None
        for it in items:
            print(f"{it.id}\t{it.name}\t{it.width}x{it.height}\t{it.bytes}\t{it.source or '-'}")
            if texts is not None and (reading := texts.get(it.hash)) is not None:
                print(
                    "\t"
                    + (reading.text.replace("\n", " / ") or f"(no text{': ' + reading.error if reading.error else ''})")
                )
        print(f"{len(items)} image(s) in gallery '{args.gallery}'")
    elif args.command == "stats":
        sources = [it for it in items if it.source]
        print(f"gallery: {args.gallery} ({gallery.store.root})")
        print(f"images: {len(items)}, {sum(it.bytes for it in items) / 1e6:.1f} MB of originals")
        missing = sum(not Path(it.source).exists() for it in sources)
        print(f"with a source file: {len(sources)}, of which missing: {missing} (`prune` drops those)")
        print(f"with a perceptual hash (near-duplicate checks): {sum(bool(it.phash) for it in items)}")
        print(f"model: {manager.resolve_id('clip')}, weights {gallery.clip.weights_key}")
    elif args.command == "prune":
        gone = [it for it in items if it.source and not Path(it.source).exists()]
        removed = gallery.remove([it.id for it in gone])
        for it in gone:
            print(f"pruned {it.id}\t{it.name}\t({it.source} is gone)")
        print(f"pruned {removed} image(s); gallery '{args.gallery}' holds {len(gallery)}")
    elif args.command == "remove":
        by_name = {it.name: it for it in items}
        by_id = {str(it.id): it for it in items}
        unknown = [w for w in args.which if w not in by_id and w not in by_name]
        if unknown:
            raise UserFacingError(
                f"Not in gallery '{args.gallery}': {', '.join(unknown)} (see `python -m mmdemo list`)."
            )
        chosen = {(by_id.get(w) or by_name[w]).id for w in args.which}
        print(f"removed {gallery.remove(sorted(chosen))} image(s); gallery '{args.gallery}' holds {len(gallery)}")
    return 0


def _texts(settings: Settings, gallery: str) -> TextStore:
    """The text read from a gallery's images (mmdemo.text), for `list --text`."""
    from mmdemo.files import inside
    from mmdemo.text.stage import READINGS
    from mmdemo.text.store import TextStore

    return TextStore(inside(settings.data_dir / READINGS, gallery))
