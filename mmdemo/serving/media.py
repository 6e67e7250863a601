"""GET /media/...: gallery thumbnails (and videos' playable copies) by their place in the media folder.

A URL an agent is given must carry an image and nothing else: no server path, no collection token
(a token in a link grants list, search and delete to whoever the link is passed to). Thumbnails live
in `<data dir>/media/` (mmdemo.search.thumbs), named by content hash, in `shared/` or
in `private/<gallery key>/` — a key is a hash of the token, which no tool accepts. The route serves
exactly those names (checked by pattern, then resolved inside the folder), as JPEG, and nothing else;
behind `--auth`, to logged-in users only, as Gradio's own file route does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from starlette.requests import Request  # at module level: FastAPI resolves the route's annotations here

from mmdemo.files import OutsideFolderError, inside

ROUTE = "/media"
# A thumbnail (an image's, or a video moment's keyframe: its hash, "-", its start in ms), or a playable video.
NAME = re.compile(r"(shared|private/[0-9a-f]{32})/([0-9a-f]{2}/[0-9a-f]{32}(-[0-9]{9})?\.jpg|videos/[0-9a-f]{32}\.mp4)")


def base_url(request: Any, root_path: str) -> str:
    """The app's URL as the client of `request` sees it (an MCP call reaches us with the agent's own headers)."""
    headers = getattr(request, "headers", None) or {}
    scheme = (headers.get("x-forwarded-proto") or "http").split(",")[0].strip()
    host = (headers.get("x-forwarded-host") or headers.get("host") or "127.0.0.1").split(",")[0].strip()
    return f"{scheme}://{host}{root_path.rstrip('/')}"


def media_url(base: str, thumb: str, media: Path) -> str:
    """The URL of thumbnail `thumb` (a path in the media folder `media`) for a client of the app at `base`."""
    relative = Path(thumb).resolve().relative_to(media.resolve())
    return f"{base.rstrip('/')}{ROUTE}/{relative.as_posix()}"


def media_file(media: Path, name: str) -> Path | None:
    """The thumbnail a media URL names, if it is one that exists."""
    if not NAME.fullmatch(name):
        return None
    try:
        path = inside(media, name)
    except OutsideFolderError:
        return None
    return path if path.is_file() else None


def add_media_route(app: Any, media: Path) -> None:
    """Serve GET /media/<name> on the launched Gradio app `app` (its FastAPI app is `app.app`)."""
    from fastapi.responses import FileResponse, PlainTextResponse, Response

    server = app.app

    def logged_in(request: Request) -> bool:
        # As Gradio's routes decide it (docs/private-apis.md): no login configured, or a valid login cookie.
        if getattr(server, "auth", None) is None and getattr(server, "auth_dependency", None) is None:
            return True
        if server.auth_dependency is not None:
            return server.auth_dependency(request) is not None
        cookie = f"access-token-{server.cookie_id}"
        token = request.cookies.get(cookie) or request.cookies.get(f"access-token-unsecure-{server.cookie_id}")
        return server.tokens.get(token) is not None

    def serve_media(name: str, request: Request) -> Response:
        if not logged_in(request):
            return PlainTextResponse("Not authenticated", status_code=401)
        path = media_file(media, name)
        if path is None:
            return PlainTextResponse("Not found", status_code=404)
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=86400"}
        kind = "video/mp4" if path.suffix == ".mp4" else "image/jpeg"  # a video is served in ranges (seeking)
        return FileResponse(path, media_type=kind, headers=headers)

    server.add_api_route(ROUTE + "/{name:path}", serve_media, methods=["GET"])
