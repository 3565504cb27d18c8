"""Edges of the collector's read-side queries: the bounds of a time window, offsets in times, paging through
measurements that share a start time, either spelling of an international name, and parameters refused in words."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tamperscope.collector import queries, samples
from tamperscope.collector.queries import (
    MAX_LIMIT,
    MeasurementQuery,
    QueryError,
    Reader,
    known_values,
    list_measurements,
    ooni_row,
    ooni_slice,
)
from tamperscope.collector.testing import SyncClient, unlimited_app

TIE = "2026-05-10 10:00:00"
MIDNIGHT = "2026-05-11 00:00:00"
TIED_HOSTS = [f"tie{i}.example" for i in range(5)]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    sites = [samples.measurement(url=f"https://{host}/", start=TIE, report_id="20260510T100000Z_tie")
             for host in TIED_HOSTS]
    sites.append(samples.measurement("dns.poison", url="https://midnight.example/", start=MIDNIGHT,
                                     report_id="20260511T000000Z_midnight"))
    sites.append(samples.measurement(url="https://яндекс.рф/", start="2026-05-09 08:00:00"))
    with unlimited_app(tmp_path_factory.mktemp("queries") / "q.duckdb", sites) as c:
        c.get("/api/v1/health")  # settles: every submission is in the tables
        yield c


@pytest.fixture(scope="module")
def reader(client: SyncClient) -> Reader:
    return client.collector.reader  # type: ignore[no-any-return]


def _domains(reader: Reader, **params: object) -> list[str]:
    rows, _ = list_measurements(reader, MeasurementQuery(limit=MAX_LIMIT, **params))  # type: ignore[arg-type]
    return [row["domain"] for row in rows]


def test_since_is_inclusive_and_until_exclusive(reader: Reader) -> None:
    """Breaks if either bound of the window were flipped: a measurement at the bound itself."""
    assert "midnight.example" in _domains(reader, since="2026-05-11")
    assert "midnight.example" in _domains(reader, since="2026-05-11T00:00:00Z")
    assert "midnight.example" not in _domains(reader, until="2026-05-11")
    assert "midnight.example" not in _domains(reader, until="2026-05-11T00:00:00Z")
    assert _domains(reader, since="2026-05-11", until="2026-05-11T00:00:01Z") == ["midnight.example"]


def test_a_time_with_an_offset_is_read_in_utc(reader: Reader) -> None:
    """Breaks if the offset were dropped instead of converted: 02:00+02:00 is midnight UTC."""
    assert "midnight.example" in _domains(reader, since="2026-05-11T02:00:00+02:00")
    assert "midnight.example" not in _domains(reader, until="2026-05-11T02:00:00+02:00")
    assert _domains(reader, since="2026-05-10T23:59:59-00:00", until="2026-05-10T20:00:01-04:00") == [
        "midnight.example"]


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_paging_one_by_one_through_a_tie_gives_the_listing_s_order(reader: Reader, order: str) -> None:
    """Breaks if the page's keys were sorted differently from its rows (on a tie of start times: the uid)."""
    whole, total = list_measurements(reader, MeasurementQuery(order=order, limit=MAX_LIMIT))
    assert total == len(whole) == len(TIED_HOSTS) + 2
    paged = []
    for offset in range(len(whole)):
        rows, _ = list_measurements(reader, MeasurementQuery(order=order, limit=1, offset=offset))
        paged += [row["measurement_uid"] for row in rows]
    assert paged == [row["measurement_uid"] for row in whole]
    keys = [(row["measurement_start_time"], row["measurement_uid"]) for row in whole]
    assert keys == sorted(keys, reverse=order == "desc")


def test_a_report_id_selects_only_its_measurements(reader: Reader) -> None:
    """Breaks if the report_id filter (a semi-join on the measurements table) were ignored."""
    assert _domains(reader, report_id="20260511T000000Z_midnight") == ["midnight.example"]
    assert sorted(_domains(reader, report_id="20260510T100000Z_tie")) == TIED_HOSTS
    assert _domains(reader, report_id="20990101T000000Z_none") == []


def test_either_spelling_of_an_international_name_finds_it(reader: Reader) -> None:
    """Breaks if the domain filter matched only the spelling given, not its IDNA or Unicode form."""
    found = _domains(reader, domain="xn--d1acpjx3f.xn--p1ai")
    assert len(found) == 1 and found == _domains(reader, domain="яндекс.рф")


def test_a_confirmed_outcome_is_an_anomaly_in_ooni_s_row() -> None:
    """Breaks if OONI's anomaly flag left out confirmed measurements (OONI: confirmed implies anomaly)."""
    row = ooni_row({"measurement_uid": "u1", "outcome": "confirmed"}, "https://c.example")
    assert (row["anomaly"], row["confirmed"], row["failure"]) == (True, True, False)
    assert row["measurement_url"] == "https://c.example/api/v1/measurement/u1"
    row = ooni_row({"measurement_uid": "u2", "outcome": "ok"})
    assert (row["anomaly"], row["confirmed"], row["failure"]) == (False, False, False)


@pytest.mark.parametrize(("params", "says"), [
    ({"limit": 0}, "limit must be between 1 and"),
    ({"limit": MAX_LIMIT + 1}, "limit must be between 1 and"),
    ({"offset": -1}, "offset must not be negative"),
    ({"order": "random"}, "order must be asc or desc"),
    ({"probe_cc": "I"}, "two-letter country codes"),
    ({"probe_cc": "ITA"}, "two-letter country codes"),
    ({"probe_asn": "AS12345678901"}, "network numbers"),
    ({"test_name": "t" * 65}, "test names"),
    ({"domain": "a" * 254}, "host names"),
    ({"domain": "bad\x85.example"}, "host names"),
    ({"domain": "bad\x7f.example"}, "host names"),
])
def test_a_parameter_out_of_bounds_is_refused_in_words(params: dict[str, object], says: str) -> None:
    """Breaks if a bound were off by one or a C1 control character taken in a host name."""
    with pytest.raises(QueryError, match=says):
        MeasurementQuery(**params).checked()  # type: ignore[arg-type]


def test_values_at_the_bounds_are_taken_and_normalised() -> None:
    """The other side of each bound: breaks if these were refused or not written as the store writes them."""
    q = MeasurementQuery(limit=MAX_LIMIT, offset=0, probe_cc="it", probe_asn="1234567890", test_name="t" * 64,
                         domain="a" * 253)
    assert q.checked() is q
    assert q.checked_values() == {"probe_cc": "IT", "probe_asn": "AS1234567890", "test_name": "t" * 64,
                                  "domain": "a" * 253}
    assert MeasurementQuery(probe_asn="as12389").checked_values()["probe_asn"] == "AS12389"


def test_several_values_are_deduplicated() -> None:
    """Breaks if RU,ru were kept twice (a finding's links and the aggregation's parameters repeat it)."""
    s = ooni_slice(probe_cc="RU,ru, RU", probe_asn="12389,AS12389", domain="A.example,a.example.")
    assert (s.probe_cc, s.probe_asn, s.domain) == (("RU",), ("AS12389",), ("a.example",))


def test_known_values_takes_only_its_own_columns(reader: Reader) -> None:
    """Breaks if a column name reached the SQL unchecked."""
    with pytest.raises(ValueError):
        known_values(reader, "probe_ip FROM measurements; --")
    assert known_values(reader, "probe_cc") == ["IT"]


def test_the_hop_memo_forgets_the_oldest_past_its_bound(client: SyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Breaks if the memo of located hops grew without bound (one entry per anomaly ever shown, per process)."""
    monkeypatch.setattr(queries, "HOP_MEMO", 2)
    parsed: list[bytes] = []
    real = queries.hop_scan.hop_in
    monkeypatch.setattr(queries.hop_scan, "hop_in", lambda data: parsed.append(data) or real(data))
    reader = Reader(client.collector.store)
    try:
        uids = [row["measurement_uid"] for row in list_measurements(reader, MeasurementQuery(limit=3))[0]]
        assert len(reader.hops_of(uids)) == 3 and len(parsed) == 3
        assert reader.hops_of(uids) == dict.fromkeys(uids)  # none of these has a hop
        assert len(parsed) == 4  # only the one forgotten is parsed again
    finally:
        reader.close()


def test_the_frame_cache_forgets_the_oldest_past_its_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Breaks if the cache of decompressed frames grew without bound (64 MiB by default)."""
    with unlimited_app(tmp_path / "f.duckdb") as c:
        for i in range(6):  # one store transaction, so one frame, each
            c.submit(samples.measurement(url=f"https://frame{i}.example/", start=f"2026-05-0{i + 1} 00:00:00"))
            c.run(c.collector.ingestor.settled)
        frames = c.collector.reader.rows(
            "SELECT raw_frame_offset AS at, any_value(raw_frame_size) AS size, any_value(measurement_uid) AS uid "
            "FROM measurements GROUP BY 1 ORDER BY 1")
        largest = max(f["size"] for f in frames)
        assert len(frames) == 6 and sum(f["size"] for f in frames) > 4 * largest  # the bound below is crossed
        monkeypatch.setattr(queries, "FRAME_CACHE_BYTES", 4 * largest)
        reads: list[int] = []
        real = queries.read_frame
        monkeypatch.setattr(queries, "read_frame", lambda root, segment, offset, *rest: reads.append(offset) or real(
            root, segment, offset, *rest))
        reader = Reader(c.collector.store)
        try:
            assert len(reader.raw_many([f["uid"] for f in frames])) == 6 and len(reads) == 6
            assert reader.raw(frames[-1]["uid"]) is not None and len(reads) == 6  # the newest: still cached
            assert reader.raw(frames[0]["uid"]) is not None and reads[6:] == [frames[0]["at"]]  # the oldest: read again
        finally:
            reader.close()
