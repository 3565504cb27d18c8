"""Security headers on every response: measurement content is hostile, pages must not run it.

`CSP` allows scripts and styles from this origin only (``'self'``): no inline
``<script>``, no ``on*=`` attributes, no ``javascript:`` URLs, no ``eval``, no
third-party origin (plotly is served from ``/static``). Frames only from this
origin (the sandboxed view of a captured page), forms post only here, and no
one may frame the explorer itself.

`SANDBOX_CSP` is for the captured page served into that frame: the ``sandbox``
directive (a unique origin, no scripts, no forms, no popups) and no fetches at
all except inline images and styles, so a blockpage cannot even call home.

A response that already carries a Content-Security-Policy keeps it.

`not_modified` is the one reading of ``If-None-Match`` (the feeds, the static files): RFC 9110's weak comparison.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")

SANDBOX_CSP = ("sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
               "form-action 'none'; base-uri 'none'; frame-ancestors 'self'")

COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
)


class SecurityHeaders:
    """Adds CSP and friends to every HTTP response that does not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", CSP.encode()))
                    headers.append((b"x-frame-options", b"DENY"))
                for name, value in COMMON:
                    if name not in present:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


# One member of If-None-Match's list: empty members and whitespace before it, the tag (weak or not), then a comma or
# the end. A tag's characters (etagc) include the comma, so the list cannot be split on commas.
_MEMBER = re.compile(r'[ \t,]*((?:W/)?"[\x21\x23-\x7e\x80-\xff]*")[ \t]*(?:,|\Z)')


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """Whether a GET with this ``If-None-Match`` is answered 304 for a representation whose ETag is ``etag``
    (RFC 9110 §13.1.2): ``*`` matches any; otherwise the header is a comma-separated list of entity tags, any of
    which matches by the weak comparison (``W/"x"`` and ``"x"`` are the same tag). A header that is no such list
    matches nothing (the full answer is sent: never a wrong 304)."""
    value = (if_none_match or "").strip()
    if value == "*":
        return True
    opaque = etag.removeprefix("W/")
    found = False
    at = 0
    while value[at:].strip(" \t,"):
        member = _MEMBER.match(value, at)
        if member is None:
            return False
        found = found or member[1].removeprefix("W/") == opaque
        at = member.end()
    return found


__all__ = ["CSP", "SANDBOX_CSP", "SecurityHeaders", "not_modified"]
