"""The facebook_messenger nettest on loopback (real lookups through getaddrinfo and real TCP; its endpoints'
names and port replaced, as only tests may), its ASN judgement, its verdict (the analysis's), and the lab's
Facebook network that the lab test relies on."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

import pytest

from tamperscope.analysis.verdicts import verdict_for
from tamperscope.lab import addresses as A
from tamperscope.lab import farm, manager
from tamperscope.model.asn import EMPTY, AsnTable
from tamperscope.model.measurement import ProbeInfo
from tamperscope.model.services import facebook_messenger_verdict
from tamperscope.nettests import facebook_messenger as fb
from tamperscope.nettests.base import Context, NettestError
from tamperscope.probe.engine import Engine
from tamperscope.probe.privacy import Scrubber
from tests.unit.test_telegram import FAST

# 127.0.0.1 and .3 are "Facebook's", 127.0.0.2 an ISP's blockpage server; the server listens on .1 only,
# so a connection to .3 is refused
TABLE = AsnTable.from_text("127.0.0.1\t127.0.0.1\t32934\tUS\tFACEBOOK\n"
                           "127.0.0.2\t127.0.0.2\t64500\tZZ\tSOMEISP\n"
                           "127.0.0.3\t127.0.0.3\t32934\tUS\tFACEBOOK\n")


async def _accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


def _measure(services: list[tuple[str, str]], table: AsnTable = TABLE) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        server = await asyncio.start_server(_accept, "127.0.0.1", 0)
        ctx = Context(timeouts=FAST, asn=table, options={"facebook_services": services,
                                                         "facebook_port": server.sockets[0].getsockname()[1]})
        async with server:
            return await Engine(fb, ctx, ProbeInfo(), Scrubber([], interfaces=False)).measure(None)

    return asyncio.run(asyncio.wait_for(main(), 20))


def _tags(tk: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [c for c in tk["tcp_connect"] if key in c["tags"]]


def test_consistent_and_reachable_is_ok() -> None:
    m = _measure([("stun", "127.0.0.1"), ("b_api", "127.0.0.1")])
    tk = m["test_keys"]
    assert (tk["facebook_stun_dns_consistent"], tk["facebook_stun_reachable"]) == (True, None)  # UDP: not connected
    assert (tk["facebook_b_api_dns_consistent"], tk["facebook_b_api_reachable"]) == (True, True)
    assert (tk["facebook_dns_blocking"], tk["facebook_tcp_blocking"]) == (False, False)
    assert not _tags(tk, "stun") and [c["status"]["success"] for c in _tags(tk, "b_api")] == [True]
    answers = [a for q in tk["queries"] for a in q["answers"] or () if a["answer_type"] == "A"]
    assert answers and all((a["asn"], a["as_org_name"]) == (32934, "FACEBOOK") for a in answers)  # the evidence
    assert (tk["x_status"], tk["x_mechanism"], tk["accessible"]) == ("ok", "none", True)
    assert verdict_for(m).to_test_keys() == {k: tk[k] for k in verdict_for(m).to_test_keys()}


def test_an_answer_outside_facebook_is_not_connected_to_and_a_refusal_is_tcp_blocking() -> None:
    tk = _measure([("b_api", "127.0.0.1"), ("edge", "127.0.0.2"), ("star", "127.0.0.3")])["test_keys"]
    assert (tk["facebook_edge_dns_consistent"], tk["facebook_edge_reachable"]) == (False, None)
    assert not _tags(tk, "edge")  # a lie's address is nobody to test
    assert (tk["facebook_star_dns_consistent"], tk["facebook_star_reachable"]) == (True, False)
    assert [c["status"]["failure"] for c in _tags(tk, "star")] == ["connection_refused"]
    assert tk["facebook_b_api_reachable"] is True
    assert (tk["facebook_dns_blocking"], tk["facebook_tcp_blocking"]) == (True, True)
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("anomaly", "dns.poison", "dns")
    assert tk["x_evidence"] == ["test_keys.facebook_dns_blocking", "test_keys.facebook_tcp_blocking"]


def test_without_an_asn_table_dns_is_not_judged_but_connections_are() -> None:
    tk = _measure([("stun", "127.0.0.1"), ("edge", "127.0.0.1"), ("star", "127.0.0.3")], table=EMPTY)["test_keys"]
    assert [tk[f"facebook_{k}_dns_consistent"] for k in ("stun", "edge", "star")] == [None, None, None]
    assert (tk["facebook_edge_reachable"], tk["facebook_star_reachable"]) == (True, False)
    assert (tk["facebook_dns_blocking"], tk["facebook_tcp_blocking"]) == (None, True)
    assert all("asn" not in a for q in tk["queries"] for a in q["answers"] or ())
    assert (tk["x_status"], tk["x_mechanism"]) == ("anomaly", "tcp.rst")


def test_it_takes_no_input() -> None:
    with pytest.raises(NettestError, match="takes no input"):
        fb.check_input("https://facebook.com/")


def test_a_failed_lookup_names_its_mechanism() -> None:
    """OONI's measurements too: a lookup that failed is dns.nxdomain (or dns.drop), not a lie (dns.poison)."""
    m = {"test_name": "facebook_messenger", "test_keys": {
        "facebook_dns_blocking": True, "facebook_tcp_blocking": False,
        "queries": [{"hostname": "b-api.facebook.com", "failure": None, "answers": []},
                    {"hostname": "edge-mqtt.facebook.com", "failure": "dns_nxdomain_error"}]}}
    assert (facebook_messenger_verdict(m).mechanism, verdict_for(m).mechanism) == ("dns.nxdomain", "dns.nxdomain")
    m["test_keys"]["queries"][1]["failure"] = None
    assert facebook_messenger_verdict(m).mechanism == "dns.poison"


def test_the_lab_puts_facebooks_names_in_facebooks_network() -> None:
    """The lab test's premise: every Messenger name (and Facebook's names the built-in profiles block) has its
    own address in 198.19.96.0/19, which the lab's ASN table gives to AS32934; other names stay elsewhere."""
    table = AsnTable.from_text(Path(manager.asn_table()).read_text())
    profiles = [manager.resolve_profile(n) for n in manager.builtin_profiles()]
    blocked = {d for p in profiles for r in p.rules for d in r.domains if farm.is_facebook(d)}
    names = {h for _, h in fb.SERVICES} | blocked
    assert "facebook.com" in names and len(names) > len(fb.SERVICES)
    for p in profiles:
        addrs = {farm.address_for(n, p) for n in names}
        assert len(addrs) == len(names)  # one each: blocking one never hits another
        assert all(ipaddress.ip_address(a) in A.FACEBOOK_NET and table.lookup(a).asn == fb.FACEBOOK_ASN for a in addrs)
    assert table.lookup(farm.address_for("example.com", None)).asn != fb.FACEBOOK_ASN
    assert not farm.is_facebook("notfacebook.com") and farm.is_facebook("WWW.Facebook.com.")
