"""Classify tab: zero-shot classification of one image or a batch against labels you type."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from mmdemo import hosting
from mmdemo.classify.batch import COLUMNS, classify_files
from mmdemo.classify.templates import CUSTOM, DEFAULT_TEMPLATE, PRESETS, TEMPLATE_SETS, preset_labels, templates_for
from mmdemo.classify.zeroshot import parse_labels, scoring_rule
from mmdemo.config import Settings
from mmdemo.errors import UserFacingError
from mmdemo.images import IMAGE_SUFFIXES
from mmdemo.ingest import ImageFile, Throughput
from mmdemo.models.manager import ModelManager
from mmdemo.ui.common import friendly_errors, upload_path
from mmdemo.ui.serve import clip_queue
from mmdemo.vectorcache import embedding_cache

NO_PRESET = "(type your own)"


def build(settings: Settings, manager: ModelManager) -> None:
    """Add the classification components and events to the current Blocks."""
    cache = embedding_cache(settings)

    @friendly_errors
    @hosting.gpu(duration=60)
    def classify(
        image: str | None,
        files: list[Any] | None,
        labels_text: str,
        template_set: str,
        template: str,
        top_k: float,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[dict[str, float] | None, str, list[list[Any]], str | None]:
        """Zero-shot classify one image (scores) or several (table + CSV) against the labels.

        Returns the top-k scores of the single image, a note on how scores are computed, the
        table (image, top-1, score, top-5) and the path of the table as CSV.
        """
        paths = [upload_path(f) for f in files or []]
        if image:
            paths.insert(0, upload_path(image))
        if not paths:
            raise UserFacingError("Upload an image to classify (or several in the batch box).")
        if len(paths) > settings.max_images_per_upload:
            raise UserFacingError(f"{len(paths)} images; the limit is {settings.max_images_per_upload} per batch.")
        labels, notices = parse_labels(labels_text, settings.max_labels, settings.max_label_chars)
        templates = templates_for(template_set, template)
        clip = manager.get("clip")
        count = Throughput(len(paths))
        # A progress bar for batches only: each update is a message the server sends, and one image
        # is answered before a bar would show.
        batch = len(paths) > 1
        if batch:
            progress((0, len(paths)), desc="classifying")

        def advance(n: int) -> None:
            count.advance(n)
            if batch:
                progress((count.done, count.total), desc=count.describe())

        result = classify_files(
            clip,
            [ImageFile(p, Path(p).name) for p in paths],
            labels,
            templates,
            settings.max_image_pixels,
            cache,
            on_batch=advance,
        )
        if not result.predictions:
            reasons = "; ".join(f"{s.name}: {s.reason}" for s in result.skipped)
            raise UserFacingError(f"No image could be read ({reasons}).")
        k = int(top_k)
        lines = [f"**Scores:** {scoring_rule(clip)}."]
        lines.append(
            f"{len(labels)} labels x {len(templates)} template(s); "
            f"{result.classifier.encoded} label(s) encoded now, {len(labels) - result.classifier.encoded} from cache."
        )
        lines += [f"- {n}" for n in notices]
        lines += [f"- skipped **{s.name}**: {s.reason}" for s in result.skipped]
        single = dict(result.predictions[0][1].top_k(k)) if len(result.predictions) == 1 else None
        with tempfile.NamedTemporaryFile("w", suffix=".csv", prefix="mmdemo-classify-", delete=False) as out:
            out.write(result.to_csv(k))
        return single, "\n".join(lines), result.rows(k), out.name

    def fill_preset(preset: str) -> str | Any:
        """Put a preset's class names in the labels box, one per line."""
        return gr.update() if preset == NO_PRESET else "\n".join(preset_labels(preset))

    with gr.Row():
        with gr.Column():
            image = gr.Image(type="filepath", label="Image", height=300, elem_id="classify-image")
            files = gr.File(file_count="multiple", label="Or a batch of images (table + CSV)", elem_id="classify-batch")
            preset = gr.Dropdown([NO_PRESET, *PRESETS], value=NO_PRESET, label="Label preset")
            labels = gr.Textbox(
                label="Candidate labels (one per line, or comma-separated)",
                value="cat, dog, car, person",
                lines=3,
                max_lines=12,
            )
            with gr.Row():
                template_set = gr.Radio(
                    [(text, key) for key, text in TEMPLATE_SETS.items()], value=CUSTOM, label="Prompt templates"
                )
                template = gr.Textbox(label="Custom template", value=DEFAULT_TEMPLATE)
            top_k = gr.Slider(1, 20, value=5, step=1, label="Top-k")
            go = gr.Button("Classify", variant="primary")
        with gr.Column():
            scores = gr.Label(label="Scores", elem_id="classify-scores")
            info = gr.Markdown()
            table = gr.Dataframe(headers=list(COLUMNS), label="Batch results", wrap=True, elem_id="classify-table")
            csv_file = gr.File(label="Download CSV")
    if settings.gallery_dir.is_dir():
        bundled = sorted(str(p) for p in settings.gallery_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        gr.Examples([[p] for p in bundled], inputs=[image], label="Pick from the gallery", examples_per_page=12)
    preset.change(fill_preset, preset, labels, api_visibility="private")
    go.click(classify, [image, files, labels, template_set, template, top_k], [scores, info, table, csv_file],
             api_name="classify", preprocess=False, **clip_queue(settings))  # fmt: skip
