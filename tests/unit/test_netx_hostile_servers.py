"""Hostile servers on loopback: what a censor's or an attacker's server may send the probe.

Each server runs in threads of its own with raw sockets (so its pace is not tied to
the client's event loop) and listens on 127.0.0.1 only. Each test states what must
hold: the deadline, bounded memory or record counts, the failure string, records
that can still be written as JSON.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.rrset
import orjson
import pytest

from tamperscope.model import failures as F
from tamperscope.nettests import dnscheck, http_invalid_request_line, throttling, web_connectivity
from tamperscope.nettests.base import Context, Timeouts
from tamperscope.nettests.middlebox import ECHO_TIMEOUT, MAX_ECHO
from tamperscope.netx import DirectConnector, Limits, Trace, fetch, round_trip, tcp_connect
from tamperscope.netx.dns import MAX_UDP_EXTRA, _UDPProtocol, lookup_udp
from tamperscope.netx.doh import lookup_doh
from tamperscope.netx.fetch import redirect_target
from tamperscope.netx.http11 import MAX_INFORMATIONAL, wire_budget
from tamperscope.netx.stream import READ_SIZE
from tamperscope.wire import dnswire

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]

LO = srv.LOOPBACK
Script = Callable[[socket.socket, threading.Event], None]


class HostileServer:
    """A TCP server on 127.0.0.1 running ``script(sock, stop)`` in a thread per connection
    (TLS first when ``ssl_context`` is given). Leaving the context shuts every connection
    down (waking a script blocked in ``sendall``), then joins the threads."""

    def __init__(self, script: Script, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.ssl_context = ssl_context
        self.stop = threading.Event()
        self.listener = socket.socket()
        self.listener.bind((LO, 0))
        self.listener.listen(16)
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.live: set[socket.socket] = set()  # a duplicate of each open connection, to shut it down
        self.lock = threading.Lock()

    def __enter__(self) -> HostileServer:
        self._start(self._accept)
        return self

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self._start(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        sock = conn
        dup = conn.dup()
        with self.lock:
            self.live.add(dup)
        try:
            conn.settimeout(0.5)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(conn, server_side=True)
            self.script(sock, self.stop)
        except (OSError, ValueError):
            pass  # the client went away: what a hostile server does next does not matter
        finally:
            sock.close()
            conn.close()
            with self.lock:
                self.live.discard(dup)
                dup.close()  # the last descriptor: the client sees the close

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        with self.lock:
            for dup in self.live:
                try:
                    dup.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed by the client
        for thread in self.threads:
            thread.join(5)
        self.listener.close()


def read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        got = sock.recv(65536)
        if not got:
            raise OSError("EOF before the request head")
        data += got
    return data


def send_forever(sock: socket.socket, stop: threading.Event, data: bytes, pause: float = 0.0) -> None:
    """Send ``data`` again and again, never reading; when the client stops reading, wait
    (blocked, the connection kept open) until it closes or the test ends."""
    sock.settimeout(None)
    while not stop.is_set():
        sock.sendall(data)
        if pause:
            time.sleep(pause)


async def to_loopback(host: str, **_: object) -> list[str]:
    return [LO]


def loopback(ca: srv.TestCA | None = None) -> DirectConnector:
    return DirectConnector(resolve=to_loopback, ca_bundle=str(ca.pem) if ca else None)


def writable(value: object) -> None:
    """The measurement writer's check: orjson must accept it."""
    orjson.dumps(value)


# --- HTTP/1.1 ------------------------------------------------------------------------------------

def _respond(head: bytes, then: bytes = b"", forever: bytes = b"", pause: float = 0.0,
             close: bool = False) -> Script:
    """Read a request, send ``head + then``; then ``forever`` again and again, or close, or idle."""
    def script(sock: socket.socket, stop: threading.Event) -> None:
        read_request(sock)
        sock.sendall(head + then)
        if forever:
            send_forever(sock, stop, forever, pause)
        elif not close:
            stop.wait(1)

    return script


_CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(("name", "script", "failure"), [
    ("chunk size of 2^64, then EOF", _respond(_CHUNKED, b"10000000000000000\r\nabc", close=True), None),
    ("negative chunk size", _respond(_CHUNKED, b"-5\r\nabc"), F.HTTP_PROTOCOL_ERROR),
    ("chunk size in garbage", _respond(_CHUNKED, b"zz\r\nabc"), F.HTTP_PROTOCOL_ERROR),
    ("chunk-size line without end", _respond(_CHUNKED, forever=b"1" * 4096), F.HTTP_HEADERS_TOO_LARGE),
    ("Content-Length larger than sent, then EOF",
     _respond(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nabc", close=True), None),
    ("endless header line", _respond(b"HTTP/1.1 200 OK\r\nX-Big: ", forever=b"a" * 65536), F.HTTP_HEADERS_TOO_LARGE),
    ("binary status line", _respond(bytes(range(256)) * 4 + b"\r\n\r\n"), F.HTTP_PROTOCOL_ERROR),
    ("NUL in a header", _respond(b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok"),
     F.HTTP_PROTOCOL_ERROR),
    ("Content-Length and chunked", _respond(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"), "ok"),
    # was generic_timeout_error, at the deadline, with a core busy parsing 1xx heads until then
    ("1xx storm", _respond(b"", forever=b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n" * 50),
     F.HTTP_PROTOCOL_ERROR),
    ("body dripped", _respond(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", forever=b"x", pause=0.05),
     F.GENERIC_TIMEOUT_ERROR),
])
@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_http11_hostile_responses_end_in_time_with_a_failure(name: str, script: Script, failure: str | None) -> None:
    """Already handled (h11's caps, the one deadline): kept as a table so that it stays so."""
    async def main() -> None:
        with HostileServer(script) as server:
            trace = Trace()
            start = time.monotonic()
            result = await fetch(f"http://hostile.test:{server.port}/", trace=trace, connector=loopback(),
                                 timeout=1.0)
            assert time.monotonic() - start < 1.0 + 2
        rec = trace.requests[0]
        if failure == "ok":
            assert result.failure is None and rec["response"]["body"] == "ok"
        elif failure is None:  # the body ended early: what came is kept
            assert result.failure == F.EOF_ERROR and rec["response"]["body"] == "abc"
        else:
            assert result.failure == failure and rec["failure"] == failure
        writable(trace.test_keys())

    srv.run(main())


@pytest.mark.serial  # how much waits in the receive buffers depends on how busy the machine is
def test_tiny_chunks_keep_memory_near_the_body_limit() -> None:
    """A body sent as 1-byte chunks was kept as one bytes object per byte: ~100 bytes of
    memory per byte of body (67 MB for the default 512 KiB cap)."""
    limit = 64 * 1024

    async def main() -> None:
        script = _respond(_CHUNKED, forever=b"1\r\nx\r\n" * 20000)
        with HostileServer(script) as server:
            async with await tcp_connect(LO, server.port, trace=Trace(record_io=False)) as conn:
                tracemalloc.start()
                try:
                    # a bound on the wait, not on speed: with tracemalloc on, this read took 3.3-4.7 s here
                    response = await round_trip(conn, f"http://{LO}:{server.port}/", timeout=30,
                                                limits=Limits(body=limit), record=False)
                    peak = tracemalloc.get_traced_memory()[1]
                finally:
                    tracemalloc.stop()
        # framing counts against what is read (http11.wire_budget): six bytes read per byte kept, so the body is
        # cut at a sixth of the budget, give or take the last read, rather than at the cap (it cost ~3 s of CPU)
        kept = wire_budget(Limits(body=limit)) // 6
        assert response.body_is_truncated and response.body == b"x" * len(response.body)
        assert kept - READ_SIZE // 6 - 1 <= len(response.body) <= kept + 1 < limit, (len(response.body), kept)
        # the receive buffers (up to ~1.3 MB, whatever the body), and little per byte kept: was ~9 MB
        assert peak < 2 * 2**20 + 20 * limit

    srv.run(main())


@pytest.mark.parametrize("informational", [MAX_INFORMATIONAL, MAX_INFORMATIONAL + 1])
def test_a_few_1xx_responses_come_before_the_answer_and_no_more(informational: int) -> None:
    """Endless 1xx heads kept a core busy until the deadline (a control helper's event loop, for every client);
    as Go's net/http, five are taken, a sixth is a protocol error."""
    heads = b"HTTP/1.1 100 Continue\r\n\r\n" * informational
    script = _respond(heads + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", close=True)

    async def main() -> None:
        with HostileServer(script) as server:
            trace = Trace()
            result = await fetch(f"http://hostile.test:{server.port}/", trace=trace, connector=loopback(),
                                 timeout=5.0)
        if informational <= MAX_INFORMATIONAL:
            assert result.failure is None and trace.requests[0]["response"]["body"] == "ok"
        else:
            assert result.failure == F.HTTP_PROTOCOL_ERROR

    srv.run(main())


@pytest.mark.parametrize("chunk", [b"a;" + b"x" * 30000 + b"\r\n" + b"y" * 10 + b"\r\n", b"1\r\nz\r\n"])
def test_chunk_framing_counts_against_what_is_read(chunk: bytes) -> None:
    """Chunk extensions of 30 KB around 10 bytes of body, sent forever, were read until the deadline (6 s of CPU
    in a control helper): the framing now counts, and the body is cut as one over the cap is, well before the
    deadline, keeping what came."""
    limit = 64 * 1024

    async def main() -> None:
        with HostileServer(_respond(_CHUNKED, forever=chunk * 64)) as server:
            async with await tcp_connect(LO, server.port, trace=Trace(record_io=False)) as conn:
                response = await round_trip(conn, f"http://{LO}:{server.port}/", timeout=60,
                                            limits=Limits(body=limit), record=False)
        assert response.body_is_truncated  # not an error: round_trip raised none
        assert 0 < len(response.body) < limit and set(response.body) <= set(b"yz")

    srv.run(main())


def test_a_read_with_data_waiting_still_yields_to_the_deadline() -> None:
    """A peer that keeps the receive buffer full (1 MB of 1-byte chunks) held the loop for the
    whole buffer: reads returned without yielding, so no deadline could fire meanwhile."""
    async def main() -> None:
        with HostileServer(_respond(b"x" * 100000)) as server:
            async with await tcp_connect(LO, server.port, trace=Trace()) as conn:
                await conn.write(b"GET / HTTP/1.1\r\n\r\n")
                assert await conn.read(1) == b"x"  # the rest is waiting in the buffer
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0):
                        await conn.read()

    srv.run(main())


@pytest.mark.parametrize("location", [b"/\xc3\xa9t\xc3\xa9", b"/a b"])
def test_raw_bytes_in_location_are_percent_encoded_like_browsers(location: bytes) -> None:
    """Raw UTF-8 or a space in Location failed the next request with Python's text
    (`unknown_failure: 'ascii' codec can't encode...`, `unknown_failure: Illegal target characters`)."""
    asked: list[bytes] = []

    def script(sock: socket.socket, stop: threading.Event) -> None:
        head = read_request(sock)
        asked.append(head.split(b" ")[1])
        if head.startswith(b"GET / "):
            sock.sendall(b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n")
        else:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        stop.wait(0.5)

    expected = {b"/\xc3\xa9t\xc3\xa9": b"/%C3%A9t%C3%A9", b"/a b": b"/a%20b"}[location]

    async def main() -> None:
        ctx = Context(timeouts=Timeouts(dns=1, connect=1, tls=1, http=2, measurement=5))
        with HostileServer(script) as server:
            result = await fetch(f"http://redirect.test:{server.port}/", trace=Trace(), connector=loopback())
            assert result.failure is None and [r.status for r in result.responses] == [302, 200]
            tk = await web_connectivity.run(f"http://{LO}:{server.port}/", ctx)
        assert asked == [b"/", expected] * 2
        assert tk["http_experiment_failure"] is None
        assert tk["requests"][0]["request"]["url"].endswith(expected.decode())

    srv.run(main())


# --- HTTP/2 -------------------------------------------------------------------------------------------

def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack("!I", len(payload))[1:] + bytes([kind, flags]) + struct.pack("!I", stream) + payload


def _hpack_int(value: int, bits: int, first: int = 0) -> bytes:
    """An HPACK integer (RFC 7541 5.1) with a ``bits``-bit prefix."""
    top = (1 << bits) - 1
    if value < top:
        return bytes([first | value])
    out = [first | top]
    value -= top
    while value >= 128:
        out.append(value & 127 | 128)
        value >>= 7
    return bytes([*out, value])


def _literal(name: bytes, value: bytes, *, index: bool = False) -> bytes:
    """An HPACK literal header field with a new name; ``index``: also added to the dynamic table."""
    return (b"\x40" if index else b"\x00") + _hpack_int(len(name), 7) + name + _hpack_int(len(value), 7) + value


_SETTINGS = _frame(4, 0, 0) + _frame(4, 1, 0)  # ours, and the ACK of the client's


def _h2(then: bytes, forever: bytes = b"") -> Script:
    def script(sock: socket.socket, stop: threading.Event) -> None:
        sock.recv(65536)  # the client's preface, SETTINGS and request
        sock.sendall(_SETTINGS + then)
        if forever:
            send_forever(sock, stop, forever)
        else:
            stop.wait(1)

    return script


@pytest.mark.parametrize("status", [b"99999999999999999999999", b"-1", b"2_0", b" 20", b"099", None])
def test_h2_status_must_be_three_digits(tmp_path: Path, status: bytes | None) -> None:
    """`:status` went through int(): 10**22 was recorded as the code (orjson then refused to
    write the measurement: 'Integer exceeds 64-bit range'), and so were -1 and 0 (no :status)."""
    ca = srv.TestCA(tmp_path)
    block = _literal(b":status", status) if status is not None else _literal(b"x-a", b"b")
    script = _h2(_frame(1, 4, 1, block) + _frame(0, 1, 1, b"body"))

    async def main() -> None:
        with HostileServer(script, ssl_context=ca.server_context("h2.test", alpn=("h2",))) as server:
            trace = Trace()
            result = await fetch(f"https://h2.test:{server.port}/", trace=trace, connector=loopback(ca), timeout=3)
        assert result.failure == F.HTTP_PROTOCOL_ERROR
        assert trace.requests[0]["response"]["code"] == 0
        writable(trace.test_keys())

    srv.run(main())


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
@pytest.mark.parametrize("via", ["fetch", "doh"])
def test_a_peer_that_never_reads_cannot_stall_the_close(tmp_path: Path, via: str) -> None:
    """An h2 server that floods PINGs and reads nothing: our PING ACKs fill the send buffer, the
    deadline fires, and then the TLS close_notify waited for buffer space forever (fetch and
    lookup_doh hung past their deadline)."""
    ca = srv.TestCA(tmp_path)
    script = _h2(_frame(1, 4, 1, b"\x88"), forever=_frame(6, 0, 0, b"\x00" * 8) * 2000)

    async def small_send_buffer(url: str, *, trace: Trace, timeout: float, tags: Any = ()) -> Any:
        """The loopback connector, with a send buffer that fills in a fraction of a second
        (the kernel's grows to 4 MB: a few seconds of PING ACKs)."""
        conn = await loopback(ca)(url, trace=trace, timeout=timeout, tags=tags)
        sock = conn.tcp._transport.get_extra_info("socket")  # type: ignore[attr-defined]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        return conn

    async def main() -> None:
        with HostileServer(script, ssl_context=ca.server_context("h2.test", alpn=("h2",))) as server:
            url = f"https://h2.test:{server.port}/"
            start = time.monotonic()
            async with asyncio.timeout(8):  # a clear failure, not the runner's limit
                if via == "fetch":
                    failure = (await fetch(url, trace=Trace(), connector=small_send_buffer, timeout=1)).failure
                else:
                    failure = (await lookup_doh("x.example", url=url, trace=Trace(), connector=small_send_buffer,
                                                timeout=1)).failure
            assert time.monotonic() - start < 1 + 2.5  # the deadline, and the close's own bounded wait
        assert failure == F.GENERIC_TIMEOUT_ERROR

    srv.run(main())


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_h2_already_handled(tmp_path: Path) -> None:
    """CONTINUATION flood, HPACK bomb, WINDOW_UPDATE overflow, RST_STREAM, DATA past the limit."""
    ca = srv.TestCA(tmp_path)
    bomb = b"\x88" + _literal(b"x-big", b"v" * 4000, index=True) + b"\xbe" * 12000  # 12,000 times 4 kB
    cases = {
        "continuation": (_h2(_frame(1, 0, 1, b"\x88"), forever=_frame(9, 0, 1, _literal(b"x-a", b"b" * 100)) * 50),
                         (F.HTTP_PROTOCOL_ERROR, F.HTTP_HEADERS_TOO_LARGE)),
        "hpack bomb": (_h2(_frame(1, 5, 1, bomb)), (F.HTTP_HEADERS_TOO_LARGE,)),
        "window overflow": (_h2(_frame(1, 4, 1, b"\x88") + _frame(8, 0, 0, struct.pack("!I", 2**31 - 1)) * 2),
                            (F.HTTP_PROTOCOL_ERROR,)),
        "rst_stream": (_h2(_frame(1, 4, 1, b"\x88") + _frame(0, 0, 1, b"partial")
                           + _frame(3, 0, 1, struct.pack("!I", 2))), (F.HTTP_STREAM_RESET,)),
        "data past the limit": (_h2(_frame(1, 4, 1, b"\x88"), forever=_frame(0, 0, 1, b"z" * 16384) * 8), (None,)),
    }

    async def main() -> None:
        ctx = ca.server_context("h2.test", alpn=("h2",))
        for name, (script, failures) in cases.items():
            with HostileServer(script, ssl_context=ctx) as server:
                trace = Trace()
                start = time.monotonic()
                result = await fetch(f"https://h2.test:{server.port}/", trace=trace, connector=loopback(ca),
                                     timeout=2, limits=Limits(body=64 * 1024))
                assert time.monotonic() - start < 2 + 2, name
            assert result.failure in failures, name
            if result.failure is None:
                assert result.final is not None and result.final.body_is_truncated
            writable(trace.test_keys())

    srv.run(main())


# --- DNS --------------------------------------------------------------------------------------------

Respond = Callable[[bytes, Any, Callable[[bytes], None], threading.Event], None]


class UDPFlooder:
    """A UDP server on 127.0.0.1 whose ``respond(query, client, send, stop)`` may send any number
    of datagrams (``send`` sends to the client)."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.stop = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LO, 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> UDPFlooder:
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                query, addr = self.sock.recvfrom(65535)
                self.respond(query, addr, lambda d: self.sock.sendto(d, addr), self.stop)
            except OSError:
                continue

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def _reply(query: bytes, *ips: str) -> bytes:
    q = dns.message.from_wire(query)
    r = dns.message.make_response(q)
    if ips:
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", *ips))
    return r.to_wire()


def _flood(make: Callable[[bytes], list[bytes]], seconds: float) -> Respond:
    def respond(query: bytes, client: Any, send: Callable[[bytes], None], stop: threading.Event) -> None:
        datagrams = make(query)
        end = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < end:
            for d in datagrams * 20:
                send(d)
            time.sleep(0.001)

    return respond


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_a_flood_of_non_replies_is_noted_a_bounded_number_of_times() -> None:
    """Garbage and wrong-id datagrams were each noted in network_events: ~10,000 a second
    (4.5 MB of records for a 2 s lookup)."""
    def junk(query: bytes) -> list[bytes]:
        wrong = bytearray(_reply(query, "10.0.0.1"))
        wrong[0] ^= 0xFF
        return [b"\x00\x01garbage", bytes(wrong)]

    async def main() -> None:
        with UDPFlooder(_flood(junk, 2)) as server:
            async with Trace() as trace:
                start = time.monotonic()
                result = await lookup_udp("x.example", "A", server=LO, port=server.port, trace=trace, timeout=1)
                assert time.monotonic() - start < 1 + 2
        assert result.failure == F.GENERIC_TIMEOUT_ERROR
        ignored = [e for e in trace.network_events if e.get("x_dns_ignored")]
        assert len(ignored) == MAX_UDP_EXTRA

    srv.run(main())


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_a_flood_of_duplicate_replies_is_recorded_a_bounded_number_of_times() -> None:
    """Every later reply went to x_dns_duplicate_responses, with its raw bytes: ~1,500 records
    in the 0.3 s window, and as many more as a longer window allowed."""
    async def main() -> None:
        with UDPFlooder(_flood(lambda q: [_reply(q, "10.0.0.2")], 3)) as server:
            async with Trace() as trace:
                start = time.monotonic()
                result = await lookup_udp("x.example", "A", server=LO, port=server.port, trace=trace,
                                          timeout=1, duplicate_window=2)
            assert time.monotonic() - start < 1.5  # the collector stops at the cap, not at the window
        assert result.addresses == ("10.0.0.2",)
        assert len(trace.x_dns_duplicate_responses) == MAX_UDP_EXTRA
        assert len(trace.network_events) <= 2 + MAX_UDP_EXTRA  # write, first reply, duplicates

    srv.run(main())


def test_a_queued_datagram_still_yields_to_the_deadline() -> None:
    """uvloop hands over up to 32 datagrams at once; each 64 KiB reply takes dnspython ~0.15 s:
    taking queued datagrams without yielding ran past the lookup's and the window's deadlines."""
    async def main() -> None:
        proto = _UDPProtocol(asyncio.get_running_loop())
        proto.datagram_received(b"reply", (LO, 53))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0):
                await proto.get()
        assert await proto.get() == b"reply"

    srv.run(main())


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_thousands_of_answers_parse_in_linear_time() -> None:
    """The fast answer parser checked each new address against a list of the ones before:
    a 64 KiB reply (4,000 addresses) cost ~0.14 s instead of ~0.01 s."""
    def reply(n: int) -> bytes:
        wire = dnswire.encode_query("x.example", dnswire.QTYPE_A, 7)
        assert wire is not None
        ips = [f"10.{i >> 8 & 255}.{i & 255}.1" for i in range(n)]
        return _reply(wire, *ips)

    def best(wire: bytes) -> float:
        # CPU time, the best of 7: seven runs of the large reply take ~80 ms of wall time, which one burst of other
        # processes (CI runs its streams side by side) covered whole, and the ratio read 76 (CI, 2026-12-07)
        times = []
        for _ in range(7):
            start = time.process_time()
            answers = dnswire.parse_answers(wire)
            times.append(time.process_time() - start)
            assert answers is not None
        return min(times)

    small, large = reply(400), reply(4000)
    assert len(large) > 60000 and len(dnswire.parse_answers(large).records) == 4000  # type: ignore[union-attr]
    ratio = best(large) / best(small)
    assert ratio < 40  # 10 times the records: linear ~10 times the time, quadratic ~60-100 times


def test_a_reply_from_another_port_is_never_taken() -> None:
    """Already handled (the socket is connected): a forged reply from another port of the
    same address is dropped by the kernel, the resolver's later one is the answer."""
    forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    forger.bind((LO, 0))

    def respond(query: bytes, client: Any, send: Callable[[bytes], None], stop: threading.Event) -> None:
        forger.sendto(_reply(query, "10.6.6.6"), client)
        time.sleep(0.05)
        send(_reply(query, "10.0.0.3"))

    async def main() -> None:
        with UDPFlooder(respond) as server:
            async with Trace() as trace:
                result = await lookup_udp("x.example", "A", server=LO, port=server.port, trace=trace,
                                          timeout=1, duplicate_window=0.1)
        assert result.addresses == ("10.0.0.3",) and trace.x_dns_duplicate_responses == []

    try:
        srv.run(main())
    finally:
        forger.close()


@pytest.mark.wallclock  # bounds the time a hostile server may take, within its timeout
@pytest.mark.parametrize(("name", "body"), [("html", b"<html>blocked</html>"), ("50 MB", b"\x00" * 65536)])
def test_doh_garbage_bodies_are_server_misbehaving(tmp_path: Path, name: str, body: bytes) -> None:
    """Already handled: an HTML blockpage, or a body of 50 MB (read up to the cap, then dropped)."""
    ca = srv.TestCA(tmp_path)
    size = len(body) if name == "html" else 50 * 2**20
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/dns-message\r\nContent-Length: %d\r\n\r\n" % size
    script = _respond(head, body) if name == "html" else _respond(head, forever=body)

    async def main() -> None:
        with HostileServer(script, ssl_context=ca.server_context("doh.test")) as server:
            trace = Trace()
            start = time.monotonic()
            result = await lookup_doh("x.example", url=f"https://doh.test:{server.port}/dns-query", trace=trace,
                                      connector=loopback(ca), timeout=2)
            assert time.monotonic() - start < 2
        assert result.failure == F.DNS_SERVER_MISBEHAVING == trace.queries[0]["failure"]

    srv.run(main())


# --- nettests -----------------------------------------------------------------------------------------

@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_throttling_against_a_dripping_server_keeps_what_it_measured() -> None:
    """Each timed fetch may take 60 s: against a server that drips, the engine's deadline
    cut the nettest and the measurement kept nothing (not even its DNS query)."""
    drip = _respond(b"HTTP/1.1 200 OK\r\nContent-Length: 60000\r\n\r\n", forever=b"x" * 10, pause=0.05)

    async def main() -> None:
        # a window longer than the measurement: the measurement's deadline, not the window, ends it
        ctx = Context(timeouts=Timeouts(dns=1, connect=1, tls=1, http=1, measurement=1.5),
                      options={"rounds": 1, "window": 5})
        with HostileServer(drip) as server:
            start = time.monotonic()
            async with asyncio.timeout(ctx.timeouts.measurement + 5):  # the engine's deadline
                tk = await throttling.run(f"http://{LO}:{server.port}/blob", ctx)
            assert time.monotonic() - start < ctx.timeouts.measurement + 2
        assert tk["x_measurement_failure"] == F.GENERIC_TIMEOUT_ERROR
        assert tk["failure"] == "throttling_inconclusive"
        assert tk["address"] == f"{LO}:{server.port}" and tk["queries"][0]["failure"] is None
        writable(tk)

    srv.run(main())


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_throttling_measures_a_throttled_target_by_what_arrived_in_its_window() -> None:
    """A resource too big to finish in time under a throttle: each fetch transfers for its share of the
    measurement and is rated by what arrived. Before, a fetch that timed out had no rate, so a throttled
    site came out "throttling_inconclusive" whenever the resource was large or the throttle tight."""
    rate = 40_000  # bytes/s for the target's name; the innocent name gets the bytes at once

    def script(sock: socket.socket, stop: threading.Event) -> None:
        head = read_request(sock)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4000000\r\n\r\n")
        if b"Host: " + throttling.INNOCENT.encode() in head:
            send_forever(sock, stop, b"x" * 65536, 0.0)
        else:
            send_forever(sock, stop, b"x" * (rate // 20), 0.05)

    async def main() -> None:
        ctx = Context(timeouts=Timeouts(dns=1, connect=1, tls=1, http=1, measurement=4), options={"rounds": 1})
        with HostileServer(script) as server:
            start = time.monotonic()
            tk = await throttling.run(f"http://{LO}:{server.port}/big", ctx)
            assert time.monotonic() - start < ctx.timeouts.measurement + 1  # the windows fit in the measurement
        assert "x_measurement_failure" not in tk and tk["failure"] is None
        (r,) = tk["rounds"]
        assert r["target"]["failure"] == F.GENERIC_TIMEOUT_ERROR and r["target"]["seconds"] < 2
        assert r["target"]["bytes"] >= 20_000 and r["control"]["bytes"] > r["target"]["bytes"]
        th = tk["x_throttle"]
        assert th["throttled"] is True
        assert 0.5 * rate * 8 / 1000 <= th["cap_kbps"] <= 1.5 * rate * 8 / 1000, th  # ~320 kbit/s
        writable(tk)

    srv.run(main())


def test_a_control_helper_answering_deep_json_cannot_make_the_measurement_unwritable() -> None:
    """orjson parses 1,024 levels but writes 254: a helper's answer nested 300 deep went into
    test_keys.control and the measurement could not be written (lost, 'not measured')."""
    deep = b'{"dns": {"addrs": ' + b"[" * 300 + b"]" * 300 + b"}}"

    def helper(sock: socket.socket, stop: threading.Event) -> None:
        head = read_request(sock)
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = head.split(b"\r\n\r\n", 1)[1]
        while len(body) < length:
            body += sock.recv(65536)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(deep) + deep)
        stop.wait(0.2)

    async def main() -> None:
        with HostileServer(helper) as server:
            ctx = Context(helper_url=f"http://{LO}:{server.port}/",
                          timeouts=Timeouts(dns=1, connect=1, tls=1, http=1, control=2, measurement=5))
            tk = await dnscheck.run("localhost", ctx)
        assert tk["control"] is None
        assert tk["control_failure"] == "unknown_failure: control helper answered garbage"
        m: dict[str, Any] = {"test_keys": tk}
        dnscheck.finish(m, ctx)
        writable(m)

    srv.run(main())


@pytest.mark.wallclock  # bounds the time a hostile server may take, within its timeout
@pytest.mark.parametrize("mode", ["endless", "dripping"])
def test_middlebox_nettests_read_a_hostile_echo_boundedly(mode: str) -> None:
    """Already handled: an echo backend that answers without end (fast, or a byte at a time)
    gives a bounded `received`, within the echo timeout."""
    def backend(sock: socket.socket, stop: threading.Event) -> None:
        sock.recv(65536)
        send_forever(sock, stop, b"A" * 65536 if mode == "endless" else b"A", 0.0 if mode == "endless" else 0.05)

    async def main() -> None:
        with HostileServer(backend) as server:
            start = time.monotonic()
            tk = await http_invalid_request_line.run(f"{LO}:{server.port}", Context())
            assert time.monotonic() - start < ECHO_TIMEOUT + 2
        assert tk["tampering"] is True and len(tk["received"]) == 5
        assert all(r is not None and 0 < len(r) <= 2 * MAX_ECHO for r in tk["received"])
        writable(tk)

    srv.run(main())


def test_garbage_after_the_tls_handshake_is_a_failure_string(tmp_path: Path) -> None:
    """Already handled: records that are not TLS after the handshake fail the request with
    the OpenSSL reason, and a bare EOF keeps the body that came."""
    ca = srv.TestCA(tmp_path)

    def garbage(sock: socket.socket, stop: threading.Event) -> None:
        sock.recv(65536)
        raw = socket.socket(fileno=sock.detach())  # type: ignore[union-attr]
        with raw:
            raw.sendall(b"\x17\x03\x03\x00\x20" + os.urandom(32))
            stop.wait(0.5)

    async def main() -> None:
        with HostileServer(garbage, ssl_context=ca.server_context("t.test")) as server:
            result = await fetch(f"https://t.test:{server.port}/", trace=Trace(), connector=loopback(ca), timeout=2)
        assert result.failure is not None and result.failure.startswith(F.UNKNOWN_FAILURE_PREFIX + "ssl: ")

    srv.run(main())


@pytest.mark.parametrize(("location", "following"), [
    ("http://яндекс.рф/путь?q=é", "http://xn--d1acpjx3f.xn--p1ai/%D0%BF%D1%83%D1%82%D1%8C?q=%C3%A9"),
    ("//Яндекс.РФ:8080/x", "http://xn--d1acpjx3f.xn--p1ai:8080/x"),
    ("/путь", "http://a.example/%D0%BF%D1%83%D1%82%D1%8C"),
    ("http://user@яндекс.рф/", "http://user@xn--d1acpjx3f.xn--p1ai/"),
])
def test_an_idn_in_location_is_followed_in_its_idna_form(location: str, following: str) -> None:
    """A Location naming an IDN in raw UTF-8 (as a header: its bytes decoded as latin-1) is followed as a browser
    would, to the IDNA form of the host; percent-encoding the host made it unresolvable."""
    header = location.encode("utf-8").decode("latin-1")
    assert redirect_target("http://a.example/", header) == (following, "")


@pytest.mark.parametrize("location", ["http://" + "я" * 70 + ".рф/", "http://\xe9.example/", "http://a\xff/"])
def test_a_location_host_that_cannot_be_a_name_is_an_invalid_redirect(location: str) -> None:
    header = location.encode("utf-8").decode("latin-1") if location.startswith("http://я") else location
    assert redirect_target("http://a.example/", header) == (None, F.HTTP_INVALID_REDIRECT_LOCATION_HOST)
