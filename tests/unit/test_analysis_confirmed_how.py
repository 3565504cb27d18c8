"""The reports say how their confirmed measurements were confirmed: by a blockpage fingerprint, or by a repeat."""

from __future__ import annotations

from pathlib import Path

import orjson

from tamperscope.analysis import aggregates, pipeline
from tamperscope.analysis.report import html_report, json_report, terminal_report
from tamperscope.analysis.store import Store
from tamperscope.collector import samples


def test_the_reports_split_the_confirmed_by_how(tmp_path: Path) -> None:
    lines = [
        # the same reset twice from one network (a --recheck): both confirmed by the repeat
        samples.measurement("http.rst", url="https://rst.example/", start="2024-03-01 10:00:00"),
        samples.measurement("http.rst", url="https://rst.example/", start="2024-03-01 10:02:00",
                            report_id="20240301T100200Z_webconnectivity_IT_AS30722_n1_again"),
        # a known blockpage, once: confirmed by its fingerprint
        samples.measurement("http.blockpage", url="http://page.example/", start="2024-03-01 11:00:00"),
        # a reset seen once: an anomaly only
        samples.measurement("tls.rst", url="https://once.example/", start="2024-03-01 12:00:00"),
        samples.measurement("ok", url="https://fine.example/", start="2024-03-01 13:00:00"),
    ]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(orjson.dumps(m) for m in lines))
    store = Store(tmp_path / "s.duckdb")
    pipeline.run([str(src)], store)
    t = aggregates.totals(store)
    assert (t["confirmed_count"], t["fingerprint_confirmed_count"], t["anomaly_count"]) == (3, 1, 4), t
    how = "(1 by a blockpage fingerprint, 2 by a repeat: the same anomaly again from the same network)"
    assert f"Outcomes: 3 confirmed {how}, 1 anomaly (unconfirmed)" in terminal_report(store)
    assert f"<strong>3 are confirmed</strong> {how}." in html_report(store)
    assert json_report(store)["totals"]["fingerprint_confirmed_count"] == 1
    # with nothing confirmed, nothing is said of how
    only = tmp_path / "once.jsonl"
    only.write_bytes(orjson.dumps(lines[3]))
    other = Store(tmp_path / "o.duckdb")
    pipeline.run([str(only)], other)
    assert "Outcomes: 0 confirmed, 1 anomaly" in terminal_report(other)
    assert "<strong>0 are confirmed</strong>. " in html_report(other)
