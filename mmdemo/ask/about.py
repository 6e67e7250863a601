"""Ask the chat model about search results: the prompt that numbers them, the answer's references."""

from __future__ import annotations

import re
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from mmdemo.chat.pipeline import AnswerOptions, ChatBackend, GenerationParams
from mmdemo.chat.prompt import PATCH_AREA, ImageBudget, to_qwen_messages
from mmdemo.errors import UserFacingError

# Why the numbers: the answer names the results it relies on, and the page turns "[2]" into a link.
ASK_INSTRUCTION = (
    "The {n} images above are search results, numbered [1] to [{n}] in the order shown. "
    "Answer the question about them. Whenever you rely on an image, cite its number in square "
    "brackets, e.g. [2].\n\nQuestion: {question}"
)
REFERENCE = re.compile(r"\[(\d{1,3})\]")
# The text an image's OCR read goes with it, marked as such: the model reads small print poorly itself.
OCR_NOTE = "Text read in this image by OCR (it may hold errors): {text}"
OCR_CHARS = 300  # of one image's OCR text in a prompt, at most


def read_question(text: str, max_chars: int) -> str:
    """The question, stripped; UserFacingError when it is empty or longer than `max_chars`."""
    question = text.strip()
    if not question:
        raise UserFacingError(key="ask.no_question")
    if len(question) > max_chars:
        raise UserFacingError(key="ask.question_too_long", n=len(question), limit=max_chars)
    return question


@dataclass(frozen=True)
class Shown:
    """One search result as the chat model sees it: its rank on the page, its name, an image file."""

    rank: int
    name: str
    path: str
    text: str = ""  # what OCR read in it ('' for none, or when MMDEMO_OCR_IN_CHAT is off)


def ocr_turn(shown: Shown) -> list[dict[str, Any]]:
    """The message that gives the model an image's OCR text (none when there is no text)."""
    if not shown.text.strip():
        return []
    text = " / ".join(shown.text.split("\n"))
    text = text if len(text) <= OCR_CHARS else text[: OCR_CHARS - 1] + "…"
    return [{"role": "user", "content": OCR_NOTE.format(text=text)}]


def ask_budget(max_pixels: int, max_file_pixels: int) -> ImageBudget:
    """The image budget of the ask features: every image at most `max_pixels` (a reduced resolution)."""
    return ImageBudget(min_pixels=4 * PATCH_AREA, max_pixels=max_pixels, max_file_pixels=max_file_pixels)


def ask_history(shown: Sequence[Shown], question: str) -> list[dict[str, Any]]:
    """The user turn in the chat's message format: each result's number and name, its image, then the question.

    The same messages continue in the Chat tab, so what the model saw there is what it sees here."""
    turn: list[dict[str, Any]] = []
    for item in shown:
        turn += [
            {"role": "user", "content": f"[{item.rank}] {item.name}"},
            {"role": "user", "content": {"path": item.path}},
            *ocr_turn(item),
        ]
    turn.append({"role": "user", "content": ASK_INSTRUCTION.format(n=len(shown), question=question)})
    return turn


def cited(answer: str, count: int) -> list[int]:
    """The result numbers an answer cites (1..count), in order of first mention."""
    seen: list[int] = []
    for match in REFERENCE.finditer(answer):
        if 1 <= (rank := int(match.group(1))) <= count and rank not in seen:
            seen.append(rank)
    return seen


def linked(answer: str, count: int) -> str:
    """The answer as Markdown whose references are links (#result-N) the page turns into selecting result N."""

    def link(match: re.Match[str]) -> str:
        rank = int(match.group(1))
        return f"[\\[{rank}\\]](#result-{rank})" if 1 <= rank <= count else match.group(0)

    return REFERENCE.sub(link, answer)


def stream_answer(
    backend: ChatBackend[Any],
    history: list[dict[str, Any]],
    budget: ImageBudget,
    params: GenerationParams,
    stop: threading.Event,
    max_tokens: int,
    min_interval: float = 0.0,
) -> Generator[str, None, None]:
    """The answer to the last user turn of `history` (chat messages), growing as it streams."""
    prepared = backend.prepare(to_qwen_messages(history, budget), max_tokens)
    yield from backend.stream(prepared, AnswerOptions(params, stop, None, min_interval))


def answer(
    backend: ChatBackend[Any],
    history: list[dict[str, Any]],
    budget: ImageBudget,
    params: GenerationParams,
    stop: threading.Event,
    max_tokens: int,
) -> str:
    """The whole answer (what had arrived, when `stop` was set)."""
    text = ""
    # A flag of its own: a backend sets the one it is given when the answer ends, and `stop` is the
    # caller's, for all of its answers. Leaving the loop closes the stream, which ends the generation.
    stream: Generator[str, None, None] = stream_answer(backend, history, budget, params, threading.Event(), max_tokens)
    try:
        for grown in stream:
            text = grown
            if stop.is_set():
                break
    finally:
        stream.close()
    return text
