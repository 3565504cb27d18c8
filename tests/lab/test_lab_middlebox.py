"""Profile `middlebox`: a rewriting transparent proxy and TLS interception for some names."""

from __future__ import annotations

import pytest

from tamperscope.lab import addresses as A

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(lab_factory):  # type: ignore[no-untyped-def]
    return lab_factory("middlebox")


def test_proxy_rewrites_requests(lab) -> None:  # type: ignore[no-untyped-def]
    sent = "GET /x HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Plain\r\nAccept: */*\r\n\r\n"
    r = lab.one("raw_echo", A.ECHO, sent)
    got = r["data"]
    assert got != sent
    assert "host: example.com\r\n" in got and "user-agent: Plain\r\n" in got  # header names lower-cased
    assert "Via: 1.1 lab-proxy" in got and f"X-Forwarded-For: {A.CLIENT}" in got
    bad = lab.one("raw_echo", A.ECHO, "GET\t/ HTTP/1.1 x\r\n\r\n")
    assert bad["data"].startswith("HTTP/1.1 400")
    assert lab.logged("proxy")


def test_tls_interception_for_named_hosts_only(lab) -> None:  # type: ignore[no-untyped-def]
    res = lab.run([{"op": "tls", "args": [lab.addr("www.facebook.com"), "www.facebook.com"]},
                   {"op": "tls", "args": [lab.addr("example.com"), "example.com"], "kwargs": {"path": "/"}}])
    assert res[0]["error"] == "verify" and "Interception Equipment Ltd" in res[0]["issuer"]
    assert res[1]["error"] is None and res[1]["status"] == 200 and "tamperscope lab" in res[1]["issuer"]
    e = lab.logged("mb-mitm", "www.facebook.com")[-1]
    assert e["layer"] == "tls" and e["action"] == "mitm"
