"""Your images, under the Search tab: adding uploads to this session's private gallery, and what it
holds, a page at a time, with Delete selected / Delete all.

Also the API's /index_images, /my_images and /remove_images. The images live in the session's private gallery,
named by the token in the Search tab's state (mmdemo.ui.search).
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import Callable
from typing import Any

import gradio as gr

from mmdemo.config import Settings
from mmdemo.files import inside, remove_tree
from mmdemo.search.galleries import Galleries, session_gallery
from mmdemo.search.originals import Originals
from mmdemo.search.private import gallery_key, within_cap
from mmdemo.search.uploads import discard, expand_uploads
from mmdemo.serving import hosting
from mmdemo.ui.common import friendly_errors, measured, session, videos_said
from mmdemo.ui.fairness import client_id
from mmdemo.ui.i18n import language, say, t

MINE_PAGE = 48  # images per page of "Your images"


class YourImages:
    """The "Your images" box: `render` lays it out and wires its events; each event is a method."""

    def __init__(self, settings: Settings, galleries: Galleries) -> None:
        self.settings, self.galleries = settings, galleries
        self.owners: dict[str, str] = {}  # session key -> its private gallery's token
        # Uploads kept for full-size viewing, per gallery (the folder Galleries.drop removes them from).
        self.originals = Originals(settings.data_dir / "originals", settings.originals_mb * 1_000_000)
        self.index_images = friendly_errors(measured("index", hosting.gpu(duration=120)(self.index_images)))
        self.my_images = friendly_errors(self.my_images)
        self.remove_images = friendly_errors(self.remove_images)

    def render(self, token: gr.State, report: gr.Markdown) -> Callable[[Any], None]:
        """ "Your images": a page of what this session added, Delete selected / Delete all. Returns what
        shows the page again after an event that changed the gallery."""
        with gr.Accordion(t("search.mine"), open=False, elem_id="search-mine-box"):
            mine_info = gr.Markdown(t("search.mine_none"), elem_id="search-mine-info")
            mine = gr.Gallery(
                label=t("search.mine"), columns=8, height="auto", object_fit="contain", elem_id="search-mine"
            )
            with gr.Row():
                page = gr.Number(1, label=t("search.page"), precision=0, minimum=1, scale=1)
                delete_one = gr.Button(t("search.delete_selected"), scale=1)
                delete_all = gr.Button(t("search.delete_all"), variant="stop", scale=1)
        mine_ids, mine_selected = gr.State([]), gr.State(None)
        shown_mine = [mine, mine_info, mine_ids, mine_selected]
        # The API event first: later events of the same function would otherwise take its name.
        page.change(self.my_images, [token, page], shown_mine, api_name="my_images")

        def show_mine(event: Any) -> None:
            event.then(self.my_images, [token, page], shown_mine, api_visibility="private")

        mine.select(self.select_mine, mine_ids, mine_selected, api_visibility="private")
        show_mine(delete_one.click(self.delete_selected, [mine_selected, token], report, api_visibility="private"))
        show_mine(delete_all.click(self.delete_all, token, report, api_visibility="private"))
        return show_mine

    def my_images(
        self, token: str | None, page: float = 1, request: gr.Request | None = None
    ) -> tuple[list[tuple[str, str]], str, list[int], None]:
        """What this session added: a page of (thumbnail, name), a summary line, and their ids.

        Args:
            page: which page of MINE_PAGE images (1 = the first).
        Returns:
            The page, and a summary that also says how far the videos being cut in the background are.
        """
        items = self.galleries.get(session_gallery(token)).store.items() if token else []
        videos = videos_said(self.galleries.videos.state(session_gallery(token)), request) if token else ""
        if not items:
            return [], "\n\n".join(filter(None, [say(request, "search.mine_nothing"), videos])), [], None
        pages = -(-len(items) // MINE_PAGE)
        page = min(max(int(page or 1), 1), pages)
        shown = items[(page - 1) * MINE_PAGE : page * MINE_PAGE]
        total = sum(it.bytes for it in items) / 1e6
        info = say(request, "search.mine_info", n=len(items), mb=f"{total:.1f}", page=page, pages=pages)
        info += f"\n\n{videos}" if videos else ""
        return [(it.thumb, it.name) for it in shown], info, [it.id for it in shown], None

    def remove_images(self, which: str, token: str | None, request: gr.Request | None = None) -> str:
        """Remove images from your gallery.

        Args:
            which: "all", or comma-separated names or ids (as /my_images lists them).
        Returns:
            How many were removed and how many are left.
        """
        if not token:
            return say(request, "search.yours_empty")
        mine = self.galleries.get(session_gallery(token))
        items = mine.store.items()
        wanted = {w.strip() for w in (which or "").split(",") if w.strip()}
        chosen = items if wanted == {"all"} else [it for it in items if it.name in wanted or str(it.id) in wanted]
        if not chosen:
            return say(request, "search.none_of", names=", ".join(sorted(wanted)) or "(nothing)")
        removed = mine.remove([it.id for it in chosen])
        return say(request, "search.removed", n=removed, left=len(mine))

    def delete_selected(self, item_id: int | None, token: str | None, request: gr.Request | None = None) -> str:
        if item_id is None:
            return say(request, "search.click_mine")
        return self.remove_images(str(item_id), token, request)

    def delete_all(self, token: str | None, request: gr.Request | None = None) -> str:
        return self.remove_images("all", token, request)

    def select_mine(self, ids: list[int], evt: gr.SelectData) -> int | None:
        index = int(evt.index)
        return ids[index] if 0 <= index < len(ids or []) else None

    def index_images(
        self, files: list[Any] | None, token: str | None, request: gr.Request, progress: gr.Progress = gr.Progress()
    ) -> tuple[str, str | None]:
        """Add uploaded images (or .zip archives of images) to this session's private gallery.

        Args:
            files: image files or .zip archives of images.
        Returns:
            A report: indexed, duplicates, near-duplicates and skipped files (with why).
        """
        settings = self.settings
        paths = [f if isinstance(f, str) else f.name for f in files or []]
        if not paths:
            return say(request, "search.choose_files"), token
        if not (token and self.galleries.private.touch(token)):  # none yet, or swept while the tab was idle
            token = self.galleries.new_private("page", client_id(request))
        if request is not None:
            self.owners[session(request)] = token
        # Archives unpack outside the served folders, and go once indexed, like the uploads
        # themselves: what is kept is the index and thumbnails of this session's gallery.
        uploads = settings.data_dir / "uploads"
        workdir = inside(uploads, gallery_key(token), secrets.token_hex(4))  # one per request
        try:
            found, unpacked_skips = expand_uploads(
                paths,
                workdir,
                settings.max_images_per_upload,
                settings.max_zip_mb * 1_000_000,
                settings.max_zip_members,
            )
            mine = self.galleries.get(session_gallery(token))
            kept, over = within_cap([(f, f.name) for f in found], len(mine), settings.max_images_per_gallery)
            found = [f for f, _ in kept]
            progress((0, len(found)), desc=say(request, "search.indexing"))
            lang = language(request)
            report = mine.add_files(found, lambda c: progress((c.done, c.total), desc=c.describe(lang)), read_now=True)
            report = dataclasses.replace(report, skipped=(*report.skipped, *over))
            new = set(report.added)
            self.originals.keep(session_gallery(token), found, [it for it in mine.store.items() if it.name in new])
        finally:
            remove_tree(uploads, workdir.relative_to(uploads.resolve()))
            with contextlib.suppress(OSError):  # the session's folder, once no request uses it
                workdir.parent.rmdir()
            discard(paths)
        lines = [report.summary(language(request))]
        lines += [
            f"- {say(request, 'search.skipped', name=s.name, reason=s.said(language(request)))}" for s in unpacked_skips
        ]
        return "\n".join(lines) + "\n\n" + say(request, "search.holds", n=len(mine)), token

    def end_session(self, request: gr.Request) -> None:
        """The tab closed: drop its private gallery."""
        if (mine := self.owners.pop(session(request), None)) is not None:
            self.galleries.drop(session_gallery(mine))
