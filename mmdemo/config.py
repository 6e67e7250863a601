"""Settings: one dataclass, read from defaults < `MMDEMO_*` environment variables < CLI flags.

Every field is documented by its `help` metadata; `python app.py --help` lists them all with
their environment variable names, so this file is the single place where options are defined.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmdemo.flags import cli_values, env_values

PROFILES = ("default", "tiny", "random")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZATIONS = ("auto", "none", "8bit", "4bit")
VLM_SERVERS = ("auto", "vllm", "sglang", "llamacpp", "other")
NEAR_DUPLICATES = ("report", "skip", "off")
METRICS_ACCESS = ("operators", "everyone", "off")
OCR_LANGUAGES = ("zh", "en")  # what the OCR model in rapidocr-onnxruntime's wheel (PP-OCRv4 "ch") reads
PLACE_DETAILS = ("city", "exact")
SECRETS = ("vlm_api_key",)  # never printed


def _opt(help: str, choices: Sequence[str] | None = None) -> Any:
    return {"help": help, "choices": tuple(choices) if choices else None}


@dataclass(frozen=True)
class Settings:
    """Everything the app can be told. Immutable: derive a changed copy with `replace()`."""

    # --- models ---
    profile: str = field(
        default="default",
        metadata=_opt(
            "default: real pretrained models; tiny: tiny random-weight models built offline "
            "(answers are noise; for tests and UI work); random: the real default architectures "
            "with random weights (real sizes and compute, for benchmarks).",
            PROFILES,
        ),
    )
    clip_model: str = field(
        default="auto",
        metadata=_opt(
            "CLIP model: a registry id (docs/models.md), 'ARCH:TAG' or 'ARCH:/path/to/weights' for any "
            "open_clip architecture, 'local-dir:/path' or 'hf-hub:org/repo'. auto = per profile."
        ),
    )
    language: str = field(
        default="en",
        metadata=_opt(
            "Main language of the visitors' queries and labels. zh: the default CLIP becomes a multilingual "
            "one that reads Chinese (docs/models.md). The UI itself follows each browser's language.",
            ("en", "zh"),
        ),
    )
    vlm_model: str = field(
        default="auto",
        metadata=_opt(
            "Vision-language model: a registry id or a local Hugging Face model directory. "
            "auto = chosen from the GPU memory (docs/models.md: the hardware table)."
        ),
    )
    device: str = field(default="auto", metadata=_opt("Where models run (auto: cuda > mps > cpu).", DEVICES))
    dtype: str = field(default="auto", metadata=_opt("Weights dtype (auto: bf16 where fast, else fp16/fp32).", DTYPES))
    quantization: str = field(
        default="auto", metadata=_opt("VLM quantization, bitsandbytes (CUDA only).", QUANTIZATIONS)
    )
    preload: tuple[str, ...] = field(
        default=("clip", "vlm"),
        metadata=_opt("Models loaded at startup, comma-separated ids or roles (clip, vlm); '' for none."),
    )
    pinned: tuple[str, ...] = field(
        default=(), metadata=_opt("Models never evicted to fit the memory budget, comma-separated ids or roles.")
    )
    memory_budget_gb: float = field(
        default=0.0,
        metadata=_opt(
            "Memory for resident models in GB; least-recently-used models are unloaded "
            "to fit. 0 = auto (90%% of GPU memory, or 80%% of RAM on CPU)."
        ),
    )
    load_retry_s: float = field(
        default=600.0,
        metadata=_opt(
            "Seconds a failed model load is remembered: requests get its message at once instead of "
            "trying again (the operator's Retry load in System tries at once). 0 = until then."
        ),
    )
    data_dir: Path = field(default=Path("~/.cache/mmdemo"), metadata=_opt("Indexes, caches, built tiny models."))
    gallery_dir: Path = field(
        default=Path(__file__).resolve().parents[1] / "gallery",
        metadata=_opt("Bundled gallery indexed for every visitor (read-only)."),
    )
    clip_batch_size: int = field(default=32, metadata=_opt("Images or texts per CLIP forward pass."))
    index_commit_every: int = field(
        default=2048,
        metadata=_opt(
            "Images per gallery commit during a long ingest: a crash loses at most this many "
            "(their embeddings stay cached, so resuming costs no model time)."
        ),
    )
    near_duplicates: str = field(
        default="report",
        metadata=_opt(
            "A resized, re-encoded, lightly cropped or rotated copy of an indexed image: report it and index "
            "it (report), leave it out (skip), or do not look (off).",
            NEAR_DUPLICATES,
        ),
    )
    ocr: bool = field(default=True, metadata=_opt("Read the text in indexed images (OCR), to search it."))
    ocr_languages: tuple[str, ...] = field(
        default=OCR_LANGUAGES,
        metadata=_opt(
            "Languages the OCR reads, comma-separated: the bundled model reads both, together.", OCR_LANGUAGES
        ),
    )
    ocr_max_side: int = field(default=1280, metadata=_opt("Longest side, in pixels, an image is read at."))
    ocr_max_boxes: int = field(default=50, metadata=_opt("Lines of text kept per image (the most confident)."))
    ocr_threads: int = field(default=0, metadata=_opt("Threads the OCR runs on; 0 = one per core."))
    ocr_in_chat: bool = field(default=True, metadata=_opt("Asking about results passes each image's OCR text too."))
    photo_facts: bool = field(default=True, metadata=_opt("Read each image's date, camera and GPS place (EXIF)."))
    video_max_minutes: float = field(default=60.0, metadata=_opt("Longest video a gallery indexes, in minutes."))
    video_moments_per_minute: int = field(default=12, metadata=_opt("A video's moments (scenes) a minute, at most."))
    video_inline_seconds: float = field(
        default=120.0, metadata=_opt("Seconds of video an add cuts itself; longer videos are cut in the background.")
    )
    video_waiting_per_client: int = field(default=3, metadata=_opt("Videos one client may have waiting to be cut."))
    library_places: str = field(
        default="city",
        metadata=_opt(
            "How the shared library's places are shown: the city only (no coordinates), or the exact place. "
            "A visitor's own uploads always show theirs, to them only.",
            PLACE_DETAILS,
        ),
    )
    vector_cache_mb: int = field(
        default=256,
        metadata=_opt(
            "Embeddings kept in memory per cache, in MB (least recently used dropped; the disk copy stays). "
            "0 = no bound."
        ),
    )
    library_wait_images: int = field(
        default=500,
        metadata=_opt(
            "A search that arrives while the bundled photos are being indexed waits for them (with progress) when "
            "they are at most this many; a larger library answers from what is indexed so far, saying so."
        ),
    )
    ann_threshold: int = field(
        default=50_000,
        metadata=_opt("Gallery size above which search switches from exact to an IVF index (recall@10 >= 0.95)."),
    )

    # --- limits (what one request may ask for) ---
    max_upload_mb: int = field(default=50, metadata=_opt("Largest uploaded file, in MB."))
    max_image_pixels: int = field(default=64_000_000, metadata=_opt("Largest image, in pixels (Pillow's bomb guard)."))
    originals_mb: int = field(
        default=200,
        metadata=_opt(
            "Uploads kept at full size for viewing, in MB per session (beyond it, thumbnails only; 0 = none)."
        ),
    )
    max_images_per_upload: int = field(default=500, metadata=_opt("Images accepted in one upload."))
    max_request_mb: int = field(
        default=72,
        metadata=_opt(
            "Largest request body, in MB (an API call with data URIs, an MCP message): refused with 413 before it "
            "is read. File uploads are streamed to disk and capped per file (max_upload_mb) instead."
        ),
    )
    max_query_chars: int = field(
        default=1000,
        metadata=_opt("Longest search query, in characters (the text CLIP and a re-rank's chat model both see)."),
    )
    max_galleries: int = field(
        default=1000,
        metadata=_opt("Private galleries (page uploads and agents' collections) the data dir holds at most."),
    )
    max_galleries_per_client: int = field(
        default=16, metadata=_opt("Private galleries one client (the logged-in user, else its address) may hold.")
    )
    max_images_per_gallery: int = field(
        default=2000, metadata=_opt("Images one private gallery (a session's uploads, a collection) may hold.")
    )
    gallery_idle_hours: float = field(default=24.0, metadata=_opt("A private gallery unused this long is deleted."))
    open_galleries: int = field(
        default=64,
        metadata=_opt(
            "Gallery stores kept open at once (each holds 4 files); the least recently used is closed beyond it."
        ),
    )
    max_labels: int = field(default=1000, metadata=_opt("Candidate labels in one classification."))
    max_label_chars: int = field(default=200, metadata=_opt("Longest candidate label, in characters."))
    max_zip_mb: int = field(default=500, metadata=_opt("Largest total uncompressed size of a .zip upload, in MB."))
    max_zip_members: int = field(default=10_000, metadata=_opt("Files in one .zip upload, at most."))
    max_images_per_turn: int = field(default=8, metadata=_opt("Images in one chat message."))
    max_prompt_chars: int = field(default=8000, metadata=_opt("Longest chat message, in characters."))
    max_new_tokens: int = field(default=512, metadata=_opt("Default cap on tokens per chat answer."))
    max_video_frames: int = field(default=32, metadata=_opt("Frames sampled from one chat video, at most."))
    max_context_tokens: int = field(
        default=16384,
        metadata=_opt("Chat context budget in tokens; beyond it the oldest turns are dropped, with a notice."),
    )
    vlm_max_pixels: int = field(
        default=0,
        metadata=_opt(
            "Default 'max pixels per image' of the chat (the top cause of out-of-memory errors). "
            "0 = by device: 1280x28x28 on a GPU, 512x28x28 on CPU."
        ),
    )
    chat_cache_mb: int = field(
        default=2048,
        metadata=_opt(
            "Memory for the kept chat KV caches together, in MB, taken out of the memory budget "
            "(least recently used dropped first)."
        ),
    )
    chat_cache_sessions: int = field(
        default=4,
        metadata=_opt("Conversations whose KV cache is kept for prefix reuse (0 = recompute every turn)."),
    )

    # --- ask your photos: the chat model over search results (docs/ask.md) ---
    ask_max_images: int = field(default=8, metadata=_opt("Search results the chat model sees for one question."))
    ask_max_pixels: int = field(
        default=256 * 28 * 28, metadata=_opt("Pixels per image when asking about results or re-ranking (reduced size).")
    )
    rerank_max: int = field(default=32, metadata=_opt("Search results one re-rank may score, at most."))
    rerank_batch: int = field(default=8, metadata=_opt("Images per re-rank prefill (requests at once on a server)."))
    ask_each_max: int = field(default=200, metadata=_opt("Answers one 'Ask every image' makes at most."))

    # --- chat on an inference server (docs/deploy.md: Scale out) ---
    vlm_url: str = field(
        default="",
        metadata=_opt(
            "Base URL of an OpenAI-compatible API that serves the chat model (vLLM, SGLang, TGI, "
            "transformers serve, Ollama), e.g. http://vllm:8000/v1. Set: the chat runs there and no "
            "local VLM is loaded. '' = in process."
        ),
    )
    vlm_api_key: str = field(
        default="",
        repr=False,  # a secret: never in a repr, a log line, --help or the UI
        metadata=_opt("API key for MMDEMO_VLM_URL (sent as a bearer token; never logged or shown)."),
    )
    vlm_served_model: str = field(
        default="",
        metadata=_opt("Model name to request from MMDEMO_VLM_URL. '' = the first one its /models lists."),
    )
    vlm_server: str = field(
        default="auto",
        metadata=_opt(
            "Which server MMDEMO_VLM_URL is, for the request fields only some accept (vLLM, SGLang: "
            "repetition_penalty; llama.cpp: repeat_penalty, cache_prompt, /props). auto = from /models' owned_by; "
            "other = standard fields only.",
            VLM_SERVERS,
        ),
    )
    vlm_timeout: float = field(
        default=60.0,
        metadata=_opt("Seconds to wait for the inference server: to connect, and between two streamed tokens."),
    )
    vlm_retries: int = field(
        default=2,
        metadata=_opt("Retries (with backoff, honouring Retry-After) when the server is busy (429) or failing (5xx)."),
    )

    # --- server ---
    host: str = field(default="127.0.0.1", metadata=_opt("Address to bind (0.0.0.0 in containers)."))
    port: int = field(default=7860, metadata=_opt("Port to serve on."))
    share: bool = field(
        default=False,
        metadata=_opt("Create a public gradio.live share link (use --auth: anyone with the link can use the app)."),
    )
    auth: str = field(
        default="",
        metadata=_opt(
            "Require a login: 'user:password' (comma-separate several), or the path of a file with one "
            "user:password per line. '' = no login."
        ),
    )
    admins: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "Logged-in users (names from --auth) who may load and unload models, comma-separated. "
            "Besides them, only requests from this machine to an app bound to loopback may."
        ),
    )
    root_path: str = field(default="", metadata=_opt("URL prefix when served behind a reverse proxy, e.g. /mmdemo."))
    mcp: bool = field(default=False, metadata=_opt("Also serve the tools for agents as MCP tools (/gradio_api/mcp/)."))
    concurrency_limit: int = field(
        default=0,
        metadata=_opt(
            "CLIP requests (search, indexing, classification) served at once, in their own queue. "
            "0 = auto: 2 (model jobs take turns anyway; a second slot overlaps one request's file decoding)."
        ),
    )
    chat_concurrency_limit: int = field(
        default=0,
        metadata=_opt(
            "Chat answers generated at once, in their own queue (waiting visitors see their place). "
            "0 = auto: 1 in process; 32 on an inference server (MMDEMO_VLM_URL), which batches them."
        ),
    )
    max_queue_size: int = field(
        default=64, metadata=_opt("Requests waiting in all queues together at most; beyond it users are told to retry.")
    )
    max_waiting_per_client: int = field(
        default=4,
        metadata=_opt(
            "Requests one client may have waiting in each queue (chat, CLIP, ...): the logged-in user, else the "
            "client's address. Beyond it the client is told to wait for one to finish. 0 = no cap."
        ),
    )
    trusted_proxies: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "Addresses or CIDR ranges of reverse proxies in front of the app, comma-separated. Only a request from "
            "one of them has its client address taken from X-Forwarded-For (every line, right to left, past the "
            "trusted proxies); '' = none: the header is ignored, also from loopback."
        ),
    )
    url_allowed_hosts: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "Host names the machine-client tools may fetch image URLs from even though they resolve to private or "
            "loopback addresses (an intranet photo server), comma-separated. Others must be public. '' = none."
        ),
    )
    metrics: str = field(
        default="operators",
        metadata=_opt(
            "Who may read GET /metrics (Prometheus) on the app's port: operators (requests from this machine to an "
            "app bound to loopback), everyone (a private network's scraper; no login asked), or off.",
            METRICS_ACCESS,
        ),
    )
    metrics_port: int = field(
        default=0,
        metadata=_opt(
            "Also serve the metrics on this port (at any path), bound like the app, for a scraper inside the "
            "deployment (Kubernetes: the pod's metrics port); 0 = no separate port."
        ),
    )
    analytics: bool = field(default=False, metadata=_opt("Let Gradio send its usage analytics."))
    log_level: str = field(default="INFO", metadata=_opt("Python logging level."))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # every field that declares its choices (a list field: each item)
            choices, value = f.metadata["choices"], getattr(self, f.name)
            if choices and not set(value if isinstance(value, tuple) else [value]) <= set(choices):
                raise ValueError(f"{f.name} must be one of {', '.join(choices)}; got {value!r}")
        for spec in self.trusted_proxies:
            try:
                ipaddress.ip_network(spec, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {spec!r} is not an address or CIDR range") from None
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        object.__setattr__(self, "gallery_dir", Path(self.gallery_dir).expanduser())

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated like the original)."""
        return dataclasses.replace(self, **changes)

    @property
    def remote_vlm(self) -> bool:
        """True when the chat runs on an inference server (MMDEMO_VLM_URL) instead of in process."""
        return bool(self.vlm_url.strip())

    @property
    def local_preload(self) -> tuple[str, ...]:
        """The models to load at startup here: `preload`, less the VLM when it is served elsewhere."""
        if not self.remote_vlm:
            return self.preload
        return tuple(name for name in self.preload if name != "vlm" and name != self.vlm_model)

    @property
    def is_synthetic(self) -> bool:
        """True when the models have random weights (tiny or random profile)."""
        return self.profile in ("tiny", "random")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then `MMDEMO_<FIELD>` variables, then keyword overrides."""
        return cls(**{**env_values(cls, os.environ if environ is None else environ), **overrides})

    @classmethod
    def from_cli(cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse CLI flags (`--clip-model ...`) on top of the environment."""
        base = cls.from_env(environ)
        return base.replace(**cli_values(base, argv, SECRETS))
