"""Chat history edits (regenerate, undo) on gradio's messages format, without gradio."""

from __future__ import annotations

from typing import Any

Message = dict[str, Any]


def last_user_index(history: list[Message]) -> int:
    """Index of the first message of the last user turn (a turn may be several messages)."""
    i = len(history) - 1
    while i >= 0 and history[i]["role"] != "user":
        i -= 1
    while i > 0 and history[i - 1]["role"] == "user":
        i -= 1
    return max(i, 0)


def without_last_answer(history: list[Message]) -> list[Message]:
    """The history up to and including the last user turn: what Regenerate answers again."""
    i = len(history)
    while i > 0 and history[i - 1]["role"] != "user":
        i -= 1
    return list(history[:i])


def pop_last_turn(history: list[Message]) -> tuple[list[Message], str, list[str]]:
    """Remove the last user turn and its answer; return what is left, and that turn's text and files."""
    start = last_user_index(history)
    text, files = [], []
    for message in history[start:]:
        if message["role"] != "user":
            continue
        for item in message["content"] if isinstance(message["content"], list) else [message["content"]]:
            if isinstance(item, str):
                text.append(item)
            elif isinstance(item, dict) and item.get("type") == "text":
                text.append(item["text"])
            elif isinstance(item, dict):
                file = item.get("file", item)
                if isinstance(file, dict) and file.get("path"):
                    files.append(file["path"])
    return list(history[:start]), "\n".join(t for t in text if t), files
