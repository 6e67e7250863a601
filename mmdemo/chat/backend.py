"""Where the chat model runs, chosen once: in this process, or on an OpenAI-compatible inference server.

The UI asks a `ChatBackend` (mmdemo.chat.pipeline) and never learns which one it has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmdemo.chat.pipeline import ChatBackend

if TYPE_CHECKING:
    from mmdemo.config import Settings
    from mmdemo.models.manager import ModelManager

__all__ = ["ChatBackend", "chat_backend"]


def chat_backend(settings: Settings, manager: ModelManager) -> ChatBackend[Any]:
    """The backend these settings ask for: the server at MMDEMO_VLM_URL, or the local model."""
    if settings.remote_vlm:
        from mmdemo.chat.remote import RemoteVLM

        return RemoteVLM.from_settings(settings)
    from mmdemo.chat.local import LocalVLM

    return LocalVLM(manager, settings.device)
