"""Chat tab: multimodal chat with the VLM, streamed, with a Stop that really stops.

Regenerate and undo edit the history; the next turn's prompt is compared with the KV cache of
the last answer (mmdemo.vqa.reuse), so only what changed is recomputed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from mmdemo import hosting
from mmdemo.config import Settings
from mmdemo.errors import UserFacingError
from mmdemo.models.device import pick_device
from mmdemo.models.manager import ModelManager
from mmdemo.ui.common import friendly_errors
from mmdemo.ui.serve import chat_queue
from mmdemo.vqa.chat import (
    DEFAULT_QUESTION,
    PATCH_AREA,
    GenerationParams,
    ImageBudget,
    build_prompt,
    stream_reply,
    to_qwen_messages,
)
from mmdemo.vqa.history import pop_last_turn, without_last_answer
from mmdemo.vqa.media import check_attachments
from mmdemo.vqa.sessions import ChatSessions

ASSETS = Path(__file__).resolve().parents[2] / "assets"
# At most this many seconds between two updates of a streaming answer: 10 a second reads as smooth,
# and each update is work for the server (measured on 2 cores: a search issued mid-answer took
# 2.8x its idle time with an update per token, bench/bench_fairness.py).
STREAM_INTERVAL = 0.1
QUANTIZATION_NOTE = (
    "Quantized weights (`MMDEMO_QUANTIZATION`, CUDA only): 8-bit halves memory but decodes 2-5x slower "
    "than bf16 (bitsandbytes #490); 4-bit nf4 saves the most memory at a smaller slowdown."
)


def _session(request: gr.Request | None) -> str:
    return (request.session_hash if request is not None else None) or "api"


def build(settings: Settings, manager: ModelManager, app: gr.Blocks) -> None:
    """Add the chat components and events to the current Blocks."""
    sessions = ChatSessions(settings.chat_cache_sessions)
    on_gpu = pick_device(settings.device) == "cuda"
    default_max_pixels = settings.vlm_max_pixels or (1280 if on_gpu else 512) * PATCH_AREA

    def answer(history: list[dict[str, Any]], controls: tuple[Any, ...], session: str) -> Iterator[Any]:
        """Stream an answer to the last user turn of `history` (shared by send and regenerate)."""
        max_new, temperature, top_p, repetition, greedy, min_px, max_px, frames, video_px = controls
        params = GenerationParams(int(max_new), float(temperature), float(top_p), float(repetition), bool(greedy))
        budget = ImageBudget(
            min_pixels=int(min(min_px, max_px)), max_pixels=int(max_px), max_frames=int(frames),
            video_total_pixels=int(video_px), max_file_pixels=settings.max_image_pixels,
        )  # fmt: skip
        vlm = manager.get("vlm")
        prompt = build_prompt(vlm, to_qwen_messages(history, budget), settings.max_context_tokens)
        if prompt.dropped:
            gr.Warning(
                f"The conversation outgrew the {settings.max_context_tokens}-token context: the model no longer "
                f"sees the oldest {prompt.dropped} message(s)."
            )
        stop, prefix = sessions.begin(session)
        reply = {"role": "assistant", "content": ""}
        for partial in stream_reply(vlm, prompt, params, stop, prefix, min_interval=STREAM_INTERVAL):
            reply["content"] = partial
            yield [*history, reply]
        yield [*history, reply]

    @friendly_errors
    @hosting.gpu(duration=120)
    def chat(
        message: dict[str, Any] | None,
        history: list[dict[str, Any]],
        max_new_tokens: float,
        temperature: float,
        top_p: float,
        repetition_penalty: float,
        greedy: bool,
        min_pixels: float,
        max_pixels: float,
        video_frames: float,
        video_total_pixels: float,
        request: gr.Request,
    ) -> Iterator[tuple[list[dict[str, Any]], Any]]:
        """Answer a message (text and/or images or a video) given the conversation so far, streaming.

        Args:
            message: {"text": question, "files": [image or video files]}.
            history: the conversation so far in messages format ([] for a new one).
            max_new_tokens: most tokens in the answer.
            temperature: sampling temperature (0 = greedy).
            top_p: nucleus sampling mass.
            repetition_penalty: > 1 discourages repeating tokens.
            greedy: deterministic decoding (ignores temperature and top_p).
            min_pixels: smallest size an image is resized to, in pixels.
            max_pixels: largest size an image is resized to, in pixels.
            video_frames: frames sampled from a video.
            video_total_pixels: pixel budget for all frames of a video together.
        Returns:
            The conversation with the answer appended, growing as tokens arrive.
        """
        text = ((message or {}).get("text") or "").strip()
        files = [f if isinstance(f, str) else f.get("path") for f in (message or {}).get("files") or []]
        if len(text) > settings.max_prompt_chars:
            raise UserFacingError(f"The message is {len(text)} characters; the limit is {settings.max_prompt_chars}.")
        if len(files) > settings.max_images_per_turn:
            raise UserFacingError(
                f"{len(files)} files in one message; the limit is {settings.max_images_per_turn}. Send fewer at a time."
            )
        if not text and not files:
            raise UserFacingError("Type a question, or attach an image.")
        files, skipped = check_attachments(files, settings.max_image_pixels, int(max_pixels), int(video_frames))
        for bad in skipped:
            gr.Warning(f"Skipped {bad.name}: {bad.reason}")
        if not text and not files:
            raise UserFacingError("None of the attached files could be read, and there is no question.")
        history = list(history or [])
        history += [{"role": "user", "content": {"path": f}} for f in files]
        history.append({"role": "user", "content": text or DEFAULT_QUESTION})
        yield history, gr.MultimodalTextbox(value=None, interactive=False)
        controls = (max_new_tokens, temperature, top_p, repetition_penalty, greedy, min_pixels, max_pixels,
                    video_frames, video_total_pixels)  # fmt: skip
        for updated in answer(history, controls, _session(request)):
            yield updated, gr.MultimodalTextbox()
        yield updated, gr.MultimodalTextbox(interactive=True)

    @friendly_errors
    @hosting.gpu(duration=120)
    def regenerate(
        history: list[dict[str, Any]],
        max_new_tokens: float,
        temperature: float,
        top_p: float,
        repetition_penalty: float,
        greedy: bool,
        min_pixels: float,
        max_pixels: float,
        video_frames: float,
        video_total_pixels: float,
        request: gr.Request,
    ) -> Iterator[list[dict[str, Any]]]:
        """Answer the last user turn again, replacing the old answer (same controls as `chat`)."""
        history = without_last_answer(history or [])
        if not history:
            raise UserFacingError("Nothing to regenerate yet.")
        yield history
        controls = (max_new_tokens, temperature, top_p, repetition_penalty, greedy, min_pixels, max_pixels,
                    video_frames, video_total_pixels)  # fmt: skip
        yield from answer(history, controls, _session(request))

    def undo(history: list[dict[str, Any]], request: gr.Request) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Remove the last question and its answer; put the question back in the box to edit."""
        sessions.stop(_session(request))
        history, text, files = pop_last_turn(history or [])
        return history, {"text": text, "files": files}

    def forget(request: gr.Request) -> None:
        sessions.forget(_session(request))

    def stop(request: gr.Request) -> None:
        sessions.stop(_session(request))

    chatbot = gr.Chatbot(label="Conversation", height=460, buttons=["copy"])
    box = gr.MultimodalTextbox(
        placeholder="Ask about an image: attach images or a video, then type a question",
        file_types=["image", "video"],
        file_count="multiple",
        stop_btn=True,
        show_label=False,
    )
    with gr.Row():
        regen_btn = gr.Button("Regenerate", size="sm")
        undo_btn = gr.Button("Undo last turn", size="sm")
        clear_btn = gr.Button("Clear", size="sm")
    with gr.Accordion("Generation settings", open=False):
        with gr.Row():
            max_new = gr.Slider(
                1, settings.max_new_tokens, value=min(256, settings.max_new_tokens), step=1, label="Max new tokens"
            )
            temperature = gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="Temperature")
            top_p = gr.Slider(0.1, 1.0, value=0.9, step=0.05, label="Top-p")
            repetition = gr.Slider(1.0, 2.0, value=1.05, step=0.01, label="Repetition penalty")
            greedy = gr.Checkbox(value=False, label="Greedy (deterministic)")
        with gr.Row():
            min_px = gr.Slider(4 * PATCH_AREA, 1024 * PATCH_AREA, value=4 * PATCH_AREA, step=PATCH_AREA,
                               label="Min pixels per image")  # fmt: skip
            max_px = gr.Slider(
                16 * PATCH_AREA, 16384 * PATCH_AREA, value=default_max_pixels, step=PATCH_AREA,
                label="Max pixels per image (larger images are shrunk; more pixels = more memory and time)",
            )  # fmt: skip
            frames = gr.Slider(2, settings.max_video_frames, value=min(16, settings.max_video_frames), step=2,
                               label="Video: frames sampled")  # fmt: skip
            video_px = gr.Slider(64 * PATCH_AREA, 24576 * PATCH_AREA, value=4096 * PATCH_AREA, step=PATCH_AREA,
                                 label="Video: total pixels of all frames")  # fmt: skip
        gr.Markdown(QUANTIZATION_NOTE)
    examples = sorted(ASSETS.glob("*.jpg"))[:2]
    if examples:
        gr.Examples(
            [[{"text": "What is in this picture?", "files": [str(p)]}] for p in examples]
            + [[{"text": "Compare these two pictures.", "files": [str(p) for p in examples]}]],
            inputs=[box],
            label="Examples",
        )
    controls = [max_new, temperature, top_p, repetition, greedy, min_px, max_px, frames, video_px]

    event = box.submit(chat, [box, chatbot, *controls], [chatbot, box], api_name="chat", **chat_queue(settings))
    event.then(lambda: gr.MultimodalTextbox(interactive=True), None, box, api_visibility="private")
    box.stop(stop, None, None, api_visibility="private")
    regen = regen_btn.click(regenerate, [chatbot, *controls], chatbot, api_name="regenerate", **chat_queue(settings))
    # Undo and Clear cancel a running answer first, so its last chunk cannot land afterwards.
    undo_btn.click(undo, chatbot, [chatbot, box], api_visibility="private", cancels=[event, regen])
    clear_btn.click(forget, None, None, api_visibility="private", cancels=[event, regen]).then(
        lambda: ([], None), None, [chatbot, box], api_visibility="private"
    )
    app.unload(forget)  # the tab closed: stop its generation and free its cache
