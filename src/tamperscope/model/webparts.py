"""The parts of a web measurement read from its strings: endpoints, URLs, host names, addresses, bodies,
headers, titles and nettest versions.

Pure functions of hostile values: an unparsable URL reads as an empty one, a body that does not decode
as empty, a host name that IDNA refuses as given. Those of one string are memoised in bounded LRU
caches, since a corpus repeats the same hosts and addresses (``analyze`` calls them for every record).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

_BOGON_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "100::/64", "2001:10::/28", "2001:db8::/32", "fc00::/7",
        "fe80::/10", "ff00::/8",
    )
)
_TITLE_RE = re.compile(r"(?i)<title>([^<]{1,512})</title>")
# ASCII digits, nine at most: "\u0661.\u0664" is no version, nor a number int() refuses (over 4,300 digits)
_VERSION_RE = re.compile(r"^([0-9]{1,9})\.([0-9]{1,9})(?![0-9])")
MEMO_SIZE = 16384  # entries of each string-keyed memo (IPs, hosts, URLs): bounded memory

def endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@lru_cache(maxsize=MEMO_SIZE)
def split_endpoint(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    try:
        return host, int(port)
    except ValueError:
        return value, 0


_NO_URL = urlsplit("")


@lru_cache(maxsize=MEMO_SIZE)
def url_parts(url: str) -> SplitResult:
    """`urlsplit`, with an unparsable URL (``http://[::1``, from a hostile measurement) as an empty one."""
    try:
        return urlsplit(url)
    except ValueError:
        return _NO_URL


@lru_cache(maxsize=MEMO_SIZE)
def url_host(url: str) -> str:
    return idna_host(url_parts(url).hostname or "")


@lru_cache(maxsize=MEMO_SIZE)
def url_port(url: str) -> int:
    parts = url_parts(url)
    try:
        explicit = parts.port
    except ValueError:
        explicit = None
    if explicit:
        return explicit
    return 443 if parts.scheme.lower() == "https" else 80


@lru_cache(maxsize=MEMO_SIZE)
def url_scheme(url: str) -> str:
    return url_parts(url).scheme.lower()


@lru_cache(maxsize=MEMO_SIZE)
def join_url(base: str, url: str) -> str:
    try:
        return urljoin(base, url)
    except ValueError:  # an unparsable base or location: keep the location as given
        return url


def idna_host(host: str) -> str:
    host = host.strip().rstrip(".").lower()
    # The IDNA codec returns an ASCII name unchanged (or fails, and then we keep it).
    return host if host.isascii() else _idna_encode(host)


@lru_cache(maxsize=MEMO_SIZE)
def _idna_encode(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def is_ip(value: str) -> bool:
    return _is_ip(value) if type(value) is str else _is_ip.__wrapped__(value)


@lru_cache(maxsize=MEMO_SIZE)
def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_bogon(value: str) -> bool:
    """True for addresses no public web site lives at (OONI's netxlite bogon list)."""
    return _is_bogon(value) if type(value) is str else _is_bogon.__wrapped__(value)


@lru_cache(maxsize=MEMO_SIZE)
def _is_bogon(value: str) -> bool:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in _BOGON_NETWORKS)


def page_title(body: str) -> str:
    match = _TITLE_RE.search(body)
    return match.group(1) if match else ""


def body_bytes(body: Any) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8", errors="surrogateescape")
    if isinstance(body, Mapping) and body.get("format") == "base64":
        try:
            return base64.b64decode(_text(body.get("data")))
        except (binascii.Error, ValueError):
            return b""
    return b""


def header_pairs(response: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    pairs = response.get("headers_list")
    if isinstance(pairs, list) and pairs:
        return tuple([(_text(p[0]), _text(p[1])) for p in pairs if isinstance(p, list) and len(p) == 2])
    headers = response.get("headers")
    if isinstance(headers, Mapping):
        return tuple((str(k), v if isinstance(v, str) else str(v)) for k, v in headers.items())
    return ()


def parse_version(value: Any) -> tuple[int, int]:
    """"0.4.3" -> (0, 4); anything unparsable (not ASCII digits, a part over nine of them) is treated as the
    current (0, 5)."""
    return _parse_version(_text(value))


@lru_cache(maxsize=256)
def _parse_version(value: str) -> tuple[int, int]:
    match = _VERSION_RE.match(value)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 5)


def _text(value: Any) -> str:
    return value if type(value) is str or isinstance(value, str) else ""
