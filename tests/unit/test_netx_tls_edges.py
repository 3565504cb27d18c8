"""Edges of netx.tls: the offline verdict of verify=False (expiry, IP names, empty chains, unreadable or partly
broken CA bundles, a checker that raises), handshakes without a server name, TLS 1.2 cipher names, a failed
handshake's TCP stream, and the TLS stream's EOF and close_notify."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tamperscope.model import failures as F
from tamperscope.netx import Trace, tcp_connect, tls_handshake
from tamperscope.netx import tls as tls_mod
from tamperscope.netx.tls import verify_offline

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]

LO = srv.LOOPBACK


def _der_chain(issued: srv.Issued) -> tuple[bytes, ...]:
    """The DER certificates of an issued chain file (leaf, then the CA)."""
    certs = x509.load_pem_x509_certificates(issued.chain.read_bytes())
    return tuple(c.public_bytes(serialization.Encoding.DER) for c in certs)


def _ip_leaf(ca: srv.TestCA, ip: str) -> tuple[bytes, ...]:
    """A leaf for the IP address ``ip`` (an iPAddress SAN, no DNS name), signed by ``ca``, then the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
        .issuer_name(ca.cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER), ca.cert.public_bytes(serialization.Encoding.DER)


# --- offline verification ------------------------------------------------------------------

def test_offline_expired_certificate_is_invalid_certificate(tmp_path: Path) -> None:
    """An expired chain under verify=False is ssl_invalid_certificate, as OpenSSL calls it, not unknown authority."""
    ca = srv.TestCA(tmp_path)
    chain = _der_chain(ca.issue("good.test", expired=True))
    assert verify_offline(chain, "good.test", str(ca.pem)) == F.SSL_INVALID_CERTIFICATE


@pytest.mark.parametrize("name", ["match.test", "issuer.test", "name-match.test"])
def test_offline_expired_certificate_is_invalid_whatever_its_name_says(tmp_path: Path, name: str) -> None:
    """cryptography's message names the certificate (the server wrote its subject): an expired one for
    "match.test" read as a wrong name, one for "issuer.test" as an unknown authority."""
    ca = srv.TestCA(tmp_path)
    chain = _der_chain(ca.issue(name, expired=True))
    assert verify_offline(chain, name, str(ca.pem)) == F.SSL_INVALID_CERTIFICATE
    assert verify_offline(_der_chain(ca.issue(name)), "other.test", str(ca.pem)) == F.SSL_INVALID_HOSTNAME


def test_offline_empty_chain_is_a_failed_handshake(tmp_path: Path) -> None:
    """No certificate at all is never verified."""
    ca = srv.TestCA(tmp_path)
    assert verify_offline((), "good.test", str(ca.pem)) == F.SSL_FAILED_HANDSHAKE


def test_offline_ip_server_name_is_matched_against_ip_sans(tmp_path: Path) -> None:
    """An IP address as server name matches an iPAddress SAN: checked as a DNS name it never matched."""
    ca = srv.TestCA(tmp_path)
    chain = _ip_leaf(ca, "127.0.0.1")
    assert verify_offline(chain, "127.0.0.1", str(ca.pem)) is None
    assert verify_offline(chain, "127.0.0.2", str(ca.pem)) == F.SSL_INVALID_HOSTNAME


def test_offline_without_a_readable_ca_bundle_is_unknown_authority(tmp_path: Path) -> None:
    """A CA bundle that is missing, or holds no certificate, trusts nothing."""
    ca = srv.TestCA(tmp_path)
    chain = _der_chain(ca.issue("good.test"))
    assert verify_offline(chain, "good.test", str(tmp_path / "missing.pem")) == F.SSL_UNKNOWN_AUTHORITY
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"no certificates here\n")
    assert verify_offline(chain, "good.test", str(empty)) == F.SSL_UNKNOWN_AUTHORITY


def test_offline_a_broken_block_in_the_bundle_does_not_discard_the_others(tmp_path: Path) -> None:
    """One unparsable certificate in a CA bundle is skipped; the roots after it are still trusted."""
    ca = srv.TestCA(tmp_path)
    chain = _der_chain(ca.issue("good.test"))
    bundle = tmp_path / "bundle-with-a-broken-block.pem"
    bundle.write_bytes(b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
                       + ca.pem.read_bytes())
    assert verify_offline(chain, "good.test", str(bundle)) is None


# --- handshakes ------------------------------------------------------------------------------

async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


def test_verified_handshake_without_a_server_name_checks_the_chain_only(tmp_path: Path) -> None:
    """No server name: the chain is verified (no host name to check) and recorded with server_name ""."""
    ca = srv.TestCA(tmp_path)

    async def main() -> None:
        ctx = ca.server_context("good.test")
        async with srv.TCPServer(_echo, ssl_context=ctx) as server, Trace() as trace:
            conn = await tcp_connect(LO, server.port, trace=trace)
            async with await tls_handshake(conn, server_name=None, ca_bundle=str(ca.pem)) as tls:
                await tls.write(b"ping")
                assert await tls.read() == b"ping"
        (rec,) = trace.tls_handshakes
        assert rec["failure"] is None and rec["x_verified"] is True and rec["server_name"] == ""
        assert "x_verify_failure" not in rec  # only verify=False records carry the offline verdict

    srv.run(main())


def test_tls12_cipher_suites_are_recorded_by_their_iana_names(tmp_path: Path) -> None:
    """A TLS 1.2 server: OpenSSL's name (ECDHE-ECDSA-...) is written as OONI's probe writes it (TLS_ECDHE_...)."""
    ca = srv.TestCA(tmp_path)

    async def main() -> None:
        ctx = ca.server_context("good.test")
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        async with srv.TCPServer(_echo, ssl_context=ctx) as server, Trace() as trace:
            conn = await tcp_connect(LO, server.port, trace=trace)
            tls = await tls_handshake(conn, server_name="good.test", ca_bundle=str(ca.pem))
            await tls.aclose()
        (rec,) = trace.tls_handshakes
        assert rec["tls_version"] == "TLSv1.2"
        assert rec["cipher_suite"] in tls_mod._IANA_CIPHERS.values()
        assert rec["cipher_suite"].startswith("TLS_ECDHE_ECDSA_WITH_")

    srv.run(main())


def test_a_checker_that_raises_on_the_chain_marks_it_invalid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """verify=False with a certificate the offline checker cannot read: ssl_invalid_certificate, never verified."""
    ca = srv.TestCA(tmp_path)

    def unreadable(*args: object) -> str | None:
        raise ValueError("unreadable certificate")

    monkeypatch.setattr(tls_mod, "verify_offline", unreadable)

    async def main() -> None:
        ctx = ca.server_context("good.test")
        async with srv.TCPServer(_echo, ssl_context=ctx) as server, Trace() as trace:
            conn = await tcp_connect(LO, server.port, trace=trace)
            tls = await tls_handshake(conn, server_name="good.test", ca_bundle=str(ca.pem), verify=False)
            await tls.aclose()
        (rec,) = trace.tls_handshakes
        assert rec["failure"] is None and rec["x_verified"] is False
        assert rec["x_verify_failure"] == F.SSL_INVALID_CERTIFICATE

    srv.run(main())


# --- after the handshake: EOF and close_notify, against a blocking TLS server in a thread ------------------

def _thread_server(ctx: ssl.SSLContext, serve: Callable[[ssl.SSLSocket], None]) -> tuple[int, threading.Thread]:
    """A one-connection TLS server on 127.0.0.1 (a free port) that runs ``serve`` on the accepted socket."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LO, 0))
    listener.listen(1)
    listener.settimeout(5)

    def run() -> None:
        try:
            raw, _ = listener.accept()
        finally:
            listener.close()
        raw.settimeout(5)
        with ctx.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False) as tls:
            serve(tls)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def test_a_bare_eof_after_the_handshake_reads_as_eof(tmp_path: Path) -> None:
    """A peer closing TCP without close_notify: read() returns b"" (the HTTP framing judges truncation), it does
    not raise SSLEOFError."""
    ca = srv.TestCA(tmp_path)

    def fin_without_close_notify(tls: ssl.SSLSocket) -> None:
        tls.sendall(b"partial")
        socket.socket.shutdown(tls, socket.SHUT_WR)  # a FIN, no TLS alert
        tls.settimeout(2)
        try:
            socket.socket.recv(tls, 1)
        except OSError:
            pass

    port, thread = _thread_server(ca.server_context("good.test"), fin_without_close_notify)

    async def main() -> None:
        async with Trace() as trace:
            conn = await tcp_connect(LO, port, trace=trace)
            async with await tls_handshake(conn, server_name="good.test", ca_bundle=str(ca.pem)) as tls:
                data = b""
                while chunk := await tls.read():
                    data += chunk
                assert data == b"partial"

    srv.run(main(), limit=10)
    thread.join(5)


def test_closing_a_tls_stream_sends_close_notify(tmp_path: Path) -> None:
    """aclose() sends close_notify before the TCP FIN: the server reads a clean TLS close, not a truncation."""
    ca = srv.TestCA(tmp_path)
    seen: list[object] = []

    def read_to_the_end(tls: ssl.SSLSocket) -> None:
        try:
            seen.append(tls.recv(100))
        except ssl.SSLError as exc:  # SSLEOFError: TCP closed without close_notify
            seen.append(type(exc).__name__)

    port, thread = _thread_server(ca.server_context("good.test"), read_to_the_end)

    async def main() -> None:
        async with Trace() as trace:
            conn = await tcp_connect(LO, port, trace=trace)
            tls = await tls_handshake(conn, server_name="good.test", ca_bundle=str(ca.pem))
            await tls.aclose()

    srv.run(main(), limit=10)
    thread.join(5)
    assert seen == [b""]
