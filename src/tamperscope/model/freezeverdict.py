"""The verdict of a ``tcp_freeze`` measurement (our nettest; OONI has none).

``x_freeze.single`` is one connection that asked for `TARGET` bytes; ``x_freeze.split`` the same bytes over new
connections, made only when that one froze.

- The one connection carried `TARGET` bytes: ok (nothing froze it at this address).
- It froze (``frozen``: 4-64 KiB, then nothing for 2 s before the timeout) and every connection of the split
  completed: ``tcp.freeze`` at 0.9, the limit is per connection. The split failed too: ``tcp.freeze`` at 0.6 (a
  server that ignores ``Range`` answers each range with the whole page, which freezes again; a server that went
  down looks the same).
- It stalled without freezing (bytes kept coming until the timeout): ``throttle`` at 0.5.
- It failed before or otherwise: the mechanism the failure names at its stage (a lookup's ``dns.*``, a connect's
  ``tcp.*``, a handshake's ``tls.*``, a request's ``http.*``), at 0.5: this test has no control of its own.
- It ended before `TARGET` without a failure (the server closed the connection, or answered too little to tell):
  failure (cannot tell).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .failures import failure_class
from .services import anomaly, failed, how, ok
from .services import test_keys as _tk
from .verdict import Verdict

TARGET = 64 * 1024  # bytes one connection must carry: the TSPU's caps were 14-24 KB
CONFIRMED = 0.9     # frozen, and the same bytes over several connections came whole
UNCONFIRMED = 0.6   # frozen, and the split did not get past it
STALLED = 0.5       # stalled without freezing: slowed down
FAILED = 0.5        # an earlier failure, with no control to compare with
EVIDENCE = ("test_keys.x_freeze.single", "test_keys.network_events")


def _map(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def tcp_freeze_verdict(measurement: Mapping[str, Any]) -> Verdict:
    tk = _tk(measurement)
    x = _map(tk.get("x_freeze"))
    single = _map(x.get("single")) if x is not None else None
    failure = tk.get("failure")
    if single is None:
        if isinstance(failure, str) and failure and failure_class(failure).startswith("dns"):
            return anomaly("dns", how(failure, "dns"), FAILED, ("test_keys.failure",))
        return failed()
    if single.get("frozen") is True:
        split = _map(x.get("split")) if x is not None else None
        whole = split is not None and split.get("failure") is None and _int(split.get("connections")) > 0 \
            and _int(split.get("completed")) == _int(split.get("connections"))
        return anomaly("http-failure", "tcp.freeze", CONFIRMED if whole else UNCONFIRMED,
                       (*EVIDENCE, "test_keys.x_freeze.split"))
    failure = single.get("failure")
    if failure is None:
        return ok(EVIDENCE) if _int(single.get("received")) >= TARGET else failed(EVIDENCE)
    if not isinstance(failure, str) or not failure:
        return failed()
    stage = single.get("stage")
    if stage == "http" and failure_class(failure) == "timeout" and _int(single.get("received")) > 0:
        return anomaly("http-failure", "throttle", STALLED, EVIDENCE)
    layer = {"connect": "tcp", "tls": "https"}.get(stage if isinstance(stage, str) else "", "http")
    mechanism = how(failure, layer)
    return anomaly("tcp_ip" if mechanism.startswith("tcp") else "http-failure", mechanism, FAILED,
                   ("test_keys.failure", "test_keys.x_freeze.single"))
