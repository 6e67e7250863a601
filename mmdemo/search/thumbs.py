"""Thumbnails: how they are drawn, and where they live.

Every gallery's thumbnails are in the data dir's `media/` folder, named by the content hash of the
image: `media/shared/` for the shared galleries of every model, `media/private/<key>/` for a private
gallery (deleted with it). The folder holds JPEG thumbnails (a video's moments: their keyframes) and, under
`videos/`, the copies of indexed videos that browsers play, and nothing else, so it is the one
gallery folder the app serves (Gradio's allowed path, and mmdemo.serving.media's /media/ URLs):
never a database, a lock file, or a name that gives a private gallery's token away.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from PIL import ExifTags, Image

from mmdemo.embedding.images import Decoded

THUMB_SIZE = 320  # longest side of the thumbnails we draw
# A JPEG up to this size is its own thumbnail: small enough for a gallery tile (and sharp on
# HiDPI screens), and drawing a 320 px one from a 500 px photo costs 2 ms, a third of its forward.
OWN_THUMB_MAX = 640


def media_folder(data_dir: Path, name: str) -> Path:
    """Where the thumbnails of gallery `name` live: `media/shared`, or `media/private/<key>` for a private
    gallery ("sessions/<key>")."""
    media = Path(data_dir) / "media"
    key = name.partition("/")[2]
    return media / "private" / key if key else media / "shared"


def move_legacy_thumbnails(legacy: Path, thumbs: Path) -> None:
    """Thumbnails of a gallery made before the media folder (<model folder>/thumbs, beside the databases)
    move into it, once: the whole folder when it is new, else file by file (content-addressed: the same
    name is the same picture)."""
    if not legacy.is_dir():
        return
    thumbs.parent.mkdir(parents=True, exist_ok=True)
    try:
        legacy.rename(thumbs)
        return
    except OSError:  # the media folder exists already (another model's thumbnails)
        pass
    for old in legacy.glob("*/*.jpg"):
        target = thumbs / old.parent.name / old.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(old, target)
    shutil.rmtree(legacy, ignore_errors=True)


def save_thumbnail(decoded: Decoded, path: Path, source: str) -> tuple[int, int]:
    """Write a JPEG thumbnail atomically (sessions may add the same bytes at once); original size.

    A JPEG up to OWN_THUMB_MAX is its own thumbnail: no re-encode, no quality loss, and
    hard-linked rather than copied where it can be (a link is 4x faster than a copy) — unless its
    EXIF holds a GPS position: thumbnails are served to anyone who searches, and the library's places
    are shown at city level (mmdemo.photos.facts), so such a one is drawn anew, without EXIF.
    """
    size = decoded.source_size
    if Path(source).suffix.lower() in (".jpg", ".jpeg") and max(size) <= OWN_THUMB_MAX and not _located(source):
        link_or_copy(source, path)
    elif not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        thumb = decoded.image()
        thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
        thumb.save(tmp, "JPEG", quality=85)
        os.replace(tmp, path)
    return size


def _located(source: str) -> bool:
    """Whether the image's EXIF holds a GPS position (its header only is read)."""
    try:
        with Image.open(source) as img:
            return bool(img.getexif().get_ifd(ExifTags.IFD.GPSInfo))
    except (OSError, ValueError, SyntaxError):
        return False


def link_or_copy(source: str, path: Path) -> None:
    """Hard-link `source` at `path` (atomic: it appears whole or not at all), else copy it there.

    A link shares the bytes, never a name: deleting or replacing the source leaves the link as
    it was (an edit written into the source file in place would show through). Copies happen
    across filesystems, or where the kernel refuses links to files we do not own
    (fs.protected_hardlinks).
    """
    # The folder first, every time: a thread that found it missing, and made it, must not race
    # another thread into reading "missing" as "the source is gone".
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, path)
        return
    except FileExistsError:  # already there (same bytes: thumbnails are content-addressed)
        return
    except FileNotFoundError:
        raise  # the source is gone
    except OSError:  # another filesystem, or links refused
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, path)
