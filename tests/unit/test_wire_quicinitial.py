"""wire.quicinitial: the SNI a censor reads from a QUIC Initial, from real aioquic client Initials, and never an
exception on hostile bytes."""

from __future__ import annotations

import random
import time

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicProtocolVersion

from tamperscope.wire.quicinitial import initial_hello
from tamperscope.wire.tlshello import ClientHello


def first_flight(name: str | None, *, alpn: list[str] | None = None,
                 version: int = QuicProtocolVersion.VERSION_1) -> list[bytes]:
    """The datagrams a real QUIC client sends first, for SNI `name`."""
    cfg = QuicConfiguration(is_client=True, alpn_protocols=alpn or ["h3"], server_name=name,
                            supported_versions=[version])
    conn = QuicConnection(configuration=cfg)
    conn.connect(("198.18.0.1", 443), now=time.monotonic())
    return [d for d, _ in conn.datagrams_to_send(now=time.monotonic())]


@pytest.mark.parametrize("version", [QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2])
@pytest.mark.parametrize("name", ["www.youtube.com", "a" * 63 + ".example.org", "xn--80ak6aa92e.com"])
def test_reads_the_sni_of_a_real_initial(name: str, version: int) -> None:
    """The name and ALPN come out of the encrypted Initial of both QUIC versions."""
    hello = initial_hello(first_flight(name, version=version)[0])
    assert hello == ClientHello(sni=name, alpn=("h3",))


def test_no_sni_is_a_hello_without_a_name() -> None:
    hello = initial_hello(first_flight(None)[0])
    assert isinstance(hello, ClientHello) and hello.sni is None


def test_a_hello_continued_in_a_second_initial_is_incomplete() -> None:
    """A ClientHello too big for one packet (here: many ALPN names) is not read from its first datagram alone."""
    flight = first_flight("www.youtube.com", alpn=[f"proto-{i:04d}-" + "x" * 40 for i in range(60)])
    assert len(flight) >= 2
    assert initial_hello(flight[0]) is False


def test_other_packets_are_not_initials() -> None:
    initial = first_flight("www.youtube.com")[0]
    assert initial_hello(b"\x40" + initial[1:]) is None  # a short header
    assert initial_hello(initial[:1] + b"\x00\x00\x00\x02" + initial[5:]) is None  # an unknown version
    assert initial_hello(bytes([initial[0] | 0x20]) + initial[1:]) is None  # 0-RTT's type bits
    assert initial_hello(b"\xc0\x00\x00\x00\x01" + b"\0" * 1195) is None  # looks like one, decrypts as nothing
    assert initial_hello(b"") is None


def test_hostile_bytes_never_raise() -> None:
    """Every truncation, thousands of bit flips and random datagrams: None, False or a hello, never an exception."""
    initial = first_flight("www.youtube.com")[0]
    rng = random.Random(7)
    right = ClientHello(sni="www.youtube.com", alpn=("h3",))
    read = [initial_hello(initial[:cut]) for cut in range(0, len(initial) + 1)]
    assert all(r is None or r is False or r == right for r in read)
    assert read[:100] == [None] * 100 and read[-1] == right  # the header alone is nothing; the whole packet reads
    for _ in range(2000):
        b = bytearray(initial)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        got = initial_hello(bytes(b))
        assert got is None or got is False or isinstance(got, ClientHello)
    for _ in range(500):
        d = bytes([0xC0]) + b"\x00\x00\x00\x01" + rng.randbytes(rng.randrange(0, 1400))
        assert initial_hello(d) in (None, False) or isinstance(initial_hello(d), ClientHello)
    # a header flip that leaves the packet decryptable must still not invent another name
    assert initial_hello(initial) == ClientHello(sni="www.youtube.com", alpn=("h3",))
