"""Agreement with OONI through the analysis path: files in, `tamperscope analyze`, verdicts out.

The 50 OONI samples go in as they are (their stored verdicts included: the
analysis must ignore them), through the reader, the pipeline with the whole
blockpage fingerprint database, the store and the ``--jsonl`` output, and we
compare with OONI's own ``blocking``/``accessible``: v0.5's rules, ≥ 48/50.
The v0.4 half reshapes the same samples the way Web Connectivity v0.4 recorded
them (the reshaping lives with the model's agreement test) and checks v0.4's rules.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tamperscope.analysis import pipeline
from tamperscope.analysis.store import Store
from tamperscope.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_ooni_agreement import EXPLAINED, V04_EXPECTED, as_v04  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
MIN_AGREEMENT = 48


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name / "measurement.json").read_text(encoding="utf-8"))
    return data


def _names() -> list[str]:
    return sorted(p.name for p in SAMPLES.iterdir() if (p / "measurement.json").is_file())


def _blocking(value: str | None) -> object:
    return {"false": False, "true": True}.get(value, value) if value is not None else None


@pytest.mark.serial  # what it prints belongs in CI's log, which a parallel worker's output never reaches
def test_v05_agreement_through_analyze_and_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "verdicts.jsonl"
    db = tmp_path / "s.duckdb"
    assert main(["analyze", str(SAMPLES), "--db", str(db), "--jsonl", str(out), "--quiet"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 50
    # Several scenarios share an input URL: find each line's scenario through the file it came from.
    store = Store(db)
    source = dict(store.cursor().execute("SELECT measurement_uid, source FROM measurements").fetchall())
    store.close()
    disagreements = {}
    for line in lines:
        name = Path(source[line["measurement_uid"]]).parent.name
        tk = _load(name)["test_keys"]
        expected = (tk["blocking"], tk["accessible"])
        got = (line["blocking"], line["accessible"])
        if got != expected:
            disagreements[name] = (expected, got, line["x_mechanism"])
    agree = len(lines) - len(disagreements)
    with capsys.disabled():
        print(f"\nanalysis path (v0.5 rules, whole fingerprint database): agreement with OONI {agree}/{len(lines)}")
        for name, (expected, got, mechanism) in sorted(disagreements.items()):
            print(f"  * {name}: OONI {expected}, ours {got} ({mechanism}): explained in test_ooni_agreement.py")
    assert agree >= MIN_AGREEMENT
    assert set(disagreements) <= set(EXPLAINED), disagreements


def test_stored_verdicts_in_the_input_are_ignored(tmp_path: Path) -> None:
    honest, forged = [], []
    for name in _names():
        m = _load(name)
        honest.append(orjson.dumps(m))
        lie = copy.deepcopy(m)
        lie["report_id"] = "forged"  # another measurement (another uid), same records
        lie["test_keys"].update(blocking="tcp_ip", accessible=True, dns_consistency="inconsistent",
                                x_mechanism="tls.mitm", x_confidence=1.0)
        forged.append(orjson.dumps(lie))
    (tmp_path / "honest.jsonl").write_bytes(b"\n".join(honest))
    (tmp_path / "forged.jsonl").write_bytes(b"\n".join(forged))
    store = Store(tmp_path / "s.duckdb")
    pipeline.run([str(tmp_path)], store)
    pairs = store.cursor().execute("""
        SELECT m.report_id = 'forged' AS lie, m.source, v.blocking, v.accessible, v.mechanism
        FROM verdicts v JOIN measurements m USING (measurement_uid) ORDER BY m.source, lie""").fetchall()
    store.close()
    honest_rows = [p[2:] for p in pairs if not p[0]]
    forged_rows = [p[2:] for p in pairs if p[0]]
    assert len(honest_rows) == len(forged_rows) == 50
    assert sorted(map(str, honest_rows)) == sorted(map(str, forged_rows))


def test_v04_rules_through_the_analysis_path(tmp_path: Path) -> None:
    names = sorted(V04_EXPECTED)
    path = tmp_path / "v04.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(dict(as_v04(_load(n)), report_id=n)) for n in names))
    store = Store(tmp_path / "s.duckdb")
    stats = pipeline.run([str(path)], store)
    assert stats.new == len(names)
    got = {r[0]: (_blocking(r[1]), r[2], r[3]) for r in store.cursor().execute(
        """SELECT m.report_id, v.blocking, v.accessible, v.mechanism
           FROM verdicts v JOIN measurements m USING (measurement_uid)""").fetchall()}
    store.close()
    wrong = {n: (V04_EXPECTED[n], got[n]) for n in names if got[n] != V04_EXPECTED[n]}
    assert not wrong
    # historical data is mostly v0.4: the analysis really applied the v0.4 rules
    assert got["httpDiffWithInconsistentDNS"][0] == "dns"
    assert got["dnsHijackingToProxyWithHTTPURL"][0] == "dns"
