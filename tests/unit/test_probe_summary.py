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
