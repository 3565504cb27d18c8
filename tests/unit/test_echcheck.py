"""echcheck over real loopback sockets: a real TLS server (Python's ssl, a CA made at run time) that a censor's
script stands in front of, reading each connection's ClientHello (MSG_PEEK, so the server still gets it)
and resetting, stalling or answering those that carry encrypted_client_hello. The verdict is re-derived
from the records as `analyze` does; OONI-shaped records go through the same function."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import ssl
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tamperscope.analysis.verdicts import verdict_for
from tamperscope.model.ech import echcheck_verdict
from tamperscope.nettests import echcheck
from tamperscope.nettests.base import Context, NettestError, Timeouts
from tamperscope.netx import Resolver
from tamperscope.wire import ech
from tamperscope.wire.tlshello import ClientHello, parse_client_hello

try:
    from .test_netx_servers import TCPServer as DoHServer
    from .test_netx_servers import TestCA, UDPDNSServer, http_response, read_head
    from .test_remote_hostile import TCPServer
except ImportError:
    from test_netx_servers import TCPServer as DoHServer  # type: ignore[no-redef]
    from test_netx_servers import TestCA, UDPDNSServer, http_response, read_head  # type: ignore[no-redef]
    from test_remote_hostile import TCPServer  # type: ignore[no-redef]

TIMEOUTS = Timeouts(dns=2.0, connect=1.0, tls=1.5, http=2.0, measurement=20)
NAME = "localhost"  # resolved by the system resolver to 127.0.0.1: the only name a hermetic test can use


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    return TestCA(tmp_path_factory.mktemp("ca")).server_context(NAME)


def peek_hello(conn: socket.socket) -> ClientHello | None:
    """The ClientHello waiting on ``conn``, left in the socket for the TLS server to read."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        data = conn.recv(65536, socket.MSG_PEEK)
        hello = parse_client_hello(data)
        if hello is not False:
            return hello if isinstance(hello, ClientHello) else None
        time.sleep(0.01)
    return None


def censor(tls_context: ssl.SSLContext, on_ech: Callable[[socket.socket, TCPServer], None] | None,
           on_plain: Callable[[socket.socket, TCPServer], None] | None = None) -> Callable[..., None]:
    """A TLS server behind a censor's script: hellos with ECH go to ``on_ech`` (None: served), others to
    ``on_plain`` (None: served)."""
    def script(conn: socket.socket, server: TCPServer) -> None:
        hello = peek_hello(conn)
        act = on_ech if hello is not None and hello.ech else on_plain
        if act is not None:
            act(conn, server)
            return
        try:
            with tls_context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            return  # the ECH target hangs up after the ServerHello: the handshake is never finished
    return script


def reset(conn: socket.socket, server: TCPServer) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def silent(conn: socket.socket, server: TCPServer) -> None:
    server.stop.wait(5)


def alert(conn: socket.socket, server: TCPServer) -> None:
    server.send(conn, bytes.fromhex("15030300020228"))  # handshake_failure


def endless(conn: socket.socket, server: TCPServer) -> None:
    while not server.stop.is_set():
        server.send(conn, b"\x16\x03\x03\xff\xff" + b"\x00" * 65535)  # records that never hold a hello


def measure(port: int, input: str | None = None) -> tuple[dict[str, Any], float]:
    ctx = Context(timeouts=TIMEOUTS)
    t0 = time.monotonic()

    async def bounded() -> dict[str, Any]:
        async with asyncio.timeout(30):
            return await echcheck.run(input or f"https://{NAME}:{port}/", ctx)

    tk = asyncio.run(bounded())
    measurement = {"test_name": "echcheck", "input": input, "test_keys": tk}
    echcheck.finish(measurement, ctx)
    json.dumps(measurement)
    again = verdict_for(json.loads(json.dumps(measurement)))  # what `analyze` reaches from the JSON
    assert again.to_test_keys()["x_mechanism"] == tk["x_mechanism"] and again.status == tk["x_status"]
    return tk, time.monotonic() - t0


@pytest.mark.wallclock  # bounds the time a hostile server may take, within its timeout
@pytest.mark.parametrize("on_ech,mechanism,status,failure", [
    (None, "none", "ok", None),
    (reset, "tls.rst", "anomaly", "connection_reset"),
    (silent, "tls.drop", "anomaly", "generic_timeout_error"),
    (alert, "tls.rst", "anomaly", "ssl_failed_handshake"),
    (endless, "tls.rst", "anomaly", "ssl_failed_handshake"),
], ids=["served", "reset", "silent", "alert", "endless"])
def test_echcheck(tls_context: ssl.SSLContext, on_ech: Any, mechanism: str, status: str,
                  failure: str | None) -> None:
    """The control (no ECH) completes every time; what the censor does to the hello with ECH decides. A
    ServerHello is enough for the target; a server that never stops sending is cut off, in bounded time."""
    with TCPServer("127.0.0.1", censor(tls_context, on_ech)) as server:
        tk, elapsed = measure(server.port)
    assert (tk["x_mechanism"], tk["x_status"]) == (mechanism, status)
    control, target = tk["control"], tk["target"]
    assert control["failure"] is None and control["server_name"] == NAME and "control" in control["tags"]
    assert control["tls_version"] and control["peer_certificates"]
    assert target["failure"] == failure and target["echconfig"] == "GREASE" and target["server_name"] == NAME
    assert target["x_server_hello"] is (failure is None)
    if failure is None:
        assert target["cipher_suite"].startswith("0x13")  # a TLS 1.3 suite, read from the ServerHello
    assert [h["tags"] for h in tk["tls_handshakes"]] == [["control"], ["target"]]
    assert target["transaction_id"] != control["transaction_id"]
    assert [c["tags"] for c in tk["tcp_connect"]] == [["control"], ["target"]]
    assert {c["port"] for c in tk["tcp_connect"]} == {server.port}
    if status == "anomaly":
        assert tk["x_evidence"] == ["test_keys.target", "test_keys.control"] and tk["accessible"] is False
    assert elapsed < 8


def test_a_name_blocked_without_ech_too_is_no_verdict_on_ech(tls_context: ssl.SSLContext) -> None:
    """The censor resets every hello for the name: the control fails too, so nothing is said of ECH."""
    with TCPServer("127.0.0.1", censor(tls_context, reset, reset)) as server:
        tk, _ = measure(server.port)
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("failure", "none", None)
    assert tk["control"]["failure"] == "connection_reset" and tk["x_evidence"] == ["test_keys.control"]


def test_nothing_listening_and_a_name_that_does_not_resolve_are_failures() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # a port nobody listens on
    tk, _ = measure(port)
    assert tk["x_status"] == "failure" and tk["control"] is None and tk["target"] is None
    assert [c["status"]["failure"] for c in tk["tcp_connect"]] == ["connection_refused"]
    tk, _ = measure(0, "https://nx.invalid/")
    assert tk["x_status"] == "failure" and tk["tcp_connect"] == [] and tk["queries"]


@pytest.mark.parametrize("bad", ["ftp://example.org/", "https:///", "https://example.org:99999/", ""])
def test_bad_inputs_are_one_line_errors(bad: str) -> None:
    with pytest.raises(NettestError) as info:
        echcheck.target_of(bad)
    assert "\n" not in str(info.value)


def _hs(failure: str | None, **extra: Any) -> dict[str, Any]:
    return {"address": "104.16.1.1:443", "server_name": "cloudflare-ech.com", "failure": failure,
            "tls_version": "", "cipher_suite": "", "t0": 0.1, "t": 0.2, **extra}


@pytest.mark.parametrize("tk,want", [
    ({"control": _hs(None), "target": _hs(None, echconfig="GREASE")}, ("ok", "none", False)),
    ({"control": _hs(None), "target": _hs("generic_timeout_error", echconfig="GREASE")},
     ("anomaly", "tls.drop", "http-failure")),
    ({"control": _hs(None), "target": _hs("connection_reset")}, ("anomaly", "tls.rst", "http-failure")),
    ({"control": _hs("connection_reset"), "target": _hs("connection_reset")}, ("failure", "none", None)),
    ({"control": _hs(None)}, ("failure", "none", None)),
    ({"control": "x", "target": [1]}, ("failure", "none", None)),
    ({"control": _hs(None), "target": {"no": "failure key"}}, ("failure", "none", None)),
    ({}, ("failure", "none", None)),
    # QA: the config stripped from plain DNS (the HTTPS query dropped) while TLS let ECH through was "ok"
    ({"control": _hs(None), "target": _hs(None), "x_ech_config_stripped": {
        "resolver": "198.19.0.8:53", "failure": "generic_timeout_error"}}, ("anomaly", "dns.drop", "dns")),
    ({"control": _hs(None), "target": _hs(None), "x_ech_config_stripped": {
        "resolver": "198.19.0.8:53", "failure": "dns_no_answer"}}, ("anomaly", "dns.drop", "dns")),
    ({"control": _hs(None), "target": _hs("connection_reset"), "x_ech_config_stripped": {
        "resolver": "198.19.0.8:53", "failure": "dns_no_answer"}}, ("anomaly", "tls.rst", "http-failure")),
    ({"control": _hs(None), "target": _hs(None), "x_ech_config_stripped": "x"}, ("ok", "none", False)),
], ids=["ok", "drop", "rst", "control-blocked", "no-target", "wrong-types", "no-failure-key", "empty",
        "stripped-dropped", "stripped-no-answer", "stripped-and-reset", "stripped-hostile"])
def test_verdict_from_records_alone(tk: dict[str, Any], want: tuple[Any, ...]) -> None:
    """OONI's echcheck records (control, target) and hostile ones: the same function, never an exception."""
    v = echcheck_verdict({"test_name": "echcheck", "test_keys": tk})
    assert (v.status, v.mechanism, v.blocking) == want
    assert verdict_for({"test_name": "echcheck", "test_keys": tk}) == v
    assert echcheck_verdict({"test_name": "echcheck", "test_keys": "garbage"}).status == "failure"


def test_the_target_hello_is_the_controls_plus_ech(tmp_path: Path) -> None:
    """What a DPI box reads of each: the same outer name and ALPN; only the target carries ECH."""
    from tamperscope.wire.tlshello import client_hello, client_hello_with_ech

    plain, ech = client_hello(NAME, echcheck.ALPN), client_hello_with_ech(NAME, echcheck.ALPN)
    assert parse_client_hello(plain) == ClientHello(NAME, ("http/1.1",), False)
    assert parse_client_hello(ech) == ClientHello(NAME, ("http/1.1",), True)
    assert len(ech) - len(plain) > 250  # a GREASE payload as long as a real ECH one


@pytest.mark.parametrize("data,want", [
    (b"", (None, None)),
    (b"\x16\x03\x03\x00", (None, None)),
    (b"\x15\x03\x03\x00\x02\x02\x28", (False, None)),  # an alert
    (b"HTTP/1.1 400 Bad Request\r\n", (False, None)),  # not TLS
    (b"\x16\x03\x03\x00\x04\x02\x00\x00\x00", (False, None)),  # a ServerHello too short to be one
    (b"\x16\x03\x03\x00\x30\x0b", (False, None)),  # a Certificate first
    (b"\x16\x03\x03\x00\x50\x02\x00\x00\x4c\x03\x03" + b"r" * 32 + b"\x00\x13\x01", (True, 0x1301)),
    (b"\x16\x03\x03\x00\x50\x02\x00\x00\x4c\x03\x03" + b"r" * 32 + b"\x20" + b"s" * 10, (None, None)),
    (b"\x16\x03\x03\x00\x29\x02\x00\x00\x25\x03\x03" + b"r" * 32 + b"\x20\x13\x01", (False, None)),
], ids=["empty", "partial-header", "alert", "http", "short-hello", "certificate", "hello", "partial-sid", "bad-sid"])
def test_what_the_servers_first_bytes_say(data: bytes, want: tuple[Any, ...]) -> None:
    """A ServerHello (and its suite, past a session id of any length); anything else complete is no answer to
    the hello; bytes still coming are undecided. Hostile lengths never raise."""
    assert echcheck.server_answer(data) == want


def test_a_captured_reset_names_the_equipment_and_nothing_else_does() -> None:
    """With --capture the engine adds the packets the target's address sent (``x_packets``): a target reset by
    the censor gets the RST's signature; a target that got its ServerHello gets none, whatever was captured."""
    rst = {"proto": "tcp", "flags": "RA", "ttl": 62, "initial_ttl": 64, "ip_id": 0, "window": 0,
           "remote": "198.19.0.5:443", "t": 0.2}
    hs = {"address": "198.19.0.5:443", "server_name": "cloudflare-ech.com", "t0": 0.1, "t": 0.2}
    blocked = {"test_name": "echcheck", "test_keys": {
        "control": {**hs, "failure": None}, "target": {**hs, "failure": "connection_reset", "echconfig": "GREASE"},
        "tcp_connect": [{"ip": "198.19.0.5", "port": 443}], "x_packets": [rst]}}
    echcheck.finish(blocked, Context(timeouts=TIMEOUTS))
    tk = blocked["test_keys"]
    assert tk["x_mechanism"] == "tls.rst" and tk["x_signature"]["key"] == "tcp/RA/ttl64/win0/ipid0"
    passed = {"test_name": "echcheck", "test_keys": {
        "control": {**hs, "failure": None}, "target": {**hs, "failure": None, "echconfig": "GREASE"},
        "x_packets": [rst]}}
    echcheck.finish(passed, Context(timeouts=TIMEOUTS))
    assert passed["test_keys"]["x_mechanism"] == "none" and "x_signature" not in passed["test_keys"]


def test_the_servers_own_later_reset_is_not_the_equipments_signature() -> None:
    """Seen once in CI on a slow machine: the censor's RST (initial TTL 255, window 0, IP-ID 4242), then the server's
    own (initial TTL 64, IP-ID 0) answering a retransmission that went past the censor after its RST. Both were
    taken: the key said IP-ID varying (ipid*), as if the equipment varied it. Only the first sender's count."""
    forged = {"proto": "tcp", "flags": "RA", "ttl": 254, "initial_ttl": 255, "ip_id": 4242, "window": 0,
              "remote": "198.19.0.5:443", "t": 0.2}
    own = {**forged, "ttl": 62, "initial_ttl": 64, "ip_id": 0, "t": 0.45}
    again = {**forged, "t": 0.5}
    hs = {"address": "198.19.0.5:443", "server_name": "cloudflare-ech.com", "t0": 0.1, "t": 0.2}
    for packets in ([own, forged, again], [forged, own]):
        m = {"test_name": "echcheck", "test_keys": {
            "control": {**hs, "failure": None}, "target": {**hs, "failure": "connection_reset", "echconfig": "GREASE"},
            "tcp_connect": [{"ip": "198.19.0.5", "port": 443}], "x_packets": packets}}
        echcheck.finish(m, Context(timeouts=TIMEOUTS))
        sig = m["test_keys"]["x_signature"]
        assert sig["key"] == "tcp/RA/ttl255/win0/ipid4242" and sig["packets"] == len(packets) - 1, sig
    # equipment that varies its IP-ID still says so
    m = {"test_name": "echcheck", "test_keys": {
        "control": {**hs, "failure": None}, "target": {**hs, "failure": "connection_reset", "echconfig": "GREASE"},
        "tcp_connect": [{"ip": "198.19.0.5", "port": 443}], "x_packets": [forged, {**forged, "ip_id": 77, "t": 0.3}]}}
    echcheck.finish(m, Context(timeouts=TIMEOUTS))
    assert m["test_keys"]["x_signature"]["key"] == "tcp/RA/ttl255/win0/ipid*"


# --------------------------------------------------------------------------- the site's own ECH config

ECH_KEY = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))  # fixed, as parameters must be under xdist
PUBLISHED = ech.encode_config_list(ech.encode_config(0x2A, ECH_KEY.public_key().public_bytes_raw(),
                                                     "cloudflare-ech.com", ((1, 1),), 64))
(CONFIG,) = ech.parse_config_list(PUBLISHED)


def https_record(published: bytes | None) -> Any:
    """A public resolver whose HTTPS record for any name carries ``published`` (None: no HTTPS record)."""
    def handler(query: Any, data: bytes) -> list[tuple[float, bytes]]:
        reply = dns.message.make_response(query)
        if published is not None and query.question[0].rdtype == dns.rdatatype.HTTPS:
            value = f'1 . alpn="http/1.1" ech="{base64.b64encode(published).decode()}"'
            reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "HTTPS", value))
        return [(0.0, reply.to_wire())]
    return handler


def tspu(tls_context: ssl.SSLContext, inner_names: list[str]) -> Callable[..., None]:
    """Russia's rule: a hello with ECH whose outer name is Cloudflare's public name is reset; every hello the
    censor lets through reaches the server, which opens its ECH (when it can) and notes the inner name."""
    def script(conn: socket.socket, server: TCPServer) -> None:
        data = conn.recv(65536, socket.MSG_PEEK)
        hello = peek_hello(conn)
        if hello is not None and hello.ech and hello.sni == "cloudflare-ech.com":
            reset(conn, server)
            return
        if hello is not None and hello.ech:
            with contextlib.suppress(ech.ECHError):
                inner_names.append(str(ech.open_client_hello(conn.recv(65536, socket.MSG_PEEK) or data,
                                                             {0x2A: (CONFIG, ECH_KEY)}).sni))
        censor(tls_context, None)(conn, server)
    return script


def measure_with(port: int, dns_handler: Any) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with UDPDNSServer(dns_handler) as resolver:
            ctx = Context(timeouts=TIMEOUTS, udp_resolver=Resolver("udp", "127.0.0.1", port=resolver.port,
                                                                   duplicate_window=0))
            async with asyncio.timeout(30):
                tk = await echcheck.run(f"https://{NAME}:{port}/", ctx)
            measurement = {"test_name": "echcheck", "test_keys": tk}
            echcheck.finish(measurement, ctx)
            again = verdict_for(json.loads(json.dumps(measurement)))
            assert again.to_test_keys()["x_mechanism"] == tk["x_mechanism"]
            return tk
    return asyncio.run(main())


def test_the_sites_published_config_is_sealed_and_named_by_its_public_name(tls_context: ssl.SSLContext) -> None:
    """The target is what a browser sends: the outer hello names cloudflare-ech.com, and the server, which
    holds the key, opens the site's name from it. Russia's rule (ECH to cloudflare-ech.com) resets it."""
    inner: list[str] = []
    with TCPServer("127.0.0.1", tspu(tls_context, inner)) as server:
        tk = measure_with(server.port, https_record(PUBLISHED))
    target = tk["target"]
    assert (tk["x_mechanism"], tk["x_status"]) == ("tls.rst", "anomaly") and tk["control"]["failure"] is None
    assert target["outer_server_name"] == "cloudflare-ech.com" and target["server_name"] == NAME
    assert target["echconfig"] == base64.b64encode(PUBLISHED).decode() and "x_ech_config_error" not in tk
    (query,) = [q for q in tk["queries"] if q["query_type"] == "HTTPS"]
    assert query["tags"] == ["ech_config"] and query["answers"][0]["x_ech"] == target["echconfig"]
    assert inner == []  # reset before the server saw it


def test_the_same_site_with_grease_passes_the_rule_that_blocks_what_browsers_send(
        tls_context: ssl.SSLContext) -> None:
    """Without the HTTPS record the target names the site itself (GREASE): Russia's rule does not fire. This
    is the false negative the published config removes."""
    inner: list[str] = []
    with TCPServer("127.0.0.1", tspu(tls_context, inner)) as server:
        tk = measure_with(server.port, https_record(None))
    assert (tk["x_mechanism"], tk["x_status"]) == ("none", "ok")
    assert tk["target"]["echconfig"] == "GREASE" and tk["target"]["outer_server_name"] == NAME
    assert [q["failure"] for q in tk["queries"] if q["query_type"] == "HTTPS"] == ["dns_no_answer"]


def test_a_sealed_hello_the_censor_lets_through_opens_to_the_site_at_the_server(
        tls_context: ssl.SSLContext) -> None:
    """With a public name the censor does not block, the server gets the hello, opens it with its key and
    reads the site's name inside: the ECH is real, not a lookalike."""
    other = ech.encode_config_list(ech.encode_config(0x2A, ECH_KEY.public_key().public_bytes_raw(),
                                                     "public.example", ((1, 1),), 64))
    inner: list[str] = []
    keys = {0x2A: (ech.parse_config_list(other)[0], ECH_KEY)}

    def server_side(conn: socket.socket, server: TCPServer) -> None:
        data = b""
        while parse_client_hello(data) is False and len(data) < 65536:
            data = conn.recv(65536, socket.MSG_PEEK)
        with contextlib.suppress(ech.ECHError):
            inner.append(str(ech.open_client_hello(data, keys).sni))
        censor(tls_context, None)(conn, server)

    with TCPServer("127.0.0.1", server_side) as server:
        tk = measure_with(server.port, https_record(other))
    assert (tk["x_mechanism"], tk["x_status"]) == ("none", "ok") and tk["target"]["x_server_hello"] is True
    assert tk["target"]["outer_server_name"] == "public.example" and inner == [NAME]


@pytest.mark.parametrize("published,why", [
    (b"\x00\x05\xfe\x0d\x00\x01\x00", "does not parse"),  # a config cut inside its key
    (ech.encode_config_list(ech.encode_config(1, bytes(32), "a.example", ((1, 99),))), "none of the 1 published"),
], ids=["cut", "no-suite"])
def test_a_published_config_that_cannot_be_used_falls_back_to_grease_and_says_why(
        tls_context: ssl.SSLContext, published: bytes, why: str) -> None:
    with TCPServer("127.0.0.1", censor(tls_context, None)) as server:
        tk = measure_with(server.port, https_record(published))
    assert why in tk["x_ech_config_error"] and tk["target"]["echconfig"] == "GREASE"
    assert tk["x_mechanism"] == "none"


@pytest.mark.parametrize("plain_has_it", [False, True], ids=["stripped", "both"])
def test_the_config_is_asked_over_doh_when_the_run_has_a_doh_server(tls_context: ssl.SSLContext,
                                                                     tmp_path: Path, plain_has_it: bool) -> None:
    """With --doh the HTTPS record comes over DNS-over-HTTPS (an on-path censor cannot strip it there); the
    public resolver is asked too, and a config that came over DoH but not over plain DNS is said to have been
    stripped on its way."""
    ca = TestCA(tmp_path)
    asked: list[str] = []

    async def doh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method, target, headers, body = await read_head(reader)
        query = dns.message.from_wire(body)
        asked.append(dns.rdatatype.to_text(query.question[0].rdtype))
        reply = https_record(PUBLISHED)(query, body)[0][1]
        writer.write(http_response(200, reply, [("Content-Type", "application/dns-message")]))
        await writer.drain()

    async def main(port: int) -> dict[str, Any]:
        async with DoHServer(doh, ssl_context=ca.server_context(NAME)) as server, \
                UDPDNSServer(https_record(PUBLISHED if plain_has_it else None)) as resolver:
            ports.append(resolver.port)
            ctx = Context(timeouts=TIMEOUTS, ca_bundle=str(ca.pem),
                          udp_resolver=Resolver("udp", "127.0.0.1", port=resolver.port, duplicate_window=0),
                          options={"doh": f"https://{NAME}:{server.port}/dns-query"})
            async with asyncio.timeout(30):
                return await echcheck.run(f"https://{NAME}:{port}/", ctx)

    inner: list[str] = []
    ports: list[int] = []
    with TCPServer("127.0.0.1", tspu(tls_context, inner)) as server:
        tk = asyncio.run(main(server.port))
    assert asked == ["HTTPS"]
    queries = {q["tags"][0]: q for q in tk["queries"] if q["query_type"] == "HTTPS"}
    assert queries["ech_config"]["engine"] == "doh" and queries["ech_config_plain"]["engine"] == "udp"
    assert queries["ech_config"]["answers"][0]["x_ech"] == base64.b64encode(PUBLISHED).decode()
    if plain_has_it:
        assert "x_ech_config_stripped" not in tk
    else:
        assert tk["x_ech_config_stripped"] == {"resolver": f"127.0.0.1:{ports[0]}", "failure": "dns_no_answer"}
    assert tk["target"]["outer_server_name"] == "cloudflare-ech.com"
    assert tk["target"]["failure"] == "connection_reset"  # Russia's rule read the outer name
