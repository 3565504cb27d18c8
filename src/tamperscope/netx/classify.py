"""The one classifier from Python exceptions to OONI failure strings, and netx's errors.

Every netx operation that fails records ``classify(exc, operation=...)`` in its
archival record and, when it has to raise, raises a :class:`NetxError` carrying
that same string. Classification goes by exception *type* first, then errno,
then ``ssl.SSLCertVerificationError.verify_code`` / ``ssl.SSLError.reason``,
then DNS rcode; matching on message text is the last resort, and what is left
becomes ``unknown_failure: <short text>`` (scrubbed of addresses) as in OONI.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

import h2.exceptions
import h11

from tamperscope.model import failures as F

_ERRNO: dict[int, str] = {
    errno.ECONNREFUSED: F.CONNECTION_REFUSED,
    errno.EMFILE: F.TOO_MANY_OPEN_FILES,
    errno.ENFILE: F.TOO_MANY_OPEN_FILES,
    errno.ECONNRESET: F.CONNECTION_RESET,
    # A write after the peer's RST fails with EPIPE on Linux: same evidence as ECONNRESET.
    errno.EPIPE: F.CONNECTION_RESET,
    errno.EHOSTUNREACH: F.HOST_UNREACHABLE,
    errno.ETIMEDOUT: F.TIMED_OUT,
    errno.EAFNOSUPPORT: F.ADDRESS_FAMILY_NOT_SUPPORTED,
    errno.EADDRINUSE: F.ADDRESS_IN_USE,
    errno.EADDRNOTAVAIL: F.ADDRESS_NOT_AVAILABLE,
    errno.EISCONN: F.ALREADY_CONNECTED,
    errno.EFAULT: F.BAD_ADDRESS,
    errno.EBADF: F.BAD_FILE_DESCRIPTOR,
    errno.ECONNABORTED: F.CONNECTION_ABORTED,
    errno.EALREADY: F.CONNECTION_ALREADY_IN_PROGRESS,
    errno.EDESTADDRREQ: F.DESTINATION_ADDRESS_REQUIRED,
    errno.EINTR: F.INTERRUPTED,
    errno.EINVAL: F.INVALID_ARGUMENT,
    errno.EMSGSIZE: F.MESSAGE_SIZE,
    errno.ENETDOWN: F.NETWORK_DOWN,
    errno.ENETRESET: F.NETWORK_RESET,
    errno.ENETUNREACH: F.NETWORK_UNREACHABLE,
    errno.ENOBUFS: F.NO_BUFFER_SPACE,
    errno.ENOPROTOOPT: F.NO_PROTOCOL_OPTION,
    errno.ENOTSOCK: F.NOT_A_SOCKET,
    errno.ENOTCONN: F.NOT_CONNECTED,
    errno.EWOULDBLOCK: F.OPERATION_WOULD_BLOCK,
    errno.EACCES: F.PERMISSION_DENIED,
    errno.EPERM: F.PERMISSION_DENIED,
    errno.EPROTONOSUPPORT: F.PROTOCOL_NOT_SUPPORTED,
    errno.EPROTOTYPE: F.WRONG_PROTOCOL_TYPE,
}

_GAI: dict[int, str] = {
    socket.EAI_NONAME: F.DNS_NXDOMAIN_ERROR,
    socket.EAI_AGAIN: F.DNS_TEMPORARY_FAILURE,
    socket.EAI_FAIL: F.DNS_NON_RECOVERABLE_FAILURE,
    socket.EAI_FAMILY: F.ADDRESS_FAMILY_NOT_SUPPORTED,
}
for _name, _failure in (("EAI_NODATA", F.DNS_NO_ANSWER), ("EAI_ADDRFAMILY", F.DNS_NO_ANSWER)):
    if hasattr(socket, _name):  # glibc only
        _GAI[getattr(socket, _name)] = _failure

# OpenSSL X509_V_ERR_* codes (x509_vfy.h) that mean "no path to a trusted root".
_UNKNOWN_AUTHORITY_CODES = frozenset({2, 3, 18, 19, 20, 21, 27, 28, 29})
_HOSTNAME_CODES = frozenset({62, 64})  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH

# ssl.SSLError.reason values (OpenSSL reason codes) with a more specific meaning
# than a failed handshake; alerts we *receive* are named after the alert.
_SSL_REASONS: dict[str, str] = {
    "TLSV1_ALERT_UNKNOWN_CA": F.SSL_UNKNOWN_AUTHORITY,
    "TLSV1_UNRECOGNIZED_NAME": F.SSL_INVALID_HOSTNAME,
    "SSLV3_ALERT_BAD_CERTIFICATE": F.SSL_INVALID_CERTIFICATE,
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": F.SSL_INVALID_CERTIFICATE,
    "SSLV3_ALERT_CERTIFICATE_REVOKED": F.SSL_INVALID_CERTIFICATE,
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": F.SSL_INVALID_CERTIFICATE,
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": F.SSL_INVALID_CERTIFICATE,
    "UNEXPECTED_EOF_WHILE_READING": F.EOF_ERROR,
}

# rcode -> failure; NOERROR maps to None (whether there are answers is the caller's check).
_RCODES: dict[int, str] = {
    2: F.DNS_SERVFAIL_ERROR,
    3: F.DNS_NXDOMAIN_ERROR,
    5: F.DNS_REFUSED_ERROR,
}


class NetxError(Exception):
    """Root of every error netx raises; the record with the same failure is already traced.

    ::

        NetxError                 operation, failure, endpoint
         ├── DNSError             + rcode: an unusable DNS reply (NXDOMAIN, SERVFAIL, no answer)
         ├── TLSError             + peer_certificates: a failed handshake or verification
         └── HTTPError            a protocol failure (redirect loop, header caps, bad Location)

    ``failure`` is always a string of :mod:`tamperscope.model.failures`;
    ``endpoint`` is ``"ip:port"``, a URL or a resolver address, or ``""``;
    ``received``: bytes of response body a failed HTTP round trip had read (a slow
    download cut by its deadline still tells its rate).
    """

    received: int = 0

    def __init__(self, failure: str, *, operation: str, endpoint: str = "") -> None:
        super().__init__(f"{operation} {endpoint}: {failure}" if endpoint else f"{operation}: {failure}")
        self.failure = failure
        self.operation = operation
        self.endpoint = endpoint


class DNSError(NetxError):
    """A DNS reply that answers nothing usable; ``rcode`` is ``None`` when no reply came."""

    def __init__(self, failure: str, *, operation: str = F.RESOLVE, endpoint: str = "",
                 rcode: int | None = None) -> None:
        super().__init__(failure, operation=operation, endpoint=endpoint)
        self.rcode = rcode


class TLSError(NetxError):
    """A TLS handshake that failed; ``peer_certificates`` (DER, leaf first) is kept as evidence."""

    def __init__(self, failure: str, *, operation: str = F.TLS_HANDSHAKE, endpoint: str = "",
                 peer_certificates: tuple[bytes, ...] = ()) -> None:
        super().__init__(failure, operation=operation, endpoint=endpoint)
        self.peer_certificates = peer_certificates


class HTTPError(NetxError):
    """An HTTP-level failure that is not a socket error (caps, redirects, protocol)."""

    def __init__(self, failure: str, *, operation: str = F.HTTP_ROUND_TRIP, endpoint: str = "") -> None:
        super().__init__(failure, operation=operation, endpoint=endpoint)


class QUICClosed(Exception):
    """A QUIC connection closed before its handshake completed: the peer's CONNECTION_CLOSE, or aioquic's own.

    ``error_code`` is QUIC's (RFC 9000 section 20; 0x100 + a TLS alert for a crypto error).
    """

    def __init__(self, error_code: int, reason: str = "") -> None:
        super().__init__(f"quic connection closed: {error_code:#x} {reason}".rstrip())
        self.error_code = error_code
        self.reason = reason


# TLS alerts (RFC 8446 section 6) carried in QUIC's crypto errors, 0x100 + alert.
_QUIC_ALERTS: dict[int, str] = {
    42: F.SSL_INVALID_CERTIFICATE, 43: F.SSL_INVALID_CERTIFICATE, 44: F.SSL_INVALID_CERTIFICATE,
    45: F.SSL_INVALID_CERTIFICATE, 46: F.SSL_INVALID_CERTIFICATE, 48: F.SSL_UNKNOWN_AUTHORITY,
    112: F.SSL_INVALID_HOSTNAME,
}
_QUIC_VERSION_NEGOTIATION_ERROR = 0x11
_QUIC_CONNECTION_REFUSED = 0x2


def _classify_quic(exc: QUICClosed) -> str:
    code, reason = exc.error_code, exc.reason.lower()
    if code == _QUIC_VERSION_NEGOTIATION_ERROR or "common protocol version" in reason:
        return F.QUIC_INCOMPATIBLE_VERSION
    if reason == "idle timeout":  # aioquic gave up waiting (our own deadline usually comes first)
        return F.GENERIC_TIMEOUT_ERROR
    if 0x100 <= code <= 0x1FF:
        return _QUIC_ALERTS.get(code - 0x100, F.SSL_FAILED_HANDSHAKE)
    if code == _QUIC_CONNECTION_REFUSED:
        return F.CONNECTION_REFUSED
    if code == 0:  # a close without error before the handshake completed
        return F.EOF_ERROR
    return F.unknown(f"quic error {code:#x}")


def failure_for_rcode(rcode: int) -> str | None:
    """The failure a DNS reply with ``rcode`` stands for; ``None`` for NOERROR."""
    if rcode == 0:
        return None
    return _RCODES.get(rcode, F.DNS_SERVER_MISBEHAVING)


def failure_for_verify_code(code: int) -> str:
    """Map an OpenSSL ``X509_V_ERR_*`` code to a certificate failure."""
    if code in _HOSTNAME_CODES:
        return F.SSL_INVALID_HOSTNAME
    if code in _UNKNOWN_AUTHORITY_CODES:
        return F.SSL_UNKNOWN_AUTHORITY
    return F.SSL_INVALID_CERTIFICATE


def classify(exc: BaseException, *, operation: str) -> str:
    """The OONI failure string for ``exc`` raised while doing ``operation``."""
    if isinstance(exc, NetxError):
        return exc.failure
    if isinstance(exc, TimeoutError):  # asyncio.TimeoutError is the same class on 3.11+
        # The kernel's own ETIMEDOUT (SYN retries exhausted) is not our deadline.
        return F.TIMED_OUT if exc.errno == errno.ETIMEDOUT else F.GENERIC_TIMEOUT_ERROR
    if isinstance(exc, asyncio.CancelledError):
        return F.INTERRUPTED
    if isinstance(exc, ssl.SSLError):
        return _classify_ssl(exc, operation)
    if isinstance(exc, QUICClosed):
        return _classify_quic(exc)
    if isinstance(exc, socket.gaierror):
        return _GAI.get(exc.errno, F.DNS_SERVER_MISBEHAVING) if exc.errno is not None else F.unknown(str(exc))
    if isinstance(exc, (EOFError, asyncio.IncompleteReadError)):
        return F.EOF_ERROR
    if isinstance(exc, OSError):
        if exc.errno is not None and exc.errno in _ERRNO:
            return _ERRNO[exc.errno]
        if isinstance(exc, ConnectionResetError):
            return F.CONNECTION_RESET
        if isinstance(exc, ConnectionRefusedError):
            return F.CONNECTION_REFUSED
        if isinstance(exc, ConnectionAbortedError):
            return F.CONNECTION_ABORTED
        if isinstance(exc, BrokenPipeError):
            return F.CONNECTION_RESET
    if isinstance(exc, h11.RemoteProtocolError):
        # h11's own words, at the start of its message: the rest may quote the server's bytes ("illegal header
        # line: bytearray(b'... too')"), which must not choose the failure.
        text = str(exc)
        if text.startswith("Receive buffer too long"):
            return F.HTTP_HEADERS_TOO_LARGE
        # a FIN inside the body's framing: within a chunk or a body of known length ("peer closed connection
        # without sending complete message body"), or within a chunk-size line or the trailers ("peer
        # unexpectedly closed connection"); where a censor's FIN lands must not change the failure.
        if text.startswith(("peer closed connection", "peer unexpectedly closed connection")):
            return F.EOF_ERROR
        return F.HTTP_PROTOCOL_ERROR
    if isinstance(exc, h2.exceptions.DenialOfServiceError):
        return F.HTTP_HEADERS_TOO_LARGE
    if isinstance(exc, h2.exceptions.StreamClosedError):
        return F.HTTP_STREAM_RESET
    if isinstance(exc, h2.exceptions.ProtocolError):
        return F.HTTP_PROTOCOL_ERROR
    return _classify_text(exc)


def _classify_ssl(exc: ssl.SSLError, operation: str) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = getattr(exc, "verify_code", None)
        if isinstance(code, int) and code > 0:
            return failure_for_verify_code(code)
        return F.SSL_INVALID_CERTIFICATE
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return F.EOF_ERROR
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason in _SSL_REASONS:
        return _SSL_REASONS[reason]
    if operation == F.TLS_HANDSHAKE:
        # Alerts, a reply that is not TLS (e.g. a plain-HTTP blockpage), no shared params.
        return F.SSL_FAILED_HANDSHAKE
    return F.unknown(f"ssl: {reason or exc}")


def _classify_text(exc: BaseException) -> str:
    """Last resort: a few stable message suffixes, then ``unknown_failure: ...``."""
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if lowered.endswith("timed out") or lowered.endswith("timeout"):
        return F.GENERIC_TIMEOUT_ERROR
    if lowered.endswith("eof") or "connection closed" in lowered:
        return F.EOF_ERROR
    if "connection reset" in lowered or "connection lost" in lowered:
        return F.CONNECTION_RESET
    return F.unknown(text)
