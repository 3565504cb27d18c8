"""OONI's closed vocabulary of failure strings, and the operation names they go with.

Every archival record (``queries``, ``tcp_connect``, ``tls_handshakes``,
``requests``, ``network_events``) carries a ``failure`` that is either ``None``
or one of these strings, so that our measurements and OONI's can be analysed by
the same code. The strings are OONI's (probe-cli ``netxlite/errno.go``, spec
``df-007-errors``); anything the classifier cannot map becomes
``unknown_failure: <short text>`` with addresses scrubbed, as OONI does.

This module is pure data (no I/O): ``netx.classify`` produces these strings,
analysis reads them, and ``docs/failure-strings.md`` says when each is produced.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

# --- generic / socket level -------------------------------------------------
GENERIC_TIMEOUT_ERROR: Final = "generic_timeout_error"  # our own deadline expired
TIMED_OUT: Final = "timed_out"  # the kernel said ETIMEDOUT
CONNECTION_REFUSED: Final = "connection_refused"  # ECONNREFUSED (RST to SYN, ICMP port unreachable)
CONNECTION_RESET: Final = "connection_reset"  # ECONNRESET / EPIPE: RST on an established flow
CONNECTION_ABORTED: Final = "connection_aborted"  # ECONNABORTED
CONNECTION_ALREADY_CLOSED: Final = "connection_already_closed"  # use of a closed connection
EOF_ERROR: Final = "eof_error"  # peer closed (FIN) before the operation completed
HOST_UNREACHABLE: Final = "host_unreachable"  # EHOSTUNREACH
NETWORK_UNREACHABLE: Final = "network_unreachable"  # ENETUNREACH
NETWORK_DOWN: Final = "network_down"  # ENETDOWN
NETWORK_RESET: Final = "network_reset"  # ENETRESET
INTERRUPTED: Final = "interrupted"  # cancelled (EINTR, task cancellation)
ADDRESS_FAMILY_NOT_SUPPORTED: Final = "address_family_not_supported"
ADDRESS_IN_USE: Final = "address_in_use"
ADDRESS_NOT_AVAILABLE: Final = "address_not_available"
ALREADY_CONNECTED: Final = "already_connected"
BAD_ADDRESS: Final = "bad_address"
BAD_FILE_DESCRIPTOR: Final = "bad_file_descriptor"
CONNECTION_ALREADY_IN_PROGRESS: Final = "connection_already_in_progress"
DESTINATION_ADDRESS_REQUIRED: Final = "destination_address_required"
INVALID_ARGUMENT: Final = "invalid_argument"
MESSAGE_SIZE: Final = "message_size"
NO_BUFFER_SPACE: Final = "no_buffer_space"
NO_PROTOCOL_OPTION: Final = "no_protocol_option"
NOT_A_SOCKET: Final = "not_a_socket"
NOT_CONNECTED: Final = "not_connected"
OPERATION_WOULD_BLOCK: Final = "operation_would_block"
PERMISSION_DENIED: Final = "permission_denied"
PROTOCOL_NOT_SUPPORTED: Final = "protocol_not_supported"
WRONG_PROTOCOL_TYPE: Final = "wrong_protocol_type"

# --- DNS ----------------------------------------------------------------------
DNS_NXDOMAIN_ERROR: Final = "dns_nxdomain_error"  # rcode NXDOMAIN, or EAI_NONAME
DNS_NO_ANSWER: Final = "dns_no_answer"  # NOERROR without records of the asked type
DNS_REFUSED_ERROR: Final = "dns_refused_error"  # rcode REFUSED
DNS_SERVFAIL_ERROR: Final = "dns_servfail_error"  # rcode SERVFAIL
DNS_SERVER_MISBEHAVING: Final = "dns_server_misbehaving"  # other rcodes, undecodable reply
DNS_BOGON_ERROR: Final = "dns_bogon_error"  # a bogon answer, when a caller asks to reject them
DNS_REPLY_WITH_WRONG_QUERY_ID: Final = "dns_reply_with_wrong_query_id"
DNS_TEMPORARY_FAILURE: Final = "dns_temporary_failure"  # EAI_AGAIN
DNS_NON_RECOVERABLE_FAILURE: Final = "dns_non_recoverable_failure"  # EAI_FAIL
ANDROID_DNS_CACHE_NO_DATA: Final = "android_dns_cache_no_data"  # OONI on Android only

# --- TLS / QUIC ------------------------------------------------------------------
SSL_UNKNOWN_AUTHORITY: Final = "ssl_unknown_authority"  # chain does not end at a trusted root
SSL_INVALID_HOSTNAME: Final = "ssl_invalid_hostname"  # certificate not valid for the SNI
SSL_INVALID_CERTIFICATE: Final = "ssl_invalid_certificate"  # expired, bad signature, ...
SSL_FAILED_HANDSHAKE: Final = "ssl_failed_handshake"  # alerts, not-TLS replies, no common params
QUIC_INCOMPATIBLE_VERSION: Final = "quic_incompatible_version"

# --- HTTP and the rest ---------------------------------------------------------------
HTTP_INVALID_REDIRECT_LOCATION_HOST: Final = "http_invalid_redirect_location_host"
JSON_PARSE_ERROR: Final = "json_parse_error"
# ours (remote_web --protocol echo): the echo service's answer was not the bytes sent (x_echo)
ECHO_MISMATCH: Final = "echo_mismatch"

UNKNOWN_FAILURE_PREFIX: Final = "unknown_failure: "
UNKNOWN_FAILURE: Final = "unknown_failure"

# Failures OONI writes as "unknown_failure: ..." but that we produce on purpose;
# kept byte-identical to OONI where OONI has the same case.
HTTP_TOO_MANY_REDIRECTS: Final = "unknown_failure: stopped after too many redirects"
HTTP_HEADERS_TOO_LARGE: Final = "unknown_failure: http response headers too large"
HTTP_TOO_MANY_HEADERS: Final = "unknown_failure: too many http response headers"
HTTP_PROTOCOL_ERROR: Final = "unknown_failure: http protocol error"
HTTP_STREAM_RESET: Final = "unknown_failure: http2 stream reset"
# obfs4's handshake (netx.obfs4): an answer that does not prove the bridge's key (a wrong cert=, or something
# answering in the bridge's place), and no answer where a bridge's would be
OBFS4_HANDSHAKE_FAILED: Final = "unknown_failure: obfs4 server did not prove the bridge key"
OBFS4_HANDSHAKE_TOO_LONG: Final = "unknown_failure: no obfs4 server handshake in 8192 bytes"
# OpenVPN's first exchange (netx.openvpn): an answer that is not an OpenVPN server's reset to ours
OPENVPN_HANDSHAKE_FAILED: Final = "unknown_failure: no openvpn server reset in the answer"
# This machine, not the network: EMFILE/ENFILE. A measurement holding it says nothing about the path, so the
# probe does not write it (it is measured again on the next run).
TOO_MANY_OPEN_FILES: Final = "unknown_failure: too many open files"

# --- measurement level: a nettest's own ``failure`` and ``control_failure`` (not archival records) ----------
CONTROL_DISABLED: Final = "control_disabled"  # no control helper configured: nothing to compare with
HTTP_REQUEST_FAILED: Final = "http_request_failed"  # OONI's: an HTTP answer other than the 200 required
INVALID_CA: Final = "invalid_ca"  # OONI's riseupvpn: the provider's CA was answered without a certificate
CONTROL_GARBAGE: Final = "unknown_failure: control helper answered garbage"  # not the protocol's JSON
THROTTLING_INCONCLUSIVE: Final = "throttling_inconclusive"  # no round gave both rates

ALL_FAILURES: Final[frozenset[str]] = frozenset(
    value
    for name, value in dict(globals()).items()
    if name.isupper() and isinstance(value, str) and name != "UNKNOWN_FAILURE_PREFIX"
)
"""Every failure string this module defines (``unknown_failure: ...`` ones included)."""

# --- operations (OONI's ``failed_operation`` values) ---------------------------------
RESOLVE: Final = "resolve"
CONNECT: Final = "connect"
TLS_HANDSHAKE: Final = "tls_handshake"
QUIC_HANDSHAKE: Final = "quic_handshake"
HTTP_ROUND_TRIP: Final = "http_round_trip"
READ: Final = "read"
WRITE: Final = "write"
READ_FROM: Final = "read_from"
WRITE_TO: Final = "write_to"
CLOSE: Final = "close"
TOP_LEVEL: Final = "top_level"
UNKNOWN_OPERATION: Final = "unknown"

OPERATIONS: Final[frozenset[str]] = frozenset(
    {RESOLVE, CONNECT, TLS_HANDSHAKE, QUIC_HANDSHAKE, HTTP_ROUND_TRIP, READ, WRITE,
     READ_FROM, WRITE_TO, CLOSE, TOP_LEVEL, UNKNOWN_OPERATION}
)

_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b")
_IPV6 = re.compile(
    r"\[?(?:(?:[0-9a-fA-F]{1,4}:){3,7}[0-9a-fA-F]{1,4}|[0-9a-fA-F:]*::[0-9a-fA-F:]*)\]?(?::\d+)?"
)
_MAX_UNKNOWN_TEXT = 120


def scrub(text: str) -> str:
    """Replace IP addresses (and ports after them) with ``[scrubbed]``, as OONI does."""
    if "." in text:
        text = _IPV4.sub("[scrubbed]", text)
    if ":" in text:
        text = _IPV6.sub("[scrubbed]", text)
    return text


def unknown(text: str) -> str:
    """``unknown_failure: <text>``, scrubbed of addresses and cut to a short line."""
    text = " ".join(scrub(text).split())[:_MAX_UNKNOWN_TEXT]
    return UNKNOWN_FAILURE_PREFIX + (text or "unknown error")


def request_failed(detail: str) -> str:
    """``http_request_failed: <detail>`` (e.g. the status a control helper answered), one short line."""
    return f"{HTTP_REQUEST_FAILED}: " + (" ".join(scrub(detail).split())[:_MAX_UNKNOWN_TEXT] or "unknown")


def is_known(failure: str | None) -> bool:
    """True for ``None`` and for strings of the vocabulary (any ``unknown_failure: ...`` and
    ``http_request_failed: ...`` too)."""
    return failure is None or failure in ALL_FAILURES or failure.startswith(UNKNOWN_FAILURE_PREFIX) \
        or failure.startswith(f"{HTTP_REQUEST_FAILED}: ")


# Go's error texts (Censored Planet's measurements, written by Go's net and crypto/tls), most specific first:
# OONI's probe, also in Go, maps the same errors to the same strings (netxlite).
_GO_ERRORS: Final = (
    ("connection reset by peer", CONNECTION_RESET), ("broken pipe", CONNECTION_RESET),
    ("connection refused", CONNECTION_REFUSED), ("no route to host", HOST_UNREACHABLE),
    ("network is unreachable", NETWORK_UNREACHABLE), ("address already in use", ADDRESS_IN_USE),
    ("i/o timeout", GENERIC_TIMEOUT_ERROR), ("deadline exceeded", GENERIC_TIMEOUT_ERROR),
    ("timeout exceeded", GENERIC_TIMEOUT_ERROR), ("timed out", GENERIC_TIMEOUT_ERROR),
    ("handshake timeout", GENERIC_TIMEOUT_ERROR),  # net/http: TLS handshake timeout
    ("x509: certificate signed by unknown authority", SSL_UNKNOWN_AUTHORITY),
    ("x509: certificate is valid for", SSL_INVALID_HOSTNAME), ("x509:", SSL_INVALID_CERTIFICATE),
    ("tls:", SSL_FAILED_HANDSHAKE),
)


def from_go(text: str) -> str:
    """The OONI failure string of an error as Go writes it (``read tcp 10.0.0.1:1->10.0.0.2:80: read: connection
    reset by peer`` is ``connection_reset``); a text it does not know is ``unknown_failure: <text>``, scrubbed."""
    lowered = text.lower()
    for needle, failure in _GO_ERRORS:
        if needle in lowered:
            return failure
    stripped = text.strip()
    if stripped == "EOF" or stripped.endswith((": EOF", "unexpected EOF", ': EOF"')):
        return EOF_ERROR
    return unknown(text)


def failure_class(failure: str | None) -> str:
    """Coarse class of an OONI failure string (also the legacy test helper's ones)."""
    if not failure:
        return "ok"
    return _failure_class(failure) if type(failure) is str else _failure_class.__wrapped__(failure)


@lru_cache(maxsize=1024)  # a small vocabulary: OONI's failure strings
def _failure_class(failure: str) -> str:
    f = failure.lower()
    table = (
        (("dns_nxdomain_error", "dns_name_error", "android_dns_cache_no_data"), "dns_nxdomain"),
        (("dns_no_answer",), "dns_no_answer"),
        # EAI_AGAIN: getaddrinfo's word for "the resolver never answered".
        (("generic_timeout_error", "timeout", "timed_out", "dns_temporary_failure"), "timeout"),
        (("connection_reset", "connection_aborted"), "reset"),
        (("connection_refused",), "refused"),
        (("eof_error",), "eof"),
        (("ssl_unknown_authority", "ssl_invalid_hostname", "ssl_invalid_certificate"), "tls_cert"),
        (("ssl_", "tls_"), "tls_error"),
        (("network_unreachable", "host_unreachable"), "unreachable"),
        (("dns_",), "dns_error"),
        (("http_",), "http_error"),
    )
    for needles, name in table:
        if any(f.startswith(n) or n in f for n in needles):
            return name
    return "unknown"
