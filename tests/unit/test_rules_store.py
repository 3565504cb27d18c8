"""The rules blocking_rules measurements read back, in the store (schema v7): written by `analyze` from the
records (never from the rules the probe wrote), one row per layer and measurement however often it is
ingested, back-filled from the raw lines of stores analysed before the table existed, aggregated for the
report, the explorer's API and the Parquet export, and shown as hostile text."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow.parquet as pq
import pytest

from tamperscope.analysis import aggregates, pipeline
from tamperscope.analysis import store as st
from tamperscope.analysis.aggregates import Filters
from tamperscope.analysis.report import html_report, json_report, terminal_report
from tamperscope.analysis.rules import NAME_MAX, rule_rows
from tamperscope.analysis.store import Store
from tamperscope.analysis.verdicts import default_matcher
from tests.unit.test_blocking_rules import HOST, LIE, SALT, measurement, measurement_with_path, query

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
NETWORKS = [("TM", "AS20661", "2026-11-10 10:00:00"), ("TM", "AS20661", "2026-11-11 10:00:00"),
            ("RU", "AS12389", "2026-11-12 10:00:00")]
# what measurement()'s records say, layer by layer (test_blocking_rules checks the judging itself)
READ = {"dns": ("domain_and_subdomains", None, None), "dns_path": ("domain_and_subdomains", None, None),
        "tls": ("ends_with", None, f"{SALT}{HOST}"), "http": ("substring", "ock", f"{SALT}{HOST}")}


def _measurements() -> list[dict[str, Any]]:
    out = []
    for i, (cc, asn, when) in enumerate(NETWORKS):
        m = measurement_with_path()
        m.update(probe_cc=cc, probe_asn=asn, measurement_start_time=when, report_id=f"r{i}", test_version="0.1.0")
        out.append(m)
    return out


def _write(path: Path, ms: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in ms))
    return path


def _rows(store: Store) -> list[tuple[Any, ...]]:
    return store.cursor().execute("""SELECT v.probe_asn, v.measurement_start_time::VARCHAR, r.layer, r.rule,
        r.keyword, r.overblocks FROM rules r JOIN verdicts v USING (measurement_uid) ORDER BY ALL""").fetchall()


def _expected() -> list[tuple[Any, ...]]:
    return sorted((asn, when, layer, *READ[layer]) for _, asn, when in NETWORKS for layer in READ)


@pytest.fixture()
def ingested(tmp_path: Path) -> Store:
    ms = _measurements()
    path = _write(tmp_path / "rules.jsonl", [*ms, ms[0]])  # the last line is a copy: one more row must not come
    store = Store(tmp_path / "s.duckdb")
    stats = pipeline.run([str(path)], store, pipeline.Options(batch_size=1))  # the copy lands in another batch
    assert (stats.new, stats.duplicates) == (3, 1)
    return store


def test_analyze_writes_each_layers_rule_as_the_records_say(ingested: Store) -> None:
    # every layer of measurement() was *written* "not_blocked": the rows come from the records only
    assert _rows(ingested) == _expected()
    assert ingested.count("rules") == 12


def test_ingesting_again_leaves_one_row_per_layer(ingested: Store, tmp_path: Path) -> None:
    again = pipeline.run([str(tmp_path / "rules.jsonl")], ingested, pipeline.Options(reread=True))
    assert again.new == 0
    assert ingested.count("rules") == 12


def test_the_aggregate_gives_the_latest_rule_per_domain_network_and_layer(ingested: Store) -> None:
    rows = aggregates.blocking_rules(ingested)
    assert [(r["probe_asn"], r["layer"], r["rule"], r["keyword"], r["overblocks"], r["measurement_count"],
             r["first_day"], r["last_day"]) for r in rows] == [
        ("AS12389", "dns", "domain_and_subdomains", None, None, 1, "2026-11-12", "2026-11-12"),
        ("AS12389", "dns_path", "domain_and_subdomains", None, None, 1, "2026-11-12", "2026-11-12"),
        ("AS12389", "tls", "ends_with", None, f"{SALT}{HOST}", 1, "2026-11-12", "2026-11-12"),
        ("AS12389", "http", "substring", "ock", f"{SALT}{HOST}", 1, "2026-11-12", "2026-11-12"),
        ("AS20661", "dns", "domain_and_subdomains", None, None, 2, "2026-11-10", "2026-11-11"),
        ("AS20661", "dns_path", "domain_and_subdomains", None, None, 2, "2026-11-10", "2026-11-11"),
        ("AS20661", "tls", "ends_with", None, f"{SALT}{HOST}", 2, "2026-11-10", "2026-11-11"),
        ("AS20661", "http", "substring", "ock", f"{SALT}{HOST}", 2, "2026-11-10", "2026-11-11")]
    assert {r["domain"] for r in rows} == {HOST} and {r["rules_seen"] for r in rows} == set(READ_RULES)
    # the filters every aggregate takes
    assert {r["probe_asn"] for r in aggregates.blocking_rules(ingested, Filters(probe_cc="TM"))} == {"AS20661"}
    assert aggregates.blocking_rules(ingested, Filters(since="2026-11-12"))[0]["measurement_count"] == 1
    assert aggregates.blocking_rules(ingested, Filters(domain="other.example")) == []
    assert len(aggregates.blocking_rules(ingested, limit=2)) == 2
    # the cut is made first on the groups alone (limit), then their rows: the same rows as without one
    for blocked_only in (True, False):
        every = aggregates.blocking_rules(ingested, limit=None, blocked_only=blocked_only)
        assert every == rows or not blocked_only
        for k in range(len(every) + 1):
            assert aggregates.blocking_rules(ingested, limit=k, blocked_only=blocked_only) == every[:k]
    assert {r["domain"] for r in aggregates.blocking_rules(ingested, Filters(mechanism="dns.injection"))} == {HOST}
    assert aggregates.AGGREGATES["blocking_rules"] is aggregates.blocking_rules


def test_a_network_with_two_names_is_named_as_per_network_names_it(ingested: Store) -> None:
    cur = ingested.cursor()
    cur.execute("UPDATE verdicts SET probe_network_name = CASE WHEN day = DATE '2026-11-10' THEN 'Alpha Telecom' "
                "ELSE 'Zeta Telecom' END WHERE probe_asn = 'AS20661'")
    cur.close()
    [network] = [n for n in aggregates.per_network(ingested) if n["probe_asn"] == "AS20661"]
    names = {r["probe_network_name"] for r in aggregates.blocking_rules(ingested) if r["probe_asn"] == "AS20661"}
    assert names == {network["probe_network_name"]} == {"Zeta Telecom"}


def test_a_rule_on_as0_is_on_a_network_not_known_and_a_named_network_is_named(ingested: Store) -> None:
    from tamperscope.analysis.report import rules_in_words
    from tamperscope.collector.config import Settings
    from tamperscope.collector.testing import running_app

    cur = ingested.cursor()
    cur.execute("UPDATE verdicts SET probe_asn = 'AS0' WHERE probe_asn = 'AS12389'")
    cur.execute("UPDATE verdicts SET probe_network_name = 'Turkmentelecom' WHERE probe_asn = 'AS20661'")
    cur.close()
    assert {(r["probe_asn"], r["probe_network_name"]) for r in rules_in_words(ingested, None, 20)} == {
        ("AS0", "(network not known)"), ("AS20661", "Turkmentelecom")}
    page = html_report(ingested, plotly_js="")
    part = page[page.index("<section id='rules'>"):page.index("<section id='changes'>")]
    assert part.count("<td class='name' data-label='network'>AS0 (network not known) (RU)</td>") == len(READ)
    assert part.count("<td class='name' data-label='network'>AS20661 Turkmentelecom (TM)</td>") == len(READ)
    assert "<th>other readings</th>" not in part  # every reading agrees: the column would be empty
    db = ingested.path
    ingested.close()
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as c:
        page = c.get(f"/domain/{HOST}").text
    part = page[page.index("What the censors' rules match"):page.index('id="hops"')]
    assert part.count('<span class="muted">(network not known)</span>') == len(READ)
    assert part.count('<span class="muted">Turkmentelecom</span>') == len(READ)


READ_RULES = [rule for rule, _, _ in READ.values()]


def test_a_changed_rule_shows_the_latest_and_every_reading(tmp_path: Path) -> None:
    """TM's resolver first lies for H and <salt>.H, later for H alone: the latest determined rule wins, an
    undetermined reading after it changes nothing, and rules_seen keeps the history."""
    first, later, unreadable = measurement(), measurement(), measurement()
    later["test_keys"]["queries"][2] = query(3, failure="dns_nxdomain_error", name=f"{SALT}.{HOST}")
    unreadable["test_keys"]["queries"][0] = query(1, LIE, name="x")  # the baseline is caught too: undetermined
    for m, when in ((first, "2026-11-01"), (later, "2026-11-05"), (unreadable, "2026-11-09")):
        m.update(probe_cc="TM", probe_asn="AS20661", measurement_start_time=f"{when} 10:00:00")
    store = Store(tmp_path / "s.duckdb")
    pipeline.run([str(_write(tmp_path / "in.jsonl", [first, later, unreadable]))], store)
    dns = [r for r in aggregates.blocking_rules(store) if r["layer"] == "dns"]
    assert [(r["rule"], r["measurement_count"], r["determined_count"], r["rules_seen"], r["last_day"])
            for r in dns] == [("exact", 3, 2, "domain_and_subdomains, exact", "2026-11-09")]
    page = html_report(store, plotly_js="")
    part = page[page.index("<section id='rules'>"):page.index("<section id='changes'>")]
    assert "<th>other readings</th>" in part and ">domain_and_subdomains, exact</td>" in part, part
    # a layer whose latest reading is "not_blocked" is left out unless asked for
    passed = measurement()
    passed["test_keys"]["tls_handshakes"] = [dict(h, failure=None) for h in passed["test_keys"]["tls_handshakes"]]
    passed.update(probe_cc="TM", probe_asn="AS20661", measurement_start_time="2026-11-10 10:00:00")
    pipeline.run([str(_write(tmp_path / "passed.jsonl", [passed]))], store)
    assert "tls" not in {r["layer"] for r in aggregates.blocking_rules(store)}
    tls = [r for r in aggregates.blocking_rules(store, blocked_only=False) if r["layer"] == "tls"]
    assert [(r["rule"], r["rules_seen"]) for r in tls] == [("not_blocked", "ends_with, not_blocked")]
    store.close()


def test_other_nettests_have_no_rule_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    pipeline.run([str(SAMPLES)], store)
    assert store.count("verdicts") == 50 and store.count("rules") == 0
    assert aggregates.blocking_rules(store) == []
    text = terminal_report(store)
    assert "Top blocked domains" in text and "Blocking rules" not in text  # no empty section
    assert "What the censors' rules match" not in html_report(store, plotly_js="")
    store.close()


def test_a_store_from_before_the_rules_table_gets_them_from_its_raw_lines(ingested: Store) -> None:
    path = ingested.path
    con = ingested.con
    con.execute("DROP TABLE rules")
    con.execute("DROP TABLE rules_backfill")
    con.execute("DROP TABLE transport_backfill")  # and v8's, which came after
    con.execute("DROP TABLE test_lists")  # and v11's
    con.execute("DROP TABLE categories")
    con.execute("ALTER TABLE verdicts DROP COLUMN transport")
    con.execute("DELETE FROM migrations WHERE version >= 7")
    ingested.close()
    old = duckdb.connect(str(path))
    assert st.schema_version(old) == 6
    old.close()

    store = Store(path)
    assert store.migrated == [7, 8, 9, 10, 11, 12] and store.backfilled == 3
    assert _rows(store) == _expected()
    assert store.cursor().execute("SELECT count(*) FROM rules_backfill").fetchone() == (0,)
    store.close()
    again = Store(path)
    assert again.migrated == [] and again.backfilled == 0 and again.count("rules") == 12
    again.close()


def test_a_backfill_cut_short_resumes_without_doubling_rows(ingested: Store) -> None:
    """A stopped backfill leaves its uids listed: the next open writes them again, not twice; a raw line
    that is gone gives no rows and is not asked for again."""
    path = ingested.path
    con = ingested.con
    uids = [r[0] for r in con.execute("SELECT DISTINCT measurement_uid FROM rules ORDER BY 1").fetchall()]
    con.execute("DELETE FROM rules WHERE measurement_uid = ?", [uids[0]])  # done before the stop: uids[1]
    con.execute("INSERT INTO rules_backfill VALUES (?), (?), ('no-such-uid')", [uids[0], uids[1]])
    ingested.close()
    store = Store(path)
    assert store.backfilled == 3
    assert _rows(store) == _expected()
    assert store.cursor().execute("SELECT count(*) FROM rules_backfill").fetchone() == (0,)
    store.close()


def test_hostile_rule_records_give_clean_rows_or_none() -> None:
    matcher = default_matcher()
    long_name = "a" * 300 + HOST
    m = measurement()
    dns = m["test_keys"]["x_blocking_rules"]["layers"]["dns"]["probes"]
    dns[3]["name"] = long_name  # the prefixed name, caught: an overblock too long to be a host name
    m["test_keys"]["queries"][3] = query(4, LIE, name=long_name)
    rows = {r[1]: r for r in rule_rows("u", m, matcher)}
    assert rows["dns"][2:] == ("ends_with", None, None) and len(long_name) > NAME_MAX
    for garbage in ("x", [], {"layers": "x"}, {"layers": {"dns": {"probes": "x"}, "tls": [1], "http": None}},
                    {"layers": {"dns": {"probes": [1, "x", None, {"kind": 5, "name": ["x"]}]}}}):
        bad = copy.deepcopy(measurement())
        bad["test_keys"]["x_blocking_rules"] = garbage
        assert all(r[2] == "undetermined" for r in rule_rows("u", bad, matcher)), garbage
    assert rule_rows("u", {"test_name": "blocking_rules", "test_keys": "x"}, matcher) == []


HOSTILE = f"<script>alert(1)</script>\x1b[31m{HOST}"


def _hostile() -> dict[str, Any]:
    """A measurement whose DNS censor also catches its prefixed name, which is markup and a terminal escape."""
    m = measurement()
    m["test_keys"]["x_blocking_rules"]["layers"]["dns"]["probes"][3]["name"] = HOSTILE  # the prefixed probe
    m["test_keys"]["queries"][3] = query(4, LIE, name=HOSTILE)
    m.update(probe_cc="TM", probe_asn="AS20661", measurement_start_time="2026-11-10 10:00:00")
    return m


def test_the_report_shows_the_rules_and_escapes_what_the_field_wrote(tmp_path: Path) -> None:
    hostile = HOSTILE
    m = _hostile()
    store = Store(tmp_path / "s.duckdb")
    pipeline.run([str(_write(tmp_path / "in.jsonl", [m]))], store)
    rows = aggregates.blocking_rules(store)
    assert [(r["layer"], r["rule"], r["overblocks"]) for r in rows][0] == ("dns", "ends_with", hostile)

    text = terminal_report(store)
    section = text[text.index("Blocking rules"):]
    assert "ends_with" in section and "substring" in section and "ock" in section and "AS20661" in section
    assert "\x1b" not in text and "?[31m" in section  # no terminal escapes from the field

    page = html_report(store, plotly_js="")
    part = page[page.index("<section id='rules'><h2>What the censors' rules match"):page.index("<section id='changes'>")]
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in part
    assert f"DNS lookups naming any name ending in &#x27;{HOST}&#x27; are blocked" in part
    assert "HTTP requests naming any name containing &#x27;ock&#x27; are blocked" in part

    doc = json_report(store)
    assert {(r["layer"], r["rule"]) for r in doc["rules"]} == {
        ("dns", "ends_with"), ("tls", "ends_with"), ("http", "substring")}
    assert json.loads(json.dumps(doc))["rules"][0]["overblocks"] == hostile  # the store's value, unescaped
    store.close()


def test_the_parquet_export_has_the_rules_by_day_and_country(ingested: Store, tmp_path: Path) -> None:
    out = tmp_path / "pq"
    counts = ingested.export_parquet(out)
    assert counts["rules"] == 12
    assert sorted(str(p.relative_to(out / "rules").parent) for p in (out / "rules").rglob("*.parquet")) == [
        "day=2026-11-10/probe_cc=TM", "day=2026-11-11/probe_cc=TM", "day=2026-11-12/probe_cc=RU"]
    table = pq.read_table(out / "rules")
    assert sorted(table.column("rule").to_pylist()) == sorted(READ_RULES * 3)
    assert sorted(set(table.column("layer").to_pylist())) == ["dns", "dns_path", "http", "tls"]
    ingested.close()


def test_the_collector_serves_rules_and_its_admin_keeps_them_in_step(tmp_path: Path) -> None:
    """Submitted blocking_rules measurements get their rules; /aggregation/blocking_rules serves them as JSON
    and CSV; a re-analysis writes them again from the raw bytes; a deletion removes them with the rest."""
    from tamperscope.collector import samples
    from tamperscope.collector.app import Settings
    from tamperscope.collector.testing import running_app

    token = "rules-admin-token-for-tests"
    envelope = {k: v for k, v in samples.measurement("http.rst", url="https://x.example/").items()
                if k not in ("test_keys", "input", "test_name", "test_version")}
    ms = [{**envelope, **m, "report_id": f"r{i}"} for i, m in enumerate(_measurements())]
    hostile = _hostile()
    hostile.update(probe_asn="AS64500", probe_cc="KZ")
    with running_app(Settings(db_path=tmp_path / "c.duckdb", announce=False, submit_rate=0, read_rate=0,
                              admin_token=token)) as c:
        assert c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(m) for m in ms)).json()["stored"] == 3
        # the explorer's pages of a site and of a network
        page = c.get(f"/domain/{HOST}").text
        part = page[page.index("What the censors' rules match"):page.index('id="hops"')]
        assert f"DNS lookups naming {HOST} or any of its subdomains are blocked" in part
        assert part.count("AS20661") >= 3 and part.count("AS12389") >= 3 and f"{SALT}{HOST}" in part
        net = c.get("/network/AS20661").text
        part = net[net.index("What the censors' rules match"):net.index('id="hops"')]
        assert "substring" in part and "AS12389" not in part  # the network's own rules only
        assert c.post("/api/v1/submit", content=orjson.dumps({**envelope, **hostile})).json()["stored"] == 1
        page = c.get("/network/AS64500").text
        assert "ends_with" in page and "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
        r = c.get("/api/v1/aggregation/blocking_rules", params={"probe_cc": "TM"})
        assert r.status_code == 200
        assert [(x["layer"], x["rule"], x["keyword"], x["measurement_count"]) for x in r.json()["result"]] == [
            ("dns", "domain_and_subdomains", None, 2), ("dns_path", "domain_and_subdomains", None, 2),
            ("tls", "ends_with", None, 2), ("http", "substring", "ock", 2)]
        text = c.get("/api/v1/aggregation/blocking_rules", params={"format": "csv"}).text
        assert len(text.strip().splitlines()) == 1 + 4 + 4 + 3 and "substring" in text  # KZ: three layers

        con = c.collector.reader.cursor()
        uid = con.execute("SELECT measurement_uid FROM verdicts WHERE probe_cc = 'RU'").fetchone()[0]

        def corrupt() -> None:  # a row gone and one wrong, as after a rule change
            c.collector.store.con.execute("DELETE FROM rules WHERE measurement_uid = ? AND layer = 'dns'", [uid])
            c.collector.store.con.execute("UPDATE rules SET rule = 'exact' WHERE measurement_uid = ?", [uid])

        c.run(lambda: c.collector.ingestor.call(corrupt))
        auth = {"Authorization": f"Bearer {token}"}
        r = c.post("/api/v1/admin/reanalyse", headers=auth, json={"filters": {"probe_cc": "RU"}})
        assert r.status_code == 200 and r.json()["reanalysed"] == 1
        assert con.execute("SELECT layer, rule FROM rules WHERE measurement_uid = ? ORDER BY layer",
                           [uid]).fetchall() == [("dns", "domain_and_subdomains"), ("dns_path", "domain_and_subdomains"),
                                                 ("http", "substring"), ("tls", "ends_with")]
        assert c.post(f"/api/v1/admin/delete/{uid}", headers=auth, json={"reason": "test"}).status_code == 200
        assert con.execute("SELECT count(*) FROM rules WHERE measurement_uid = ?", [uid]).fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM rules").fetchone() == (8 + 3,)  # TM and KZ kept
