"""Where the chat model runs: in this process, or on an OpenAI-compatible inference server.

The chat tab asks a `ChatBackend` to `prepare` a conversation (fit it to the context budget) and
to `stream` the answer; `chat_backend` picks the backend once, from the settings. Both start from
the same decoded messages (`to_qwen_messages`: EXIF rotation, size limits, bad-file rules).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mmdemo.i18n import DEFAULT, text
from mmdemo.vqa.chat import AnswerStats, GenerationParams, build_prompt, stream_reply
from mmdemo.vqa.reuse import PrefixCache

if TYPE_CHECKING:
    from mmdemo.config import Settings
    from mmdemo.models.manager import ModelManager


@dataclass(frozen=True)
class Prepared:
    """A conversation ready to answer: what the backend sends, its size, what had to be left out."""

    payload: Any  # the backend's own request (model inputs, or OpenAI chat messages)
    tokens: int
    dropped: int = 0  # oldest messages the model no longer sees


class ChatBackend(Protocol):
    """A vision-language model that answers chats, wherever it runs."""

    remote: bool  # True: an inference server does the work (no local GPU, no KV reuse here)

    def prepare(self, messages: list[dict[str, Any]], max_tokens: int) -> Prepared:
        """Fit Qwen chat `messages` (decoded media) to `max_tokens`, dropping the oldest turns."""
        ...

    def stream(
        self,
        prepared: Prepared,
        params: GenerationParams,
        stop: threading.Event,
        prefix: PrefixCache | None = None,
        min_interval: float = 0.0,
        stats: AnswerStats | None = None,
    ) -> Iterator[str]:
        """Yield the answer as it grows; setting `stop` or closing the generator ends the work."""
        ...

    def describe(self, language: str = DEFAULT) -> str:
        """One Markdown line for the System tab, in `language`: where the chat runs, and how it is doing."""
        ...


class LocalVLM:
    """The resident Qwen-VL of the model manager, on this process's compute thread."""

    remote = False

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    def prepare(self, messages: list[dict[str, Any]], max_tokens: int) -> Prepared:
        vlm = self.manager.get("vlm")
        prompt = build_prompt(vlm, messages, max_tokens)
        return Prepared((vlm, prompt), prompt.tokens, prompt.dropped)

    def stream(
        self,
        prepared: Prepared,
        params: GenerationParams,
        stop: threading.Event,
        prefix: PrefixCache | None = None,
        min_interval: float = 0.0,
        stats: AnswerStats | None = None,
    ) -> Iterator[str]:
        vlm, prompt = prepared.payload
        return stream_reply(vlm, prompt, params, stop, prefix, min_interval=min_interval, stats=stats)

    def describe(self, language: str = DEFAULT) -> str:
        return text("chat.backend_local", language, model=self.manager.resolve_id("vlm"))


def chat_backend(settings: Settings, manager: ModelManager) -> ChatBackend:
    """The backend these settings ask for: the server at MMDEMO_VLM_URL, or the local model."""
    if settings.remote_vlm:
        from mmdemo.vqa.remote import RemoteVLM

        return RemoteVLM.from_settings(settings)
    return LocalVLM(manager)
