"""Classify tab: zero-shot classification of an image against labels you type."""

from __future__ import annotations

import gradio as gr

from mmdemo.classify.zeroshot import DEFAULT_TEMPLATE, classify, parse_labels
from mmdemo.config import Settings
from mmdemo.errors import UserFacingError
from mmdemo.images import open_image
from mmdemo.models.manager import ModelManager
from mmdemo.ui.common import friendly_errors


def build(settings: Settings, manager: ModelManager) -> None:
    """Add the classification components and events to the current Blocks."""

    @friendly_errors
    def run(image: str | None, labels_text: str, template: str) -> dict[str, float]:
        """Scores of each label for the image (softmax over labels for CLIP models)."""
        if not image:
            raise UserFacingError("Upload an image to classify.")
        labels, notices = parse_labels(labels_text, settings.max_labels, settings.max_label_chars)
        if not labels:
            raise UserFacingError("Type some candidate labels, separated by commas or new lines.")
        template = template.strip() or DEFAULT_TEMPLATE
        if "{}" not in template:
            raise UserFacingError("The template needs a {} where the label goes, e.g. 'a photo of a {}.'")
        for notice in notices:
            gr.Info(notice)
        picture = open_image(image, settings.max_image_pixels)
        (prediction,) = classify(manager.get("clip"), [picture], labels, [template])
        return prediction.scores

    with gr.Row():
        with gr.Column():
            image = gr.Image(type="filepath", label="Image", height=320, elem_id="classify-image")
            labels = gr.Textbox(label="Candidate labels (comma or newline separated)", value="cat, dog, car, person",
                                lines=2)  # fmt: skip
            template = gr.Textbox(label="Prompt template", value=DEFAULT_TEMPLATE)
            go = gr.Button("Classify", variant="primary")
        with gr.Column():
            output = gr.Label(label="Scores", num_top_classes=5)
    go.click(run, [image, labels, template], output, api_name="classify")
