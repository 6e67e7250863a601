"""The clicked search result at full size, under the Search tab: the original image (library files where
they were indexed, uploads as kept for the session) labelled with when, with what and where it was taken,
the text read from it with its boxes drawn, and a copy button for that text."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import gradio as gr

from mmdemo.config import Settings
from mmdemo.embedding.images import BadImageError, open_image
from mmdemo.photos.facts import exact_places, said
from mmdemo.search.galleries import LIBRARY, Galleries, session_gallery
from mmdemo.search.originals import Originals
from mmdemo.search.store import Item
from mmdemo.serving.media import base_url, media_url
from mmdemo.text.view import draw_boxes
from mmdemo.ui.i18n import language, say, t
from mmdemo.ui.search_results import shown_name


class FullSize:
    """The full-size view: `render` lays it out and wires the click on a result; `item` finds a result's image."""

    def __init__(self, settings: Settings, galleries: Galleries, originals: Originals) -> None:
        self.settings, self.galleries, self.originals = settings, galleries, originals
        self.media = settings.data_dir / "media"  # what /media/ URLs name (mmdemo.serving.media)

    def render(self, found: gr.Gallery, result_ids: gr.State, selected: gr.State, token: gr.State) -> None:
        player = gr.HTML(visible=False, elem_id="search-player")  # a video's moment plays from its second
        full = gr.Image(
            label=t("search.full_size"), type="pil", interactive=False, visible=False, elem_id="search-full"
        )
        words = gr.Textbox(
            label=t("search.text_read"),
            buttons=["copy"],
            interactive=False,
            visible=False,
            lines=2,
            max_lines=12,
            elem_id="search-text-read",
        )
        outputs = [selected, player, full, words]
        found.select(self.select_result, [result_ids, token], outputs, api_visibility="private")

    def item(self, selected: tuple[str, int] | None, token: str | None) -> Item | None:
        """The image of a result (its gallery tag and id), if it is still indexed."""
        if not selected:
            return None
        source, item_id = selected
        if source == "shared":
            return self.galleries.library().store.item(item_id)
        return self.galleries.get(session_gallery(token)).store.item(item_id) if token else None

    def select_result(
        self, ids: list[tuple[str, int]], token: str | None, evt: gr.SelectData, request: gr.Request | None = None
    ) -> tuple[Any, Any, Any, Any]:
        """Remember which image was clicked (its gallery and id, not its place in the results), and
        show it at full size with the text read from it."""
        index = int(evt.index)
        selected = (str(ids[index][0]), int(ids[index][1])) if 0 <= index < len(ids or []) else None
        item = self.item(selected, token)
        if item is None or selected is None:
            return selected, gr.HTML(visible=False), gr.Image(visible=False), gr.Textbox(visible=False)
        player = gr.HTML(self._player(item, selected[0], token, request), visible=True) if item.moment else None
        path = self._original(item, selected[0], token)
        try:
            image = open_image(path, self.settings.max_image_pixels, item.name)
        except BadImageError:  # the source moved or changed since: the thumbnail still shows it
            image = open_image(item.thumb, self.settings.max_image_pixels, item.name)
        gallery = LIBRARY if selected[0] == "shared" else session_gallery(token or "")
        label = " · ".join(
            part
            for part in (
                f"{shown_name(item)} · {image.width}×{image.height}"
                + (say(request, "search.thumbnail") if path == item.thumb and not item.moment else ""),
                self._facts(gallery, selected[0], item, request),
            )
            if part
        )
        player = player or gr.HTML(visible=False)
        reading = self.galleries.text.reading(gallery, item.hash) if self.galleries.text else None
        if reading is None or not reading.lines:
            said = say(request, "search.text_none" if reading is not None else "search.text_unread")
            return selected, player, gr.Image(image, label=label, visible=True), gr.Textbox(said, visible=True)
        boxed = draw_boxes(image, [list(line.box) for line in reading.lines], item.width or image.width)
        return selected, player, gr.Image(boxed, label=label, visible=True), gr.Textbox(reading.text, visible=True)

    def _player(self, item: Item, source: str, token: str | None, request: gr.Request | None) -> str:
        """A video element playing the moment's video from its start (a media fragment: #t=start,end)."""
        store = (
            self.galleries.library().store
            if source == "shared"
            else self.galleries.get(session_gallery(token or "")).store
        )
        url = media_url(base_url(request, self.settings.root_path), str(store.video_path(item.video)), self.media)
        start, end = f"{item.start:.3f}", f"{item.end:.3f}"
        return (
            f'<video src="{html.escape(url)}#t={start},{end}" data-start="{start}" controls autoplay muted playsinline'
            ' preload="auto" style="width: 100%; max-height: 480px"></video>'
        )

    def _facts(self, gallery: str, source: str, item: Item, request: gr.Request | None) -> str:
        """When, with what and where it was taken (the exact place only where allowed: mmdemo.photos.facts)."""
        photos = self.galleries.photos
        facts = photos.facts(gallery, item.hash) if photos else None
        return said(facts, language(request), exact_places(source, self.settings.library_places)).line()

    def _original(self, item: Item, source: str, token: str | None) -> str:
        """The best file to show `item` from: its indexed source (library), the kept upload (yours),
        else its thumbnail. Only files recorded for an indexed item are ever opened."""
        if item.moment:  # a video's moment: its keyframe (the video plays above it)
            return item.thumb
        if source == "shared" and item.source and Path(item.source).is_file():
            return item.source
        if source == "yours" and token and (kept := self.originals.find(session_gallery(token), item)):
            return kept
        return item.thumb
