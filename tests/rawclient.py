"""A Gradio client that speaks the raw HTTP protocol, as an attacker's script would: any fn_index
(private events too), any session_hash, any data — no gradio_client checks in between."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


@dataclass
class Outcome:
    """What one call got back: HTTP refusal, error message, or output; `text` is everything it was sent."""

    status: int  # of the join (or direct call)
    success: bool = False
    error: str | None = None
    output: Any = None
    text: str = ""  # the raw answer (join response + every SSE message)
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def said(self) -> str:
        """A short line: what the client was told."""
        if self.status != 200:
            return f"HTTP {self.status}: {self.text[:120]}"
        if self.success:
            return "ok"
        return f"error: {(self.error or '')[:120]}"


class RawClient:
    """POST /gradio_api/queue/join + GET /gradio_api/queue/data, or POST /gradio_api/run/predict."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, timeout: float = 120) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers or {}, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def config(self) -> dict[str, Any]:
        return self.http.get("/config", headers={"Accept": "application/json"}).raise_for_status().json()

    def upload(self, path: Path) -> dict[str, Any]:
        """Upload a file as the browser does: its FileData."""
        with path.open("rb") as fh:
            (server_path,) = self.http.post("/gradio_api/upload", files={"files": (path.name, fh)}).json()
        return {"path": server_path, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def join(
        self,
        fn_index: int,
        data: list[Any],
        session_hash: str,
        trigger_id: int | None = None,
        event_data: Any = None,
    ) -> httpx.Response:
        body = {
            "data": data,
            "fn_index": fn_index,
            "session_hash": session_hash,
            "trigger_id": trigger_id,
            "event_data": event_data,
        }
        return self.http.post("/gradio_api/queue/join", json=body)

    def call(
        self,
        fn_index: int,
        data: list[Any],
        session_hash: str,
        queued: bool = True,
        trigger_id: int | None = None,
        event_data: Any = None,
    ) -> Outcome:
        """One event, start to finish."""
        if not queued:
            body = {"data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": event_data}
            answer = self.http.post("/gradio_api/run/predict", json=body)
            outcome = Outcome(answer.status_code, text=answer.text)
            if answer.status_code == 200:
                outcome.success, outcome.output = True, answer.json().get("data")
            else:
                outcome.error = answer.text
            return outcome
        joined = self.join(fn_index, data, session_hash, trigger_id, event_data)
        if joined.status_code != 200:
            return Outcome(joined.status_code, error=joined.text, text=joined.text)
        return self.follow(joined.json()["event_id"], session_hash)

    def follow(self, event_id: str, session_hash: str) -> Outcome:
        """Read the session's event stream until `event_id` completes."""
        outcome = Outcome(200)
        with self.http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session_hash}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                outcome.text += line + "\n"
                message = json.loads(line[5:])
                outcome.messages.append(message)
                if message.get("msg") == "unexpected_error":
                    outcome.error = message.get("message")
                    return outcome
                if message.get("event_id") != event_id or message.get("msg") != "process_completed":
                    continue
                outcome.success = bool(message.get("success"))
                body = message.get("output") or {}
                outcome.output = body.get("data")
                outcome.error = None if outcome.success else str(body.get("error") or body)
                return outcome
        outcome.error = "the stream ended before the event completed"
        return outcome
