"""The galleries a running app serves: the shared library and one private gallery per session."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from mmdemo.config import Settings
from mmdemo.embedding.ingest import Throughput
from mmdemo.embedding.vectorcache import embedding_cache
from mmdemo.errors import UserFacingError
from mmdemo.files import remove_tree
from mmdemo.models.manager import ModelManager
from mmdemo.photos.stage import PhotoStage
from mmdemo.search import stages
from mmdemo.search.filtering import Filtering
from mmdemo.search.gallery import Gallery, cutting_of, open_store
from mmdemo.search.private import Caps, PrivateRegistry, gallery_key
from mmdemo.search.ranking import Named, ranked
from mmdemo.search.stages import LIBRARY, source_of
from mmdemo.search.store import GalleryStore, Hit
from mmdemo.search.videoqueue import VideoQueue
from mmdemo.text.stage import TextStage

PRIVATE = "sessions"  # private galleries live in <model folder>/sessions/<key>
SWEEP_EVERY_S = 600.0
log = logging.getLogger(__name__)


def read_query(query: str, max_chars: int) -> str:
    """A search query as every use of it sees it (CLIP, a re-rank's chat model): refused beyond `max_chars`."""
    if len(query) > max_chars:
        raise UserFacingError(key="error.query_too_long", n=len(query), limit=max_chars)
    return query


def session_gallery(token: str) -> str:
    """The name of the private gallery with this token (named by its key: the token is a secret)."""
    return f"{PRIVATE}/{gallery_key(token)}"


class Galleries:
    """Open stores by folder (opened once, shared by requests; the least recently used closed beyond
    `open_galleries`), Gallery views over them, and the registry of private galleries."""

    def __init__(self, settings: Settings, manager: ModelManager):
        self.settings, self.manager = settings, manager
        self.cache = embedding_cache(settings)
        self._stores: OrderedDict[tuple[str, str], GalleryStore] = OrderedDict()
        self.stages = stages.build(settings)  # what indexing reads besides CLIP vectors (text, ...)
        self.text: TextStage | None = next((s for s in self.stages.stages if isinstance(s, TextStage)), None)
        self.photos: PhotoStage | None = next((s for s in self.stages.stages if isinstance(s, PhotoStage)), None)
        self.filtering = Filtering(self.photos, self.text)  # the query's filters, and each hit's facts
        self._backfilled: set[str] = set()  # galleries whose unread images were queued for the stages
        # Long videos, cut in the background one at a time, the clients taking turns.
        waiting = settings.data_dir / "waiting"
        self.videos = VideoQueue(waiting, self.get, settings.video_waiting_per_client, turn_of=self.client_of)
        caps = Caps(settings.max_galleries, settings.max_galleries_per_client, settings.gallery_idle_hours * 3600)
        self.private = PrivateRegistry(settings.data_dir, caps, self._remove_private)
        self._lock = threading.Lock()  # guards the dicts; never held while indexing
        self._sync_lock = threading.Lock()  # one sync of the bundled photos at a time
        self._synced: set[str] = set()  # CLIP weights whose library holds the bundled photos
        self._progress: Throughput | None = None  # of the sync under way
        self._pending = False  # a sync was asked for and its thread has not taken the lock yet
        self._synced_event = threading.Event()  # set whenever a sync ends
        # The bundled photos are indexed as soon as a CLIP is resident, not on the first search: the first
        # visitor of a new deployment would otherwise search an empty library.
        manager.on_load(self._model_loaded)

    def _model_loaded(self, model_id: str) -> None:
        if model_id == self.manager.resolve_id("clip") and self.settings.gallery_dir.is_dir():
            self._start_sync()

    def _start_sync(self) -> None:
        """Index the bundled photos on a thread of their own (indexing_library() is true from now on)."""
        with self._lock:
            if self._pending or self._sync_lock.locked():
                return
            self._pending = True
        threading.Thread(target=self._sync_quietly, name="mmdemo-library", daemon=True).start()

    def library_progress(self) -> Throughput | None:
        """How far the sync under way is (None when none is)."""
        return self._progress if self.indexing_library() else None

    def wait_library(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the sync under way to end; True when none is under way any more."""
        if not self.indexing_library():
            return True
        self._synced_event.clear()
        if not self.indexing_library():  # it ended between the two looks
            return True
        self._synced_event.wait(timeout)
        return not self.indexing_library()

    def get(self, name: str) -> Gallery:
        """The gallery `name` over the current CLIP model (the store outlives model reloads)."""
        clip = self.manager.get("clip")
        evicted: list[GalleryStore] = []
        with self._lock:
            key = (clip.weights_key, name)
            if key not in self._stores:
                self._stores[key] = open_store(self.settings.data_dir, clip, name, self.settings.ann_threshold)
            backfill = name not in self._backfilled
            self._backfilled.add(name)
            self._stores.move_to_end(key)
            store = self._stores[key]
            # The least recently used go first; the library stays (it is every search's, and costly to reload).
            spare = [k for k in self._stores if k[1] != LIBRARY and k != key]
            for old_key in spare[: max(len(self._stores) - max(self.settings.open_galleries, 1), 0)]:
                evicted.append(self._stores.pop(old_key))
        # Closed outside the lock (a store busy with another request finishes first). A request still
        # holding an evicted store reopens its files for as long as it needs them (GalleryStore.release).
        for old in evicted:
            old.release()
        if backfill and self.stages.stages:  # images indexed before a stage existed (or while it was off)
            self.stages.backfill(name, [source_of(it) for it in store.items()])
        if backfill:  # videos a stopped process left in line
            self.videos.resume(name)
        settings = self.settings
        gallery = Gallery(
            clip,
            store,
            self.cache,
            settings.max_image_pixels,
            settings.index_commit_every,
            settings.near_duplicates,
            cache_scope=name if name.startswith(f"{PRIVATE}/") else "",
            cutting=cutting_of(settings),
        )
        gallery.stages = lambda sources, now: self.stages.indexed(name, sources, now)
        gallery.videos, gallery.inline_video_s = self.videos.line(name), settings.video_inline_seconds
        return gallery

    def client_of(self, name: str) -> str:
        """Who gallery `name` belongs to, for the video line's turns: its maker (hashed), or the library."""
        folder, _, key = name.partition("/")
        return (self.private.owner(key) or name) if folder == PRIVATE else name

    def backlog(self) -> dict[str, int]:
        """What waits in the background, by kind: each stage's images not read yet, and the videos not cut yet."""
        waiting = {name: progress.total - progress.done for name, progress in self.stages.progress.items()}
        return {**waiting, "videos": self.videos.totals()[0]}

    def open_stores(self) -> int:
        """Stores held open now (each holds its database and lock file)."""
        return len(self._stores)

    def new_private(self, kind: str, client: str) -> str:
        """The token of a new private gallery of `client` ("page" uploads or an "agent" collection), within the caps."""
        return self.private.create(kind, client)

    def drop(self, name: str) -> None:
        """Delete gallery `name` for every model: its index, metadata, thumbnails and kept uploads (and, for a
        private gallery, its registry entry)."""
        folder, _, key = name.partition("/")
        if folder == PRIVATE:
            self.private.forget(key)
        self._remove(name)

    def _remove_private(self, key: str) -> None:
        self._remove(f"{PRIVATE}/{key}")

    def _remove(self, name: str) -> None:
        self.videos.forget(name)  # its videos waiting, and its cut under way stopped: first, or it could reopen it
        with self._lock:
            gone = [self._stores.pop(k) for k in [k for k in self._stores if k[1] == name]]
        for store in gone:
            store.release()
        galleries = self.settings.data_dir / "galleries"
        for root in [*galleries.glob(f"*/{name}"), *galleries.glob(f"unsaved/*/{name}")]:
            remove_tree(galleries, root.relative_to(galleries))
        self.stages.forget(name)  # what the stages read from its images
        self._backfilled.discard(name)
        folder, _, key = name.partition("/")
        if folder == PRIVATE:
            remove_tree(self.settings.data_dir / "media", "private", key)  # its thumbnails
            self.cache.forget(name)  # the vectors of its adds
        remove_tree(self.settings.data_dir / "originals", name)  # its kept uploads

    def private_folders(self) -> dict[str, float]:
        """Every private gallery's key found on disk, with the last change time of its folders."""
        data = self.settings.data_dir
        found: dict[str, float] = {}
        patterns = [
            (data / "galleries", f"*/{PRIVATE}/*"),
            (data / "galleries", f"unsaved/*/{PRIVATE}/*"),
            (data / "media", "private/*"),
            (data / "originals", f"{PRIVATE}/*"),
            (data / "readings", f"{PRIVATE}/*"),
            (data / "waiting", f"{PRIVATE}/*"),
        ]
        for root, pattern in patterns:
            for folder in root.glob(pattern) if root.is_dir() else ():
                try:
                    changed = folder.stat().st_mtime
                except OSError:  # removed meanwhile
                    continue
                found[folder.name] = max(found.get(folder.name, 0.0), changed)
        return found

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete private galleries unused for MMDEMO_GALLERY_IDLE_HOURS and folders no registry entry owns."""
        return self.private.sweep(self.private_folders, now)

    def start_sweeping(self, every_s: float = SWEEP_EVERY_S) -> None:
        """Sweep now and then every `every_s` seconds, on a daemon thread (each replica does; it is idempotent)."""

        def loop() -> None:
            while True:
                try:
                    self.sweep()
                except Exception:  # a background thread: nobody else would see it
                    log.exception("sweeping private galleries failed")
                time.sleep(every_s)

        threading.Thread(target=loop, name="mmdemo-sweep", daemon=True).start()

    def search(
        self, query: str, image: str | None, k: int, min_score: float, private: str | None = None
    ) -> list[tuple[str, Hit]]:
        """The best `k` images for a description (or, given an image's path, like it) in the library and
        in the private gallery `private` (a session's token), tagged "shared" or "yours", best first.

        A description is also looked for in the images' text (mmdemo.text.query), and the two rankings
        fused (mmdemo.search.fusion); each hit carries both scores and the text that matched."""
        library = self.library()
        if private:
            self.private.touch(private)  # in use: not swept while its visitor searches it
        named = [Named("shared", LIBRARY, library)]
        if private:
            named.append(Named("yours", session_gallery(private), self.get(session_gallery(private))))
        return ranked(named, self.text, query, image, k, min_score, self.filtering)

    def library(self, wait: bool = False) -> Gallery:
        """The shared gallery. The bundled photos are indexed into it once per CLIP weights (then
        cost a hash each): with `wait`, before returning; else in the background, while callers
        search what is committed so far."""
        gallery = self.get(LIBRARY)
        if self.settings.gallery_dir.is_dir() and gallery.clip.weights_key not in self._synced:
            if wait:
                self._sync(gallery)
            else:
                self._start_sync()
        return gallery

    def indexing_library(self) -> bool:
        """True while the bundled photos are being indexed into the library (or about to be)."""
        return self._pending or self._sync_lock.locked()

    def library_indexed(self) -> bool:
        """True once the bundled photos are in the library of the current CLIP weights (or there are none)."""
        if not self.settings.gallery_dir.is_dir():
            return True
        clip = self.manager.loaded("clip")
        return clip is not None and clip.weights_key in self._synced

    def _sync_quietly(self) -> None:
        try:
            self._sync(self.get(LIBRARY))
        except UserFacingError:  # CLIP could not be loaded: the manager logged why, and searches will say it
            pass
        except Exception:  # a background thread: nobody else would see it
            log.exception("indexing the bundled photos into the library failed")
        finally:
            self._pending = False
            self._synced_event.set()

    def _sync(self, gallery: Gallery) -> None:
        with self._sync_lock:
            self._pending = False
            try:
                if gallery.clip.weights_key not in self._synced:
                    gallery.add_folder(self.settings.gallery_dir, self._track)
                    self._synced.add(gallery.clip.weights_key)
            finally:
                self._progress = None
        self._synced_event.set()

    def _track(self, progress: Throughput) -> None:
        self._progress = progress
