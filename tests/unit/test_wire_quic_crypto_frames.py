"""wire.quicinitial against Initials whose CRYPTO frames a hostile client (or an evasion tool) arranges: empty,
out of order, overlapping. The censor reads every datagram crossing it, so none may hang it."""

from __future__ import annotations

import random
import struct
import threading

import pytest
from aioquic.quic.crypto import CryptoPair

from tamperscope.wire.quicinitial import VERSION_1, initial_hello
from tamperscope.wire.tlshello import ClientHello, client_hello

DCID = bytes(range(8))
NAME = "www.youtube.com"
HELLO = client_hello(NAME, ("h3",))[5:]  # the handshake message, without its TLS record header


def crypto(offset: int, data: bytes) -> bytes:
    """A CRYPTO frame with 4-byte varints for offset and length."""
    return b"\x06" + struct.pack("!I", 0x80000000 | offset) + struct.pack("!I", 0x80000000 | len(data)) + data


def initial(frames: bytes) -> bytes:
    """A client Initial (QUIC v1) carrying ``frames``, padded to 1200 bytes and encrypted with the keys anyone
    derives from its Destination Connection ID."""
    pn_len = 2
    payload_len = max(len(frames), 1200 - 64)
    frames = frames + bytes(payload_len - len(frames))  # PADDING
    header = (bytes([0xC0 | (pn_len - 1)]) + struct.pack("!I", VERSION_1) + bytes([len(DCID)]) + DCID + b"\x00"
              + b"\x00" + struct.pack("!H", 0x4000 | (pn_len + len(frames) + 16)) + b"\x00\x00")
    pair = CryptoPair()
    pair.setup_initial(cid=DCID, is_client=True, version=VERSION_1)
    return pair.encrypt_packet(header, frames, 0)


def test_the_helper_builds_an_initial_the_parser_reads() -> None:
    assert initial_hello(initial(crypto(0, HELLO))) == ClientHello(sni=NAME, alpn=("h3",))


def read_bounded(datagram: bytes) -> object:
    """``initial_hello(datagram)`` in a thread of its own, so that a parser that loops forever fails the test
    instead of hanging the run (the thread, a daemon, is then left behind)."""
    got: list[object] = []
    worker = threading.Thread(target=lambda: got.append(initial_hello(datagram)), daemon=True)
    worker.start()
    worker.join(3)
    if worker.is_alive():
        pytest.fail("initial_hello did not return within 3 s")
    return got[0]


EMPTY_FRAMES = {  # name: (frames, what initial_hello returns)
    "empty frame at offset 0": (crypto(0, b""), False),
    "empty frame where the data ends": (crypto(0, HELLO[:100]) + crypto(100, b""), False),
    "empty frame, then the rest": (crypto(0, HELLO[:100]) + crypto(100, b"") + crypto(100, HELLO[100:]),
                                   ClientHello(sni=NAME, alpn=("h3",))),
}


@pytest.mark.parametrize("name", list(EMPTY_FRAMES))
def test_an_empty_crypto_frame_does_not_hang_the_reader(name: str) -> None:
    """A CRYPTO frame of length 0 at the offset the gathered bytes had reached (`06 00 00`) made the
    reassembly loop add nothing, forever: the censor's thread hung on one datagram."""
    frames, expected = EMPTY_FRAMES[name]
    assert read_bounded(initial(frames)) == expected


def test_out_of_order_and_overlapping_frames_are_reassembled_as_the_server_does() -> None:
    """Frames that overlap (each repeating some bytes of the one before) left the reassembly at the first
    frame's end: the hello the server reads in full went unread."""
    rng = random.Random(19)
    for _ in range(50):
        frames: list[bytes] = []
        start = 0
        while start < len(HELLO):
            end = min(len(HELLO), start + rng.randrange(1, 120))
            begin = max(0, start - rng.randrange(0, 20))  # repeat up to 20 bytes already sent
            frames.append(crypto(begin, HELLO[begin:end]))
            start = end
        rng.shuffle(frames)
        assert initial_hello(initial(b"".join(frames))) == ClientHello(sni=NAME, alpn=("h3",))
