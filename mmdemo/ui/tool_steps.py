"""The steps the machine-client tools share (mmdemo.ui.tools): image URLs, searches, collections, fetching,
an indexed image's text."""

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr

from mmdemo.config import Settings
from mmdemo.errors import UserFacingError
from mmdemo.files import inside, remove_tree
from mmdemo.search.galleries import LIBRARY, Galleries, read_query, session_gallery
from mmdemo.search.stages import source_of
from mmdemo.search.store import Hit
from mmdemo.serving.fetch import Fetched, fetch_image
from mmdemo.serving.media import base_url, media_url
from mmdemo.text.store import Reading
from mmdemo.ui.common import number, text_input
from mmdemo.ui.fairness import client_id
from mmdemo.ui.i18n import language
from mmdemo.ui.search_results import facts_of

TOP_K_MAX = 48


class ToolSteps:
    """What every tool does the same way; the tools' class sets these attributes."""

    settings: Settings
    galleries: Galleries
    downloads: Path  # fetched images, a folder per call, removed after it
    media: Path  # where thumbnails live: what /media/... URLs name

    def _url(self, request: gr.Request | None, thumb: str) -> str:
        """A thumbnail's /media/ URL as this client reaches the app."""
        return media_url(base_url(request, self.settings.root_path), thumb, self.media)

    def _search(
        self, query: str, image: str, top_k: int, collection: str, request: gr.Request | None
    ) -> list[tuple[str, Hit]]:
        """The hits of a search in words or by an example image (fetched), in the library and the collection."""
        k = int(number(top_k, 1, TOP_K_MAX, "top_k"))
        query = read_query(text_input(query, "query"), self.settings.max_query_chars)
        token = self._collection(collection, request) if collection else None
        with self._fetched([image] if text_input(image, "image") else []) as fetched:
            path = str(fetched[0].path) if fetched else None
            return self.galleries.search(query, path, k, -1.0, token)

    def _about(self, source: str, hit: Hit, collection: str, request: gr.Request | None) -> list[str]:
        """What a result line says of a hit besides its score: its facts (`_facts`), and for a video's moment
        the playable video's URL and the moment's seconds (a client plays it from there)."""
        item = hit.item
        if not item.moment:
            return self._facts(source, hit, request)
        token = self._token(collection, request) if source == "yours" else None
        gallery = self.galleries.library() if token is None else self.galleries.get(session_gallery(token))
        url = self._url(request, str(gallery.store.video_path(item.video)))
        return [*self._facts(source, hit, request), f"video {url}", f"from {item.start:.1f} s to {item.end:.1f} s"]

    def _facts(self, source: str, hit: Hit, request: gr.Request | None) -> list[str]:
        """When, with what camera and where a hit was taken, as shown (exact places in a collection only)."""
        said = facts_of(source, hit, language(request), self.settings.library_places)
        return [part for part in (said.taken, said.camera, said.place) if part]

    def _token(self, collection: str, request: gr.Request | None) -> str | None:
        """The collection's token when one is given (checked), else None."""
        return self._collection(collection, request) if text_input(collection, "collection").strip() else None

    def _collection(self, token: str, request: gr.Request | None, create: bool = False) -> str:
        """A known collection's token (marked used now), or with `create` and no token a new one of this client's."""
        token = text_input(token, "collection").strip()
        if not token and create:
            return self.galleries.new_private("agent", client_id(request))
        if not token or not self.galleries.private.touch(token):
            raise UserFacingError(key="tools.unknown_collection", hours=f"{self.settings.gallery_idle_hours:g}")
        return token

    @contextmanager
    def _fetched(self, sources: list[str]) -> Iterator[list[Fetched]]:
        """The sources fetched into a folder of this call's, removed afterwards."""
        folder = inside(self.downloads, secrets.token_hex(8))
        limit, allowed = self.settings.max_upload_mb * 1_000_000, self.settings.url_allowed_hosts
        try:
            yield [fetch_image(source, folder, limit, allowed) for source in sources]
        finally:
            remove_tree(self.downloads, folder.relative_to(self.downloads.resolve()))

    def _indexed_reading(self, item_id: int, collection: str, request: gr.Request | None) -> tuple[Reading, str]:
        """The stored reading of an indexed image (read now if its turn has not come yet)."""
        name = session_gallery(self._collection(collection, request)) if collection.strip() else LIBRARY
        gallery = self.galleries.library() if name == LIBRARY else self.galleries.get(name)
        item = gallery.store.item(item_id)
        if item is None:
            raise UserFacingError(key="ocr.not_indexed", id=item_id)
        reader = self.galleries.text
        assert reader is not None  # checked by read_text
        reading = reader.reading(name, item.hash)
        if reading is None:
            reader.read(name, [source_of(item)])
            reading = reader.reading(name, item.hash) or Reading(item.hash)
        return reading, item.name
