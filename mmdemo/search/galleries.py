"""The galleries a running app serves: the shared library and one private gallery per session."""

from __future__ import annotations

import shutil
import threading

from mmdemo.config import Settings
from mmdemo.models.manager import ModelManager
from mmdemo.search.gallery import Gallery, open_store
from mmdemo.search.store import GalleryStore
from mmdemo.vectorcache import VectorCache

LIBRARY = "library"


def session_gallery(token: str) -> str:
    """The name of a session's private gallery (its token is a secret: it is also in the URLs)."""
    if not token.isalnum():
        raise ValueError("a session token is alphanumeric")
    return f"sessions/{token}"


class Galleries:
    """Open stores by folder (opened once, shared by requests) and Gallery views over them."""

    def __init__(self, settings: Settings, manager: ModelManager):
        self.settings, self.manager = settings, manager
        self.cache = VectorCache(settings.data_dir / "embeddings.sqlite3")
        self._stores: dict[tuple[str, str], GalleryStore] = {}
        self._lock = threading.Lock()
        self._library_synced = False

    def get(self, name: str) -> Gallery:
        """The gallery `name` over the current CLIP model (the store outlives model reloads)."""
        clip = self.manager.get("clip")
        with self._lock:
            key = (clip.weights_key, name)
            if key not in self._stores:
                self._stores[key] = open_store(self.settings.data_dir, clip, name, self.settings.ann_threshold)
            store = self._stores[key]
        return Gallery(clip, store, self.cache, self.settings.max_image_pixels, self.settings.index_commit_every)

    def drop(self, name: str) -> None:
        """Delete gallery `name` for every model: its index, metadata and thumbnails."""
        with self._lock:
            for key in [k for k in self._stores if k[1] == name]:
                self._stores.pop(key).close()
        galleries = self.settings.data_dir / "galleries"
        for root in [*galleries.glob(f"*/{name}"), *galleries.glob(f"unsaved/*/{name}")]:
            shutil.rmtree(root, ignore_errors=True)

    def library(self) -> Gallery:
        """The shared gallery; the bundled photos are indexed into it once (then cost a hash each)."""
        gallery = self.get(LIBRARY)
        with self._lock:
            if not self._library_synced and self.settings.gallery_dir.is_dir():
                gallery.add_folder(self.settings.gallery_dir)
            self._library_synced = True
        return gallery
