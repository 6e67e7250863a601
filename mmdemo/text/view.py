"""The text read from an image, shown: its boxes drawn on the image."""

from __future__ import annotations

from PIL import Image, ImageDraw


def draw_boxes(image: Image.Image, boxes: list[list[tuple[int, int]]], source_width: int) -> Image.Image:
    """A copy of `image` with each box (in the pixels of a `source_width`-wide version of it) outlined."""
    scale = image.width / max(source_width, 1)
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    width = max(2, image.width // 300)
    for box in boxes:
        draw.polygon([(x * scale, y * scale) for x, y in box], outline=(255, 40, 40), width=width)
    return out
