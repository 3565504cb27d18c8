"""Observation rows at their edges (analysis/observations.py): the bounds of each number a hostile record may hold,
the shapes of addresses and URLs, the base64 body length, and the nested lists of dnscheck and tor."""

from __future__ import annotations

from typing import Any

from tamperscope.analysis.observations import ObservationColumns, observations_of


def _rows(tk: dict[str, Any]) -> list[dict[str, Any]]:
    return observations_of("u", {"test_keys": tk}).to_pylist()


def test_an_http_transaction_id_at_the_int64_bound_is_dropped() -> None:
    """2**63 does not fit the int64 column: kept, it would break the table (or wrap) instead of becoming NULL."""
    rows = _rows({"requests": [{"transaction_id": 2**63}, {"transaction_id": 2**63 - 1},
                               {"transaction_id": -2**63}, {"transaction_id": -2**63 - 1}]})
    assert [r["transaction_id"] for r in rows] == [None, 2**63 - 1, -2**63, None]


def test_a_dns_transaction_id_out_of_int64_range_is_dropped() -> None:
    """The inlined check of the DNS rows: a huge id is NULL, not an overflow of the whole batch."""
    rows = _rows({"queries": [{"transaction_id": 2**63}, {"transaction_id": 2**64 + 5}, {"transaction_id": 7}]})
    assert [r["transaction_id"] for r in rows] == [None, None, 7]


def test_a_tcp_port_past_65535_is_no_port() -> None:
    """65536 is the first number that is no port."""
    rows = _rows({"tcp_connect": [{"ip": "192.0.2.1", "port": 65535}, {"ip": "192.0.2.1", "port": 65536},
                                  {"ip": "192.0.2.1", "port": 0}, {"ip": "192.0.2.1", "port": -1}]})
    assert [r["port"] for r in rows] == [65535, None, 0, None]


def test_a_port_string_longer_than_five_digits_is_no_port() -> None:
    """A long run of digits must not reach the int32 column (a 20-digit string would overflow it)."""
    rows = _rows({"tcp_connect": [{"port": "1" * 20}, {"port": "000443"}, {"port": "00443"}],
                  "tls_handshakes": [{"address": "192.0.2.1:" + "9" * 30}]})
    assert [r["port"] for r in rows] == [None, None, 443, None]
    assert rows[3]["ip"] == "192.0.2.1"


def test_an_address_without_a_port_keeps_its_host() -> None:
    """An address with no ``:port`` (or a non-numeric one) is still the peer's address."""
    rows = _rows({"tls_handshakes": [{"address": "192.0.2.1"}, {"address": "host:https"}, {"address": ""},
                                     {"address": 443}]})
    assert [(r["ip"], r["port"]) for r in rows] == [("192.0.2.1", None), ("host:https", None), (None, None),
                                                    (None, None)]


def test_the_host_of_an_unbracketed_ipv6_url_is_whole() -> None:
    """Only one colon is a port separator: an IPv6 literal without brackets must not lose its last group."""
    rows = _rows({"requests": [{"request": {"url": "http://2001:DB8::1/x"}},
                               {"request": {"url": "http://[2001:db8::2]:8080/x"}},
                               {"request": {"url": "https://Example.ORG:8443?q#f"}},
                               {"request": {"url": "example.net/path"}}]})
    assert [r["hostname"] for r in rows] == ["2001:db8::1", "2001:db8::2", "example.org", "example.net"]


def test_an_http_status_code_of_999_is_kept_and_1000_is_not() -> None:
    """Status codes are three digits at most; 0 and negative codes are no response either."""
    rows = _rows({"requests": [{"response": {"code": c}} for c in (999, 1000, 0, -200, 200, True)]})
    assert [r["status_code"] for r in rows] == [999, None, None, None, 200, None]


def test_the_base64_body_length_counts_both_padding_characters() -> None:
    """"aQ==" is one byte, "aGk=" two, "aGVs" three: the padding in the last two characters is subtracted."""
    body = [{"format": "base64", "data": d} for d in ("aQ==", "aGk=", "aGVs", "")]
    rows = _rows({"requests": [{"response": {"body": b}} for b in body]})
    assert [r["body_length"] for r in rows] == [1, 2, 3, 0]


def test_a_hostile_base64_body_is_never_a_negative_length() -> None:
    """"=" alone, or "==", would be -1 or -2 bytes without the floor at 0."""
    rows = _rows({"requests": [{"response": {"body": {"format": "base64", "data": d}}} for d in ("=", "==", "a=")]})
    assert [r["body_length"] for r in rows] == [0, 0, 0]


def test_a_body_that_is_not_base64_counts_characters() -> None:
    """Any other format (or none) is text: its length in characters, padding and all."""
    rows = _rows({"requests": [{"response": {"body": {"format": "x", "data": "aQ=="}}},
                               {"response": {"body": "héllo"}}, {"response": {"body": {"data": 5}}}]})
    assert [r["body_length"] for r in rows] == [4, 5, None]


def test_body_truncated_is_only_a_boolean() -> None:
    """A "yes" or a 1 is no boolean: NULL, not True."""
    rows = _rows({"requests": [{"response": {"body_is_truncated": v}} for v in (True, False, "yes", 1, None)]})
    assert [r["body_truncated"] for r in rows] == [True, False, None, None, None]


def test_dnscheck_lookups_become_rows_after_the_top_level_lists() -> None:
    """dnscheck nests its queries under ``lookups``: they are rows, numbered after the measurement's own."""
    tk = {"queries": [{"hostname": "a.example"}],
          "lookups": {"https://dns.example/dns-query": {"queries": [{"hostname": "b.example", "engine": "doh"}]},
                      "udp://9.9.9.9:53": "junk"}}
    rows = _rows(tk)
    assert [(r["idx"], r["pointer"], r["hostname"]) for r in rows] == [
        (0, "test_keys.queries[0]", "a.example"),
        (1, "test_keys.lookups['https://dns.example/dns-query'].queries[0]", "b.example")]


def test_dns_answers_name_a_cname_by_its_hostname() -> None:
    """An answer with neither ipv4 nor ipv6 is a CNAME: its ``hostname`` is the answer."""
    rows = _rows({"queries": [{"answers": [{"answer_type": "CNAME", "hostname": "cdn.example"},
                                           {"ipv6": "2001:db8::5"}, {"ipv4": 5}]}]})
    assert rows[0]["answers"] == ["cdn.example", "2001:db8::5"]


def test_a_quic_handshake_is_a_quic_row_not_a_tls_one() -> None:
    """QUIC and TLS are different steps: a blocked QUIC must not read as a TLS failure."""
    rows = _rows({"quic_handshakes": [{"address": "192.0.2.1:443", "server_name": "a.example",
                                       "failure": "generic_timeout_error"}]})
    assert [(r["step"], r["ip"], r["port"], r["server_name"], r["failure"]) for r in rows] == [
        ("quic", "192.0.2.1", 443, "a.example", "generic_timeout_error")]


def test_a_tcp_failure_is_read_from_its_status_only() -> None:
    """A tcp_connect record's outcome is ``status.failure``; a top-level ``failure`` there is not OONI's."""
    rows = _rows({"tcp_connect": [{"ip": "192.0.2.1", "port": 443, "failure": "connection_reset",
                                   "status": {"failure": None, "success": True}},
                                  {"ip": "192.0.2.1", "port": 443, "status": {"failure": ""}}]})
    assert [r["failure"] for r in rows] == [None, None]


def test_an_empty_failure_string_is_success() -> None:
    """"" is no failure in any step: NULL, as a null failure is."""
    rows = _rows({"queries": [{"failure": ""}], "tls_handshakes": [{"failure": ""}],
                  "requests": [{"failure": ""}]})
    assert [r["failure"] for r in rows] == [None, None, None]


def test_add_counts_rows_and_numbers_them_across_measurements() -> None:
    """``add`` returns the rows it appended; each measurement's ``idx`` starts again at 0."""
    cols = ObservationColumns()
    assert cols.add("a", {"queries": [{}, "junk", {}], "tcp_connect": {"not": "a list"}}) == 2
    assert cols.add("b", {"tcp_connect": [{}]}) == 1
    assert len(cols) == 3
    rows = cols.to_arrow().to_pylist()
    assert [(r["measurement_uid"], r["idx"], r["pointer"]) for r in rows] == [
        ("a", 0, "test_keys.queries[0]"), ("a", 1, "test_keys.queries[2]"), ("b", 0, "test_keys.tcp_connect[0]")]


def test_a_port_given_as_text_past_65535_is_no_port() -> None:
    """"99999" is no port, as 99999 is not: the text was taken whatever its value."""
    rows = _rows({"tcp_connect": [{"ip": "192.0.2.1", "port": "99999"}, {"ip": "192.0.2.1", "port": "65535"}],
                  "tls_handshakes": [{"address": "192.0.2.1:99999"}, {"address": "192.0.2.1:65536"}]})
    assert [r["port"] for r in rows] == [None, 65535, None, None]
    assert [r["ip"] for r in rows[2:]] == ["192.0.2.1", "192.0.2.1"]


def test_an_ipv6_address_is_split_only_at_its_brackets() -> None:
    """A bare IPv6 address has no port (its last group was read as one: "2001:db8::1" became "2001:db8:" port 1);
    a bracketed one loses its brackets, with or without a port."""
    rows = _rows({"tls_handshakes": [{"address": "2001:db8::1"}, {"address": "[2001:db8::1]"},
                                     {"address": "[2001:db8::1]:443"}, {"address": "[2001:db8::1]:https"},
                                     {"address": "::1"}]})
    assert [(r["ip"], r["port"]) for r in rows] == [("2001:db8::1", None), ("2001:db8::1", None),
                                                    ("2001:db8::1", 443), ("[2001:db8::1]:https", None),
                                                    ("::1", None)]
