"""Ask every image: one or more questions over a set of images, a row per (image, question), kept as CSV."""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterator, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from mmdemo.ask.about import Shown, answer, ocr_turn
from mmdemo.chat.pipeline import ChatBackend, GenerationParams
from mmdemo.chat.prompt import ImageBudget
from mmdemo.errors import UserFacingError


@dataclass(frozen=True)
class EachRow:
    """One answer: which image, which question, what the model said."""

    image: str
    question: str
    answer: str


def read_questions(text: str, max_questions: int, max_chars: int) -> list[str]:
    """One question per non-empty line; UserFacingError when there are none, too many, or one is too long."""
    questions = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not questions:
        raise UserFacingError(key="ask.no_question")
    if len(questions) > max_questions:
        raise UserFacingError(key="ask.too_many_questions", n=len(questions), limit=max_questions)
    if (longest := max(len(q) for q in questions)) > max_chars:
        raise UserFacingError(key="ask.question_too_long", n=longest, limit=max_chars)
    return questions


def ask_each(
    backend: ChatBackend[Any],
    images: Sequence[Shown],
    questions: Sequence[str],
    budget: ImageBudget,
    params: GenerationParams,
    stop: threading.Event,
    max_tokens: int,
) -> Iterator[EachRow]:
    """A row per image and question, image by image, as each answer is complete; ends early on `stop`."""
    for shown in images:
        for question in questions:
            if stop.is_set():
                return
            history: list[dict[str, Any]] = [
                {"role": "user", "content": {"path": shown.path}},
                *ocr_turn(shown),
                {"role": "user", "content": question},
            ]
            text = answer(backend, history, budget, params, stop, max_tokens)
            if stop.is_set() and not text:
                return
            yield EachRow(shown.name, question, text)


def write_csv(rows: Sequence[EachRow], path: Path) -> Path:
    """The rows as CSV (image, question, answer), UTF-8 with a BOM so that spreadsheet apps read Chinese right."""
    with path.open("w", newline="", encoding="utf-8-sig") as out:
        writer = csv.writer(out)
        writer.writerow([f.name for f in fields(EachRow)])
        writer.writerows(astuple(row) for row in rows)
    return path
