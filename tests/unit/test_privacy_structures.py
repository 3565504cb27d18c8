"""The probe's address in what a QA pass found unscrubbed: DNS messages (a bare base64 string), certificates
(an address touching the next DER field), compressed bodies, headers naming a client whose address the probe
cannot know (behind NAT), addresses embedded in IPv6 ones, and the port after ours.

Binary structures must still parse once scrubbed: they are the evidence.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import zlib
from typing import Any

import dns.message
import dns.rrset
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tamperscope.probe import privacy
from tamperscope.probe.privacy import SCRUBBED, Scrubber

try:
    from . import test_privacy_label_and_port as proxied
except ImportError:
    import test_privacy_label_and_port as proxied  # type: ignore[no-redef]

ME = "198.18.1.2"
NAT = "198.18.2.1"  # the address a site sees behind NAT, which the probe was never told


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def scrubber() -> Scrubber:
    return Scrubber([ME], interfaces=False)


# --- DNS messages: OONI's raw_response is a bare base64 string ---------------------------------------------------

def _reply() -> bytes:
    q = dns.message.make_query("cname-dash.example", "A")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("cname-dash.example.", 60, "IN", "CNAME", "198-18-1-2.dyn.example."))
    r.answer.append(dns.rrset.from_text("198-18-1-2.dyn.example.", 60, "IN", "A", ME))
    r.answer.append(dns.rrset.from_text("198-18-1-2.dyn.example.", 60, "IN", "TXT", f'"you are {ME}"'))
    return r.to_wire()


@pytest.mark.parametrize("key", ["raw_response", "x_ech"])
def test_a_dns_message_is_scrubbed_in_place_and_still_parses(key: str) -> None:
    wire = _reply()
    m = {"test_keys": {"queries": [{"answers": [], key: b64(wire)}]}}
    out = scrubber()(m)["test_keys"]["queries"][0][key]
    got = base64.b64decode(out)
    assert len(got) == len(wire) and got != wire
    assert ME.encode() not in got and b"198-18-1-2" not in got and bytes([198, 18, 1, 2]) not in got
    parsed = dns.message.from_wire(got)  # the evidence still reads
    assert [rr.rdtype for rr in parsed.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A, dns.rdatatype.TXT]
    assert str(parsed.answer[1][0]) == "0.0.0.0"


def test_a_dns_message_without_our_address_is_left_as_it_came() -> None:
    q = dns.message.make_query("example.org", "A")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("example.org.", 60, "IN", "A", "198.18.9.9"))
    m = {"test_keys": {"queries": [{"raw_response": b64(r.to_wire())}]}}
    assert scrubber()(m) is m


# --- certificates: DER puts the next field's tag ("0" or "1") right after a string ------------------------------

def _certificate(subject_ip: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "2-1-18-198"),
                      x509.NameAttribute(NameOID.COMMON_NAME, subject_ip)])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(12345).not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER)


def test_an_address_at_the_end_of_a_certificate_string_is_scrubbed_and_the_certificate_still_parses() -> None:
    der = _certificate(ME)
    assert (ME + "1").encode() in der or (ME + "0").encode() in der  # the case: a tag glued to the address
    m = {"test_keys": {"tls_handshakes": [{"peer_certificates": [{"format": "base64", "data": b64(der)}]}]}}
    out = scrubber()(m)["test_keys"]["tls_handshakes"][0]["peer_certificates"][0]
    got = base64.b64decode(out["data"])
    assert len(got) == len(der) and ME.encode() not in got and b"2-1-18-198" not in got
    cert = x509.load_der_x509_certificate(got)  # still evidence: it parses
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "x" * len(ME)
    assert cert.serial_number == 12345


def test_a_body_keeps_an_address_touching_other_digits_which_is_another_address() -> None:
    """Only in binary structures is a touching spelling taken: in a page "198.18.1.21" is someone else."""
    m = {"test_keys": {"requests": [{"response": {"body": {"format": "base64", "data": b64(b"ip 198.18.1.21 ")}}}]}}
    assert scrubber()(m) is m


# --- compressed bodies -------------------------------------------------------------------------------------------

def _response(body: bytes, encoding: str) -> dict[str, Any]:
    return {"test_keys": {"requests": [{"response": {
        "body": {"format": "base64", "data": b64(body)}, "body_is_truncated": False, "code": 200,
        "headers": {"Content-Encoding": encoding}, "headers_list": [["Content-Encoding", encoding]]}}]}}


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize("encoding,compress,inflate", [
    ("gzip", gzip.compress, gzip.decompress),
    ("x-gzip", gzip.compress, gzip.decompress),
    ("deflate", zlib.compress, zlib.decompress),
    ("deflate", _raw_deflate, lambda b: zlib.decompress(b, -15)),
], ids=["gzip", "x-gzip", "zlib", "raw-deflate"])
def test_a_compressed_body_is_inflated_scrubbed_and_compressed_again(encoding: str, compress: Any, inflate: Any) -> None:
    page = f"<title>Blocked</title><p>Your IP address is {ME}</p>".encode() * 3
    out = scrubber()(_response(compress(page), encoding))
    response = out["test_keys"]["requests"][0]["response"]
    got = inflate(base64.b64decode(response["body"]["data"]))  # still compressed as the header says
    assert got == page.replace(ME.encode(), SCRUBBED.encode())
    assert response["body_is_truncated"] is False


def test_a_compressed_body_without_our_address_keeps_its_bytes() -> None:
    body = gzip.compress(b"<p>nothing personal</p>", mtime=1)
    m = _response(body, "gzip")
    out = scrubber()(m)
    assert base64.b64decode(out["test_keys"]["requests"][0]["response"]["body"]["data"]) == body


def test_a_compression_bomb_is_cut_where_inflating_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(privacy, "MAX_INFLATE", 1 << 16)
    page = b"\0" * (1 << 20) + f"you are {ME}".encode()  # the address past what is inflated
    out = scrubber()(_response(gzip.compress(page), "gzip"))
    response = out["test_keys"]["requests"][0]["response"]
    got = gzip.decompress(base64.b64decode(response["body"]["data"]))
    assert got == b"\0" * (1 << 16) and response["body_is_truncated"] is True


# --- headers that name a client: every address in them, known or not ---------------------------------------------

def test_client_naming_headers_lose_every_address_in_every_form() -> None:
    m = {"test_keys": {"requests": [{"response": {
        "headers": {"X-Client-IP": NAT, "forwarded": f'for="[2001:db8:cafe::17]:4711";proto=http;by={NAT}',
                    "Server": "nginx 1.2.3.4", "X-Request-Id": NAT},
        "headers_list": [["X-Forwarded-For", f"{NAT}, 203.0.113.9"], ["Date", "Tue, 01 Dec 2026 12:30:45 GMT"]],
        "body": f"<pre>X-Real-IP: {NAT}\nHost: example.org</pre>"}}],
        "received": f"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {NAT}\r\nVia: 1.1 proxy\r\n\r\n"}}
    out = scrubber()(m)["test_keys"]
    response = out["requests"][0]["response"]
    assert response["headers"]["X-Client-IP"] == SCRUBBED
    assert response["headers"]["forwarded"] == f'for="{SCRUBBED}";proto=http;by={SCRUBBED}'
    assert response["headers"]["Server"] == "nginx 1.2.3.4"  # not a client-naming header: left alone
    assert response["headers"]["X-Request-Id"] == NAT
    assert response["headers_list"] == [["X-Forwarded-For", f"{SCRUBBED}, {SCRUBBED}"],
                                        ["Date", "Tue, 01 Dec 2026 12:30:45 GMT"]]
    assert response["body"] == f"<pre>X-Real-IP: {SCRUBBED}\nHost: example.org</pre>"
    assert out["received"] == f"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {SCRUBBED}\r\nVia: 1.1 proxy\r\n\r\n"


@pytest.mark.parametrize("raw", [
    b"X-Forwarded-For: 203.0.113.9\r\n",  # whoever's address: a client-naming field loses it
    b"\x00\x01X-Real-IP: 203.0.113.9.\r\n\xff",  # binary around it, a full stop after it
])
def test_a_binary_body_naming_a_client_loses_the_address_and_the_measurement_is_kept(raw: bytes) -> None:
    """A body in base64 (not UTF-8, or a server echoing request headers as bytes) with a client-naming header:
    the scrubber raised TypeError on it (bytes stripped with a str), and the measurement was lost (mutation QA)."""
    m = {"test_keys": {"requests": [{"response": {"body": {"format": "base64",
                                                          "data": base64.b64encode(raw).decode()}}}]}}
    out = scrubber()(m)
    got = base64.b64decode(out["test_keys"]["requests"][0]["response"]["body"]["data"])
    assert b"203.0.113.9" not in got and SCRUBBED.encode() in got
    assert got == raw.replace(b"203.0.113.9", SCRUBBED.encode())  # the rest byte for byte, the full stop too


def test_a_proxy_adding_the_nat_address_is_scrubbed_in_the_written_measurement() -> None:
    """http_header_field_manipulation behind NAT, with neither a STUN server nor a helper to say the public
    address: the rewriting proxy's X-Forwarded-For names it, and it is not written."""
    m = proxied.through_a_rewriting_proxy(f"X-Forwarded-For: {NAT}\r\n".encode(), scrubber())
    line = orjson.dumps(m)
    assert NAT.encode() not in line and f"X-Forwarded-For: {SCRUBBED}".encode() in line
    assert m["test_keys"]["tampering"]["header_name_diff"] == ["x-forwarded-for"]  # the evidence stays


# --- addresses inside IPv6 ones, and ports -----------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["2002:c612:102::1", "2002:C612:0102:0:0:0:0:1", "64:ff9b::c612:102",
                                      "64:ff9b::198.18.1.2"])
def test_our_ipv4_address_inside_a_6to4_or_nat64_address_is_scrubbed(spelling: str) -> None:
    assert scrubber().text(f"via {spelling} ok") == f"via {SCRUBBED} ok"


@pytest.mark.parametrize("text", ["2002:c612:103::1", "64:ff9b::c612:103", "2002::1", "64:ff9b::1:c612:102"])
def test_other_6to4_and_nat64_addresses_are_left_alone(text: str) -> None:
    assert scrubber().text(text) == text


@pytest.mark.parametrize("text,want", [
    (f"client {ME}:52282 said", f"client {SCRUBBED} said"),
    (f"http://{ME}:8080/p", f"http://{SCRUBBED}/p"),
    (f"[{ME}]:443", SCRUBBED),
    (f"{ME}:123456", f"{SCRUBBED}:123456"),  # no port has six digits
])
def test_the_port_after_our_address_goes_with_it(text: str, want: str) -> None:
    assert scrubber().text(text) == want
    assert scrubber().raw(text.encode()) == want.encode()
