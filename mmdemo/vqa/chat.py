"""Chat with a Qwen-VL model: messages -> processor inputs -> streamed answer.

The split follows the transformers pipeline: `to_qwen_messages` and `prepare_inputs`
(preprocess), `stream_reply` (forward, on a worker thread), text chunks out (postprocess).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmdemo.errors import UserFacingError

log = logging.getLogger(__name__)
DEFAULT_QUESTION = "Describe this image."


@dataclass(frozen=True)
class GenerationParams:
    """Sampling controls shown in the chat tab."""

    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.05
    greedy: bool = False

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `model.generate`."""
        if self.greedy or self.temperature <= 0:
            return {"max_new_tokens": self.max_new_tokens, "do_sample": False,
                    "repetition_penalty": self.repetition_penalty}  # fmt: skip
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "repetition_penalty": self.repetition_penalty,
        }


@dataclass(frozen=True)
class ImageBudget:
    """Pixel range each image is resized into (qwen_vl_utils `min_pixels` / `max_pixels`)."""

    min_pixels: int = 256 * 28 * 28
    max_pixels: int = 1280 * 28 * 28


def to_qwen_messages(history: Sequence[dict[str, Any]], budget: ImageBudget) -> list[dict[str, Any]]:
    """Gradio messages (any of its content shapes) -> Qwen chat messages.

    Consecutive messages of one role are merged into one turn, which is how gradio stores a
    user turn of several files plus text.
    """
    out: list[dict[str, Any]] = []
    for message in history:
        parts = [_part(item, budget) for item in _items(message.get("content"))]
        parts = [p for p in parts if p is not None]
        if not parts:
            continue
        if out and out[-1]["role"] == message["role"]:
            out[-1]["content"].extend(parts)
        else:
            out.append({"role": message["role"], "content": parts})
    return out


def _items(content: Any) -> list[Any]:
    return content if isinstance(content, list) else [content]


def _part(item: Any, budget: ImageBudget) -> dict[str, Any] | None:
    if isinstance(item, str):
        return {"type": "text", "text": item} if item else None
    if isinstance(item, dict):
        if item.get("type") == "text":
            return {"type": "text", "text": item["text"]}
        file = item.get("file", item)  # {"type": "file", "file": {...}} or a bare file dict
        path = file.get("path") if isinstance(file, dict) else None
        if path:
            if Path(path).suffix.lower() in {".mp4", ".mov", ".webm", ".avi", ".mkv"}:
                return {"type": "video", "video": path, "max_pixels": budget.max_pixels}
            return {"type": "image", "image": path, "min_pixels": budget.min_pixels, "max_pixels": budget.max_pixels}
    return None


def prepare_inputs(vlm: Any, messages: list[dict[str, Any]]) -> Any:
    """Chat template + qwen_vl_utils vision preprocessing -> model inputs on the model's device."""
    from qwen_vl_utils import process_vision_info

    processor = vlm.processor
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    try:
        images, videos = process_vision_info(messages, image_patch_size=vlm.image_patch_size)
    except Exception as exc:  # PIL/av raise many types for bad files
        raise UserFacingError(f"Could not read an image or video in this conversation: {exc}") from exc
    # qwen_vl_utils already resized to the patch grid; Qwen3-VL's processor must not resize again.
    extra = {"do_resize": False} if vlm.arch == "qwen3_vl" else {}
    inputs = processor(text=[text], images=images, videos=videos, return_tensors="pt", **extra)
    return inputs.to(vlm.model.device)


def stream_reply(
    vlm: Any, messages: list[dict[str, Any]], params: GenerationParams, stop: threading.Event | None = None
) -> Iterator[str]:
    """Yield the answer as it grows (the whole text so far, each time a token arrives).

    Generation runs on a worker thread. Setting `stop`, or closing this generator (the browser
    went away), ends `generate()` at the next token, and the worker is joined before returning.
    """
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    class _StopOnEvent(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
            return stop.is_set()

    stop = stop or threading.Event()
    inputs = prepare_inputs(vlm, messages)
    streamer = TextIteratorStreamer(vlm.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            vlm.model.generate(
                **inputs, streamer=streamer, stopping_criteria=StoppingCriteriaList([_StopOnEvent()]),
                **params.generate_kwargs(),
            )  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            failure.append(exc)
            streamer.end()  # unblock the consumer

    worker = threading.Thread(target=work, name="mmdemo-generate", daemon=True)
    worker.start()
    text = ""
    try:
        for chunk in streamer:
            if stop.is_set():
                break
            text += chunk
            yield text
    finally:
        stop.set()
        worker.join()
    if failure:
        raise failure[0]
