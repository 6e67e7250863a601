"""Images named by a machine client: an http(s) URL or a data URI, fetched into a folder of ours.

A URL a stranger sends is a request the *server* makes: it must not reach this machine or its
private network (server-side request forgery). So the host's addresses must all be public unless
the operator allowed that host (`MMDEMO_URL_ALLOWED_HOSTS`, e.g. an intranet photo server);
redirects are followed by hand, each hop checked the same way; the body is capped at the upload
limit while it streams. (A DNS answer that changes between the check and the connection is not
caught here: a proxy with an egress policy is the complete answer; see SECURITY.md.)
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlparse

from mmdemo.errors import UserFacingError
from mmdemo.files import inside

MAX_REDIRECTS = 3
TIMEOUT_S = 15.0
DATA_URI = re.compile(r"data:(image/[\w.+-]+)?(;[\w=.+-]+)*;base64,(?P<data>.*)", re.DOTALL)
SUFFIXES = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp", "image/bmp": ".bmp"}


@dataclass(frozen=True)
class Fetched:
    """One fetched image: where it is now, and a name to show for it."""

    path: Path
    name: str


def _public(host: str, allowed: Sequence[str]) -> None:
    """Refuse a host that resolves to a loopback, private, link-local or reserved address (unless allowed)."""
    if host.lower() in {a.lower() for a in allowed}:
        return
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        raise UserFacingError(key="fetch.unresolved", host=host) from None
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not ip.is_global or ip.is_multicast:
            raise UserFacingError(key="fetch.private", host=host)


def fetch_image(source: str, folder: Path, max_bytes: int, allowed_hosts: Sequence[str] = ()) -> Fetched:
    """`source` (an http(s) URL or a data:image/...;base64 URI) saved under `folder` by a generated name."""
    source = (source or "").strip()
    if source.startswith("data:"):
        return _from_data_uri(source, folder, max_bytes)
    parsed = urlparse(source)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UserFacingError(key="fetch.not_a_url", value=source[:60])
    return _download(source, folder, max_bytes, allowed_hosts)


def _from_data_uri(source: str, folder: Path, max_bytes: int) -> Fetched:
    match = DATA_URI.fullmatch(source)
    if not match:
        raise UserFacingError(key="fetch.not_a_url", value=source[:60])
    if len(match["data"]) * 3 // 4 > max_bytes:
        raise UserFacingError(key="fetch.too_big", mb=max_bytes // 1_000_000)
    try:
        data = base64.b64decode(match["data"], validate=False)
    except (binascii.Error, ValueError):
        raise UserFacingError(key="fetch.not_a_url", value=source[:60]) from None
    path = inside(folder, secrets.token_hex(8) + SUFFIXES.get(match.group(1) or "", ".img"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Fetched(path, "image" + path.suffix)


def _download(url: str, folder: Path, max_bytes: int, allowed_hosts: Sequence[str]) -> Fetched:
    import httpx  # gradio's own HTTP client: installed with it

    name = Path(urlparse(url).path).name or "image"
    path = inside(folder, secrets.token_hex(8) + (Path(name).suffix.lower()[:6] or ".img"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with httpx.Client(timeout=TIMEOUT_S, follow_redirects=False) as http:
        for _ in range(MAX_REDIRECTS + 1):
            _public(urlparse(url).hostname or "", allowed_hosts)
            with http.stream("GET", url) as answer:
                if answer.is_redirect and "location" in answer.headers:
                    url = urljoin(url, answer.headers["location"])
                    if urlparse(url).scheme not in ("http", "https"):
                        raise UserFacingError(key="fetch.not_a_url", value=url[:60])
                    continue
                if answer.status_code != 200:
                    raise UserFacingError(key="fetch.failed", host=urlparse(url).hostname, status=answer.status_code)
                size = 0
                with path.open("wb") as out:
                    for chunk in answer.iter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            out.close()
                            path.unlink(missing_ok=True)
                            raise UserFacingError(key="fetch.too_big", mb=max_bytes // 1_000_000)
                        out.write(chunk)
                return Fetched(path, name)
    raise UserFacingError(key="fetch.failed", host=urlparse(url).hostname, status="too many redirects")
