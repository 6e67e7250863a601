"""mmdemo: `python app.py --help` lists every option (each also read from MMDEMO_* variables)."""

from __future__ import annotations

import logging
import sys

from mmdemo.config import Settings


def main(argv: list[str] | None = None) -> None:
    """Settings -> model manager -> UI -> serve."""
    settings = Settings.from_cli(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mmdemo").setLevel(settings.log_level.upper())

    from mmdemo.images import set_pixel_limit
    from mmdemo.models.catalog import build_manager
    from mmdemo.ui import CSS, build_app, theme

    set_pixel_limit(settings.max_image_pixels)

    manager = build_manager(settings)
    manager.preload(settings.preload, background=True)  # serve at once; first requests wait for it
    app = build_app(settings, manager)
    app.queue(default_concurrency_limit=1).launch(
        server_name=settings.host,
        server_port=settings.port,
        share=settings.share,
        max_file_size=f"{settings.max_upload_mb}mb",
        show_error=True,  # e.g. a non-image sent to an image input through the API: say why it failed
        allowed_paths=[str(settings.data_dir / "galleries")],  # gallery thumbnails
        theme=theme(),
        css=CSS,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
