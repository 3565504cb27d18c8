"""Hostile measurements in chromium: script payloads in a measurement's input, captured body, page
title and response headers never run, in the explorer's pages or in the sandboxed frame that shows the
captured page, and they are displayed, as text (so a page cannot pass by hiding them)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tamperscope.collector import samples
from tamperscope.explorer import feeds
from tests.browser.harness import (
    XSS_BODY,
    XSS_DOMAIN,
    XSS_FINDING_ID,
    XSS_FINDING_TEXT,
    XSS_HEADER,
    XSS_IMG,
    XSS_INPUT,
    XSS_NEW_PAGE_TEXT,
    XSS_RULE_NAME,
    XSS_SCRIPT,
    XSS_SVG,
    XSS_TITLE,
    Explorer,
    Guard,
    open_page,
    pwned,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

HOSTILE_DOMAIN = "<svg onload=window.__pwned=1>.example"   # the host of samples.hostile()'s second URL

# Elements the payloads would create if they were parsed as markup in the explorer's own pages.
INJECTED = ("script:not([src]), img[src='x'], svg[onload], [onerror], [onload], body iframe:not([sandbox]), "
            "iframe[src^='javascript']")


def assert_inert(page: Any, path: str) -> None:
    """Nothing ran anywhere, and no payload became an element of the page itself."""
    page.wait_for_timeout(100)      # an onerror/onload handler would have fired by now
    found = pwned(page)
    assert set(found.values()) == {"undefined"}, (path, found)
    assert page.locator(INJECTED).count() == 0, (path, page.locator(INJECTED).evaluate_all(
        "ns => ns.map(n => n.outerHTML.slice(0, 200))"))


def visible_text(page: Any, selector: str, text: str) -> None:
    """``text`` is displayed literally inside ``selector`` (and visible)."""
    node = page.locator(selector).filter(has_text=text).first
    assert node.count() and node.is_visible(), (selector, text)
    assert text in node.inner_text(), (selector, text, node.inner_text()[:500])


def test_measurement_page_shows_the_payloads_as_text(guarded: tuple[Any, Guard], explorer: Explorer) -> None:
    page, guard = guarded
    path = f"/m/{explorer.xss_uid}"
    open_page(page, path)
    assert page.locator("main h1").inner_text() == XSS_INPUT          # the input, as typed by the probe
    assert XSS_INPUT in page.title()
    # Response headers: the hostile value shown in the table once opened.
    page.locator("#http details > summary", has_text="Response headers").first.click()
    visible_text(page, "#http td", XSS_HEADER)
    # The body, as text, and its title in the summary.
    visible_text(page, "#http pre.body", f"<p>{XSS_SCRIPT}{XSS_IMG}{XSS_SVG}</p>")
    visible_text(page, "#http summary", f"Blocked {XSS_IMG} {XSS_SCRIPT}")
    visible_text(page, "#http table.diff", XSS_IMG)                     # the title diff against the control
    assert_inert(page, path)
    # The captured page rendered: only inside <iframe sandbox="">, where the browser refuses its scripts.
    page.locator("details.rendered > summary").first.click()
    frame_element = page.locator("details.rendered iframe").first
    assert frame_element.get_attribute("sandbox") == ""
    page.wait_for_function("() => document.querySelector('details.rendered iframe').getAttribute('src')")
    frame = frame_element.element_handle().content_frame()
    assert frame is not None
    frame.wait_for_url("**/body/0")
    frame.wait_for_load_state("load")
    assert frame.locator("h1").inner_text() == "Access restricted"     # it did render
    page.wait_for_timeout(1500)  # its meta refresh of 0 s, image and style sheet would have gone out by now
    assert frame.url.endswith("/body/0"), frame.url                     # the refresh did not navigate the frame
    assert not guard.foreign, guard.foreign                             # nothing left for leak.example
    assert frame.evaluate("document.querySelectorAll('meta[http-equiv=refresh]').length") == 1  # it was there
    assert_inert(page, path)
    assert frame.evaluate("typeof window.__pwned") == "undefined"
    assert frame.evaluate("document.querySelectorAll('script').length") >= 2   # the scripts were there...
    assert any("Blocked script execution" in m for m in guard.sandboxed), guard.sandboxed  # ...and refused
    guard.sandboxed.clear()


def test_raw_json_shows_the_payloads_as_text(guarded: tuple[Any, Guard], explorer: Explorer) -> None:
    page, _ = guarded
    path = f"/m/{explorer.hostile_uids[0]}"
    open_page(page, path)
    page.locator("#raw details > summary").click()
    raw = page.locator("#raw pre.raw")
    assert raw.is_visible() and "<script>window.__pwned=1</script>" in raw.inner_text()
    visible_text(page, "#envelope", samples.PAYLOAD)                   # the network name
    visible_text(page, "#hop", samples.PAYLOAD)                        # the located hop's name
    assert_inert(page, path)


LISTS = [  # (page, where on it, payload text shown there)
    ("/", "#recent-anomalies", XSS_INPUT),
    ("/country/RU", "#recent-anomalies", XSS_INPUT),
    ("/network/AS12389", "#recent-anomalies", XSS_INPUT),
    ("/network/AS12389", "#signatures", samples.PAYLOAD),                # an equipment signature
    (f"/domain/{XSS_DOMAIN}", "main h1", XSS_DOMAIN),
    ("/domain/evil.example", "#recent", samples.PAYLOAD),                # a network's name
    ("/domain/evil.example", "#networks", samples.PAYLOAD),
    ("/domain/evil.example", "#hops", samples.PAYLOAD),                  # a located hop
    (f"/search?domain={XSS_DOMAIN}", "table.measurements", XSS_INPUT),
    ("/search?probe_cc=RU&outcome=anomaly", "table.measurements", XSS_INPUT),
    (f"/chart?axis_x=input&domain={XSS_DOMAIN}", "#chart-rows", XSS_INPUT),  # the table of OONI's MAT
    (f"/findings/{XSS_FINDING_ID}", "main h1", XSS_TITLE),                    # a finding: its title, summary,
    (f"/findings/{XSS_FINDING_ID}", "#summary", XSS_FINDING_TEXT),           # author and text (the blockpage's
    (f"/findings/{XSS_FINDING_ID}", "#byline", XSS_IMG),                     # HTML pasted in it, as text)
    (f"/findings/{XSS_FINDING_ID}", "#text", XSS_BODY[:60]),
    (f"/findings/{XSS_FINDING_ID}", "#recent-evidence", XSS_INPUT),          # its evidence's anomalies
    ("/findings", "ul.findings", XSS_TITLE),
    ("/country/RU", "#findings", XSS_TITLE),
    ("/m/{hostile1}", "main h1", "https://<svg onload=window.__pwned=1>.example/"),
    ("/new-blockpages?probe_cc=FR", "section.new-blockpage code", XSS_HEADER),   # a page no fingerprint knows:
    ("/new-blockpages?probe_cc=FR", "section.new-blockpage pre.body", XSS_NEW_PAGE_TEXT),  # its Server, text
    ("/new-blockpages?probe_cc=FR", "section.new-blockpage code.pattern", "Accès interdit par décision"),
]


def test_every_list_shows_the_payloads_as_text(guarded: tuple[Any, Guard], explorer: Explorer) -> None:
    page, _ = guarded
    for path, where, text in LISTS:
        path = path.replace("{hostile1}", explorer.hostile_uids[1])
        if page.url != explorer.url + path:
            open_page(page, path)
        visible_text(page, where, text)
        assert_inert(page, path)


def test_a_chart_by_input_draws_the_hostile_input_as_typed(guarded: tuple[Any, Guard]) -> None:
    """plotly draws a subset of HTML in its labels (<a href>, <b>) and decodes entities: the MAT chart's tick and
    row labels show a measurement's input as typed, with no link and nothing run."""
    page, _ = guarded
    for path, labels in ((f"/chart?axis_x=input&domain={XSS_DOMAIN}", "g.xtick text"),
                         (f"/chart?axis_y=input&domain={XSS_DOMAIN}", "g.annotation-text-g text")):
        open_page(page, path)
        chart = page.locator("#chart-counts")
        assert chart.get_attribute("data-drawn") == "true", path
        assert XSS_INPUT in chart.locator(labels).all_text_contents(), (path, chart.locator(labels)
                                                                       .all_text_contents())
        assert chart.locator("a").count() == 0, path
        assert_inert(page, path)


def test_a_rule_that_caught_a_hostile_name_shows_it_as_text(guarded: tuple[Any, Guard], explorer: Explorer) -> None:
    """blocking_rules' over-blocked name comes from the measurement: on the network's page (the rules the store
    read back) and on the measurement's (its layers), it is text, and nothing runs."""
    page, _ = guarded
    for path in ("/network/AS12389", f"/m/{explorer.rules_uid}"):
        open_page(page, path)
        visible_text(page, "#rules", XSS_RULE_NAME)
        visible_text(page, "#rules", "ends_with")
        assert_inert(page, path)


def test_a_messaging_apps_hostile_failure_shows_as_text(guarded: tuple[Any, Guard], explorer: Explorer) -> None:
    """signal's failure and backends come from the measurement: listed on its page as text, and the app's
    latest word on the network's page; nothing runs."""
    page, _ = guarded
    path = f"/m/{explorer.apps_uid}"
    open_page(page, path)
    visible_text(page, "#apps", f"connection_reset{XSS_IMG}")
    visible_text(page, "#apps", f"https://storage.signal.org/{XSS_SCRIPT}")
    assert_inert(page, path)
    open_page(page, "/network/AS12389")
    visible_text(page, "#apps", "Signal")
    assert "blocked" in page.locator("#apps").inner_text()
    assert_inert(page, "/network/AS12389")


def test_a_host_that_cannot_be_one_has_no_domain_page(guarded: tuple[Any, Guard], explorer: Explorer) -> None:
    """No domain is derived from a URL whose host is markup (its measurement page shows the URL, as text:
    see LISTS), so no list shows it as a site, and asking for it is an inert 404."""
    page, guard = guarded
    open_page(page, "/")
    assert "<svg" not in page.locator("#blocked-domains").inner_text()
    assert_inert(page, "/")
    path = f"/domain/{quote(HOSTILE_DOMAIN, safe='')}"
    page.goto(path)
    assert page.locator("main h1").inner_text() == "Not found"
    assert_inert(page, path)
    assert all("404" in m for m in guard.console_errors), guard.console_errors  # the 404 itself, only
    guard.console_errors.clear()


def test_typed_payloads_in_the_search_form_stay_text(guarded: tuple[Any, Guard]) -> None:
    """A payload typed into the search boxes comes back in the form's value, not as markup."""
    page, guard = guarded
    open_page(page, "/search")
    payload = f'{XSS_SVG}{XSS_SCRIPT}'
    page.locator("#filters input[name=domain]").fill(payload)
    with page.expect_navigation():
        page.locator("#filters button[type=submit]").click()
    assert page.locator("#filters input[name=domain]").input_value() == payload
    assert_inert(page, page.url)
    # no site's name holds markup: the search says so on a 400 page, the form kept; that answer is the one error
    assert "is not one of the host names" in page.locator("main").inner_text()
    assert guard.console_errors and all("400" in m for m in guard.console_errors), guard.console_errors
    guard.console_errors.clear()


@pytest.mark.parametrize("path, text", [
    ("/feed.atom?probe_cc=RU&outcome=anomaly", XSS_INPUT),
    (f"/feed.atom?domain={XSS_DOMAIN}", XSS_INPUT),
    ("/findings.atom", XSS_FINDING_TEXT),
])
def test_a_feed_opened_in_the_browser_is_text(guarded: tuple[Any, Guard], path: str, text: str) -> None:
    """An Atom feed opened in chromium (which shows its source): the payloads are its escaped text, nothing runs,
    nothing reaches another origin, and no payload became an element."""
    page, guard = guarded
    response = page.goto(path, wait_until="load")
    assert response is not None and response.status == 200 and "atom+xml" in response.headers["content-type"]
    shown = page.evaluate("() => document.documentElement.textContent")
    assert feeds.xml_text(text) in shown, shown[:500]
    assert_inert(page, path)
    assert not guard.foreign, guard.foreign


def test_the_report_shows_a_blockpage_no_fingerprint_knows_as_text(guarded: tuple[Any, Guard],
                                                                     explorer: Explorer) -> None:
    """The HTML report of France (its own country in the corpus), as downloaded from the explorer and opened, has
    the page no fingerprint knows: its words and the pattern proposed from its markup are text, and nothing of it
    runs or reaches another origin."""
    page, guard = guarded
    path = "/api/v1/export/report.html?probe_cc=FR"
    response = page.request.get(explorer.url + path)
    assert response.status == 200 and "attachment" in response.headers["content-disposition"]
    page.set_content(response.text(), wait_until="load")
    # the title, then the body's words: its markup gone, the '">' of a payload that stood in text kept as text
    visible_text(page, "section#new-blockpages td[data-label='its text begins']",
                 'Avis Avis "> Accès interdit par décision du tribunal')
    visible_text(page, "section#new-blockpages td[data-label='pattern proposed']", "Accès interdit par décision")
    page.wait_for_timeout(100)  # an onerror/onload handler would have fired by now
    assert set(pwned(page).values()) == {"undefined"}
    # the report's own scripts (plotly, its drawing) are inline: every other element a payload would make is absent
    assert page.locator("section#new-blockpages :is(script, img, svg, iframe), [onerror], [onload]").count() == 0
    assert not guard.foreign, guard.foreign
