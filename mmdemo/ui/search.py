"""Search tab: find images in the bundled gallery and your own uploads by describing them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import gradio as gr

from mmdemo.config import Settings
from mmdemo.models.manager import ModelManager
from mmdemo.search.gallery import Gallery, merge_hits
from mmdemo.ui.common import friendly_errors


def build(settings: Settings, manager: ModelManager) -> None:
    """Add the search components and events to the current Blocks."""
    bundled: list[Gallery] = []  # built on first use, shared read-only by every session
    bundled_lock = threading.Lock()

    def shared_gallery() -> Gallery:
        with bundled_lock:
            if not bundled:
                gallery = Gallery(manager.get("clip"), settings.max_image_pixels)
                if settings.gallery_dir.is_dir():
                    gallery.add_folder(settings.gallery_dir)
                bundled.append(gallery)
            return bundled[0]

    @friendly_errors
    def index_images(files: list[Any] | None, mine: Gallery | None) -> tuple[str, Gallery | None]:
        """Add uploaded images to this session's gallery; returns a report of what was indexed."""
        paths = [f if isinstance(f, str) else f.name for f in files or []]
        if not paths:
            return "Choose some images to add first.", mine
        if len(paths) > settings.max_images_per_upload:
            raise gr.Error(f"{len(paths)} files; the limit is {settings.max_images_per_upload} per upload.")
        mine = mine or Gallery(manager.get("clip"), settings.max_image_pixels)
        report = mine.add(paths, [Path(p).name for p in paths])
        lines = [f"Indexed {len(report.added)} image(s); your gallery holds {len(mine)}."]
        lines += [f"- skipped **{s.name}**: {s.reason}" for s in report.skipped]
        return "\n".join(lines), mine

    @friendly_errors
    def search(query: str, top_k: float, mine: Gallery | None) -> list[tuple[str, str]]:
        """Images that best match a text query, as (image, "score · name") pairs."""
        shared = shared_gallery()
        if len(shared) + len(mine or ()) == 0:
            gr.Warning("The gallery is empty: add some images first.")
            return []
        k = int(top_k)
        hits = merge_hits(shared.search_text(query, k), mine.search_text(query, k) if mine else [], k=k)
        return [(h.path, f"{h.score:.3f} · {h.name}") for h in hits]

    mine = gr.State(None)
    with gr.Row():
        query = gr.Textbox(label="Describe what you are looking for", placeholder="a dog on the beach", scale=4)
        top_k = gr.Slider(1, 48, value=12, step=1, label="Results", scale=1)
    go = gr.Button("Search", variant="primary")
    results = gr.Gallery(label="Results", columns=4, height="auto", object_fit="contain")
    with gr.Accordion("Add your own images (visible to you only)", open=False):
        # No file_types filter: gradio would reject the whole batch for one bad file; ours skips it.
        uploads = gr.File(file_count="multiple", label="Images")
        add = gr.Button("Add to my gallery")
        report = gr.Markdown()

    go.click(search, [query, top_k, mine], results, api_name="search")
    query.submit(search, [query, top_k, mine], results, api_visibility="private")  # Enter does the same
    add.click(index_images, [uploads, mine], [report, mine], api_name="index_images")
