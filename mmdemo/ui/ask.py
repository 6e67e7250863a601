"""Ask your photos, on the Search tab: a question about the results, Ask every image, Continue in Chat.

Laid out under the search results (`render`) and wired to the Chat tab (`connect`): the answers
are chat-model jobs, so they wait in the chat's queue, never in the search's. The features
themselves are in mmdemo.ask; this file turns page events into calls of its `PhotoAsker`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import gradio as gr

from mmdemo.ask.about import ask_history, linked, read_question, stream_answer
from mmdemo.ask.each import EachRow, ask_each, read_questions, write_csv
from mmdemo.ask.rerank import Reranked
from mmdemo.ask.service import PhotoAsker
from mmdemo.chat.pipeline import AnswerCut, GenerationParams
from mmdemo.errors import UserFacingError
from mmdemo.files import inside, remove_tree
from mmdemo.serving import hosting
from mmdemo.ui.common import friendly_errors, measured, session, text_input
from mmdemo.ui.i18n import language, say, t, table_value
from mmdemo.ui.serve import chat_queue

STREAM_INTERVAL = 0.1  # seconds between two updates of a streaming answer (as in the Chat tab)
SCOPES = ("results", "yours")  # what Ask every image asks over
EACH_COLUMNS = ("image", "question", "answer")  # locale keys ask.each_col.*
EACH_MAX_NEW_TOKENS = 128  # an answer per image is a short one: a table cell
# Clicking "[2]" in an answer selects result 2: the link's #result-N becomes a click on the Nth thumbnail.
REFERENCE_JS = """() => {
  if (window.mmdemoReferences) return;
  window.mmdemoReferences = true;
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest('a[href^="#result-"]');
    if (!link) return;
    event.preventDefault();
    event.stopPropagation();
    const rank = parseInt(link.getAttribute("href").slice("#result-".length), 10);
    const gallery = document.querySelector("#search-results");
    if (!gallery || !(rank > 0)) return;
    const small = gallery.querySelectorAll("button.thumbnail-small");
    const thumbs = small.length ? small : gallery.querySelectorAll("button.thumbnail-item");
    if (thumbs[rank - 1]) thumbs[rank - 1].click();
  }, true);
}"""


def rerank_said(request: gr.Request | None, run: Reranked) -> str:
    """What a re-rank cost, in the visitor's language (and that it is coarse, when it is)."""
    line = say(request, "search.rerank_info", k=len(run.order), s=f"{run.seconds:.2f}", cached=run.cached)
    return line + ("" if run.exact else say(request, "search.rerank_coarse"))


class AskPanel:
    """The ask features' layout and events; each event is a method."""

    def __init__(self, asker: PhotoAsker) -> None:
        self.asker, self.settings = asker, asker.settings
        self.stops: dict[str, threading.Event] = {}  # per session: the running ask's stop flag
        self.outputs = self.settings.data_dir / "outputs" / "ask"  # CSV downloads, a folder per session
        on_gpu_here = hosting.gpu(duration=120) if asker.backend.uses_local_accelerator else (lambda fn: fn)
        self.ask_results = friendly_errors(measured("ask", on_gpu_here(self.ask_results)))
        self.ask_every = friendly_errors(measured("ask", on_gpu_here(self.ask_every)))
        self.add_photos = friendly_errors(self.add_photos)
        self.exchange: gr.State | None = None
        self.states: tuple[gr.State, gr.State, gr.State] | None = None

    def render(self, app: gr.Blocks, result_ids: gr.State, selected: gr.State, token: gr.State) -> None:
        """Lay out the panel under the search results and wire its own events."""
        self.states, self.exchange = (result_ids, selected, token), gr.State(None)
        queue = chat_queue(self.settings)
        with gr.Accordion(t("ask.box"), open=True, elem_id="ask-box"):
            with gr.Row():
                question = gr.Textbox(
                    label=t("ask.question"), placeholder=t("ask.question_placeholder"), scale=4, elem_id="ask-question"
                )
                go = gr.Button(t("ask.button"), variant="primary", scale=1, elem_id="ask-go")
                stop = gr.Button(t("ask.stop"), scale=1, elem_id="ask-stop")
            answer = gr.Markdown(elem_id="ask-answer")
            self.continue_btn = gr.Button(t("ask.continue"), size="sm", elem_id="ask-continue")
        with gr.Accordion(t("ask.each_box"), open=False, elem_id="ask-each-box"):
            with gr.Row():
                questions = gr.Textbox(label=t("ask.each_questions"), lines=3, scale=3, elem_id="ask-each-questions")
                scope = gr.Radio(
                    [(t(f"ask.scope_{scope}"), scope) for scope in SCOPES],
                    value=SCOPES[0],
                    label=t("ask.each_scope"),
                    scale=1,
                )
            with gr.Row():
                each_go = gr.Button(t("ask.each_button"), variant="primary", elem_id="ask-each-go")
                each_stop = gr.Button(t("ask.stop"), elem_id="ask-each-stop")
            status = gr.Markdown(elem_id="ask-each-status")
            table = gr.Dataframe(label=t("ask.each_table"), wrap=True, elem_id="ask-each-table")
            csv_file = gr.File(label=t("ask.each_csv"), elem_id="ask-each-csv")
        # The public /ask_results and /ask_each are the tools' (mmdemo.ui.tools): these page events get names of
        # their own, so that they do not take those.
        inputs, outputs = [question, result_ids, token], [answer, self.exchange]
        for trigger, name in ((go.click, "ask_results_page"), (question.submit, "ask_results_page_enter")):
            trigger(self.ask_results, inputs, outputs, api_name=name, api_visibility="private", **queue)
        stop.click(self.stop_answer, None, None, api_visibility="private", queue=False)
        each_go.click(
            self.ask_every,
            [questions, scope, result_ids, token],
            [table, status, csv_file],
            api_name="ask_each_page",
            api_visibility="private",
            show_progress="minimal",
            **queue,
        )
        each_stop.click(self.stop_each, None, None, api_visibility="private", queue=False)
        app.load(None, None, None, js=REFERENCE_JS)
        app.load(self.empty_table, None, table, api_visibility="private", queue=False)
        app.unload(self.end_session)

    def connect(self, chatbot: gr.Chatbot, box: gr.MultimodalTextbox, add: gr.Button, tabs: gr.Tabs) -> None:
        """Wire the events between the Search and Chat tabs: Continue in Chat, and the Chat tab's Add from my photos."""
        assert self.states is not None and self.exchange is not None, "render() first"
        result_ids, selected, token = self.states
        self.continue_btn.click(
            self.continue_in_chat, [self.exchange, chatbot], [chatbot, tabs], api_visibility="private", queue=False
        )
        add.click(self.add_photos, [box, result_ids, selected, token], box, api_visibility="private", queue=False)

    # --- events ---

    def ask_results(
        self, question: str, ids: list[Any], token: str | None, request: gr.Request | None = None
    ) -> Iterator[tuple[str, list[dict[str, Any]] | None]]:
        """Stream the chat model's answer about the current results; the references [n] link to result n."""
        settings = self.settings
        question = read_question(text_input(question, "question"), settings.max_prompt_chars)
        found = self.asker.found(ids, token, settings.ask_max_images)
        if not found.shown:
            raise UserFacingError(key="ask.no_results")
        if found.gone:
            gr.Warning(say(request, "ask.gone", n=found.gone))
        history, n = ask_history(found.shown, question), len(found.shown)
        params = GenerationParams(max_new_tokens=settings.max_new_tokens)
        stop, text = self._begin(request, "answer"), ""
        try:
            for text in stream_answer(
                self.asker.backend,
                history,
                self.asker.budget,
                params,
                stop,
                settings.max_context_tokens,
                STREAM_INTERVAL,
            ):
                yield linked(text, n), None
        except AnswerCut as cut:  # the server went away mid-answer: keep what came
            text += " …"
            gr.Warning(cut.translated(language(request)))
        finally:
            self._end(request, "answer", stop)
        over = say(request, "ask.over", n=n, limit=settings.ask_max_images)
        yield f"{linked(text, n)}\n\n<small>{over}</small>", [*history, {"role": "assistant", "content": text}]

    def ask_every(
        self, questions: str, scope: str, ids: list[Any], token: str | None, request: gr.Request | None = None
    ) -> Iterator[tuple[Any, str, str | None]]:
        """Ask each question of every image (the results, or all of yours): a table that fills in, then a CSV."""
        settings = self.settings
        asked = read_questions(text_input(questions, "questions"), settings.ask_each_max, settings.max_prompt_chars)
        if scope == "yours":
            images = self.asker.yours(token)
            if not images:
                raise UserFacingError(key="ask.yours_empty")
        else:
            found = self.asker.found(ids, token)
            images = found.shown
            if not images:
                raise UserFacingError(key="ask.no_results")
        total = len(images) * len(asked)
        if total > settings.ask_each_max:
            raise UserFacingError(key="ask.each_too_many", n=total, limit=settings.ask_each_max)
        params = GenerationParams(max_new_tokens=min(EACH_MAX_NEW_TOKENS, settings.max_new_tokens), greedy=True)
        stop, rows = self._begin(request, "each"), list[EachRow]()
        yield self._table(rows, request), say(request, "ask.each_progress", done=0, total=total), None
        try:
            budget, limit = self.asker.budget, settings.max_context_tokens
            for row in ask_each(self.asker.backend, images, asked, budget, params, stop, limit):
                rows.append(row)
                yield self._table(rows, request), say(request, "ask.each_progress", done=len(rows), total=total), None
        finally:
            stopped = stop.is_set() and len(rows) < total
            self._end(request, "each", stop)
        csv_path = write_csv(rows, self._folder(request) / "answers.csv") if rows else None
        done = say(request, "ask.each_stopped" if stopped else "ask.each_done", done=len(rows), total=total)
        yield self._table(rows, request), done, str(csv_path) if csv_path else None

    def continue_in_chat(self, exchange: list[dict[str, Any]] | None, history: list[dict[str, Any]] | None) -> Any:
        """The question, its images and the answer, appended to the Chat tab's conversation; the Chat tab opens."""
        if not exchange or not isinstance(exchange, list):
            raise gr.Error(str(t("ask.nothing_to_continue")), print_exception=False)
        return [*(history or []), *exchange], gr.Tabs(selected="chat")

    def add_photos(
        self,
        box: dict[str, Any] | None,
        ids: list[Any],
        selected: Any,
        token: str | None,
        request: gr.Request | None = None,
    ) -> dict[str, Any]:
        """Attach search results to the next chat message: the clicked result, else the top results."""
        box = box if isinstance(box, dict) else {}
        ids = list(ids or [])
        chosen = [selected] if selected and list(selected) in [list(i) for i in ids] else ids
        found = self.asker.found(chosen, token, self.settings.max_images_per_turn)
        if not found.shown:
            gr.Warning(say(request, "ask.add_none"))
            return {"text": box.get("text") or "", "files": box.get("files") or []}
        gr.Info(say(request, "ask.added", n=len(found.shown)))
        files = [*(box.get("files") or []), *(s.path for s in found.shown)]
        return {"text": box.get("text") or "", "files": files}

    def stop_answer(self, request: gr.Request) -> None:
        """Stop this session's answer about the results (what came is kept)."""
        self._stop(request, "answer")

    def stop_each(self, request: gr.Request) -> None:
        """Stop this session's Ask every image (the rows answered are kept, and go into the CSV)."""
        self._stop(request, "each")

    def empty_table(self, request: gr.Request | None = None) -> Any:
        return self._table([], request)

    def end_session(self, request: gr.Request) -> None:
        self._stop(request, "answer")
        self._stop(request, "each")
        remove_tree(self.outputs, session(request))

    # --- shared steps ---

    def _begin(self, request: gr.Request | None, kind: str) -> threading.Event:
        key = f"{session(request)}:{kind}"
        if (running := self.stops.get(key)) is not None:
            running.set()  # one of each kind per session at a time: a new one ends the last
        flag = self.stops[key] = threading.Event()
        return flag

    def _end(self, request: gr.Request | None, kind: str, flag: threading.Event) -> None:
        key = f"{session(request)}:{kind}"
        if self.stops.get(key) is flag:
            del self.stops[key]

    def _stop(self, request: gr.Request | None, kind: str) -> None:
        if (flag := self.stops.get(f"{session(request)}:{kind}")) is not None:
            flag.set()

    def _table(self, rows: list[EachRow], request: gr.Request | None) -> dict[str, Any]:
        data = [[r.image, r.question, r.answer] for r in rows]
        return table_value("ask.each_col", EACH_COLUMNS, data, request)

    def _folder(self, request: gr.Request | None) -> Any:
        folder = inside(self.outputs, session(request), uuid.uuid4().hex[:12])
        folder.mkdir(parents=True)
        return folder
