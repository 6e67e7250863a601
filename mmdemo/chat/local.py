"""The chat in this process: the model manager's resident Qwen-VL, generating on the compute thread.

`LocalVLM` is the in-process `ChatBackend`: its preprocess is `build_prompt` (mmdemo.chat.prompt),
its forward a `LocalGeneration`, and the shared `stream_text` (mmdemo.chat.pipeline) turns the
streamed tokens into the growing answer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from mmdemo.chat.pipeline import (
    AnswerClock,
    AnswerOptions,
    AnswerStats,
    BackendHealth,
    GenerationParams,
    Prepared,
    stream_text,
)
from mmdemo.chat.prompt import Prompt, build_prompt
from mmdemo.chat.reuse import PrefixCache, Reuse, continuation, reusable_prefix, visual_spans
from mmdemo.errors import UserFacingError
from mmdemo.i18n import DEFAULT, text
from mmdemo.models import compute

if TYPE_CHECKING:
    from mmdemo.chat.judge import YesScores
    from mmdemo.models.manager import ModelManager
    from mmdemo.models.vlm import VisionLanguageModel


class LocalGeneration:
    """One answer generated in process, in named steps: `start` queues `run` on the compute thread,
    whose tokens arrive through the streamer; `wait` returns once generation has ended.

    Setting `stop` ends `generate()` at the next token (`should_stop` is its stopping criterion,
    and the safe point where other visitors' short model jobs run between two tokens). With
    `prefix`, the previous turn's keys/values are reused for the part of the prompt that did not
    change, and the cache is kept for the next turn.
    """

    def __init__(
        self,
        vlm: VisionLanguageModel,
        prompt: Prompt,
        params: GenerationParams,
        stop: threading.Event,
        prefix: PrefixCache | None = None,
    ) -> None:
        from transformers import TextIteratorStreamer

        self.vlm, self.prompt, self.params, self.stop, self.prefix = vlm, prompt, params, stop, prefix
        self.streamer = TextIteratorStreamer(vlm.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.new_tokens = 0
        self.failure: BaseException | None = None
        self._job: Future[None] | None = None

    def start(self) -> Iterator[str]:
        """Queue the generation on the compute thread; its text pieces, as they are decoded."""
        self._job = compute.submit(self.run, long=True)  # the one thread that runs model work
        return iter(self.streamer)

    def should_stop(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        """The stopping criterion, called on the compute thread after every token."""
        compute.between_steps()
        return self.stop.is_set()

    def run(self) -> None:
        """On the compute thread: the inputs (reusing the prefix), generate, keep the cache for next time."""
        from transformers import StoppingCriteriaList

        if self.stop.is_set():  # stopped (or the client left) while this waited for the compute thread
            self.streamer.end()
            return
        try:
            kwargs = self.inputs()
            out = self.vlm.model.generate(
                **kwargs,
                streamer=self.streamer,
                stopping_criteria=StoppingCriteriaList([self.should_stop]),
                **self.params.generate_kwargs(),
            )
            self.new_tokens = int(out.shape[1] - kwargs["input_ids"].shape[1])
            self.keep_cache(kwargs, out)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer's thread by wait()
            self.failure = exc
            self.streamer.end()  # unblock the consumer

    def inputs(self) -> dict[str, Any]:
        """`generate()` kwargs: the prompt, continuing from the prefix's KV cache as far as it is still valid."""
        if self.prefix is None:
            return dict(self.prompt.inputs)
        from transformers import DynamicCache

        model, inputs, prefix = self.vlm.model, self.prompt.inputs, self.prefix
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

    def keep_cache(self, kwargs: dict[str, Any], out: Any) -> None:
        """Remember the ids the cache now holds. The session may have been cleared meanwhile (Clear,
        or its tab closed: forget() does not wait for the answer to end); then there is nothing to keep."""
        cache = kwargs.get("past_key_values")
        if self.prefix is not None and self.prefix.cache is cache is not None:
            self.prefix.ids = out[0, : cache.get_seq_length()].tolist()

    def wait(self, stats: AnswerStats | None, clock: AnswerClock) -> None:
        """Block until generation has ended (stop is set first); fill `stats`."""
        self.stop.set()
        if self._job is not None:
            self._job.result()
        if stats is not None:
            stats.prompt_tokens, stats.new_tokens = self.prompt.tokens, self.new_tokens
            last = self.prefix.last if self.prefix is not None else None
            stats.reused_tokens = last.reused if last is not None else 0
            clock.fill(stats)

    def raise_failure(self) -> None:
        """Raise what went wrong on the compute thread, if anything (out of memory: a clear message)."""
        if self.failure is None:
            return
        import torch

        if self.prefix is not None:
            self.prefix.clear()
        if isinstance(self.failure, torch.OutOfMemoryError):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise UserFacingError(key="chat.oom") from self.failure
        raise self.failure


def stream_reply(
    vlm: VisionLanguageModel,
    prompt: Prompt | list[dict[str, Any]],
    params: GenerationParams,
    stop: threading.Event | None = None,
    prefix: PrefixCache | None = None,
    min_interval: float = 0.0,
    stats: AnswerStats | None = None,
) -> Iterator[str]:
    """Yield the answer as it grows (the whole text so far), generated in process.

    Setting `stop`, or closing this generator (the browser went away), ends `generate()` at the
    next token and returns once it has ended. `stats`, when given, is filled in once the answer
    ends (stopped or not). Updates come at most every `min_interval` seconds (see stream_text).
    """
    stop = stop or threading.Event()
    generation = LocalGeneration(
        vlm, prompt if isinstance(prompt, Prompt) else build_prompt(vlm, prompt), params, stop, prefix
    )
    clock = AnswerClock()
    try:
        yield from stream_text(generation.start(), stop, min_interval, clock)
    finally:
        generation.wait(stats, clock)
    generation.raise_failure()


class LocalVLM:
    """The resident Qwen-VL of the model manager, on this process's compute thread."""

    keeps_prefix = True  # KV caches live here: the UI keeps one per conversation

    def __init__(self, manager: ModelManager, device: str = "auto") -> None:
        self.manager, self.device = manager, device

    @property
    def uses_local_accelerator(self) -> bool:
        from mmdemo.models.device import pick_device

        return pick_device(self.device) == "cuda"

    @property
    def runs_on_gpu(self) -> bool:
        return self.uses_local_accelerator

    def prepare(self, messages: list[dict[str, Any]], max_tokens: int) -> Prepared[tuple[VisionLanguageModel, Prompt]]:
        vlm = self.manager.get("vlm")
        prompt = build_prompt(vlm, messages, max_tokens)
        return Prepared((vlm, prompt), prompt.tokens, prompt.dropped)

    def stream(self, prepared: Prepared[tuple[VisionLanguageModel, Prompt]], options: AnswerOptions) -> Iterator[str]:
        vlm, prompt = prepared.payload
        o = options
        return stream_reply(vlm, prompt, o.params, o.stop, o.prefix, min_interval=o.min_interval, stats=o.stats)

    def yes_scores(self, conversations: list[list[dict[str, Any]]], batch_size: int) -> YesScores:
        from mmdemo.chat.judge import score_local

        return score_local(self.manager.get("vlm"), conversations, batch_size)

    @property
    def identity(self) -> str:
        return self.manager.resolve_id("vlm")

    def health(self) -> BackendHealth:
        return BackendHealth(where=self.manager.resolve_id("vlm"), remote=False)

    def describe(self, language: str = DEFAULT) -> str:
        return text("chat.backend_local", language, model=self.manager.resolve_id("vlm"))
