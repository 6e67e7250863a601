"""The chat's preprocess: Gradio messages -> Qwen messages with decoded media -> model inputs.

`to_qwen_messages` is shared by both backends (the same decoding, rotation and size rules
wherever the model runs); `build_prompt` and `fit_to_budget` make the in-process model's
inputs within the context budget (mmdemo.chat.local generates from them).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmdemo.chat.media import is_video, load_image, read_video
from mmdemo.embedding.images import BadImageError
from mmdemo.errors import UserFacingError
from mmdemo.i18n import text
from mmdemo.models import compute

if TYPE_CHECKING:
    from mmdemo.models.vlm import VisionLanguageModel

log = logging.getLogger(__name__)
DEFAULT_QUESTION = text("chat.default_question")  # in English; the Chat tab asks in the UI language
PATCH_AREA = 28 * 28  # pixels per Qwen2.5-VL visual token (after the 2x2 merge, 14 px patches)


@dataclass(frozen=True)
class ImageBudget:
    """How big images and videos get (qwen_vl_utils `min_pixels` / `max_pixels` / `total_pixels`)."""

    min_pixels: int = 4 * PATCH_AREA
    max_pixels: int = 1280 * PATCH_AREA
    max_frames: int = 16  # frames sampled from a video
    video_total_pixels: int = 4096 * PATCH_AREA  # all frames of a video together
    max_file_pixels: int = 64_000_000  # larger files are refused (decompression-bomb guard)


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
        return {
            "type": "video",
            "video": list(frames.images),
            "sample_fps": frames.sample_fps,
            "min_pixels": budget.min_pixels,
            "max_pixels": budget.max_pixels,
            "total_pixels": budget.video_total_pixels,
        }
    image = load_image(path, budget.max_file_pixels, budget.max_pixels)
    return {"type": "image", "image": image, "min_pixels": budget.min_pixels, "max_pixels": budget.max_pixels}


def prepare_inputs(vlm: VisionLanguageModel, messages: list[dict[str, Any]]) -> Any:
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


def build_prompt(vlm: VisionLanguageModel, messages: list[dict[str, Any]], max_tokens: int = 0) -> Prompt:
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


def _message_sizes(vlm: VisionLanguageModel, inputs: Any, count: int) -> list[int]:
    """Tokens per message, from the `<|im_start|>` positions of the tokenized prompt."""
    start = vlm.processor.tokenizer.convert_tokens_to_ids("<|im_start|>")
    ids = inputs["input_ids"][0].tolist()
    starts = [i for i, t in enumerate(ids) if t == start]
    # The template may prepend a system message and appends the generation prompt.
    return [b - a for a, b in itertools.pairwise(starts[-(count + 1) :])]


__all__ = [
    "DEFAULT_QUESTION",
    "BadImageError",
    "ImageBudget",
    "Prompt",
    "build_prompt",
    "fit_to_budget",
    "prepare_inputs",
    "to_qwen_messages",
]
