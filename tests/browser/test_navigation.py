"""Finding things, in chromium: the search form's filters narrow the list (and the count is the JSON
twin's), and the evidence of a blocked site is at most three clicks from the home page."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.harness import Explorer, Guard, open_page

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def shown_count(page: Any) -> int:
    text = page.locator("#result-count").inner_text()
    found = re.match(r"([\d\u202f]+) measurement", text)
    assert found, text
    return int(found.group(1).replace("\u202f", ""))


def twin(page: Any) -> Any:
    """The JSON twin the page links to, fetched from the same server."""
    href = page.locator("link[rel=alternate][type='application/json']").get_attribute("href")
    assert href and href.startswith("/search.json"), href
    response = page.request.get(href)
    assert response.status == 200, href
    return response.json()


def rows(page: Any) -> Any:
    return page.locator("table.measurements tbody tr")


def column(page: Any, index: int) -> list[str]:
    return [t.strip() for t in rows(page).locator(f"td:nth-child({index})").all_inner_texts()]


def test_search_filters_narrow_the_list(guarded: tuple[Any, Guard], explorer: Explorer) -> None:
    page, _ = guarded
    open_page(page, "/search")
    everything = shown_count(page)
    assert everything == explorer.total
    # A country: picking it submits the form (explorer.js), and only that country's rows remain.
    with page.expect_navigation():
        page.locator("#filters select[name=probe_cc]").select_option("TR")
    assert "probe_cc=TR" in page.url
    assert page.locator("#filters select[name=probe_cc]").input_value() == "TR"
    tr = shown_count(page)
    assert tr == explorer.by_country["TR"] and 0 < tr < everything
    assert rows(page).count() == min(tr, 50)
    networks = column(page, 3)
    assert networks and all(re.search(r"\bTR\b", n) and "AS9121" in n for n in networks), networks
    data = twin(page)
    assert data["metadata"]["count"] == tr and len(data["results"]) == rows(page).count()
    assert {r["probe_cc"] for r in data["results"]} == {"TR"}
    # Only anomalies, on top of the country.
    with page.expect_navigation():
        page.locator("#filters select[name=outcome]").select_option("anomaly")
    anomalies = shown_count(page)
    assert 0 < anomalies < tr
    badges = rows(page).locator("span.badge").all_inner_texts()
    assert len(badges) == anomalies and set(badges) <= {"anomaly", "confirmed"}, badges
    data = twin(page)
    assert data["metadata"]["count"] == anomalies and all(r["anomaly"] for r in data["results"])
    assert {r["probe_cc"] for r in data["results"]} == {"TR"}
    # A domain typed into the form, submitted with the button.
    page.locator("#filters input[name=domain]").fill("chat.example.io")
    with page.expect_navigation():
        page.locator("#filters button[type=submit]").click()
    narrowed = shown_count(page)
    assert 0 < narrowed <= anomalies
    inputs = column(page, 2)
    assert len(inputs) == narrowed and all(i.startswith("chat.example.io") for i in inputs), inputs
    data = twin(page)
    assert data["metadata"]["count"] == narrowed
    assert all(r["probe_cc"] == "TR" and r["anomaly"] and "chat.example.io" in r["input"] for r in data["results"])
    # Clearing the filters brings everything back.
    with page.expect_navigation():
        page.get_by_role("link", name="Clear").click()
    assert shown_count(page) == everything


def test_search_form_rejects_bad_dates_visibly(guarded: tuple[Any, Guard]) -> None:
    page, guard = guarded
    open_page(page, "/search?since=yesterday", status=400)
    assert page.locator("p.problem").is_visible() and "since" in page.locator("p.problem").inner_text()
    assert shown_count(page) == 0
    guard.console_errors[:] = [m for m in guard.console_errors if "400" not in m]


# What must be on the page for each kind of blocking: the records a person checks.
EVIDENCE = {
    "dns": "#dns code.unexpected, #dns td.fail:not(:empty)",
    "tcp": "#tcp td.fail",
    "tls": "#tls .fail",
    "http": "#fingerprints li, #http .fail, #http table.diff",
    "throttle": "#throttle pre",
}


def assert_evidence_shown(page: Any, domain: str) -> str:
    assert re.search(r"/m/[^/]+$", page.url), page.url
    assert page.locator("#verdict").is_visible()
    assert page.locator("#verdict .badge").inner_text() in ("anomaly", "confirmed")
    mechanism = page.locator("#mechanism").inner_text()
    assert mechanism not in ("", "none"), mechanism
    for section in ("#envelope", "#dns", "#tcp", "#tls", "#http", "#raw"):
        assert page.locator(section).is_visible(), section
    proof = page.locator(EVIDENCE[mechanism.split(".")[0]]).first
    assert proof.count() and proof.is_visible(), (mechanism, EVIDENCE[mechanism.split(".")[0]])
    assert domain in page.locator("p.crumbs").inner_text()
    return mechanism


def test_evidence_is_three_clicks_from_home(guarded: tuple[Any, Guard], explorer: Explorer) -> None:
    """Home → the most blocked site → one of its anomalies: the evidence, by clicking links only."""
    page, _ = guarded
    open_page(page, "/")
    clicks = 0
    site = page.locator("#blocked-domains a.domain-link").first
    domain = site.inner_text()
    with page.expect_navigation():
        site.click()
    clicks += 1
    assert page.locator("main h1").inner_text() == domain
    page.wait_for_load_state("load")
    listed = page.locator("#recent-anomalies table.measurements tbody tr")
    # The table's mechanism column (no domain column on a domain page): one row per kind of blocking.
    mechanisms = [t.strip() for t in listed.locator("td:nth-child(4)").all_inner_texts()]
    assert mechanisms and "" not in mechanisms, mechanisms
    first_of = {m.split(".")[0]: i for i, m in reversed(list(enumerate(mechanisms)))}   # by family: dns, tcp...
    with page.expect_navigation():
        listed.nth(0).locator("a.evidence-link").click()
    clicks += 1
    assert clicks <= 3
    assert assert_evidence_shown(page, domain) == mechanisms[0]
    # The other kinds of blocking listed there show their evidence as well (back, click).
    for i in sorted(first_of.values()):
        if i == 0:
            continue
        page.go_back(wait_until="load")
        with page.expect_navigation():
            page.locator("#recent-anomalies table.measurements tbody tr").nth(i).locator("a.evidence-link").click()
        assert assert_evidence_shown(page, domain) == mechanisms[i]
    assert len(first_of) >= 3, first_of   # several kinds of evidence were checked
