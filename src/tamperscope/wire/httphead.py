"""HTTP/1.x request-head parsing for middleboxes: method, target, Host.

The censor reads the Host of cleartext requests from the first segment of a
flow, and the lab's transparent proxy re-serialises whole request heads. Both
get bytes that may be hostile; parsing never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ")
MAX_HEAD = 65536
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]")


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]  # as sent: original case and order
    raw_len: int  # bytes up to and including the blank line

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None

    @property
    def host(self) -> str | None:
        h = self.header("host")
        if h is None:
            return None
        h = h.strip().lower()
        if h.startswith("["):
            return h
        return h.rsplit(":", 1)[0] if ":" in h else h


def looks_like_request(data: bytes) -> bool:
    return data.startswith(METHODS)


def _head_end(data: bytes) -> tuple[int, int]:
    """Where the head in `data` ends and the length of the blank line that ends it (4 for CRLF CRLF, 2 for LF
    LF), whichever comes first within MAX_HEAD; (the length looked at, 0) when no head ends there."""
    crlf, lf = data.find(b"\r\n\r\n", 0, MAX_HEAD), data.find(b"\n\n", 0, MAX_HEAD)
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    return (lf, 2) if lf >= 0 else (min(len(data), MAX_HEAD), 0)


def find_host(data: bytes) -> str | None:
    """The Host header of a request whose head starts in `data`, even if incomplete."""
    if not looks_like_request(data):
        return None
    low = data[:MAX_HEAD].lower()
    end, sep = _head_end(low)
    low = low[: end + sep // 2]  # the head's lines, each with its newline: not a body that follows it
    i = low.find(b"\nhost:")
    if i < 0:
        return None
    j = low.find(b"\n", i + 6)
    if j < 0:
        return None
    host = low[i + 6 : j].strip().decode("ascii", "replace")
    if host.startswith("["):
        return host
    return host.rsplit(":", 1)[0] if ":" in host else host


def parse_request_head(data: bytes) -> RequestHead | None:
    """Parse a complete request head (through CRLFCRLF), or None."""
    end, sep = _head_end(data)
    if sep == 0:
        return None
    lines = data[:end].decode("latin-1").replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1] or not _VERSION.fullmatch(parts[2]):
        return None
    headers = []
    for line in lines[1:]:
        if ":" not in line:
            return None
        k, v = line.split(":", 1)
        if not _TOKEN.fullmatch(k):
            return None
        headers.append((k, v.strip()))
    return RequestHead(parts[0], parts[1], parts[2], tuple(headers), end + sep)
