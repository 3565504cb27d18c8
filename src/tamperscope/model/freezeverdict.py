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
  ``tcp.*``, a handshake's ``tls.*``, a request's ``http.*``), at 0.5.
- It ended before `TARGET` without a failure (the server closed the connection, or answered too little to tell):
  failure (cannot tell).

The control (``test_keys.control``, the helper's answer in OONI's test-helper format, asked for the same URL and
address while the one connection runs) moves these, as OONI's web_connectivity does:
- the helper got past the stage that failed here (resolved the name, connected to the address, completed the
  handshake, or fetched the page): that failure is an anomaly at 0.7 (`CONTROLLED`), and a freeze the split did
  not confirm, or a stall, gains 0.15 (the page comes whole from outside);
- the helper failed at that stage too: the site is down or does not exist for everyone, a failure, not blocking;
- no control (none asked, or its request failed): as above.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .failures import failure_class
from .freeze import SILENCE_S
from .services import anomaly, failed, how, ok
from .services import test_keys as _tk
from .verdict import Verdict

TARGET = 64 * 1024  # bytes one connection must carry: the TSPU's caps were 14-24 KB
CONFIRMED = 0.9     # frozen, and the same bytes over several connections came whole
UNCONFIRMED = 0.6   # frozen, and the split did not get past it
STALLED = 0.5       # stalled without freezing: slowed down
FAILED = 0.5        # an earlier failure, with no control to compare with
CONTROLLED = 0.7    # an earlier failure where the control got through
CONTROL_BONUS = 0.15  # a freeze the split did not confirm, or a stall, where the control fetched the page
EVIDENCE = ("test_keys.x_freeze.single", "test_keys.network_events")


def _map(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _passed(control: Mapping[str, Any] | None, stage: str, address: Any) -> bool | None:
    """Whether the control got past ``stage`` ("dns", "connect", "tls", "http") for the measured address: True,
    False (it failed there too), or None (no control, or it says nothing of that stage in a shape it can have)."""
    if control is None:
        return None
    if stage == "dns":
        dns = _map(control.get("dns"))
        addrs = dns.get("addrs") if dns is not None else None
        if dns is None or not isinstance(addrs, list):
            return None
        return dns.get("failure") is None and len(addrs) > 0
    if stage == "http":
        http = _map(control.get("http_request"))
        code = http.get("status_code") if http is not None else None
        if http is None or not isinstance(code, int) or isinstance(code, bool):
            return None
        return http.get("failure") is None and code > 0
    table = _map(control.get("tcp_connect" if stage == "connect" else "tls_handshake"))
    entry = _map(table.get(address)) if table is not None and isinstance(address, str) else None
    status = entry.get("status") if entry is not None else None
    if entry is None or not isinstance(status, bool):
        return None
    return status and entry.get("failure") is None


def _failure(passed: bool | None, blocking: str, mechanism: str, evidence: tuple[str, ...]) -> Verdict:
    """A failure here: an anomaly (at 0.7 where the control got past the same stage), unless the control failed
    there too (``passed`` False: the site is down for everyone)."""
    if passed is False:
        return failed((*evidence, "test_keys.control"))
    if passed:
        return anomaly(blocking, mechanism, CONTROLLED, (*evidence, "test_keys.control"))
    return anomaly(blocking, mechanism, FAILED, evidence)


def tcp_freeze_verdict(measurement: Mapping[str, Any]) -> Verdict:
    tk = _tk(measurement)
    x = _map(tk.get("x_freeze"))
    single = _map(x.get("single")) if x is not None else None
    failure = tk.get("failure")
    control = _map(tk.get("control"))
    if single is None:
        if isinstance(failure, str) and failure and failure_class(failure).startswith("dns"):
            return _failure(_passed(control, "dns", None), "dns", how(failure, "dns"), ("test_keys.failure",))
        return failed()
    page = _passed(control, "http", None)
    bonus = CONTROL_BONUS if page else 0.0
    if single.get("frozen") is True:
        split = _map(x.get("split")) if x is not None else None
        whole = split is not None and split.get("failure") is None and _int(split.get("connections")) > 0 \
            and _int(split.get("completed")) == _int(split.get("connections"))
        evidence = (*EVIDENCE, "test_keys.x_freeze.split", *(("test_keys.control",) if page else ()))
        return anomaly("http-failure", "tcp.freeze", CONFIRMED if whole else round(UNCONFIRMED + bonus, 2), evidence)
    failure = single.get("failure")
    if failure is None:
        return ok(EVIDENCE) if _int(single.get("received")) >= TARGET else failed(EVIDENCE)
    if not isinstance(failure, str) or not failure:
        return failed()
    stage = single.get("stage")
    if stage == "http" and failure_class(failure) == "timeout" and _int(single.get("received")) > 0:
        silence = single.get("silence_s")
        evidence = (*EVIDENCE, *(("test_keys.control",) if page else ()))
        if isinstance(silence, (int, float)) and not isinstance(silence, bool):
            if silence >= SILENCE_S:  # nothing at all came for that long: stopped dead under `MIN_BYTES`
                return anomaly("http-failure", "tcp.freeze", round(UNCONFIRMED + bonus, 2), evidence)
            return anomaly("http-failure", "throttle", round(STALLED + bonus, 2), evidence)  # bytes still coming
        # no read after the request began (the bytes were the TLS handshake's): the request went unanswered
    stage = stage if stage in ("connect", "tls") else "http"
    layer = {"connect": "tcp", "tls": "https"}.get(stage, "http")
    mechanism = how(failure, layer)
    return _failure(_passed(control, stage, tk.get("x_address")),
                    "tcp_ip" if mechanism.startswith("tcp") else "http-failure", mechanism,
                    ("test_keys.failure", "test_keys.x_freeze.single"))
