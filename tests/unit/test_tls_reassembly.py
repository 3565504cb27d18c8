"""How much of a ClientHello a DPI parser puts together: ClientHelloBuffer's record limit, the profile's
``[network] tls_reassembly``, and the lab censor that obeys it.

The censor is driven with crafted Ethernet frames through ``Censor.decide``: no namespaces, no sockets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tamperscope.lab import blockpages, censor
from tamperscope.model.profile import Profile, ProfileError, parse_profile
from tamperscope.wire import packet
from tamperscope.wire.tlshello import ClientHello, ClientHelloBuffer

try:
    from .test_netx_shape import _client_hello
except ImportError:
    from test_netx_shape import _client_hello  # type: ignore[no-redef]

NAME = "www.example.com"
CLIENT, SERVER = "198.18.1.2", "198.19.0.5"
MACS = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"


HELLO = _client_hello(NAME)
NAME_AT = HELLO.index(NAME.encode())


def _two_records(hello: bytes, cut: int) -> bytes:
    """``hello``'s one record re-framed as two, the first holding ``cut`` bytes of the payload (built here,
    not with netx.shape, so these tests do not lean on the code the other file tests)."""
    payload = hello[5:]
    head = hello[:3]
    return (head + cut.to_bytes(2, "big") + payload[:cut]
            + head + (len(payload) - cut).to_bytes(2, "big") + payload[cut:])


SPLIT = _two_records(HELLO, NAME_AT - 5 + 4)  # the first record ends inside the name ("www.")


def _feed(segments: list[bytes], records: int) -> tuple[list[ClientHello | None | bool], ClientHelloBuffer]:
    buf = ClientHelloBuffer(7, records)
    seq, results = 7, []
    for segment in segments:
        results.append(buf.feed(seq, segment))
        seq += len(segment)
    return results, buf


def _sni(result: ClientHello | None | bool) -> str | None:
    assert isinstance(result, ClientHello), result
    return result.sni


# -- ClientHelloBuffer ----------------------------------------------------------------------------------------


def test_one_record_parser_reads_a_hello_in_one_record() -> None:
    (result,), buf = _feed([HELLO], records=1)
    assert _sni(result) == NAME and buf.done


def test_one_record_parser_misses_a_hello_in_two_records() -> None:
    (result,), buf = _feed([SPLIT], records=1)
    assert result is None and buf.done
    assert buf.feed(7 + len(SPLIT), b"\x16\x03\x01\x00\x00") is None  # given up on for good


def test_full_reassembly_reads_both() -> None:
    for data in (HELLO, SPLIT):
        (result,), _ = _feed([data], records=-1)
        assert _sni(result) == NAME


def test_every_record_cut() -> None:
    """Wherever the record boundary falls, a full parser finds the name and a one-record parser does not
    (the hello never ends inside its first record), and a two-record parser is enough."""
    for cut in range(1, len(HELLO) - 5):
        data = _two_records(HELLO, cut)
        (full,), _ = _feed([data], records=-1)
        (one,), _ = _feed([data], records=1)
        (two,), _ = _feed([data], records=2)
        assert _sni(full) == NAME, cut
        assert one is None, cut
        assert _sni(two) == NAME, cut


def test_every_segment_cut() -> None:
    """Any split of one record into two TCP segments: waits after the first, reads the name after the second,
    whether the parser follows records or not (segments are reassembled in both)."""
    for cut in range(1, len(HELLO)):
        for records in (-1, 1):
            (first, second), _ = _feed([HELLO[:cut], HELLO[cut:]], records)
            assert first is False, (cut, records)
            assert _sni(second) == NAME, (cut, records)


def test_two_records_in_two_segments() -> None:
    """Each record in its own segment: the one-record parser gives up at the end of the first segment."""
    boundary = NAME_AT + 4  # the first record's end
    (first, second), _ = _feed([SPLIT[:boundary], SPLIT[boundary:]], records=-1)
    assert first is False and _sni(second) == NAME
    (first,), buf = _feed([SPLIT[:boundary]], records=1)
    assert first is None and buf.done


# -- the profile ------------------------------------------------------------------------------------------


def _parse(text: str, tmp_path: Path) -> Profile:
    return parse_profile(text, source="p.toml", base=tmp_path, builtin_pages=blockpages.names())


def test_tls_reassembly_defaults_to_full(tmp_path: Path) -> None:
    assert _parse('name = "x"\n', tmp_path).network.tls_reassembly == "full"
    assert _parse('[network]\ndelay_ms = 5\n', tmp_path).network.tls_reassembly == "full"


@pytest.mark.parametrize("value", ["full", "segments", "none"])
def test_tls_reassembly_accepts_its_three_values(tmp_path: Path, value: str) -> None:
    assert _parse(f'[network]\ntls_reassembly = "{value}"\n', tmp_path).network.tls_reassembly == value


@pytest.mark.parametrize("value", ['"partial"', '""', '"records"', '"full "', "1", "true", '["full"]', "{a = 1}"])
def test_tls_reassembly_refuses_anything_else(tmp_path: Path, value: str) -> None:
    with pytest.raises(ProfileError) as info:
        _parse(f"[network]\ntls_reassembly = {value}\n", tmp_path)
    msg = str(info.value)
    assert msg.startswith("p.toml: network.tls_reassembly: ") and "\n" not in msg
    if value.startswith('"'):
        assert "must be one of full, segments, none" in msg
    else:
        assert "must be a string" in msg


# -- the lab censor ---------------------------------------------------------------------------------------

PROFILE = """
name = "reassembly"
[network]
{network}
[[rule]]
id = "tls-rst"
layer = "tls"
action = "rst"
domains = ["www.example.com"]
"""


@pytest.fixture
def make_censor(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    made: list[censor.Censor] = []

    def make(reassembly: str | None) -> censor.Censor:
        network = "" if reassembly is None else f'tls_reassembly = "{reassembly}"'
        profile = _parse(PROFILE.format(network=network), tmp_path)
        c = censor.Censor(profile, censor.GroundTruth(tmp_path / f"truth-{len(made)}.jsonl"))
        made.append(c)
        return c

    yield make
    for c in made:
        c.truth._f.close()


def _frame(payload: bytes, seq: int) -> bytes:
    return MACS + packet.tcp_packet(CLIENT, SERVER, 40000, 443, seq=seq, ack=1, flags=packet.ACK | packet.PSH,
                                    payload=payload)


def _send(c: censor.Censor, segments: list[bytes]) -> list[list[tuple[bytes, bool, float]]]:
    """What the censor does with each segment of one flow."""
    seq, out = 1000, []
    for segment in segments:
        out.append(c.decide(_frame(segment, seq), True, time.monotonic(), time.time()))
        seq += len(segment)
    return out


def _forwarded(frame: bytes, decision: list[tuple[bytes, bool, float]]) -> bool:
    return decision == [(frame, False, 0.0)]


def _is_reset(decision: list[tuple[bytes, bool, float]]) -> bool:
    """An RST to the client and one to the server, the segment itself not forwarded (in-path)."""
    if len(decision) != 2:
        return False
    flags = []
    for frame, _to_client, _delay in decision:
        ip = packet.parse_ipv4(frame[14:])
        assert ip is not None
        tcp = packet.parse_tcp(ip.body(frame[14:]))
        assert tcp is not None
        flags.append(tcp.flags & packet.RST)
    return all(flags) and [to_client for _, to_client, _ in decision] == [True, False]


def _truth(c: censor.Censor) -> list[str]:
    path = Path(c.truth._f.name)
    return [json.loads(line)["rule"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("reassembly", [None, "full", "segments", "none"])
def test_a_whole_hello_in_one_segment_is_reset_by_every_censor(make_censor, reassembly: str | None) -> None:  # type: ignore[no-untyped-def]
    c = make_censor(reassembly)
    (decision,) = _send(c, [HELLO])
    assert _is_reset(decision)
    assert _truth(c) == ["tls-rst"]


@pytest.mark.parametrize("cut", [NAME_AT + 4, 40, len(HELLO) - 1])
def test_a_hello_over_two_segments(make_censor, cut: int) -> None:  # type: ignore[no-untyped-def]
    segments = [HELLO[:cut], HELLO[cut:]]
    for reassembly, reset in ((None, True), ("full", True), ("segments", True), ("none", False)):
        c = make_censor(reassembly)
        first, second = _send(c, segments)
        assert _forwarded(_frame(segments[0], 1000), first), reassembly
        if reset:
            assert _is_reset(second), reassembly
            assert _truth(c) == ["tls-rst"]
        else:
            assert _forwarded(_frame(segments[1], 1000 + cut), second), reassembly
            assert _truth(c) == []


def test_a_hello_in_two_records_in_one_segment(make_censor) -> None:  # type: ignore[no-untyped-def]
    for reassembly, reset in ((None, True), ("full", True), ("segments", False), ("none", False)):
        c = make_censor(reassembly)
        (decision,) = _send(c, [SPLIT])
        if reset:
            assert _is_reset(decision), reassembly
            assert _truth(c) == ["tls-rst"]
        else:
            assert _forwarded(_frame(SPLIT, 1000), decision), reassembly
            assert _truth(c) == []


def test_a_hello_in_two_records_in_two_segments(make_censor) -> None:  # type: ignore[no-untyped-def]
    boundary = NAME_AT + 4
    segments = [SPLIT[:boundary], SPLIT[boundary:]]
    for reassembly, reset in (("full", True), ("segments", False), ("none", False)):
        c = make_censor(reassembly)
        first, second = _send(c, segments)
        assert _forwarded(_frame(segments[0], 1000), first), reassembly
        assert _is_reset(second) is reset, reassembly
        if not reset:
            assert _forwarded(_frame(segments[1], 1000 + boundary), second), reassembly
        assert _truth(c) == (["tls-rst"] if reset else [])


def test_a_forwarded_flow_is_not_read_again(make_censor) -> None:  # type: ignore[no-untyped-def]
    """Once the one-record parser has given up on a flow, the rest of the hello passes unread."""
    c = make_censor("segments")
    later = _send(c, [SPLIT, HELLO])  # a hello sent again on the same flow (after the first one) is not read
    assert _forwarded(_frame(SPLIT, 1000), later[0]) and _forwarded(_frame(HELLO, 1000 + len(SPLIT)), later[1])
    assert _truth(c) == []


ECH_PROFILE = """
name = "ech"
[[rule]]
id = "ech-drop"
layer = "tls"
action = "drop"
ech = true
domains = ["cloudflare-ech.com"]
[[rule]]
id = "sni-rst"
layer = "tls"
action = "rst"
domains = ["www.example.com"]
"""


def test_an_ech_rule_fires_only_on_hellos_that_carry_ech(tmp_path: Path) -> None:
    """A tls rule with ``ech = true`` (TSPU's since 2024) drops a hello naming its outer SNI only when the hello
    carries encrypted_client_hello; the same name without ECH passes, and a plain SNI rule fires either way."""
    from tamperscope.wire.tlshello import client_hello, client_hello_with_ech

    cases = ((client_hello_with_ech("cloudflare-ech.com"), "ech-drop"), (client_hello("cloudflare-ech.com"), None),
             (client_hello_with_ech(NAME), "sni-rst"), (client_hello(NAME), "sni-rst"))
    for i, (hello, rule) in enumerate(cases):
        c = censor.Censor(_parse(ECH_PROFILE, tmp_path), censor.GroundTruth(tmp_path / f"ech-{i}.jsonl"))
        try:
            (decision,) = _send(c, [hello])
            assert _truth(c) == ([rule] if rule else []), i
            if rule is None:
                assert _forwarded(_frame(hello, 1000), decision)
            elif rule == "ech-drop":
                assert decision == []  # dropped: nothing forwarded, nothing forged
            else:
                assert _is_reset(decision)
        finally:
            c.truth._f.close()
