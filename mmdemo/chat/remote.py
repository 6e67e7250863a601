"""The chat on an OpenAI-compatible inference server (vLLM, SGLang, TGI, transformers serve, Ollama).

Images are decoded, rotated and resized here exactly as in process (qwen_vl_utils' resize to the
patch grid within `max_pixels`), then sent as `data:image/jpeg;base64,...`: bandwidth and the
server's memory stay bounded, and bad files fail here with the same messages. Streaming, timeouts
and retries are the `openai` client's. Stopping closes the stream: vLLM, SGLang and transformers
serve abort a request whose client went away.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmdemo import i18n
from mmdemo.chat.judge import YesScores, read_choice
from mmdemo.chat.pipeline import (
    AnswerClock,
    AnswerCut,
    AnswerOptions,
    BackendHealth,
    GenerationParams,
    Prepared,
    stream_text,
)
from mmdemo.chat.prompt import PATCH_AREA, fit_to_budget
from mmdemo.chat.server_errors import client_errors, explain, redact
from mmdemo.chat.servers import KINDS, LlamaProps, kind_of_owner, llamacpp_props
from mmdemo.errors import UserFacingError

if TYPE_CHECKING:
    from PIL import Image

    from mmdemo.config import Settings

log = logging.getLogger(__name__)
TEMPLATE_TOKENS = 24  # Qwen's default system message and the generation prompt
PROBE_TTL = 5.0  # seconds a reachability probe is reused (the System tab and /ready ask often)


@dataclass(frozen=True)
class ServerStatus:
    """The last probe of the server: reachable or not, how fast, and what it said."""

    reachable: bool
    latency_ms: float
    detail: str = ""


Messages = list[dict[str, Any]]  # OpenAI chat messages: what a server's Prepared holds


class RemoteVLM:
    """A chat backend that forwards each answer to one OpenAI-compatible server."""

    keeps_prefix = False  # the server caches prefixes itself
    uses_local_accelerator = False  # no GPU is held here for an answer the server computes
    runs_on_gpu = True  # inference servers run on GPUs (GPU-sized image defaults)

    def __init__(
        self,
        url: str,
        api_key: str = "",
        model: str = "",
        server: str = "auto",
        timeout: float = 60.0,
        retries: int = 2,
        patch_size: int = 14,
    ) -> None:
        self.url, self.name = url.strip().rstrip("/"), redact(url.strip())
        self._key, self._model, self._server = api_key, model or None, None if server == "auto" else server
        self.timeout, self.retries, self.patch_size = timeout, retries, patch_size
        self._client: Any = None
        self._lock = threading.Lock()
        self._encoded: OrderedDict[tuple[int, ...], tuple[Any, str, int]] = OrderedDict()
        self._probe: tuple[float, ServerStatus] | None = None
        self.last_first_token: float | None = None  # seconds, of the last answer
        self._logprobs = True  # False once the server refused a request with logprobs
        self._props: LlamaProps | None = None  # what a llama.cpp server said at GET /props
        self._mismatch = ""  # set to llamacpp, but it is not: why (the System tab shows it)

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteVLM:
        return cls(
            settings.vlm_url,
            settings.vlm_api_key,
            settings.vlm_served_model,
            settings.vlm_server,
            settings.vlm_timeout,
            settings.vlm_retries,
        )

    @property
    def client(self) -> Any:
        """The `openai` client (made on first use: importing openai costs startup time)."""
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                base_url=self.url,
                api_key=self._key or "EMPTY",  # vLLM's convention for "no key"; never OPENAI_API_KEY
                timeout=openai.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                max_retries=self.retries,
            )
        return self._client

    # --- preprocess ---

    def prepare(self, messages: list[dict[str, Any]], max_tokens: int) -> Prepared[Messages]:
        """OpenAI chat messages for Qwen `messages`, oldest turns dropped to fit `max_tokens`.

        Sizes are estimated (the tokenizer lives on the server): exact for images (one token per
        28x28 pixels after the resize), generous for text (one per 3 UTF-8 bytes).
        """
        converted = [self._message(m) for m in messages]
        parts = [p for m, _ in converted if isinstance(m["content"], list) for p in m["content"]]
        blind = self.server() == "llamacpp" and self._props is not None and not self._props.vision
        if blind and any(p["type"] == "image_url" for p in parts):
            raise UserFacingError(key="server.no_vision", server=self.name)
        total = sum(tokens for _, tokens in converted) + TEMPLATE_TOKENS
        kept, drop = converted, 0
        if max_tokens and total > max_tokens:
            roles, sizes = [m["role"] for m in messages], [tokens for _, tokens in converted]
            kept, drop = fit_to_budget(converted, roles, sizes, total - max_tokens, max_tokens)
        return Prepared([m for m, _ in kept], sum(tokens for _, tokens in kept) + TEMPLATE_TOKENS, drop)

    def _message(self, message: dict[str, Any]) -> tuple[dict[str, Any], int]:
        parts: list[dict[str, Any]] = []
        tokens = 5  # the role's special tokens
        for part in message["content"]:
            if part["type"] == "text":
                parts.append({"type": "text", "text": part["text"]})
                tokens += len(part["text"].encode("utf-8")) // 3 + 1
            elif part["type"] == "image":
                url, n = self._encode(part["image"], part["min_pixels"], part["max_pixels"])
                parts.append({"type": "image_url", "image_url": {"url": url}})
                tokens += n
            elif part["type"] == "video":  # as its sampled frames: every server takes images
                frames = part["video"]
                per_frame = max(part["min_pixels"], min(part["max_pixels"], part["total_pixels"] // len(frames)))
                parts.append(
                    {"type": "text", "text": f"(A video: {len(frames)} frames, {part['sample_fps']:.1f} per second.)"}
                )
                for frame in frames:
                    url, n = self._encode(frame, part["min_pixels"], per_frame)
                    parts.append({"type": "image_url", "image_url": {"url": url}})
                    tokens += n
        if message["role"] != "user" and all(p["type"] == "text" for p in parts):
            return {"role": message["role"], "content": "".join(p["text"] for p in parts)}, tokens
        return {"role": message["role"], "content": parts}, tokens

    def _encode(self, image: Image.Image, min_pixels: int, max_pixels: int) -> tuple[str, int]:
        """A JPEG data URL of `image` resized as qwen_vl_utils does, and its visual tokens.

        The history is re-sent every turn; the decoded images are the same objects each time
        (mmdemo.chat.media caches them), so their encodings are kept too.
        """
        key = (id(image), *image.size, min_pixels, max_pixels)
        with self._lock:
            if (hit := self._encoded.get(key)) is not None:
                self._encoded.move_to_end(key)
                return hit[1], hit[2]
        from qwen_vl_utils import fetch_image

        resized = fetch_image(
            {"image": image, "min_pixels": min_pixels, "max_pixels": max_pixels}, image_patch_size=self.patch_size
        )
        buffer = io.BytesIO()
        resized.save(buffer, format="JPEG", quality=90)
        url = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        tokens = resized.width * resized.height // PATCH_AREA + 2  # + vision start/end
        with self._lock:
            self._encoded[key] = (image, url, tokens)  # holding `image` keeps its id from being reused
            while len(self._encoded) > 64:
                self._encoded.popitem(last=False)
        return url, tokens

    # --- forward ---

    def stream(self, prepared: Prepared[Messages], options: AnswerOptions) -> Iterator[str]:
        """Yield the answer as it grows. `options.stop` (or closing the generator) closes the stream at once,
        which ends the request on the server. `options.prefix` is unused: the server caches prefixes."""
        params, stop, stats = options.params, options.stop, options.stats
        clock = AnswerClock()
        try:
            response = self.client.chat.completions.create(**self._request(prepared.payload, params), stream=True)
        except client_errors() as exc:
            raise self.failure(exc) from None
        # Stop must not wait for the next token (a long prefill sends none for seconds): closing the
        # response from here ends the read below, and the request with it.
        closer = threading.Thread(target=lambda: stop.wait() and response.close(), daemon=True)
        closer.start()
        received = _Received()
        try:
            yield from stream_text(received.deltas(response), stop, options.min_interval, clock)
        except client_errors() as exc:
            if stop.is_set():  # the read ended because Stop closed the response
                return
            error = self.failure(exc)
            if received.text:
                yield received.text
                raise AnswerCut(error) from None
            raise error from None
        finally:
            stop.set()  # ends the closer thread (and closes the response if it is still open)
            response.close()
            if clock.first is not None:
                self.last_first_token = clock.first - clock.started
            usage = received.usage
            stats.reused_tokens = None
            stats.prompt_tokens = usage.prompt_tokens if usage else prepared.tokens
            stats.new_tokens = usage.completion_tokens if usage else received.chunks
            clock.fill(stats)

    def _request(self, messages: list[dict[str, Any]], params: GenerationParams) -> dict[str, Any]:
        """The chat completion request: standard fields, plus extensions where the server takes them."""
        greedy = params.greedy or params.temperature <= 0
        request: dict[str, Any] = {
            "model": self.model(),
            "messages": messages,
            "max_tokens": params.max_new_tokens,
            "temperature": 0.0 if greedy else params.temperature,
            "top_p": 1.0 if greedy else params.top_p,
        }
        kind = KINDS[self.server()]
        if extra := kind.extra_body(params):
            request["extra_body"] = extra
        if kind.usage:
            request["stream_options"] = {"include_usage": True}
        return request

    # --- yes/no judgements (re-ranking) ---

    def yes_scores(self, conversations: list[list[dict[str, Any]]], batch_size: int) -> YesScores:
        """P(yes) per conversation, `batch_size` requests at a time (the server batches them)."""
        from concurrent.futures import ThreadPoolExecutor

        requests = [self.prepare(c, 0).payload for c in conversations]
        with ThreadPoolExecutor(max(1, min(batch_size, len(requests)))) as pool:
            judged = list(pool.map(self._judge, requests))
        return YesScores([score for score, _ in judged], all(exact for _, exact in judged))

    def _judge(self, messages: Messages) -> tuple[float, bool]:
        """One one-token answer, with the first token's top_logprobs where the server gives them."""
        import openai

        request = self._request(messages, GenerationParams(max_new_tokens=1, greedy=True))
        request.pop("stream_options", None)
        request.pop("extra_body", None)  # a repetition penalty means nothing to a one-token answer
        if self._logprobs and KINDS[self.server()].logprobs:
            request |= {"logprobs": True, "top_logprobs": 20}  # the most OpenAI's schema (and vLLM by default) allow
        try:
            response = self.client.chat.completions.create(**request)
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            if "logprobs" not in request:
                raise self.failure(exc) from None
            self._logprobs = False  # a server that refuses them (set to the wrong kind): one-token answers from now on
            return self._judge(messages)
        except client_errors() as exc:
            raise self.failure(exc) from None
        return read_choice(response.choices[0])

    @property
    def identity(self) -> str:
        return f"{self.name}#{self._model or ''}"

    # --- the server ---

    def model(self) -> str:
        """The served model's name: the setting, else the first that `GET /models` lists."""
        if self._model is None:
            self._discover()
        return self._model or ""

    def server(self) -> str:
        """'vllm', 'sglang', 'llamacpp' or 'other': the setting (llama.cpp's checked), else `/models`' owned_by."""
        if self._server is None:
            try:
                self._discover(quiet=True)
            except UserFacingError:
                return "other"  # unknown for now (the request itself will say what is wrong); ask again next time
        if self._server == "llamacpp" and self._props is None:
            self._check_llamacpp()
        return self._server or "other"

    def _check_llamacpp(self) -> None:
        """A server set to (or named) llama.cpp answers GET /props: whether it sees images, its context. One
        that does not is not llama.cpp: then it gets standard fields only, and the System tab says why."""
        try:
            props = llamacpp_props(self.url, self._key, min(self.timeout, 10.0))
        except client_errors():
            return  # not reachable now: the request will say so, and this is asked again next time
        if props is None:
            self._server, self._mismatch = "other", "server.not_llamacpp"
            log.warning(
                "MMDEMO_VLM_SERVER=llamacpp, but %s has no /props: not llama.cpp; standard fields only", self.name
            )
            return
        self._props = props

    def _discover(self, quiet: bool = False) -> None:
        import openai

        try:
            # Only for the server kind (quiet): one quick try; a request follows that will say what is wrong.
            client = self.client.with_options(timeout=min(self.timeout, 10.0), **({"max_retries": 0} if quiet else {}))
            models = client.models.list().data
        except client_errors() as exc:
            if isinstance(exc, openai.APIStatusError):
                # It answered, but cannot list its models (transformers serve without a hub cache):
                # asking again on every request would only cost time.
                self._server = self._server or "other"
            raise self.failure(exc, "listing its models (set MMDEMO_VLM_SERVED_MODEL to skip this)", quiet) from None
        if not models:
            raise UserFacingError(f"The chat server at {self.name} serves no models; set MMDEMO_VLM_SERVED_MODEL.")
        owner = (getattr(models[0], "owned_by", "") or "").lower()
        self._model = self._model or models[0].id
        self._server = self._server or kind_of_owner(owner)

    def status(self) -> ServerStatus:
        """Probe the server (reused for PROBE_TTL s): any HTTP answer means reachable."""
        import openai

        now = time.monotonic()
        if self._probe is not None and now - self._probe[0] < PROBE_TTL:
            return self._probe[1]
        try:
            # One retry: a kept-alive connection the server has since closed fails once.
            self.client.with_options(timeout=3.0, max_retries=1).models.list()
            status = ServerStatus(True, (time.monotonic() - now) * 1000)
        except openai.APIStatusError as exc:  # it answered (e.g. transformers serve's 500 on /models)
            status = ServerStatus(True, (time.monotonic() - now) * 1000, f"/models answered HTTP {exc.status_code}")
        except client_errors() as exc:
            status = ServerStatus(False, (time.monotonic() - now) * 1000, str(self.failure(exc, quiet=True)))
        self._probe = (time.monotonic(), status)
        return status

    def health(self) -> BackendHealth:
        status = self.status()
        return BackendHealth(self.name, True, status.reachable, status.latency_ms, status.detail)

    def describe(self, language: str = i18n.DEFAULT) -> str:
        status = self.status()
        reachable = i18n.text("chat.server_reachable", language, ms=f"{status.latency_ms:.0f}")
        state = reachable if status.reachable else i18n.text("chat.server_unreachable", language)
        model = self._model or i18n.text("chat.model_unknown", language)
        line = i18n.text("chat.backend_remote", language, server=self.name, model=model, state=state)
        if self.last_first_token is not None:
            line += i18n.text("chat.last_first_token", language, s=f"{self.last_first_token:.2f}")
        if self._props is not None:
            vision = i18n.text("chat.yes" if self._props.vision else "chat.no", language)
            props = {"context": self._props.context, "slots": self._props.slots, "vision": vision}
            line += i18n.text("server.llamacpp_props", language, **props)
        if self._mismatch:
            line += "\n\n- " + i18n.text(self._mismatch, language, server=self.name)
        return line + (f"\n\n- {status.detail}" if status.detail else "")

    def failure(self, exc: BaseException, doing: str = "", quiet: bool = False) -> UserFacingError:
        """One clear message for what went wrong, naming the server (never the key), in the visitor's
        language where the UI shows it; logged once (in English)."""
        if isinstance(exc, UserFacingError):
            return exc
        key, fields = explain(exc, self._model or "", self.retries, self.timeout)
        fields = {name: self._redacted(str(value)) for name, value in {**fields, "server": self.name}.items()}
        error = UserFacingError(key=key, **fields)
        if doing:  # the operator's view (the log and the CLI): what it was doing, in English
            error = UserFacingError(f"{error} (while {doing})")
        if not quiet:
            log.warning("chat server %s: %s: %s", self.name, type(exc).__name__, error)
        return error

    def _redacted(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


class _Received:
    """What a streamed response brought: the text so far (kept if it breaks off), chunks, token usage."""

    def __init__(self) -> None:
        self.text, self.chunks, self.usage = "", 0, None

    def deltas(self, response: Any) -> Iterator[str]:
        for chunk in response:
            self.usage = chunk.usage or self.usage
            delta = chunk.choices[0].delta.content if chunk.choices else None
            if delta:
                self.text, self.chunks = self.text + delta, self.chunks + 1
                yield delta
