"""The verdict of a ``portfiltering`` measurement: which TCP ports of one server this network lets through.

The nettest (`nettests/portfiltering.py`) tried one server, which listens on every TCP port, on a list of ports:
a connection to each (``x_ports[i].connect``), then one HTTP request over it (``reply``, the answer's
``status``). The control helper connected to the same address and ports from outside (``control.tcp_connect``,
keyed ``ip:port``, OONI's TH format).

Each port is judged on its own (`port_results`):
- ``open``: connected and answered (HTTP, or anything else: a server of another protocol on that port).
- ``blocked``: our connection failed where the helper's connected: the port is filtered on this network
  (``tcp.rst`` for a refusal or reset, else ``tcp.drop``), at `CONTROLLED`.
- ``unreached``: our connection failed and the helper's failed too: the server does not take that port; not
  blocking.
- ``suspect``: our connection failed, the helper said nothing for the port, and another port of the same server
  connected (answered or not: the server is up and reached): filtering, at `UNCONTROLLED` (a server that listens
  on every port but this one looks the same).
- ``cut``: connected, but the request got no answer (a reset or the connection closed: ``http.rst``; a
  timeout or anything else: ``http.drop``) while another port's was answered, at `CUT`. A protocol whitelist
  (only HTTP on 80, only TLS on 443) cuts.
- ``failed``: our connection failed and nothing else tells why (no port open, no control): the server may be down.

OONI's experimental ``portfiltering`` (ts-038) records only ``tcp_connect`` (df-005: ``port`` and ``status``'s
``success`` and ``failure``), against a helper of its own that listens on every port of its list, with no control
and no request. Such a measurement is judged by the same rules: a port that connected is open, one that failed
beside an open one is suspect, and with nothing open every port is failed.

The measurement: a DNS failure for the server's name names its dns.* mechanism. Otherwise it is blocking when
one port is ``blocked``, ``suspect`` or ``cut``; its mechanism is the one most of those ports share (ties: the
most confident), its confidence the highest of theirs. Nothing open and nothing blocked is a failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import failures as F
from .verdict import OONI_BLOCKING, Verdict, failure_class

CONTROLLED = 0.9  # the helper connected to the same address and port from outside
UNCONTROLLED = 0.6  # no control for the port, another port of the server open
CUT = 0.6  # connected, no answer to the request, another port's answered
DNS_CONFIDENCE = 0.7
MAX_PORTS = 64  # of a measurement's x_ports judged: the nettest sends at most 31
OONI_MAX_PORTS = 128  # of OONI's tcp_connect entries judged: its list has 63 ports

OPEN, BLOCKED, UNREACHED, SUSPECT, CUT_STATE, FAILED = "open", "blocked", "unreached", "suspect", "cut", "failed"
BLOCKING_STATES = (BLOCKED, SUSPECT, CUT_STATE)


@dataclass(frozen=True)
class PortResult:
    """One port, judged: its state (above), the mechanism when blocking, how sure, and what says so."""

    port: int
    state: str
    mechanism: str
    confidence: float
    connect: str | None  # our connection's failure
    reply: str | None  # the request's failure, once connected
    control: str | None  # the helper's connection: "ok", its failure, or None when it said nothing


def _failure(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _port(value: Any) -> int | None:
    return value if type(value) is int and 0 < value < 65536 else None


def _connect_mechanism(failure: str) -> str:
    return "tcp.rst" if failure_class(failure) in ("refused", "reset") else "tcp.drop"


def _control(tk: Mapping[str, Any], address: Any, port: int) -> str | None:
    """What the helper's connection to ``address:port`` did: "ok", its failure string, or None (no control)."""
    control = tk.get("control")
    if not isinstance(control, Mapping) or not isinstance(address, str) or not address:
        return None
    connects = control.get("tcp_connect")
    if not isinstance(connects, Mapping):
        return None
    key = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    entry = connects.get(key)
    if not isinstance(entry, Mapping):
        return None
    if entry.get("status") is True:
        return "ok"
    return _failure(entry.get("failure")) or ("connect_failed" if entry.get("status") is False else None)


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else ()


def _ooni_entries(tk: Mapping[str, Any]) -> list[tuple[int, str | None, str | None, bool]]:
    """OONI's ts-038 measurement: one df-005 ``tcp_connect`` entry per port of its own helper, which listens on
    every port of its list; nothing is sent over a connection, so connected is answered."""
    seen: set[int] = set()
    out: list[tuple[int, str | None, str | None, bool]] = []
    for entry in _list(tk.get("tcp_connect"))[:OONI_MAX_PORTS]:
        if not isinstance(entry, Mapping):
            continue
        port, status = _port(entry.get("port")), entry.get("status")
        if port is None or port in seen or not isinstance(status, Mapping):
            continue
        success, failure = status.get("success"), _failure(status.get("failure"))
        if success is True and failure is None:
            seen.add(port)
            out.append((port, None, None, True))
        elif success is False or failure is not None:
            seen.add(port)
            out.append((port, failure or "connect_failed", None, False))
    return out


def _entries(tk: Mapping[str, Any]) -> list[tuple[int, str | None, str | None, bool]]:
    """(port, connect failure, reply failure, answered) of each well-formed entry of ``x_ports``, once per port;
    of OONI's ``tcp_connect`` for a measurement without ``x_ports`` (`_ooni_entries`)."""
    if "x_ports" not in tk:
        return _ooni_entries(tk)
    ports = _list(tk.get("x_ports"))
    seen: set[int] = set()
    out = []
    for entry in ports[:MAX_PORTS]:
        if not isinstance(entry, Mapping):
            continue
        port = _port(entry.get("port"))
        if port is None or port in seen or "connect" not in entry:
            continue
        seen.add(port)
        connect = _failure(entry.get("connect"))
        if entry.get("connect") is not None and connect is None:
            continue  # neither null nor a failure string: unreadable
        reply = _failure(entry.get("reply"))
        # answered: HTTP, or something else (a server of another protocol on that port, which a target that is no
        # portquiz has): nothing filtered that connection
        answered = connect is None and (reply is None or reply == F.HTTP_PROTOCOL_ERROR)
        out.append((port, connect, reply, answered))
    return out


def port_results(measurement: Mapping[str, Any]) -> list[PortResult]:
    """Every port of the measurement, judged (see the module's docstring), in the order measured."""
    tk = measurement.get("test_keys")
    tk = tk if isinstance(tk, Mapping) else {}
    entries = _entries(tk)
    address = tk.get("x_address")
    any_open = any(answered for _, _, _, answered in entries)
    any_connected = any(connect is None for _, connect, _, _ in entries)
    out = []
    for port, connect, reply, answered in entries:
        control = _control(tk, address, port)
        if answered:
            out.append(PortResult(port, OPEN, "none", 0.8, None, None, control))
        elif connect is None:
            if any_open:
                mech = "http.rst" if failure_class(reply) in ("reset", "eof") else "http.drop"
                out.append(PortResult(port, CUT_STATE, mech, CUT, None, reply, control))
            else:
                out.append(PortResult(port, FAILED, "none", 0.0, None, reply, control))
        elif control == "ok":
            out.append(PortResult(port, BLOCKED, _connect_mechanism(connect), CONTROLLED, connect, None, control))
        elif control is not None:
            out.append(PortResult(port, UNREACHED, "none", 0.0, connect, None, control))
        elif any_connected:
            out.append(PortResult(port, SUSPECT, _connect_mechanism(connect), UNCONTROLLED, connect, None, None))
        else:
            out.append(PortResult(port, FAILED, "none", 0.0, connect, None, None))
    return out


def blocked_ports(results: Sequence[PortResult]) -> list[int]:
    return sorted(r.port for r in results if r.state in BLOCKING_STATES)


def portfiltering_verdict(measurement: Mapping[str, Any]) -> Verdict:
    tk = measurement.get("test_keys")
    tk = tk if isinstance(tk, Mapping) else {}
    failure = _failure(tk.get("failure"))
    if failure is not None:
        kind = failure_class(failure)
        if kind.startswith("dns"):
            mechanism = ("dns.nxdomain" if kind == "dns_nxdomain"
                         else "dns.drop" if kind in ("dns_error", "dns_no_answer") else "dns.poison")
            return Verdict("dns", False, mechanism, DNS_CONFIDENCE, "anomaly", ("test_keys.failure",))
        return Verdict(None, None, "none", 0.0, "failure", ("test_keys.failure",))
    results = port_results(measurement)
    blocking = [r for r in results if r.state in BLOCKING_STATES]
    if blocking:
        counts: dict[str, tuple[int, float]] = {}
        for r in blocking:
            n, best = counts.get(r.mechanism, (0, 0.0))
            counts[r.mechanism] = (n + 1, max(best, r.confidence))
        mechanism = max(counts, key=lambda m: counts[m])
        return Verdict(OONI_BLOCKING[mechanism], False, mechanism, max(r.confidence for r in blocking), "anomaly",
                       ("test_keys.x_ports", "test_keys.control.tcp_connect"))
    if any(r.state == OPEN for r in results):
        return Verdict(False, True, "none", 0.8, "ok", ("test_keys.x_ports",))
    return Verdict(None, None, "none", 0.0, "failure", ("test_keys.x_ports",))
