"""Classify tab: zero-shot classification of one image or a batch against labels you type."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from mmdemo.classify.batch import classify_files
from mmdemo.classify.templates import (
    CUSTOM,
    DEFAULT_TEMPLATE,
    PRESETS,
    TEMPLATE_SETS,
    preset_labels,
    templates_for_labels,
)
from mmdemo.classify.zeroshot import parse_labels, scoring_rule
from mmdemo.config import Settings
from mmdemo.embedding.images import IMAGE_SUFFIXES
from mmdemo.embedding.ingest import ImageFile, Throughput
from mmdemo.embedding.vectorcache import embedding_cache
from mmdemo.errors import UserFacingError
from mmdemo.files import inside, remove_tree
from mmdemo.models.manager import ModelManager
from mmdemo.models.registry import resolve
from mmdemo.serving import hosting
from mmdemo.ui.common import friendly_errors, measured, number, session, text_input, upload_path
from mmdemo.ui.i18n import headers, language, say, t, table_value
from mmdemo.ui.serve import clip_queue

EXAMPLE_LABELS = "cat, dog, car, person"  # input for the model (its language, not the page's): edited freely
NO_PRESET = "(type your own)"  # the value; the page shows classify.no_preset
TOP_K_MAX = 20  # labels shown per image
CSV_MAX_AGE_S = 86_400  # a session that never said goodbye (an API client) keeps its CSV this long
Scores = tuple[dict[str, float] | None, str, Any, str | None]


COLUMNS = ("image", "top1", "score", "top5")  # of the batch table (locale keys classify.col.*; the CSV's are English)


class ClassifyTab:
    """The Classify tab: `render` lays it out and wires the events; each event is a method."""

    def __init__(self, settings: Settings, manager: ModelManager) -> None:
        self.settings, self.manager = settings, manager
        self.cache = embedding_cache(settings)
        self.csv_root = settings.data_dir / "outputs" / "classify"  # one folder per session
        # Wrapped as a bound method (name and docstring stay the API's): ZeroGPU, and messages not traces.
        self.classify = friendly_errors(measured("classify", hosting.gpu(duration=60)(self.classify)))

    def render(self, app: gr.Blocks) -> None:
        """Lay out the tab and wire its events (inside a `gr.Tab`)."""
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", label=t("classify.image"), height=300, elem_id="classify-image")
                files = gr.File(file_count="multiple", label=t("classify.batch"), elem_id="classify-batch")
                preset = gr.Dropdown(
                    [(t("classify.no_preset"), NO_PRESET), *PRESETS],
                    value=NO_PRESET,
                    label=t("classify.preset"),
                    elem_id="classify-preset",
                )
                labels = gr.Textbox(
                    label=t("classify.labels"),
                    value=EXAMPLE_LABELS,
                    lines=3,
                    max_lines=12,
                    elem_id="classify-labels",
                )
                with gr.Row():
                    template_set = gr.Radio(
                        [(t(f"classify.set.{key}"), key) for key in TEMPLATE_SETS],
                        value=CUSTOM,
                        label=t("classify.templates"),
                    )
                    template = gr.Textbox(label=t("classify.custom_template"), value=DEFAULT_TEMPLATE)
                top_k = gr.Slider(1, TOP_K_MAX, value=5, step=1, label=t("classify.top_k"))
                go = gr.Button(t("classify.button"), variant="primary", elem_id="classify-go")
            with gr.Column():
                scores = gr.Label(label=t("classify.scores"), elem_id="classify-scores")
                info = gr.Markdown(elem_id="classify-info")
                table = gr.Dataframe(
                    headers=headers("classify.col", COLUMNS),
                    label=t("classify.table"),
                    wrap=True,
                    elem_id="classify-table",
                )
                csv_file = gr.File(label=t("classify.csv"))
        if self.settings.gallery_dir.is_dir():
            gallery = self.settings.gallery_dir
            bundled = sorted(str(p) for p in gallery.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            gr.Examples([[p] for p in bundled], inputs=[image], label=t("classify.gallery"), examples_per_page=12)
        preset.change(self.fill_preset, preset, labels, api_visibility="private")
        inputs = [image, files, labels, template_set, template, top_k]
        go.click(
            self.classify,
            inputs,
            [scores, info, table, csv_file],
            api_name="classify",
            preprocess=False,
            **clip_queue(self.settings),
        )
        # The empty table's headers in the visitor's language (the layout is built once, in English).
        app.load(self.empty_table, None, table, api_visibility="private", queue=False)
        app.unload(self.end_session)

    def empty_table(self, request: gr.Request | None = None) -> Any:
        return table_value("classify.col", COLUMNS, [], request)

    def classify(
        self,
        image: str | None,
        files: list[Any] | None,
        labels_text: str,
        template_set: str,
        template: str,
        top_k: float,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),
    ) -> Scores:
        """Zero-shot classify one image (scores) or several (table + CSV) against the labels.

        Args:
            image: one image to classify (None when files are given).
            files: several images to classify as a batch ([] for none).
            labels_text: the candidate labels, comma-separated or one per line.
            template_set: "custom" (the template below), "openai-7", "openai-80" or "zh".
            template: the custom prompt template, with {} where the label goes (e.g. "a photo of a {}.").
            top_k: how many labels to show per image, 1 to 20.
        Returns:
            The single image's top-k scores, a note on how scores are computed, the table
            (image, top-1, score, top-5) and the table as a CSV file.
        """
        k = int(number(top_k, 1, TOP_K_MAX, "top_k"))  # preprocessing is off for this event: see upload_path
        paths = self._paths(image, files)
        lang = language(request)
        labels, notices = parse_labels(
            text_input(labels_text, "labels"), self.settings.max_labels, self.settings.max_label_chars, lang
        )
        multilingual = resolve(self.manager.resolve_id("clip")).multilingual
        templates, switched = templates_for_labels(template_set, self._template(template), labels, multilingual)
        if switched:
            notices.append(say(request, "classify.chinese_templates"))
        clip = self.manager.get("clip")
        result = classify_files(
            clip,
            [ImageFile(p, Path(p).name) for p in paths],
            labels,
            templates,
            self.settings.max_image_pixels,
            self.cache,
            on_batch=self._progress(len(paths), progress, request),
        )
        if not result.predictions:
            reasons = "; ".join(f"{s.name}: {s.said(lang)}" for s in result.skipped)
            raise UserFacingError(key="classify.unreadable", reasons=reasons)
        encoded = result.classifier.encoded
        counts = {"labels": len(labels), "templates": len(templates), "encoded": encoded}
        lines = [scoring_rule(clip, lang), say(request, "classify.counts", cached=len(labels) - encoded, **counts)]
        lines += [f"- {n}" for n in notices]
        lines += [f"- {say(request, 'search.skipped', name=s.name, reason=s.said(lang))}" for s in result.skipped]
        single = dict(result.predictions[0][1].top_k(k)) if len(result.predictions) == 1 else None
        rows = table_value("classify.col", COLUMNS, result.rows(k), request)
        return single, "\n".join(lines), rows, str(self._write_csv(result.to_csv(k), request))

    def _paths(self, image: Any, files: Any) -> list[str]:
        """The uploads' server paths, checked (Gradio's own checks are off for this event)."""
        if not isinstance(files, list | None):
            raise UserFacingError(key="error.not_a_file")
        given = [image] if image else []
        paths = [path for path in map(upload_path, [*given, *(files or [])]) if path]
        if not paths:
            raise UserFacingError(key="classify.no_image")
        if len(paths) > self.settings.max_images_per_upload:
            raise UserFacingError(key="classify.too_many", n=len(paths), limit=self.settings.max_images_per_upload)
        return paths

    def _template(self, template: Any) -> str:
        template = text_input(template, "template")
        if len(template) > self.settings.max_label_chars:
            limit = self.settings.max_label_chars
            raise UserFacingError(
                key="classify.label_too_long", label=template[:40], n=f"{len(template):,}", limit=limit
            )
        return template

    def _progress(self, total: int, progress: gr.Progress, request: gr.Request) -> Callable[[int], None]:
        """What to call after each model batch: a progress bar for batches only (each update is a message
        the server sends, and one image is answered before a bar would show)."""
        count, lang = Throughput(total), language(request)
        if total > 1:
            progress((0, total), desc=say(request, "classify.classifying"))

        def advance(n: int) -> None:
            count.advance(n)
            if total > 1:
                progress((count.done, count.total), desc=count.describe(lang))

        return advance

    def fill_preset(self, preset: str) -> str | Any:
        """Put a preset's class names in the labels box, one per line."""
        return gr.update() if preset == NO_PRESET else "\n".join(preset_labels(preset))

    def end_session(self, request: gr.Request) -> None:
        """The tab closed: its CSV goes (Gradio keeps the copy it served until its own cache expires)."""
        remove_tree(self.csv_root, session(request))

    def _session_dir(self, request: gr.Request | None) -> Path:
        return inside(self.csv_root, session(request))

    def _write_csv(self, text: str, request: gr.Request | None) -> Path:
        """The session's one CSV (the latest table); sessions gone for a day lose theirs."""
        now = time.time()
        for old in self.csv_root.glob("*/classify.csv"):
            if now - old.stat().st_mtime > CSV_MAX_AGE_S:
                remove_tree(self.csv_root, old.parent.relative_to(self.csv_root))
        path = self._session_dir(request) / "classify.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


def build(settings: Settings, manager: ModelManager, app: gr.Blocks) -> None:
    """Add the classification components and events to the current Blocks."""
    ClassifyTab(settings, manager).render(app)
