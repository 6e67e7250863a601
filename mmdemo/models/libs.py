"""Import the model libraries once, from one thread at a time.

transformers resolves its public names lazily. A thread whose first `from transformers import X`
runs while another thread is half-way through importing transformers (open_clip imports it too)
gets "cannot import name X". The background preload and the first user request do exactly that,
so every model plan passes through `import_model_libraries()` first.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_done = False


def import_model_libraries() -> None:
    """Import torch, open_clip and the transformers names mmdemo uses (cheap after the first call)."""
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        import open_clip  # noqa: F401 - imports torch and part of transformers
        import torch  # noqa: F401
        from transformers import (  # noqa: F401 - resolve the lazy names while no one else can
            AutoConfig,
            AutoModelForImageTextToText,
            AutoProcessor,
            BitsAndBytesConfig,
            StoppingCriteria,
            TextIteratorStreamer,
        )

        _done = True
