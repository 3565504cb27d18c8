"""`--summary`: the table by mechanism, then, for a run over a test list with categories, by Citizen Lab category."""

from __future__ import annotations

from typing import Any

from tamperscope.probe.command import summary_table
from tamperscope.probe.engine import RunStats


def _m(url: str, mechanism: str | None, blocking: Any) -> dict[str, Any]:
    return {"input": url, "test_name": "web_connectivity",
            "test_keys": {"x_mechanism": mechanism, "blocking": blocking,
                          "accessible": None if blocking is None else blocking is False}}


MEASURED = [
    _m("https://a.example/", "dns.poison", "dns"),
    _m("https://b.example/", "tcp.rst", "tcp_ip"),
    _m("https://c.example/", None, False),
    _m("https://d.example/", "http.blockpage", "http-diff"),
    _m("https://e.example/", None, False),
    _m("https://f.example/", None, None),        # failed: not blocked
]
CATEGORIES = {"https://a.example/": "NEWS", "https://b.example/": "NEWS", "https://c.example/": "NEWS",
              "https://d.example/": "HUMR", "https://e.example/": "XYZ"}  # f: given with -i, in no list


def _stats() -> RunStats:
    stats = RunStats(total=len(MEASURED))
    for m in MEASURED:
        stats.add(m)
    return stats


def test_a_run_over_a_categorised_list_is_summed_up_by_category_too() -> None:
    text = summary_table(_stats(), CATEGORIES)
    mechanisms, categories = text.split("\n\n")
    assert mechanisms.splitlines()[-1].split() == ["total", "6", "blocked", "3,", "could", "not", "tell", "1"]
    # the measurement that could not tell is its own row, not one of the "none" (QA: failures read "none 4")
    assert [line.split()[:2] for line in mechanisms.splitlines()[2:-1]][-2:] == [["could", "not"], ["none", "2"]]
    assert "could not tell        1  https://f.example/" in mechanisms
    rows = [line.rsplit(None, 2) for line in categories.splitlines()[2:]]
    # most blocked first; a code Citizen Lab does not name is shown as it is; the inputs in no list last
    assert rows == [["News Media (NEWS)", "3", "2"], ["Human Rights Issues (HUMR)", "1", "1"], ["XYZ", "1", "0"],
                    ["Not in a test list", "1", "0"]]
    assert categories.splitlines()[0].split() == ["category", "measured", "blocked"]


def test_no_category_table_without_categories() -> None:
    assert "category" not in summary_table(_stats())
    assert "category" not in summary_table(_stats(), {"https://elsewhere.example/": "NEWS"})


def test_a_domain_measured_through_several_vantages_is_one_site_blocked_if_any_found_it_blocked() -> None:
    """remote measures each domain through each vantage: the category table counts sites, not measurements, and a
    site is blocked when any vantage's measurement says so, whichever came last."""
    stats = RunStats(total=5)
    for m in [_m("a.example", "dns.injection", "dns"), _m("a.example", None, False),
              _m("b.example", None, False), _m("b.example", None, False), _m("c.example", None, None)]:
        stats.add(m)
    assert stats.blocked_by_input == {"a.example": True, "b.example": False, "c.example": False}
    rows = [line.rsplit(None, 2) for line in summary_table(stats, {"a.example": "NEWS", "b.example": "NEWS",
                                                                   "c.example": "HUMR"}).split("\n\n")[1].splitlines()[2:]]
    assert rows == [["News Media (NEWS)", "2", "1"], ["Human Rights Issues (HUMR)", "1", "0"]]


def test_measurements_the_control_helper_did_not_answer_are_said(capsys: Any) -> None:
    """QA: with the helper overloaded, dozens of a run's measurements had no control and nothing said so. Those the
    helper did not answer are counted by failure and said in one line; a run without a helper (`--helper ''`,
    control_disabled) is no such loss."""
    from tamperscope.probe.command import said_no_control

    stats = RunStats()
    for i, failure in enumerate(["http_request_failed: control helper busy"] * 2 + ["connection_refused",
                                                                                    "control_disabled", None]):
        stats.add({"input": f"https://{i}.example/", "test_name": "web_connectivity",
                   "test_keys": {"x_mechanism": "none", "blocking": False, "accessible": True,
                                 "control_failure": failure}})
    assert stats.no_control == {"http_request_failed: control helper busy": 2, "connection_refused": 1}
    said_no_control(stats, None)
    err = capsys.readouterr().err
    assert err.startswith("tamperscope: 3 measurement(s) got no answer from the control helper "
                          "(2 http_request_failed: control helper busy, 1 connection_refused)"), err
    said_no_control(RunStats(), None)
    assert capsys.readouterr().err == ""


def test_a_dns_finding_without_a_control_points_at_no_control() -> None:
    """QA: a measurement whose control never came pointed its poisoning at test_keys.control.dns."""
    import orjson

    from tamperscope.analysis.verdicts import verdict_for

    path = (__import__("pathlib").Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples"
            / "generated" / "dnsBlockingBOGON" / "measurement.json")
    m = orjson.loads(path.read_bytes())
    m["test_keys"]["control"] = None
    m["test_keys"]["control_failure"] = "http_request_failed: control helper busy"
    v = verdict_for(m)
    assert v.mechanism == "dns.poison" and v.evidence, v
    assert not any(e.startswith("test_keys.control.") for e in v.evidence), v.evidence
