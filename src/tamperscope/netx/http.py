"""Traced HTTP round trips over an established connection (HTTP/1.1 or HTTP/2 by ALPN).

``round_trip`` sends one request over a :class:`~tamperscope.netx.stream.Connection`
and records one entry in ``trace.requests`` in OONI's shape (newest first),
with the body capped (``body_is_truncated``) and the response headers capped in
bytes and count, so a hostile server can neither exhaust memory nor hang us
past the timeout. The wire work is in ``http11.py`` (h11) and ``http2.py`` (h2);
redirects and connection strategy are in ``fetch.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from tamperscope.model import failures as F
from tamperscope.netx.classify import HTTPError, NetxError, classify
from tamperscope.netx.stream import Connection
from tamperscope.netx.trace import TOR_INFO_OFF, Record, Trace, empty_response, headers_fields, maybe_binary

DEFAULT_HTTP_TIMEOUT = 15.0
DEFAULT_BODY_LIMIT = 512 * 1024
USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
              "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36")
DEFAULT_HEADERS: tuple[tuple[str, str], ...] = (
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.9"),
    ("User-Agent", USER_AGENT),
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps that keep a hostile server from exhausting memory or time."""

    body: int = DEFAULT_BODY_LIMIT  # bytes of body kept; more sets body_is_truncated
    header_bytes: int = 64 * 1024  # bytes of response head before failing
    headers: int = 100  # number of response header fields before failing


# What a request target may hold as is: printable ASCII but the space (h11 refuses the rest).
URL_SAFE = "".join(map(chr, range(0x21, 0x7F)))


@dataclass(frozen=True, slots=True)
class Target:
    """The parts of a URL a request needs."""

    scheme: str  # "http" or "https"
    host: str  # without brackets, lowercase
    port: int
    authority: str  # Host header / :authority value
    path: str  # request target: path and query

    @classmethod
    def parse(cls, url: str) -> Target:
        """Split ``url``; raises ``ValueError`` for a URL we cannot request."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme: {scheme!r}")
        host = (parts.hostname or "").lower()
        if not host:
            raise ValueError("URL without a host")
        if not host.isascii():
            host = host.encode("idna").decode("ascii")  # UnicodeError is a ValueError
        default = 443 if scheme == "https" else 80
        port = parts.port  # raises ValueError on a bad port
        if port == 0:  # (a redirect to http://host:0/): no service listens there, and 0 is no default
            raise ValueError("URL with port 0")
        port = port or default
        shown = f"[{host}]" if ":" in host else host
        authority = shown if port == default else f"{shown}:{port}"
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        # As a browser sends it: text beyond ASCII in UTF-8, percent-encoded, and spaces and control characters
        # too (h11 refuses them: http://a.com/é failed before anything was sent, a failure no censor caused).
        # An escape already there ("%20") stays as written.
        return cls(scheme, host, port, authority, quote(path, safe=URL_SAFE))


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    """One response as received (possibly with a truncated body)."""

    url: str  # the URL that was requested
    status: int
    headers: tuple[tuple[bytes, bytes], ...]  # as received (HTTP/2 names are lowercase)
    body: bytes  # at most Limits.body bytes
    body_is_truncated: bool
    http_version: str  # "HTTP/1.1", "HTTP/1.0" or "HTTP/2"
    address: str  # "ip:port" of the server
    transaction_id: int
    record: Record | None = field(default=None, compare=False, repr=False)  # its trace entry

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), decoded as latin-1."""
        wanted = name.lower().encode("latin-1")
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None


class Partial:
    """What a protocol module has received so far, kept for the record when it fails."""

    __slots__ = ("status", "headers", "body", "truncated", "http_version")

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        # One buffer, not a list of pieces: a body sent as 1-byte chunks or DATA frames
        # would otherwise cost some 100 bytes of objects per byte kept.
        self.body = bytearray()
        self.truncated = False
        self.http_version = ""

    def add_body(self, data: bytes, limit: int) -> bool:
        """Keep ``data`` up to ``limit`` bytes in total; False once the cap is exceeded."""
        room = limit - len(self.body)
        if len(data) > room:
            if room > 0:
                self.body += data[:room]
            self.truncated = True
            return False
        self.body += data
        return True

    def check_headers(self, limits: Limits) -> None:
        if len(self.headers) > limits.headers:
            raise HTTPError(F.HTTP_TOO_MANY_HEADERS)
        if sum(len(k) + len(v) + 4 for k, v in self.headers) > limits.header_bytes:
            raise HTTPError(F.HTTP_HEADERS_TOO_LARGE)


@dataclass(frozen=True, slots=True)
class Request:
    """A request as it is sent and recorded."""

    method: str
    url: str
    target: Target
    headers: tuple[tuple[str, str], ...]  # without Host, which the protocol module adds
    body: bytes = b""


async def round_trip(conn: Connection, url: str, *, trace: Trace | None = None,
                     method: str = "GET", headers: Sequence[tuple[str, str]] = DEFAULT_HEADERS,
                     body: bytes = b"", timeout: float = DEFAULT_HTTP_TIMEOUT,
                     limits: Limits = Limits(), record: bool = True,
                     tags: Sequence[str] = ()) -> HTTPResponse:
    """One request over ``conn`` (HTTP/2 when ALPN said ``h2``), recorded in ``trace.requests``.

    Raises :class:`NetxError` on failure; the record (with any partial response)
    is written first. The connection is left open: the caller closes it.
    """
    from tamperscope.netx import http2, http11  # the protocol modules import this one

    trace = conn.trace if trace is None else trace
    t0 = trace.now()
    partial = Partial()
    request: Request | None = None
    try:
        target = Target.parse(url)
        request = Request(method, url, target, tuple(headers), body)
        async with asyncio.timeout(timeout):
            if conn.alpn == "h2":
                await http2.exchange(conn, request, partial, limits)
            else:
                await http11.exchange(conn, request, partial, limits)
    except BaseException as exc:
        failure = classify(exc, operation=F.HTTP_ROUND_TRIP)
        if record:
            trace.add_request(_record(trace, conn, request, method, url, headers, body,
                                      partial, failure, t0, tags))
        if isinstance(exc, NetxError):
            exc.received = len(partial.body)
            raise
        if isinstance(exc, Exception):
            error = HTTPError(failure, operation=F.HTTP_ROUND_TRIP, endpoint=url)
            error.received = len(partial.body)
            raise error from exc
        raise
    entry = None
    if record:
        entry = _record(trace, conn, request, method, url, headers, body, partial, None, t0, tags)
        trace.add_request(entry)
    return HTTPResponse(url, partial.status, tuple(partial.headers), bytes(partial.body),
                        partial.truncated, partial.http_version, conn.address,
                        conn.transaction_id, entry)


def request_headers(request: Request) -> list[tuple[bytes, bytes]]:
    """The header fields we send, Host first, as bytes."""
    pairs = [(b"Host", request.target.authority.encode("ascii"))]
    pairs += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in request.headers
              if k.lower() != "host"]
    if request.body and not any(k.lower() == "content-length" for k, _ in request.headers):
        pairs.append((b"Content-Length", str(len(request.body)).encode("ascii")))
    return pairs


def _record(trace: Trace, conn: Connection, request: Request | None, method: str, url: str,
            headers: Sequence[tuple[str, str]], body: bytes, partial: Partial,
            failure: str | None, t0: float, tags: Sequence[str]) -> Record:
    if request is not None:
        sent = request_headers(request)
    else:
        sent = [(k.encode("latin-1", "replace"), v.encode("latin-1", "replace")) for k, v in headers]
    req_headers, req_list = headers_fields(sent)
    if partial.status:
        resp_headers, resp_list = headers_fields(partial.headers)
        response: Record = {
            "body": maybe_binary(bytes(partial.body)),
            "body_is_truncated": partial.truncated, "code": partial.status,
            "headers": resp_headers, "headers_list": resp_list,
        }
    else:
        response = empty_response()
    entry: Record = {
        "network": "tcp", "address": conn.address, "failure": failure,
        "request": {
            "body": maybe_binary(body), "body_is_truncated": False, "headers": req_headers,
            "headers_list": req_list, "method": method, "tor": dict(TOR_INFO_OFF),
            "x_transport": "tcp", "url": url,
        },
        "response": response, "t0": t0, "t": trace.now(), "tags": list(tags),
        "transaction_id": conn.transaction_id,
    }
    if conn.alpn:
        entry["alpn"] = conn.alpn
    return entry
