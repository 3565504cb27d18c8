"""Traced TCP connect and TLS handshakes over loopback, with a CA made at run time."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tamperscope.collector.testing import closed_port
from tamperscope.model import failures as F
from tamperscope.netx import NetxError, TLSError, Trace, tcp_connect, tls_handshake
from tamperscope.netx.tls import client_context

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]

LO = srv.LOOPBACK


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


def _free_port() -> int:
    """A loopback port that refuses (bound, never listening, held: no other test can take it)."""
    return closed_port()


def test_tcp_connect_ok_and_io_events() -> None:
    async def main() -> None:
        async with srv.TCPServer(_echo) as server, Trace() as trace:
            async with await tcp_connect(LO, server.port, trace=trace, tags=["t"]) as conn:
                await conn.write(b"ping")
                assert await conn.read() == b"ping"
        (rec,) = trace.tcp_connect
        assert rec["ip"] == LO and rec["port"] == server.port
        assert rec["status"] == {"failure": None, "success": True} and rec["tags"] == ["t"]
        assert rec["transaction_id"] == conn.transaction_id and rec["t"] >= rec["t0"] >= 0
        ops = [(e["operation"], e["num_bytes"]) for e in trace.network_events]
        assert ops == [("connect", None), ("write", 4), ("read", 4)]

    srv.run(main())


def test_tcp_connect_refused() -> None:
    async def main() -> None:
        port = _free_port()
        async with Trace() as trace:
            with pytest.raises(NetxError) as info:
                await tcp_connect(LO, port, trace=trace)
        assert info.value.failure == F.CONNECTION_REFUSED
        assert info.value.operation == F.CONNECT and info.value.endpoint == f"{LO}:{port}"
        assert trace.tcp_connect[0]["status"] == {"failure": F.CONNECTION_REFUSED, "success": False}

    srv.run(main())


def test_tcp_connect_timeout_records_timeout() -> None:
    async def main() -> None:
        async with Trace() as trace:
            with pytest.raises(NetxError) as info:
                await tcp_connect(LO, 9, trace=trace, timeout=0)
        assert info.value.failure == F.GENERIC_TIMEOUT_ERROR
        assert trace.tcp_connect[0]["status"]["failure"] == F.GENERIC_TIMEOUT_ERROR

    srv.run(main())


async def _handshake(port: int, name: str, ca: Path | None, trace: Trace, **kw: object):  # type: ignore[no-untyped-def]
    conn = await tcp_connect(LO, port, trace=trace)
    return await tls_handshake(conn, server_name=name, ca_bundle=str(ca) if ca else None, **kw)  # type: ignore[arg-type]


def test_tls_valid_certificate(tmp_path: Path) -> None:
    ca = srv.TestCA(tmp_path)

    async def main() -> None:
        ctx = ca.server_context("good.test", alpn=("h2", "http/1.1"))
        async with srv.TCPServer(_echo, ssl_context=ctx) as server, Trace() as trace:
            async with await _handshake(server.port, "good.test", ca.pem, trace) as tls:
                assert tls.alpn == "h2"
                await tls.write(b"hello")
                assert await tls.read() == b"hello"
        (rec,) = trace.tls_handshakes
        assert rec["failure"] is None and rec["x_verified"] is True
        assert rec["server_name"] == "good.test" and rec["negotiated_protocol"] == "h2"
        assert rec["tls_version"] == "TLSv1.3" and rec["cipher_suite"].startswith("TLS_")
        assert rec["no_tls_verify"] is False and rec["address"] == f"{LO}:{server.port}"
        assert rec["transaction_id"] == trace.tcp_connect[0]["transaction_id"]
        certs = [base64.b64decode(c["data"]) for c in rec["peer_certificates"]]
        assert all(c["format"] == "base64" for c in rec["peer_certificates"])
        assert len(certs) == 2
        leaf = x509.load_der_x509_certificate(certs[0])
        spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        assert rec["x_spki_sha256"] == hashlib.sha256(spki).hexdigest()
        assert rec["x_issuer"] == "CN=tamperscope test CA"

    srv.run(main())


def test_tls_wrong_name_keeps_chain(tmp_path: Path) -> None:
    ca = srv.TestCA(tmp_path)

    async def main() -> None:
        ctx = ca.server_context("good.test")
        async with srv.TCPServer(_echo, ssl_context=ctx) as server, Trace() as trace:
            with pytest.raises(TLSError) as info:
                await _handshake(server.port, "blocked.test", ca.pem, trace)
        assert info.value.failure == F.SSL_INVALID_HOSTNAME
        assert len(info.value.peer_certificates) == 2
        rec = trace.tls_handshakes[0]
        assert rec["failure"] == F.SSL_INVALID_HOSTNAME and rec["x_verified"] is False
        assert len(rec["peer_certificates"]) == 2 and rec["x_issuer"] == "CN=tamperscope test CA"
        assert rec["cipher_suite"] == "" and rec["tls_version"] == ""

    srv.run(main())


def test_tls_unknown_authority_keeps_chain(tmp_path: Path) -> None:
    ca = srv.TestCA(tmp_path)
    interceptor = srv.TestCA(tmp_path, name="interception box")

    async def main() -> None:
        ctx = interceptor.server_context("good.test")
        async with srv.TCPServer(_echo, ssl_context=ctx) as server, Trace() as trace:
            with pytest.raises(TLSError) as info:
                await _handshake(server.port, "good.test", ca.pem, trace)
        assert info.value.failure == F.SSL_UNKNOWN_AUTHORITY
        rec = trace.tls_handshakes[0]
        assert rec["peer_certificates"] and rec["x_issuer"] == "CN=interception box"

    srv.run(main())


def test_tls_expired_certificate(tmp_path: Path) -> None:
    ca = srv.TestCA(tmp_path)

    async def main() -> None:
        ctx = ca.server_context("good.test", expired=True)
        async with srv.TCPServer(_echo, ssl_context=ctx) as server, Trace() as trace:
            with pytest.raises(TLSError) as info:
                await _handshake(server.port, "good.test", ca.pem, trace)
        assert info.value.failure == F.SSL_INVALID_CERTIFICATE

    srv.run(main())


def test_tls_no_verify_still_judges_the_chain(tmp_path: Path) -> None:
    ca = srv.TestCA(tmp_path)
    interceptor = srv.TestCA(tmp_path, name="interception box")

    async def main() -> None:
        async with Trace() as trace:
            for issuer, name in ((ca, "good.test"), (interceptor, "good.test"), (ca, "bad.test")):
                ctx = issuer.server_context("good.test")
                async with srv.TCPServer(_echo, ssl_context=ctx) as server:
                    tls = await _handshake(server.port, name, ca.pem, trace, verify=False)
                    await tls.aclose()
        results = [(r["failure"], r["no_tls_verify"], r["x_verified"], r["x_verify_failure"])
                   for r in trace.tls_handshakes]
        assert results == [(None, True, True, None),
                           (None, True, False, F.SSL_UNKNOWN_AUTHORITY),
                           (None, True, False, F.SSL_INVALID_HOSTNAME)]

    srv.run(main())


def test_tls_reset_after_client_hello() -> None:
    async def rst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(5)  # a TLS record header: the ClientHello is here
        srv.reset(writer)

    async def main() -> None:
        async with srv.TCPServer(rst) as server, Trace() as trace:
            with pytest.raises(TLSError) as info:
                await _handshake(server.port, "blocked.test", None, trace)
        assert info.value.failure == F.CONNECTION_RESET
        assert trace.tls_handshakes[0]["failure"] == F.CONNECTION_RESET
        assert trace.tls_handshakes[0]["peer_certificates"] is None

    srv.run(main())


def test_tls_eof_after_client_hello() -> None:
    async def fin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(5)
        writer.close()

    async def main() -> None:
        async with srv.TCPServer(fin) as server, Trace() as trace:
            with pytest.raises(TLSError) as info:
                await _handshake(server.port, "blocked.test", None, trace)
        assert info.value.failure == F.EOF_ERROR

    srv.run(main())


def test_tls_to_plain_http_is_failed_handshake() -> None:
    """A blockpage in plain HTTP where TLS was asked: ssl_failed_handshake; and the TCP stream is closed after it
    (an alert sent): it must not leak."""
    async def blockpage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(5)
        writer.write(srv.http_response(403, b"<html>blocked</html>"))
        await writer.drain()
        await asyncio.sleep(1)

    async def main() -> None:
        async with srv.TCPServer(blockpage) as server, Trace() as trace:
            conn = await tcp_connect(LO, server.port, trace=trace)
            with pytest.raises(TLSError) as info:
                await tls_handshake(conn, server_name="blocked.test")
            assert info.value.failure == F.SSL_FAILED_HANDSHAKE
            with pytest.raises(ConnectionResetError):
                await conn.write(b"after the failure")
            await conn.aclose()

    srv.run(main())


def test_tls_server_silent_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        async with srv.TCPServer(silent) as server, Trace() as trace:
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(TLSError) as info:
                await _handshake(server.port, "slow.test", None, trace, timeout=0.3)
            assert loop.time() - start < 2
        assert info.value.failure == F.GENERIC_TIMEOUT_ERROR

    srv.run(main())


def test_contexts_are_cached(tmp_path: Path) -> None:
    ca = srv.TestCA(tmp_path)
    a = client_context(str(ca.pem), ("h2",), True, True)
    assert client_context(str(ca.pem), ("h2",), True, True) is a
    assert client_context(str(ca.pem), ("http/1.1",), True, True) is not a
    assert client_context(None, ("h2",), False, False).verify_mode == ssl.CERT_NONE
