"""OONI's summary keys on data from its classic analysis (web_connectivity 0.5.2x): dns_consistency and the
*_match fields come from the records tagged ``classic`` alone (the system resolver's lookups and the fetches
from their addresses), as OONI's probe wrote them on every one of its 50 QA samples."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tamperscope.model.summary import classic_records, summary_keys

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
NAMES = sorted(p.name for p in SAMPLES.iterdir() if (p / "measurement.json").is_file())
KEYS = ("dns_consistency", "body_length_match", "body_proportion", "status_code_match", "headers_match",
        "title_match")


def _sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / name / "measurement.json").read_text(encoding="utf-8"))
    return data


def _blanked(m: dict[str, Any]) -> dict[str, Any]:
    m = copy.deepcopy(m)
    for key in KEYS:
        m["test_keys"].pop(key, None)
    return m


def _untagged(m: dict[str, Any]) -> dict[str, Any]:
    m = copy.deepcopy(m)
    for key in ("queries", "tcp_connect", "requests"):
        for r in m["test_keys"].get(key) or []:
            r["tags"] = [t for t in r.get("tags") or [] if t != "classic"]
    return m


def test_there_are_fifty_samples() -> None:
    assert len(NAMES) == 50


@pytest.mark.parametrize("name", NAMES)
def test_every_sample_agrees_with_the_keys_oonis_probe_wrote(name: str) -> None:
    """All six keys, re-derived from the raw records (OONI's own values removed first), are OONI's."""
    m = _sample(name)
    got = summary_keys(_blanked(m))
    want = {k: m["test_keys"].get(k) for k in KEYS}
    assert {k: got[k] for k in KEYS} == pytest.approx(want), name


def test_the_tag_chooses_the_system_resolvers_answer() -> None:
    """NXDOMAIN from the system resolver, the right address from the UDP resolver: with the tags (OONI's classic
    rule) the lookup that v0.4 would have made decides, inconsistent; without them, every cleartext lookup counts."""
    m = _blanked(_sample("dnsBlockingNXDOMAIN"))
    assert summary_keys(m)["dns_consistency"] == "inconsistent"
    assert summary_keys(_untagged(m))["dns_consistency"] == "consistent"


def test_only_a_classic_fetch_is_compared_with_the_control() -> None:
    """The system resolver gave a bogon and its fetch failed; the fetch from the control's address got the page:
    OONI compares nothing (every *_match null), where every fetch counting would compare that page."""
    m = _blanked(_sample("dnsBlockingBOGON"))
    got = summary_keys(m)
    assert [got[k] for k in KEYS] == ["inconsistent", None, 0, None, None, None]
    plain = summary_keys(_untagged(m))
    assert plain["body_length_match"] is True and plain["status_code_match"] is True


def test_headers_and_titles_are_compared_even_when_one_side_has_none() -> None:
    """A response without headers against a control with some: no uncommon name in common, headers_match False
    (the rule before classic left it null); a large file with no title on either side: title_match True."""
    got = summary_keys(_blanked(_sample("httpDiffWithConsistentDNS")))
    assert got["headers_match"] is False and got["title_match"] is False
    assert summary_keys(_untagged(_blanked(_sample("httpDiffWithConsistentDNS"))))["headers_match"] is None
    large = summary_keys(_blanked(_sample("largeFileWithHTTP")))
    assert large["title_match"] is True and large["body_length_match"] is None


def test_no_control_leaves_every_key_unknown() -> None:
    """The control failed: no DNS and no page to compare with, so OONI writes nothing, whatever TLS vouched for."""
    got = summary_keys(_blanked(_sample("controlFailureWithSuccessfulHTTPSWebsite")))
    assert [got[k] for k in KEYS] == [None, None, 0, None, None, None]


@pytest.mark.parametrize("tags", ["classic", {"classic": 1}, None, 7, ["Classic"], [b"classic"]])
def test_a_tag_that_is_not_the_string_in_a_list_does_not_count(tags: Any) -> None:
    m = _untagged(_sample("dnsBlockingNXDOMAIN"))
    m["test_keys"]["queries"][0]["tags"] = tags
    assert classic_records(m) is None
    assert summary_keys(m)["dns_consistency"] == "consistent"


def test_hostile_records_around_the_tag() -> None:
    """Tags beside junk, records that are no objects, lists that are no lists: read, never raised on."""
    m = _untagged(_sample("dnsBlockingNXDOMAIN"))
    i = next(i for i, q in enumerate(m["test_keys"]["queries"]) if q["engine"] == "getaddrinfo")
    m["test_keys"]["queries"][i]["tags"] = [None, 5, {"a": 1}, "classic"]
    m["test_keys"]["queries"].append("not a record")
    m["test_keys"]["tcp_connect"] = {"not": "a list"}
    got = classic_records(m)
    assert got is not None and got["queries"] == frozenset({i}) and got["tcp_connect"] == frozenset()
    assert summary_keys(m)["dns_consistency"] == "inconsistent"
    assert classic_records({"test_keys": "x"}) is None and classic_records({}) is None


def _with_classic_request(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A blanked sample and its classic request (the one the keys compare)."""
    m = _blanked(_sample(name))
    request = next(r for r in m["test_keys"]["requests"] if "classic" in (r.get("tags") or []))
    return m, request


def test_a_failed_lookup_without_the_controls_dns_says_nothing() -> None:
    """NXDOMAIN from the system resolver and no DNS answer from the control to compare it with: neither consistent
    (an expected failure needs the control's) nor inconsistent (OONI counts it unexplained): null."""
    m = _blanked(_sample("dnsBlockingNXDOMAIN"))
    del m["test_keys"]["control"]["dns"]
    assert summary_keys(m)["dns_consistency"] is None


def test_a_second_classic_lookup_failing_unlike_the_control_is_inconsistent() -> None:
    """The system resolver's addresses are the control's, but another of its lookups failed where the control
    resolved: one unexpected failure makes the whole inconsistent, as OONI's classic rule has it."""
    m = _blanked(_sample("successWithHTTP"))
    queries = m["test_keys"]["queries"]
    gai = next(q for q in queries if "classic" in (q.get("tags") or []))
    assert summary_keys(m)["dns_consistency"] == "consistent"
    queries.append({**copy.deepcopy(gai), "failure": "dns_server_failure", "answers": None})
    assert summary_keys(m)["dns_consistency"] == "inconsistent"


def test_a_control_page_without_a_status_compares_no_headers_or_title() -> None:
    """The control fetched without failing yet gave no status: there is nothing to compare headers or titles
    with (OONI's classic diff needs a status from the control)."""
    m, _ = _with_classic_request("successWithHTTP")
    m["test_keys"]["control"]["http_request"]["status_code"] = 0
    got = summary_keys(m)
    assert got["headers_match"] is None and got["title_match"] is None


def test_only_common_headers_on_both_sides_do_not_match() -> None:
    """Date and Content-Type alone on both sides: no uncommon header name in common, so headers_match is false
    (v0.4 called the same set of names a match; OONI's classic rule does not)."""
    m, request = _with_classic_request("successWithHTTP")
    common = {"Date": "Thu, 24 Aug 2023 14:35:29 GMT", "Content-Type": "text/html"}
    request["response"]["headers"] = dict(common)
    request["response"]["headers_list"] = [[k, v] for k, v in common.items()]
    m["test_keys"]["control"]["http_request"]["headers"] = dict(common)
    assert summary_keys(m)["headers_match"] is False


def test_a_status_against_a_controls_error_page_is_not_compared() -> None:
    """200 here, 404 for the control: v0.5 compares a status only against a control's 2xx (v0.4 would say false)."""
    m, request = _with_classic_request("successWithHTTP")
    assert request["response"]["code"] == 200
    m["test_keys"]["control"]["http_request"]["status_code"] = 404
    assert summary_keys(m)["status_code_match"] is None
    request["response"]["code"] = 404
    assert summary_keys(m)["status_code_match"] is True
