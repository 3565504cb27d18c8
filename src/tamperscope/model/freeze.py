"""A connection frozen after a few kilobytes: what Russia's TSPU has done since 2025 to TCP connections to foreign
hosting and CDN addresses (Hetzner, DigitalOcean, Cloudflare, Akamai...), "the 16-20 KB block".

The connection opens, the TLS handshake completes and the response starts; once the server has sent about 14-24 KB
on that connection, nothing more of it arrives: no RST, no FIN, the client waits until its own timeout. What a
censor does by address (any protocol over TCP freezes alike) and per connection (each new connection gets its first
kilobytes again), so a page smaller than the cap loads and a bigger one never finishes.

From the records alone (ours, or any OONI-format measurement with ``network_events``): an HTTP request that failed
with a timeout after its response had started, on a connection whose reads (``network_events`` of its
``transaction_id``: every byte the server sent, TLS included) carried between `MIN_BYTES` and `MAX_BYTES` and then
nothing for at least `SILENCE_S` before the failure. Throttling is told apart by that silence: a throttled
connection keeps delivering, a few packets a second, until the timeout. The reads must cover the response: some
after the request began (``t0``), and as many bytes as its body that arrived. OONI's probe records a connection's
reads during its TLS handshake only: there, the silence after the handshake says nothing, and no freeze is seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .failures import failure_class  # the one classifier

MIN_BYTES = 4 * 1024     # a freeze lets a TLS handshake and a response's first bytes through
MAX_BYTES = 64 * 1024    # the TSPU's caps were 14-24 KB; past this, a stall is not that block
SILENCE_S = 2.0          # seconds without a byte before the timeout: frozen, not slowed down
MAX_EVENTS = 100_000     # network_events read at most (hostile input)


@dataclass(frozen=True)
class Stall:
    """One HTTP request's connection that went silent: what it carried, and for how long nothing came."""

    request: int          # index in test_keys.requests
    transaction_id: int
    received: int         # bytes the connection's reads carried (the server's, TLS included)
    reads: int
    silence_s: float      # from the last read to the request's failure
    body: int             # bytes of the response body that arrived

    @property
    def frozen(self) -> bool:
        return MIN_BYTES <= self.received <= MAX_BYTES and self.silence_s >= SILENCE_S


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def stalls(tk: Mapping[str, Any]) -> list[Stall]:
    """The requests of ``tk`` that timed out after their response started, with their connection's reads."""
    requests = tk.get("requests")
    started: dict[int, tuple[int, float, float, int]] = {}  # transaction id -> (request, its start, end, body bytes)
    for i, r in enumerate(requests[:64] if isinstance(requests, list) else ()):
        failure = r.get("failure") if isinstance(r, Mapping) else None
        if not isinstance(failure, str) or failure_class(failure) != "timeout":
            continue
        tid, begin, end = r.get("transaction_id"), _num(r.get("t0")), _num(r.get("t"))
        response = r.get("response")
        if type(tid) is not int or begin is None or end is None or not isinstance(response, Mapping):
            continue
        body = response.get("body")
        size = len(body) if isinstance(body, str) else len(body.get("data", "")) * 3 // 4 \
            if isinstance(body, Mapping) and isinstance(body.get("data"), str) else 0
        code = response.get("code")
        if (isinstance(code, int) and not isinstance(code, bool) and code > 0) or size:
            started.setdefault(tid, (i, begin, end, size))
    if not started:
        return []
    received: dict[int, list[float]] = {}  # transaction id -> [bytes, reads, last read, reads after the request]
    events = tk.get("network_events")
    for e in events[:MAX_EVENTS] if isinstance(events, list) else ():
        if not isinstance(e, Mapping) or e.get("operation") != "read" or e.get("failure") is not None:
            continue
        tid, n, t = e.get("transaction_id"), _num(e.get("num_bytes")), _num(e.get("t"))
        if type(tid) is int and tid in started and n is not None and n > 0 and t is not None:
            acc = received.setdefault(tid, [0.0, 0.0, t, 0.0])
            acc[0] += n
            acc[1] += 1
            acc[2] = max(acc[2], t)
            acc[3] += t >= started[tid][1]
    return [Stall(i, tid, int(got[0]), int(got[1]), round(end - got[2], 3), body)
            for tid, (i, _, end, body) in started.items()
            if (got := received.get(tid)) and got[3] and got[0] >= body]  # the reads cover the response


def frozen(tk: Mapping[str, Any]) -> Stall | None:
    """The first request whose connection froze, as the TSPU's block does; None when none did."""
    return next((s for s in stalls(tk) if s.frozen), None)
