"""Scrubbing the probe's own addresses out of a measurement, as OONI does.

The probe never records its user's IP address. Servers and middleboxes echo
it back (X-Forwarded-For, blockpages that print "your IP is …", certificates),
so before a measurement is written every string in it, including base64
bodies and certificates, has each known address of the probe replaced by
`[scrubbed]`. `probe_ip` itself is always 127.0.0.1.
"""

from __future__ import annotations

import base64
import binascii
import re
import socket
from collections.abc import Iterable
from typing import Any

SCRUBBED = "[scrubbed]"
# A {"format": "base64", "data": …} object in orjson's compact output, in either key order.
_BASE64_DATA = re.compile(rb'"format":"base64","data":"([^"]*)"|"data":"([^"]*)","format":"base64"')
KEEP = {"127.0.0.1", "0.0.0.0", "::1", "::", ""}


def local_addresses(peers: Iterable[str]) -> set[str]:
    """The source addresses the kernel would use towards `peers` (no packet is sent)."""
    out: set[str] = set()
    for peer in peers:
        try:
            fam = socket.AF_INET6 if ":" in peer else socket.AF_INET
            with socket.socket(fam, socket.SOCK_DGRAM) as s:
                s.connect((peer, 9))
                out.add(s.getsockname()[0])
        except OSError:
            continue
    return {a for a in out if a not in KEEP}


class Scrubber:
    def __init__(self, addresses: Iterable[str]) -> None:
        self.addresses = sorted({a for a in addresses if a and a not in KEEP}, key=len, reverse=True)
        self._bytes = [(a.encode(), SCRUBBED.encode()) for a in self.addresses]
        self._packed = []
        for a in self.addresses:
            try:
                self._packed.append(socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a))
            except OSError:
                pass

    def text(self, s: str) -> str:
        for a in self.addresses:
            if a in s:
                s = s.replace(a, SCRUBBED)
        return s

    def raw(self, b: bytes) -> bytes:
        for a, r in self._bytes:
            b = b.replace(a, r)
        for p in self._packed:  # binary forms, as in a certificate's IP SAN
            b = b.replace(p, b"\0" * len(p))
        return b

    def needed(self, obj: Any) -> bool:
        """Whether `obj` may hold an address: one C-speed search of its JSON, then of each
        base64 blob in it (bodies, certificates) decoded."""
        import orjson

        blob = orjson.dumps(obj)
        if any(a in blob for a, _ in self._bytes):
            return True
        if b'"base64"' not in blob:
            return False
        for m in _BASE64_DATA.finditer(blob):
            try:
                raw = base64.b64decode(m.group(1) or m.group(2), validate=True)
            except (binascii.Error, ValueError):
                return True
            if any(a in raw for a, _ in self._bytes) or any(p in raw for p in self._packed):
                return True
        return False

    def __call__(self, obj: Any) -> Any:
        """A scrubbed copy of a JSON-like value (the value itself when nothing needs scrubbing)."""
        if not self.addresses or not self.needed(obj):
            return obj
        return self._walk(obj)

    def _walk(self, obj: Any) -> Any:
        if not self.addresses:
            return obj
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, list):
            return [self._walk(v) for v in obj]
        if isinstance(obj, dict):
            if obj.get("format") == "base64" and isinstance(obj.get("data"), str) and len(obj) == 2:
                try:
                    raw = base64.b64decode(obj["data"], validate=True)
                except (binascii.Error, ValueError):
                    return {"format": "base64", "data": self.text(obj["data"])}
                return {"format": "base64", "data": base64.b64encode(self.raw(raw)).decode()}
            return {self.text(k) if isinstance(k, str) else k: self._walk(v) for k, v in obj.items()}
        return obj
