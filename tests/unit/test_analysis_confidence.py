"""Confidence across measurements ("confirmed", "anomaly", "failure", "ok") and the verdicts-by-test-name table."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as s

from tamperscope.analysis import pipeline
from tamperscope.analysis.confidence import OUTCOME_SQL, group_key, outcome, outcomes
from tamperscope.analysis.store import Store
from tamperscope.analysis.verdicts import VERDICTS, Matcher, generic_verdict, register, verdict_for
from tamperscope.model.verdict import MECHANISMS, Verdict

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"


def _sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name / "measurement.json").read_text())
    return data


def test_outcome_rules() -> None:
    assert outcome("failure", ["fp"], 5) == "failure"
    assert outcome("ok", [], 3) == "ok"
    assert outcome("anomaly", ["cp/x"], 1) == "confirmed"   # a blockpage fingerprint alone confirms
    assert outcome("anomaly", [], 1) == "anomaly"           # one anomaly alone does not
    assert outcome("anomaly", [], 2) == "confirmed"         # the same anomaly twice on one input and network does


def _copy(m: dict[str, Any], **envelope: Any) -> bytes:
    return orjson.dumps(dict(m, **envelope))


def test_same_anomaly_twice_on_same_input_and_network_confirms(tmp_path: Path) -> None:
    tcp = _sample("tcpBlockingConnectTimeout")  # tcp.drop, no fingerprint
    ok = _sample("successWithHTTP")
    lines = [
        _copy(tcp, report_id="a", probe_asn="AS1"),
        _copy(tcp, report_id="b", probe_asn="AS2"),   # another network: does not count
        _copy(ok, report_id="c", probe_asn="AS1"),
    ]
    (tmp_path / "one.jsonl").write_bytes(b"\n".join(lines))
    store = Store(tmp_path / "s.duckdb")
    pipeline.run([str(tmp_path / "one.jsonl")], store)
    assert _labels(store) == {("AS1", "tcp.drop"): ["anomaly"], ("AS2", "tcp.drop"): ["anomaly"],
                              ("AS1", "none"): ["ok"]}
    # a later run adds the second measurement on AS1: both become confirmed, AS2's stays an anomaly
    (tmp_path / "two.jsonl").write_bytes(_copy(tcp, report_id="d", probe_asn="AS1"))
    pipeline.run([str(tmp_path / "two.jsonl")], store)
    assert _labels(store)[("AS1", "tcp.drop")] == ["confirmed", "confirmed"]
    assert _labels(store)[("AS2", "tcp.drop")] == ["anomaly"]
    store.close()


def test_no_network_known_confirms_nothing(tmp_path: Path) -> None:
    """AS0 is no network: two measurements from unknown networks (anywhere) showing the same anomaly do not confirm
    each other; a fingerprint still confirms."""
    tcp = _sample("tcpBlockingConnectTimeout")  # tcp.drop, no fingerprint
    blockpage = _sample("httpDiffWithConsistentDNS")  # a fingerprinted blockpage
    lines = [_copy(tcp, report_id=r, probe_asn="AS0", probe_cc=cc) for r, cc in (("a", "IR"), ("b", "IR"), ("c", "CN"))]
    lines += [_copy(blockpage, report_id="d", probe_asn="AS0"), _copy(tcp, report_id="e", probe_asn="AS7"),
              _copy(tcp, report_id="f", probe_asn="AS7")]
    (tmp_path / "one.jsonl").write_bytes(b"\n".join(lines))
    store = Store(tmp_path / "s.duckdb")
    pipeline.run([str(tmp_path / "one.jsonl")], store)
    labels = _labels(store)
    assert labels[("AS0", "tcp.drop")] == ["anomaly"] * 3
    assert labels[("AS0", "http.blockpage")] == ["confirmed"]
    assert labels[("AS7", "tcp.drop")] == ["confirmed"] * 2
    groups = store.cursor().execute("SELECT DISTINCT probe_asn FROM anomaly_groups").fetchall()
    store.close()
    assert groups == [("AS7",)]


def test_a_version_11_store_stops_confirming_by_repeats_on_no_network(tmp_path: Path) -> None:
    """Migration 12: verdicts of AS0 that a repeat alone confirmed go back to anomaly, their groups are dropped;
    others keep their labels."""
    import duckdb

    from tamperscope.analysis import schema

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    assert schema.migrate(con, target=11)[-1] == 11
    for uid, asn, fps in (("1", "AS0", []), ("2", "AS0", []), ("3", "AS0", ["cp/x"]), ("4", "AS5", []),
                          ("5", "AS5", [])):
        con.execute("""INSERT INTO verdicts (measurement_uid, test_name, input, probe_cc, probe_asn, day,
                       measurement_start_time, mechanism, status, fingerprints, outcome)
                       VALUES (?, 't', 'http://a/', 'IR', ?, DATE '2024-01-01', TIMESTAMP '2024-01-01', 'tcp.drop',
                       'anomaly', ?, 'confirmed')""", [uid, asn, fps])  # as version 11 labelled them
    con.execute("DELETE FROM anomaly_groups")
    con.execute(schema.COUNT_ALL_SQL.replace("AND probe_asn <> 'AS0'", ""))  # version 11's groups
    con.close()
    with Store(path) as store:
        assert store.migrated == [12]
        got = dict(store.cursor().execute("SELECT measurement_uid, outcome FROM verdicts").fetchall())
        groups = store.cursor().execute("SELECT probe_asn, anomalies FROM anomaly_groups").fetchall()
    assert got == {"1": "anomaly", "2": "anomaly", "3": "confirmed", "4": "confirmed", "5": "confirmed"}
    assert groups == [("AS5", 2)]


def test_fingerprint_confirms_and_failure_is_failure(tmp_path: Path) -> None:
    lines = [orjson.dumps(_sample(n)) for n in ("httpDiffWithConsistentDNS", "controlFailureWithSuccessfulHTTPWebsite")]
    (tmp_path / "x.jsonl").write_bytes(b"\n".join(lines))
    store = Store(tmp_path / "s.duckdb")
    pipeline.run([str(tmp_path)], store)
    rows = dict(store.cursor().execute("SELECT mechanism || ':' || status, outcome FROM verdicts").fetchall())
    assert rows == {"http.blockpage:anomaly": "confirmed", "none:failure": "failure"}
    store.close()


def _labels(store: Store) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for asn, mechanism, label in store.cursor().execute(
            "SELECT probe_asn, mechanism, outcome FROM verdicts ORDER BY outcome").fetchall():
        out.setdefault((asn, mechanism), []).append(label)
    return out


# (input, network, status, mechanism, fingerprint?, transport): Tor through a bridge is a group of its own, and AS0
# (no network known) none at all
_rows = s.lists(s.tuples(s.sampled_from(["http://a/", "http://b/", None]), s.sampled_from(["AS1", "AS2", "AS0"]),
                         s.sampled_from(["ok", "anomaly", "failure"]), s.sampled_from(["dns.poison", "tcp.rst"]),
                         s.booleans(), s.sampled_from([None, "obfs4"])), min_size=1, max_size=30)
Row = tuple[str | None, str, str, str, bool, str | None]


@settings(max_examples=40, deadline=None)
@given(_rows)
def test_sql_and_python_agree(rows: list[Row]) -> None:
    """The store's UPDATE and `outcomes()` are one rule."""
    import duckdb

    from tamperscope.analysis import store as st

    con = duckdb.connect()
    st.migrate(con)
    plain = []
    for i, (inp, asn, status, mechanism, fp, transport) in enumerate(rows):
        mechanism = mechanism if status == "anomaly" else "none"
        fps = ["cp/x"] if fp and status == "anomaly" else []
        con.execute("""INSERT INTO verdicts (measurement_uid, test_name, input, probe_cc, probe_asn, day,
                       measurement_start_time, mechanism, status, fingerprints, outcome, transport)
                       VALUES (?, 't', ?, 'IT', ?, ?, ?, ?, ?, ?, NULL, ?)""",
                    [str(i), inp, asn, dt.date(2024, 1, 1), dt.datetime(2024, 1, 1), mechanism, status, fps,
                     transport])
        plain.append({"test_name": "t", "input": inp, "probe_asn": asn, "mechanism": mechanism, "status": status,
                      "fingerprints": fps, "transport": transport})
    con.execute("CREATE TEMP TABLE touched AS SELECT DISTINCT test_name, coalesce(input, '') AS input_key, "
                "probe_asn FROM verdicts")
    con.execute(OUTCOME_SQL)
    got = [r[0] for r in con.execute("SELECT outcome FROM verdicts ORDER BY measurement_uid::INTEGER").fetchall()]
    con.close()
    assert got == outcomes(plain)


def _verdict_table(rows: list[Row], first: int) -> tuple[Any, list[dict[str, Any]]]:
    """Rows of the strategy as a flush's verdicts (own outcome, as the pipeline labels them) and as plain dicts."""
    import pyarrow as pa

    plain = []
    for inp, asn, status, mechanism, fp, transport in rows:
        mechanism = mechanism if status == "anomaly" else "none"
        fps = ["cp/x"] if fp and status == "anomaly" else []
        plain.append({"test_name": "t", "input": inp, "probe_asn": asn, "mechanism": mechanism, "status": status,
                      "fingerprints": fps, "transport": transport})
    n = len(plain)
    table = pa.table({
        "measurement_uid": [str(first + i) for i in range(n)], "test_name": ["t"] * n,
        "input": [r["input"] for r in plain], "probe_cc": ["IT"] * n, "probe_asn": [r["probe_asn"] for r in plain],
        "day": [dt.date(2024, 1, 1)] * n, "measurement_start_time": [dt.datetime(2024, 1, 1)] * n,
        "mechanism": [r["mechanism"] for r in plain], "status": [r["status"] for r in plain],
        "fingerprints": pa.array([r["fingerprints"] for r in plain], pa.list_(pa.string())),
        "outcome": [outcome(r["status"], r["fingerprints"], 1) for r in plain],
        "transport": pa.array([r["transport"] for r in plain], pa.string())})
    return table, plain


def _ingest(con: Any, table: Any, defer: bool = False) -> None:
    """What a store flush does with its new verdicts (a streaming ingest defers the promotions)."""
    from tamperscope.analysis.confidence import insert_verdicts

    con.execute("BEGIN TRANSACTION")
    insert_verdicts(con, table, defer=defer)
    con.execute("COMMIT")


def _stored(con: Any) -> tuple[list[str], Counter[tuple[Any, ...]]]:
    labels = [r[0] for r in con.execute("SELECT outcome FROM verdicts ORDER BY measurement_uid::INTEGER").fetchall()]
    groups: Counter[tuple[Any, ...]] = Counter()
    for *key, count in con.execute(
            "SELECT test_name, input_key, probe_asn, transport, mechanism, anomalies FROM anomaly_groups").fetchall():
        assert tuple(key) not in groups, "one row per group"
        groups[tuple(key)] = count
    return labels, groups


def _lone_uids_wrong(con: Any) -> list[tuple[Any, ...]]:
    """Groups whose ``lone_uid`` is not the uid of their only anomaly (or not NULL when they have more)."""
    return con.execute("""
        SELECT g.input_key, g.probe_asn, g.transport, g.mechanism, g.anomalies, g.lone_uid FROM anomaly_groups g
        LEFT JOIN (SELECT coalesce(input, '') AS input_key, probe_asn, transport, mechanism,
                          any_value(measurement_uid) AS uid
                   FROM verdicts WHERE status = 'anomaly' GROUP BY ALL) v
            ON g.input_key = v.input_key AND g.probe_asn = v.probe_asn AND g.mechanism = v.mechanism
               AND g.transport IS NOT DISTINCT FROM v.transport
        WHERE g.lone_uid IS DISTINCT FROM CASE WHEN g.anomalies = 1 THEN v.uid END""").fetchall()


def _counts(plain: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    return Counter(group_key(r) for r in plain if r["status"] == "anomaly" and r["probe_asn"] != "AS0")


@settings(max_examples=80, deadline=None)
@given(_rows, s.lists(s.integers(1, 7), min_size=1, max_size=8), s.booleans())
def test_labels_from_group_counts_follow_the_rule_however_the_flushes_fall(
        rows: list[Row], cuts: list[int], defer: bool) -> None:
    """An ingest labels from the counts; split into any flushes, the store ends as `outcomes()` says,
    whether each flush promotes the older anomalies it confirms or leaves them to one `promote()`."""
    import duckdb

    from tamperscope.analysis import store as st
    from tamperscope.analysis.confidence import promote

    con = duckdb.connect()
    st.migrate(con)
    table, plain = _verdict_table(rows, 0)
    start, i = 0, 0
    while start < len(rows):
        size = cuts[i % len(cuts)]
        _ingest(con, table.slice(start, size), defer)
        start, i = start + size, i + 1
    if defer:
        promote(con)
    labels, groups = _stored(con)
    noted = con.execute("SELECT count(*) FROM promotions").fetchone()[0]
    wrong = _lone_uids_wrong(con)
    con.close()
    assert labels == outcomes(plain)
    assert groups == _counts(plain)
    assert noted == 0
    assert wrong == []


@settings(max_examples=40, deadline=None)
@given(_rows, s.sets(s.integers(0, 29)), s.booleans())
def test_removing_verdicts_recounts_and_relabels_their_groups(
        rows: list[Row], gone: set[int], defer: bool) -> None:
    """The collector's delete and re-analysis paths: `touch`, then `relabel` (REGROUP_SQL, OUTCOME_SQL) over the
    touched groups; and the same measurements measured again afterwards confirm what the removals left alone."""
    import duckdb

    from tamperscope.analysis import store as st
    from tamperscope.analysis.confidence import promote, relabel, touch

    con = duckdb.connect()
    st.migrate(con)
    table, plain = _verdict_table(rows, 0)
    _ingest(con, table)
    gone = {i for i in gone if i < len(rows)}
    touch(con, [str(i) for i in gone])
    con.execute("DELETE FROM verdicts WHERE measurement_uid IN (SELECT unnest(?::VARCHAR[]))", [[str(i) for i in gone]])
    relabel(con)
    labels, groups = _stored(con)
    wrong = _lone_uids_wrong(con)
    kept = [r for i, r in enumerate(plain) if i not in gone]
    assert labels == outcomes(kept)
    assert groups == _counts(kept)
    assert wrong == []
    again, repeated = _verdict_table(rows, 100)
    _ingest(con, again, defer)
    if defer:
        promote(con)
    labels, groups = _stored(con)
    con.close()
    assert labels == outcomes(kept + repeated)
    assert groups == _counts(kept + repeated)


@settings(max_examples=40, deadline=None)
@given(_rows, s.sets(s.integers(0, 29)))
def test_a_transport_filled_in_later_regroups_its_verdicts(rows: list[Row], bridged: set[int]) -> None:
    """Schema v8's backfill: verdicts stored as direct learn their transport from their raw lines; `touch` and
    `relabel` move their anomalies to the groups of that transport, and the labels follow the rule."""
    import duckdb

    from tamperscope.analysis import store as st
    from tamperscope.analysis.confidence import relabel, touch

    con = duckdb.connect()
    st.migrate(con)
    table, plain = _verdict_table([(*r[:5], None) for r in rows], 0)
    _ingest(con, table)
    bridged = {i for i in bridged if i < len(rows)}
    uids = [str(i) for i in sorted(bridged)]
    con.execute("UPDATE verdicts SET transport = 'obfs4' WHERE measurement_uid IN (SELECT unnest(?::VARCHAR[]))",
                [uids])
    touch(con, uids)
    relabel(con)
    labels, groups = _stored(con)
    wrong = _lone_uids_wrong(con)
    con.close()
    now = [dict(r, transport="obfs4" if i in bridged else None) for i, r in enumerate(plain)]
    assert labels == outcomes(now)
    assert groups == _counts(now)
    assert wrong == []


# --------------------------------------------------------------------------- verdicts by test name


def _m(test_name: str, **test_keys: Any) -> dict[str, Any]:
    return {"test_name": test_name, "test_keys": test_keys}


@pytest.mark.parametrize("m,expected", [
    (_m("http_invalid_request_line", tampering=True), ("anomaly", "middlebox")),
    (_m("http_invalid_request_line", tampering=False), ("ok", "none")),
    (_m("http_invalid_request_line"), ("failure", "none")),
    (_m("http_header_field_manipulation", tampering={"total": True, "header_field_name": True}),
     ("anomaly", "middlebox")),
    (_m("http_header_field_manipulation", tampering={"total": False}), ("ok", "none")),
    (_m("throttling", x_throttle={"throttled": True, "cap_kbps": 120}), ("anomaly", "throttle")),
    (_m("throttling", x_throttle={"throttled": False}), ("ok", "none")),
    (_m("throttling", x_throttle="garbage"), ("failure", "none")),
    (_m("tls_mitm", x_mitm={"intercepted": True, "issuer": "Evil CA"}), ("anomaly", "tls.mitm")),
    (_m("tls_mitm", x_mitm={"intercepted": False}), ("ok", "none")),
    (_m("dnscheck", x_lookups={"system": {"engine": "system", "addrs": ["1.2.3.4"]}},
        x_injection={"answers": ["10.10.34.35"]}), ("anomaly", "dns.injection")),
    (_m("dnscheck", lookups={"https://dns.google/dns-query": {"queries": []}}), ("ok", "none")),
    (_m("some_future_nettest", tampering=True), ("anomaly", "middlebox")),
    # OONI's instant-messaging and legacy tests: their documented flags, and the failure strings beside them
    (_m("signal"), ("failure", "none")),  # no flag at all: the test produced nothing to judge
    (_m("signal", signal_backend_status="ok", signal_backend_failure=None), ("ok", "none")),
    (_m("signal", signal_backend_status="blocked", signal_backend_failure="connection_reset"), ("anomaly", "tls.rst")),
    (_m("signal", signal_backend_status="blocked", signal_backend_failure="ssl_unknown_authority"),
     ("anomaly", "tls.mitm")),
    (_m("telegram", telegram_tcp_blocking=False, telegram_http_blocking=False, telegram_web_status="ok"),
     ("ok", "none")),
    (_m("telegram", telegram_tcp_blocking=True, telegram_http_blocking=True, telegram_web_status="ok",
        tcp_connect=[{"ip": "149.154.175.50", "port": 443, "status": {"success": False,
                                                                     "failure": "generic_timeout_error"}},
                     {"ip": "149.154.167.51", "port": 443, "status": {"success": False,
                                                                     "failure": "connection_refused"}}]),
     ("anomaly", "tcp.rst")),  # a refusal says more than a timeout
    (_m("telegram", telegram_tcp_blocking=False, telegram_http_blocking=True, telegram_web_status="ok",
        requests=[{"failure": "generic_timeout_error"}]), ("anomaly", "http.drop")),
    (_m("telegram", telegram_tcp_blocking=False, telegram_http_blocking=False, telegram_web_status="blocked",
        telegram_web_failure="generic_timeout_error"), ("anomaly", "tls.drop")),
    (_m("whatsapp", whatsapp_endpoints_status="ok", registration_server_status="ok", whatsapp_web_status="ok"),
     ("ok", "none")),
    (_m("whatsapp", whatsapp_endpoints_status="blocked", registration_server_status="ok",
        whatsapp_web_status="blocked", whatsapp_web_failure="dns_nxdomain_error"), ("anomaly", "tcp.drop")),
    (_m("whatsapp", whatsapp_endpoints_status="ok", registration_server_status="blocked",
        registration_server_failure="dns_nxdomain_error", whatsapp_web_status="ok"), ("anomaly", "dns.nxdomain")),
    (_m("facebook_messenger", facebook_dns_blocking=True, facebook_tcp_blocking=False), ("anomaly", "dns.poison")),
    (_m("facebook_messenger", **{"facebook-dns-blocking": False, "facebook-tcp-blocking": True}),
     ("anomaly", "tcp.drop")),  # the keys of versions up to 0.3.0
    (_m("facebook_messenger", facebook_dns_blocking=False, facebook_tcp_blocking=False), ("ok", "none")),
    (_m("tcp_connect", connection="success"), ("ok", "none")),
    (_m("tcp_connect", connection="connection_reset"), ("anomaly", "tcp.rst")),
    (_m("tcp_connect", connection=7), ("failure", "none")),
])
def test_verdicts_by_test_name(m: dict[str, Any], expected: tuple[str, str]) -> None:
    v = verdict_for(m)
    assert isinstance(v, Verdict) and v.mechanism in MECHANISMS
    assert (v.status, v.mechanism) == expected


def test_instant_messaging_verdicts_speak_oonis_blocking_and_cite_their_keys() -> None:
    v = verdict_for(_m("telegram", telegram_tcp_blocking=True, telegram_http_blocking=True, telegram_web_status="ok"))
    assert (v.blocking, v.accessible) == ("tcp_ip", False)
    assert v.evidence == ("test_keys.telegram_tcp_blocking", "test_keys.telegram_http_blocking")
    v = verdict_for(_m("whatsapp", whatsapp_endpoints_status="ok", registration_server_status="blocked",
                       registration_server_failure="connection_reset", whatsapp_web_status="ok"))
    assert (v.blocking, v.mechanism) == ("http-failure", "tls.rst")
    assert v.evidence == ("test_keys.registration_server_status",)
    v = verdict_for(_m("facebook_messenger", facebook_dns_blocking=True, facebook_tcp_blocking=False))
    assert v.blocking == "dns"
    ok = verdict_for(_m("signal", signal_backend_status="ok"))
    assert (ok.blocking, ok.accessible, ok.evidence) == (False, True, ("test_keys.signal_backend_status",))
    assert {"telegram", "whatsapp", "facebook_messenger", "signal", "tcp_connect"} <= set(VERDICTS)


def test_web_connectivity_uses_the_model_verdict() -> None:
    assert verdict_for(_sample("dnsBlockingNXDOMAIN")).mechanism == "dns.nxdomain"
    assert {"web_connectivity", "dnscheck", "throttling", "tls_mitm"} <= set(VERDICTS)


def test_a_new_nettest_plugs_in() -> None:
    @register("my_new_nettest")
    def mine(m: Any, matcher: Any) -> Verdict:
        return Verdict("dns", False, "dns.drop", 0.5, "anomaly", ("test_keys.x",))

    try:
        assert verdict_for(_m("my_new_nettest")).mechanism == "dns.drop"
    finally:
        del VERDICTS["my_new_nettest"]
    assert verdict_for(_m("my_new_nettest")) == generic_verdict(_m("my_new_nettest"), None)


def test_matcher_memo_is_exact_and_bounded() -> None:
    class CountingDB:
        def __init__(self) -> None:
            self.calls = 0

        def match_response(self, body: str, headers: Any) -> list[Any]:
            self.calls += 1

            class M:
                id = "fp/" + body[:3]
            return [M()] if "blocked" in body else []

    db = CountingDB()
    m = Matcher(db)
    assert m("blocked page", {"Server": "x"}) == ("fp/blo",)
    assert m("blocked page", {"Server": "x"}) == ("fp/blo",)
    assert m("blocked page", {"Server": "y"}) == ("fp/blo",)  # other headers: asked again
    assert m("fine", {}) == ()
    assert db.calls == 3 and m.hits == 1
    m.MAX_ENTRIES = 2
    for i in range(10):
        m(f"page {i}", {})
    assert len(m._memo) <= 2
    big = "blocked" + "x" * (Matcher.MAX_BODY + 1)
    m(big, {})
    m(big, {})
    assert db.calls == 3 + 10 + 2  # long bodies are never kept


def test_a_failing_verdict_function_is_reported_and_the_measurement_kept(tmp_path: Path) -> None:
    @register("crashy")
    def crashy(m: Any, matcher: Any) -> Verdict:
        raise KeyError("boom")

    try:
        good = dict(_sample("successWithHTTP"), test_name="crashy")
        (tmp_path / "x.jsonl").write_bytes(orjson.dumps(good))
        store = Store(tmp_path / "s.duckdb")
        stats = pipeline.run([str(tmp_path / "x.jsonl")], store)
        assert (stats.new, stats.rejected, stats.analysis_errors) == (1, 0, 1)
        assert stats.examples["analysis_error"][0].endswith("KeyError: 'boom'")
        row = store.cursor().execute("SELECT status, outcome, evidence FROM verdicts").fetchone()
        assert row == ("failure", "failure", ["analysis_error: KeyError"])
        store.close()
    finally:
        del VERDICTS["crashy"]
