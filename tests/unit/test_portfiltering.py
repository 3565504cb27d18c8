"""portfiltering: the input's forms, the verdict port by port (and on hostile shapes), and the nettest against servers
on 127.0.0.1 that answer, refuse, reset, stay silent or speak another protocol. The lab's test
(tests/lab/test_portfiltering.py) runs it through a censor."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from tamperscope.model import portverdict as P
from tamperscope.nettests import portfiltering
from tamperscope.nettests.base import Context, NettestError

try:
    from . import test_netx_servers as srv
    from .test_nettests_hostile import FAST, closed_port, helper_answering, port_of, serve
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]
    from test_nettests_hostile import FAST, closed_port, helper_answering, port_of, serve  # type: ignore[no-redef]

LO = srv.LOOPBACK
IP = "198.18.9.9"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


# --- the input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given, host, ports", [
    ("portquiz.net", "portquiz.net", portfiltering.DEFAULT_PORTS),
    ("tcp://PortQuiz.net./", "portquiz.net", portfiltering.DEFAULT_PORTS),
    ("portquiz.net:22,1194", "portquiz.net", (22, 80, 1194)),
    ("198.18.9.9:443,80,443", "198.18.9.9", (80, 443)),
    ("[2001:db8::1]:22", "2001:db8::1", (22, 80)),
    ("2001:db8::1", "2001:db8::1", portfiltering.DEFAULT_PORTS),
])
def test_inputs_name_a_server_and_its_ports(given: str, host: str, ports: tuple[int, ...]) -> None:
    assert portfiltering.target_of(given) == (host, ports)


@pytest.mark.parametrize("given, said", [
    ("", "not a server and ports"),
    ("http://portquiz.net/", "not a server and ports"),
    ("portquiz.net/22", "not a server and ports"),
    ("user@portquiz.net", "not a server and ports"),
    ("[portquiz.net]", "not a server and ports"),
    ("[2001:db8::1]x", "not a server and ports"),
    ("a b", "not a server and ports"),
    ("portquiz.net:ssh", "not a port (1-65535): 'ssh'"),
    ("portquiz.net:0", "not a port (1-65535): '0'"),
    ("portquiz.net:65536", "not a port (1-65535): '65536'"),
    ("portquiz.net:²", "not a port (1-65535): '²'"),
    ("portquiz.net:" + "9" * 5000, "not a port (1-65535)"),
    ("portquiz.net:22,,23", "not a port (1-65535): ''"),
    ("portquiz.net:" + ",".join(str(p) for p in range(1000, 1031)), "at most 31 ports, 80 included"),
])
def test_a_bad_input_is_one_clear_error(given: str, said: str) -> None:
    with pytest.raises(NettestError) as info:
        portfiltering.target_of(given)
    assert said in str(info.value) and "\n" not in str(info.value)


def test_thirty_ports_and_the_baseline_are_accepted() -> None:
    host, ports = portfiltering.target_of("x.org:" + ",".join(str(p) for p in range(1000, 1030)))
    assert len(ports) == 31 and ports[0] == 80


# --- the verdict ----------------------------------------------------------------------------------------------


def _m(ports: list[dict[str, Any]], control: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    tk: dict[str, Any] = {"failure": None, "x_address": IP, "x_ports": ports, "control": control, **more}
    return {"test_name": "portfiltering", "test_keys": tk}


def _port(port: int, connect: str | None = None, reply: str | None = None, status: int | None = 200) -> dict[str, Any]:
    return {"port": port, "connect": connect, "reply": reply, "status": None if connect or reply else status}


def _control(**ports: bool | str) -> dict[str, Any]:
    return {"tcp_connect": {f"{IP}:{p.removeprefix('p')}": {"status": v is True, "failure": None if v is True else v}
                            for p, v in ports.items()}}


def _states(m: dict[str, Any]) -> dict[int, tuple[str, str, float]]:
    return {r.port: (r.state, r.mechanism, r.confidence) for r in P.port_results(m)}


def test_every_port_answered_is_ok() -> None:
    m = _m([_port(22), _port(80), _port(443)], _control(p22=True, p80=True, p443=True))
    v = P.portfiltering_verdict(m)
    assert (v.status, v.blocking, v.accessible, v.mechanism) == ("ok", False, True, "none")
    assert P.blocked_ports(P.port_results(m)) == []


def test_a_port_the_helper_reached_and_we_did_not_is_blocked() -> None:
    m = _m([_port(22, "generic_timeout_error"), _port(80), _port(3389, "connection_refused")],
           _control(p22=True, p80=True, p3389=True))
    assert _states(m) == {22: ("blocked", "tcp.drop", P.CONTROLLED), 80: ("open", "none", 0.8),
                          3389: ("blocked", "tcp.rst", P.CONTROLLED)}
    v = P.portfiltering_verdict(m)
    assert (v.status, v.blocking, v.accessible, v.mechanism, v.confidence) == (
        "anomaly", "tcp_ip", False, "tcp.drop", P.CONTROLLED)  # a tie: the first port's
    assert P.blocked_ports(P.port_results(m)) == [22, 3389]


def test_the_most_ports_name_the_mechanism() -> None:
    m = _m([_port(22, "generic_timeout_error"), _port(80), _port(1723, "connection_refused"),
            _port(3389, "connection_reset")], _control(p22=True, p80=True, p1723=True, p3389=True))
    assert P.portfiltering_verdict(m).mechanism == "tcp.rst"


def test_a_port_the_helper_could_not_reach_either_is_the_servers() -> None:
    m = _m([_port(22, "connection_refused"), _port(80)], _control(p22="connection_refused", p80=True))
    assert _states(m)[22][0] == "unreached"
    v = P.portfiltering_verdict(m)
    assert (v.status, v.mechanism) == ("ok", "none")


def test_without_a_control_a_port_failing_beside_an_open_one_is_suspect() -> None:
    m = _m([_port(22, "generic_timeout_error"), _port(80)], None, control_failure="control_disabled")
    assert _states(m)[22] == ("suspect", "tcp.drop", P.UNCONTROLLED)
    v = P.portfiltering_verdict(m)
    assert (v.status, v.mechanism, v.confidence) == ("anomaly", "tcp.drop", P.UNCONTROLLED)


def test_a_request_cut_after_connecting_is_http_interference() -> None:
    m = _m([_port(80), _port(8080, reply="connection_reset"), _port(8443, reply="generic_timeout_error")],
           _control(p80=True, p8080=True, p8443=True))
    assert _states(m) == {80: ("open", "none", 0.8), 8080: ("cut", "http.rst", P.CUT),
                          8443: ("cut", "http.drop", P.CUT)}
    v = P.portfiltering_verdict(m)
    assert (v.status, v.blocking, v.mechanism) == ("anomaly", "http-failure", "http.rst")


def test_an_answer_that_is_not_http_is_a_server_of_another_protocol() -> None:
    m = _m([_port(7, reply="unknown_failure: http protocol error"), _port(80)], _control(p7=True, p80=True))
    assert _states(m)[7][0] == "open"
    assert P.portfiltering_verdict(m).status == "ok"


def test_nothing_open_and_nothing_controlled_is_a_failure() -> None:
    m = _m([_port(22, "generic_timeout_error"), _port(80, "generic_timeout_error")], None)
    v = P.portfiltering_verdict(m)
    assert (v.status, v.blocking, v.accessible) == ("failure", None, None)
    # the server's address blocked as a whole: every port reached from outside, none from here
    m = _m([_port(22, "generic_timeout_error"), _port(80, "generic_timeout_error")], _control(p22=True, p80=True))
    v = P.portfiltering_verdict(m)
    assert (v.status, v.mechanism, v.confidence) == ("anomaly", "tcp.drop", P.CONTROLLED)


@pytest.mark.parametrize("failure, mechanism", [("dns_nxdomain_error", "dns.nxdomain"),
                                                ("generic_timeout_error", "none")])
def test_the_names_own_failure(failure: str, mechanism: str) -> None:
    v = P.portfiltering_verdict(_m([], None, failure=failure))
    assert v.mechanism == mechanism and v.status == ("anomaly" if mechanism != "none" else "failure")


@pytest.mark.parametrize("tk", [
    {}, {"x_ports": "22"}, {"x_ports": [None, 1, "x", [], {"port": "22", "connect": None}]},
    {"x_ports": [{"port": True, "connect": None}, {"port": 0, "connect": None}, {"port": 70000, "connect": None}]},
    {"x_ports": [{"port": 22}]},  # no connect key: not measured
    {"x_ports": [{"port": 22, "connect": 5}, {"port": 22, "connect": ["x"]}]},
    {"x_ports": [{"port": 22, "connect": "connection_refused"}], "x_address": ["x"],
     "control": {"tcp_connect": {"x": 1}}},
    {"x_ports": [{"port": 22, "connect": "connection_refused"}], "x_address": IP,
     "control": {"tcp_connect": [f"{IP}:22"]}},
    {"x_ports": [{"port": 22, "connect": "connection_refused"}], "x_address": IP, "control": "ok"},
    {"failure": 7, "x_ports": []},
])
def test_hostile_shapes_are_judged_without_raising(tk: dict[str, Any]) -> None:
    v = P.portfiltering_verdict({"test_keys": tk})
    assert v.status in ("failure", "ok", "anomaly")
    assert v.status == "failure" or tk.get("x_ports")
    assert P.portfiltering_verdict({"test_keys": None}).status == "failure"


def test_a_repeated_port_is_judged_once_and_the_list_is_capped() -> None:
    m = _m([_port(22), _port(22, "connection_refused")] + [_port(1000 + i) for i in range(200)], None)
    results = P.port_results(m)
    assert results[0].state == "open" and len(results) == P.MAX_PORTS - 1


# --- OONI's experimental portfiltering (ts-038): tcp_connect only, against its own helper, no control ---------


def _ooni(*ports: tuple[Any, Any, Any]) -> dict[str, Any]:
    """An OONI ts-038 measurement: one df-005 entry per (port, success, failure)."""
    return {"test_name": "portfiltering", "input": None, "test_keys": {"tcp_connect": [
        {"ip": "192.0.2.7", "port": p, "status": {"success": ok, "failure": f}, "t": 0.1 * i}
        for i, (p, ok, f) in enumerate(ports)]}}


def test_oonis_measurement_is_judged_by_the_same_rules() -> None:
    m = _ooni((23, True, None), (22, False, "generic_timeout_error"), (80, True, None),
              (3389, False, "connection_refused"), (445, False, "connection_refused"))
    assert _states(m) == {23: ("open", "none", 0.8), 22: ("suspect", "tcp.drop", P.UNCONTROLLED),
                          80: ("open", "none", 0.8), 3389: ("suspect", "tcp.rst", P.UNCONTROLLED),
                          445: ("suspect", "tcp.rst", P.UNCONTROLLED)}
    v = P.portfiltering_verdict(m)
    assert (v.status, v.blocking, v.accessible, v.mechanism, v.confidence) == (
        "anomaly", "tcp_ip", False, "tcp.rst", P.UNCONTROLLED)
    assert P.blocked_ports(P.port_results(m)) == [22, 445, 3389]
    # every port connected: ok; none did: the helper may be down, a failure
    assert P.portfiltering_verdict(_ooni((23, True, None), (80, True, None))).status == "ok"
    v = P.portfiltering_verdict(_ooni((23, False, "generic_timeout_error"), (80, False, "connection_refused")))
    assert (v.status, v.blocking) == ("failure", None)


def test_oonis_entries_hostile_repeated_and_capped() -> None:
    m = _ooni((22, True, None), (22, False, "connection_refused"), ("23", False, "x"), (0, True, None),
              (25, "yes", None), (26, None, None), (27, False, None), (28, None, "connection_reset"))
    m["test_keys"]["tcp_connect"][4:4] = [None, 5, {"port": 29}, {"port": 30, "status": "ok"}]
    results = {r.port: (r.state, r.connect) for r in P.port_results(m)}
    # the first entry of a port counts; success without a bool, or no status, is not a measurement
    assert results == {22: ("open", None), 27: ("suspect", "connect_failed"), 28: ("suspect", "connection_reset")}
    many = _ooni(*[(1000 + i, True, None) for i in range(300)])
    assert len(P.port_results(many)) == P.OONI_MAX_PORTS
    # our own measurement's x_ports wins over its tcp_connect events, even when empty
    ours = _ooni((22, False, "connection_refused"), (80, True, None))
    ours["test_keys"]["x_ports"] = [{"port": 80, "connect": None, "status": 200}]
    assert [r.port for r in P.port_results(ours)] == [80]
    ours["test_keys"]["x_ports"] = []
    assert P.port_results(ours) == []


# --- the nettest against 127.0.0.1 ------------------------------------------------------------------------------


def _closing(handler: Handler) -> Handler:
    """The server's side closed whatever the handler did, even cancelled when the test's loop ends: a transport
    left open is collected later, and its ResourceWarning fails whichever test is running then."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    return handle


@_closing
async def _http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await srv.read_head(reader)
    writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
    await writer.drain()


@_closing
async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await srv.read_head(reader)
    srv.reset(writer)


@_closing
async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # until the client gives up


@_closing
async def _ssh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")
    await writer.drain()
    await reader.read()


@_closing
async def _endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """No newline, ever: the answer is read no further than MAX_REPLY."""
    while True:
        writer.write(b"x" * 65536)
        await writer.drain()


def test_each_port_as_the_server_answers_it() -> None:
    async def main() -> tuple[dict[str, Any], dict[str, int]]:
        servers = {name: await serve(h) for name, h in
                   (("http", _http), ("reset", _reset), ("silent", _silent), ("ssh", _ssh), ("endless", _endless))}
        port = {name: port_of(s) for name, s in servers.items()}
        port["closed"] = closed_port()
        ports = ",".join(str(p) for p in port.values())
        try:
            tk = await portfiltering.run(f"{LO}:{ports}", Context(timeouts=FAST))
        finally:
            for s in servers.values():
                s.close()
        return tk, port

    tk, port = srv.run(main())
    orjson.dumps(tk)
    got = {p["port"]: (p["connect"], p["reply"], p["status"]) for p in tk["x_ports"]}
    assert got[port["http"]] == (None, None, 204)
    assert got[port["reset"]] == (None, "connection_reset", None)
    assert got[port["silent"]] == (None, "generic_timeout_error", None)
    assert got[port["ssh"]] == (None, "unknown_failure: http protocol error", None)
    assert got[port["endless"]] == (None, "unknown_failure: http protocol error", None)
    assert got[port["closed"]] == ("connection_refused", None, None)
    assert (tk["x_address"], tk["failure"], tk["control"], tk["control_failure"]) == (
        LO, None, None, "control_disabled")
    # one connection per port, each in OONI's tcp_connect records
    assert sorted(c["port"] for c in tk["tcp_connect"]) == sorted({80, *port.values()})
    m: dict[str, Any] = {"test_keys": tk}
    portfiltering.finish(m, Context(timeouts=FAST))
    # no control: the refused ports (and 80, where nothing listens on a test machine, as a rule) are suspect, the
    # reset and silent ones cut
    eighty = [80] if got[80][0] is not None else []
    assert tk["x_blocked_ports"] == sorted([*eighty, port["closed"], port["reset"], port["silent"]])
    assert tk["x_status"] == "anomaly"


def test_the_helper_is_asked_about_every_port() -> None:
    async def main() -> dict[str, Any]:
        site = await serve(_http)
        ep = f"{LO}:{port_of(site)}"
        closed = closed_port()
        helper = await serve(helper_answering({"tcp_connect": {
            ep: {"status": True, "failure": None}, f"{LO}:{closed}": {"status": True, "failure": None},
            f"{LO}:80": {"status": False, "failure": "connection_refused"}}}))
        ctx = Context(helper_url=f"http://{LO}:{port_of(helper)}/", timeouts=FAST)
        async with site, helper:
            tk = await portfiltering.run(f"{LO}:{port_of(site)},{closed}", ctx)
        m: dict[str, Any] = {"test_keys": tk}
        portfiltering.finish(m, ctx)
        tk["closed"] = closed
        return tk

    tk = srv.run(main())
    assert tk["x_blocked_ports"] == [tk["closed"]]  # the helper reached it; 80 it could not reach either
    assert (tk["x_status"], tk["x_mechanism"], tk["x_confidence"]) == ("anomaly", "tcp.rst", P.CONTROLLED)
