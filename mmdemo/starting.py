"""A placeholder on the app's port while it starts, so nobody meets a refused connection.

Importing gradio and torch and building the tabs takes ~6 s on 2 cores before Gradio listens.
Meanwhile this stdlib server answers on the same address: `/` with a short page saying the app
is starting (it reloads itself once the app answers), `/ready` with 503 (not ready yet, as the
app's own readiness check says until the models are resident). It stops just before Gradio
binds the port. Nothing heavy is imported here.
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


class _Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server's name for it
        ready = self.path.split("?")[0].rstrip("/").endswith("/ready")
        body = b'{"ready": false, "starting": true}' if ready else PAGE.encode()
        self.send_response(503 if ready else 200)
        self.send_header("Content-Type", "application/json" if ready else "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header(MARKER, "1")
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

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
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="mmdemo-starting",
                         daemon=True).start()  # fmt: skip
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        print(f"mmdemo: starting on http://{shown}:{self.port} (the page appears in a few seconds)", flush=True)
        return True

    def stop(self) -> None:
        """Stop answering and free the port (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
