"""Import the model libraries once, from one thread at a time.

transformers resolves its public names lazily. A thread whose first `from transformers import X`
runs while another thread is half-way through importing transformers (open_clip imports it too)
gets "cannot import name X". The background preload and the first user request do exactly that,
so every model plan passes through `import_model_libraries()` first.

A process that only ever runs a CLIP without a Hugging Face text tower (the `index` command with
ViT-B-32) asks for `transformers=False`: open_clip is then imported with transformers hidden
(open_clip imports it only to offer HF text towers, and carries on without it), which saves a
second of start-up on 2 cores.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_done: set[str] = set()  # "open_clip", "transformers": what has been imported here


def import_model_libraries(transformers: bool = True) -> None:
    """Import torch, open_clip and (unless told not to) the transformers names mmdemo uses.

    Cheap after the first call. Call with `transformers=False` only in a process that will never
    load a VLM or a CLIP with a Hugging Face text tower or tokenizer (see `clip.needs_transformers`).
    """
    wanted = {"open_clip", "transformers"} if transformers else {"open_clip"}
    if wanted <= _done:
        return
    with _lock:
        if wanted <= _done:
            return
        with contextlib.nullcontext() if transformers else _hidden("transformers"):
            import open_clip  # noqa: F401 - imports torch (and, unless hidden, part of transformers)
        if transformers:
            from transformers import (  # noqa: F401 - resolve the lazy names while no one else can
                AutoConfig,
                AutoModelForImageTextToText,
                AutoProcessor,
                BitsAndBytesConfig,
                StoppingCriteria,
                TextIteratorStreamer,
            )
        import torch  # noqa: F401

        _done.update(wanted)


@contextlib.contextmanager
def _hidden(module: str) -> Iterator[None]:
    """While inside, `import module` raises ImportError (unless it is imported already)."""
    if module in sys.modules:
        yield
        return
    # None in sys.modules is Python's documented way to block an import.
    sys.modules[module] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.modules.get(module, 0) is None:
            del sys.modules[module]
