"""Edges of the tor nettest that its main tests leave open: what a targets file or a bridge line may not hold
(bounds, control characters, a name in brackets), what counts as a consensus, and how a private bridge's
addresses are scrubbed (longest first, the connected ones too, in keys as in values)."""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any

import pytest

from tamperscope.model.torverdict import CONSENSUS_PATH
from tamperscope.nettests import tor
from tamperscope.nettests.base import Context, NettestError
from tests.unit.test_netx_servers import TCPServer, http_response, read_head
from tests.unit.test_telegram import FAST

CONSENSUS = zlib.compress(b"network-status-version 3 microdesc\nvote-status consensus\n")


def _spec(**targets: dict[str, Any]) -> str:
    return json.dumps(targets)


@pytest.mark.parametrize("address", ["[bridge.example]:443", "[bridge]:443", "[]:443", "[198.51.100.7]:443"])
def test_a_name_in_brackets_is_not_an_address(address: str) -> None:
    """Brackets hold an IPv6 literal only; without the check a bracketed name went to the resolver as is."""
    with pytest.raises(NettestError, match="address must be HOST:PORT"):
        tor.load_targets(_spec(a={"address": address, "protocol": "or_port"}))


@pytest.mark.parametrize("key", ["name", "source"])
@pytest.mark.parametrize("value", ["moria1\nFAKE LINE", "\x1b[31mred", "tab\there"])
def test_a_name_or_source_with_control_characters_is_refused(key: str, value: str) -> None:
    """A target's name and source are printed and stored: control characters (a forged log line, terminal
    escapes) are refused, not carried into the measurement."""
    with pytest.raises(NettestError, match=f"target 1: {key} must be a short string"):
        tor.load_targets(_spec(a={"address": "1.2.3.4:443", "protocol": "or_port", key: value}))


def test_a_target_id_with_control_characters_is_refused() -> None:
    """The id keys the measurement's targets: one with a newline or an escape is refused by its place."""
    for key in ("a\nb", "\x1b]0;title\x07"):
        with pytest.raises(NettestError, match="target 1: its id must be a short string"):
            tor.load_targets(json.dumps({key: {"address": "1.2.3.4:443", "protocol": "or_port"}}))


def test_a_targets_file_holds_at_most_max_targets() -> None:
    """Each target is a connection (and a task): the JSON form's bound, one past it refused, at it loaded."""
    many = {f"t{i}": {"address": f"10.0.{i // 250}.{i % 250 + 1}:443", "protocol": "or_port"}
            for i in range(tor.MAX_TARGETS + 1)}
    with pytest.raises(NettestError, match=f"at most {tor.MAX_TARGETS} targets"):
        tor.load_targets(json.dumps(many))
    many.popitem()
    assert len(tor.load_targets(json.dumps(many))) == tor.MAX_TARGETS


def test_bridge_lines_are_bounded_too() -> None:
    """The bridge-line form has the same bound as the JSON form."""
    lines = "\n".join(f"10.0.{i // 250}.{i % 250 + 1}:443" for i in range(tor.MAX_TARGETS + 1))
    with pytest.raises(NettestError, match=f"at most {tor.MAX_TARGETS} targets"):
        tor.bridge_lines(lines)
    assert len(tor.bridge_lines(lines.rsplit("\n", 1)[0])) == tor.MAX_TARGETS


def test_a_bridge_line_with_two_fingerprints_is_refused() -> None:
    """One fingerprint after HOST:PORT: a second word that is not key=value is a malformed line."""
    with pytest.raises(NettestError, match="line 1: after HOST:PORT, a fingerprint"):
        tor.bridge_lines("1.2.3.4:443 " + "AB" * 20 + " " + "CD" * 20)


def test_a_bridge_line_may_name_its_bridge_by_dns_name() -> None:
    """A host name (letters first) is an address, not a transport's name."""
    targets = tor.bridge_lines("Bridge bridge.example.org:443 " + "AB" * 20)
    assert [(t.address, t.protocol, t.private) for t in targets] == [("bridge.example.org:443", "or_port", True)]


@pytest.mark.parametrize("body, expected", [
    (CONSENSUS, True),
    (b"\n  network-status-version 3\n", True),  # inflated by a proxy
    (b"<html><body>x^ blocked</body></html>", False),  # a zlib header's bytes, but not at the start
    (b"x", False),  # an 'x' alone is no zlib header
    (b"<html>network-status-version</html>", False),
    (b"", False),
])
def test_what_counts_as_a_consensus(body: bytes, expected: bool) -> None:
    """A blockpage that holds a zlib header's two bytes, or the consensus's first word, somewhere is no consensus."""
    assert tor._is_consensus(body) is expected


def test_a_non_200_answer_holding_a_consensus_is_no_directory() -> None:
    """Only a 200 counts: an error page (here 503) that happens to hold consensus bytes is not the directory."""

    async def error_with_consensus(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(http_response(503, CONSENSUS, [("Content-Type", "application/octet-stream")]))
        await writer.drain()

    async def main() -> dict[str, Any]:
        async with TCPServer(error_with_consensus) as server:
            targets = tor.load_targets(_spec(d={"address": f"127.0.0.1:{server.port}", "protocol": "dir_port"}))
            return await tor.run(None, Context(timeouts=FAST, options={"tor_targets": targets}))

    tk = asyncio.run(asyncio.wait_for(main(), 10))
    entry = tk["targets"]["d"]
    assert (entry["failure"], entry["x_consensus"]) == ("http_request_failed", False)
    assert (tk["dir_port_total"], tk["dir_port_accessible"]) == (1, 0)


def test_a_directory_that_redirects_is_not_followed() -> None:
    """A directory port answers itself: a redirect (a captive portal's, a censor's bounce to a copy) is not
    followed, so a consensus served elsewhere does not make the directory accessible."""

    async def bounce(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, target, _, _ = await read_head(reader)
        if target == CONSENSUS_PATH:
            writer.write(http_response(302, b"", [("Location", "/elsewhere")]))
        else:
            writer.write(http_response(200, CONSENSUS))
        await writer.drain()

    async def main() -> dict[str, Any]:
        async with TCPServer(bounce) as server:
            targets = tor.load_targets(_spec(d={"address": f"127.0.0.1:{server.port}", "protocol": "dir_port"}))
            return await tor.run(None, Context(timeouts=FAST, options={"tor_targets": targets}))

    tk = asyncio.run(asyncio.wait_for(main(), 10))
    entry = tk["targets"]["d"]
    # an answer, and no consensus: http_request_failed, as the module says of anything but a 200 consensus (it was
    # "stopped after too many redirects", x_consensus missing)
    assert (entry["failure"], entry["x_consensus"]) == ("http_request_failed", False)
    assert [r["response"]["code"] for r in entry["requests"]] == [302]
    assert (tk["dir_port_total"], tk["dir_port_accessible"]) == (1, 0)


def test_a_private_bridge_s_addresses_are_scrubbed_longest_first() -> None:
    """An address that begins with another (10.0.0.1, 10.0.0.12) is replaced whole: the shorter first would
    leave its last digit beside the mark."""
    entry = {"queries": [{"answers": [{"ipv4": "10.0.0.1"}]}], "tcp_connect": [{"ip": "10.0.0.12"}]}
    secrets = tor._addresses_of(entry, "bridge.example")
    assert secrets == ["bridge.example", "10.0.0.12", "10.0.0.1"]
    assert tor._scrub("10.0.0.12:443 10.0.0.1:80", secrets) == "[scrubbed]:443 [scrubbed]:80"


def test_an_address_connected_to_is_scrubbed_though_no_answer_named_it() -> None:
    """The addresses connected to are secrets too, not only the host and its DNS answers."""
    entry = {"queries": None, "tcp_connect": [{"ip": "192.0.2.7"}, {"ip": None}]}
    assert tor._addresses_of(entry, "bridge.example") == ["bridge.example", "192.0.2.7"]


def test_scrubbing_reaches_keys_and_nested_values() -> None:
    """A record keyed by an address (a map of endpoints) must lose the address in its key too."""
    value = {"192.0.2.7:443": [{"address": "192.0.2.7:443", "n": 3, "ok": None}]}
    assert tor._scrub(value, ["192.0.2.7"]) == {"[scrubbed]:443": [{"address": "[scrubbed]:443", "n": 3, "ok": None}]}
