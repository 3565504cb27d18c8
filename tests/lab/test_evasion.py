"""The evasion nettest against DPI boxes that differ only in how much of a ClientHello they reassemble.

The same SNI and Host rules, with `tls_reassembly` none, segments and full: the strategies that get through
must be exactly those the box's parser cannot follow, the censor's ground-truth log must show it never acted
on them, and the verdict must name the box's traits. A profile with residual blocking shows the nettest
waiting it out instead of blaming the strategies after the first one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import run_nettest

pytestmark = pytest.mark.lab
PROFILES = Path(__file__).parent / "profiles"
NAME = "www.evade-me.example"


def evasion(tmp_path: Path, *urls: str, extra: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    return run_nettest(tmp_path / "e.jsonl", "evasion", urls, extra)


def outcomes(m: dict[str, Any]) -> dict[str, str]:
    return {a["strategy"]: a["outcome"] for a in m["test_keys"]["x_evasion"]["attempts"]}


def test_a_box_that_reads_one_segment(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory(str(PROFILES / "evade-none.toml"))
    got = evasion(tmp_path, f"https://{NAME}/", f"http://{NAME}/", "https://example.com/")
    tls = got[f"https://{NAME}/"]
    assert outcomes(tls) == {"tls-segments": "ok", "tls-records": "ok", "tls-records-segments": "ok",
                             "sni-case": "blocked", "plain": "blocked"}
    tk = tls["test_keys"]
    assert (tk["blocking"], tk["accessible"], tk["x_mechanism"], tk["x_confidence"]) == \
        ("http-failure", False, "tls.rst", 0.95)
    assert tk["x_evaded"] == ["tls-segments", "tls-records", "tls-records-segments"]
    assert tk["x_equipment"]["traits"] == {"reassembles_tcp": False, "reassembles_tls_records": False,
                                           "reassembles_records_across_segments": False,
                                           "sni_case_insensitive": True}
    # the censor acted on the plain and the mixed-case hellos only (its parser lower-cases the SNI)
    assert len(lab.logged("sni", NAME)) == 2
    # each attempt is its own connection, linked to its records by transaction_id and tag
    attempts = tk["x_evasion"]["attempts"]
    ids = [a["transaction_id"] for a in attempts]
    assert len(set(ids)) == len(ids)
    for a in attempts:
        hs = [h for h in tk["tls_handshakes"] if h["transaction_id"] == a["transaction_id"]]
        assert len(hs) == 1 and hs[0]["tags"] == [f"evasion={a['strategy']}"]
        assert (hs[0]["failure"] is None) == (a["outcome"] == "ok")
    assert {a["strategy"]: a["shaped"] for a in attempts} == {
        "tls-segments": 2, "tls-records": 1, "tls-records-segments": 2, "sni-case": None, "plain": None}
    seg = [h for h in tk["tls_handshakes"] if h["tags"] == ["evasion=tls-segments"]][0]
    assert seg["server_name"] == NAME and seg["x_verified"] is not False

    http = got[f"http://{NAME}/"]
    assert outcomes(http) == {"http-segments": "ok", "host-name-case": "different", "host-value-case": "different",
                              "host-trailing-dot": "different", "plain": "different"}
    tk = http["test_keys"]
    assert (tk["x_mechanism"], tk["blocking"], tk["x_evaded"]) == ("http.blockpage", "http-diff", ["http-segments"])
    assert tk["x_equipment"]["traits"]["reassembles_tcp"] is False
    assert tk["x_equipment"]["traits"]["strips_trailing_dot"] is True
    names = {e["name"] for e in lab.logged("host")}
    assert names == {NAME, NAME + "."}

    # the analysis, judging each attempt again from its records alone, reaches the probe's outcomes and verdict
    from tamperscope.analysis.verdicts import default_matcher, verdict_for
    from tamperscope.model.evasion import attempts_from_records

    for m in got.values():
        again = attempts_from_records(m["test_keys"], default_matcher())
        assert [(a["strategy"], a["outcome"]) for a in again] == list(outcomes(m).items())
        v = verdict_for(m)
        assert (v.mechanism, v.blocking, v.confidence) == \
            (m["test_keys"]["x_mechanism"], m["test_keys"]["blocking"], m["test_keys"]["x_confidence"])

    clean = got["https://example.com/"]["test_keys"]
    assert (clean["blocking"], clean["x_mechanism"], clean["x_evaded"]) == (False, "none", [])
    assert set(outcomes(got["https://example.com/"]).values()) == {"ok"}
    assert "x_equipment" not in clean


def test_a_box_that_reassembles_segments_but_reads_one_record(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory(str(PROFILES / "evade-segments.toml"))
    tls = evasion(tmp_path, f"https://{NAME}/")[f"https://{NAME}/"]
    assert outcomes(tls) == {"tls-segments": "blocked", "tls-records": "ok", "tls-records-segments": "ok",
                             "sni-case": "blocked", "plain": "blocked"}
    traits = tls["test_keys"]["x_equipment"]["traits"]
    assert traits["reassembles_tcp"] is True and traits["reassembles_tls_records"] is False
    assert len(lab.logged("sni", NAME)) == 3


def test_a_box_that_reassembles_everything(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory(str(PROFILES / "evade-full.toml"))
    tls = evasion(tmp_path, f"https://{NAME}/")[f"https://{NAME}/"]
    assert set(outcomes(tls).values()) == {"blocked"}
    tk = tls["test_keys"]
    assert (tk["x_mechanism"], tk["x_evaded"]) == ("tls.rst", [])
    assert tk["x_confidence"] < 0.95  # nothing got through: a reset, with no proof that a DPI read the name
    assert set(tk["x_equipment"]["traits"].values()) == {True}
    assert len(lab.logged("sni", NAME)) == 5
    # --strategies: only those asked for, and the plain request
    only = evasion(tmp_path, f"https://{NAME}/", extra=("--strategies", "tls-records"))[f"https://{NAME}/"]
    assert list(outcomes(only)) == ["tls-records", "plain"]


def test_residual_blocking_is_waited_out(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """sni-case triggers the censor, whose residual blocking would then fail tls-records, which gets through
    this box: the nettest waits the address out first, also when an earlier run left it held."""
    lab = lab_factory(str(PROFILES / "evade-residual.toml"))
    extra = ("--strategies", "sni-case,tls-records", "--timeout", "120")
    tls = evasion(tmp_path, f"https://{NAME}/", extra=extra)[f"https://{NAME}/"]
    x = tls["test_keys"]["x_evasion"]
    assert outcomes(tls) == {"sni-case": "blocked", "tls-records": "ok", "plain": "blocked"}
    assert len(x["residual_waits"]) == 1 and 2.0 <= x["residual_waits"][0] <= 10.0
    checks = [c for c in tls["test_keys"]["tcp_connect"] if c.get("tags") == ["evasion=residual-check"]]
    assert any(c["status"]["failure"] for c in checks) and any(c["status"]["success"] for c in checks)
    assert tls["test_keys"]["x_evaded"] == ["tls-records"]
    # at once again: the plain attempt just left the address held, and the first thing done is to wait
    again = evasion(tmp_path, f"https://{NAME}/", extra=extra)[f"https://{NAME}/"]
    assert outcomes(again) == {"sni-case": "blocked", "tls-records": "ok", "plain": "blocked"}
    assert len(again["test_keys"]["x_evasion"]["residual_waits"]) == 2
    assert len(lab.logged("sni", NAME)) == 4
    # with less time than the residual blocking lasts, the later attempts are not tried, and say so
    time.sleep(4)  # the hold the last run left has ended
    short = evasion(tmp_path, f"https://{NAME}/", extra=("--strategies", "sni-case,tls-records",
                                                         "--timeout", "7"))[f"https://{NAME}/"]
    assert outcomes(short) == {"sni-case": "blocked", "tls-records": "residual", "plain": "residual"}
    assert (short["test_keys"]["x_status"], short["test_keys"]["blocking"]) == ("failure", None)
