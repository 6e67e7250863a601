"""Text in images: RapidOCR's PP-OCRv4 models (Chinese + English), whose ONNX weights ship in its wheel.

`OcrModel.read(pixels)` is detection → direction → recognition (RapidOCR's own pipeline), then our
postprocessing: lines below the confidence floor dropped, the `max_boxes` most confident kept, in
reading order, boxes in the coordinates of the pixels given. The model is loaded on first use
(0.1 s: three small ONNX sessions), once per process, and holds ~60 MB.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmdemo.errors import UserFacingError

log = logging.getLogger(__name__)

MIN_CONFIDENCE = 0.5  # RapidOCR's own text_score default
REC_BATCH = 6  # lines recognised per step (RapidOCR's rec_batch_num)
Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class TextLine:
    """One line of text read from an image: its words, its four corners (x, y), and how sure the model is."""

    text: str
    box: Box
    confidence: float

    def scaled(self, factor: float) -> TextLine:
        """The same line with its box scaled by `factor` (to another size of the same image)."""
        if factor == 1.0:
            return self
        box = tuple((round(x * factor), round(y * factor)) for x, y in self.box)
        return TextLine(self.text, box, self.confidence)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "box": [list(p) for p in self.box], "confidence": round(self.confidence, 4)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextLine:
        box = tuple((int(x), int(y)) for x, y in data["box"])
        return cls(str(data["text"]), box, float(data["confidence"]))  # type: ignore[arg-type]


def available() -> bool:
    """Whether the OCR package imports (it is in requirements.txt; a trimmed install may lack it)."""
    return not missing()


def missing() -> str:
    """Why the OCR cannot run ('' when it can): its package is not installed. Cheap: nothing is imported
    (OpenCV and onnxruntime load with the model, on first use; if they fail there, e.g. without libGL,
    the stage reads nothing and says why in the log, and the images are read at a later start)."""
    import importlib.util

    return "" if importlib.util.find_spec("rapidocr_onnxruntime") else "rapidocr-onnxruntime is not installed"


class OcrModel:
    """RapidOCR with our limits: images reduced to `max_side`, at most `max_boxes` lines, `threads` per session."""

    def __init__(self, max_side: int = 1280, max_boxes: int = 50, threads: int = 0):
        self.max_side, self.max_boxes = max_side, max_boxes
        self.threads = threads or os.cpu_count() or 1
        self._engine: Any = None
        self._lock = threading.Lock()  # RapidOCR keeps per-call state on the engine: one call at a time

    def _load(self) -> Any:
        if self._engine is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as exc:
                log.error("the OCR model cannot be loaded: %s", exc)
                raise UserFacingError(key="ocr.missing") from None
            # intra-op threads: onnxruntime would otherwise spin a thread per core and keep them hot.
            self._engine = RapidOCR(
                intra_op_num_threads=self.threads, inter_op_num_threads=1, max_side_len=self.max_side
            )
            logging.getLogger("RapidOCR").setLevel(logging.WARNING)  # it logs each call's timings at INFO
        return self._engine

    def read(self, pixels: np.ndarray, between: Callable[[], object] = lambda: None) -> list[TextLine]:
        """The text lines in an (H, W, 3) RGB uint8 image, in reading order (top to bottom, left to right).

        RapidOCR's own steps (detect, turn, recognise six lines at a time), with `between()` called after
        each: on the compute thread, mmdemo.models.compute.between_steps, so that a search waits for one
        step of an image (tens of milliseconds), not the whole image.
        """
        height, width = pixels.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        if scale < 1.0:  # reduced here: RapidOCR would reduce it too, after copying it whole
            from PIL import Image

            size = (round(width * scale), round(height * scale))
            small = Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR)
            pixels = np.asarray(small)
        bgr = np.ascontiguousarray(pixels[:, :, ::-1])  # RapidOCR takes OpenCV's channel order
        with self._lock:
            found = _steps(self._load(), bgr, between)
        lines = [_line(box, text, score, scale) for box, text, score in found if float(score) >= MIN_CONFIDENCE]
        return reading_order(sorted(lines, key=lambda line: -line.confidence)[: self.max_boxes])


def _steps(engine: Any, bgr: np.ndarray, between: Callable[[], object]) -> list[tuple[Any, str, float]]:
    """RapidOCR.__call__'s pipeline, step by step (its methods: docs/private-apis.md): (box, text, score)."""
    raw_h, raw_w = bgr.shape[:2]
    img, ratio_h, ratio_w = engine.preprocess(bgr)
    img, record = engine.maybe_add_letterbox(img, {"preprocess": {"ratio_h": ratio_h, "ratio_w": ratio_w}})
    boxes, _ = engine.auto_text_det(img)
    if boxes is None:
        return []
    between()
    crops, _, _ = engine.text_cls(engine.get_crop_img_list(img, boxes))
    recognised: list[Any] = []
    for start in range(0, len(crops), REC_BATCH):
        between()
        part, _ = engine.text_rec(crops[start : start + REC_BATCH], False)
        recognised += part
    corners = engine._get_origin_points(boxes, record, raw_h, raw_w)
    return [(box, str(rec[0]), float(rec[1])) for box, rec in zip(corners, recognised, strict=True)]


def reading_order(lines: list[TextLine]) -> list[TextLine]:
    """Rows top to bottom, each left to right: a line joins a row when its middle lies within the row's first
    line's height (a tilted sign's words have slightly different tops)."""
    rows: list[list[TextLine]] = []
    for line in sorted(lines, key=lambda line: _middle(line)[1]):
        if rows and abs(_middle(line)[1] - _middle(rows[-1][0])[1]) <= _height(rows[-1][0]) / 2:
            rows[-1].append(line)
        else:
            rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda line: _middle(line)[0])]


def _middle(line: TextLine) -> tuple[float, float]:
    return sum(x for x, _ in line.box) / 4, sum(y for _, y in line.box) / 4


def _height(line: TextLine) -> float:
    ys = [y for _, y in line.box]
    return max(ys) - min(ys)


def _line(box: Any, text: str, score: Any, scale: float) -> TextLine:
    corners = tuple((round(float(x) / scale), round(float(y) / scale)) for x, y in box)
    return TextLine(str(text).strip(), corners, float(score))  # type: ignore[arg-type]
