"""Edges of the classifier and of the failure vocabulary: the cases the main tests leave to one branch.

Each test names the string a user would see wrongly if the branch it covers were lost: an EOF mid-handshake
reported as a failed handshake, an HTTP/2 stream reset as a protocol error, a Go ``unexpected EOF`` as unknown.
"""

from __future__ import annotations

import ssl

import h2.exceptions
import h11
import pytest

from tamperscope.model import failures as F
from tamperscope.model.failures import failure_class, from_go, is_known, scrub, unknown
from tamperscope.netx.classify import QUICClosed, classify


def _ssl_error(reason: str) -> ssl.SSLError:
    exc = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower()}")
    exc.reason = reason  # type: ignore[misc]
    return exc


# --------------------------------------------------------------------------- classify


@pytest.mark.parametrize("operation", [F.TLS_HANDSHAKE, F.READ])
def test_an_ssl_unexpected_eof_reason_is_an_eof_error(operation: str) -> None:
    """OpenSSL's UNEXPECTED_EOF_WHILE_READING (a FIN mid-TLS) must be eof_error, not a failed handshake."""
    assert classify(_ssl_error("UNEXPECTED_EOF_WHILE_READING"), operation=operation) == F.EOF_ERROR


def test_an_h2_stream_closed_error_is_a_stream_reset() -> None:
    """h2's StreamClosedError (the server's RST_STREAM) is a ProtocolError too: it must stay a stream reset."""
    exc = h2.exceptions.StreamClosedError(1)
    assert isinstance(exc, h2.exceptions.ProtocolError)
    assert classify(exc, operation=F.HTTP_ROUND_TRIP) == F.HTTP_STREAM_RESET


@pytest.mark.parametrize(("code", "failure"), [
    (0x100, F.SSL_FAILED_HANDSHAKE),  # alert 0 (close_notify): the lowest crypto error
    (0x1FF, F.SSL_FAILED_HANDSHAKE),  # the highest crypto error
    (0x100 + 42, F.SSL_INVALID_CERTIFICATE),
    (0x100 + 112, F.SSL_INVALID_HOSTNAME),
])
def test_quic_crypto_error_range_is_inclusive(code: int, failure: str) -> None:
    """QUIC crypto errors are 0x100..0x1FF inclusive (RFC 9000 20.1); both ends are a TLS failure."""
    assert classify(QUICClosed(code, ""), operation=F.QUIC_HANDSHAKE) == failure


def test_quic_codes_just_outside_the_crypto_range_are_unknown() -> None:
    """0xFF and 0x200 are no TLS alert: they must not be reported as a failed handshake."""
    for code in (0xFF, 0x200):
        failure = classify(QUICClosed(code, ""), operation=F.QUIC_HANDSHAKE)
        assert failure == F.unknown(f"quic error {code:#x}")


@pytest.mark.parametrize("text", ["Connection lost", "transport: connection lost while reading"])
def test_an_unknown_exception_saying_connection_lost_is_a_reset(text: str) -> None:
    """The last-resort text match: 'connection lost' (asyncio's words) is a reset, not unknown_failure."""
    assert classify(RuntimeError(text), operation=F.READ) == F.CONNECTION_RESET


@pytest.mark.parametrize("text", ["read timeout", "Handshake Timeout", "operation timed out"])
def test_an_unknown_exception_ending_in_timeout_is_a_generic_timeout(text: str) -> None:
    """A library's own 'timeout' wording (not only 'timed out') is our deadline: generic_timeout_error."""
    assert classify(RuntimeError(text), operation=F.READ) == F.GENERIC_TIMEOUT_ERROR


# --------------------------------------------------------------------------- the vocabulary


def test_scrub_removes_the_port_after_an_ipv4_address() -> None:
    """Ports after an address go with it ("[scrubbed]", as OONI): a kept ':8443' would be left dangling."""
    assert scrub("dial tcp 10.1.2.3:8443: connect: refused") == "dial tcp [scrubbed]: connect: refused"
    assert unknown("to 192.0.2.7:53 failed") == "unknown_failure: to [scrubbed] failed"


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_an_empty_unknown_text_still_says_something(text: str) -> None:
    """An exception with no message must not become a bare 'unknown_failure: ' with nothing after it."""
    assert unknown(text) == "unknown_failure: unknown error"


def test_http_request_failed_with_a_detail_is_known() -> None:
    """A control helper's 'http_request_failed: <status>' is in the vocabulary (request_failed makes it)."""
    assert is_known(F.request_failed("status 503"))
    assert is_known("http_request_failed: 404")
    assert not is_known("http_request_failed404")


@pytest.mark.parametrize("text", ["unexpected EOF", 'Get "http://example.org/": unexpected EOF'])
def test_go_unexpected_eof_is_an_eof_error(text: str) -> None:
    """Go's io.ErrUnexpectedEOF (a FIN inside a response) is eof_error, not unknown_failure."""
    assert from_go(text) == F.EOF_ERROR


def test_an_empty_failure_string_is_ok() -> None:
    """A falsy failure ('' as well as None) is no failure: it must not be counted as an unknown one."""
    assert failure_class("") == "ok"
    assert failure_class(None) == "ok"


@pytest.mark.parametrize("failure", ["tcp_timed_out_error", "deferred_timeout_error"])
def test_legacy_helper_timeouts_are_timeouts_wherever_the_word_is(failure: str) -> None:
    """The legacy test helper's strings carry 'timed_out'/'timeout' mid-string: still the timeout class."""
    assert failure_class(failure) == "timeout"


@pytest.mark.parametrize(("failure", "expected"), [("Connection_Refused", "refused"),
                                                   ("DNS_NXDOMAIN_ERROR", "dns_nxdomain"), ("EOF_Error", "eof")])
def test_failure_classes_ignore_case(failure: str, expected: str) -> None:
    """A failure string in another case (other tools' data) falls in the same class, not 'unknown'."""
    assert failure_class(failure) == expected


@pytest.mark.parametrize("detail", ["", "  ", "\r\n"])
def test_request_failed_without_a_detail_still_says_something(detail: str) -> None:
    """An empty detail must give 'http_request_failed: unknown', not a string ending in ': '."""
    assert F.request_failed(detail) == "http_request_failed: unknown"


@pytest.mark.parametrize("response", [
    b"HTTP/1.1 200 OK\r\nno colon too\r\n\r\n",                                  # was "headers too large"
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz too\r\n",           # was "headers too large"
    b"HTTP/1.1 200 OK\r\nincomplete\r\n\r\n",                                     # was eof_error
    b"HTTP/1.1 200 OK\r\npeer closed connection\r\n\r\n",                         # was eof_error
])
def test_a_servers_own_bytes_in_h11s_message_do_not_choose_the_failure(response: bytes) -> None:
    """h11 quotes the offending line in its message: a server writing "too", "incomplete" or "peer closed
    connection" there got the failure it chose. Only h11's own words, at the start of its message, are read."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "example.org")]))
    conn.receive_data(response)
    with pytest.raises(h11.RemoteProtocolError) as info:
        while True:
            if conn.next_event() is h11.NEED_DATA:
                conn.receive_data(b"")
    assert classify(info.value, operation=F.HTTP_ROUND_TRIP) == F.HTTP_PROTOCOL_ERROR


def test_h11s_own_words_still_name_eof_and_headers_too_large() -> None:
    for response, failure in [(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab", F.EOF_ERROR),
                              (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", F.EOF_ERROR),
                              (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5", F.EOF_ERROR),
                              (b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 5000, F.HTTP_HEADERS_TOO_LARGE)]:
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", "example.org")]))
        conn.receive_data(response)
        with pytest.raises(h11.RemoteProtocolError) as info:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(b"")
        assert classify(info.value, operation=F.HTTP_ROUND_TRIP) == failure, response[-40:]
