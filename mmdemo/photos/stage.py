"""The photo stage of indexing: each image's date, camera and place, stored by content hash.

It reads a file's header only (~1 ms): it runs with every add, whatever its size, while the
files are there (an upload's are deleted after it; the thumbnails drawn from them keep no EXIF).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mmdemo.files import inside, remove_tree
from mmdemo.photos import places
from mmdemo.photos.exif import Exif, read_exif
from mmdemo.photos.store import Facts, PhotoStore
from mmdemo.photos.videotags import read_video_facts
from mmdemo.search.held import OPEN_STORES, HeldStores
from mmdemo.search.stages import Source, quiet, register

if TYPE_CHECKING:
    from mmdemo.config import Settings

log = logging.getLogger(__name__)
READINGS = "readings"  # data_dir/readings/<gallery>/photo.sqlite3, beside the text stage's


class PhotoStage:
    """Reads EXIF (mmdemo.photos.exif) and names places (mmdemo.photos.places) into a PhotoStore per gallery."""

    name = "photo"
    inline = True

    def __init__(self, data_dir: Path, name_places: bool = True, keep_open: int = OPEN_STORES):
        self.root = Path(data_dir) / READINGS
        self.name_places = name_places
        self.stores: HeldStores[PhotoStore] = HeldStores(
            lambda gallery: PhotoStore(inside(self.root, gallery)), keep_open
        )

    def store(self, gallery: str) -> PhotoStore:
        return self.stores.get(gallery)

    def pending(self, gallery: str, hashes: Sequence[str]) -> list[str]:
        known = self.store(gallery).known(hashes)
        return [h for h in hashes if h not in known]

    def read(self, gallery: str, sources: Sequence[Source], background: bool = False) -> None:
        if background:
            quiet()  # a backfill's batch waits for a pause in visitors' searches and chats, like the text stage
        self.store(gallery).put(self.read_all(sources))

    def read_all(self, sources: Sequence[Source]) -> list[Facts]:
        """The facts of these images: from their files, else their thumbnails (a small JPEG is its own
        thumbnail, EXIF and all); a video's moment, from the video's tags (mmdemo.photos.videotags); places named in
        one batch."""
        read: list[Exif | None] = []
        videos: dict[str, Exif] = {}  # a video's moments share its facts: read once
        for source in sources:
            if source.video and Path(source.video).is_file():
                if source.video not in videos:
                    videos[source.video] = read_video_facts(source.video, file_time=source.kept)
                read.append(videos[source.video])
                continue
            here = bool(source.path) and Path(source.path).is_file()
            path = source.path if here else source.thumb
            read.append(read_exif(path, file_time=source.kept and here) if path else None)
        points = [(e.lat, e.lon) for e in read if e is not None and e.lat is not None and e.lon is not None]
        named = iter(places.where(points) if points and self.name_places else [])  # type: ignore[arg-type]
        facts = []
        for source, exif in zip(sources, read, strict=True):
            if exif is None:
                facts.append(Facts(source.hash, Exif(error="no file left to read")))
                continue
            located = exif.lat is not None and exif.lon is not None and self.name_places
            facts.append(Facts(source.hash, exif, next(named) if located else places.Place()))
        return facts

    def forget(self, gallery: str) -> None:
        self.stores.drop(gallery)
        if (self.root / gallery / "photo.sqlite3").is_file():
            for name in ("photo.sqlite3", "photo.sqlite3-wal", "photo.sqlite3-shm"):
                (inside(self.root, gallery, name)).unlink(missing_ok=True)
        if (self.root / gallery).is_dir() and not any((self.root / gallery).iterdir()):
            remove_tree(self.root, gallery)

    def facts(self, gallery: str, content_hash: str) -> Facts | None:
        return self.store(gallery).get(content_hash)


@register("photo")
def photo_stage(settings: Settings) -> PhotoStage | None:
    """The photo stage, unless MMDEMO_PHOTO_FACTS is off."""
    if not settings.photo_facts:
        return None
    return PhotoStage(settings.data_dir, keep_open=min(OPEN_STORES, settings.open_galleries))
