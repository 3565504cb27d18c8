"""Observations: one row per DNS, TCP, TLS, QUIC or HTTP step of a measurement.

OONI's archival records (``queries``, ``x_dns_duplicate_responses``,
``tcp_connect``, ``tls_handshakes``, ``quic_handshakes``, ``requests``, and the
same lists nested under OONI dnscheck's ``lookups`` and tor's ``targets``) flattened into one table
that SQL can group and filter: which resolvers answered what, which endpoints
reset, which certificates failed, which pages came back with which status.
Every row keeps its ``pointer`` (``test_keys.queries[2]``), the same pointers
the verdicts cite as evidence, so the explorer can show the record verbatim.

`ObservationColumns` accumulates one tuple per row and hands the columns to
Arrow in one go (no per-cell Python calls beyond the type checks); measurement
content is hostile, so every field is type-checked and anything unexpected is
dropped to NULL rather than trusted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from tamperscope.analysis.schema import rows_to_table

STEPS = ("dns", "tcp", "tls", "quic", "http")

SCHEMA = pa.schema([
    ("measurement_uid", pa.string()),
    ("idx", pa.int32()),                # order within the measurement
    ("step", pa.string()),              # one of STEPS
    ("pointer", pa.string()),           # e.g. "test_keys.queries[2]"
    ("t0", pa.float64()),               # seconds since the measurement started; optional
    ("t", pa.float64()),                # seconds, when the step ended; optional
    ("transaction_id", pa.int64()),     # optional
    ("hostname", pa.string()),          # dns: the name asked; http: the URL's host
    ("engine", pa.string()),            # dns: getaddrinfo, udp, doh, ...
    ("resolver", pa.string()),          # dns: resolver address
    ("query_type", pa.string()),        # dns: A, AAAA, ...
    ("answers", pa.list_(pa.string())),  # dns: addresses and names answered
    ("ip", pa.string()),                # tcp/tls/quic/http: peer address
    ("port", pa.int32()),
    ("server_name", pa.string()),       # tls/quic: SNI
    ("url", pa.string()),               # http
    ("status_code", pa.int32()),        # http; NULL without a response
    ("body_length", pa.int64()),        # http: length of the recorded body (characters; bytes if base64)
    ("body_truncated", pa.bool_()),     # http
    ("failure", pa.string()),           # OONI failure string; NULL on success
])

_LISTS = (
    ("queries", "dns"), ("x_dns_duplicate_responses", "dns"), ("tcp_connect", "tcp"),
    ("tls_handshakes", "tls"), ("quic_handshakes", "quic"), ("requests", "http"),
)


# Maps whose every entry holds the same lists: OONI dnscheck's ``lookups`` (by resolver URL) and
# tor's ``targets`` (by directory authority or bridge).
_NESTS = ("lookups", "targets")


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _i(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63 else None


def _f(value: Any) -> float | None:
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return None


def _port(value: Any) -> int | None:
    """A port, 0-65535, as a JSON number or as decimal digits (``"443"``); else None ("99999" too)."""
    if isinstance(value, str) and len(value) <= 5 and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 65536:
        return value
    return None


def _split(address: Any) -> tuple[str | None, int | None]:
    """(host, port) of ``host:port`` or ``[IPv6]:port``; an address without a port whole, without its brackets
    (``[2001:db8::1]``), and a bare IPv6 address whole (``2001:db8::1``: its last group is no port)."""
    if not isinstance(address, str) or not address:
        return None, None
    if address.startswith("["):
        host, close, rest = address[1:].partition("]")
        if close and not rest:
            return host, None
        port = rest[1:] if close and rest.startswith(":") else ""
    elif address.count(":") == 1:
        host, _, port = address.partition(":")
    else:
        return address, None
    if not (port.isascii() and port.isdigit()):
        return address, None
    return host, _port(port)


def _host_of(url: str | None) -> str | None:
    if not url:
        return None
    rest = url.partition("://")[2] or url
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    if host.startswith("["):
        return host[1:].split("]", 1)[0].lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


class ObservationColumns:
    """Observation rows of many measurements; one tuple per row, columns made once at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, uid: str, test_keys: Mapping[str, Any]) -> int:
        """Append the steps of one measurement; returns how many rows it added."""
        before = len(self.rows)
        idx = 0
        for key, step in _LISTS:
            records = test_keys.get(key)
            if records:
                idx = _STEP[step](self.rows, uid, records, f"test_keys.{key}", idx)
        for nest in _NESTS:
            nested = test_keys.get(nest)
            if isinstance(nested, Mapping):
                for name, inner in nested.items():
                    if isinstance(inner, Mapping):
                        for key, step in _LISTS:
                            records = inner.get(key)
                            if records:
                                idx = _STEP[step](self.rows, uid, records, f"test_keys.{nest}[{name!r}].{key}", idx)
        return len(self.rows) - before

    def to_arrow(self) -> pa.Table:
        if not self.rows:
            return SCHEMA.empty_table()
        return rows_to_table(self.rows, SCHEMA)


# One function per step kind, each appending full rows in SCHEMA order:
# (uid, idx, step, pointer, t0, t, transaction_id, hostname, engine, resolver, query_type,
#  answers, ip, port, server_name, url, status_code, body_length, body_truncated, failure)
Rows = list[tuple[Any, ...]]


# The per-row functions below inline `_s`/`_f`/`_i` as exact type tests: they run for
# every archival record of every measurement (about a tenth of analyze's main thread).
# Parsed JSON holds only dict, list, str, int, float, bool and None, so ``type(x) is
# float`` is `_f`'s isinstance test, and ``type(x) is int`` excludes bool.
_FLOAT, _INT, _STR, _DICT = float, int, str, dict
_MIN, _MAX = -2**63, 2**63


def _dns(rows: Rows, uid: str, records: Any, prefix: str, idx: int) -> int:
    if not isinstance(records, list):
        return idx
    append = rows.append
    for i, r in enumerate(records):
        if isinstance(r, dict):
            get = r.get
            t0, t, tx = get("t0"), get("t"), get("transaction_id")
            hostname, engine, resolver = get("hostname"), get("engine"), get("resolver_address")
            qtype, failure = get("query_type"), get("failure")
            append((uid, idx, "dns", f"{prefix}[{i}]",
                    t0 if type(t0) is _FLOAT else float(t0) if type(t0) is _INT else None,
                    t if type(t) is _FLOAT else float(t) if type(t) is _INT else None,
                    tx if type(tx) is _INT and _MIN <= tx < _MAX else None,
                    hostname if type(hostname) is _STR else None,
                    engine if type(engine) is _STR else None,
                    resolver if type(resolver) is _STR else None,
                    qtype if type(qtype) is _STR else None,
                    _answers(get("answers")), None, None, None, None, None, None, None,
                    failure if type(failure) is _STR and failure else None))
            idx += 1
    return idx


def _tcp(rows: Rows, uid: str, records: Any, prefix: str, idx: int) -> int:
    if not isinstance(records, list):
        return idx
    append = rows.append
    for i, r in enumerate(records):
        if isinstance(r, dict):
            get = r.get
            t0, t, tx, ip, status = get("t0"), get("t"), get("transaction_id"), get("ip"), get("status")
            failure = status.get("failure") if isinstance(status, dict) else None
            append((uid, idx, "tcp", f"{prefix}[{i}]",
                    t0 if type(t0) is _FLOAT else float(t0) if type(t0) is _INT else None,
                    t if type(t) is _FLOAT else float(t) if type(t) is _INT else None,
                    tx if type(tx) is _INT and _MIN <= tx < _MAX else None,
                    None, None, None, None, None, ip if type(ip) is _STR else None, _port(get("port")),
                    None, None, None, None, None,
                    failure if type(failure) is _STR and failure else None))
            idx += 1
    return idx


def _tls(rows: Rows, uid: str, records: Any, prefix: str, idx: int, step: str = "tls") -> int:
    if not isinstance(records, list):
        return idx
    append = rows.append
    for i, r in enumerate(records):
        if isinstance(r, dict):
            get = r.get
            t0, t, tx, sni, failure = get("t0"), get("t"), get("transaction_id"), get("server_name"), get("failure")
            ip, port = _split(get("address"))
            append((uid, idx, step, f"{prefix}[{i}]",
                    t0 if type(t0) is _FLOAT else float(t0) if type(t0) is _INT else None,
                    t if type(t) is _FLOAT else float(t) if type(t) is _INT else None,
                    tx if type(tx) is _INT and _MIN <= tx < _MAX else None,
                    None, None, None, None, None, ip, port, sni if type(sni) is _STR else None,
                    None, None, None, None,
                    failure if type(failure) is _STR and failure else None))
            idx += 1
    return idx


def _quic(rows: Rows, uid: str, records: Any, prefix: str, idx: int) -> int:
    return _tls(rows, uid, records, prefix, idx, "quic")


def _http(rows: Rows, uid: str, records: Any, prefix: str, idx: int) -> int:
    if not isinstance(records, list):
        return idx
    for i, r in enumerate(records):
        if isinstance(r, dict):
            get = r.get
            request = get("request")
            url = _s(request.get("url")) if isinstance(request, dict) else None
            ip, port = _split(get("address"))
            status_code = body_length = body_truncated = None
            response = get("response")
            if isinstance(response, dict):
                status_code = _i(response.get("code"))
                if status_code is not None and not 0 < status_code < 1000:
                    status_code = None
                body_length = _body_length(response.get("body"))
                truncated = response.get("body_is_truncated")
                body_truncated = truncated if isinstance(truncated, bool) else None
            rows.append((uid, idx, "http", f"{prefix}[{i}]", _f(get("t0")), _f(get("t")), _i(get("transaction_id")),
                         _host_of(url), None, None, None, None, ip, port, None, url, status_code, body_length,
                         body_truncated, _s(get("failure")) or None))
            idx += 1
    return idx


_STEP = {"dns": _dns, "tcp": _tcp, "tls": _tls, "quic": _quic, "http": _http}


def _answers(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    out = []
    for answer in value:
        if type(answer) is _DICT or isinstance(answer, Mapping):
            found = answer.get("ipv4") or answer.get("ipv6") or answer.get("hostname")
            if isinstance(found, str):
                out.append(found)
    return out


def _body_length(body: Any) -> int | None:
    if isinstance(body, str):
        return len(body)
    if isinstance(body, Mapping):
        data = body.get("data")
        if isinstance(data, str):
            if body.get("format") == "base64":
                return max(0, len(data) * 3 // 4 - data[-2:].count("="))
            return len(data)
    return None


def observations_of(uid: str, measurement: Mapping[str, Any]) -> pa.Table:
    """The observation rows of one measurement (handy for tests and the explorer)."""
    cols = ObservationColumns()
    tk = measurement.get("test_keys")
    if isinstance(tk, Mapping):
        cols.add(uid, tk)
    return cols.to_arrow()


__all__ = ["SCHEMA", "STEPS", "ObservationColumns", "observations_of"]
