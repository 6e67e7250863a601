"""Uploads kept at full size for viewing, per private gallery, within a byte quota (MMDEMO_ORIGINALS_MB).

The gallery itself keeps thumbnails only; a clicked upload opens from its kept copy when there is one.
Copies are named by content hash, in a folder of the gallery's, removed with it (Galleries.drop).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from mmdemo.embedding.ingest import ImageFile
from mmdemo.files import inside
from mmdemo.search.store import Item


class Originals:
    """Kept uploads under `root`, a folder per gallery name, at most `quota_bytes` each."""

    def __init__(self, root: Path, quota_bytes: int) -> None:
        self.root, self.quota_bytes = root, quota_bytes

    def keep(self, gallery: str, files: Sequence[ImageFile], added: Sequence[Item]) -> None:
        """Copy the files behind the items just `added` (matched by name), while the quota allows."""
        if self.quota_bytes <= 0:
            return
        folder = inside(self.root, gallery)
        folder.mkdir(parents=True, exist_ok=True)
        used = sum(f.stat().st_size for f in folder.iterdir())
        items = {it.name: it for it in added}
        for file in files:
            item = items.get(file.name)
            if item is None or used + item.bytes > self.quota_bytes:
                continue
            shutil.copyfile(file.path, inside(folder, f"{item.hash}{Path(file.name).suffix.lower()}"))
            used += item.bytes

    def find(self, gallery: str, item: Item) -> str | None:
        """The kept copy of `item`, if there is one."""
        kept = next(inside(self.root, gallery).glob(f"{item.hash}.*"), None)
        return str(kept) if kept is not None else None
