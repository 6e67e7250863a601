"""Images named by a machine client: an http(s) URL or a data URI, fetched into a folder of ours.

A URL a stranger sends is a request the *server* makes: it must not reach this machine or its
private network (server-side request forgery). So the host's addresses must all be public unless
the operator allowed that host (`MMDEMO_URL_ALLOWED_HOSTS`, e.g. an intranet photo server);
redirects are followed by hand, each hop checked the same way; the body is capped at the upload
limit while it streams.

Each hop's host is resolved once, and the connection goes to the address that was checked (the URL's
host replaced by it; the name kept in the Host header and, for https, in TLS's server name and the
certificate check): a name that answers a public address to the check and loopback to the connection
(DNS rebinding) reaches nothing but the address checked. IPv6 forms that carry an IPv4 address
(IPv4-compatible, NAT64, 6to4, Teredo) are refused outright: the address inside is not what is checked.
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
from typing import Any
from urllib.parse import urljoin, urlparse

import httpx  # gradio's own HTTP client: installed with it

from mmdemo.errors import UserFacingError
from mmdemo.files import inside

MAX_REDIRECTS = 3
TIMEOUT_S = 15.0
DATA_URI = re.compile(r"data:((?:image|video)/[\w.+-]+)?(;[\w=.+-]+)*;base64,(?P<data>.*)", re.DOTALL)
SUFFIXES = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/heic": ".heic",
    "image/heif": ".heif",
    "image/avif": ".avif",
    "video/mp4": ".mp4",  # a video's moments are indexed (mmdemo.search.moments): its suffix says it is one
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "video/x-matroska": ".mkv",
}


@dataclass(frozen=True)
class Fetched:
    """One fetched image: where it is now, and a name to show for it."""

    path: Path
    name: str


# IPv6 ranges that embed an IPv4 address a gateway would reach (Python's is_global lets some of them through).
EMBEDS_IPV4 = [
    ipaddress.ip_network(n)
    for n in ("::/96", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32")
]


def _refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and any(ip in net for net in EMBEDS_IPV4):
        return True
    return not ip.is_global or ip.is_multicast


def _pinned(host: str, allowed: Sequence[str]) -> str:
    """The address to connect to for `host`: all its addresses checked (none loopback, private, link-local,
    reserved, or an IPv6 form of an IPv4 one), the first of them. An allowed host keeps its name."""
    if host.lower() in {a.lower() for a in allowed}:
        return host
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        raise UserFacingError(key="fetch.unresolved", host=host) from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses or any(_refused(ip) for ip in addresses):
        raise UserFacingError(key="fetch.private", host=host)
    return str(addresses[0])


def _pinned_request(http: Any, url: str, allowed: Sequence[str]) -> Any:
    """A GET of `url` that connects to the checked address of its host (see the module docstring)."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    address = _pinned(host, allowed)
    target = httpx.URL(url)
    headers = {"Host": target.netloc.decode("ascii").rpartition("@")[2]}
    if address != host:
        target = target.copy_with(host=address)
    return http.build_request("GET", target, headers=headers, extensions={"sni_hostname": host})


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
    name = Path(urlparse(url).path).name or "image"
    path = inside(folder, secrets.token_hex(8) + (Path(name).suffix.lower()[:6] or ".img"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with httpx.Client(timeout=TIMEOUT_S, follow_redirects=False) as http:
        for _ in range(MAX_REDIRECTS + 1):
            answer = http.send(_pinned_request(http, url, allowed_hosts), stream=True)
            try:
                if answer.is_redirect and "location" in answer.headers:
                    url = urljoin(url, answer.headers["location"])
                    if urlparse(url).scheme not in ("http", "https"):
                        raise UserFacingError(key="fetch.not_a_url", value=url[:60])
                    continue
                if answer.status_code != 200:
                    raise UserFacingError(key="fetch.failed", host=urlparse(url).hostname, status=answer.status_code)
                _save(answer, path, max_bytes)
                return Fetched(path, name)
            finally:
                answer.close()
    raise UserFacingError(key="fetch.failed", host=urlparse(url).hostname, status="too many redirects")


def _save(answer: httpx.Response, path: Path, max_bytes: int) -> None:
    """The streamed body into `path`, stopped (and the file removed) past `max_bytes`."""
    size = 0
    with path.open("wb") as out:
        for chunk in answer.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                out.close()
                path.unlink(missing_ok=True)
                raise UserFacingError(key="fetch.too_big", mb=max_bytes // 1_000_000)
            out.write(chunk)
