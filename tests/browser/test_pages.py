"""What a person sees, in chromium: every page renders without a console error or CSP violation,
charts draw from the offline plotly, nothing is fetched from anywhere but the explorer, and a
phone-sized screen never scrolls sideways."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.browser.harness import (
    XSS_DOMAIN,
    XSS_FINDING_ID,
    Explorer,
    Guard,
    guard_page,
    misaligned_headings,
    open_page,
    overlap,
    pwned,
    table_columns,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

CHART_PAGES = ["/", "/country/RU", "/network/AS12389", "/domain/www.example.com", f"/domain/{XSS_DOMAIN}"]


def all_pages(explorer: Explorer) -> list[str]:
    return [*CHART_PAGES, "/country/IT", f"/m/{explorer.xss_uid}", *(f"/m/{u}" for u in explorer.hostile_uids),
            "/search", "/search?probe_cc=RU&outcome=anomaly", f"/search?domain={XSS_DOMAIN}", "/api",
            "/chart", "/chart?axis_x=probe_asn&axis_y=mechanism", f"/chart?axis_x=input&domain={XSS_DOMAIN}",
            "/findings", f"/findings/{XSS_FINDING_ID}", "/new-blockpages", "/new-blockpages?probe_cc=FR"]


def test_pages_render_without_errors_or_foreign_requests(guarded: tuple[Any, Guard], explorer: Explorer) -> None:
    """Every page, its collapsed parts opened (captured pages load into their sandbox on opening)."""
    page, guard = guarded
    for path in all_pages(explorer):
        open_page(page, path)
        h1 = page.locator("main h1").first
        assert h1.is_visible() and h1.inner_text().strip(), path
        # The page is the explorer's, complete: header, main content, footer with its JSON twin.
        assert page.locator("header.top a.brand").is_visible(), path
        assert page.locator("footer a.twin").get_attribute("href"), path
        for details in page.locator("main details").all():
            details.evaluate("d => { d.open = true; }")
        page.wait_for_function("() => Array.from(document.querySelectorAll('iframe[data-src]'))"
                               ".every(f => f.getAttribute('src') === f.dataset.src)")
        for frame in page.frames:
            frame.wait_for_load_state("load")
        assert not guard.problems(), (path, guard.problems())
    # Every request went to the explorer on 127.0.0.1: plotly and its stylesheet included, and the
    # captured pages (the blockpages' images and scripts are refused inside the sandbox, not fetched).
    base = explorer.url + "/"
    assert [u for u in guard.requests if not (u.startswith(base) or u.startswith("data:"))] == []
    assert guard.foreign == []
    assert any(u.endswith("/static/plotly.min.js") for u in guard.requests)
    assert any(u.endswith("/static/plotly.css") for u in guard.requests)
    assert any("/body/" in u for u in guard.requests)
    guard.sandboxed.clear()


def test_the_chart_page_draws_one_row_of_bars_per_value(guarded: tuple[Any, Guard], explorer: Explorer) -> None:
    """OONI's MAT by day and country: a row of stacked bars per country, each labelled, under one legend; its
    counts are the table's, and a cell's link finds as many measurements as it counts."""
    page, guard = guarded
    twin = httpx.get(f"{explorer.url}/chart.json?axis_y=probe_cc", timeout=30).json()
    countries = {r["probe_cc"] for r in twin["rows"]}
    assert len(countries) >= 2, countries
    open_page(page, "/chart?axis_y=probe_cc")
    chart = page.locator("#chart-counts")
    assert chart.get_attribute("data-drawn") == "true"
    labels = chart.locator("g.annotation-text-g text").all_text_contents()
    assert sorted(labels) == sorted(countries), labels
    assert chart.locator(".trace.bars .point path").count() >= len(countries)
    assert sorted(chart.locator("g.legend g.traces text").all_text_contents()) == [
        "anomaly", "confirmed", "failure", "ok"]
    box = chart.bounding_box()
    assert box and box["height"] >= 100 * len(countries), box
    ticks = chart.locator("g.ytick text").all_text_contents()
    assert ticks and not [t for t in ticks if re.fullmatch(r"[\d,]*\.\d+", t)], ticks
    rows = page.locator("#chart-rows tbody tr")
    assert rows.count() == len(twin["rows"])
    link = rows.first.locator("td[data-label='Measured'] a")
    counted = int(link.inner_text().replace(",", "").replace("\u202f", "").replace(" ", ""))
    link.click()
    page.wait_for_load_state("load")
    assert page.url.startswith(explorer.url + "/search?")
    shown = page.locator("#result-count").inner_text()
    assert shown.startswith(f"{counted} measurement"), (counted, shown)
    guard.check()


def test_error_page_renders_too(guarded: tuple[Any, Guard]) -> None:
    page, guard = guarded
    page.goto("/country/XX")
    assert page.locator("main h1").inner_text() == "Not found"
    # The 404 itself is the only console error chromium reports ("Failed to load resource").
    assert all("404" in m for m in guard.console_errors), guard.console_errors
    guard.console_errors.clear()


def test_charts_draw_from_the_offline_plotly(guarded: tuple[Any, Guard]) -> None:
    page, guard = guarded
    # home, area (same template for all three); and a site measured once, on one day
    for path in ("/", "/country/RU", "/domain/www.example.com", "/domain/blocked.example"):
        open_page(page, path)
        charts = page.locator(".chart")
        assert charts.count() == 2, path      # timeline and mechanisms
        for i in range(charts.count()):
            chart = charts.nth(i)
            name = chart.get_attribute("id")
            assert chart.get_attribute("data-drawn") == "true", (path, name)
            assert chart.locator("svg.main-svg").count() >= 2, (path, name)
            # Bars were drawn, not just empty axes.
            assert chart.locator(".trace.bars .point path").count() >= 1, (path, name)
            # Days, not hours, and whole counts: a page of a measurement or two was ticked "00:00:00" and
            # "0.2, 0.4 ... 1".
            ticks = chart.locator("g.xtick text, g.ytick text").all_text_contents()
            assert ticks and not [t for t in ticks if ":" in t or re.fullmatch(r"[\d,]*\.\d+", t)], (path, name, ticks)
            box = chart.bounding_box()
            assert box and box["height"] >= 150 and box["width"] >= 200, (path, name, box)
            # plotly's own stylesheet applies (it is refused if injected inline): the SVG layers are
            # stacked on one another, and the legend stays inside the chart instead of spilling below it.
            positions = chart.locator("svg.main-svg").evaluate_all("ns => ns.map(n => getComputedStyle(n).position)")
            assert set(positions) == {"absolute"}, (path, name, positions)
            for legend in chart.locator("g.legend").all():
                lb = legend.bounding_box()
                assert lb and lb["y"] + lb["height"] <= box["y"] + box["height"] + 1, (path, name, lb, box)
                for label in chart.locator("g.g-xtitle text, g.g-ytitle text, g.xtick text").all():
                    tb = label.bounding_box()  # a legend over tick labels or an axis title is unreadable
                    assert tb is None or not overlap(lb, tb), (path, name, label.text_content(), lb, tb)
    assert guard.requests and all(guard.local(u) for u in guard.requests), guard.requests
    assert not [u for u in guard.requests if "cdn" in u]


def test_headings_stand_over_their_columns(guarded: tuple[Any, Guard]) -> None:
    """Counts are right-aligned; a heading left on top of a wide column stood over the numbers of the column before
    it ("Measured" over a network's name)."""
    page, guard = guarded
    numeric = set()
    for path in ("/", "/country/RU", "/network/AS12389", "/domain/www.example.com"):
        open_page(page, path)
        assert misaligned_headings(page) == [], path
        numeric |= {heading for heading, _, numbers in table_columns(page) if numbers}
    # the check saw the tables of counts: sites, networks, techniques, tests, apps, countries
    # ("Networks with anomalies": a test's networks count only those where it showed some, and a test with none read
    # "0 networks" under a heading of "Networks")
    # and the sites by category (the harness's server keeps a test list)
    assert {"Measured", "Anomalies", "Confirmed", "Networks", "Networks with anomalies",
            "Blocked domains", "Sites measured", "Sites with anomalies"} <= numeric, numeric
    assert not guard.problems(), guard.problems()


PHONE = {"width": 375, "height": 667}


def test_phone_screen_has_no_sideways_scroll(browser: Any, explorer: Explorer) -> None:
    context, page, guard = guard_page(browser, explorer.url, viewport=PHONE)
    try:
        for path in all_pages(explorer):
            open_page(page, path)
            for details in page.locator("main details").all():      # headers, raw JSON, captured page
                details.evaluate("d => { d.open = true; }")
            width, scroll_width = page.evaluate("() => [innerWidth, document.documentElement.scrollWidth]")
            assert width == PHONE["width"], path
            assert scroll_width <= width + 1, (path, scroll_width, width)
            main = page.locator("main")
            assert main.is_visible(), path
            box = main.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (path, box)
            h1 = page.locator("main h1").first
            assert h1.is_visible() and h1.bounding_box()["y"] < PHONE["height"], path   # type: ignore[index]
            for chart in page.locator(".chart").all():
                cb = chart.bounding_box()
                assert cb and cb["x"] + cb["width"] <= width + 1, (path, cb)
            # The search form's fields fit the screen too.
            for field in page.locator("form.filters select, form.filters input").all():
                fb = field.bounding_box()
                assert fb and fb["x"] >= 0 and fb["x"] + fb["width"] <= width + 1, (path, fb)
        guard.sandboxed.clear()
        guard.check()
    finally:
        context.close()


# Per page: every box that could scroll sideways inside <main>, with where it is (the section's id, the table's
# class), its content's width against its own, and whether its table is shown as cards (its head hidden); and every
# body cell of a table with a one-row head, with that head's heading, the cell's data-label, the computed content of
# its ::before and whether its table is cards.
_SCROLL_BOXES_JS = """() => Array.from(document.querySelectorAll('main .scroll')).map(s => {
    const section = s.closest('section'), table = s.querySelector('table');
    const headed = !!(table && table.tHead), cards = headed && getComputedStyle(table.tHead).display === 'none';
    return [(section && section.id) || '', (table && table.className) || '', s.scrollWidth, s.clientWidth, cards,
            headed];
})"""
_STACKED_CELLS_JS = """() => Array.from(document.querySelectorAll('main table')).flatMap(t => {
    const heads = t.tHead && t.tHead.rows.length === 1 ? Array.from(t.tHead.rows[0].cells) : [];
    if (!heads.length || heads.some(h => h.colSpan > 1)) return [];
    const cards = getComputedStyle(t.tHead).display === 'none';
    return Array.from(t.tBodies).flatMap(b => Array.from(b.rows)).filter(r => r.cells.length === heads.length)
        .flatMap(r => Array.from(r.cells).map((c, i) => [c, heads[i].textContent.trim()]))
        .filter(([c]) => c.tagName === 'TD')
        .map(([c, heading]) => [heading, c.getAttribute('data-label'), getComputedStyle(c, '::before').content,
                                cards]);
})"""
TABLET = {"width": 768, "height": 1024}


def _tables_fit(page: Any, paths: list[str], scripts: bool = True) -> tuple[list[Any], list[Any], set[str], int]:
    """Every page at the page's width: (boxes whose table overflows, cells whose label is wrong, the headings seen,
    how many boxes show a table with a head as it is, not as cards)."""
    too_wide: list[Any] = []
    unlabelled: list[Any] = []
    headings: set[str] = set()
    as_is = 0
    for path in paths:
        if scripts:
            open_page(page, path)
        else:
            page.goto(path)
        for details in page.locator("main details").all():      # headers, raw JSON, captured page
            details.evaluate("d => { d.open = true; }")
        page.wait_for_timeout(50)                                  # explorer.js fits the tables again on a toggle
        boxes = page.evaluate(_SCROLL_BOXES_JS)
        too_wide += [(path, *box) for box in boxes if box[2] > box[3] + 1]
        as_is += sum(1 for box in boxes if box[5] and not box[4])
        for heading, label, before, cards in page.evaluate(_STACKED_CELLS_JS):
            headings.add(heading)
            # Every cell under a heading carries it as its label; shown before the value when the table is cards.
            wanted = (heading or None, f'"{heading}"' if heading and cards else "none")
            if (label, before) != wanted:
                unlabelled.append((path, heading, label, before, cards))
    return too_wide, unlabelled, headings, as_is


def test_phone_screen_stacks_tables_into_labelled_rows(browser: Any, explorer: Explorer) -> None:
    """On a phone no table scrolls sideways inside its own box either (a table of 926 px in a box of 351 px had to be
    swiped, its headings lost off-screen): a table's rows stack, each cell on a line of its own, led by its column's
    heading (the template's data-label: our own words, never measurement content)."""
    context, page, guard = guard_page(browser, explorer.url, viewport=PHONE)
    try:
        # and the measurement pages of the tables of blocking rules and of an app's services
        paths = [*all_pages(explorer), f"/m/{explorer.rules_uid}", f"/m/{explorer.apps_uid}"]
        too_wide, unlabelled, headings, _ = _tables_fit(page, paths)
        assert too_wide == [], too_wide
        assert unlabelled == [], unlabelled[:20]
        # The check saw the listings: measurements, sites, networks, counts, and the measurement page's tables.
        assert {"When (UTC)", "Input", "Network", "Result", "Evidence", "Domain", "Measured", "Anomalies",
                "Confirmed", "Mechanism", "Resolver", "Endpoint", "Method", "Probe", "Service"} <= headings, headings
        # And it shows: the search's listing has no head, its first row's cells stand one under the other, the first
        # reading "When (UTC)" before the time.
        open_page(page, "/search")
        assert page.locator("table.measurements thead").is_hidden()
        cells = page.locator("table.measurements tbody tr").first.locator("td")
        assert cells.first.evaluate("c => getComputedStyle(c, '::before').content") == '"When (UTC)"'
        boxes = [b for b in (c.bounding_box() for c in cells.all()) if b]
        assert len(boxes) >= 5 and all(a["y"] + a["height"] <= b["y"] + 1 and a["x"] == b["x"]
                                       for a, b in zip(boxes, boxes[1:])), boxes
        guard.sandboxed.clear()
        guard.check()
    finally:
        context.close()


def test_a_tablet_shows_as_cards_only_the_tables_that_would_not_fit(browser: Any, explorer: Explorer) -> None:
    """At 768 px the phone's rule (under 40rem) no longer applies, and tables of 926 px scrolled in boxes of 744:
    explorer.js makes cards of those, and leaves every table that fits as it is. Widening the window to a desktop's
    turns the cards back into tables."""
    context, page, guard = guard_page(browser, explorer.url, viewport=TABLET)
    try:
        too_wide, unlabelled, _, as_is = _tables_fit(page, all_pages(explorer))
        assert too_wide == [], too_wide
        assert unlabelled == [], unlabelled[:20]
        assert as_is >= 10, as_is  # tables that fit stay tables
        open_page(page, "/country/RU")
        cards = page.evaluate(_SCROLL_BOXES_JS)
        assert any(box[4] for box in cards) and not all(box[4] for box in cards), cards
        # two cards side by side in a box of 744 px: the first two rows of the recent measurements share a line
        rows = [page.locator("table.measurements tbody tr").nth(i).bounding_box() for i in (0, 1)]
        assert rows[0] and rows[1] and rows[0]["y"] == rows[1]["y"] and rows[0]["x"] < rows[1]["x"], rows
        page.set_viewport_size({"width": 1300, "height": 900})
        page.wait_for_function("() => Array.from(document.querySelectorAll('main .scroll'))"
                               ".every(s => s.classList.contains('fits'))", timeout=5000)
        assert not any(box[4] for box in page.evaluate(_SCROLL_BOXES_JS))
        guard.sandboxed.clear()
        guard.check()
    finally:
        context.close()


def test_without_scripts_a_phone_still_gets_cards(browser: Any, explorer: Explorer) -> None:
    """Tor Browser at its safest runs no script: the phone's rule alone (cards.css under 40rem) makes every table
    cards, and none scrolls sideways."""
    context = browser.new_context(base_url=explorer.url, viewport=PHONE, java_script_enabled=False)
    context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(explorer.url) else r.abort())
    try:
        page = context.new_page()
        too_wide, unlabelled, headings, as_is = _tables_fit(page, ["/", "/country/RU", "/search",
                                                                   f"/m/{explorer.apps_uid}"], scripts=False)
        assert too_wide == [] and unlabelled == [], (too_wide, unlabelled[:20])
        assert {"When (UTC)", "Domain", "Measured", "Service"} <= headings, headings
        assert as_is == 0  # every table with a head is cards (a key/value table, without one, keeps two columns)
        assert page.evaluate("() => document.getElementById('cards').media") == "(max-width: 40rem)"
    finally:
        context.close()


def test_the_report_link_downloads_a_report_that_opens_offline(browser: Any, explorer: Explorer, tmp_path: Any) -> None:
    """Home and a country page link the HTML report of what they show: clicked, it downloads;
    opened from disk, its charts draw with nothing fetched, no error, and the hostile measurements inert."""
    context, page, guard = guard_page(browser, explorer.url, accept_downloads=True)
    files = {}
    try:
        for path, name in (("/", "tamperscope-report.html"), ("/country/RU", "tamperscope-report-RU.html")):
            open_page(page, path)
            with page.expect_download(timeout=30000) as info:
                page.locator("main a[href^='/api/v1/export/report.html']").click()
            download = info.value
            assert download.suggested_filename == name, (path, download.suggested_filename)
            files[path] = tmp_path / name
            download.save_as(files[path])
            assert files[path].stat().st_size > 4_000_000  # plotly inside
        guard.check()
    finally:
        context.close()
    offline = browser.new_context(viewport={"width": 1300, "height": 900})
    fetched: list[str] = []

    def only_the_file(r: Any) -> None:
        fetched.append(r.request.url)
        r.continue_() if r.request.url.startswith("file://") else r.abort()

    offline.route("**/*", only_the_file)
    try:
        report = offline.new_page()
        errors: list[str] = []
        report.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        report.on("pageerror", lambda exc: errors.append(str(exc)))
        for path, file in files.items():
            report.goto(file.as_uri(), wait_until="load")
            report.wait_for_function("() => ['chart-timeline', 'chart-heatmap', 'chart-mechanisms']"
                                     ".every(id => document.querySelector('#' + id + ' svg.main-svg'))", timeout=20000)
            selection = report.locator("p.selection")
            if path == "/":
                assert selection.count() == 0
            else:
                assert selection.inner_text() == "Only country RU."
            assert report.locator("table").count() >= 3, path
            assert pwned(report) == {f"0:{file.as_uri()}": "undefined"}
        assert errors == [] and all(u.startswith("file://") for u in fetched), (errors, fetched)
    finally:
        offline.close()


_WRAPPED_DATES_JS = """() => Array.from(document.querySelectorAll('main td')).filter(td => {
  const text = td.innerText.trim();
  if (!/^\\d{4}-\\d\\d-\\d\\d( \\d\\d:\\d\\d(:\\d\\d)?)?$/.test(text)) return false;
  const range = document.createRange(); range.selectNodeContents(td);
  const tops = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0).map(r => Math.round(r.top)));
  return tops.size > 1;
}).map(td => [td.dataset.label, td.innerText])"""


@pytest.mark.parametrize("width", [1300, 900])
def test_dates_stay_on_one_line(browser: Any, explorer: Explorer, width: int) -> None:
    """A date broke at its hyphen ("2026-" over "12-04") in the apps' table, beside a network's long name."""
    context, page, guard = guard_page(browser, explorer.url, viewport={"width": width, "height": 900})
    try:
        for path in ("/", "/country/RU", "/network/AS12389", "/domain/www.example.com", "/search"):
            open_page(page, path)
            assert page.evaluate(_WRAPPED_DATES_JS) == [], (width, path)
        guard.check()
    finally:
        context.close()
