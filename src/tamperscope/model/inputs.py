"""Measurement inputs: URL validation and test lists (Citizen Lab CSV or one URL per line).

Pure functions, shared by the probe and the lab's `expect`. Malformed input
raises `BadInput` with a one-line message naming the source and the entry.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from urllib.parse import urlsplit


class BadInput(ValueError):
    """A URL or list the user gave cannot be used; the message is one line."""


@dataclass(frozen=True)
class URLParts:
    scheme: str
    host: str  # lower-cased, no trailing dot, IPv6 without brackets
    port: int
    path: str  # path and query, at least "/"


def unicode_host(host: str) -> str:
    """A host name with its IDNA labels (``xn--...``) decoded: the one form stores keep and readers read
    (``xn--d1acpjx3f.xn--p1ai`` is ``яндекс.рф``). A label that does not decode is kept as it is."""
    if "xn--" not in host:
        return host
    labels = []
    for label in host.split("."):
        if label.startswith("xn--"):
            try:
                label = label.encode("ascii").decode("idna")
            except (UnicodeError, ValueError):
                pass
        labels.append(label)
    return ".".join(labels)


def host_forms(host: str) -> tuple[str, ...]:
    """The spellings a store may hold for ``host``: as decoded by `unicode_host`, and in IDNA (ASCII)."""
    forms = [unicode_host(host)]
    try:
        ascii_form = forms[0].encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        ascii_form = host
    for form in (ascii_form, host):
        if form not in forms:
            forms.append(form)
    return tuple(forms)


def parse_url(url: str) -> URLParts:
    """Split an http(s) URL, or raise BadInput."""
    if not isinstance(url, str) or not url.strip():
        raise BadInput("empty URL")
    if any(c in url for c in "\r\n\t ") and url.strip() != url:
        url = url.strip()
    if any(ord(c) < 0x21 for c in url):
        raise BadInput(f"malformed URL {url!r}: control characters or spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise BadInput(f"malformed URL {url!r}: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise BadInput(f"not an http(s) URL: {url!r}")
    if not parts.hostname:
        raise BadInput(f"malformed URL {url!r}: no host")
    host = parts.hostname.lower().rstrip(".")
    if len(host) > 253 or not host or ".." in host:
        raise BadInput(f"malformed URL {url!r}: bad host name")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return URLParts(parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path)


@dataclass(frozen=True)
class ListEntry:
    url: str
    category_code: str | None = None


def read_url_list(text: str, source: str = "list") -> list[ListEntry]:
    """Entries of a Citizen Lab test-list CSV (header starting `url`) or of a one-URL-per-line file."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise BadInput(f"{source}: no URLs in it")
    entries: list[ListEntry] = []
    if lines[0].split(",")[0].strip().lower() == "url":
        try:
            rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
        except csv.Error as e:
            raise BadInput(f"{source}: not a valid CSV file: {e}") from None
        for i, row in enumerate(rows, 2):
            url = (row.get("url") or "").strip()
            if not url:
                raise BadInput(f"{source}: line {i}: no url")
            entries.append(ListEntry(url, (row.get("category_code") or "").strip() or None))
    else:
        entries = [ListEntry(ln.strip()) for ln in lines]
    for i, e in enumerate(entries, 1):
        try:
            parse_url(e.url)
        except BadInput as err:
            raise BadInput(f"{source}: entry {i}: {err}") from None
    return entries
