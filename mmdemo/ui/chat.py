"""Chat tab: multimodal chat with the VLM, streamed, with a Stop that really stops.

Regenerate and undo edit the history; the next turn's prompt is compared with the KV cache of
the last answer (mmdemo.chat.reuse), so only what changed is recomputed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from mmdemo.chat.history import pop_last_turn, to_markdown, to_transcript, without_last_answer
from mmdemo.chat.media import check_attachments
from mmdemo.chat.pipeline import AnswerCut, AnswerOptions, AnswerStats, ChatBackend, GenerationParams
from mmdemo.chat.prompt import PATCH_AREA, ImageBudget, to_qwen_messages
from mmdemo.chat.sessions import ChatSessions
from mmdemo.config import Settings
from mmdemo.errors import UserFacingError
from mmdemo.files import inside, remove_tree
from mmdemo.serving import hosting, metrics
from mmdemo.ui.chat_controls import generation, render_controls
from mmdemo.ui.common import friendly_errors, measured, session, text_input
from mmdemo.ui.history import history_chatbot
from mmdemo.ui.i18n import language, say, t
from mmdemo.ui.serve import chat_queue

ASSETS = Path(__file__).resolve().parents[2] / "assets"
# At most this many seconds between two updates of a streaming answer: 10 a second reads as smooth,
# and each update is work for the server (measured on 2 cores: a search issued mid-answer took
# 2.8x its idle time with an update per token, bench/bench_fairness.py).
STREAM_INTERVAL = 0.1
EXPORT_MAX_AGE_S = 86_400  # downloads of sessions that never said goodbye (API clients) are kept this long
# Example prompts, English and Chinese side by side: Qwen-VL answers in the language it is asked in.
EXAMPLE_PROMPTS = (
    ("What is in this picture?", "这张图片里有什么？"),
    ("Compare these two pictures.", "比较这两张图片。"),
)


History = list[dict[str, Any]]


STATS_KEPT = 4096  # sessions whose last answer's cost is remembered (fresh session ids must not grow it without end)


class ChatTab:
    """The Chat tab, shaped like gradio's ChatInterface: `render` lays it out and wires the events,
    and each event is a method. `chat` and `regenerate` take the same generation controls, in
    the order of `self.controls`."""

    def __init__(self, settings: Settings, backend: ChatBackend) -> None:
        self.settings, self.backend = settings, backend
        # KV caches for prefix reuse live where the model runs: here only for the in-process backend.
        kept = settings.chat_cache_sessions if backend.keeps_prefix else 0
        self.sessions = ChatSessions(kept, settings.chat_cache_mb * 1_000_000)
        self.last_stats: OrderedDict[str, AnswerStats] = OrderedDict()  # per session: what its last answer cost
        self.cpu_told: OrderedDict[str, None] = OrderedDict()  # sessions told that llama.cpp would be faster
        self.outputs = settings.data_dir / "outputs" / "chat"  # downloaded conversations, a folder per session
        on_gpu = backend.runs_on_gpu
        self.default_max_pixels = settings.vlm_max_pixels or (1280 if on_gpu else 512) * PATCH_AREA
        # The model-running events, wrapped as bound methods (their names and docstrings stay those
        # of the API and MCP tools): messages, not traces; on ZeroGPU a spaces.GPU allocation each,
        # unless the model runs on a server (then a GPU here would be held for nothing).
        on_gpu_here = hosting.gpu(duration=120) if backend.uses_local_accelerator else (lambda fn: fn)
        self.chat = friendly_errors(measured("chat", on_gpu_here(self.chat)))
        self.regenerate = friendly_errors(measured("chat", on_gpu_here(self.regenerate)))

    # --- layout and events ---

    def render(self, app: gr.Blocks) -> None:
        """Lay out the tab and wire its events (inside a `gr.Tab`)."""
        # What /chat returns can be sent back as it is (ui/history.py).
        chatbot = self.chatbot = history_chatbot(label=t("chat.conversation"), height=460, buttons=["copy"])
        stats_line = gr.Markdown(elem_id="chat-stats")  # tokens, tokens/s, prompt reused, after each answer
        box = self.box = gr.MultimodalTextbox(
            placeholder=str(t("chat.placeholder")),  # as a string: the page translates any marked prop
            file_types=["image", "video"],
            file_count="multiple",
            stop_btn=True,
            show_label=False,
        )
        with gr.Row():
            regen_btn = gr.Button(t("chat.regenerate"), size="sm")
            stop_regen = gr.Button(t("chat.stop"), size="sm", visible=False, elem_id="chat-stop-regenerate")
            undo_btn = gr.Button(t("chat.undo"), size="sm")
            clear_btn = gr.Button(t("chat.clear"), size="sm", elem_id="chat-clear")
            export_btn = gr.Button(t("chat.download"), size="sm", elem_id="chat-export")
            # Wired by the Search tab's ask panel (mmdemo.ui.ask.AskPanel.connect): it holds the results.
            self.add_photos = gr.Button(t("ask.add_photos"), size="sm", elem_id="chat-add-photos")
        transcript = gr.File(
            label=t("chat.transcript"), file_count="multiple", visible=False, elem_id="chat-transcript"
        )
        with gr.Accordion(t("chat.settings"), open=False):
            controls = render_controls(self.settings, self.default_max_pixels)
            gr.Markdown(t("chat.quantization_note"))
        self._examples(box)

        queue = chat_queue(self.settings)
        event = box.submit(self.chat, [box, chatbot, *controls], [chatbot, box], api_name="chat", **queue)
        event.then(lambda: gr.MultimodalTextbox(interactive=True), None, box, api_visibility="private")
        event.then(self.answer_stats, None, stats_line, api_visibility="private")
        # Stop also cancels the event: on ZeroGPU the answer runs in a forked worker that never sees
        # this process's stop flag, but Gradio closing the generator reaches it (spaces sets the
        # worker's stop event, and the worker closes our generator: generation ends at its next token).
        box.stop(self.stop, None, None, api_visibility="private", cancels=[event])
        # Regenerate has no textbox of its own to show a stop button in: a Stop appears beside it.
        # (Its own listener, not a step before regenerate: Undo and Clear cancel the regenerate event itself.)
        regen_btn.click(lambda: gr.Button(visible=True), None, stop_regen, api_visibility="private", queue=False)
        regen = regen_btn.click(self.regenerate, [chatbot, *controls], chatbot, api_name="regenerate", **queue)
        regen.then(lambda: gr.Button(visible=False), None, stop_regen, api_visibility="private")
        regen.then(self.answer_stats, None, stats_line, api_visibility="private")
        stop_regen.click(self.stop, None, None, api_visibility="private", cancels=[regen])
        export = export_btn.click(self.export, [chatbot, controls[-1]], transcript, api_name="export_conversation")
        export.success(lambda: gr.File(visible=True), None, transcript, api_visibility="private")
        # Undo and Clear cancel a running answer first, so its last chunk cannot land afterwards.
        # Undo in two steps: first stop and cancel, then edit the conversation as it then stands, so
        # a last chunk of the cancelled answer cannot land after the edit and bring the turn back.
        undo_btn.click(self.stop, None, None, api_visibility="private", cancels=[event, regen]).then(
            self.undo, chatbot, [chatbot, box], api_visibility="private"
        )
        clear_btn.click(self.forget, None, None, api_visibility="private", cancels=[event, regen]).then(
            lambda: ([], None), None, [chatbot, box], api_visibility="private"
        )
        app.unload(self.forget)  # the tab closed: stop its generation and free its cache

    @staticmethod
    def _examples(box: gr.MultimodalTextbox) -> None:
        """Example messages under the box: the bundled photos with a question in English and in Chinese."""
        examples = sorted(ASSETS.glob("*.jpg"))[:2]
        if examples:
            (one, one_zh), (two, two_zh) = EXAMPLE_PROMPTS
            both = [str(p) for p in examples]
            rows = [(one, [both[0]]), (one_zh, [both[-1]]), (two, both), (two_zh, both)]
            gr.Examples(
                [[{"text": text, "files": files}] for text, files in rows], inputs=[box], label=t("chat.examples")
            )

    # --- handlers ---

    def chat(
        self,
        message: dict[str, Any] | None,
        history: History,
        max_new_tokens: float,
        temperature: float,
        top_p: float,
        repetition_penalty: float,
        greedy: bool,
        min_pixels: float,
        max_pixels: float,
        video_frames: float,
        video_total_pixels: float,
        system_prompt: str = "",
        request: gr.Request | None = None,
    ) -> Iterator[tuple[History, Any]]:
        """Answer a message (text and/or images or a video) given the conversation so far, streaming.

        Args:
            message: {"text": question, "files": [image or video files]}.
            history: the conversation so far, as /chat returned it ([] for a new one).
            max_new_tokens: most tokens in the answer.
            temperature: sampling temperature (0 = greedy).
            top_p: nucleus sampling mass.
            repetition_penalty: > 1 discourages repeating tokens.
            greedy: deterministic decoding (ignores temperature and top_p).
            min_pixels: smallest size an image is resized to, in pixels.
            max_pixels: largest size an image is resized to, in pixels.
            video_frames: frames sampled from a video.
            video_total_pixels: pixel budget for all frames of a video together.
            system_prompt: instructions for the model ('' = the model's default).
        Returns:
            The conversation with the answer appended, growing as tokens arrive.
        """
        self._check_system_prompt(system_prompt)
        history = [*(history or []), *self._user_turn(message, int(max_pixels), int(video_frames), request)]
        yield history, gr.MultimodalTextbox(value=None, interactive=False)
        params, budget = generation(
            self.settings,
            max_new_tokens,
            temperature,
            top_p,
            repetition_penalty,
            greedy,
            min_pixels,
            max_pixels,
            video_frames,
            video_total_pixels,
        )
        updated = history
        for updated in self._answer(history, params, budget, request, system_prompt):
            yield updated, gr.MultimodalTextbox()
        yield updated, gr.MultimodalTextbox(interactive=True)

    def regenerate(
        self,
        history: History,
        max_new_tokens: float,
        temperature: float,
        top_p: float,
        repetition_penalty: float,
        greedy: bool,
        min_pixels: float,
        max_pixels: float,
        video_frames: float,
        video_total_pixels: float,
        system_prompt: str = "",
        request: gr.Request | None = None,
    ) -> Iterator[History]:
        """Answer the last user turn again, replacing the old answer.

        Args:
            history: the conversation as /chat returned it.
            max_new_tokens: most tokens in the answer.
            temperature: sampling temperature (0 = greedy).
            top_p: nucleus sampling mass.
            repetition_penalty: > 1 discourages repeating tokens.
            greedy: deterministic decoding (ignores temperature and top_p).
            min_pixels: smallest size an image is resized to, in pixels.
            max_pixels: largest size an image is resized to, in pixels.
            video_frames: frames sampled from a video.
            video_total_pixels: pixel budget for all frames of a video together.
            system_prompt: instructions for the model ('' = the model's default).
        Returns:
            The conversation with the new answer, growing as tokens arrive.
        """
        self._check_system_prompt(system_prompt)
        history = without_last_answer(history or [])
        if not history:
            raise UserFacingError(key="chat.nothing_to_regenerate")
        yield history
        params, budget = generation(
            self.settings,
            max_new_tokens,
            temperature,
            top_p,
            repetition_penalty,
            greedy,
            min_pixels,
            max_pixels,
            video_frames,
            video_total_pixels,
        )
        yield from self._answer(history, params, budget, request, system_prompt)

    def undo(self, history: History, request: gr.Request) -> tuple[History, dict[str, Any]]:
        """Remove the last question and its answer; put the question back in the box to edit."""
        self.sessions.stop(session(request))
        history, text, files = pop_last_turn(history or [])
        return history, {"text": text, "files": files}

    def forget(self, request: gr.Request) -> None:
        """Stop this session's answer and free its cache and downloads (Clear, or the tab closed)."""
        self.sessions.forget(session(request))
        self.last_stats.pop(session(request), None)
        remove_tree(self.outputs, session(request))

    def export(self, history: History, system_prompt: str, request: gr.Request) -> list[str]:
        """The conversation as a JSON and a Markdown file (attachments referenced by file name).

        Args:
            history: the conversation, as /chat returned it.
            system_prompt: the system prompt it was answered under ('' for none).
        Returns:
            The two files.
        """
        if not history:
            raise gr.Error(say(request, "chat.nothing_to_download"), print_exception=False)
        self._sweep()
        transcript = to_transcript(history, (system_prompt or "").strip())
        # A folder per download: API callers without a session share one key.
        folder = inside(self.outputs, session(request), uuid.uuid4().hex[:12])
        folder.mkdir(parents=True)
        (folder / "conversation.json").write_text(json.dumps(transcript, ensure_ascii=False, indent=2) + "\n")
        (folder / "conversation.md").write_text(to_markdown(transcript, language(request)))
        return [str(folder / "conversation.json"), str(folder / "conversation.md")]

    def _sweep(self) -> None:
        """Remove downloads older than a day (sessions that never said goodbye: API clients)."""
        cutoff = time.time() - EXPORT_MAX_AGE_S
        for folder in self.outputs.glob("*/*"):
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                remove_tree(self.outputs, folder.relative_to(self.outputs))

    def answer_stats(self, request: gr.Request) -> str:
        """The small line under the conversation: what the last answer cost (and, once per session when the
        model runs on this machine's CPU, that a llama.cpp server would answer faster)."""
        key = session(request)
        stats = self.last_stats.get(key)
        if stats is None:
            return ""
        line = f"<small>{stats.describe(language(request))}</small>"
        if self.backend.runs_on_gpu or key in self.cpu_told or stats.new_tokens < 2:
            return line
        self.cpu_told[key] = None
        while len(self.cpu_told) > STATS_KEPT:
            self.cpu_told.popitem(last=False)
        rate = (stats.new_tokens - 1) / stats.decode_seconds if stats.decode_seconds > 0 else 0.0
        return line + "\n\n" + say(request, "chat.cpu_notice", rate=f"{rate:.1f}")

    def stop(self, request: gr.Request) -> None:
        """Stop this session's answer at the next token."""
        self.sessions.stop(session(request))

    # --- shared steps ---

    def _check_system_prompt(self, system_prompt: str) -> None:
        system_prompt = text_input(system_prompt, "system_prompt")
        if len(system_prompt) > self.settings.max_prompt_chars:
            raise UserFacingError(
                key="chat.system_too_long", n=len(system_prompt), limit=self.settings.max_prompt_chars
            )

    def _user_turn(
        self, message: dict[str, Any] | None, max_pixels: int, video_frames: int, request: gr.Request | None = None
    ) -> History:
        """The checked user messages for `message` (its readable files, then its text)."""
        settings = self.settings
        text = ((message or {}).get("text") or "").strip()
        files = [f if isinstance(f, str) else f.get("path") for f in (message or {}).get("files") or []]
        if len(text) > settings.max_prompt_chars:
            raise UserFacingError(key="chat.message_too_long", n=len(text), limit=settings.max_prompt_chars)
        if len(files) > settings.max_images_per_turn:
            raise UserFacingError(key="chat.too_many_files", n=len(files), limit=settings.max_images_per_turn)
        if not text and not files:
            raise UserFacingError(key="chat.empty")
        files, skipped = check_attachments(files, settings.max_image_pixels, max_pixels, video_frames)
        for bad in skipped:
            gr.Warning(say(request, "chat.skipped", name=bad.name, reason=bad.said(language(request))))
        if not text and not files:
            raise UserFacingError(key="chat.nothing_readable")
        return [
            *({"role": "user", "content": {"path": f}} for f in files),
            {"role": "user", "content": text or say(request, "chat.default_question")},  # asked in the UI language
        ]

    def _answer(
        self,
        history: History,
        params: GenerationParams,
        budget: ImageBudget,
        request: gr.Request | None,
        system_prompt: str = "",
    ) -> Iterator[History]:
        """Stream an answer to the last user turn of `history` (shared by chat and regenerate)."""
        limit, key = self.settings.max_context_tokens, session(request)
        prepared = self.backend.prepare(to_qwen_messages(history, budget, system_prompt or ""), limit)
        if prepared.dropped:
            gr.Warning(say(request, "chat.context_dropped", limit=limit, n=prepared.dropped))
        stop, prefix = self.sessions.begin(key)
        reply = {"role": "assistant", "content": ""}
        stats = self.last_stats[key] = AnswerStats()
        self.last_stats.move_to_end(key)
        while len(self.last_stats) > STATS_KEPT:
            self.last_stats.popitem(last=False)
        answer = self.backend.stream(prepared, AnswerOptions(params, stop, prefix, STREAM_INTERVAL, stats))
        try:
            for partial in answer:
                reply["content"] = partial
                yield [*history, reply]
        except AnswerCut as cut:  # the server went away mid-answer: keep what came, say it was cut
            reply["content"] += " …"
            gr.Warning(cut.translated(language(request)))
        finally:
            metrics.record_answer(stats.new_tokens, stats.decode_seconds)
            self.sessions.finish(key, stop)
            self.sessions.trim(keep=key)  # the caches, this answer's grown one too, within their bytes
        yield [*history, reply]


def build(settings: Settings, backend: ChatBackend, app: gr.Blocks) -> ChatTab:
    """Add the chat components and events to the current Blocks."""
    tab = ChatTab(settings, backend)
    tab.render(app)
    return tab
