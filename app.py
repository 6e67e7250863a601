"""mmdemo: `python app.py --help` lists every option (each also read from MMDEMO_* variables)."""

from __future__ import annotations

import logging
import os
import sys

from mmdemo.config import Settings
from mmdemo.serving import hosting
from mmdemo.serving.logs import throttle_repeats
from mmdemo.serving.starting import StartingPage


def main(argv: list[str] | None = None) -> None:
    """Settings -> model manager -> UI -> serve."""
    settings = Settings.from_cli(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mmdemo").setLevel(settings.log_level.upper())
    throttle_repeats()  # a failure every request meets is logged a few times a minute, with a count
    os.environ["GRADIO_ANALYTICS_ENABLED"] = str(settings.analytics)  # read when gradio is imported
    # Read when torch loads OpenMP. Passive: an idle OpenMP worker sleeps at once instead of
    # spinning on a core. A chat's decode steps are many small ops, and the spinning worker held a
    # core the web server and other visitors' requests needed: on 2 cores a search during a chat
    # answer took 1.58x its idle time with spinning workers, 1.41x without, at the same decode rate
    # (bench/bench_fairness.py).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Uploads land under the data dir too (in random, salted-hash folders): one place to mount,
    # and nothing this app writes ends up elsewhere.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(settings.data_dir / "gradio"))
    zero_gpu = hosting.on_zero_gpu()
    if zero_gpu:
        hosting.import_spaces()  # before torch: it patches CUDA for ZeroGPU
    settings = hosting.for_this_host(settings)
    # Answer on the port at once while gradio and torch import (seconds); Gradio takes it over.
    starting = StartingPage(settings.host, settings.port)
    starting.start()

    from mmdemo.chat.backend import chat_backend
    from mmdemo.embedding.images import set_pixel_limit
    from mmdemo.models.factory import build_manager
    from mmdemo.search.galleries import Galleries
    from mmdemo.ui import CSS, build_app, theme
    from mmdemo.ui.serve import readiness, serve

    set_pixel_limit(settings.max_image_pixels)
    if not settings.is_synthetic:
        from mmdemo.models.hub import probe_in_background

        probe_in_background()  # can models be downloaded? (a short probe, overlapping the imports)
    manager = build_manager(settings)
    # Serve at once and load in the background (first requests wait for it); ZeroGPU packs the
    # CUDA weights at startup, so there they must be resident before launch.
    manager.preload(settings.local_preload, background=not zero_gpu)
    galleries = Galleries(settings, manager)
    galleries.start_sweeping()  # private galleries unused for a while, and folders nobody owns
    backend = chat_backend(settings, manager)  # the VLM in process, or on MMDEMO_VLM_URL's server
    app = build_app(settings, manager, galleries, backend)
    serve(app, settings, ready=lambda: readiness(settings, manager, galleries, backend), before_launch=starting.stop,
          manager=manager, after_launch=throttle_repeats, theme=theme(), css=CSS)  # fmt: skip


if __name__ == "__main__":
    from mmdemo.errors import UserFacingError

    try:
        main(sys.argv[1:])
    except UserFacingError as exc:  # a bad setting (e.g. an unreadable --auth file): say so, no traceback
        sys.exit(f"mmdemo: {exc}")
