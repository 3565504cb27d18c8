"""Alt-Svc (RFC 7838): where a site says it also speaks HTTP/3.

The probe and the control helper try QUIC only for sites that advertise it, as
browsers do: a QUIC handshake to a server that never spoke QUIC would time out
and prove nothing. The header is the server's (or a censor's) text: hostile
input, parsed without raising.
"""

from __future__ import annotations

H3_TOKENS = frozenset({"h3"})
MAX_HEADER = 4096


def h3_port(value: object, default_port: int = 443) -> int | None:
    """The UDP port of the first ``h3`` alternative on the same host, or ``None``.

    ``h3=":443"; ma=86400`` gives 443. Alternatives naming another host are skipped
    (the probe measures the URL's own addresses); ``clear`` and anything malformed
    give ``None``. A quoted authority with no port means ``default_port``.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_HEADER:
        return None
    for entry in value.split(","):
        alternative = entry.split(";", 1)[0].strip()
        if "=" not in alternative:
            continue
        protocol, _, authority = alternative.partition("=")
        if protocol.strip().lower() not in H3_TOKENS:
            continue
        authority = authority.strip()
        if len(authority) < 2 or authority[0] != '"' or authority[-1] != '"':
            continue
        host, sep, port = authority[1:-1].rpartition(":")
        if not sep:
            host, port = authority[1:-1], ""
        if host:
            continue
        if not port:
            return default_port
        if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            continue
        return int(port)
    return None


__all__ = ["h3_port"]
