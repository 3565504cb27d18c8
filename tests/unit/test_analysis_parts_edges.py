"""Edges of the smaller analysis parts: where a hop is (hops.py), the way a tool got in (transport.py), the legacy
and circumvention tests' verdicts (legacy.py, circumvention.py) and the backfill loop (backfill.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import orjson
import pytest

from tamperscope.analysis import backfill, hops
from tamperscope.analysis.transport import transport_of
from tamperscope.analysis.verdicts import verdict_for

# --------------------------------------------------------------------------- hops.py


def test_an_empty_hop_field_falls_through_to_the_next_name() -> None:
    """"" is no value: a probe that wrote ``ttl: ""`` and ``hop: 4`` is at hop 4."""
    hop = hops.hop_fields({"ttl": "", "hop": 4, "ip": "", "address": "198.18.0.1"})
    assert hop is not None and (hop["ttl"], hop["ip"], hop["label"]) == (4, "198.18.0.1", "hop 4 198.18.0.1")


def test_a_boolean_hop_field_is_text_not_a_number() -> None:
    """True is an int to Python: kept as a number it would be a TTL of 1 in the JSON report."""
    hop = hops.hop_fields({"ttl": True, "ip": "198.18.0.1", "asn": False})
    assert hop is not None and (hop["ttl"], hop["asn"]) == ("True", "False")


def test_a_numeric_asn_is_written_as_an_as_number() -> None:
    hop = hops.hop_fields({"ttl": 3, "ip": "198.18.0.1", "asn": 64500, "name": "LAB"})
    assert hop is not None and (hop["asn"], hop["label"]) == ("AS64500", "hop 3 198.18.0.1 (AS64500 LAB)")


def test_only_tamperscope_locate_places_a_hop_after_a_router() -> None:
    """Another method's address is the device's own: "after router" would misplace it."""
    other = hops.hop_fields({"ttl": 2, "ip": "198.18.1.1", "method": "traceroute"})
    assert other is not None and other["label"] == "hop 2 198.18.1.1"
    ours = hops.hop_fields({"ttl": 2, "ip": "198.18.1.1", "method": "tamperscope locate: TTL-limited"})
    assert ours is not None and ours["label"] == "hop 2, after router 198.18.1.1"


def test_a_located_hop_without_an_address_names_no_router() -> None:
    """No address: "hop 2 ?", never "after router None"."""
    hop = hops.hop_fields({"ttl": 2, "method": "tamperscope locate: TTL-limited"})
    assert hop is not None and hop["label"] == "hop 2 ?"


def test_a_hop_given_as_a_bare_string_is_bounded() -> None:
    """A string hop is its address, cut to 100 characters, and its label, cut to 200."""
    hop = hops.hop_fields("9" * 1000)
    assert hop is not None and (len(hop["ip"]), len(hop["label"])) == (100, 200)


class _Source:
    """A store's verdicts and raw lines, in memory: what `hops.located` reads."""

    def __init__(self, rows: Sequence[tuple[Any, ...]], raw: Mapping[str, bytes]) -> None:
        self.con = duckdb.connect(":memory:")
        self.con.execute("""CREATE TABLE verdicts (measurement_uid VARCHAR, mechanism VARCHAR, probe_asn VARCHAR,
                            domain VARCHAR, test_name VARCHAR, outcome VARCHAR, measurement_start_time TIMESTAMP,
                            probe_cc VARCHAR)""")
        self.con.executemany("INSERT INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?, 'ZZ')", list(rows))
        self.raw = dict(raw)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()

    def raw_many(self, uids: Sequence[str]) -> dict[str, bytes]:
        return {u: self.raw[u] for u in uids if u in self.raw}


def _raw(hop: Any) -> bytes:
    return orjson.dumps({"test_keys": {"x_hop": hop}})


def test_located_counts_confirmed_anomalies_and_names_only_apps() -> None:
    """A confirmed anomaly is located too; a website test's name is no app."""
    hop = {"ttl": 4, "ip": "198.18.0.4"}
    source = _Source([("a", "tcp.rst", "AS1", "a.example", "web_connectivity", "confirmed", "2026-01-02 00:00:00"),
                      ("b", "tcp.drop", "AS2", None, "vanilla_tor", "anomaly", "2026-01-01 00:00:00"),
                      ("c", "none", "AS3", "c.example", "web_connectivity", "ok", "2026-01-03 00:00:00")],
                     {u: _raw(hop) for u in "abc"})
    rows = hops.located(source)
    assert [(r["label"], r["measurement_count"], r["networks"], r["domains"], r["apps"], r["example_uid"])
            for r in rows] == [("hop 4 198.18.0.4", 2, "AS1, AS2", "a.example", "vanilla_tor", "a")]
    source.con.close()


def test_located_orders_hops_commonest_first_and_keeps_placements_apart() -> None:
    """The hop with most measurements leads; one hop with two placements is two rows."""
    near, far = {"ttl": 2, "ip": "198.18.0.2"}, {"ttl": 7, "ip": "198.18.0.7"}
    raw = {"n1": _raw({**near, "placement": "in-path"}), "n2": _raw({**near, "placement": "on-path"}),
           "f1": _raw(far), "f2": _raw(far)}
    source = _Source([(u, "tcp.rst", "AS1", f"{u}.example", "web_connectivity", "anomaly", f"2026-01-0{i} 00:00:00")
                      for i, u in enumerate(raw, 1)], raw)
    rows = hops.located(source)
    assert [(r["ttl"], r["placement"], r["measurement_count"]) for r in rows] == [
        (7, None, 2), (2, "in-path", 1), (2, "on-path", 1)]
    assert rows[0]["example_uid"] == "f2"  # the latest located there
    source.con.close()


# --------------------------------------------------------------------------- transport.py


@pytest.mark.parametrize(("test_keys", "expected"), [
    ({"transport_name": "none", "x_bridges": 0}, None),         # OONI's word for no transport
    ({"transport_name": " obfs4 \n"}, "obfs4"),                 # spaces around the token are no part of it
    ({"transport_name": "a" * 40}, "a" * 40),                   # 40 characters is the longest token
    ({"transport_name": "obfs4 <b>"}, None),                    # a token and then markup is no token
    ({"transport_name": "\u212aCP"}, None),                     # a Kelvin sign lowers to "k": not ASCII, no token
    ({"transport_name": "vanilla", "x_bridges": 1}, "bridge"),  # one bridge is through a bridge
    ({"transport_name": "direct", "x_bridges": False}, None),
])
def test_transport_tokens_at_their_edges(test_keys: dict[str, Any], expected: str | None) -> None:
    assert transport_of(test_keys) == expected


# --------------------------------------------------------------------------- legacy.py


def _m(test_name: str, **test_keys: Any) -> dict[str, Any]:
    return {"test_name": test_name, "test_keys": test_keys}


def test_bridge_reachability_without_a_supported_tor_is_a_failure() -> None:
    """ts-011: "unsupported-tor-version" means nothing ran, as "missing-pyobfsproxy" does: no anomaly."""
    v = verdict_for(_m("bridge_reachability", success=False, error="unsupported-tor-version", tor_progress=0))
    assert (v.status, v.evidence) == ("failure", ("test_keys.error",))
    assert verdict_for(_m("bridge_reachability", success=False, error="timeout-reached", tor_progress=5)).status \
        == "anomaly"


def test_bridge_reachability_is_half_sure() -> None:
    """No control, and a dead bridge fails the same way: 0.5, below vanilla_tor's bootstrap confidence."""
    v = verdict_for(_m("bridge_reachability", success=False, tor_progress=5))
    assert (v.status, v.mechanism, v.confidence) == ("anomaly", "tcp.drop", 0.5)


def test_http_requests_experiment_failure_needs_a_null_control_failure() -> None:
    """Without ``control_failure`` nothing says the site answered over Tor: no anomaly from the failure alone."""
    assert verdict_for(_m("http_requests", experiment_failure="connection_reset")).status == "failure"
    v = verdict_for(_m("http_requests", experiment_failure="connection_reset", control_failure=None))
    assert v.status == "anomaly" and v.evidence == ("test_keys.experiment_failure", "test_keys.control_failure")


def test_http_requests_body_difference_weighs_more_than_headers() -> None:
    """0.6 when the body length differs, 0.5 when only the headers do; each cites its own key."""
    body = verdict_for(_m("http_requests", body_length_match=False, headers_match=True))
    headers = verdict_for(_m("http_requests", body_length_match=True, headers_match=False))
    assert (body.confidence, body.evidence) == (0.6, ("test_keys.body_length_match",))
    assert (headers.confidence, headers.evidence) == (0.5, ("test_keys.headers_match",))


def test_http_requests_with_a_null_headers_match_is_not_ok() -> None:
    """v0.2+ wrote ``headers_match``: null there is unknown, not a match (only a missing key is pre-v0.2)."""
    assert verdict_for(_m("http_requests", body_length_match=True, headers_match=None)).status == "failure"


def _blockpage_matcher(body: str, headers: Mapping[str, str]) -> Sequence[str]:
    return ["fp/court"] if "blocked by order" in body or headers.get("Server") == "censor" else []


def _transaction(body: str, headers: Any = None, tor: Any = None) -> dict[str, Any]:
    return {"request": {"url": "http://a.example/", "tor": tor}, "response": {"body": body, "headers": headers or {}}}


def test_http_requests_over_tor_only_when_is_tor_is_true() -> None:
    """``is_tor`` "true" (a string) is not the control: its blockpage is the probe's own, confirmed."""
    direct = _transaction("blocked by order", tor={"is_tor": "true"})
    v = verdict_for(_m("http_requests", requests=[direct]), _blockpage_matcher)
    assert (v.status, v.fingerprints, v.confidence) == ("anomaly", ("fp/court",), 0.95)
    over_tor = _transaction("blocked by order", tor={"is_tor": True})
    assert verdict_for(_m("http_requests", requests=[over_tor]), _blockpage_matcher).status == "failure"


def test_http_requests_reads_the_first_of_a_headers_values() -> None:
    """A legacy header list [name, [values]]: the first value is the header's."""
    first = _transaction("fine", headers=[["Server", ["censor", "nginx"]]])
    last = _transaction("fine", headers=[["Server", ["nginx", "censor"]]])
    assert verdict_for(_m("http_requests", requests=[first]), _blockpage_matcher).fingerprints == ("fp/court",)
    assert verdict_for(_m("http_requests", requests=[last]), _blockpage_matcher).fingerprints == ()


def test_http_requests_reads_a_bounded_number_of_transactions() -> None:
    """Hostile input: the 65th transaction is not matched (the first 64 are)."""
    plain = [_transaction("fine") for _ in range(64)]
    late = verdict_for(_m("http_requests", requests=[*plain, _transaction("blocked by order")]), _blockpage_matcher)
    assert late.fingerprints == ()
    early = verdict_for(_m("http_requests", requests=[*plain[:63], _transaction("blocked by order")]),
                        _blockpage_matcher)
    assert early.evidence == ("test_keys.requests[63]",)


def test_dns_consistency_reads_only_named_resolvers() -> None:
    """A tampering value "true" (a string) is no true, an inconsistent entry that names no resolver is none,
    and no resolver answering is a failure, not ok."""
    for test_keys, status in [
        ({"tampering": {"192.0.2.53": "true"}, "successful": ["8.8.8.8"]}, "ok"),
        ({"tampering": {"192.0.2.53": True}, "successful": ["8.8.8.8"]}, "anomaly"),
        ({"inconsistent": ["", 5, None], "successful": ["8.8.8.8"]}, "ok"),
        ({"inconsistent": [], "successful": []}, "failure"),
    ]:
        assert verdict_for(_m("dns_consistency", **test_keys)).status == status, test_keys


def test_meek_fronted_requests_any_status_but_200_is_an_anomaly() -> None:
    """ts-014: a redirect from the front is not the meek server's answer either."""
    request = {"request": {"url": "https://ajax.aspnetcdn.com"}, "response": {"code": 302, "body": ""}}
    v = verdict_for(_m("meek_fronted_requests_test", requests=[request]))
    assert (v.status, v.mechanism, v.confidence) == ("anomaly", "http.blockpage", 0.5)


def test_http_host_reads_only_true_and_false() -> None:
    """A "yes" proxy is no proxy, and a missing ``send_host_header`` is no success."""
    assert verdict_for(_m("http_host", transparent_http_proxy="yes")).status == "failure"
    assert verdict_for(_m("http_host", send_host_header=None, transparent_http_proxy=0)).status == "failure"


# --------------------------------------------------------------------------- circumvention.py


def test_psiphon_ok_needs_a_finite_positive_bootstrap_time() -> None:
    """ts-015: null failure with no real bootstrap time "should not happen": a failure, not ok."""
    for bootstrap_time in (float("inf"), True, -1.0, 0):
        assert verdict_for(_m("psiphon", bootstrap_time=bootstrap_time, failure=None)).status == "failure"
    assert verdict_for(_m("psiphon", bootstrap_time=0.5, failure=None)).status == "ok"


def test_psiphon_failure_that_is_no_string_is_a_failure() -> None:
    """A number or a list where the failure string belongs says nothing: no anomaly."""
    for failure in (5, ["connection_reset"], ""):
        assert verdict_for(_m("psiphon", bootstrap_time=0, failure=failure)).status == "failure"


def test_psiphon_legacy_not_found_or_not_fetched_yet() -> None:
    """probe-legacy: psiphon not found is nothing ran; bootstrapped with no fetch result is not yet ok."""
    assert verdict_for(_m("psiphon", bootstrapped_success=False, psiphon_found=False)).status == "failure"
    assert verdict_for(_m("psiphon", bootstrapped_success=True, request_success=None)).status == "failure"
    v = verdict_for(_m("psiphon", bootstrapped_success=True, request_success=False,
                       requests=[{"failure": "connection_reset"}]))
    assert (v.status, v.mechanism) == ("anomaly", "tcp.rst")


# --------------------------------------------------------------------------- backfill.py


def _listed(*uids: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("CREATE TABLE todo (measurement_uid VARCHAR)")
    con.execute("CREATE TABLE done (measurement_uid VARCHAR, value VARCHAR)")
    con.executemany("INSERT INTO todo VALUES (?)", [[u] for u in uids])
    return con


def _write(con: duckdb.DuckDBPyConnection, _u: Any, rows: list[tuple[Any, ...]]) -> None:
    con.executemany("INSERT INTO done VALUES (?, ?)", [list(r) for r in rows])


def _left(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT count(*) FROM todo").fetchone()
    assert row is not None
    return int(row[0])


def test_backfill_skips_what_cannot_be_read_and_counts_every_uid() -> None:
    """A raw line gone, unreadable, not JSON, no object, or one the judge chokes on gives no row; all leave the
    list, and the count is of uids, not of rows."""
    raw: dict[str, Any] = {"ok": b'{"v": "x"}', "gone": None, "list": b"[1, 2]", "bad": b"{not json",
                           "boom": b'{"v": 1}'}
    judged: list[str] = []

    def read(uid: str) -> bytes | None:
        if uid == "oserror":
            raise OSError("segment unreadable")
        return raw[uid]

    def judge(uid: str, m: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        judged.append(uid)
        return [(uid, m["v"].upper())]  # "boom" holds a number: AttributeError

    con = _listed(*raw, "oserror")
    assert backfill.run(con, "todo", read, judge, _write) == 6
    assert sorted(judged) == ["boom", "ok"]
    assert con.execute("SELECT * FROM done").fetchall() == [("ok", "X")] and _left(con) == 0
    con.close()


def test_backfill_judges_a_uid_listed_twice_once() -> None:
    judged: list[str] = []

    def judge(uid: str, m: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        judged.append(uid)
        return [(uid, "v")]

    con = _listed("a", "a", "b")
    assert backfill.run(con, "todo", lambda u: b"{}", judge, _write) == 2
    assert sorted(judged) == ["a", "b"] and _left(con) == 0
    con.close()


def test_backfill_writes_in_batches_of_the_size_asked() -> None:
    """Each batch is one transaction: at most ``batch`` uids at a time, whatever the list holds."""
    sizes: list[int] = []

    def write(con: duckdb.DuckDBPyConnection, u: Any, rows: list[tuple[Any, ...]]) -> None:
        sizes.append(u.num_rows)

    con = _listed(*"abcde")
    assert backfill.run(con, "todo", lambda u: b"{}", lambda u, m: [], write, batch=2) == 5
    assert sizes == [2, 2, 1]
    con.close()


def test_a_backfill_whose_write_fails_rolls_back_and_can_run_again() -> None:
    """The batch stays listed and the connection leaves its transaction: the next open resumes."""

    def broken(con: duckdb.DuckDBPyConnection, u: Any, rows: list[tuple[Any, ...]]) -> None:
        _write(con, u, rows)
        raise RuntimeError("disk full")

    con = _listed("a", "b")
    with pytest.raises(RuntimeError):
        backfill.run(con, "todo", lambda u: b"{}", lambda u, m: [(u, "v")], broken)
    assert _left(con) == 2 and con.execute("SELECT count(*) FROM done").fetchone() == (0,)
    assert backfill.run(con, "todo", lambda u: b"{}", lambda u, m: [(u, "v")], _write) == 2
    assert _left(con) == 0 and con.execute("SELECT count(*) FROM done").fetchone() == (2,)
    con.close()
