"""Failure strings at the edges of their classes, and the mechanisms the verdict names from them.

A failure string decides what a user is told: EAI_AGAIN is a resolver that never answered (dns.drop), not a forged
"no such name"; a connection aborted by the peer is a reset (tcp.rst), not dropped packets. The strings themselves
come from the classifier (Python exceptions) and from Go's error texts, as OONI names them.
"""

from __future__ import annotations

import ssl

import pytest

from tamperscope.model import failures as F
from tamperscope.model.failures import failure_class, from_go
from tamperscope.model.verdict import Verdict
from tamperscope.netx.classify import classify, failure_for_verify_code
from tests.unit.test_verdict import IP, WC


def ooni(v: Verdict) -> tuple[object, object, str]:
    return (v.blocking, v.accessible, v.mechanism)


# --------------------------------------------------------------------------- classes, through the verdict


def test_eai_again_is_a_timeout() -> None:
    """getaddrinfo's EAI_AGAIN (``dns_temporary_failure``): the resolver never answered."""
    assert failure_class(F.DNS_TEMPORARY_FAILURE) == "timeout"


def test_a_lookup_failing_with_eai_again_where_the_control_resolved_is_a_dns_drop() -> None:
    """The system resolver gave up (EAI_AGAIN) while the control resolved the name: the user must see the query
    dropped (dns.drop, 0.8), not a forged "no such name" (dns.nxdomain)."""
    v = WC().dns(addrs=(), failure=F.DNS_TEMPORARY_FAILURE).control().verdict()
    assert ooni(v) == ("dns", False, "dns.drop"), v
    assert v.confidence == 0.8


def test_connection_aborted_is_a_reset() -> None:
    assert failure_class(F.CONNECTION_ABORTED) == "reset"


def test_a_connect_aborted_where_the_control_connected_is_a_tcp_reset() -> None:
    """ECONNABORTED on connect (the peer's RST during the handshake) where the control connected: the user must
    see a TCP reset (tcp.rst, 0.9), not dropped packets (tcp.drop)."""
    v = WC().dns().connect(IP, 80, F.CONNECTION_ABORTED).control().verdict()
    assert ooni(v) == ("tcp_ip", False, "tcp.rst"), v
    assert v.confidence == 0.9


# --------------------------------------------------------------------------- Go's error texts


@pytest.mark.parametrize("text", [
    "x509: certificate signed by unknown authority",
    'Get "https://www.example.com/": x509: certificate signed by unknown authority',
    "X509: Certificate Signed By Unknown Authority",
])
def test_go_unknown_authority_is_oonis_ssl_unknown_authority(text: str) -> None:
    """A certificate from an unknown CA (an interception box's) is ``ssl_unknown_authority`` as OONI's netxlite
    names it, not the generic ``ssl_invalid_certificate``: Censored Planet's TLS MITM must read as OONI's."""
    assert from_go(text) == F.SSL_UNKNOWN_AUTHORITY == "ssl_unknown_authority"


def test_other_go_x509_errors_stay_distinct_from_unknown_authority() -> None:
    assert from_go("x509: certificate is valid for a.example, not www.example.com") == F.SSL_INVALID_HOSTNAME
    assert from_go("x509: certificate has expired or is not yet valid") == F.SSL_INVALID_CERTIFICATE


# --------------------------------------------------------------------------- the classifier


@pytest.mark.parametrize("code", [2, 3, 18, 19, 20, 21, 27, 28, 29])
def test_every_openssl_no_trusted_root_code_is_unknown_authority(code: int) -> None:
    """OpenSSL's X509_V_ERR_* codes for "no path to a trusted root" (UNABLE_TO_GET_ISSUER_CERT, UNABLE_TO_GET_CRL,
    DEPTH_ZERO_SELF_SIGNED_CERT, SELF_SIGNED_CERT_IN_CHAIN, UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    UNABLE_TO_VERIFY_LEAF_SIGNATURE, CERT_UNTRUSTED, CERT_REJECTED, SUBJECT_ISSUER_MISMATCH) are
    ``ssl_unknown_authority``: an interception certificate must not be recorded as a merely invalid one."""
    assert failure_for_verify_code(code) == F.SSL_UNKNOWN_AUTHORITY
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_code = code
    assert classify(exc, operation=F.TLS_HANDSHAKE) == F.SSL_UNKNOWN_AUTHORITY


def test_a_bare_connection_reset_error_is_a_reset() -> None:
    """A ``ConnectionResetError()`` with no errno and no text (as some libraries raise it) is still the peer's
    RST: ``connection_reset``, not an ``unknown_failure``."""
    assert classify(ConnectionResetError(), operation=F.READ) == F.CONNECTION_RESET


def test_bare_connection_refused_and_aborted_errors_keep_their_meaning() -> None:
    assert classify(ConnectionRefusedError(), operation=F.CONNECT) == F.CONNECTION_REFUSED
    assert classify(ConnectionAbortedError(), operation=F.READ) == F.CONNECTION_ABORTED


class _LibraryError(Exception):
    """An error of a library the classifier knows nothing of: only its message tells."""


@pytest.mark.parametrize("text", ["unexpected EOF", "stream ended with EOF", "read: eof"])
def test_an_unknown_exception_whose_message_ends_with_eof_is_an_eof_error(text: str) -> None:
    """The last resort reads the message: one ending in "EOF" is the peer closing the connection (``eof_error``),
    which the verdict reads as a reset (tls.rst/http.rst), not an ``unknown_failure``."""
    assert classify(_LibraryError(text), operation=F.READ) == F.EOF_ERROR
    assert failure_class(classify(_LibraryError(text), operation=F.READ)) == "eof"
