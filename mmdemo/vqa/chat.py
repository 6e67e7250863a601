"""Chat with a Qwen-VL model: messages -> prompt -> streamed answer.

The split follows the transformers pipeline: `to_qwen_messages` and `build_prompt`
(preprocess), `stream_reply` (forward, on a worker thread), text out (postprocess).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mmdemo.errors import UserFacingError
from mmdemo.i18n import DEFAULT, text
from mmdemo.images import BadImageError
from mmdemo.models import compute
from mmdemo.vqa.media import is_video, load_image, read_video
from mmdemo.vqa.reuse import PrefixCache, Reuse, continuation, reusable_prefix, visual_spans

log = logging.getLogger(__name__)
DEFAULT_QUESTION = text("chat.default_question")  # in English; the Chat tab asks in the UI language
PATCH_AREA = 28 * 28  # pixels per Qwen2.5-VL visual token (after the 2x2 merge, 14 px patches)


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
        common = {"max_new_tokens": self.max_new_tokens, "repetition_penalty": self.repetition_penalty}
        if self.greedy or self.temperature <= 0:
            return {**common, "do_sample": False}
        return {**common, "do_sample": True, "temperature": self.temperature, "top_p": self.top_p}


@dataclass(frozen=True)
class ImageBudget:
    """How big images and videos get (qwen_vl_utils `min_pixels` / `max_pixels` / `total_pixels`)."""

    min_pixels: int = 4 * PATCH_AREA
    max_pixels: int = 1280 * PATCH_AREA
    max_frames: int = 16  # frames sampled from a video
    video_total_pixels: int = 4096 * PATCH_AREA  # all frames of a video together
    max_file_pixels: int = 64_000_000  # larger files are refused (decompression-bomb guard)


@dataclass
class AnswerStats:
    """What one answer cost: filled in by `stream_reply`, shown under the conversation."""

    prompt_tokens: int = 0
    reused_tokens: int | None = 0  # of the prompt, from the previous turn's KV cache (None: not known here)
    new_tokens: int = 0
    decode_seconds: float = 0.0  # first token to last
    first_token_seconds: float = 0.0  # request to first token

    def describe(self, language: str = DEFAULT) -> str:
        """e.g. '64 tokens · 31.5 tokens/s · 306 of 323 prompt tokens reused from the cache'."""
        rate = (self.new_tokens - 1) / self.decode_seconds if self.new_tokens > 1 and self.decode_seconds > 0 else 0
        common = {"tokens": self.new_tokens, "rate": f"{rate:.1f}", "prompt": self.prompt_tokens}
        if self.reused_tokens is None:  # an inference server: its prefix cache is its own business
            return text("chat.stats_remote", language, first=f"{self.first_token_seconds:.2f}", **common)
        return text("chat.stats", language, reused=self.reused_tokens, **common)


@dataclass(frozen=True)
class Prompt:
    """Model inputs for one turn, and what had to be left out to fit the context budget."""

    inputs: Any  # transformers BatchFeature
    tokens: int
    dropped: int = 0  # oldest messages the model no longer sees


def to_qwen_messages(
    history: Sequence[dict[str, Any]], budget: ImageBudget, system_prompt: str = ""
) -> list[dict[str, Any]]:
    """Gradio messages (any of its content shapes) -> Qwen chat messages with decoded media,
    after `system_prompt` when one is given (else the chat template's default).

    Consecutive messages of one role are merged into one turn, which is how gradio stores a
    user turn of several files plus text. A file that cannot be read raises BadImageError.
    """
    out: list[dict[str, Any]] = []
    if system_prompt.strip():
        out.append({"role": "system", "content": [{"type": "text", "text": system_prompt.strip()}]})
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
    if not isinstance(item, dict):
        return None
    if item.get("type") == "text":
        return {"type": "text", "text": item["text"]}
    file = item.get("file", item)  # {"type": "file", "file": {...}} or a bare file dict
    path = file.get("path") if isinstance(file, dict) else None
    if not path:
        return None
    if is_video(path):
        frames = read_video(path, budget.max_frames)
        return {"type": "video", "video": list(frames.images), "sample_fps": frames.sample_fps,
                "min_pixels": budget.min_pixels, "max_pixels": budget.max_pixels,
                "total_pixels": budget.video_total_pixels}  # fmt: skip
    image = load_image(path, budget.max_file_pixels, budget.max_pixels)
    return {"type": "image", "image": image, "min_pixels": budget.min_pixels, "max_pixels": budget.max_pixels}


def prepare_inputs(vlm: Any, messages: list[dict[str, Any]]) -> Any:
    """Chat template + qwen_vl_utils vision preprocessing -> model inputs on the model's device."""
    from qwen_vl_utils import process_vision_info

    processor = vlm.processor
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    try:
        images, videos, _ = process_vision_info(
            messages, return_video_kwargs=True, return_video_metadata=True, image_patch_size=vlm.image_patch_size
        )
    except Exception as exc:  # PIL raises many types for bad pixels
        raise UserFacingError(key="chat.unreadable_media", error=exc) from exc
    extra: dict[str, Any] = {}
    if videos:
        # Frames are already sampled; their rate (in the metadata) sets the temporal positions.
        videos, metadata = map(list, zip(*videos, strict=True))
        # cap_pixels_per_frame: the per-frame pixel cap of qwen_vl_utils (the default from v5.22 on).
        extra = {"video_metadata": metadata, "do_sample_frames": False, "cap_pixels_per_frame": True}
    if vlm.arch == "qwen3_vl":
        # qwen_vl_utils already resized to the patch grid; Qwen3-VL's processor must not resize again.
        extra["do_resize"] = False
    inputs = processor(text=[text], images=images, videos=videos, return_tensors="pt", **extra)
    return inputs.to(vlm.model.device)


def build_prompt(vlm: Any, messages: list[dict[str, Any]], max_tokens: int = 0) -> Prompt:
    """The model inputs for `messages`, dropping the oldest turns if they exceed `max_tokens`.

    Turns are counted on the tokenized prompt itself (images and videos included), so one
    extra preprocessing pass is needed only when something is dropped.
    """
    inputs = compute.run(prepare_inputs, vlm, messages, long=True)
    total = int(inputs["input_ids"].shape[1])
    if not max_tokens or total <= max_tokens:
        return Prompt(inputs, total)
    sizes = _message_sizes(vlm, inputs, len(messages))
    kept, drop = fit_to_budget(messages, [m["role"] for m in messages], sizes, total - max_tokens, max_tokens)
    inputs = compute.run(prepare_inputs, vlm, kept, long=True)
    return Prompt(inputs, int(inputs["input_ids"].shape[1]), dropped=drop)


def fit_to_budget(
    messages: Sequence[Any], roles: Sequence[str], sizes: Sequence[int], excess: int, max_tokens: int
) -> tuple[list[Any], int]:
    """`messages` less the oldest whole exchanges (a user turn and what follows) that shed `excess`
    tokens, and how many were dropped. A leading system prompt and the last user message always
    stay; UserFacingError if even they are too big."""
    keep = 1 if roles and roles[0] == "system" else 0
    drop = keep
    while excess > 0 and drop < len(roles) - 1:
        excess -= sizes[drop]
        drop += 1
        while drop < len(roles) - 1 and roles[drop] != "user":
            excess -= sizes[drop]
            drop += 1
    if excess > 0:
        raise UserFacingError(key="chat.over_budget", tokens=sizes[-1], limit=max_tokens)
    return [*messages[:keep], *messages[drop:]], drop - keep


def _message_sizes(vlm: Any, inputs: Any, count: int) -> list[int]:
    """Tokens per message, from the `<|im_start|>` positions of the tokenized prompt."""
    start = vlm.processor.tokenizer.convert_tokens_to_ids("<|im_start|>")
    ids = inputs["input_ids"][0].tolist()
    starts = [i for i, t in enumerate(ids) if t == start]
    # The template may prepend a system message and appends the generation prompt.
    return [b - a for a, b in itertools.pairwise(starts[-(count + 1) :])]


def stream_reply(
    vlm: Any,
    prompt: Prompt | list[dict[str, Any]],
    params: GenerationParams,
    stop: threading.Event | None = None,
    prefix: PrefixCache | None = None,
    min_interval: float = 0.0,
    stats: AnswerStats | None = None,
) -> Iterator[str]:
    """Yield the answer as it grows (the whole text so far, each time a token arrives).

    With `min_interval`, updates come at most that often (the text of the tokens in between
    joins the next one; the last is always yielded): each update costs the web server work
    that would otherwise compete with the model and with other visitors' requests.

    Generation runs on the compute thread. Setting `stop`, or closing this generator (the browser
    went away), ends `generate()` at the next token, and returns only once it has ended.
    With `prefix`, the keys/values of the previous turn are reused for the part of the prompt
    that did not change, and the cache is updated for the next turn. `stats`, when given, is
    filled in once the answer ends (stopped or not).
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    class _StopOnEvent(StoppingCriteria):
        # Called on the compute thread after every token: the safe point where other visitors'
        # short model jobs (a search, a classification) run, instead of waiting for the answer.
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
            compute.between_steps()
            return stop.is_set()

    stop = stop or threading.Event()
    if not isinstance(prompt, Prompt):
        prompt = build_prompt(vlm, prompt)
    model = vlm.model

    class _CountingStreamer(TextIteratorStreamer):
        tokens = 0

        def put(self, value: Any) -> None:
            if not self.next_tokens_are_prompt:  # the first put is the prompt (skip_prompt)
                self.tokens += int(value.numel())
            super().put(value)

    streamer = _CountingStreamer(vlm.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    failure: list[BaseException] = []

    def work() -> None:
        if stop.is_set():  # stopped (or the client left) while this waited for the compute thread
            streamer.end()
            return
        try:
            kwargs = _reuse_prefix(model, prompt.inputs, prefix) if prefix is not None else dict(prompt.inputs)
            out = model.generate(
                **kwargs, streamer=streamer, stopping_criteria=StoppingCriteriaList([_StopOnEvent()]),
                **params.generate_kwargs(),
            )  # fmt: skip
            cache = kwargs.get("past_key_values")
            # The session may have been cleared meanwhile (Clear, or its tab closed: forget() does
            # not wait for the answer to end); then there is nothing to keep.
            if prefix is not None and prefix.cache is cache is not None:
                prefix.ids = out[0, : cache.get_seq_length()].tolist()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            failure.append(exc)
            streamer.end()  # unblock the consumer

    job = compute.submit(work, long=True)  # the one thread that runs model work (mmdemo.models.compute)
    text, shown, last, first, started = "", "", 0.0, None, time.monotonic()
    try:
        for chunk in streamer:
            if stop.is_set():
                break
            first = first or time.monotonic()
            text += chunk
            if (now := time.monotonic()) - last >= min_interval:
                shown, last = text, now
                yield text
        if text != shown and not stop.is_set():
            yield text
    finally:
        stop.set()
        job.result()
        if stats is not None:
            stats.prompt_tokens, stats.new_tokens = prompt.tokens, streamer.tokens
            stats.reused_tokens = prefix.last.reused if prefix is not None and prefix.last is not None else 0
            stats.decode_seconds = time.monotonic() - first if first is not None else 0.0
            stats.first_token_seconds = first - started if first is not None else 0.0
    if failure:
        if prefix is not None:
            prefix.clear()
        if isinstance(failure[0], torch.OutOfMemoryError):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise UserFacingError(key="chat.oom") from failure[0]
        raise failure[0]


def _reuse_prefix(model: Any, inputs: Any, prefix: PrefixCache) -> dict[str, Any]:
    """`generate()` kwargs that continue from `prefix`'s KV cache as far as it is still valid.

    Runs on the compute thread (it hashes pixels and cuts the cache), before generation.
    """
    from transformers import DynamicCache

    ids, spans = inputs["input_ids"][0].tolist(), visual_spans(inputs, model.config)
    reused = 0
    if prefix.cache is not None and prefix.model_token == id(model):
        reused = reusable_prefix(prefix.ids, prefix.spans, ids, spans)
    if reused:
        prefix.cache.crop(reused - prefix.cache.get_seq_length())  # negative: tokens to drop
        kwargs = continuation(model, inputs, spans, reused)
    else:
        prefix.cache, prefix.model_token = DynamicCache(config=model.config), id(model)
        kwargs = dict(inputs)
    prefix.ids, prefix.spans, prefix.last = [], spans, Reuse(reused, len(ids))
    kwargs["past_key_values"] = prefix.cache
    return kwargs


__all__ = [
    "DEFAULT_QUESTION",
    "AnswerStats",
    "BadImageError",
    "GenerationParams",
    "ImageBudget",
    "Prompt",
    "build_prompt",
    "fit_to_budget",
    "prepare_inputs",
    "stream_reply",
    "to_qwen_messages",
]
