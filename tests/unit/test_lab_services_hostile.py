"""Hostile clients against the lab's network services: the censor bridge, the DNS servers, the
interception proxy and the web farm.

Whatever a program run inside the lab sends, these must not raise, hang, grow without bound or write
a wrong ground-truth line. Each case here once did. No lab is started: the censor's decisions are
called with crafted frames, and the socket services run on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import struct
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from tamperscope.lab import blockpages, censor, farm, proxy
from tamperscope.lab.dnsd import DNSServer, static_answerer
from tamperscope.lab.web import WebServer
from tamperscope.model.profile import Profile, Rule, parse_profile
from tamperscope.wire import dnswire, packet

PROFILE = """
name = "hostile"
[proxy]
enabled = true
[[rule]]
id = "dns-inject"
layer = "dns"
action = "inject"
domains = ["inj.org"]
answer = "198.18.250.3"
[[rule]]
id = "http-rst"
layer = "http"
action = "rst"
domains = ["rst.org"]
[[rule]]
id = "tls-rst"
layer = "tls"
action = "rst"
domains = ["sni.org"]
[[rule]]
id = "tls-throttle"
layer = "tls"
action = "throttle"
rate_kbps = 100
domains = ["slow.org"]
[[rule]]
id = "quic-sni"
layer = "quic"
action = "sni-drop"
domains = ["quicsni.org"]
suffix = true
"""
MACS = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
CLIENT, SERVER = "198.18.1.2", "198.19.0.5"


def _profile(tmp_path: Path) -> Profile:
    return parse_profile(PROFILE, source="hostile.toml", base=tmp_path, builtin_pages=blockpages.names())


@pytest.fixture
def lab_censor(tmp_path: Path) -> Iterator[censor.Censor]:
    c = censor.Censor(_profile(tmp_path), censor.GroundTruth(tmp_path / "truth.jsonl"))
    yield c
    c.truth._f.close()


def _truth(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "truth.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _tcp(payload: bytes, *, dport: int = 443, sport: int = 40000, seq: int = 1000) -> bytes:
    return MACS + packet.tcp_packet(CLIENT, SERVER, sport, dport, seq=seq, ack=1, flags=packet.ACK | packet.PSH,
                                    payload=payload)


def _client_hello(sni: str) -> bytes:
    ctx = ssl.create_default_context()
    out = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return out.read()


def _decide(c: censor.Censor, frame: bytes) -> list[tuple[bytes, bool, float]]:
    return c.decide(frame, True, time.monotonic(), time.time())


# -- the censor -------------------------------------------------------------------------------------


def test_a_later_fragment_is_relayed_not_read_as_a_dns_query(lab_censor: censor.Censor, tmp_path: Path) -> None:
    """Its first bytes are the middle of some datagram; read as a UDP header to port 53 they forged an
    answer to a query nobody sent, and wrote it down as ground truth."""
    query = dnswire.encode_query("inj.org", dnswire.QTYPE_A, 7)
    assert query is not None
    frame = bytearray(MACS + packet.udp_packet(CLIENT, SERVER, 40000, 53, query))
    frame[20:22] = struct.pack("!H", 185)  # fragment offset 1480, the next fragment of a large datagram
    assert _decide(lab_censor, bytes(frame)) == [(bytes(frame), False, 0.0)]
    assert _truth(tmp_path) == []


def test_a_tcp_data_offset_under_20_is_not_read_as_a_request(lab_censor: censor.Censor, tmp_path: Path) -> None:
    """A data offset of 16 put the payload inside the header (checksum and urgent pointer): the censor
    reset a 'request' that no server would ever accept."""
    frame = bytearray(_tcp(b"/ HTTP/1.1\r\nHost: rst.org\r\n\r\n", dport=80))
    frame[34 + 12] = 4 << 4
    frame[34 + 16 : 34 + 20] = b"GET "
    assert _decide(lab_censor, bytes(frame)) == [(bytes(frame), False, 0.0)]
    assert _truth(tmp_path) == []


def test_an_ipv4_header_length_under_20_is_no_header(lab_censor: censor.Censor, tmp_path: Path) -> None:
    """With IHL 2 the 'UDP header' is IP header bytes 8-15: a checksum of 53 made the rest a DNS query."""
    query = dnswire.encode_query("inj.org", dnswire.QTYPE_A, 7)
    assert query is not None
    ip = bytes([0x42, 0]) + struct.pack("!HHHBBH", 20 + len(query), 1, 0, 64, packet.PROTO_UDP, 53)
    frame = MACS + ip + socket.inet_aton(CLIENT) + query
    assert _decide(lab_censor, frame) == [(frame, False, 0.0)]
    assert _truth(tmp_path) == []


def _udp443(payload: bytes, *, sport: int = 50000) -> bytes:
    return MACS + packet.udp_packet(CLIENT, SERVER, sport, 443, payload)


def _initial(sni: str) -> bytes:
    from tamperscope.netx.quic import initial_datagram

    return initial_datagram(sni)


def test_quic_sni_drop_reads_the_initial_and_drops_its_flow_only(lab_censor: censor.Censor, tmp_path: Path) -> None:
    """The name inside a real QUIC Initial decides: the flow is dropped, later short-header datagrams of that flow
    too; an innocent name, another flow, and traffic the rule's direction leaves alone pass."""
    assert _decide(lab_censor, _udp443(_initial("www.quicsni.org"))) == []
    assert _decide(lab_censor, _udp443(b"\x40" + b"\x11" * 60)) == []  # the same flow's next datagram
    assert _decide(lab_censor, _udp443(_initial("example.org"), sport=50001))  # forwarded
    assert _decide(lab_censor, _udp443(b"\x40" + b"\x11" * 60, sport=50001))
    frame = _udp443(_initial("quicsni.org"), sport=50002)
    assert lab_censor.decide(frame, False, time.monotonic(), time.time())  # from the internet side: egress rule
    logged = _truth(tmp_path)
    assert [(e["rule"], e["name"], e["client"]) for e in logged] == [("quic-sni", "www.quicsni.org", f"{CLIENT}:50000")]


def test_hostile_udp_443_datagrams_pass_and_log_nothing(lab_censor: censor.Censor, tmp_path: Path) -> None:
    """Random bytes, every truncation of a real Initial, thousands of bit flips: relayed (a censor that cannot
    read a name does not act), never an exception."""
    import random

    rng = random.Random(3)
    initial = _initial("www.quicsni.org")
    payloads = [rng.randbytes(rng.randrange(0, 1500)) for _ in range(300)]
    payloads += [b"\xc0\x00\x00\x00\x01" + rng.randbytes(1195) for _ in range(100)]
    payloads += [initial[:cut] for cut in range(0, 400, 3)]
    for _ in range(1000):
        b = bytearray(initial)
        b[rng.randrange(1, len(b))] ^= 1 << rng.randrange(8)  # the header stays long; the rest is damaged
        payloads.append(bytes(b))
    for i, p in enumerate(payloads):
        out = _decide(lab_censor, _udp443(p, sport=20000 + i))
        assert out == [] or len(out) == 1
    # a flipped bit the AEAD does not cover (the padding past the packet) may leave the name readable: only
    # such copies may have been acted on, and only with the right name
    assert all(e["name"] == "www.quicsni.org" for e in _truth(tmp_path))


def _one_byte_records(handshake: bytes) -> bytes:
    return b"".join(b"\x16\x03\x01\x00\x01" + handshake[i : i + 1] for i in range(len(handshake)))


def test_a_hello_in_one_byte_records_still_matches(lab_censor: censor.Censor, tmp_path: Path) -> None:
    records = _one_byte_records(_client_hello("sni.org")[5:])
    out: list[tuple[bytes, bool, float]] = []
    for i in range(0, len(records), 6):
        out = _decide(lab_censor, _tcp(records[i : i + 6], seq=1000 + i))
        if [r["rule"] for r in _truth(tmp_path)]:
            break
    assert [r["rule"] for r in _truth(tmp_path)] == ["tls-rst"]
    assert len(out) == 2  # an RST each way


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_a_hello_in_one_byte_records_and_tiny_segments_takes_linear_time(lab_censor: censor.Censor) -> None:
    """Every segment re-read the whole buffer record by record: 16 KB sent as 1-byte records in 6-byte
    segments stalled the bridge, and so every flow of the lab, for 1.05 s."""
    records = _one_byte_records(b"\x01" + (16000).to_bytes(3, "big") + b"\x00" * 16000)
    frames = [_tcp(records[i : i + 6], seq=1000 + i) for i in range(0, 16400, 6)]
    t0 = time.perf_counter()
    for f in frames:
        assert _decide(lab_censor, f) == [(f, False, 0.0)]
    assert time.perf_counter() - t0 < 0.3


def test_throttled_flows_are_forgotten_once_idle(lab_censor: censor.Censor) -> None:
    """Every throttled flow stayed in the table for the censor's life (a connection loop to a throttled
    site grew it without end)."""
    hello = _client_hello("slow.org")
    for port in range(40000, 40050):
        _decide(lab_censor, _tcp(hello, sport=port))
    assert len(lab_censor.throttled) == 50
    lab_censor.gc(time.time(), time.monotonic() + 60)
    assert len(lab_censor.throttled) == 50  # still in use
    lab_censor.gc(time.time(), time.monotonic() + censor.FLOW_TTL + censor.MAX_QUEUE_DELAY + 1)
    assert lab_censor.throttled == {}


def test_the_hello_table_is_bounded_between_gc_runs(lab_censor: censor.Censor) -> None:
    """Only gc (every 10 s) bounded it: at line rate a flood of first segments to 443 held ~1 GB by then."""
    start = b"\x16\x03\x01\x40\x00\x01\x00\x3f\xfc"  # a record and a hello that claim 16 KB
    for port in range(1024, 1024 + 50_100):
        _decide(lab_censor, _tcp(start, sport=port))
    assert len(lab_censor.hello) <= 50_000


class _Broken(censor.Censor):
    delay = 0.0

    def __init__(self) -> None:  # no profile needed
        self.last_gc = time.monotonic()

    def decide(self, frame: bytes, from_client_side: bool, now: float, wall: float) -> list[tuple[bytes, bool, float]]:
        raise IndexError("a parsing bug")


def test_the_bridge_relays_a_frame_its_censor_fails_on(capfd: pytest.CaptureFixture[str]) -> None:
    """An exception in `decide` ended the bridge's loop: the lab then dropped every packet."""
    client_side, client_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    inet_side, inet_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    bridge = censor.Bridge.__new__(censor.Bridge)
    bridge.censor, bridge.socks, bridge.heap, bridge.seq = _Broken(), [client_side, inet_side], [], 0
    bridge.running, bridge.stats = True, {"frames": 0, "errors": 0}
    for s in bridge.socks:
        s.setblocking(False)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            bridge.run()
        except BaseException as e:  # noqa: BLE001 - the test reports it
            failed.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        inet_peer.settimeout(2)
        for i in range(3):
            client_peer.send(b"frame %d" % i)
            assert inet_peer.recv(100) == b"frame %d" % i
    finally:
        bridge.running = False
        thread.join(timeout=3)
        for s in (client_side, client_peer, inet_side, inet_peer):
            s.close()
    assert not failed and bridge.stats["errors"] == 3
    assert capfd.readouterr().err.count("\n") == 1


# -- DNS --------------------------------------------------------------------------------------------


def _header(flags: int, qdcount: int) -> bytes:
    return struct.pack("!HHHHHH", 0x1234, flags, qdcount, 0, 0, 0)


def test_a_dns_response_sent_to_a_server_is_ignored() -> None:
    """dnspython refuses to answer a response: the FormError reached the UDP handler's traceback log,
    and ended TCP sessions with asyncio's 'unhandled exception' one."""
    server = DNSServer("127.0.0.1", static_answerer(None, recursive=False))
    msg = _header(0x8100, 1) + b"\x01a\x00\x00\x01\x00\x01"
    assert asyncio.run(server.handle_wire(msg, ("127.0.0.1", 5353))) is None


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_thousands_of_questions_get_a_short_formerr() -> None:
    """13,000 questions in one datagram took 0.2 s of the event loop and came back as 64 KB."""
    server = DNSServer("127.0.0.1", static_answerer(None, recursive=False))
    msg = _header(0x0100, 13000) + b"\x00\x00\x01\x00\x01" * 13000
    t0 = time.perf_counter()
    out = asyncio.run(server.handle_wire(msg, ("127.0.0.1", 5353)))
    assert time.perf_counter() - t0 < 0.05
    assert out == struct.pack("!HHHHHH", 0x1234, 0x8101, 0, 0, 0, 0)


# -- the web farm -----------------------------------------------------------------------------------


async def _farm_handler(req: Any) -> farm.Response:
    return farm.respond(req.scheme, req.host, req.target)


def test_a_target_that_urlsplit_refuses_gets_a_400(caplog: pytest.LogCaptureFixture) -> None:
    """'//[x' made urlsplit raise: the client got no answer and the log a traceback."""

    async def go() -> bytes:
        srv = await WebServer(_farm_handler).start("127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET //[x HTTP/1.1\r\nHost: a.org\r\nConnection: close\r\n\r\n")
            async with asyncio.timeout(3):
                data = await reader.read()  # to the end: the server has closed its side
            writer.close()
            return data
        finally:
            srv.close()

    assert asyncio.run(go()).startswith(b"HTTP/1.1 400 ")
    assert not [r for r in caplog.records if r.exc_info]


@pytest.fixture
def h2_server() -> Iterator[tuple[int, list[BaseException]]]:
    """The web farm's HTTP/2 loop over plain TCP on 127.0.0.1 (ALPN only chooses it); errors it raised."""
    errors: list[BaseException] = []
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        web = WebServer(_farm_handler)

        async def conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                await web._h2(r, w, "127.0.0.1", "127.0.0.1", "a.org")
            except (ConnectionError, TimeoutError):
                pass
            except Exception as e:  # noqa: BLE001 - what _conn would have logged as a traceback
                errors.append(e)
            finally:
                w.close()

        srv = await asyncio.start_server(conn, "127.0.0.1", 0)
        state["port"], state["stop"] = srv.sockets[0].getsockname()[1], asyncio.Event()
        state["loop"] = asyncio.get_running_loop()
        ready.set()
        await state["stop"].wait()
        srv.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    yield state["port"], errors
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(timeout=5)


def _h2_client(port: int) -> tuple[socket.socket, h2.connection.H2Connection]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=3)
    cfg = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False)
    conn = h2.connection.H2Connection(config=cfg)
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def _pump(sock: socket.socket, conn: h2.connection.H2Connection, until: type) -> list[Any]:
    events: list[Any] = []
    deadline = time.monotonic() + 3
    while not any(isinstance(e, until) for e in events) and time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            break
        events += conn.receive_data(data)
        sock.sendall(conn.data_to_send())
    return events


def test_h2_headers_that_are_not_utf8_are_answered(h2_server: tuple[int, list[BaseException]]) -> None:
    """h2 decoded them itself and raised UnicodeDecodeError: a traceback and no answer."""
    port, errors = h2_server
    sock, conn = _h2_client(port)
    with sock:
        conn.send_headers(1, [(b":method", b"GET"), (b":path", b"/\xff"), (b":scheme", b"https"),
                              (b":authority", b"a.org"), (b"x-junk", b"\xfe\xff")], end_stream=True)
        sock.sendall(conn.data_to_send())
        events = _pump(sock, conn, h2.events.ResponseReceived)
    status = [dict(e.headers).get(b":status") for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert status == [b"200"] and not errors


def test_h2_streams_reset_before_their_end_are_forgotten(h2_server: tuple[int, list[BaseException]]) -> None:
    """Each reset stream kept its headers and body (up to 64 KiB) until the connection ended: a client
    opening, filling and resetting streams grew the server without bound."""
    port, errors = h2_server
    sock, conn = _h2_client(port)
    tracemalloc.start()
    try:
        with sock:
            _pump(sock, conn, h2.events.RemoteSettingsChanged)
            before = tracemalloc.get_traced_memory()[0]
            for i in range(150):
                sid = 1 + 2 * i
                conn.send_headers(sid, [(":method", "POST"), (":path", "/"), (":scheme", "https"),
                                        (":authority", "a.org")])
                conn.send_data(sid, b"x" * 16000)
                conn.reset_stream(sid)
                conn.ping(struct.pack("!Q", i))  # its answer: the server has read all of the above
                sock.sendall(conn.data_to_send())
                _pump(sock, conn, h2.events.PingAckReceived)
            grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert not errors
    assert grown < 1_000_000, grown  # 150 x 16 KB = 2.4 MB when kept


# -- the interception proxy -------------------------------------------------------------------------


@pytest.fixture
def upstream() -> Iterator[tuple[int, list[bytes]]]:
    """A server on 127.0.0.1 that records what reaches it; the proxy's 'original destination'."""
    srv = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                c.settimeout(3)
                try:
                    got.append(c.recv(65536))
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1], got
    srv.close()


def _interceptor(tmp_path: Path, truth: list[tuple[str, str | None]]) -> proxy.Interceptor:
    box = proxy.Interceptor.__new__(proxy.Interceptor)
    box.p = _profile(tmp_path)
    box.truth = lambda rule, client, server, name: truth.append((rule.id, name))
    box.mitm_rules = [Rule(id="mitm", layer="tls", action="mitm", domains=("sni.org",))]

    class NoIssuer:
        def context(self, sni: str) -> ssl.SSLContext:
            raise ValueError("no CA in this test")

    box.issuer = NoIssuer()  # type: ignore[assignment]
    return box


def _accepted_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        client = socket.create_connection(srv.getsockname(), timeout=5)
        conn, _ = srv.accept()
    return client, conn


def test_a_clienthello_split_over_two_segments_is_still_intercepted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, upstream: tuple[int, list[bytes]]) -> None:
    """MSG_PEEK returns at once while a byte is queued, so the 50 'waits' took a millisecond: a hello
    whose second half came 0.3 s later was spliced through, never intercepted."""
    port, got = upstream
    monkeypatch.setattr(proxy, "original_dst", lambda sock: ("127.0.0.1", port))
    truth: list[tuple[str, str | None]] = []
    box = _interceptor(tmp_path, truth)
    client, conn = _accepted_pair()
    hello = _client_hello("sni.org")
    thread = threading.Thread(target=box._guard, args=(box.tls, conn), daemon=True)
    thread.start()
    with client:
        client.sendall(hello[:100])
        time.sleep(0.3)
        client.sendall(hello[100:])
        thread.join(timeout=5)
    assert truth == [("mitm", "sni.org")]
    assert got == []


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_a_request_head_trickled_a_byte_at_a_time_is_cut_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, upstream: tuple[int, list[bytes]]) -> None:
    """The proxy's timeout was per recv: a byte every few seconds held a thread for as long as the
    client liked (64 KiB of head at 14 s a byte: ten days)."""
    port, _ = upstream
    monkeypatch.setattr(proxy, "original_dst", lambda sock: ("127.0.0.1", port))
    monkeypatch.setattr(proxy, "TIMEOUT", 1.0)
    box = _interceptor(tmp_path, [])
    client, conn = _accepted_pair()
    thread = threading.Thread(target=box._guard, args=(box.http, conn), daemon=True)
    thread.start()
    t0 = time.monotonic()
    with client:
        for b in b"GET / HTTP/1.1\r\nHost: a.org\r\nX-Slow: " + b"a" * 100:
            if not thread.is_alive() or time.monotonic() - t0 > 3:
                break
            try:
                client.send(bytes([b]))
            except OSError:
                break
            time.sleep(0.1)
    assert not thread.is_alive()
    assert time.monotonic() - t0 < 2


def test_connections_past_the_cap_are_closed_not_threaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One thread per connection without a cap: when the kernel refused one more thread, the
    RuntimeError ended the accept loop and the proxy served nobody again."""
    monkeypatch.setattr(proxy, "MAX_CONNECTIONS", 2)
    box = _interceptor(tmp_path, [])
    release = threading.Event()
    calls: list[int] = []

    def handler(conn: socket.socket) -> None:
        calls.append(1)
        if len(calls) <= 2:
            release.wait(5)
        else:
            conn.sendall(b"hi")

    srv = box.serve(0, handler, host="127.0.0.1")
    addr = srv.getsockname()
    try:
        held = [socket.create_connection(addr, timeout=3) for _ in range(2)]
        time.sleep(0.2)
        extra = socket.create_connection(addr, timeout=3)
        assert extra.recv(10) == b""  # closed at once
        release.set()
        time.sleep(0.2)
        again = socket.create_connection(addr, timeout=3)
        assert again.recv(10) == b"hi"  # slots free again: served
        for s in (*held, extra, again):
            s.close()
    finally:
        release.set()
        srv.close()


def test_the_debian_servers_kinds_import_none_of_the_python_servers() -> None:
    """Every kind starts in a process of its own at each `lab up`, nine at once on two cores: obfs4, gateway,
    wireguard and tornet run Debian's servers, and importing dnspython, aioquic, h2 and the censor's packet code for them cost
    about 0.5 s of CPU each (the module's import: 0.75 s, now 0.27 s), at every lab up."""
    import subprocess
    import sys

    code = ("import sys, tamperscope.lab.services as s, tamperscope.lab.tornet; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'dns', 'aioquic', 'h2', 'uvloop'}), "
            "sorted(m for m in sys.modules if m.startswith(('tamperscope.netx', 'tamperscope.lab.censor', "
            "'tamperscope.lab.quicd', 'tamperscope.lab.web', 'tamperscope.lab.dnsd'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "[]"], out.stdout
