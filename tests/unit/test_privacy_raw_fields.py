"""Client-naming headers inside bytes: what `Scrubber.raw` sees.

A measurement carries bytes in three places the scrubber reads with `Scrubber.raw`: a body in base64 (not UTF-8,
or a raw payload a server echoed), a body the server compressed (inflated to be searched, compressed again), and
base64 tokens inside text (a gzip token in a redirect's URL; a plain one that holds our address). In each, a header
that exists to name a client ("X-Forwarded-For: 203.0.113.9") must lose every address in it, *whoever's*: behind NAT
the address a server echoes there is one the probe was never told, so only this rule scrubs it (docs/
measurement-format.md). Each test feeds a measurement through the scrubber and decodes what would be written.
"""

from __future__ import annotations

import base64
import gzip
from typing import Any

import pytest

from tamperscope.probe.privacy import SCRUBBED, Scrubber

ME = "198.18.1.2"  # the probe's own address, which the scrubber is told
NAT = "203.0.113.9"  # an address the probe was never told: the one a site sees behind NAT
S = SCRUBBED.encode()


def _scrubber() -> Scrubber:
    return Scrubber([ME], interfaces=False)


def _response(body: dict[str, Any], **headers: str) -> dict[str, Any]:
    return {"test_keys": {"requests": [{"request": {"url": "http://echo.example/"},
                                        "response": {"code": 200, "headers": headers, "body": body}}]}}


def _body(out: dict[str, Any]) -> bytes:
    body = out["test_keys"]["requests"][0]["response"]["body"]
    assert body["format"] == "base64"
    return base64.b64decode(body["data"], validate=True)


@pytest.mark.parametrize("raw,expected", [
    # a raw TCP payload echoed back: binary around the headers, a NAT address only the field names
    (b"\x16\x03\x01\x00GET / HTTP/1.1\r\nX-Forwarded-For: " + NAT.encode() + b"\r\nHost: x\r\n\r\n\xfe\xff",
     b"\x16\x03\x01\x00GET / HTTP/1.1\r\nX-Forwarded-For: " + S + b"\r\nHost: x\r\n\r\n\xfe\xff"),
    # a chain: a third party's address and ours, each replaced, the comma and the proxy after them kept
    (b"\xffX-Forwarded-For: " + NAT.encode() + b", " + ME.encode() + b"\r\nVia: 1.1 proxy\r\n",
     b"\xffX-Forwarded-For: " + S + b", " + S + b"\r\nVia: 1.1 proxy\r\n"),
    # other client-naming names, one with a port and one IPv6
    (b"\x00True-Client-IP: " + NAT.encode() + b":52282\r\n\x00",
     b"\x00True-Client-IP: " + S + b"\r\n\x00"),
    (b"\x80CF-Connecting-IP: 2001:db8::7\r\n", b"\x80CF-Connecting-IP: " + S + b"\r\n"),
], ids=["tcp-payload-echo", "forwarded-chain", "with-port", "ipv6"])
def test_a_base64_body_naming_a_client_loses_every_address_in_the_field_and_keeps_every_other_byte(
        raw: bytes, expected: bytes) -> None:
    """A body in base64 (not UTF-8) holding a client-naming header with an address that is not the probe's own:
    without the client-field rule on bytes, the NAT address (the subscriber's public address) would be written to
    the measurement as it came. The rest of the body stays byte for byte."""
    m = _response({"format": "base64", "data": base64.b64encode(raw).decode()})
    got = _body(_scrubber()(m))
    assert NAT.encode() not in got and b"2001:db8::7" not in got
    assert got == expected


def test_a_gzip_body_echoing_a_client_naming_header_is_scrubbed_and_compressed_again() -> None:
    """A server echoing the request it received, gzipped (Content-Encoding: gzip): the body is inflated, the address
    in X-Forwarded-For replaced although it is not the probe's, and the body written gzipped again. Without it the
    NAT address would be in the written measurement, readable by anyone who gunzips the body."""
    echo = b"GET / HTTP/1.1\r\nHost: echo.example\r\nX-Real-IP: " + NAT.encode() + b"\r\nAccept: */*\r\n\r\n"
    m = _response({"format": "base64", "data": base64.b64encode(gzip.compress(echo)).decode()},
                  **{"Content-Encoding": "gzip"})
    out = _scrubber()(m)
    got = gzip.decompress(_body(out))
    assert got == b"GET / HTTP/1.1\r\nHost: echo.example\r\nX-Real-IP: " + S + b"\r\nAccept: */*\r\n\r\n"
    assert out["test_keys"]["requests"][0]["response"]["headers"] == {"Content-Encoding": "gzip"}
    assert "body_is_truncated" not in out["test_keys"]["requests"][0]["response"]


def test_a_gzip_token_in_a_url_holding_a_client_naming_header_loses_the_address() -> None:
    """A redirect carrying the request's headers gzipped in base64url (``?t=H4sI…``): the token is inflated, the
    X-Forwarded-For address replaced whoever's it is, and the token written back in the same alphabet, unpadded,
    so the URL still works. Otherwise a user publishing the measurement publishes the NAT address in the URL."""
    echo = b"X-Forwarded-For: " + NAT.encode() + b"\r\nUser-Agent: curl\r\n"
    token = base64.urlsafe_b64encode(gzip.compress(echo)).decode().rstrip("=")
    m = {"test_keys": {"requests": [{"response": {"code": 302,
                                                  "headers": {"Location": f"https://a.example/go?t={token}"}}}]}}
    out = _scrubber()(m)
    location = out["test_keys"]["requests"][0]["response"]["headers"]["Location"]
    prefix = "https://a.example/go?t="
    assert location.startswith(prefix) and location != f"{prefix}{token}"
    written = location[len(prefix):]
    assert "=" not in written and "+" not in written and "/" not in written
    got = gzip.decompress(base64.urlsafe_b64decode(written + "=" * (-len(written) % 4)))
    assert got == b"X-Forwarded-For: " + S + b"\r\nUser-Agent: curl\r\n"


def test_a_base64_token_quoting_our_address_loses_the_nat_address_of_its_client_naming_header_too() -> None:
    """A page printing, in base64, the headers it got, among them our address (so the token is decoded and
    scrubbed): the X-Forwarded-For beside it names the NAT address, which must go too, not only ours."""
    echo = b"Host: x\r\nX-Forwarded-For: " + NAT.encode() + b"\r\nX-Seen-From: " + ME.encode() + b"\r\n"
    token = base64.b64encode(echo).decode()
    m = {"test_keys": {"requests": [{"response": {"code": 200, "body": f"your headers: {token}"}}]}}
    out = _scrubber()(m)
    body = out["test_keys"]["requests"][0]["response"]["body"]
    assert body.startswith("your headers: ")
    got = base64.b64decode(body[len("your headers: "):])
    assert got == b"Host: x\r\nX-Forwarded-For: " + S + b"\r\nX-Seen-From: " + S + b"\r\n"


def test_raw_bytes_lose_a_client_naming_fields_address_and_keep_an_unrelated_address_elsewhere() -> None:
    """`Scrubber.raw` itself: the address in a client-naming field goes whoever's it is; the same kind of address
    outside such a field (a server's own, in a Server-IP line) is not the probe's and is kept, as a user reading
    the measurement needs it."""
    raw = b"\x01Server-IP: 192.0.2.44\r\nX-Client-IP: " + NAT.encode() + b"\r\nForwarded: for=" + NAT.encode() + b"\r\n"
    got = _scrubber().raw(raw)
    assert got == b"\x01Server-IP: 192.0.2.44\r\nX-Client-IP: " + S + b"\r\nForwarded: for=" + S + b"\r\n"
