"""``fetch``: DNS → TCP → TLS → HTTP for one URL, following redirects, fully traced.

This is the composite most nettests and the control helper need. Each hop gets
a fresh connection from the :class:`~tamperscope.netx.connect.Connector`
(default: :class:`DirectConnector` over the given :class:`Resolver`), every
operation gets what is left of one overall deadline, and the result is data:
the responses received and the failure that ended the chain (``None`` when the
last response was not a redirect). As in OONI, the 11th redirect fails the
request with ``unknown_failure: stopped after too many redirects`` and a
``Location`` without a host fails it with ``http_invalid_redirect_location_host``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from tamperscope.model import failures as F
from tamperscope.netx.classify import NetxError
from tamperscope.netx.connect import Connector, DirectConnector
from tamperscope.netx.http import DEFAULT_HEADERS, URL_SAFE, HTTPResponse, Limits, Target, round_trip
from tamperscope.netx.resolver import SYSTEM, Resolver, resolve_fn
from tamperscope.netx.tls import DEFAULT_ALPN
from tamperscope.netx.trace import Trace

DEFAULT_FETCH_TIMEOUT = 30.0
MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The outcome of one ``fetch``; every record is also in the trace."""

    url: str  # the URL asked for
    responses: tuple[HTTPResponse, ...]  # every response received, in order
    failure: str | None  # what ended the chain; None when the final response is not a redirect
    failed_operation: str | None  # OONI operation of the failure ("resolve", "connect", ...)

    @property
    def final(self) -> HTTPResponse | None:
        """The last response received, if any."""
        return self.responses[-1] if self.responses else None


async def fetch(url: str, *, trace: Trace, resolver: Resolver = SYSTEM,
                connector: Connector | None = None, ca_bundle: str | None = None,
                timeout: float = DEFAULT_FETCH_TIMEOUT, max_redirects: int = MAX_REDIRECTS,
                limits: Limits = Limits(), headers: Sequence[tuple[str, str]] = DEFAULT_HEADERS,
                alpn: Sequence[str] = DEFAULT_ALPN, tags: Sequence[str] = (),
                allow: Callable[[str], bool] | None = None) -> FetchResult:
    """GET ``url`` within ``timeout`` seconds overall, following up to ``max_redirects``. ``allow``: which
    addresses the default connector may connect to, on every hop (`DirectConnector.allow`)."""
    if connector is None:
        hook = None if resolver.engine == "system" else resolve_fn(resolver)
        connector = DirectConnector(resolve=hook, ca_bundle=ca_bundle, alpn=tuple(alpn), allow=allow)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    responses: list[HTTPResponse] = []
    cookies: dict[str, dict[str, str]] = {}
    current = url
    for depth in range(max_redirects + 1):
        hop_tags = (*tags, f"depth={depth}")
        hop_headers = _with_cookies(headers, cookies.get(_host(current)))
        try:
            conn = await connector(current, trace=trace, timeout=max(0.0, deadline - loop.time()),
                                   tags=hop_tags)
            try:
                response = await round_trip(conn, current, trace=trace, headers=hop_headers,
                                            timeout=max(0.0, deadline - loop.time()),
                                            limits=limits, tags=hop_tags)
            finally:
                await conn.aclose()
        except NetxError as exc:
            return FetchResult(url, tuple(responses), exc.failure, exc.operation)
        responses.append(response)
        _keep_cookies(cookies, _host(current), response)
        location = response.header("Location") if response.status in _REDIRECTS else None
        if location is None:
            return FetchResult(url, tuple(responses), None, None)
        if depth == max_redirects:
            return _fail(url, responses, response, F.HTTP_TOO_MANY_REDIRECTS)
        following, failure = redirect_target(current, location)
        if following is None:
            return _fail(url, responses, response, failure)
        current = following
    raise AssertionError("unreachable")  # pragma: no cover


def _fail(url: str, responses: list[HTTPResponse], response: HTTPResponse,
          failure: str) -> FetchResult:
    if response.record is not None:
        response.record["failure"] = failure  # OONI marks the request that was not followed
    return FetchResult(url, tuple(responses), failure, F.HTTP_ROUND_TRIP)


def redirect_target(current: str, location: str) -> tuple[str | None, str]:
    """``(absolute URL, "")`` for a followable ``location``, else ``(None, failure)``.

    Raw non-ASCII bytes, spaces and control characters in ``location`` (a header value
    decoded as latin-1) are percent-encoded, as browsers do before following it; a
    host name in UTF-8 (an IDN) is written in its IDNA form instead.
    """
    invalid = F.HTTP_INVALID_REDIRECT_LOCATION_HOST
    location = location.strip()
    if not location:
        return None, invalid
    try:
        raw = location.encode("latin-1")
    except UnicodeEncodeError:  # not from a header: text, sent as UTF-8
        raw = location.encode("utf-8", "surrogateescape")
    if not raw.isascii():
        try:
            raw = _idna_host(raw.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            pass  # not UTF-8: percent-encoded as it is
        except ValueError:  # a host that is no IDN (UnicodeError is a ValueError)
            return None, invalid
    location = quote(raw, safe=URL_SAFE)
    try:
        given = urlsplit(location)
    except ValueError:
        return None, invalid
    if (given.scheme or location.startswith("//")) and not given.hostname:
        return None, invalid  # "http://", "//": absolute, but without a host
    if "%" in (given.hostname or ""):
        return None, invalid  # a byte in the host that is neither ASCII nor UTF-8, now percent-encoded
    following = urljoin(current, location)
    scheme = urlsplit(following).scheme.lower()
    if scheme not in ("http", "https"):
        return None, F.unknown(f"unsupported protocol scheme {scheme!r}")
    try:
        Target.parse(following)
    except ValueError:
        return None, invalid
    return following, ""


def _idna_host(location: str) -> str:
    """``location`` with a non-ASCII host name in its IDNA form (``http://яндекс.рф/`` is
    ``http://xn--d1acpjx3f.xn--p1ai/``); ValueError when that host cannot be one."""
    parts = urlsplit(location)
    if parts.netloc.isascii():
        return location
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host, colon, port = hostport.partition(":")
    ascii_host = host.encode("idna").decode("ascii")
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{ascii_host}{colon}{port}"))


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _keep_cookies(jar: dict[str, dict[str, str]], host: str, response: HTTPResponse) -> None:
    """A minimal per-host jar: some sites redirect in a loop until a cookie comes back."""
    for name, value in response.headers:
        if name.lower() != b"set-cookie":
            continue
        pair = value.split(b";", 1)[0].decode("latin-1").strip()
        key, sep, val = pair.partition("=")
        if sep and key:
            jar.setdefault(host, {})[key.strip()] = val.strip()


def _with_cookies(headers: Sequence[tuple[str, str]],
                  cookies: dict[str, str] | None) -> Sequence[tuple[str, str]]:
    if not cookies:
        return headers
    value = "; ".join(f"{k}={v}" for k, v in cookies.items())
    return (*headers, ("Cookie", value))
