"""Chat history edits (regenerate, undo) on gradio's messages format, without gradio."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from mmdemo.i18n import DEFAULT, text

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


def _parts(message: Message) -> list[tuple[str, str]]:
    """A message's content as ("text", text) and ("file", name) parts, whatever gradio's shape."""
    out = []
    for item in message["content"] if isinstance(message["content"], list) else [message["content"]]:
        if isinstance(item, str):
            out.append(("text", item))
        elif isinstance(item, dict) and item.get("type") == "text":
            out.append(("text", item.get("text", "")))
        elif isinstance(item, dict):
            file = item.get("file", item)
            path = file.get("path") if isinstance(file, dict) else file if isinstance(file, str) else None
            if path:
                name = (file.get("orig_name") if isinstance(file, dict) else None) or PurePath(path).name
                out.append(("file", name))
    return [(kind, value) for kind, value in out if value]


def to_transcript(history: list[Message], system_prompt: str = "") -> list[dict[str, Any]]:
    """The conversation as plain data: one entry per turn (consecutive messages of a role merged),
    text joined, attachments referenced by file name (no server paths, no pixels)."""
    turns: list[dict[str, Any]] = [{"role": "system", "text": system_prompt, "files": []}] if system_prompt else []
    for message in history:
        parts = _parts(message)
        if not parts:
            continue
        if not turns or turns[-1]["role"] != message["role"]:
            turns.append({"role": message["role"], "text": "", "files": []})
        turn = turns[-1]
        for kind, value in parts:
            if kind == "file":
                turn["files"].append(value)
            else:
                turn["text"] = f"{turn['text']}\n\n{value}" if turn["text"] else value
    return turns


def to_markdown(transcript: list[dict[str, Any]], language: str = DEFAULT) -> str:
    """A transcript as Markdown in `language`: a heading per turn, its attachments by name, then its text."""
    titles = {role: text(f"chat.export_{role}", language) for role in ("system", "user", "assistant")}
    blocks = []
    for turn in transcript:
        lines = [f"### {titles.get(turn['role'], turn['role'])}"]
        lines += [f"*{text('chat.export_attached', language, name=name)}*" for name in turn["files"]]
        lines.append(turn["text"])
        blocks.append("\n\n".join(line for line in lines if line))
    return "\n\n".join(blocks) + "\n"
