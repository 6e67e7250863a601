"""Search tab: find images by description or by example, in the shared library and your own uploads.

The library (the bundled gallery/ plus anything indexed with `python -m mmdemo index`) is shared
read-only. What a browser session uploads goes into a gallery of its own, under a random token
kept in that session's state: no other session can search it.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import threading
from typing import Any

import gradio as gr

from mmdemo import hosting
from mmdemo.config import Settings
from mmdemo.errors import UserFacingError
from mmdemo.search.galleries import Galleries, session_gallery
from mmdemo.search.store import Hit
from mmdemo.search.uploads import discard, expand_uploads
from mmdemo.ui.common import friendly_errors, upload_path
from mmdemo.ui.serve import clip_queue

log = logging.getLogger(__name__)

Shown = tuple[list[tuple[str, str]], list[list[Any]], list[tuple[str, int]], None]  # gallery, table, ids, selection


def results(hits: list[tuple[str, Hit]]) -> tuple[list[tuple[str, str]], list[list[Any]]]:
    """(thumbnail, "score · name") pairs and table rows (rank, score, name, gallery) for tagged hits."""
    shown = [(hit.item.thumb, f"{hit.score:.3f} · {hit.item.name}") for _, hit in hits]
    table = [[rank, round(hit.score, 4), hit.item.name, source] for rank, (source, hit) in enumerate(hits, 1)]
    return shown, table


class SearchTab:
    """The Search tab: `render` lays it out and wires the events; each event is a method."""

    def __init__(self, settings: Settings, galleries: Galleries) -> None:
        self.settings = settings
        self.galleries = galleries
        self.owners: dict[str, str] = {}  # session hash -> its private gallery's token
        # Model-running events, wrapped as bound methods (names and docstrings stay the API's).
        self.search = friendly_errors(hosting.gpu(duration=30)(self.search))
        self.index_images = friendly_errors(hosting.gpu(duration=120)(self.index_images))
        self.remove_selected = friendly_errors(self.remove_selected)
        if "clip" in settings.preload:  # index the bundled photos while the page loads
            threading.Thread(target=self._index_library, name="mmdemo-library", daemon=True).start()

    def _index_library(self) -> None:
        try:
            self.galleries.library(wait=True)
        except UserFacingError:
            pass  # CLIP could not be loaded: the manager logged why, and searches will say it
        except Exception:  # a background thread: nobody else would see it
            log.exception("indexing the bundled photos failed")

    def render(self, app: gr.Blocks) -> None:
        """Lay out the tab and wire its events (inside a `gr.Tab`)."""
        # The session's gallery token. The gallery is deleted when the tab closes (unload), or, for
        # API clients that never say goodbye, when Gradio expires the session's state.
        token = gr.State(None, delete_callback=lambda t: t and self.galleries.drop(session_gallery(t)))
        result_ids = gr.State([])
        selected = gr.State(None)  # the clicked result's (gallery, image id): never an index into newer results
        with gr.Row():
            with gr.Column(scale=4):
                query = gr.Textbox(label="Describe what you are looking for", placeholder="a dog on the beach")
                with gr.Row():
                    top_k = gr.Slider(1, 48, value=12, step=1, label="Results")
                    min_score = gr.Slider(-1.0, 1.0, value=-1.0, step=0.01, label="Minimum score")
            query_image = gr.Image(
                type="filepath", label="…or search by example image", height=160, scale=1, elem_id="search-query-image"
            )
        go = gr.Button("Search", variant="primary")
        found = gr.Gallery(label="Results", columns=4, height="auto", object_fit="contain", elem_id="search-results")
        table = gr.Dataframe(headers=["rank", "score", "name", "gallery"], label="Scores", elem_id="search-table")
        with gr.Accordion("Add your own images (visible to you only)", open=False):
            # No file_types filter: gradio would reject the whole batch for one bad file; ours skips it.
            uploads = gr.File(file_count="multiple", label="Images or .zip archives", elem_id="search-uploads")
            with gr.Row():
                add = gr.Button("Add to my gallery")
                remove = gr.Button("Remove selected result")
            report = gr.Markdown(elem_id="search-report")

        queue = clip_queue(self.settings)
        inputs, outputs = [query, query_image, top_k, min_score, token], [found, table, result_ids, selected]
        go.click(self.search, inputs, outputs, api_name="search", preprocess=False, **queue)
        query.submit(self.search, inputs, outputs, api_visibility="private", preprocess=False, **queue)
        add.click(self.index_images, [uploads, token], [report, token], api_name="index_images", **queue)
        found.select(self.select_result, result_ids, selected, api_visibility="private")
        remove.click(self.remove_selected, [selected, result_ids, token], report, api_name="remove_selected")
        app.unload(self.end_session)

    def search(
        self, query: str, query_image: dict[str, Any] | str | None, top_k: float, min_score: float, token: str | None
    ) -> Shown:
        """Images matching a description (or, when an image is given, looking like it).

        Returns (thumbnail, "score · name") pairs, a table of rank / score / name / gallery, and
        the results' ids (kept for "Remove selected").
        """
        library = self.galleries.library()
        mine = self.galleries.get(session_gallery(token)) if token else None
        if self.galleries.indexing_library():
            gr.Info(f"The shared library is still being indexed: searching its first {len(library)} image(s).")
        if len(library) + len(mine or ()) == 0:
            gr.Warning("The gallery is empty: add some images first.")
            return [], [], [], None
        k, floor = int(top_k), float(min_score)
        # One query vector for every gallery: they share the CLIP model.
        vector = library.query_vector(query, upload_path(query_image) if query_image else None)
        tagged = [("shared", h) for h in library.search_vector(vector, k, floor)]
        tagged += [("yours", h) for h in mine.search_vector(vector, k, floor)] if mine else []
        hits = sorted(tagged, key=lambda t: t[1].score, reverse=True)[:k]
        if not hits:
            gr.Info(f"No image scores {floor:.2f} or more; lower the minimum score.")
        shown, table = results(hits)
        # New results: any earlier selection is dropped, so Remove cannot hit an image no longer shown.
        return shown, table, [(source, hit.item.id) for source, hit in hits], None

    def index_images(
        self, files: list[Any] | None, token: str | None, request: gr.Request, progress: gr.Progress = gr.Progress()
    ) -> tuple[str, str | None]:
        """Add uploaded images (or .zip archives of images) to this session's private gallery."""
        settings = self.settings
        paths = [f if isinstance(f, str) else f.name for f in files or []]
        if not paths:
            return "Choose some images (or a .zip of images) to add first.", token
        token = token or secrets.token_hex(16)
        if request is not None and request.session_hash:
            self.owners[request.session_hash] = token
        # Archives unpack outside the served folders, and go once indexed, like the uploads
        # themselves: what is kept is the index and thumbnails of this session's gallery.
        workdir = settings.data_dir / "uploads" / token / secrets.token_hex(4)  # one per request
        try:
            found, unpacked_skips = expand_uploads(
                paths, workdir, settings.max_images_per_upload, settings.max_zip_mb * 1_000_000,
                settings.max_zip_members,
            )  # fmt: skip
            progress((0, len(found)), desc="indexing")
            mine = self.galleries.get(session_gallery(token))
            report = mine.add_files(found, lambda c: progress((c.done, c.total), desc=c.describe()))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            with contextlib.suppress(OSError):  # the session's folder, once no request uses it
                workdir.parent.rmdir()
            discard(paths)
        text = report.summary() + "".join(f"\n- skipped **{s.name}**: {s.reason}" for s in unpacked_skips)
        return f"{text}\n\nYour gallery holds {len(mine)} image(s).", token

    def remove_selected(self, selected: tuple[str, int] | None, ids: list[tuple[str, int]], token: str | None) -> str:
        """Remove the selected result from your gallery (shared images cannot be removed)."""
        if not selected or tuple(selected) not in {tuple(i) for i in ids or []}:
            return "Click one of the results first."
        source, item_id = selected
        if source != "yours" or not token:
            return "That image is in the shared library: only your own uploads can be removed."
        removed = self.galleries.get(session_gallery(token)).remove([item_id])
        return f"Removed {removed} image. Search again to refresh the results."

    def select_result(self, ids: list[tuple[str, int]], evt: gr.SelectData) -> tuple[str, int] | None:
        """Remember which image was clicked (its gallery and id, not its place in the results)."""
        index = int(evt.index)
        return tuple(ids[index]) if 0 <= index < len(ids or []) else None

    def end_session(self, request: gr.Request) -> None:
        """The tab closed: drop its private gallery."""
        if (mine := self.owners.pop(request.session_hash or "", None)) is not None:
            self.galleries.drop(session_gallery(mine))


def build(settings: Settings, galleries: Galleries, app: gr.Blocks) -> None:
    """Add the search components and events to the current Blocks."""
    SearchTab(settings, galleries).render(app)
