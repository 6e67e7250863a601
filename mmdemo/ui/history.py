"""The chat history as API clients send it back: what `/chat` returned is accepted as it is.

Gradio's Chatbot takes only its own normalised messages (content a list of {"type": ...} parts, each
file a FileData dict) and answers anything else with pydantic's dump ("8 validation errors for
ChatbotDataMessages"). Clients send back what they were given, in the forms they hold it:

- `Client(url, download_files=False)` keeps each file as the server's FileData: accepted as is;
- a file as this app's own file URL (`.../gradio_api/file=PATH`): accepted when PATH is one of
  Gradio's uploads (the same check Gradio makes for FileData);
- plain-string content, or a {"path": ...} / FileData content (the tuple-free shorthand): accepted;
- a file as the path `gradio_client` downloaded it to by default (`.../<sha256 of its bytes>/<name>`):
  accepted when one of Gradio's uploads has that name and those bytes (the client proves it holds
  the very file; nothing else on the server is ever read for it);
- any other path on the client's machine: refused with one line that says which file and what to do.

Anything else still invalid is refused with one readable line (where, and what), not the dump.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import gradio as gr
from gradio.components.chatbot import ChatbotDataMessages
from pydantic import ValidationError

from mmdemo.i18n import text

FILE_URL_MARK = "/gradio_api/file="
SHA256 = re.compile(r"[0-9a-f]{64}")


def _upload_path(value: str) -> str | None:
    """The server path of one of Gradio's uploads that `value` names (a file URL of this app or the
    path itself), or None."""
    from gradio.processing_utils import get_upload_folder
    from gradio.utils import is_in_or_equal

    path = unquote(value.split(FILE_URL_MARK, 1)[1]) if FILE_URL_MARK in value else value
    return path if is_in_or_equal(path, get_upload_folder()) else None


def _downloaded_copy(value: str) -> str | None:
    """The upload whose bytes and name a gradio_client download path (`<sha256>/<name>`) names, or None."""
    from gradio.processing_utils import get_upload_folder

    parts = value.replace("\\", "/").rstrip("/").split("/")
    if len(parts) < 2 or not SHA256.fullmatch(parts[-2]) or parts[-1] in ("", ".", "..") or "\x00" in parts[-1]:
        return None
    digest, name = parts[-2], parts[-1]
    uploads = Path(get_upload_folder())
    for folder in uploads.iterdir() if uploads.is_dir() else ():
        candidate = folder / name
        if candidate.is_file() and hashlib.sha256(candidate.read_bytes()).hexdigest() == digest:
            return str(candidate)
    return None


def _file(value: Any, where: str) -> Any:
    if not isinstance(value, str):
        return value  # FileData (checked by Gradio before we run), or invalid: said below
    path = _upload_path(value) or _downloaded_copy(value)
    if path is None:
        name = value.replace("\\", "/").rsplit("/", 1)[-1]
        # English: an API client's request carries no page language here (Gradio validates before any handler).
        raise gr.Error(text("chat.history_not_ours", where=where, name=name), print_exception=False)
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def _part(part: Any, where: str) -> Any:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if isinstance(part, dict) and part.get("type") == "file":
        return {**part, "file": _file(part.get("file"), where)}
    if isinstance(part, dict) and "path" in part and "type" not in part:  # {"path": ...} or a FileData
        return {"type": "file", "file": _file(part["path"], where) if "meta" not in part else part}
    return part


def normalise(history: Any) -> Any:
    """The history with every accepted shorthand turned into Gradio's messages (see the module doc)."""
    if not isinstance(history, list):
        return history
    out = []
    for n, message in enumerate(history):
        if isinstance(message, dict) and "content" in message:
            content = message["content"]
            parts = content if isinstance(content, list) else [content]
            message = {**message, "content": [_part(p, f"history[{n}]") for p in parts]}
        out.append(message)
    return out


def one_line(error: ValidationError) -> str:
    """Where the first problem is, and what it is, in one line."""
    first = error.errors()[0]
    where = "history" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"] if p != "root")
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return (
        f"{where}: {first['msg']}{more}. Each message is {{'role': ..., 'content': [{{'type': 'text', 'text': ...}}]}}."
    )


class HistoryMessages(ChatbotDataMessages):
    """Gradio's chat messages, taking what clients send back (module doc)."""

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Any:  # what Gradio calls on a client's value
        # Here rather than in a pydantic validator: pydantic would wrap our gr.Error in its own dump.
        try:
            return super().model_validate(normalise(obj), *args, **kwargs)
        except ValidationError as error:
            raise gr.Error(one_line(error), print_exception=False) from None


def history_chatbot(**kwargs: Any) -> gr.Chatbot:
    """A gr.Chatbot whose value, sent by a client, may be what `/chat` returned (HistoryMessages).

    The data model is set on the instance: a subclass of gr.Chatbot would make Gradio write a
    `.pyi` stub beside this module when it is imported.
    """
    chatbot = gr.Chatbot(**kwargs)
    chatbot.data_model = HistoryMessages  # what Gradio validates a client's value with
    return chatbot
