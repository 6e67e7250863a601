"""The Search tab's filter controls: date range, place, camera, "has text" and the order.

They are another way to type the search box's operators (mmdemo.photos.filters): each control
writes its operator into the box, and the box's operators set the controls when it is submitted or
left, so the two never disagree and what the box says is what is searched.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from mmdemo.errors import UserFacingError
from mmdemo.photos.filters import SORTS, split, with_filter
from mmdemo.ui.i18n import t

CONTROLS = ("after", "before", "place", "camera", "has_text", "sort")  # the order of `read`'s outputs


class FilterControls:
    """`render` lays the controls out under the query box and wires them; each event is a method."""

    def render(self, query: gr.Textbox) -> None:
        with gr.Accordion(t("search.filters"), open=False, elem_id="search-filters"):
            with gr.Row():
                after = gr.Textbox(label=t("search.after"), max_lines=1, elem_id="search-after")
                before = gr.Textbox(label=t("search.before"), max_lines=1, elem_id="search-before")
                place = gr.Textbox(label=t("search.place"), max_lines=1, elem_id="search-place")
                camera = gr.Textbox(label=t("search.camera"), max_lines=1, elem_id="search-camera")
            with gr.Row():
                has_text = gr.Checkbox(label=t("search.has_text"), elem_id="search-has-text")
                sort = gr.Radio(
                    [(t(f"search.sort.{name}"), name) for name in SORTS],
                    value=SORTS[0],  # relevance
                    label=t("search.sort"),
                    elem_id="search-sort",
                )
        # always_last: a keystroke's answer never lands after the next one's (the box would lose a letter).
        quiet: dict[str, Any] = {"api_visibility": "private", "queue": False, "trigger_mode": "always_last"}
        # .input: the visitor's own changes only (not `read`'s), so box and controls never ping-pong.
        after.input(self.set_after, [query, after], query, **quiet)
        before.input(self.set_before, [query, before], query, **quiet)
        place.input(self.set_place, [query, place], query, **quiet)
        camera.input(self.set_camera, [query, camera], query, **quiet)
        has_text.input(self.set_has_text, [query, has_text], query, **quiet)
        sort.input(self.set_sort, [query, sort], query, **quiet)
        for trigger in (query.submit, query.blur):
            trigger(self.read, query, [after, before, place, camera, has_text, sort], **quiet)

    def set_after(self, query: str, value: str) -> str:
        return with_filter(query, "after", value)

    def set_before(self, query: str, value: str) -> str:
        return with_filter(query, "before", value)

    def set_place(self, query: str, value: str) -> str:
        return with_filter(query, "place", value)

    def set_camera(self, query: str, value: str) -> str:
        return with_filter(query, "camera", value)

    def set_has_text(self, query: str, value: bool) -> str:
        others = [v for v in _typed(query).get("has", ()) if v.lower() != "text"]
        return with_filter(query, "has", [*others, "text"] if value else others)

    def set_sort(self, query: str, value: str) -> str:
        return with_filter(query, "sort", value if value in SORTS and value != "relevance" else None)

    def read(self, query: str) -> Any:
        """The controls as the box's operators say (left as they are while the box holds a mistake: the
        search says what it is)."""
        typed = _typed(query, strict=True)
        if typed is None:
            return tuple(gr.skip() for _ in CONTROLS)
        first = {op: values[0] if values else "" for op, values in typed.items()}
        has = {v.lower() for v in typed.get("has", ())}
        sort = first.get("sort", "").lower()
        return (
            first.get("after", ""),
            first.get("before", ""),
            first.get("place", ""),
            first.get("camera", ""),
            "text" in has,
            sort if sort in SORTS else "relevance",
        )


def _typed(query: str, strict: bool = False) -> Any:
    """The operators typed in `query` (op -> values); with `strict`, None when the query has a mistake."""
    try:
        return split(query if isinstance(query, str) else "")[0].typed
    except UserFacingError:
        return None if strict else {}
