"""The evasion strategies' shapes (netx/shape.py): the first flight re-framed, never changed in meaning.

A real ClientHello from Python's ssl and a real request head go through each shape; the result must still
be the same handshake (or the same request, as a server reads it), and what the shape claims to cut must
be cut where it says. Over loopback, a real TLS server completes a handshake whose ClientHello was
re-framed, and a recording server sees the pieces arrive apart. Hostile bytes give pieces or Unshaped,
nothing else. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import struct
from pathlib import Path

import pytest

from tamperscope.netx import Trace, tcp_connect, tls_handshake
from tamperscope.netx.shape import (
    GAP,
    Shape,
    Unshaped,
    host_name_case,
    host_trailing_dot,
    host_value_case,
    http_segments,
    tls_records,
    tls_records_segments,
    tls_segments,
)
from tamperscope.wire.tlshello import ClientHello, ClientHelloBuffer

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]

LO = srv.LOOPBACK
NAME = "www.example.com"
REQUEST = b"GET / HTTP/1.1\r\nHost: www.example.com\r\nAccept: */*\r\n\r\n"
HOST_VALUE = (REQUEST.index(b"www.example.com"), REQUEST.index(b"www.example.com") + len(NAME))


def _client_hello(name: str = NAME) -> bytes:
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


HELLO = _client_hello()


def _sni_span(record: bytes) -> tuple[int, int]:
    """Where the server_name extension's host_name lies in a one-record ClientHello (offset, length), found by
    walking the message's structure rather than by searching for the name."""
    assert record[0] == 0x16 and record[5] == 1
    pos = 5 + 4 + 2 + 32  # record header, handshake header, version, random
    pos += 1 + record[pos]  # session id
    pos += 2 + int.from_bytes(record[pos : pos + 2], "big")  # cipher suites
    pos += 1 + record[pos]  # compression methods
    end = pos + 2 + int.from_bytes(record[pos : pos + 2], "big")
    pos += 2
    while pos < end:
        etype, elen = struct.unpack_from("!HH", record, pos)
        if etype == 0:
            assert record[pos + 6] == 0  # host_name
            return pos + 9, int.from_bytes(record[pos + 7 : pos + 9], "big")
        pos += 4 + elen
    raise AssertionError("no server_name extension")


def _records(data: bytes) -> list[tuple[bytes, bytes]]:
    """The TLS records of ``data`` as (type and version, payload); the bytes must be whole records exactly."""
    out = []
    pos = 0
    while pos < len(data):
        assert pos + 5 <= len(data), "a record header is cut short"
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        assert pos + 5 + length <= len(data), "a record's length runs past the bytes"
        out.append((data[pos : pos + 3], data[pos + 5 : pos + 5 + length]))
        pos += 5 + length
    return out


def _feed(pieces: list[bytes], records: int = -1) -> ClientHello | None | bool:
    """What a ClientHelloBuffer makes of ``pieces`` fed as consecutive TCP segments."""
    buf = ClientHelloBuffer(1000, records)
    seq, result = 1000, None
    for piece in pieces:
        result = buf.feed(seq, piece)
        seq += len(piece)
        if result is not False:
            return result
    return result


def test_the_client_hello_is_one_record_with_the_name() -> None:
    """What the other tests rest on: Python's first flight is a single handshake record holding the SNI."""
    assert _records(HELLO) == [(HELLO[:3], HELLO[5:])]
    start, length = _sni_span(HELLO)
    assert HELLO[start : start + length] == NAME.encode()
    hello = _feed([HELLO], records=1)
    assert isinstance(hello, ClientHello) and hello.sni == NAME


TLS_SHAPES = [("tls_segments", tls_segments, 2), ("tls_records", tls_records, 1),
              ("tls_records_segments", tls_records_segments, 2)]


@pytest.mark.parametrize("label,make,count", TLS_SHAPES, ids=[t[0] for t in TLS_SHAPES])
def test_every_tls_shape_keeps_the_handshake_bytes(label: str, make, count: int) -> None:  # type: ignore[no-untyped-def]
    pieces = make(NAME)(HELLO)
    assert len(pieces) == count and all(pieces)
    records = _records(b"".join(pieces))
    assert all(head == HELLO[:3] for head, _ in records)  # handshake records of the same version
    assert b"".join(payload for _, payload in records) == HELLO[5:]
    hello = _feed(pieces)  # full reassembly: the name is still there to read
    assert isinstance(hello, ClientHello) and hello.sni == NAME


def test_tls_segments_cuts_inside_the_name() -> None:
    first, second = tls_segments(NAME)(HELLO)
    assert first + second == HELLO
    start, length = _sni_span(HELLO)
    assert start < len(first) < start + length  # at least one byte of the name on each side
    assert NAME.encode() not in first and NAME.encode() not in second
    assert _feed([first]) is False  # half a name: a reassembling reader waits for more
    hello = _feed([first, second], records=1)  # still one record: a per-record reader finds the name
    assert isinstance(hello, ClientHello) and hello.sni == NAME


def test_tls_records_makes_two_records_cut_inside_the_name() -> None:
    (piece,) = tls_records(NAME)(HELLO)
    assert len(piece) == len(HELLO) + 5  # one more record header, nothing else
    records = _records(piece)
    assert len(records) == 2
    (head1, p1), (head2, p2) = records
    assert head1 == head2 == HELLO[:3]
    assert int.from_bytes(piece[3:5], "big") == len(p1) and p1 and p2
    assert p1 + p2 == HELLO[5:]
    start, length = _sni_span(HELLO)
    cut = 5 + len(p1)  # where the first record's payload ends, as an offset in the original record
    assert start < cut < start + length
    assert NAME.encode() not in p1 and NAME.encode() not in p2
    assert p1.endswith(NAME.encode()[: cut - start]) and p2.startswith(NAME.encode()[cut - start :])
    # a parser that reads the first record only misses the name; one that reassembles records finds it
    assert _feed([piece], records=1) is None
    hello = _feed([piece], records=-1)
    assert isinstance(hello, ClientHello) and hello.sni == NAME


def test_tls_records_segments_sends_each_record_alone() -> None:
    pieces = tls_records_segments(NAME)(HELLO)
    assert len(pieces) == 2
    assert [len(_records(p)) for p in pieces] == [1, 1]  # each piece is one whole record
    assert b"".join(pieces) == tls_records(NAME)(HELLO)[0]
    assert _feed(pieces, records=1) is None
    assert _feed(pieces[:1], records=1) is None  # given up on at the end of the first record
    hello = _feed(pieces)
    assert isinstance(hello, ClientHello) and hello.sni == NAME


def test_the_original_hello_is_read_by_every_parser() -> None:
    """The contrast the evasion nettest needs: the same parsers do find the name in the plain hello."""
    for records in (1, -1):
        hello = _feed([HELLO], records=records)
        assert isinstance(hello, ClientHello) and hello.sni == NAME


def test_tls_records_keeps_a_second_record_after_the_hello() -> None:
    """Bytes after the first record (a ChangeCipherSpec in the same write) follow the two records unchanged."""
    ccs = b"\x14\x03\x03\x00\x01\x01"
    (piece,) = tls_records(NAME)(HELLO + ccs)
    assert piece.endswith(ccs) and len(piece) == len(HELLO) + 5 + len(ccs)
    assert [h for h, _ in _records(piece)] == [HELLO[:3], HELLO[:3], ccs[:3]]


@pytest.mark.parametrize("make", [tls_segments, tls_records, tls_records_segments])
@pytest.mark.parametrize("data,why", [
    (b"", "not a TLS"), (b"\x16\x03", "not a TLS"), (REQUEST, "not a TLS"),
    (_client_hello("other.example.org"), "no SNI"),
])
def test_tls_shapes_refuse_bytes_without_the_name(make, data: bytes, why: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Unshaped, match=why):
        make(NAME)(data)


@pytest.mark.parametrize("make", [tls_records, tls_records_segments])
def test_tls_records_refuses_a_hello_that_overruns_its_record(make) -> None:  # type: ignore[no-untyped-def]
    """The first record's length says the hello goes on past the bytes at hand: there is no record to cut."""
    with pytest.raises(Unshaped):
        make(NAME)(HELLO[:-10])
    short = HELLO[:3] + (_sni_span(HELLO)[0] - 5).to_bytes(2, "big") + HELLO[5:]  # the name lies past the record
    with pytest.raises(Unshaped):
        make(NAME)(short)


# -- a real TLS server accepts the re-framed hello --------------------------------------------------------


class _Relay:
    """A loopback TCP relay in front of ``port`` that records each chunk the client's side sends."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.chunks: list[bytes] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.listen = 0

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bool) -> None:
        try:
            while data := await reader.read(65536):
                if record:
                    self.chunks.append(data)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(LO, self.port)
        self._writers += [writer, up_writer]
        for args in ((reader, up_writer, True), (up_reader, writer, False)):
            task = asyncio.create_task(self._pump(*args))
            self._tasks.add(task)

    async def __aenter__(self) -> _Relay:
        self._server = await asyncio.start_server(self._serve, LO, 0)
        self.listen = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()
        await asyncio.sleep(0.01)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


@pytest.mark.parametrize("label,make,count", TLS_SHAPES, ids=[t[0] for t in TLS_SHAPES])
def test_a_real_tls_server_accepts_the_shaped_hello(tmp_path: Path, label: str, make, count: int) -> None:  # type: ignore[no-untyped-def]
    """OpenSSL, as a server, completes the handshake behind a relay that records what the client sent."""
    ca = srv.TestCA(tmp_path)

    async def main() -> tuple[list[int], list[bytes]]:
        ctx = ca.server_context(NAME)
        async with srv.TCPServer(_echo, ssl_context=ctx) as server, _Relay(server.port) as relay, Trace() as trace:
            stream = await tcp_connect(LO, relay.listen, trace=trace)
            stream.shape = make(NAME)
            async with await tls_handshake(stream, server_name=NAME, ca_bundle=str(ca.pem)) as tls:
                assert stream.shaped == count and stream.shape is None
                await tls.write(b"after the handshake")
                assert await tls.read() == b"after the handshake"
            (rec,) = trace.tls_handshakes
            assert rec["failure"] is None and rec["x_verified"] is True and rec["server_name"] == NAME
            writes = [e["num_bytes"] for e in trace.network_events if e["operation"] == "write"]
            return writes, list(relay.chunks)

    writes, chunks = srv.run(main())
    hello_len = len(HELLO) + (0 if label == "tls_segments" else 5)
    assert len(writes) > count and sum(writes[:count]) == hello_len  # the first writes are the hello's pieces
    wire = b"".join(chunks)
    records = _records(wire[:hello_len])  # what reached the server: whole records, then the client's Finished
    assert all(head[0] == 0x16 for head, _ in records)
    assert len(records) == (1 if label == "tls_segments" else 2)
    if label != "tls_segments":
        assert NAME.encode() not in records[0][1] and NAME.encode() not in records[1][1]
    if count == 2:
        assert len(chunks[0]) == writes[0] < hello_len  # the first piece arrived on its own


def test_without_a_shape_the_hello_goes_out_as_one_write(tmp_path: Path) -> None:
    ca = srv.TestCA(tmp_path)

    async def main() -> None:
        async with srv.TCPServer(_echo, ssl_context=ca.server_context(NAME)) as server, Trace() as trace:
            stream = await tcp_connect(LO, server.port, trace=trace)
            async with await tls_handshake(stream, server_name=NAME, ca_bundle=str(ca.pem)):
                assert stream.shaped is None
            writes = [e["num_bytes"] for e in trace.network_events if e["operation"] == "write"]
            assert writes[0] == len(HELLO)

    srv.run(main())


# -- HTTP shapes ---------------------------------------------------------------------------------------


def _host_line(request: bytes) -> tuple[bytes, bytes]:
    """The Host header of ``request`` as (name, value), found line by line."""
    for line in request.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"host":
            return name, value.strip()
    raise AssertionError("no Host header")


def test_http_segments_cuts_inside_the_host_value() -> None:
    first, second = http_segments(REQUEST)
    assert first + second == REQUEST
    assert HOST_VALUE[0] < len(first) < HOST_VALUE[1]


def test_host_name_case_mixes_the_header_name_only() -> None:
    (out,) = host_name_case(REQUEST)
    name, value = _host_line(out)
    assert name.lower() == b"host" and name not in (b"Host", b"host", b"HOST")
    assert value == b"www.example.com"
    assert out.lower() == REQUEST.lower() and len(out) == len(REQUEST)
    assert out.replace(name, b"Host") == REQUEST


def test_host_value_case_mixes_the_value_only() -> None:
    (out,) = host_value_case(REQUEST)
    name, value = _host_line(out)
    assert name == b"Host"
    assert value.lower() == NAME.encode() and value != NAME.encode() and value != NAME.upper().encode()
    assert out.replace(value, NAME.encode()) == REQUEST


@pytest.mark.parametrize("before,after", [
    (b"www.example.com", b"www.example.com."),
    (b"a.example:8080", b"a.example.:8080"),
    (b"localhost", b"localhost."),
])
def test_host_trailing_dot_qualifies_the_name_and_keeps_the_port(before: bytes, after: bytes) -> None:
    request = REQUEST.replace(b"www.example.com", before)
    (out,) = host_trailing_dot(request)
    assert _host_line(out) == (b"Host", after)
    assert out == request.replace(before, after)


NO_HOST = b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"


@pytest.mark.parametrize("shape", [http_segments, host_name_case, host_value_case, host_trailing_dot])
@pytest.mark.parametrize("request_bytes", [
    NO_HOST, b"", b"GET / HTTP/1.1\r\nX-Host: www.example.com\r\n\r\n", HELLO,
])
def test_http_shapes_refuse_a_request_without_host(shape: Shape, request_bytes: bytes) -> None:
    with pytest.raises(Unshaped, match="no Host header"):
        shape(request_bytes)


@pytest.mark.parametrize("value", [b"192.0.2.1", b"192.0.2.1:8080", b"www.example.com.", b"a.example.:80",
                                   b"[2001:db8::1]", b"[2001:db8::1]:443", b""])
def test_host_trailing_dot_refuses_an_address_or_a_qualified_name(value: bytes) -> None:
    with pytest.raises(Unshaped):
        host_trailing_dot(REQUEST.replace(b"www.example.com", value))


def test_value_shapes_refuse_what_they_cannot_change() -> None:
    with pytest.raises(Unshaped):
        http_segments(REQUEST.replace(b"www.example.com", b"a"))  # one byte: nowhere to cut
    with pytest.raises(Unshaped):
        host_value_case(REQUEST.replace(b"www.example.com", b"192.0.2.1"))  # no letters to change


# -- over a loopback socket: the pieces arrive apart ----------------------------------------------------------


class _Recorder:
    """A loopback TCP server that keeps every chunk each read returns."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.chunks.append(data)
        finally:
            self.done.set()


async def _send_shaped(shape: Shape | None, data: bytes) -> tuple[list[bytes], int | str | None, list[int]]:
    recorder = _Recorder()
    async with srv.TCPServer(recorder.handle) as server, Trace() as trace:
        stream = await tcp_connect(LO, server.port, trace=trace)
        stream.shape = shape
        await stream.write(data)
        assert stream.shape is None  # consumed by this write
        shaped = stream.shaped
        await stream.write(b"later")  # not shaped: one more write of its own
        await stream.aclose()
        await asyncio.wait_for(recorder.done.wait(), 5)
        writes = [e["num_bytes"] for e in trace.network_events if e["operation"] == "write"]
    return recorder.chunks, shaped, writes


def test_http_segments_arrive_as_separate_reads() -> None:
    chunks, shaped, writes = srv.run(_send_shaped(http_segments, REQUEST))
    assert b"".join(chunks) == REQUEST + b"later"
    assert shaped == 2 and writes[:2] == [len(p) for p in http_segments(REQUEST)] and len(writes) == 3
    assert len(chunks) >= 2
    assert HOST_VALUE[0] < len(chunks[0]) < HOST_VALUE[1]  # the first read ends inside the Host value
    assert GAP >= 0.01  # what keeps the kernel from sending the pieces as one segment


def test_an_unshaped_request_goes_out_unchanged_in_one_write() -> None:
    chunks, shaped, writes = srv.run(_send_shaped(http_segments, NO_HOST))
    assert b"".join(chunks) == NO_HOST + b"later"
    assert shaped == "the request has no Host header"
    assert writes == [len(NO_HOST), 5]


def test_an_unshaped_hello_goes_out_unchanged_in_one_write() -> None:
    other = _client_hello("other.example.org")
    chunks, shaped, writes = srv.run(_send_shaped(tls_records(NAME), other))
    assert b"".join(chunks) == other + b"later"
    assert isinstance(shaped, str) and "SNI" in shaped
    assert writes == [len(other), 5]


# -- hostile input ----------------------------------------------------------------------------------------


def _hostile_inputs(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = [rng.randbytes(rng.randrange(0, 700)) for _ in range(800)]
    out += [HELLO[:cut] for cut in range(0, len(HELLO), 7)]
    for _ in range(800):
        b = bytearray(HELLO)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        out.append(bytes(b))
    for _ in range(400):  # a record header and the name in random places, lengths that lie
        body = bytearray(rng.randbytes(rng.randrange(0, 300)))
        body[rng.randrange(len(body) + 1):0] = NAME.encode()[: rng.randrange(len(NAME) + 1)]
        out.append(b"\x16\x03\x01" + rng.randrange(0x10000).to_bytes(2, "big") + bytes(body))
    for _ in range(800):  # heads with Host lines of every kind of value
        value = bytes(rng.choice(b"aA.:[]0123456789 \t\x00\xffzZ-") for _ in range(rng.randrange(0, 30)))
        name = rng.choice([b"Host", b"host", b"HOST", b"hOsT", b"Hos", b"X-Host"])
        sep = rng.choice([b":", b": ", b":\t", b" :"])
        end = rng.choice([b"\r\n", b"\n", b""]) + rng.choice([b"\r\n", b"", b"Accept: */*\r\n\r\n"])
        head = b"GET / HTTP/1.1\r\n" + name + sep + value + end + rng.randbytes(20)
        out.append(head[: rng.randrange(len(head) + 1)] if rng.random() < 0.2 else head)
    return out


def _check_reframed(data: bytes, pieces: list[bytes]) -> None:
    """Two records cut from the first one of ``data``, the rest of ``data`` after them."""
    joined = b"".join(pieces)
    assert len(joined) == len(data) + 5
    n1 = int.from_bytes(joined[3:5], "big")
    second = joined[5 + n1 :]
    n2 = int.from_bytes(second[3:5], "big")
    assert joined[:3] == second[:3] == data[:3] and n1 and n2
    rebuilt = data[:3] + (n1 + n2).to_bytes(2, "big") + joined[5 : 5 + n1] + second[5:]
    assert rebuilt == data


def _check_case(data: bytes, pieces: list[bytes]) -> None:
    (out,) = pieces
    assert len(out) == len(data) and out.lower() == data.lower()


def _check_dot(data: bytes, pieces: list[bytes]) -> None:
    (out,) = pieces
    assert len(out) == len(data) + 1
    k = next((i for i in range(len(data)) if out[i] != data[i]), len(data))
    assert out[k : k + 1] == b"." and out[:k] + out[k + 1 :] == data


def _check_segments(data: bytes, pieces: list[bytes]) -> None:
    assert len(pieces) == 2 and all(pieces) and b"".join(pieces) == data


HOSTILE = [
    ("tls_segments", tls_segments(NAME), _check_segments),
    ("tls_records", tls_records(NAME), _check_reframed),
    ("tls_records_segments", tls_records_segments(NAME), _check_reframed),
    ("http_segments", http_segments, _check_segments),
    ("host_name_case", host_name_case, _check_case),
    ("host_value_case", host_value_case, _check_case),
    ("host_trailing_dot", host_trailing_dot, _check_dot),
]


@pytest.mark.parametrize("label,shape,check", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_bytes_give_pieces_or_unshaped(label: str, shape: Shape, check) -> None:  # type: ignore[no-untyped-def]
    shaped = 0
    for data in _hostile_inputs(7):
        try:
            pieces = shape(data)
        except Unshaped:
            continue
        check(data, pieces)
        shaped += 1
    assert shaped >= 20  # the hostile set did reach past the shape's first checks


def test_trailing_blanks_a_body_and_mixed_case_already_are_handled() -> None:
    """Edge cases: blanks after the Host value are not the name; a Host line in the body is not the header;
    a name already in the shape's mixed case is not 'shaped'."""
    padded = b"GET / HTTP/1.1\r\nHost: www.example.com \t\r\nAccept: */*\r\n\r\n"
    (dotted,) = host_trailing_dot(padded)
    assert b"Host: www.example.com. \t\r\n" in dotted
    first, second = http_segments(padded)
    assert first.endswith(b"Host: www.exa") and second.startswith(b"mple.com")
    smuggled = b"POST / HTTP/1.1\r\nContent-Length: 26\r\n\r\n\r\nHost: a.example\r\n\r\n"
    for shape in (http_segments, host_name_case, host_value_case, host_trailing_dot):
        with pytest.raises(Unshaped):
            shape(smuggled)
    (mixed,) = host_value_case(REQUEST)
    with pytest.raises(Unshaped):
        host_value_case(mixed)
    (named,) = host_name_case(REQUEST)
    with pytest.raises(Unshaped):
        host_name_case(named)
