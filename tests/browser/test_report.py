"""`tamperscope report --html`, opened from disk in chromium: the three charts draw from the bundled
plotly with nothing fetched, no script error, legends that cover no axis title, a colour per
technique, and no sideways scroll on a phone."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.browser.harness import misaligned_headings, overlap, table_columns
from tests.unit.test_blocking_rules import measurement_with_path

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
CHARTS = ("chart-timeline", "chart-heatmap", "chart-mechanisms")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 50 shared samples, and copies of them spread over 9 networks, 9 countries and 30 days."""
    work = tmp_path_factory.mktemp("report")
    networks = [("IR", 197207), ("RU", 12389), ("TR", 9121), ("CN", 4134), ("IT", 137), ("BY", 6697),
                ("KZ", 9198), ("MM", 9988), ("TM", 20661)]
    lines = []
    for i, path in enumerate(sorted(SAMPLES.glob("*/measurement.json")) * 12):
        m = json.loads(path.read_text())
        cc, asn = networks[i % len(networks)]
        m.update(probe_cc=cc, probe_asn=f"AS{asn}", report_id=f"r{i}",
                 measurement_start_time=f"2024-01-{1 + i % 30:02d} 12:00:00")
        lines.append(orjson.dumps(m))
    # and a blocking_rules measurement, for the table of what the censors' rules match (ten columns)
    envelope = json.loads((SAMPLES / "dnsBlockingNXDOMAIN" / "measurement.json").read_text())
    lines.append(orjson.dumps({**envelope, **measurement_with_path(), "test_version": "0.1.0",
                               "report_id": "rules", "measurement_start_time": "2024-01-15 12:00:00"}))
    # and Tor started directly (blocked) and through an obfs4 bridge (not), on a network with a long name: the
    # apps' table, whose longest name ("Tor (its own bootstrap) through a bridge (obfs4)") held its column wide
    for minute, bridged in ((0, False), (1, True)):
        lines.append(orjson.dumps({**envelope, "test_name": "vanilla_tor", "test_version": "0.3.0", "input": None,
                                   "probe_cc": "TM", "probe_asn": "AS20661", "report_id": f"tor{minute}",
                                   "probe_network_name": "Turkmentelecom State Joint Stock Company of Communications",
                                   "measurement_start_time": f"2024-01-20 12:0{minute}:00", "test_keys": {
            "bootstrap_time": 2.5 if bridged else 0.0, "error": None if bridged else "timeout-reached",
            "failure": None if bridged else "generic_timeout_error", "success": bridged, "timeout": 20.0,
            "tor_logs": [], "tor_progress": 100 if bridged else 5, "tor_progress_tag": "done" if bridged else "conn",
            "tor_progress_summary": "Done" if bridged else "Connecting to a relay", "tor_version": "0.4.9.11",
            "transport_name": "obfs4" if bridged else "vanilla", "x_bridges": 1 if bridged else 0}}))
    (work / "in.jsonl").write_bytes(b"\n".join(lines))
    db, out = work / "s.duckdb", work / "report.html"
    for args in (["analyze", str(work / "in.jsonl")], ["report", "--html", str(out)]):
        subprocess.run([sys.executable, "-m", "tamperscope", *args, "--db", str(db)], check=True,
                       capture_output=True, timeout=300)
    return out


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, dict[str, list[str]]]]:
    """A page that records every request and every error; anything but the file itself is refused."""
    seen: dict[str, list[str]] = {"requests": [], "foreign": [], "errors": []}
    context = browser.new_context(viewport={"width": 1300, "height": 900})

    def route(r: Any) -> None:
        seen["requests"].append(r.request.url)
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            seen["foreign"].append(r.request.url)
            r.abort()

    context.route("**/*", route)
    p = context.new_page()
    p.on("console", lambda msg: seen["errors"].append(msg.text) if msg.type == "error" else None)
    p.on("pageerror", lambda exc: seen["errors"].append(str(exc)))
    try:
        yield p, seen
    finally:
        context.close()


def _open(p: Any, report: Path) -> None:
    p.goto(report.as_uri(), wait_until="load")
    p.wait_for_function("ids => ids.every(id => document.querySelector('#' + id + ' svg.main-svg'))",
                        arg=list(CHARTS), timeout=20000)


def test_the_report_draws_offline_and_reads_cleanly(page: tuple[Any, dict[str, list[str]]], report: Path) -> None:
    p, seen = page
    _open(p, report)
    for chart_id in CHARTS:
        chart = p.locator(f"#{chart_id}")
        box = chart.bounding_box()
        assert box and box["height"] >= 150 and box["width"] >= 600, (chart_id, box)
        drawn = chart.locator(".trace.bars .point path, .hm image, .heatmaplayer image").count()
        assert drawn >= 1, chart_id  # bars or the heatmap, not empty axes
        # Nothing sits on anything: a legend over an axis title or tick labels is unreadable.
        for legend in chart.locator("g.legend").all():
            lb = legend.bounding_box()
            assert lb and lb["y"] + lb["height"] <= box["y"] + box["height"] + 1, (chart_id, lb, box)
            for label in chart.locator("g.g-xtitle text, g.g-ytitle text, g.xtick text").all():
                tb = label.bounding_box()
                assert tb is None or not overlap(lb, tb), (chart_id, label.text_content(), lb, tb)
    # One colour per technique in the chart of techniques by country.
    colours = p.locator("#chart-mechanisms .trace.bars").evaluate_all(
        "ts => ts.map(t => getComputedStyle(t.querySelector('.point path')).fill)")
    assert len(colours) >= 10 and len(set(colours)) == len(colours), colours
    assert seen["requests"] and all(u.startswith("file://") for u in seen["requests"]), seen["requests"]
    assert seen["foreign"] == [] and seen["errors"] == []


def test_sentences_in_tables_keep_a_reading_width(page: tuple[Any, dict[str, list[str]]], report: Path) -> None:
    """The rules table has up to ten columns; its "what it means" sentences were squeezed to a word or two per line."""
    p, _ = page
    _open(p, report)
    assert p.locator("h2", has_text="What the censors' rules match").count() == 1
    cells = p.locator("td:not(.name)").evaluate_all(
        "ts => ts.filter(t => t.innerText.length > 40 && t.innerText.split(' ').length > 4)"
        ".map(t => [t.innerText, t.getBoundingClientRect().width])")
    rules = [c for c in cells if "are blocked" in c[0] or "forges DNS answers" in c[0]]
    assert rules, cells  # the rules table's sentences are there
    for text, width in cells:
        assert width >= 200, (text, width)


def test_every_table_fits_a_desktop_screen(page: tuple[Any, dict[str, list[str]]], report: Path) -> None:
    """At 1,300 px no table scrolls inside its box: words such as ``domain_and_subdomains`` and the equipment's
    signatures break at their underscores and slashes (the rules table was 1,224 px in its 1,100), a name is no
    sentence held at a reading width (the apps' table was 1,114 px: "Tor (its own bootstrap) through a bridge
    (obfs4)" took 240), and a date stays on one line."""
    p, _ = page
    _open(p, report)
    boxes = p.locator("div.scroll").evaluate_all(
        "ds => ds.map(d => { let h = d.previousElementSibling; while (h && h.tagName !== 'H2') h = h.previousElementSibling;"
        " return [h ? h.textContent : null, d.clientWidth, d.scrollWidth]; })")
    headings = [b[0] for b in boxes]
    assert len(boxes) >= 7 and "What the censors' rules match" in headings, boxes
    assert "Messaging apps and circumvention tools, network by network" in headings, boxes
    assert [b for b in boxes if b[2] > b[1] + 1] == [], boxes
    breakable = p.locator("td", has_text="domain_and_subdomains")
    assert breakable.count() >= 1 and breakable.first.inner_text() == "domain_and_subdomains"  # copied whole
    # the lines a date's text takes: one rectangle per line of a range over it
    dates = p.locator("td.date").evaluate_all(
        "ts => ts.map(t => { const r = document.createRange(); r.selectNodeContents(t);"
        " return [t.innerText, r.getClientRects().length]; })")
    assert dates and all(lines == 1 for _, lines in dates), dates


def test_headings_stand_over_their_columns(page: tuple[Any, dict[str, list[str]]], report: Path) -> None:
    """Counts are right-aligned; their headings were left-aligned, so in a wide column "anomalous" stood over the
    "measured" numbers."""
    p, _ = page
    _open(p, report)
    columns = table_columns(p)
    assert misaligned_headings(p) == [], columns
    numeric = {heading for heading, _, numbers in columns if numbers}
    assert {"measured", "anomalous", "confirmed", "networks", "sites affected"} <= numeric, columns
    assert {"site", "network", "main technique"} <= {heading for heading, _, numbers in columns if not numbers}


_BOXES_JS = """() => Array.from(document.querySelectorAll('div.scroll')).map(d => {
    const t = d.querySelector('table'), cards = getComputedStyle(t.tHead).display === 'none';
    const heads = Array.from(t.tHead.rows[0].cells).map(h => h.textContent);
    const cells = Array.from(t.tBodies[0].rows).flatMap(r => Array.from(r.cells).map((c, i) =>
        [heads[i], c.getAttribute('data-label'), getComputedStyle(c, '::before').content]));
    return [d.closest('section').id, d.clientWidth, d.scrollWidth, cards, cells];
})"""


@pytest.mark.parametrize("width,scripts", [(375, True), (375, False), (768, True), (1024, True)])
def test_no_table_scrolls_sideways_on_a_phone_or_a_tablet(browser: Any, report: Path, width: int,
                                                          scripts: bool) -> None:
    """Tables scrolled sideways in their boxes on a phone (1,060 px in 335) and a tablet (in 728), their headings
    lost off-screen. A table too wide for its box is cards instead: each row a card, each cell on a line of its own
    led by its column's heading (data-label: our words, never field data). On a phone the media query alone does it,
    so without scripts too (every table is cards there); with them, any table that would not fit, at any width, and
    only those."""
    context = browser.new_context(viewport={"width": width, "height": 800}, java_script_enabled=scripts)
    context.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
    try:
        p = context.new_page()
        if scripts:
            _open(p, report)
        else:
            p.goto(report.as_uri(), wait_until="load")
        view, scroll_width = p.evaluate("() => [innerWidth, document.documentElement.scrollWidth]")
        assert scroll_width <= view + 1, (scroll_width, view)
        boxes = p.evaluate(_BOXES_JS)
        assert len(boxes) >= 7 and [b[:4] for b in boxes if b[2] > b[1] + 1] == [], [b[:4] for b in boxes]
        cells = [(cell, cards) for *_, cards, cells in boxes for cell in cells]
        assert len(cells) > 100 and all(label == heading for (heading, label, _), _ in cells)
        # a table shown as cards shows each cell's heading before its value; a table as it is, none
        shown = [c for c in cells if c[0][2] != (f'"{c[0][0]}"' if c[1] else "none")]
        assert shown == [], shown[:5]
        cards = {b[0]: b[3] for b in boxes}
        if width < 640 and not scripts:
            assert all(cards.values()), cards
        elif width >= 640:
            assert not all(cards.values()), cards  # the tables that fit stay tables
            assert any(cards.values()), cards      # and these tables of 700-1,060 px did not
        if width == 375 and scripts:
            # a card's cells stand one under the other: the first row of the most blocked sites
            row = p.locator("section#sites tbody tr").first.locator("td")
            tops = [b["y"] for b in (c.bounding_box() for c in row.all()) if b]
            assert len(tops) >= 5 and tops == sorted(tops) and len(set(tops)) == len(tops), tops
        if width == 1024:
            # a desktop's width turns the cards back into tables
            p.set_viewport_size({"width": 1300, "height": 900})
            p.wait_for_function("() => Array.from(document.querySelectorAll('div.scroll'))"
                                ".every(d => d.classList.contains('fits'))", timeout=5000)
            assert not any(b[3] for b in p.evaluate(_BOXES_JS))
    finally:
        context.close()


def test_the_report_fits_a_phone(browser: Any, report: Path) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 667})
    try:
        p = context.new_page()
        _open(p, report)
        width, scroll_width = p.evaluate("() => [innerWidth, document.documentElement.scrollWidth]")
        assert scroll_width <= width + 1, (scroll_width, width)
        for chart_id in CHARTS:
            box = p.locator(f"#{chart_id}").bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (chart_id, box)
    finally:
        context.close()


def test_markup_a_measurement_carried_is_drawn_as_text(page: tuple[Any, dict[str, list[str]]],
                                                       tmp_path: Path) -> None:
    """plotly draws a subset of HTML in its labels: a network or domain holding `<a href>` would be a live link.
    Today's analyze keeps only codes and host names, but a store built before may hold anything."""
    lines = []
    for i, path in enumerate(sorted(SAMPLES.glob("*/measurement.json")) * 3):
        m = json.loads(path.read_text())
        m.update(report_id=f"h{i}", measurement_start_time=f"2024-01-{1 + i % 3:02d} 12:00:00")
        lines.append(orjson.dumps(m))
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines))
    db, out = tmp_path / "s.duckdb", tmp_path / "report.html"
    subprocess.run([sys.executable, "-m", "tamperscope", "analyze", str(tmp_path / "in.jsonl"), "--db", str(db)],
                   check=True, capture_output=True, timeout=300)
    import duckdb

    con = duckdb.connect(str(db))
    con.execute("""UPDATE verdicts SET probe_asn = 'AS1<a href="https://evil.example/">CLICKME</a><b>BOLD</b>',
                          probe_cc = '<a href="https://evil2.example/">CC</a>',
                          domain = '<a href="https://evil3.example/">DOMAIN</a>' || domain""")
    con.close()
    subprocess.run([sys.executable, "-m", "tamperscope", "report", "--html", str(out), "--db", str(db)],
                   check=True, capture_output=True, timeout=300)
    p, seen = page
    _open(p, out)
    charts = ", ".join(f"#{c}" for c in CHARTS)
    links = p.locator(f":is({charts}) a").evaluate_all(
        "as => as.map(a => a.getAttribute('href') || a.getAttribute('xlink:href') || '')")
    assert not [h for h in links if "evil" in h], links
    assert p.locator(f":is({charts}) b, :is({charts}) tspan[style*='bold']").count() == 0
    shown = p.locator(f":is({charts}) .xtick text, :is({charts}) .ytick text").all_text_contents()
    assert any('<a href="https://evil.example/">CLICKME</a><b>BOLD</b>' in t for t in shown), shown
    assert any("DOMAIN</a>" in t for t in shown), shown
    assert seen["foreign"] == [] and seen["errors"] == []
