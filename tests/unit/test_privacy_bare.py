"""A DNS message's bare base64 string (OONI's ``raw_response``) is only overwritten in place when scrubbed: what
makes a body worth a second look (compressed bytes, a token, a header's name) does not make a DNS message one.

Found by CI: a reply whose random ID was 0x18B4 reads as a zlib header (CMF 0x18, FLG 0xB4, a multiple of 31), and
the scrubber copied the measurement unchanged instead of leaving it as it came (1 run in about 500).
"""

from __future__ import annotations

import base64
import zlib

import dns.message
import dns.rrset
import pytest

from tamperscope.probe.privacy import SCRUBBED, Scrubber

ME = "198.18.1.2"


def _reply(qid: int) -> str:
    q = dns.message.make_query("example.org", "A")
    q.id = qid
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("example.org.", 60, "IN", "A", "198.18.9.9"))
    return base64.b64encode(r.to_wire()).decode()


@pytest.mark.parametrize("qid", [0x18B4, 0x789C, 0x78DA, 0x081D])
def test_a_dns_message_whose_id_reads_as_a_zlib_header_is_left_as_it_came(qid: int) -> None:
    assert (qid >> 8) & 0x0F == 8 and qid % 31 == 0  # each is a valid zlib header
    m = {"test_keys": {"queries": [{"raw_response": _reply(qid)}]}}
    assert Scrubber([ME], interfaces=False)(m) is m


def test_a_dns_message_holding_our_address_is_still_scrubbed_whatever_its_id() -> None:
    q = dns.message.make_query("example.org", "A")
    q.id = 0x18B4
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("example.org.", 60, "IN", "A", ME))
    m = {"test_keys": {"queries": [{"raw_response": base64.b64encode(r.to_wire()).decode()}]}}
    out = Scrubber([ME], interfaces=False)(m)
    got = base64.b64decode(out["test_keys"]["queries"][0]["raw_response"])
    assert bytes([198, 18, 1, 2]) not in got and dns.message.from_wire(got).id == 0x18B4


def test_what_was_clean_as_a_dns_message_is_still_inflated_as_a_body() -> None:
    s = Scrubber([ME], interfaces=False)
    data = base64.b64encode(zlib.compress(f"<p>your address is {ME}</p>".encode())).decode()
    first = {"test_keys": {"queries": [{"raw_response": data}]}}
    assert s(first) is first  # overwritten in place only: compressed bytes hold no address as they are
    second = {"test_keys": {"requests": [{"response": {"headers": {}, "body": {"format": "base64", "data": data}}}]}}
    out = s(second)
    body = out["test_keys"]["requests"][0]["response"]["body"]["data"]
    text = zlib.decompress(base64.b64decode(body)).decode()
    assert ME not in text and SCRUBBED in text
