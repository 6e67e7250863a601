"""Prefix reuse: keep a conversation's KV cache and prefill only what a new turn adds.

A chat turn's prompt is the previous prompt + the previous answer + the new message. The
textbook chat re-runs all of it (every image through the vision encoder, every token through
prefill) on every turn. Here the KV cache of the last generation is kept; the next prompt is
compared with the tokens the cache holds, the cache is cut back to the longest prefix that is
still valid, and `generate()` continues from it with only the new tokens (and only the new
images' pixels).

Token ids alone do not identify a prefix: every image becomes a run of identical
`<|image_pad|>` tokens, so two different images of one size tokenize the same. Each image and
video therefore also carries a content key, and the prefix stops before the first one that
differs.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class VisualSpan:
    """One image or video in a prompt: where its tokens are and what it shows."""

    kind: str  # "image" or "video"
    start: int  # first token index
    end: int  # one past the last token index
    key: str  # content hash of its pixels


@dataclass(frozen=True)
class Reuse:
    """How much of a new prompt comes from the cache."""

    reused: int  # prompt tokens not recomputed
    total: int  # prompt tokens


@dataclass
class PrefixCache:
    """What a finished generation leaves behind for the next turn of the same conversation."""

    ids: list[int] = field(default_factory=list)  # tokens whose keys/values the cache holds
    spans: list[VisualSpan] = field(default_factory=list)
    cache: Any = None  # transformers DynamicCache
    model_token: int = 0  # id() of the model that filled it: a reloaded model invalidates it
    last: Reuse | None = None  # what the latest turn reused

    @property
    def nbytes(self) -> int:
        """Bytes of the cached keys and values (tensor metadata only: no model op)."""
        layers = getattr(self.cache, "layers", None) or ()
        tensors = [t for layer in layers for t in (getattr(layer, "keys", None), getattr(layer, "values", None))]
        return sum(int(t.nbytes) for t in tensors if t is not None and hasattr(t, "nbytes"))

    def clear(self) -> None:
        """Drop the cached tensors (Clear, undo, or the session ended)."""
        self.ids, self.spans, self.cache, self.last = [], [], None, None


def reusable_prefix(
    cached_ids: list[int], cached_spans: list[VisualSpan], ids: list[int], spans: list[VisualSpan]
) -> int:
    """Length of the longest prefix of `ids` whose cached keys/values are still right.

    The common token prefix, cut back to before the first image/video that differs from (or is
    only partly inside) the cached one, and to at most len(ids) - 1: generation needs at least
    one prompt token forwarded to produce the next token's logits.
    """
    n = 0
    limit = min(len(cached_ids), len(ids) - 1)
    while n < limit and cached_ids[n] == ids[n]:
        n += 1
    cached = {(s.kind, s.start): s for s in cached_spans}
    for span in spans:
        if span.start >= n:
            break
        old = cached.get((span.kind, span.start))
        if span.end > n or old is None or old != span:
            return span.start
    return max(n, 0)


def visual_spans(inputs: Any, config: Any) -> list[VisualSpan]:
    """Images and videos of processor `inputs`, in prompt order, with their content keys."""
    ids = inputs["input_ids"][0].tolist()
    spans: list[VisualSpan] = []
    merge = _merge_size(config)
    for kind, token, pixels, grids in (
        ("image", config.image_token_id, inputs.get("pixel_values"), inputs.get("image_grid_thw")),
        ("video", config.video_token_id, inputs.get("pixel_values_videos"), inputs.get("video_grid_thw")),
    ):
        if grids is None:
            continue
        runs = _runs(ids, token)
        row = 0
        for grid in grids.tolist():
            rows = grid[0] * grid[1] * grid[2]
            key = hashlib.blake2b(pixels[row : row + rows].float().cpu().numpy().tobytes(), digest_size=16).hexdigest()
            row += rows
            # A video may be several runs (Qwen3-VL puts a timestamp before each frame): take
            # runs until they hold this item's tokens.
            need, start, end = rows // (merge * merge), None, 0
            while need > 0 and runs:
                run_start, run_end = runs.pop(0)
                start = run_start if start is None else start
                end, need = run_end, need - (run_end - run_start)
            spans.append(VisualSpan(kind, start if start is not None else len(ids), end, key))
    return sorted(spans, key=lambda s: s.start)


def continuation(model: Any, inputs: Any, spans: list[VisualSpan], reused: int) -> dict[str, Any]:
    """`generate()` keyword arguments that continue from a cache holding `reused` tokens.

    3D rotary positions are computed over the whole prompt (they depend on every earlier image's
    grid), then generation slices them to the new tokens; pixels are passed only for images and
    videos that start after the reused prefix.
    """
    kwargs = dict(inputs)
    state = {**kwargs, "past_key_values": None}
    kwargs["position_ids"] = model._prepare_position_ids_for_generation(kwargs["input_ids"], state)
    for kind, pixel_key, grid_key in (
        ("image", "pixel_values", "image_grid_thw"),
        ("video", "pixel_values_videos", "video_grid_thw"),
    ):
        if kwargs.get(grid_key) is None:
            continue
        kept = sum(1 for s in spans if s.kind == kind and s.start < reused)
        grids = kwargs[grid_key]
        rows = int(grids[:kept].prod(-1).sum())
        if kept == len(grids):  # every one of them is in the cache
            kwargs.pop(pixel_key)
            kwargs.pop(grid_key)
            if kind == "video":
                kwargs.pop("second_per_grid_ts", None)
            continue
        kwargs[pixel_key] = kwargs[pixel_key][rows:]
        kwargs[grid_key] = grids[kept:]
        if kind == "video" and kwargs.get("second_per_grid_ts") is not None:
            kwargs["second_per_grid_ts"] = kwargs["second_per_grid_ts"][kept:]
    return kwargs


def _runs(ids: list[int], token: int) -> list[tuple[int, int]]:
    """(start, end) of each maximal run of `token` in `ids`."""
    runs, start = [], 0
    for value, group in itertools.groupby(ids):
        length = sum(1 for _ in group)
        if value == token:
            runs.append((start, start + length))
        start += length
    return runs


def _merge_size(config: Any) -> int:
    return int(getattr(config.vision_config, "spatial_merge_size", 2))
