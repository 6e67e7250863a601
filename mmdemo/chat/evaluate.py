"""VQA evaluation: VQAv2 accuracy, exact match and latency, through the chat's own backend.

Records are JSONL: `image` (a path relative to the file), `question`, `answers` (reference
answers), optional `type` and `id`. Each question is asked the way the Chat tab asks it (same
decoding, resizing, backend: in process or an inference server), with Qwen's short-answer
instruction. Predictions go to a JSONL as they come, so a run can be read while it runs and
resumed after it stops.
"""

from __future__ import annotations

import itertools
import json
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmdemo.chat.pipeline import AnswerOptions, AnswerStats, ChatBackend, GenerationParams
from mmdemo.chat.prompt import ImageBudget, to_qwen_messages
from mmdemo.errors import UserFacingError

# Qwen2.5-VL's VQAv2 prompt suffix: answers come as a word or phrase, as the references are.
SHORT_ANSWER = "Answer the question using a single word or phrase."
SHORT_GREEDY = GenerationParams(max_new_tokens=16, greedy=True)

# --- the official VQA answer normalisation (vqaEval.py of the VQA API), compactly ---
_CONTRACTIONS = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldve": "could've",
    "couldnt": "couldn't",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hed": "he'd",
    "hes": "he's",
    "howd": "how'd",
    "howll": "how'll",
    "hows": "how's",
    "Im": "I'm",
    "Ive": "I've",
    "isnt": "isn't",
    "itd": "it'd",
    "itll": "it'll",
    "lets": "let's",
    "mightnt": "mightn't",
    "mightve": "might've",
    "mustnt": "mustn't",
    "mustve": "must've",
    "neednt": "needn't",
    "notve": "not've",
    "oclock": "o'clock",
    "shant": "shan't",
    "shed": "she'd",
    "shes": "she's",
    "shouldve": "should've",
    "shouldnt": "shouldn't",
    "thatd": "that'd",
    "thats": "that's",
    "thered": "there'd",
    "theres": "there's",
    "theyd": "they'd",
    "theyll": "they'll",
    "theyre": "they're",
    "theyve": "they've",
    "twas": "'twas",
    "wasnt": "wasn't",
    "wed": "we'd",
    "weve": "we've",
    "werent": "weren't",
    "whatll": "what'll",
    "whatre": "what're",
    "whats": "what's",
    "whatve": "what've",
    "whens": "when's",
    "whered": "where'd",
    "wheres": "where's",
    "whereve": "where've",
    "whod": "who'd",
    "wholl": "who'll",
    "whos": "who's",
    "whove": "who've",
    "whyll": "why'll",
    "whyre": "why're",
    "whys": "why's",
    "wont": "won't",
    "wouldve": "would've",
    "wouldnt": "wouldn't",
    "yall": "y'all",
    "youd": "you'd",
    "youll": "you'll",
    "youre": "you're",
    "youve": "you've",
}
_NUMBERS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_NUMBER = re.compile(r"(\d)(,)(\d)")


def normalize_answer(text: str) -> str:
    """An answer as the official VQA evaluation compares it: lower case, punctuation removed (or
    spaced), periods kept only inside numbers, number words as digits, no articles, contractions
    restored ("dont" -> "don't")."""
    text = text.replace("\n", " ").replace("\t", " ").strip().lower()
    out = text
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_NUMBER.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD.sub("", out)
    words = []
    for word in out.split():
        word = _NUMBERS.get(word, word)
        if word not in _ARTICLES:
            words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQAv2 accuracy of one prediction.

    With 10 human answers (VQAv2), the official rule: min(#matching answers / 3, 1), averaged over
    the 10 leave-one-out subsets of 9. With fewer (a hand-made set), the references are acceptable
    alternatives: a match with any of them scores 1.
    """
    pred = normalize_answer(prediction)
    refs = [normalize_answer(a) for a in answers]
    if not refs:
        raise ValueError("a question needs at least one reference answer")
    if len(refs) < 10:
        return float(pred in refs)
    scores = [min(1.0, sum(r == pred for r in others) / 3) for others in itertools.combinations(refs, len(refs) - 1)]
    return sum(scores) / len(scores)


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if the normalised prediction is the most frequent reference (the first listed, on a tie)."""
    refs = [normalize_answer(a) for a in answers]
    top = max(refs, key=lambda r: (refs.count(r), -refs.index(r)))
    return float(normalize_answer(prediction) == top)


def short_answer(text: str) -> str:
    """The model's answer as a VQA answer: first line, without a trailing period."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.strip().rstrip(".").strip()


@dataclass(frozen=True)
class Question:
    id: str
    image: Path
    question: str
    answers: tuple[str, ...]
    type: str = ""


def read_questions(path: Path) -> list[Question]:
    """The records of a VQA JSONL file, images resolved against its folder; bad lines are named."""
    questions = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            answers = record["answers"]
            questions.append(
                Question(
                    id=str(record.get("id", number)),
                    image=(Path(path).parent / record["image"]).resolve(),
                    question=record["question"],
                    answers=tuple(answers if isinstance(answers, list) else [answers]),
                    type=str(record.get("type", "")),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserFacingError(
                f"{path}, line {number}: not a VQA record ({exc}); see docs/cli.md: eval vqa"
            ) from None
    if not questions:
        raise UserFacingError(f"{path} has no questions.")
    return questions


@dataclass
class Summary:
    """What a run measured."""

    questions: int = 0
    accuracy: float = 0.0  # VQAv2 accuracy, mean
    exact_match: float = 0.0
    by_type: dict[str, float] = field(default_factory=dict)  # type -> VQAv2 accuracy
    latency_p50: float = 0.0  # seconds per answer
    latency_p95: float = 0.0
    tokens_per_second: float = 0.0  # decode rate over all answers

    def table(self) -> str:
        lines = [
            f"questions: {self.questions}",
            f"VQA accuracy: {self.accuracy:.4f}",
            f"exact match:  {self.exact_match:.4f}",
        ]
        lines += [f"  {kind or '(no type)'}: {acc:.4f}" for kind, acc in sorted(self.by_type.items())]
        lines.append(f"latency p50 / p95: {self.latency_p50:.2f} / {self.latency_p95:.2f} s per answer")
        lines.append(f"decode: {self.tokens_per_second:.1f} tokens/s")
        return "\n".join(lines)


def summarize(rows: Sequence[dict[str, Any]]) -> Summary:
    """The summary of prediction rows (as `evaluate_vqa` writes them)."""
    if not rows:
        return Summary()
    latencies = sorted(r["latency_s"] for r in rows)
    by_type: dict[str, list[float]] = {}
    for r in rows:
        by_type.setdefault(r.get("type", ""), []).append(r["accuracy"])
    seconds = sum(r["decode_s"] for r in rows)
    return Summary(
        questions=len(rows),
        accuracy=statistics.fmean(r["accuracy"] for r in rows),
        exact_match=statistics.fmean(r["exact_match"] for r in rows),
        by_type={kind: statistics.fmean(values) for kind, values in by_type.items()},
        latency_p50=statistics.median(latencies),
        latency_p95=latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        tokens_per_second=sum(r["tokens"] for r in rows) / seconds if seconds > 0 else 0.0,
    )


def evaluate_vqa(
    backend: ChatBackend,
    questions: Sequence[Question],
    predictions: Path,
    budget: ImageBudget,
    params: GenerationParams = SHORT_GREEDY,
    max_context_tokens: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Summary:
    """Ask each question (those already in `predictions` are kept: a resumed run), append a row per
    answer to `predictions`, and summarise them all."""
    done = {row["id"]: row for row in _read_rows(predictions)}
    todo = [q for q in questions if q.id not in done]
    predictions.parent.mkdir(parents=True, exist_ok=True)
    with predictions.open("a", encoding="utf-8") as out:
        for n, question in enumerate(todo, 1):
            row = _ask(backend, question, params, budget, max_context_tokens)
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
            done[question.id] = row
            if progress is not None:
                progress(len(questions) - len(todo) + n, len(questions))
    return summarize([done[q.id] for q in questions if q.id in done])


def _ask(backend: ChatBackend, q: Question, params: GenerationParams, budget: ImageBudget, limit: int) -> dict:
    history: list[dict[str, Any]] = [
        {"role": "user", "content": {"path": str(q.image)}},
        {"role": "user", "content": f"{q.question}\n{SHORT_ANSWER}"},
    ]
    stats = AnswerStats()
    start = time.perf_counter()
    prepared = backend.prepare(to_qwen_messages(history, budget), limit)
    text = ""
    for text in backend.stream(prepared, AnswerOptions(params, stats=stats)):  # noqa: B007
        pass  # each value is the whole answer so far: the last is the answer
    answer = short_answer(text)
    return {
        "id": q.id,
        "type": q.type,
        "question": q.question,
        "image": q.image.name,
        "prediction": answer,
        "answers": list(q.answers),
        "accuracy": vqa_accuracy(answer, q.answers),
        "exact_match": exact_match(answer, q.answers),
        "latency_s": round(time.perf_counter() - start, 4),
        "tokens": stats.new_tokens,
        "decode_s": round(stats.decode_seconds, 4),
    }


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash: that question is asked again
    return rows
