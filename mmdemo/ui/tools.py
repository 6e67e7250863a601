"""Tools for machine clients: the app's features as functions an MCP agent (or a script) can call.

The tabs' events take what a page sends (Gradio's message structures, browser state); these take
plain text — a question, labels, image URLs or data URIs — and answer text an agent can read:
names, scores, and URLs of the images it can fetch. They are the app's MCP tools (`--mcp`) and
API endpoints (`/search_images`, ...). Each argument is described in its docstring's Args, which
Gradio turns into the tool's schema.

An MCP server is stateless here and Gradio calls the tools through one loopback client, so there
is no browser session to keep an agent's images in: `add_images` returns a **collection token**
(a secret, like a private gallery's) that the agent passes back to the other tools. Collections are
private galleries (mmdemo.search.private): known to every replica of the data dir and across restarts,
capped per client and in total, and deleted when unused for MMDEMO_GALLERY_IDLE_HOURS. The URLs the
tools answer are /media/... (mmdemo.serving.media): never a token or a server path. Annotations are real
types here (no `from __future__ import annotations`): gr.api reads them.
"""

import csv
import dataclasses
import io
import json
import threading
from collections.abc import Callable
from typing import Any

import gradio as gr

from mmdemo.ask.about import answer, ask_history, read_question
from mmdemo.ask.each import ask_each, read_questions
from mmdemo.ask.service import PhotoAsker
from mmdemo.chat.media import check_attachments
from mmdemo.chat.pipeline import AnswerOptions, ChatBackend, GenerationParams
from mmdemo.chat.prompt import PATCH_AREA, ImageBudget, to_qwen_messages
from mmdemo.classify.batch import classify_files
from mmdemo.classify.templates import CUSTOM, DEFAULT_TEMPLATE, templates_for_labels
from mmdemo.classify.zeroshot import parse_labels
from mmdemo.config import Settings
from mmdemo.embedding.ingest import ImageFile
from mmdemo.embedding.vectorcache import embedding_cache
from mmdemo.errors import UserFacingError
from mmdemo.models.manager import ModelManager
from mmdemo.models.registry import resolve
from mmdemo.photos.filters import described
from mmdemo.search.galleries import Galleries, read_query, session_gallery
from mmdemo.search.private import within_cap
from mmdemo.search.stages import Source
from mmdemo.serving import hosting, metrics
from mmdemo.ui.ask import rerank_said
from mmdemo.ui.common import friendly_errors, measured, number, text_input, videos_said
from mmdemo.ui.fairness import reroute
from mmdemo.ui.i18n import language, say
from mmdemo.ui.serve import chat_queue, clip_queue
from mmdemo.ui.tool_steps import TOP_K_MAX, ToolSteps

MCP_TOOLS = (
    "search_images",
    "ask_image",
    "ask_results",
    "ask_each",
    "classify_image",
    "add_images",
    "list_images",
    "delete_images",
    "read_text",
)
ASK_MAX_PIXELS = 512 * PATCH_AREA  # images an agent sends are asked about at the CPU chat's default size


class AgentTools(ToolSteps):
    """The machine-client tools: `render` registers them (inside the Blocks), each tool is a method."""

    def __init__(
        self, settings: Settings, manager: ModelManager, galleries: Galleries, backend: ChatBackend, asker: PhotoAsker
    ) -> None:
        self.settings, self.manager, self.galleries, self.backend = settings, manager, galleries, backend
        self.asker = asker
        self.cache = embedding_cache(settings)
        self.downloads = settings.data_dir / "downloads"  # fetched images, a folder per call, removed after it
        self.media = settings.data_dir / "media"  # where thumbnails live: what /media/... URLs name

    def render(self) -> None:
        """Register the tools as API endpoints (and MCP tools, when the app serves MCP)."""
        clip, chat = clip_queue(self.settings), chat_queue(self.settings)
        # (tool, its queue, seconds of ZeroGPU time, the feature its requests count as)
        tools: list[tuple[Callable[..., Any], dict[str, Any], int, str]] = [
            (self.search_images, clip, 30, "search"),
            (self.ask_image, chat, 120, "ask"),
            (self.ask_results, chat, 120, "ask"),
            (self.ask_each, chat, 120, "ask"),
            (self.classify_image, clip, 60, "classify"),
            (self.add_images, clip, 120, "index"),
            (self.list_images, {}, 0, "images"),
            (self.delete_images, {}, 0, "images"),
            (self.read_text, clip, 30, "read_text"),
        ]
        for tool, queue, gpu_seconds, feature in tools:
            fn = hosting.gpu(duration=gpu_seconds)(tool) if gpu_seconds else tool
            event = gr.api(friendly_errors(measured(feature, fn)), api_name=tool.__name__, **queue)
            if tool == self.search_images:
                # Asked to re-rank, a search is chat-model work: queued as this twin, in the chat's queue.
                twin = gr.api(
                    friendly_errors(measured(feature, fn)), api_name="search_reranked", api_visibility="private", **chat
                )
                reroute(event, twin, lambda data: float(data[4] or 0) > 0)

    # --- the tools ---

    def search_images(
        self,
        query: str = "",
        image: str = "",
        top_k: int = 8,
        collection: str = "",
        rerank: int = 0,
        request: gr.Request | None = None,
    ) -> str:
        """Find images by a description in words, or by an example image, in the shared photo library
        (and in your collection).

        Args:
            query: what to look for in words, e.g. "a dog on a beach", and filters if wanted (taken:2019,
                after:2019-06-01, before:2020-01-01, place:paris, camera:fuji, has:gps, has:text, folder:trips).
            image: an example image, as an http(s) URL or a data:image/...;base64 URI. Leave empty to search by `query`.
            top_k: how many results to return, 1 to 48.
            collection: the token add_images returned, to search your own images too ('' for the library only).
            rerank: re-rank the top this many results of a search in words with the chat model (0 = off; slower).
        Returns:
            One line per result, best first: rank, score (cosine, -1 to 1; after a re-rank also the chat model's
            P(yes) and the CLIP rank), name, where it is, its id, the text read in it that matched the query
            (its words between « »), when, with what camera and where it was taken, for a video's moment the
            video's URL and its seconds, and last an image URL (a moment's: its keyframe).
        """
        query = read_query(text_input(query, "query"), self.settings.max_query_chars)
        rerank_k = int(number(rerank, 0, TOP_K_MAX, "rerank"))
        hits = self._search(query, image, top_k, collection, request)
        if not hits:
            return say(request, "tools.no_results")
        clip_ranks, yes = list(range(1, len(hits) + 1)), list[float | None]([None] * len(hits))
        notes: list[str] = []
        if rerank_k and described(query).strip() and not image:
            outcome = self.asker.rerank(query, hits, rerank_k)
            hits, clip_ranks, yes = outcome.hits, outcome.clip_ranks, outcome.yes
            notes.append(rerank_said(request, outcome.run))
        where = {"shared": "library", "yours": "collection"}
        return "\n".join(
            [
                f"{rank}. score {hit.score:.3f}"
                + ("" if p is None else f" · P(yes) {p:.3f} · CLIP rank {clip}")
                + f" · {hit.item.name} · {where[source]} · id {hit.item.id}"
                + (f" · text {hit.matched}" if hit.matched else "")
                + "".join(f" · {part}" for part in self._about(source, hit, collection, request))
                + f" · {self._url(request, hit.item.thumb)}"
                for rank, ((source, hit), clip, p) in enumerate(zip(hits, clip_ranks, yes, strict=True), 1)
            ]
            + notes
        )

    def ask_results(
        self,
        question: str,
        query: str,
        top_k: int = 8,
        rerank: int = 0,
        collection: str = "",
        request: gr.Request | None = None,
    ) -> str:
        """Search your photos in words, then ask the vision-language model one question about the top results.

        Args:
            question: the question about the results, e.g. "Which of these were taken at night?".
            query: what to search for, in words, e.g. "a dog on a beach".
            top_k: how many of the top results the model looks at, 1 to MMDEMO_ASK_MAX_IMAGES (8 by default).
            rerank: re-rank the top this many search results with the chat model first (0 = off).
            collection: the token add_images returned, to include your own images ('' for the library only).
        Returns:
            The answer, which cites results by their number, e.g. [2]; then a line per result: number, name, URL.
        """
        question = read_question(text_input(question, "question"), self.settings.max_prompt_chars)
        query = read_query(text_input(query, "query"), self.settings.max_query_chars)
        k = int(number(top_k, 1, self.settings.ask_max_images, "top_k"))
        rerank_k = int(number(rerank, 0, TOP_K_MAX, "rerank"))
        hits = self._search(query, "", max(k, rerank_k), collection, request)
        if rerank_k and hits and described(query).strip():
            hits = self.asker.rerank(query, hits, rerank_k).hits
        hits = hits[:k]
        if not hits:
            return say(request, "tools.no_results")
        shown = self.asker.shown_hits(hits, self._token(collection, request))
        params = GenerationParams(min(512, self.settings.max_new_tokens), greedy=True)
        history, limit = ask_history(shown, question), self.settings.max_context_tokens
        text = answer(self.backend, history, self.asker.budget, params, threading.Event(), limit)
        return text.strip() + "\n\n" + "\n".join(f"[{s.rank}] {s.name} · {self._url(request, s.path)}" for s in shown)

    def ask_each(
        self, questions: str, query: str = "", top_k: int = 8, collection: str = "", request: gr.Request | None = None
    ) -> str:
        """Ask one or more questions of every image: the top results of a search, or (no query) your whole collection.

        Args:
            questions: the questions, one per line, e.g. "Is it outdoors?\nHow many people are there?".
            query: what to search for, in words ('' to ask over every image of `collection`).
            top_k: how many of the top search results to ask about, 1 to 48.
            collection: the token add_images returned (needed when query is '').
        Returns:
            A CSV table with the columns image, question, answer: one row per image and question.
        """
        settings = self.settings
        asked = read_questions(text_input(questions, "questions"), settings.ask_each_max, settings.max_prompt_chars)
        if read_query(text_input(query, "query"), settings.max_query_chars).strip():
            hits = self._search(query, "", top_k, collection, request)
            images = self.asker.shown_hits(hits, self._token(collection, request))
        else:
            images = self.asker.yours(self._collection(collection, request))
        if not images:
            return say(request, "tools.no_results")
        if (total := len(images) * len(asked)) > self.settings.ask_each_max:
            raise UserFacingError(key="ask.each_too_many", n=total, limit=self.settings.ask_each_max)
        params = GenerationParams(min(128, self.settings.max_new_tokens), greedy=True)
        budget, limit = self.asker.budget, settings.max_context_tokens
        rows = ask_each(self.backend, images, asked, budget, params, threading.Event(), limit)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["image", "question", "answer"])
        writer.writerows([row.image, row.question, row.answer.strip()] for row in rows)
        return out.getvalue()

    def ask_image(self, question: str, image: str, max_new_tokens: int = 128, request: gr.Request | None = None) -> str:
        """Ask the vision-language model a question about one image.

        Args:
            question: the question, e.g. "What is in this picture?".
            image: the image: an http(s) URL or a data URI (data:image/png;base64,...).
            max_new_tokens: the longest answer, in tokens (1 to the server's limit).
        Returns:
            The model's answer, as text.
        """
        question = text_input(question, "question").strip()
        if not question or len(question) > self.settings.max_prompt_chars:
            raise UserFacingError(
                key="chat.message_too_long" if question else "chat.empty",
                n=len(question),
                limit=self.settings.max_prompt_chars,
            )
        params = GenerationParams(
            int(number(max_new_tokens, 1, self.settings.max_new_tokens, "max_new_tokens")), greedy=True
        )
        budget = ImageBudget(max_pixels=ASK_MAX_PIXELS, max_file_pixels=self.settings.max_image_pixels)
        with self._fetched([text_input(image, "image")]) as fetched:
            files, skipped = check_attachments([str(fetched[0].path)], budget.max_file_pixels, budget.max_pixels, 2)
            if skipped:
                raise UserFacingError(key="tools.unreadable", reason=skipped[0].said(language(request)))
            history: list[dict[str, Any]] = [
                {"role": "user", "content": {"path": files[0]}},
                {"role": "user", "content": question},
            ]
            prepared = self.backend.prepare(to_qwen_messages(history, budget, ""), self.settings.max_context_tokens)
            options = AnswerOptions(params, min_interval=1.0)
            stream = self.backend.stream(prepared, options)
            answer = ""
            for partial in stream:  # each is the answer so far
                answer = partial
            metrics.record_answer(options.stats.new_tokens, options.stats.decode_seconds)
        return answer.strip()

    def classify_image(self, image: str, labels: str, top_k: int = 5, request: gr.Request | None = None) -> str:
        """Zero-shot classify one image against labels you give (CLIP): which label fits best.

        Args:
            image: the image: an http(s) URL or a data URI (data:image/png;base64,...).
            labels: the candidate labels, comma-separated or one per line, e.g. "cat, dog, car" (at least two).
            top_k: how many of the best labels to return, 1 to 20.
        Returns:
            One line per label, best first: the label and its score (0 to 1).
        """
        k = int(number(top_k, 1, 20, "top_k"))
        lang = language(request)
        parsed, _ = parse_labels(
            text_input(labels, "labels"), self.settings.max_labels, self.settings.max_label_chars, lang
        )
        multilingual = resolve(self.manager.resolve_id("clip")).multilingual
        templates, _ = templates_for_labels(CUSTOM, DEFAULT_TEMPLATE, parsed, multilingual)
        with self._fetched([text_input(image, "image")]) as fetched:
            files = [ImageFile(str(f.path), f.name) for f in fetched]
            result = classify_files(
                self.manager.get("clip"), files, parsed, templates, self.settings.max_image_pixels, self.cache
            )
        if not result.predictions:
            raise UserFacingError(key="tools.unreadable", reason=result.skipped[0].said(lang))
        return "\n".join(f"{label}: {score:.3f}" for label, score in result.predictions[0][1].top_k(k))

    def add_images(self, images: list[str], collection: str = "", request: gr.Request | None = None) -> str:
        """Add images to your collection (a private gallery), so that search_images finds them.

        Args:
            images: the images: a list of http(s) URLs or data URIs (data:image/png;base64,...).
            collection: the token from an earlier add_images, to add to it ('' to start a new collection).
        Returns:
            What was added and skipped, and the collection token for search_images, list_images, delete_images.
        """
        if not isinstance(images, list) or not images:
            raise UserFacingError(key="tools.no_images")
        if len(images) > self.settings.max_images_per_upload:
            raise UserFacingError(key="upload.too_many", n=self.settings.max_images_per_upload)
        named = [(text_input(source, "images"), f"image {i}") for i, source in enumerate(images, 1)]
        token = self._collection(collection, request, create=True)
        gallery = self.galleries.get(session_gallery(token))
        room, over = within_cap(named, len(gallery), self.settings.max_images_per_gallery)
        with self._fetched([source for source, _ in room]) as fetched:
            report = gallery.add_files([ImageFile(str(f.path), f.name) for f in fetched], read_now=True)
        report = dataclasses.replace(report, skipped=(*report.skipped, *over))
        return (
            report.summary(language(request)) + "\n\n" + say(request, "tools.collection", token=token, n=len(gallery))
        )

    def read_text(self, image: str, collection: str = "", request: gr.Request | None = None) -> str:
        """Read the text in an image (OCR: Chinese and English): each line with its box and the model's confidence.

        Args:
            image: an http(s) URL, a data URI, or the id of an indexed image (as search_images and list_images show it).
            collection: the token add_images returned, when `image` is an id in your collection ('' for the library).
        Returns:
            JSON: {"image": its name, "text": all lines, "lines": [{"text", "box": four [x, y] corners in the
            image's pixels, "confidence": 0 to 1}]}, lines top to bottom.
        """
        reader = self.galleries.text
        if reader is None:
            raise UserFacingError(key="ocr.off")
        source = text_input(image, "image").strip()
        if source.isdigit():
            reading, name = self._indexed_reading(int(source), collection, request)
        else:
            with self._fetched([source]) as fetched:
                reading, name = reader.read_one(Source("", str(fetched[0].path))), fetched[0].name
        if reading.error:
            raise UserFacingError(key="tools.unreadable", reason=reading.error)
        lines = [line.as_dict() for line in reading.lines]
        return json.dumps({"image": name, "text": reading.text, "lines": lines}, ensure_ascii=False)

    def list_images(self, collection: str, request: gr.Request | None = None) -> str:
        """List the images in your collection.

        Args:
            collection: the collection token that add_images returned.
        Returns:
            One line per image: its id, name, size in bytes, and an image URL you can fetch; then the videos
            still being cut into moments, and the last ones cut.
        """
        name = session_gallery(self._collection(collection, request))
        items = self.galleries.get(name).store.items()
        lines = [f"{it.id} · {it.name} · {it.bytes} bytes · {self._url(request, it.thumb)}" for it in items]
        videos = videos_said(self.galleries.videos.state(name), request)
        return "\n".join(lines or [say(request, "search.mine_nothing")]) + (f"\n\n{videos}" if videos else "")

    def delete_images(self, collection: str, which: str = "all", request: gr.Request | None = None) -> str:
        """Delete images from your collection.

        Args:
            collection: the collection token that add_images returned.
            which: "all", or image ids or names, comma-separated (as list_images shows them).
        Returns:
            How many images were deleted and how many are left.
        """
        gallery = self.galleries.get(session_gallery(self._collection(collection, request)))
        wanted = {w.strip() for w in text_input(which, "which").split(",") if w.strip()}
        items = gallery.store.items()
        chosen = items if wanted == {"all"} else [it for it in items if it.name in wanted or str(it.id) in wanted]
        removed = gallery.remove([it.id for it in chosen])
        return say(request, "search.removed", n=removed, left=len(gallery))


def build(
    settings: Settings, manager: ModelManager, galleries: Galleries, backend: ChatBackend, asker: PhotoAsker
) -> None:
    """Register the machine-client tools in the current Blocks."""
    AgentTools(settings, manager, galleries, backend, asker).render()


def only_tools_for_mcp(app: gr.Blocks) -> None:
    """Keep every other endpoint (the tabs' events, the operators' ones) out of the MCP tools.

    Gradio lists every public endpoint as an MCP tool unless its function's `_mcp_type` says
    otherwise (docs/private-apis.md); the tabs' endpoints stay on the API page for scripts.
    """
    for block_fn in app.fns.values():
        if block_fn.fn is not None and block_fn.api_name not in MCP_TOOLS:
            target = getattr(block_fn.fn, "__func__", block_fn.fn)  # a bound method reads its function's attributes
            target._mcp_type = "api-only"  # type: ignore[union-attr]  # an attribute Gradio reads (gradio.mcp)
