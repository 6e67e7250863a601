"""A placeholder on the app's port while it starts, so nobody meets a refused connection.

Importing gradio and torch and building the tabs takes ~6 s on 2 cores before Gradio listens.
Meanwhile this stdlib server answers on the same address as a server that is not ready yet: a
browser asking for a page gets a short page saying the app is starting (it reloads itself once
the app answers); everything else (`/config`, `/gradio_api/...`, `/ready`, any request that
accepts JSON rather than HTML, any POST) gets `503` with `Retry-After` and a small JSON body, so
an API client waits and retries instead of parsing a web page, and an `--auth` app never answers
200 to `/config` without a login. It stops just before Gradio binds the port. Nothing heavy is
imported here.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

MARKER = "X-Mmdemo-Starting"  # on every placeholder answer: the page reloads once an answer lacks it
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>mmdemo</title></head>
<body style="font-family: sans-serif; margin: 3em;"><h1>mmdemo</h1>
<p>Starting: the page appears in a few seconds, and the models load in the background.</p>
<p lang="zh-CN">正在启动：页面几秒钟后出现，模型在后台加载。</p>
<script>
async function poll() {
  try {
    const answer = await fetch(location.href, {cache: "no-store"});
    if (!answer.headers.get("MARKER")) { location.reload(); return; }
  } catch (e) {}  // between this server and the app's: try again
  setTimeout(poll, 300);
}
poll();
</script></body></html>""".replace("MARKER", MARKER)


RETRY_AFTER_S = 2
NOT_READY = b'{"ready": false, "starting": true, "detail": "mmdemo is starting; retry shortly."}'
# Paths that are never a page, whatever the Accept header says.
API_PATHS = ("/config", "/info", "/ready", "/gradio_api", "/file=", "/upload", "/queue", "/heartbeat", "/mcp")


def wants_page(method: str, path: str, accept: str) -> bool:
    """Is this a browser asking for a page (HTML), rather than a client asking for data?"""
    path = path.split("?")[0]
    if method not in ("GET", "HEAD") or any(part in path for part in API_PATHS):
        return False
    return "text/html" in accept.lower()


class _Answer(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        if self.command not in ("GET", "HEAD"):  # drain a small body so the client reads our answer
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(min(length, 1 << 16))
        page = wants_page(self.command, self.path, self.headers.get("Accept", ""))
        body = PAGE.encode() if page else NOT_READY
        self.send_response(200 if page else 503)
        self.send_header("Content-Type", "text/html; charset=utf-8" if page else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if not page:
            self.send_header("Retry-After", str(RETRY_AFTER_S))
        self.send_header(MARKER, "1")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # http.server's names for them
    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per poll would flood the log


class StartingPage:
    """The placeholder server: `start()` it first thing, `stop()` it just before Gradio launches."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> bool:
        """Serve the placeholder; False (and nothing served) when the port cannot be bound."""
        try:
            self._server = ThreadingHTTPServer((self.host, self.port), _Answer)
        except OSError as exc:  # in use, or no such address: Gradio will say so in its own words
            log.debug("no starting page on %s:%s: %s", self.host, self.port, exc)
            return False
        self._server.daemon_threads = True
        # A short poll interval: stop() waits for the loop to notice, and the app is waiting to bind.
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="mmdemo-starting", daemon=True
        ).start()
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        print(f"mmdemo: starting on http://{shown}:{self.port} (the page appears in a few seconds)", flush=True)
        return True

    def stop(self) -> None:
        """Stop answering and free the port (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
