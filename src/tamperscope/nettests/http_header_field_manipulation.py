"""http_header_field_manipulation: are our request headers rewritten on the way?

OONI's nettest (ts-006): a request whose header names use odd capitalization
is sent to an echo backend; the head that arrived is parsed and compared with
the one sent. test_keys are OONI's `tampering` object: total,
header_field_name, header_field_number, header_field_value,
header_name_capitalization, request_line_capitalization, header_name_diff;
plus `sent`/`received` and `x_mechanism`.
"""

from __future__ import annotations

import random
from typing import Any

from ..netx import Trace
from ..wire.httphead import parse_request_head
from .base import Context
from .middlebox import ECHO_TIMEOUT, backend_endpoint, echo_exchange, verdict_keys

NAME = "http_header_field_manipulation"
VERSION = "0.2.0"
NEEDS_INPUT = False


class Config:
    """Input: optional backend (host[:port]); otherwise --backend / TAMPERSCOPE_ECHO."""


def odd_case(name: str, rng: random.Random) -> str:
    out = "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in name)
    return out if out not in (name, name.lower(), name.title()) else odd_case(name, rng) if len(name) > 2 else out


def build_request(host: str, rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    line = "geT / HTTP/1.1"
    headers = [(odd_case(k, rng), v) for k, v in (
        ("Host", host), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)"), ("Accept", "text/html,*/*;q=0.8"),
        ("Accept-Encoding", "gzip,deflate"), ("Accept-Language", "en-US;q=0.8,en;q=0.5"),
        ("Connection", "close"))]
    return line, headers


def compare(sent_line: str, sent: list[tuple[str, str]], received: str | None) -> dict[str, Any]:
    t = {"total": False, "header_field_name": False, "header_field_number": False, "header_field_value": False,
         "header_name_capitalization": False, "request_line_capitalization": False, "header_name_diff": []}
    if received is None:
        return t
    head = parse_request_head(received.encode("latin-1"))
    if head is None:
        t.update(total=True, request_line_capitalization=not received.startswith(sent_line))
        return t
    got_line = f"{head.method} {head.target} {head.version}"
    got = list(head.headers)
    t["request_line_capitalization"] = got_line != sent_line
    t["header_field_number"] = len(got) != len(sent)
    sent_names = {k for k, _ in sent}
    got_names = {k for k, _ in got}
    t["header_name_capitalization"] = \
        {k.lower() for k in sent_names} == {k.lower() for k in got_names} and sent_names != got_names \
        or any(k not in sent_names and k.lower() in {s.lower() for s in sent_names} for k in got_names)
    t["header_field_name"] = {k.lower() for k in sent_names} != {k.lower() for k in got_names}
    t["header_name_diff"] = sorted({k.lower() for k in got_names} ^ {k.lower() for k in sent_names})
    sent_vals = {k.lower(): v for k, v in sent}
    t["header_field_value"] = any(sent_vals.get(k.lower()) not in (None, v) for k, v in got)
    t["total"] = any(v for k, v in t.items() if k not in ("total", "header_name_diff"))
    return t


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    ip, port = backend_endpoint(ctx, input)
    rng = random.Random()
    line, headers = build_request(ip, rng)
    payload = (line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode("latin-1")
    trace = Trace()
    async with trace:
        ex = await echo_exchange(ip, port, payload, trace=trace, timeout=ECHO_TIMEOUT)
    tk: dict[str, Any] = {"backend": f"{ip}:{port}", "sent": ex.sent, "received": ex.received, "failure": ex.failure,
                          "tampering": compare(line, headers, ex.received)}
    tk.update({k: v for k, v in trace.test_keys().items() if k in ("tcp_connect", "network_events")})
    return tk


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    tk = measurement["test_keys"]
    tk.update(verdict_keys(bool(tk.get("tampering", {}).get("total")), tk.get("received") is not None))
