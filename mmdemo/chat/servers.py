"""Kinds of OpenAI-compatible server: what each takes beyond the standard fields, and how to tell them apart.

Chosen once per server (MMDEMO_VLM_SERVER, else from `/models`' owned_by): vLLM and SGLang take
`repetition_penalty` and stream token usage; llama.cpp's `llama-server` takes `repeat_penalty` and
`cache_prompt` (the conversation's prefix stays in its KV cache between turns), streams usage,
and says at `GET /props` whether it can see images (a GGUF loaded without its `mmproj` cannot)
and how long its context is. All three return `top_logprobs` (the re-rank's exact scores).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmdemo.chat.pipeline import GenerationParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerKind:
    """What one kind of server takes: extra request fields, streamed usage, logprobs."""

    name: str
    penalty_field: str = ""  # the name of its repetition penalty field ('' = none beyond the standard ones)
    usage: bool = False  # streams token usage when asked (stream_options.include_usage)
    logprobs: bool = False  # returns the first token's top_logprobs
    cache_prompt: bool = False  # keeps a conversation's prefix when asked (llama.cpp's cache_prompt)

    def extra_body(self, params: GenerationParams) -> dict[str, Any]:
        """The fields beyond the OpenAI schema this server takes."""
        extra: dict[str, Any] = {self.penalty_field: params.repetition_penalty} if self.penalty_field else {}
        return {**extra, "cache_prompt": True} if self.cache_prompt else extra


KINDS = {
    "vllm": ServerKind("vllm", "repetition_penalty", usage=True, logprobs=True),
    "sglang": ServerKind("sglang", "repetition_penalty", usage=True, logprobs=True),
    "llamacpp": ServerKind("llamacpp", "repeat_penalty", usage=True, logprobs=True, cache_prompt=True),
    "other": ServerKind("other"),  # standard fields only: transformers serve answers 422 to others
}


def kind_of_owner(owner: str) -> str:
    """The kind a `/models` entry's owned_by names ('other' when it names none we know)."""
    owner = owner.lower().replace(".", "").replace("-", "")
    return next((name for name in KINDS if name != "other" and name in owner), "other")


@dataclass(frozen=True)
class LlamaProps:
    """What llama-server's GET /props says: can it see images, its context per slot, its slots."""

    vision: bool
    context: int
    slots: int


def llamacpp_props(base_url: str, api_key: str, timeout: float) -> LlamaProps | None:
    """GET /props of a llama-server at `base_url` (its /v1 URL); None when the server is not one (no /props)."""
    import httpx

    root = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    answer = httpx.get(root + "/props", headers=headers, timeout=timeout)
    if answer.status_code != 200:
        return None
    try:
        props = answer.json()
        settings = props.get("default_generation_settings") or {}
        vision = bool((props.get("modalities") or {}).get("vision"))
        return LlamaProps(vision, int(settings.get("n_ctx") or 0), int(props.get("total_slots") or 1))
    except (ValueError, AttributeError, TypeError):
        return None
