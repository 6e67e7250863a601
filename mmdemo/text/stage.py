"""The text stage of indexing: each image read by the OCR model, its lines stored by content hash."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mmdemo.embedding.images import BadImageError, decode_pixels
from mmdemo.errors import UserFacingError
from mmdemo.files import inside, remove_tree
from mmdemo.models import compute, ocr
from mmdemo.search.held import OPEN_STORES, HeldStores
from mmdemo.search.stages import Source, quiet, register
from mmdemo.text.match import TextMatch
from mmdemo.text.normalize import has_han
from mmdemo.text.query import TextQuery
from mmdemo.text.store import Reading, TextStore

if TYPE_CHECKING:
    from mmdemo.config import Settings

log = logging.getLogger(__name__)
READINGS = "readings"  # data_dir/readings/<gallery>/text.sqlite3


class TextStage:
    """Reads the text in images (mmdemo.models.ocr) into a TextStore per gallery, and searches it."""

    name = "text"
    inline = False  # the OCR takes ~0.3 s an image: big adds are read in the background

    def __init__(
        self,
        data_dir: Path,
        model: ocr.OcrModel,
        max_pixels: int,
        languages: Sequence[str],
        keep_open: int = OPEN_STORES,
    ):
        self.root = Path(data_dir) / READINGS
        self.model, self.max_pixels = model, max_pixels
        self.keep_han = "zh" in languages  # the model reads both; English only drops what it took for Chinese
        self.stores: HeldStores[TextStore] = HeldStores(
            lambda gallery: TextStore(inside(self.root, gallery)), keep_open
        )

    def store(self, gallery: str) -> TextStore:
        """The readings of `gallery` (opened once; the least recently used closed beyond OPEN_STORES)."""
        return self.stores.get(gallery)

    def pending(self, gallery: str, hashes: Sequence[str]) -> list[str]:
        known = self.store(gallery).known(hashes)
        return [h for h in hashes if h not in known]

    def read(self, gallery: str, sources: Sequence[Source], background: bool = False) -> None:
        self.store(gallery).put([self.read_one(source, background) for source in sources])

    def read_one(self, source: Source, background: bool = False) -> Reading:
        """The text of one image (from its file, else its thumbnail); an unreadable one says why."""
        path = source.path if source.path and Path(source.path).is_file() else source.thumb
        if background:
            quiet()  # the library's text waits for a pause in visitors' searches and chats
        elif not compute.on_compute_thread():
            compute.wait_idle()  # between model jobs, like the decoders (mmdemo.embedding.ingest)
        try:
            decoded = decode_pixels(path, self.max_pixels, Path(path).name, min_side=self.model.max_side)
            # On the compute thread, as a long job with safe points: model work takes turns there (a visitor's
            # search runs between two steps of an image; beside it, both would fight for the cores).
            lines = compute.run(self.model.read, decoded.pixels, compute.between_steps, long=True)
        except BadImageError as exc:
            log.info("no text read from %s: %s", Path(path).name, exc.reason)
            return Reading(source.hash, error=exc.reason)
        except UserFacingError:  # the model itself cannot load: nothing stored, read again at a later start
            raise
        except Exception as exc:  # noqa: BLE001 (onnxruntime, OpenCV: their own error types) indexed without text, and why
            log.warning("no text read from %s: %s: %s", Path(path).name, type(exc).__name__, exc)
            return Reading(source.hash, error=f"{type(exc).__name__}: {exc}")
        if not self.keep_han:
            lines = [line for line in lines if not has_han(line.text)]
        # Boxes in the file's own pixels (JPEG draft mode may have decoded it smaller).
        scale = decoded.source_size[0] / max(decoded.pixels.shape[1], 1)
        return Reading(source.hash, tuple(line.scaled(scale) for line in lines))

    def forget(self, gallery: str) -> None:
        self.stores.drop(gallery)
        if (self.root / gallery).is_dir():
            remove_tree(self.root, gallery)

    def search(self, gallery: str, query: TextQuery, limit: int, marked: int | None = None) -> list[TextMatch]:
        return self.store(gallery).search(query, limit, marked)

    def mark(self, gallery: str, query: TextQuery, content_hash: str) -> str:
        return self.store(gallery).mark(query, content_hash)

    def reading(self, gallery: str, content_hash: str) -> Reading | None:
        return self.store(gallery).get(content_hash)


@register("text")
def text_stage(settings: Settings) -> TextStage | None:
    """The text stage, unless MMDEMO_OCR is off (or the OCR package does not import: said in the log)."""
    if not settings.ocr:
        return None
    if why := ocr.missing():
        log.warning("images are indexed without their text: the OCR package does not import (%s)", why)
        return None
    model = ocr.OcrModel(settings.ocr_max_side, settings.ocr_max_boxes, settings.ocr_threads)
    keep = min(OPEN_STORES, settings.open_galleries)  # its databases open follow the galleries'
    return TextStage(settings.data_dir, model, settings.max_image_pixels, settings.ocr_languages, keep)
