"""The chat as one pipeline: the request types, the backend seam, and the streaming step both share.

In the shape of a transformers pipeline: a backend *prepares* a conversation (preprocess: fit it
to the context budget, in its own request format) and *generates* text pieces (forward); the
shared `stream_text` turns those pieces into the growing answer the UI shows (postprocess:
throttled updates, the answer's timing). The UI holds a `ChatBackend` and learns nothing else of
it: in process (`mmdemo.chat.local`) or on an inference server (`mmdemo.chat.remote`) is chosen
once, by `mmdemo.chat.backend.chat_backend`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from mmdemo.errors import UserFacingError
from mmdemo.i18n import DEFAULT, text

if TYPE_CHECKING:
    from mmdemo.chat.judge import YesScores
    from mmdemo.chat.reuse import PrefixCache

P = TypeVar("P")


@dataclass(frozen=True)
class GenerationParams:
    """Sampling controls shown in the chat tab."""

    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.05
    greedy: bool = False

    @property
    def sampling(self) -> bool:
        """False when decoding is greedy (asked for, or a temperature of 0)."""
        return not self.greedy and self.temperature > 0

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `model.generate`."""
        common = {"max_new_tokens": self.max_new_tokens, "repetition_penalty": self.repetition_penalty}
        if not self.sampling:
            return {**common, "do_sample": False}
        return {**common, "do_sample": True, "temperature": self.temperature, "top_p": self.top_p}


@dataclass(frozen=True)
class Prepared(Generic[P]):
    """A conversation ready to answer: the backend's own request, its size, what had to be left out."""

    payload: P  # model inputs in process; OpenAI chat messages for a server
    tokens: int
    dropped: int = 0  # oldest messages the model no longer sees


@dataclass
class AnswerStats:
    """What one answer cost: filled in by `stream_text` and the backend, shown under the conversation."""

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


@dataclass
class AnswerOptions:
    """How one answer is made, beside its prompt: sampling, the stop flag, the conversation's KV cache
    (in process), how often the growing answer is shown, and where its cost is written."""

    params: GenerationParams = field(default_factory=GenerationParams)
    stop: threading.Event = field(default_factory=threading.Event)
    prefix: PrefixCache | None = None
    min_interval: float = 0.0  # seconds between two updates of the growing answer (see stream_text)
    stats: AnswerStats = field(default_factory=AnswerStats)


class AnswerCut(UserFacingError):
    """The answer broke off after part of it arrived: that part is kept and shown, with this message."""

    def __init__(self, reason: UserFacingError) -> None:
        super().__init__(key="chat.answer_cut", reason=str(reason))
        self.reason = reason

    def translated(self, language: str) -> str:
        return text("chat.answer_cut", language, reason=self.reason.translated(language))


@dataclass(frozen=True)
class BackendHealth:
    """Whether the chat's backend can answer now, as /ready and the System tab report it."""

    where: str  # the model id in process, or the server's URL (never its key)
    remote: bool
    reachable: bool = True
    latency_ms: float = 0.0
    detail: str = ""


class ChatBackend(Protocol[P]):
    """A vision-language model that answers chats, wherever it runs."""

    @property
    def keeps_prefix(self) -> bool:
        """True when a conversation's KV cache lives here between turns (then the UI keeps one per session)."""
        ...

    @property
    def uses_local_accelerator(self) -> bool:
        """True when answers run on this machine's GPU (then ZeroGPU allocates one for each)."""
        ...

    @property
    def runs_on_gpu(self) -> bool:
        """True when the model answering runs on a GPU, here or on a server (GPU-sized image defaults)."""
        ...

    def prepare(self, messages: list[dict[str, Any]], max_tokens: int) -> Prepared[P]:
        """Fit Qwen chat `messages` (decoded media) to `max_tokens`, dropping the oldest turns."""
        ...

    def stream(self, prepared: Prepared[P], options: AnswerOptions) -> Iterator[str]:
        """Yield the answer as it grows; setting `options.stop` or closing the generator ends the work.

        Raises AnswerCut after yielding what arrived when the answer broke off mid-way."""
        ...

    def yes_scores(self, conversations: list[list[dict[str, Any]]], batch_size: int) -> YesScores:
        """P(yes) as the first answer word to each one-turn Qwen conversation (mmdemo.chat.judge),
        `batch_size` at a time (one prefill per batch in process; concurrent requests on a server)."""
        ...

    @property
    def identity(self) -> str:
        """What answers: the model id in process, the server and model name remote (keys cached scores)."""
        ...

    def health(self) -> BackendHealth:
        """Can it answer now (a server is probed; in process, yes)?"""
        ...

    def describe(self, language: str = DEFAULT) -> str:
        """One Markdown line for the System tab, in `language`: where the chat runs, and how it is doing."""
        ...


class AnswerClock:
    """When the request started and its first and last pieces arrived."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first: float | None = None
        self.last: float | None = None

    def piece(self) -> None:
        self.last = time.monotonic()
        self.first = self.first or self.last

    def fill(self, stats: AnswerStats) -> None:
        """The answer's timing into `stats` (decode: first piece to now)."""
        stats.first_token_seconds = self.first - self.started if self.first is not None else 0.0
        stats.decode_seconds = time.monotonic() - self.first if self.first is not None else 0.0


def stream_text(
    pieces: Iterable[str], stop: threading.Event, min_interval: float = 0.0, clock: AnswerClock | None = None
) -> Iterator[str]:
    """The answer so far, each time it grows, from the backend's text `pieces` (the postprocess step).

    With `min_interval`, updates come at most that often (pieces in between join the next one; the
    last is always yielded unless stopped): each update costs the web server work that would
    otherwise compete with the model and with other visitors' requests. Ends when `stop` is set.
    """
    clock = clock or AnswerClock()
    answer, shown, last = "", "", 0.0
    for piece in pieces:
        if stop.is_set():
            return
        if not piece:
            continue
        clock.piece()
        answer += piece
        if (now := time.monotonic()) - last >= min_interval:
            shown, last = answer, now
            yield answer
    if answer != shown and not stop.is_set():
        yield answer
