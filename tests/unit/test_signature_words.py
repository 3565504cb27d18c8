"""A signature key said in words (model.location.signature_words), and the HTML report's table of them."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from tamperscope.analysis import pipeline
from tamperscope.analysis.report import html_report, terminal_report
from tamperscope.analysis.store import Store
from tamperscope.model.location import signature, signature_key, signature_words

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"


@pytest.mark.parametrize("key, words", [
    ("tcp/RA/ttl128/win0/ipid30000", "TCP RST+ACK, sent with TTL ≤ 128, window 0, IP-ID 30000"),
    ("udp/ttl64/ipid0", "UDP, sent with TTL ≤ 64, IP-ID 0"),
    ("tcp/FA/ttl64/win502/ipid*/fp:ru.rkn+tr.btk",
     "TCP FIN+ACK, sent with TTL ≤ 64, window 502, IP-ID varies, blockpage ru.rkn, tr.btk"),
    ("tcp/R/ttlNone/ipid*", "TCP RST, IP-ID varies"),  # no initial TTL known: not said
    # Citizen Lab's and Censored Planet's ids hold "/": QA, the words said "blockpage cp" and "blockpage cl"
    ("udp/ttl64/ipid45289/fp:cp/f_gen_ru_3~2", "UDP, sent with TTL ≤ 64, IP-ID 45289, blockpage cp/f_gen_ru_3~2"),
    ("tcp/PA/ttl64/win0/ipid*/fp:cl/isp_ru_mts_block+cp/f_gen_ru_20_satellite",
     "TCP PSH+ACK, sent with TTL ≤ 64, window 0, IP-ID varies, blockpage cl/isp_ru_mts_block, "
     "cp/f_gen_ru_20_satellite"),
])
def test_a_key_is_said_part_by_part(key: str, words: str) -> None:
    assert signature_words(key) == words


def test_the_words_say_what_signature_key_wrote() -> None:
    forged = [{"kind": "tcp", "flags": "RA", "ip_id": 7, "ttl": 60, "initial_ttl": 64, "window": 0}] * 2
    assert signature_words(signature_key(signature(forged))) == "TCP RST+ACK, sent with TTL ≤ 64, window 0, IP-ID 7"


@pytest.mark.parametrize("key", ["none", "", "<script>alert(1)</script>", "evil/RA/ttl1", "tcp/" + "x" * 500,
                                 "ttl64/ipid0", '{"vendor": "x"}'])
def test_what_is_no_key_of_ours_says_nothing(key: str) -> None:
    assert signature_words(key) == ""


def test_unknown_parts_are_left_out() -> None:
    assert signature_words("tcp/RA/ttl64/<b>/win9999999999999/ipid1") == "TCP RST+ACK, sent with TTL ≤ 64, IP-ID 1"


def _store(tmp_path: Path, tks: list[dict[str, object]]) -> Store:
    m = orjson.loads((SAMPLES / "httpBlockingConnectionReset" / "measurement.json").read_bytes())
    lines = [orjson.dumps({**m, "report_id": f"r{i}", "test_keys": {**m["test_keys"], **tk}})
             for i, tk in enumerate(tks)]
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines))
    s = Store(tmp_path / "s.duckdb")
    pipeline.run([str(tmp_path / "in.jsonl")], s)
    return s


def _equipment_table(page: str) -> tuple[list[str], list[list[str]]]:
    section = page[page.index("<section id='equipment'>"):]
    section = section[:section.index("</section>")]
    heads = re.findall(r"<th[^>]*>([^<]*)</th>", section)
    rows = [[re.sub(r"<wbr>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", section.split("<tbody>")[1])]
    return heads, rows


def test_the_report_says_each_signature_in_words_and_shows_no_column_of_blanks(tmp_path: Path) -> None:
    box = {"key": "tcp/RA/ttl128/win0/ipid30000", "kind": "tcp"}
    s = _store(tmp_path, [{"x_signature": box}, {"x_signature": box},
                          {"x_signature": {"key": "udp/ttl64/ipid11"}}, {"x_signature": {"key": "udp/ttl64/ipid12"}}])
    heads, rows = _equipment_table(html_report(s, plotly_js=""))
    text = terminal_report(s)
    s.close()
    assert "equipment" not in heads  # no measurement named one
    table = text[text.index("Equipment signatures"):].splitlines()
    assert table[1].split() == ["signature", "the", "packet", "measurements", "mechanisms", "countries", "networks"]
    assert "tcp/RA/ttl128/win0/ipid30000  TCP RST+ACK, sent with TTL ≤ 128, window 0, IP-ID 30000" in text
    assert "UDP, sent with TTL ≤ 64, IP-ID varies (2 IP-IDs)" in text
    assert heads[:2] == ["signature", "the packet, in words"] and heads[-1] == "seen"
    said = {r[0]: r[1] for r in rows}
    assert said["tcp/RA/ttl128/win0/ipid30000"] == "TCP RST+ACK, sent with TTL ≤ 128, window 0, IP-ID 30000"
    # two injectors' answers whose IP-ID differs: one row, the words say how many IP-IDs it folds
    assert said["udp/ttl64/ipid*"] == "UDP, sent with TTL ≤ 64, IP-ID varies (2 IP-IDs)"
    assert all(r[-1] == "2024-02-12" for r in rows), rows  # first and last seen the same day: said once


def test_the_equipment_column_is_there_when_a_measurement_names_it(tmp_path: Path) -> None:
    s = _store(tmp_path, [{"x_signature": {"key": "tcp/RA/ttl64/ipid1"}},
                          {"x_equipment": {"kind": "tls-interception", "name": "Evil &amp; Co"}}])
    heads, rows = _equipment_table(html_report(s, plotly_js=""))
    text = terminal_report(s)
    s.close()
    assert heads[2] == "equipment"
    assert text[text.index("Equipment signatures"):].splitlines()[1].split()[:4] == [
        "signature", "the", "packet", "equipment"]
    assert sorted(r[2] for r in rows) == ["", "Evil &amp;amp; Co"]  # escaped as field data
