"""Chat tab: multimodal chat with the VLM, streamed, with a Stop that really stops."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from mmdemo.config import Settings
from mmdemo.errors import UserFacingError
from mmdemo.models.manager import ModelManager
from mmdemo.ui.common import friendly_errors
from mmdemo.vqa.chat import DEFAULT_QUESTION, GenerationParams, ImageBudget, stream_reply, to_qwen_messages

ASSETS = Path(__file__).resolve().parents[2] / "assets"


class StopSignals:
    """One stop flag per browser session, so Stop ends that session's generation only."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def fresh(self, session: str) -> threading.Event:
        """A new, unset flag for the generation about to start."""
        with self._lock:
            self._events[session] = threading.Event()
            return self._events[session]

    def stop(self, session: str) -> None:
        """Stop the running generation of this session, if any."""
        with self._lock:
            event = self._events.pop(session, None)
        if event is not None:
            event.set()


def build(settings: Settings, manager: ModelManager) -> None:
    """Add the chat components and events to the current Blocks."""
    signals = StopSignals()

    @friendly_errors
    def chat(
        message: dict[str, Any],
        history: list[dict[str, Any]],
        max_new_tokens: float,
        temperature: float,
        top_p: float,
        greedy: bool,
        request: gr.Request,
    ) -> Iterator[tuple[list[dict[str, Any]], Any]]:
        """Answer a message (text and/or images) given the conversation so far; streams the answer."""
        text = (message or {}).get("text", "").strip()
        files = [f if isinstance(f, str) else f.get("path") for f in (message or {}).get("files", [])]
        if len(text) > settings.max_prompt_chars:
            raise UserFacingError(f"The message is {len(text)} characters; the limit is {settings.max_prompt_chars}.")
        if len(files) > settings.max_images_per_turn:
            raise UserFacingError(f"{len(files)} files in one message; the limit is {settings.max_images_per_turn}.")
        if not text and not files:
            raise UserFacingError("Type a question, or attach an image.")
        history = list(history or [])
        history += [{"role": "user", "content": {"path": f}} for f in files]
        history.append({"role": "user", "content": text or DEFAULT_QUESTION})
        yield history, gr.MultimodalTextbox(value=None, interactive=False)
        vlm = manager.get("vlm")
        params = GenerationParams(int(max_new_tokens), temperature, top_p, greedy=greedy)
        stop = signals.fresh(request.session_hash or "api")
        answer = {"role": "assistant", "content": ""}
        for partial in stream_reply(vlm, to_qwen_messages(history, ImageBudget()), params, stop):
            answer["content"] = partial
            yield [*history, answer], gr.MultimodalTextbox()
        yield [*history, answer], gr.MultimodalTextbox(interactive=True)

    def stop(request: gr.Request) -> None:
        signals.stop(request.session_hash or "api")

    chatbot = gr.Chatbot(label="Conversation", height=460, buttons=["copy"])
    box = gr.MultimodalTextbox(
        placeholder="Ask about an image: attach one or more, then type a question",
        file_types=["image", "video"],
        file_count="multiple",
        stop_btn=True,
        show_label=False,
    )
    with gr.Accordion("Generation settings", open=False):
        max_new = gr.Slider(
            1, settings.max_new_tokens, value=min(256, settings.max_new_tokens), step=1, label="Max new tokens"
        )
        temperature = gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="Temperature")
        top_p = gr.Slider(0.1, 1.0, value=0.9, step=0.05, label="Top-p")
        greedy = gr.Checkbox(value=False, label="Greedy (deterministic)")
    examples = [p for p in sorted(ASSETS.glob("*.jpg"))[:2]]
    if examples:
        gr.Examples(
            [[{"text": "What is in this picture?", "files": [str(p)]}] for p in examples],
            inputs=[box],
            label="Examples",
        )
    clear = gr.Button("Clear conversation", size="sm")

    event = box.submit(chat, [box, chatbot, max_new, temperature, top_p, greedy], [chatbot, box], api_name="chat")
    event.then(lambda: gr.MultimodalTextbox(interactive=True), None, box, api_visibility="private")
    box.stop(stop, None, None, api_visibility="private")
    clear.click(lambda: [], None, chatbot, api_visibility="private")
