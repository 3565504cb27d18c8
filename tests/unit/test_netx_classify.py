"""The classifier maps exceptions to OONI failure strings by type, errno, SSL codes and rcode."""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import ssl
from pathlib import Path

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tamperscope.model import failures as F
from tamperscope.netx.classify import (
    DNSError,
    HTTPError,
    NetxError,
    QUICClosed,
    TLSError,
    classify,
    failure_for_rcode,
    failure_for_verify_code,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "failure-strings.md"


@pytest.mark.parametrize(
    ("exc", "failure"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), F.CONNECTION_REFUSED),
        (ConnectionResetError(errno.ECONNRESET, "reset"), F.CONNECTION_RESET),
        (ConnectionResetError("Connection lost"), F.CONNECTION_RESET),
        (BrokenPipeError(errno.EPIPE, "pipe"), F.CONNECTION_RESET),
        (ConnectionAbortedError(errno.ECONNABORTED, "aborted"), F.CONNECTION_ABORTED),
        (OSError(errno.EHOSTUNREACH, "no route"), F.HOST_UNREACHABLE),
        (OSError(errno.ENETUNREACH, "unreachable"), F.NETWORK_UNREACHABLE),
        (OSError(errno.ENETDOWN, "down"), F.NETWORK_DOWN),
        (OSError(errno.EACCES, "denied"), F.PERMISSION_DENIED),
        (OSError(errno.EADDRNOTAVAIL, "n/a"), F.ADDRESS_NOT_AVAILABLE),
        (TimeoutError(), F.GENERIC_TIMEOUT_ERROR),
        (asyncio.TimeoutError(), F.GENERIC_TIMEOUT_ERROR),
        (OSError(errno.ETIMEDOUT, "kernel timeout"), F.TIMED_OUT),
        (asyncio.CancelledError(), F.INTERRUPTED),
        (EOFError(), F.EOF_ERROR),
        (asyncio.IncompleteReadError(b"", 10), F.EOF_ERROR),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), F.DNS_NXDOMAIN_ERROR),
        (socket.gaierror(socket.EAI_AGAIN, "Temporary failure"), F.DNS_TEMPORARY_FAILURE),
        (socket.gaierror(socket.EAI_FAIL, "Non-recoverable"), F.DNS_NON_RECOVERABLE_FAILURE),
        (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), F.EOF_ERROR),
        (ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed"), F.EOF_ERROR),
        (h11.RemoteProtocolError("Receive buffer too long"), F.HTTP_HEADERS_TOO_LARGE),
        (h11.RemoteProtocolError("peer closed connection without sending complete message body: "
                                 "received 3 bytes, expected 10"), F.EOF_ERROR),
        (h11.RemoteProtocolError("illegal status line"), F.HTTP_PROTOCOL_ERROR),
    ],
)
def test_by_type_and_errno(exc: BaseException, failure: str) -> None:
    assert classify(exc, operation=F.CONNECT) == failure


@pytest.mark.skipif(not hasattr(socket, "EAI_NODATA"), reason="glibc-only gai code")
def test_gai_nodata_is_no_answer() -> None:
    exc = socket.gaierror(socket.EAI_NODATA, "No address associated with hostname")
    assert classify(exc, operation=F.RESOLVE) == F.DNS_NO_ANSWER


@pytest.mark.parametrize(
    ("code", "failure"),
    [
        (62, F.SSL_INVALID_HOSTNAME),  # X509_V_ERR_HOSTNAME_MISMATCH
        (64, F.SSL_INVALID_HOSTNAME),  # X509_V_ERR_IP_ADDRESS_MISMATCH
        (18, F.SSL_UNKNOWN_AUTHORITY),  # DEPTH_ZERO_SELF_SIGNED_CERT
        (19, F.SSL_UNKNOWN_AUTHORITY),  # SELF_SIGNED_CERT_IN_CHAIN
        (20, F.SSL_UNKNOWN_AUTHORITY),  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        (10, F.SSL_INVALID_CERTIFICATE),  # CERT_HAS_EXPIRED
        (9, F.SSL_INVALID_CERTIFICATE),  # CERT_NOT_YET_VALID
    ],
)
def test_verify_codes(code: int, failure: str) -> None:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_code = code  # type: ignore[attr-defined]
    assert classify(exc, operation=F.TLS_HANDSHAKE) == failure
    assert failure_for_verify_code(code) == failure


def test_ssl_reason_and_operation() -> None:
    alert = ssl.SSLError(1, "alert")
    alert.reason = "TLSV1_ALERT_UNKNOWN_CA"  # type: ignore[misc]
    assert classify(alert, operation=F.TLS_HANDSHAKE) == F.SSL_UNKNOWN_AUTHORITY
    garbage = ssl.SSLError(1, "wrong version number")
    garbage.reason = "WRONG_VERSION_NUMBER"  # type: ignore[misc]
    assert classify(garbage, operation=F.TLS_HANDSHAKE) == F.SSL_FAILED_HANDSHAKE
    assert classify(garbage, operation=F.READ).startswith(F.UNKNOWN_FAILURE_PREFIX)


def test_rcodes() -> None:
    assert failure_for_rcode(0) is None
    assert failure_for_rcode(2) == F.DNS_SERVFAIL_ERROR
    assert failure_for_rcode(3) == F.DNS_NXDOMAIN_ERROR
    assert failure_for_rcode(5) == F.DNS_REFUSED_ERROR
    assert failure_for_rcode(4) == F.DNS_SERVER_MISBEHAVING


def test_netx_errors_keep_their_failure() -> None:
    for err in (NetxError(F.CONNECTION_REFUSED, operation=F.CONNECT, endpoint="127.0.0.1:1"),
                DNSError(F.DNS_NXDOMAIN_ERROR, endpoint="x.example", rcode=3),
                TLSError(F.SSL_INVALID_HOSTNAME, endpoint="127.0.0.1:443", peer_certificates=(b"x",)),
                HTTPError(F.HTTP_TOO_MANY_REDIRECTS, endpoint="http://x/")):
        assert classify(err, operation=F.TOP_LEVEL) == err.failure
        assert isinstance(err, NetxError) and err.operation and err.endpoint
    assert DNSError(F.DNS_NXDOMAIN_ERROR).operation == F.RESOLVE


def test_unknown_is_scrubbed_and_short() -> None:
    failure = classify(ValueError("cannot reach 10.1.2.3:443 or [2001:db8::1]:80 " + "x" * 500),
                       operation=F.CONNECT)
    assert failure.startswith("unknown_failure: ")
    assert "10.1.2.3" not in failure and "2001:db8" not in failure
    assert len(failure) < 160
    assert F.is_known(failure)


def test_vocabulary_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z0-9_]+(?:: [a-z0-9 ]+)?)`", text))
    missing = sorted(f for f in F.ALL_FAILURES if f not in documented)
    assert not missing, f"undocumented failure strings: {missing}"


@given(st.text(max_size=300), st.sampled_from([ValueError, RuntimeError, KeyError, Exception]))
@settings(max_examples=200, deadline=None)
def test_any_exception_gets_a_known_failure(text: str, kind: type[Exception]) -> None:
    failure = classify(kind(text), operation=F.TOP_LEVEL)
    assert F.is_known(failure) and "\n" not in failure


@pytest.mark.parametrize(
    ("code", "reason", "failure"),
    [
        (0x100 + 48, "", F.SSL_UNKNOWN_AUTHORITY),
        (0x100 + 42, "bad certificate", F.SSL_INVALID_CERTIFICATE),
        (0x100 + 45, "", F.SSL_INVALID_CERTIFICATE),
        (0x100 + 112, "", F.SSL_INVALID_HOSTNAME),
        (0x100 + 40, "handshake failure", F.SSL_FAILED_HANDSHAKE),
        (0x100 + 120, "no_application_protocol", F.SSL_FAILED_HANDSHAKE),
        (0x11, "", F.QUIC_INCOMPATIBLE_VERSION),
        (0x1, "Could not find a common protocol version", F.QUIC_INCOMPATIBLE_VERSION),
        (0x0, "Idle timeout", F.GENERIC_TIMEOUT_ERROR),
        (0x2, "", F.CONNECTION_REFUSED),
        (0x0, "", F.EOF_ERROR),
        (0x7, "", "unknown_failure: quic error 0x7"),
        (0x7, "at 10.1.2.3:443", "unknown_failure: quic error 0x7"),
    ],
)
def test_quic_close_codes(code: int, reason: str, failure: str) -> None:
    """A QUIC CONNECTION_CLOSE maps by code (TLS alerts as 0x100 + alert), then by aioquic's reason phrase;
    the peer's free text never reaches the failure string."""
    exc = QUICClosed(code, reason)
    assert exc.error_code == code and exc.reason == reason
    assert classify(exc, operation=F.QUIC_HANDSHAKE) == failure
    assert F.is_known(failure)


@given(st.integers(min_value=0, max_value=2**62 - 1), st.text(max_size=200))
@settings(max_examples=200, deadline=None)
def test_any_quic_close_gets_a_known_failure(code: int, reason: str) -> None:
    """Any code and reason phrase a peer can send classifies to a known, single-line failure string."""
    failure = classify(QUICClosed(code, reason), operation=F.QUIC_HANDSHAKE)
    assert F.is_known(failure) and "\n" not in failure
