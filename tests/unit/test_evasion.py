"""The evasion nettest's verdict (model/evasion.py), its choice of address and page comparison, its CLI
checks, its analysis verdict and its explorer view. The network part is in tests/lab/test_evasion.py."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest

from tamperscope.analysis.verdicts import VERDICTS, verdict_for
from tamperscope.explorer.evidence import evasion as evasion_view
from tamperscope.model.evasion import (
    BY_NAME,
    OUTCOMES,
    STRATEGIES,
    attempts_from_records,
    evasion_verdict,
    judge,
    matches_control,
    strategies_for,
)
from tamperscope.nettests.evasion import _parse, check_input, choose_address

from .test_probe_cli import cli

CONTROL = {"dns": {"addrs": ["198.19.0.5"], "failure": None},
           "http_request": {"status_code": 200, "body_length": 1000, "title": "Example", "failure": None}}


def attempt(strategy: str, outcome: str, *, step: str | None = None, failure: str | None = None,
            fingerprints: list[str] | None = None) -> dict[str, Any]:
    return {"strategy": strategy, "layer": "tls", "transaction_id": 1, "shaped": None, "failure": failure,
            "step": step, "status_code": 200 if outcome in ("ok", "different") else None,
            "fingerprints": fingerprints or [], "matches_control": outcome == "ok", "outcome": outcome}


def tk(*attempts: dict[str, Any], control: Any = CONTROL) -> dict[str, Any]:
    return {"control": control, "x_evasion": {"address": "198.19.0.5:443", "address_source": "dns",
                                              "attempts": list(attempts), "residual_waits": []}}


RESET = {"step": "tls", "failure": "connection_reset"}


def test_a_strategy_that_gets_through_proves_dpi_and_names_its_gap() -> None:
    keys = evasion_verdict(tk(attempt("tls-segments", "ok"), attempt("tls-records", "blocked", **RESET),
                              attempt("plain", "blocked", **RESET)))
    assert (keys["blocking"], keys["accessible"], keys["x_mechanism"], keys["x_confidence"], keys["x_status"]) == \
        ("http-failure", False, "tls.rst", 0.95, "anomaly")
    assert keys["x_evaded"] == ["tls-segments"]
    assert keys["x_equipment"]["traits"] == {"reassembles_tcp": False, "reassembles_tls_records": True}
    assert keys["x_equipment"]["evaded_by"] == [f"tls-segments: {BY_NAME['tls-segments'].trait}"]
    assert keys["x_equipment"]["coped_with"] == ["tls-records: follows a ClientHello over several TLS records"]
    assert keys["x_evidence"] == ["test_keys.x_evasion.attempts[2]", "test_keys.x_evasion.attempts[0]"]


def test_a_reset_nothing_gets_past_keeps_its_usual_confidence() -> None:
    keys = evasion_verdict(tk(attempt("tls-segments", "blocked", **RESET), attempt("plain", "blocked", **RESET)))
    assert (keys["x_mechanism"], keys["x_confidence"], keys["x_evaded"]) == ("tls.rst", 0.9, [])
    assert keys["x_equipment"]["traits"] == {"reassembles_tcp": True}


@pytest.mark.parametrize("step,failure,mechanism", [
    ("tls", "generic_timeout_error", "tls.drop"), ("tcp", "connection_refused", "tcp.rst"),
    ("tcp", "generic_timeout_error", "tcp.drop"), ("http", "connection_reset", "http.rst"),
    ("http", "generic_timeout_error", "http.drop"),
])
def test_the_plain_failure_names_the_mechanism(step: str, failure: str, mechanism: str) -> None:
    keys = evasion_verdict(tk(attempt("plain", "blocked", step=step, failure=failure)))
    assert keys["x_mechanism"] == mechanism and keys["blocking"] in ("http-failure", "tcp_ip")


def test_blockpages_by_fingerprint_and_by_difference() -> None:
    fp = evasion_verdict(tk(attempt("host-name-case", "blocked", fingerprints=["x"]),
                            attempt("plain", "blocked", fingerprints=["x"])))
    assert (fp["x_mechanism"], fp["blocking"], fp["x_evaded"]) == ("http.blockpage", "http-diff", [])
    diff = evasion_verdict(tk(attempt("http-segments", "ok"), attempt("host-value-case", "different"),
                              attempt("plain", "different")))
    assert (diff["x_mechanism"], diff["x_evaded"]) == ("http.blockpage", ["http-segments"])
    assert diff["x_equipment"]["traits"] == {"reassembles_tcp": False, "host_value_case_insensitive": True}
    # a page unlike the control's that nothing re-framed gets past is not a censor we can name
    alone = evasion_verdict(tk(attempt("http-segments", "different"), attempt("plain", "different")))
    assert (alone["x_mechanism"], alone["blocking"], alone["x_status"]) == ("none", None, "anomaly")
    assert "x_equipment" not in alone


def test_not_blocked_evades_nothing() -> None:
    keys = evasion_verdict(tk(attempt("tls-segments", "ok"), attempt("plain", "ok")))
    assert (keys["blocking"], keys["accessible"], keys["x_mechanism"], keys["x_evaded"]) == (False, True, "none", [])
    assert "x_equipment" not in keys


def test_a_site_down_for_the_control_too_is_not_blocked() -> None:
    down = {**CONTROL, "http_request": {"failure": "connection_refused"}}
    keys = evasion_verdict(tk(attempt("plain", "blocked", **RESET), control=down))
    assert (keys["blocking"], keys["accessible"], keys["x_mechanism"]) == (None, False, "none")


def test_untried_and_unshaped_attempts_say_nothing_about_the_box() -> None:
    keys = evasion_verdict(tk(attempt("tls-segments", "residual"), attempt("tls-records", "unshaped"),
                              attempt("plain", "blocked", **RESET)))
    assert keys["x_evaded"] == [] and "x_equipment" not in keys
    assert (keys["x_mechanism"], keys["x_confidence"]) == ("tls.rst", 0.9)


def test_no_plain_attempt_is_a_failed_measurement() -> None:
    for broken in ({}, {"x_evasion": None}, {"x_evasion": {"attempts": "x"}}, tk(attempt("tls-segments", "ok"))):
        keys = evasion_verdict(broken)
        assert (keys["blocking"], keys["x_status"], keys["x_mechanism"]) == (None, "failure", "none")


def test_hostile_values_never_raise() -> None:
    rng = random.Random(7)
    junk: list[Any] = [None, True, 3, -1.5, "x" * 500, [], {}, ["a"], {"a": 1}, "plain", "ok", "tls", "tcp"]
    base = tk(attempt("tls-segments", "ok"), attempt("plain", "blocked", **RESET))
    keys_of = list(base["x_evasion"]["attempts"][0])
    for _ in range(3000):
        m = copy.deepcopy(base)
        target = m["x_evasion"]["attempts"][rng.randrange(2)]
        target[rng.choice(keys_of)] = rng.choice(junk)
        if rng.random() < 0.2:
            m["control"] = rng.choice(junk)
        keys = evasion_verdict(m)
        assert keys["x_mechanism"] in ("none", "tls.rst", "tls.drop", "tcp.rst", "tcp.drop", "http.rst", "http.drop",
                                       "http.blockpage")
        assert all(isinstance(s, str) for s in keys["x_evaded"])
        view = evasion_view(m)
        assert view is not None and all(isinstance(r["what"], str) for r in view["attempts"])


def test_catalogue_and_selection() -> None:
    assert {s.scheme for s in STRATEGIES} == {"http", "https"} and len(BY_NAME) == len(STRATEGIES)
    assert [s.name for s in strategies_for("https", ["tls-records", "http-segments"])] == ["tls-records"]
    assert [s.name for s in strategies_for("https", ["sni-case", "tls-segments", "sni-case", "x"])] == \
        ["sni-case", "tls-segments"]
    assert [s.name for s in strategies_for("https")] == [s.name for s in STRATEGIES if s.scheme == "https"]
    assert all(s.scheme == "http" for s in strategies_for("http"))
    assert "residual" in OUTCOMES and "ok" in OUTCOMES


def test_address_choice() -> None:
    assert choose_address(["198.19.0.9", "198.19.0.5"], CONTROL) == ("198.19.0.5", "dns")
    assert choose_address(["127.0.0.1"], CONTROL) == ("198.19.0.5", "control")  # our resolver lied
    assert choose_address(["198.19.0.9"], None) == ("198.19.0.9", "dns")
    assert choose_address([], {"dns": {"addrs": "x"}}) == (None, "none")
    assert choose_address([], {"dns": {"addrs": [1, None, "198.19.0.7"]}}) == ("198.19.0.7", "control")


def test_page_comparison() -> None:
    assert matches_control(200, b"x" * 900, CONTROL) is True
    assert matches_control(200, b"x" * 100, CONTROL) is False  # neither the length nor the title
    assert matches_control(200, b"<title>Example</title>", CONTROL) is True
    assert matches_control(403, b"x" * 1000, CONTROL) is False
    assert matches_control(200, b"x", None) is None
    assert matches_control(200, b"x", {"http_request": {"failure": "x"}}) is None


def test_input_checks() -> None:
    check_input("https://a.example/")
    assert _parse("https://B\u00fccher.Example:8443/x") == ("https", "xn--bcher-kva.example", 8443)
    assert _parse("http://a.example/") == ("http", "a.example", 80)
    for bad in ("ftp://a.example/", "a.example", "http://:80/", "http://a.example:99999/"):
        with pytest.raises(ValueError):
            check_input(bad)


def _records(*attempts: tuple[int, str | None, str | None, int, str]) -> dict[str, list[dict[str, Any]]]:
    """Raw records of attempts (transaction_id, connect failure, TLS failure, status, body)."""
    out: dict[str, list[dict[str, Any]]] = {"tcp_connect": [], "tls_handshakes": [], "requests": []}
    for tid, connect, tls, status, body in attempts:
        out["tcp_connect"].append({"transaction_id": tid, "ip": "198.19.0.5", "port": 443,
                                   "status": {"failure": connect, "success": connect is None}})
        if connect is None:
            out["tls_handshakes"].append({"transaction_id": tid, "failure": tls})
        if connect is None and tls is None:
            out["requests"].append({"transaction_id": tid, "failure": None,
                                    "response": {"code": status, "body": body, "headers": {}}})
    return out


def test_analysis_judges_the_attempts_again_from_their_records() -> None:
    """The outcomes the probe wrote are not read: here they all claim 'ok', the records say otherwise."""
    assert "evasion" in VERDICTS
    page = "<title>Example</title>" + "x" * 978
    records = _records((1, None, None, 200, page), (2, None, "connection_reset", 0, ""),
                       (3, None, None, 200, "<title>Blocked</title>"), (4, "generic_timeout_error", None, 0, ""))
    claimed = [{**attempt(name, "ok"), "transaction_id": tid}
               for tid, name in ((1, "tls-records"), (2, "tls-segments"), (3, "sni-case"), (4, "plain"))]
    m = {"test_name": "evasion", "input": "https://a.example/", "test_keys": {**tk(*claimed), **records}}
    judged = attempts_from_records(m["test_keys"], lambda body, headers: ["fp-x"] if "Blocked" in body else [])
    assert [(a["strategy"], a["outcome"], a["step"]) for a in judged] == [
        ("tls-records", "ok", None), ("tls-segments", "blocked", "tls"), ("sni-case", "blocked", None),
        ("plain", "blocked", "tcp")]
    assert judged[2]["fingerprints"] == ["fp-x"]
    v = verdict_for(m)
    assert (v.mechanism, v.blocking, v.status) == ("tcp.drop", "tcp_ip", "anomaly")
    # attempts never made keep what the probe said of them; records of another attempt are not borrowed
    gone = {**m, "test_keys": {**m["test_keys"], **tk({**attempt("tls-records", "residual"), "transaction_id": 1},
                                                       {**attempt("plain", "ok"), "transaction_id": 9})}}
    assert [a["outcome"] for a in attempts_from_records(gone["test_keys"], None)] == ["residual", None]
    assert verdict_for(gone).status == "failure"


def test_judge() -> None:
    assert judge("connection_reset", "tls", None, b"", {}, CONTROL, None)["outcome"] == "blocked"
    assert judge(None, "http", 200, b"x" * 1000, {}, CONTROL, None)["outcome"] == "ok"
    assert judge(None, "http", 200, b"x" * 10, {}, CONTROL, None)["outcome"] == "different"
    assert judge(None, "http", 200, b"x" * 1000, {}, CONTROL, lambda b, h: ["fp"])["outcome"] == "blocked"
    assert judge(None, "http", 200, b"x", {}, None, None)["outcome"] == "ok"  # nothing to compare with


@pytest.mark.parametrize("args,needle", [
    (["run", "evasion", "-i", "https://a.example/", "--strategies", "nope"], "unknown strategy 'nope'"),
    (["run", "evasion", "-i", "https://a.example/", "--strategies", ","], "--strategies"),
    (["run", "web_connectivity", "-i", "https://a.example/", "--strategies", "tls-records"],
     "--strategies is for the evasion nettest"),
    (["run", "evasion", "-i", "a.example"], "evasion needs an http(s) URL"),
])
def test_cli_refuses_bad_strategies_in_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    res = cli(*args, "-o", "out.jsonl", "--yes", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr and res.stderr.strip().count("\n") == 0, res.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_the_docs_list_every_strategy_as_the_catalogue_says() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "nettests.md").read_text()
    for s in STRATEGIES:
        row = next((line for line in text.splitlines() if line.startswith(f"| `{s.name}` |")), None)
        assert row is not None, s.name
        assert f"| {s.scheme} |" in row and s.trait.split(" before")[0].split(" from")[0] in row, row
