"""The signal nettest on loopback (real TLS and HTTP; its backends and CA replaced, as only tests may): a
backend is reached only through a certificate the pinned CA vouches for, any HTTP answer counts, and the
first failure in OONI's order is the one reported. The shipped CA is Signal's."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tamperscope.analysis.verdicts import verdict_for
from tamperscope.collector import testing
from tamperscope.model.measurement import ProbeInfo
from tamperscope.nettests import signal
from tamperscope.nettests.base import Context, NettestError
from tamperscope.probe.engine import Engine
from tamperscope.probe.privacy import Scrubber
from tests.unit.test_netx_servers import TCPServer, TestCA, http_response, read_head
from tests.unit.test_telegram import FAST


async def _not_found(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(http_response(404, b"not here"))  # Signal's backends answer / with an error: reached
    await writer.drain()


def _measure(tmp_path: Path, *, pinned: bool, closed_first: bool = False) -> dict[str, Any]:
    ca = TestCA(tmp_path, "stand-in for Signal's CA")

    async def main() -> dict[str, Any]:
        async with TCPServer(_not_found, ssl_context=ca.server_context("localhost")) as up:
            closed_port = testing.closed_port()  # held, never listening: no other test's server can take it
            urls = [f"https://localhost:{up.port}/", f"https://localhost:{up.port}/v1/"]
            if closed_first:
                urls.insert(1, f"https://localhost:{closed_port}/")
            options = {"signal_backends": urls}
            if pinned:
                options["signal_ca"] = ca.pem.read_text()
            ctx = Context(timeouts=FAST, options=options)  # ca_bundle None: the system's store, beside the pin
            return await Engine(signal, ctx, ProbeInfo(), Scrubber([], interfaces=False)).measure(None)

    return asyncio.run(asyncio.wait_for(main(), 20))


def test_reached_through_the_pinned_ca_even_with_an_error_status(tmp_path: Path) -> None:
    m = _measure(tmp_path, pinned=True)
    tk = m["test_keys"]
    assert (tk["signal_backend_status"], tk["signal_backend_failure"]) == ("ok", None), tk
    assert list(tk["x_backends"].values()) == [None, None]
    assert {r["response"]["code"] for r in tk["requests"]} == {404}
    assert {q["hostname"] for q in tk["queries"] if "uptime" in q["tags"]} == {"uptime.signal.org"}
    assert (tk["x_status"], tk["x_mechanism"], tk["accessible"]) == ("ok", "none", True)
    assert verdict_for(m).to_test_keys() == {k: tk[k] for k in verdict_for(m).to_test_keys()}


def test_a_certificate_the_pin_does_not_vouch_for_is_blocked(tmp_path: Path) -> None:
    """The system's store does not know the server's CA, and Signal's does not vouch for it: an interceptor."""
    tk = _measure(tmp_path, pinned=False)["test_keys"]
    assert (tk["signal_backend_status"], tk["signal_backend_failure"]) == ("blocked", "ssl_unknown_authority")
    assert (tk["x_status"], tk["x_mechanism"]) == ("anomaly", "tls.mitm")


def test_the_first_failure_in_order_is_reported(tmp_path: Path) -> None:
    tk = _measure(tmp_path, pinned=True, closed_first=True)["test_keys"]
    assert (tk["signal_backend_status"], tk["signal_backend_failure"]) == ("blocked", "connection_refused")
    assert [f for f in tk["x_backends"].values()] == [None, "connection_refused", None]
    assert (tk["x_mechanism"], tk["blocking"]) == ("tls.rst", "http-failure")


def test_a_failure_after_a_bogon_answer_is_dns() -> None:
    m = {"test_name": "signal", "test_keys": {
        "signal_backend_status": "blocked", "signal_backend_failure": "connection_refused",
        "queries": [{"hostname": "storage.signal.org", "answers": [{"answer_type": "A", "ipv4": "10.10.34.36"}]}]}}
    assert (verdict_for(m).mechanism, verdict_for(m).blocking) == ("dns.poison", "dns")
    m["test_keys"]["queries"][0]["hostname"] = "storage.signal.org.evil.example"
    assert verdict_for(m).mechanism == "tls.rst"


def test_the_shipped_ca_is_signals() -> None:
    cert = x509.load_pem_x509_certificate(signal.signal_ca().encode())
    assert cert.subject.rfc4514_string() == "CN=Signal Messenger,O=Signal Messenger\\, LLC,L=Mountain View," \
                                            "ST=California,C=US"
    assert cert.not_valid_after_utc == datetime.datetime(2032, 1, 24, 0, 45, 50, tzinfo=datetime.timezone.utc)
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and cert.signature_hash_algorithm is not None
    key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
               cert.signature_hash_algorithm)  # self-signed: every byte as Signal issued it


def test_it_takes_no_input() -> None:
    with pytest.raises(NettestError, match="signal takes no input"):
        signal.check_input("https://signal.org/")
