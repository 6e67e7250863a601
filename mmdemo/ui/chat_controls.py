"""The Chat tab's generation controls: their layout, and their values as sampling parameters and an image budget."""

from __future__ import annotations

import gradio as gr

from mmdemo.chat.pipeline import GenerationParams
from mmdemo.chat.prompt import PATCH_AREA, ImageBudget
from mmdemo.config import Settings
from mmdemo.ui.i18n import t


def render_controls(settings: Settings, default_max_pixels: int) -> list[gr.components.Component]:
    """The generation controls, in the order the Chat tab's `chat` and `regenerate` take them."""
    area = PATCH_AREA
    with gr.Row():
        max_new = gr.Slider(
            1,
            settings.max_new_tokens,
            value=min(256, settings.max_new_tokens),
            step=1,
            label=t("chat.max_new_tokens"),
        )
        temperature = gr.Slider(0.0, 1.5, value=0.7, step=0.05, label=t("chat.temperature"))
        top_p = gr.Slider(0.1, 1.0, value=0.9, step=0.05, label=t("chat.top_p"))
        repetition = gr.Slider(1.0, 2.0, value=1.05, step=0.01, label=t("chat.repetition"))
        greedy = gr.Checkbox(value=False, label=t("chat.greedy"))
    with gr.Row():
        min_px = gr.Slider(4 * area, 1024 * area, value=4 * area, step=area, label=t("chat.min_pixels"))
        max_px = gr.Slider(
            16 * area,
            16384 * area,
            value=default_max_pixels,
            step=area,
            label=t("chat.max_pixels"),
        )
        frames = gr.Slider(
            2,
            settings.max_video_frames,
            value=min(16, settings.max_video_frames),
            step=2,
            label=t("chat.video_frames"),
        )
        video_px = gr.Slider(64 * area, 24576 * area, value=4096 * area, step=area, label=t("chat.video_pixels"))
    # value="": an API client may leave it out (a None default would make it a required argument)
    system = gr.Textbox(
        "",
        label=t("chat.system_prompt"),
        placeholder=t("chat.system_placeholder"),
        lines=2,
        elem_id="chat-system-prompt",
    )
    return [max_new, temperature, top_p, repetition, greedy, min_px, max_px, frames, video_px, system]


def generation(
    settings: Settings,
    max_new: float,
    temperature: float,
    top_p: float,
    repetition: float,
    greedy: bool,
    min_px: float,
    max_px: float,
    frames: float,
    video_px: float,
) -> tuple[GenerationParams, ImageBudget]:
    """The controls' values as sampling parameters and an image budget."""
    params = GenerationParams(int(max_new), float(temperature), float(top_p), float(repetition), bool(greedy))
    budget = ImageBudget(
        min_pixels=int(min(min_px, max_px)),
        max_pixels=int(max_px),
        max_frames=int(frames),
        video_total_pixels=int(video_px),
        max_file_pixels=settings.max_image_pixels,
    )
    return params, budget
