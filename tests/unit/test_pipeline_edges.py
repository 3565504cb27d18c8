"""The pipeline's edges: networks and host names at their limits, siteless tests, batches cut by bytes, times with
an offset, an inclusive --until and an overlong test name, each as a user of analyze would see it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tamperscope.analysis import pipeline
from tamperscope.analysis.pipeline import Selection
from tamperscope.analysis.reader import Line
from tamperscope.analysis.store import Store
from tests.unit.test_analysis_streams import _jsonl, _samples


def test_a_network_number_of_thirty_three_bits_is_no_network() -> None:
    """2**32 is one past the last AS number: a probe_asn of AS4294967296 would be shown and grouped as a network
    that cannot exist, where OONI's AS0 (unknown) is what the store must keep."""
    assert pipeline._asn("AS4294967296") == "AS0"
    assert pipeline._asn("4294967296") == "AS0"
    assert pipeline._asn("AS4294967295") == "AS4294967295"  # the last one is a network
    assert pipeline.envelope(dict(_samples(1)[0], probe_asn="AS4294967296")).probe_asn == "AS0"


def test_a_host_longer_than_a_dns_name_can_be_is_no_site() -> None:
    """A DNS name holds at most 253 characters: a 308-character host would be listed among the sites of the
    reports and the explorer as if it could have been measured."""
    host = ".".join(["a" * 60] * 5) + ".com"  # labels of 60, 308 characters in all
    assert len(host) == 308
    assert pipeline.domain_of("web_connectivity", f"https://{host}/") is None
    assert pipeline.domain_of("dnscheck", host) is None
    assert pipeline.domain_of("web_connectivity", "https://" + ".".join(["a" * 60] * 4) + ".com/") is not None  # 247


def test_a_tools_server_and_an_apps_address_name_no_site() -> None:
    """A tool's or an app's test names one of its servers, not a site: wireguard://198.19.3.40:51820 or WhatsApp
    Web's address would otherwise be listed among the measured sites instead of under the tool or the app."""
    assert pipeline.domain_of("wireguard", "wireguard://198.19.3.40:51820") is None
    assert pipeline.domain_of("whatsapp", "https://web.whatsapp.com/") is None
    assert pipeline.domain_of("telegram", "https://web.telegram.org/") is None
    assert pipeline.domain_of("web_connectivity", "https://web.whatsapp.com/") == "web.whatsapp.com"


def test_batches_are_cut_by_bytes_as_well_as_by_records() -> None:
    """A batch holds about BATCH_BYTES of input whatever the record count: twenty 4 MiB measurements in one batch
    would hold 80 MiB per worker, and memory would grow with the size of the measurements."""
    big = b"x" * (4 << 20)  # one object, referenced by every line
    lines = [Line("big.jsonl", i + 1, big) for i in range(20)]
    batches = list(pipeline._batches(lines, 512, 16 << 20))
    assert [len(b) for b in batches] == [4, 4, 4, 4, 4]
    assert [item for b in batches for item in b] == lines


def test_a_start_time_with_an_offset_is_stored_in_utc() -> None:
    """measurement_start_time with an offset names a moment: 12:00 at +03:00 is 09:00 UTC, and a store that kept
    12:00 would put the measurement three hours late (and on the wrong day near midnight)."""
    m = _samples(1)[0]
    assert pipeline.envelope(dict(m, measurement_start_time="2024-01-31T12:00:00+03:00")).start == dt.datetime(
        2024, 1, 31, 9, 0)
    late = pipeline.envelope(dict(m, measurement_start_time="2024-01-31T01:00:00+03:00")).start
    assert (late, late.date()) == (dt.datetime(2024, 1, 30, 22, 0), dt.date(2024, 1, 30))


def test_an_offset_start_reaches_the_store_in_utc(tmp_path: Path) -> None:
    """What the store holds (and what reports and the explorer show) is the UTC time, not the probe's local one."""
    store = Store(tmp_path / "s.duckdb")
    m = dict(_samples(1)[0], measurement_start_time="2024-01-31T12:00:00+03:00")
    [uid] = pipeline.ingest(store, [_jsonl([m])])
    assert uid is not None and uid.startswith("20240131090000_")
    row = store.cursor().execute("SELECT measurement_start_time, day FROM measurements").fetchone()
    assert row == (dt.datetime(2024, 1, 31, 9, 0), dt.date(2024, 1, 31))
    store.close()


def test_until_admits_the_measurements_of_its_own_day() -> None:
    """--until DAY is inclusive, as --since is: a measurement taken on DAY itself must be analysed, not counted
    as outside the selection."""
    m = _samples(1)[0]
    on_the_day = pipeline.envelope(dict(m, measurement_start_time="2024-02-03 23:59:59"))
    after = pipeline.envelope(dict(m, measurement_start_time="2024-02-04 00:00:00"))
    until = Selection(until=dt.date(2024, 2, 3))
    assert until.admits(on_the_day)
    assert not until.admits(after)
    assert Selection(since=dt.date(2024, 2, 3), until=dt.date(2024, 2, 3)).admits(on_the_day)


def test_an_overlong_test_name_is_bad_input_and_nothing_is_stored(tmp_path: Path) -> None:
    """A test name of 5,000 characters names no test: analyze counts the record as an invalid value and stores
    nothing, instead of a measurement whose test name fills the reports' tables and the uid."""
    path = tmp_path / "long.jsonl"
    path.write_bytes(_jsonl([dict(_samples(1)[0], test_name="web_connectivity" + "x" * 4984)]))
    store = Store(tmp_path / "s.duckdb")
    stats = pipeline.run([str(path)], store)
    assert (stats.accepted, stats.new, stats.rejected, stats.by_reason) == (0, 0, 1, {"invalid_value": 1})
    assert store.count("measurements") == store.count("verdicts") == 0
    reason = store.cursor().execute("SELECT reason, detail FROM rejections").fetchone()
    assert reason == ("invalid_value", "empty or overlong test_name")
    store.close()
