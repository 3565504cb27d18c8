"""The browser tests' harness: a real ``tamperscope serve`` on loopback fed through the submission
endpoints, hostile measurements, and a page guard that records what a page must never do.

* `start_server` runs ``tamperscope serve`` on 127.0.0.1 with a fresh DuckDB file; `feed` submits
  the sample corpus through OONI's report protocol (``POST /report``, ``POST /report/{id}``,
  ``POST /report/{id}/close``), a hostile measurement built here (script payloads in the input, the
  captured body, its title and a response header), the collector's own hostile samples, and the
  OONI-format samples of ``../shared/data/ooni-samples`` through ``POST /api/v1/submit``;
* `guard_page` opens a browser context whose requests leaving 127.0.0.1 are aborted and recorded,
  and which records console errors, uncaught errors and CSP violations (`Guard`);
* `open_page` navigates and waits until every chart reports being drawn; `pwned` reads
  ``typeof window.__pwned`` in the top page and every frame.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from tamperscope.collector import samples

CHROMIUM = Path("/usr/bin/chromium")
OONI_SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
MUST_RUN = os.environ.get("TAMPERSCOPE_REQUIRE_LAB") == "1" or os.environ.get("CI", "").lower() == "true"

# Markup that would set window.__pwned if it ever ran, in every string the pages show.
XSS_SCRIPT = "<script>window.__pwned=1</script>"
XSS_IMG = '<img src=x onerror="window.__pwned=1">'
XSS_SVG = '"><svg onload=window.__pwned=1>'
XSS_DOMAIN = "xss-target.example"
XSS_INPUT = f"http://{XSS_DOMAIN}/{XSS_SCRIPT}?q={XSS_SVG}"
XSS_TITLE = f"Blocked {XSS_IMG} {XSS_SCRIPT}"
# A captured page may also try to leave its frame or call home without a script: a meta refresh (run even in
# a frame whose scripts are refused, unless the sandbox stops it), an image, a style sheet.
XSS_ESCAPES = ('<meta http-equiv="refresh" content="0;url=http://leak.example/refresh">'
               '<link rel="stylesheet" href="http://leak.example/css"><img src="http://leak.example/img">')
XSS_BODY = (f"<html><head><title>{XSS_TITLE}</title>{XSS_ESCAPES}"
            "<script>window.__pwned=1;parent.__pwned=1</script></head>"
            f'<body onload="window.__pwned=1"><h1>Access restricted</h1><p>{XSS_SCRIPT}{XSS_IMG}{XSS_SVG}</p>'
            "<p>zapret-info.prometey.me</p></body></html>")
XSS_HEADER = f"x{XSS_SVG}{XSS_IMG}"


def xss_measurement() -> dict[str, Any]:
    """A blockpage in Russia whose input, body, title and a response header carry script payloads."""
    m = samples.measurement("http.blockpage", url=XSS_INPUT, probe_cc="RU", probe_asn="AS12389",
                            network_name="Rostelecom", start="2026-05-10 10:10:10", body=XSS_BODY)
    response = m["test_keys"]["requests"][0]["response"]
    response["headers_list"].append(["X-Payload", XSS_HEADER])
    response["headers"]["X-Payload"] = XSS_HEADER
    return m


# A blockpage no fingerprint knows (in France, its own country in the corpus), its text and headers payloads
XSS_NEW_PAGE_TEXT = f"Avis {XSS_SCRIPT}{XSS_IMG}{XSS_SVG} Accès interdit par décision du tribunal"
XSS_NEW_PAGE = (f"<html><head><title>Avis</title>{XSS_ESCAPES}<script>window.__pwned=1</script></head>"
                f"<body><p>{XSS_NEW_PAGE_TEXT}</p></body></html>")


def new_blockpage_xss_measurement() -> dict[str, Any]:
    m = samples.measurement("http.blockpage", url="http://unknown-page.example/", probe_cc="FR", probe_asn="AS3215",
                            network_name="Orange", start="2026-05-10 12:00:00", body=XSS_NEW_PAGE)
    response = m["test_keys"]["requests"][0]["response"]
    response["headers_list"] = [[k, v] for k, v in response["headers_list"] if k != "Server"] + [
        ["Server", XSS_HEADER]]
    response["headers"]["Server"] = XSS_HEADER
    response["headers_list"].append(["X-Filter", "on"])  # a header the site's page has not: OONI's diff fires
    response["headers"]["X-Filter"] = "on"
    return m


XSS_RULE_NAME = f"q{XSS_IMG}{XSS_SCRIPT}blocked.example"  # a name the censor's rule caught too


def rules_xss_measurement() -> dict[str, Any]:
    """A blocking_rules measurement in Russia whose DNS censor caught, besides blocked.example, a name made of
    script payloads (the layer's ``overblocks``, shown on the network's page and the measurement's)."""
    from tests.unit.test_blocking_rules import LIE, measurement, query

    m = measurement()
    m["test_keys"]["x_blocking_rules"]["layers"]["dns"]["probes"][3]["name"] = XSS_RULE_NAME  # the prefixed
    m["test_keys"]["queries"][3] = query(4, LIE, name=XSS_RULE_NAME)
    envelope = {k: v for k, v in samples.measurement("http.rst", url="https://x.example/", probe_cc="RU",
                                                     probe_asn="AS12389", network_name="Rostelecom",
                                                     start="2026-05-11 11:11:11").items()
                if k not in ("test_keys", "input", "test_name", "test_version")}
    return {**envelope, **m, "test_version": "0.1.0"}


def apps_xss_measurement() -> dict[str, Any]:
    """A signal measurement in Russia whose failure and backends are script payloads (the measurement page lists
    each backend, and the network's page the app's latest word)."""
    envelope = {k: v for k, v in samples.measurement("http.rst", url="https://x.example/", probe_cc="RU",
                                                     probe_asn="AS12389", network_name="Rostelecom",
                                                     start="2026-05-01 01:01:01").items()
                if k not in ("test_keys", "input", "test_name", "test_version")}
    return {**envelope, "test_name": "signal", "test_version": "0.1.0", "input": None, "test_keys": {
        "signal_backend_status": "blocked", "signal_backend_failure": f"connection_reset{XSS_IMG}",
        "x_backends": {f"https://storage.signal.org/{XSS_SCRIPT}": f"connection_reset{XSS_IMG}"},
        "queries": [], "tcp_connect": [], "tls_handshakes": [], "requests": [], "network_events": []}}


@dataclass
class Explorer:
    """The running server and what was fed into it."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    total: int = 0
    xss_uid: str = ""
    rules_uid: str = ""
    apps_uid: str = ""
    hostile_uids: list[str] = field(default_factory=list)
    by_country: dict[str, int] = field(default_factory=dict)


# A Citizen Lab-style list naming most of the corpus's sites, so that the pages show their sites by category
TEST_LIST = """url,category_code,category_description,date_added,source,notes
https://chat.example.io/,COMT,Communication Tools,2024-01-01,tests,
https://social.example.net/,GRP,Social Networking,2024-01-01,tests,
https://news.example.org/,NEWS,News Media,2024-01-01,tests,
https://blog.example.info/,HOST,Hosting and Blogging Platforms,2024-01-01,tests,
https://video.example.com/,MMED,Media sharing,2024-01-01,tests,
"""


# A researcher's finding about the XSS measurement's country and site, whose every text carries the payloads
XSS_FINDING_ID = "xss-finding"
XSS_FINDING_TEXT = f"Evidence {XSS_SCRIPT}{XSS_IMG} and {XSS_SVG}"
XSS_FINDING = f"""+++
title = {orjson.dumps(XSS_TITLE).decode()}
summary = {orjson.dumps(XSS_FINDING_TEXT).decode()}
published = 2026-05-12
reported_by = {orjson.dumps(XSS_IMG).decode()}

[evidence]
probe_cc = "RU"
domain = "{XSS_DOMAIN}"
+++
{XSS_FINDING_TEXT}

{XSS_BODY}
"""


def start_server(db: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TAMPERSCOPE_ADMIN_TOKEN": ""}
    listed = db.with_name("global.csv")
    listed.write_text(TEST_LIST)
    findings = db.with_name("findings")
    findings.mkdir(exist_ok=True)
    (findings / f"{XSS_FINDING_ID}.md").write_text(XSS_FINDING, encoding="utf-8")
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tamperscope", "serve", "--db", str(db), "--port", str(port),
             "--rate", "0", "--read-rate", "0", "--quiet", "--test-list", str(listed), "--findings",
             str(findings)], stdout=out, stderr=out,
            env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the server did not come up")


def feed(client: httpx.Client, ex: Explorer) -> None:
    """Everything through the submission endpoints, as probes would send it."""
    uids: list[str] = []
    corpus = list(samples.corpus(60, seed="browser"))
    ms = [*corpus, xss_measurement(), rules_xss_measurement(), *samples.hostile(), apps_xss_measurement(),
          new_blockpage_xss_measurement()]
    for m in ms:
        ex.by_country[m["probe_cc"]] = ex.by_country.get(m["probe_cc"], 0) + 1
    # OONI's report protocol: open a report per network, submit, close.
    reports: dict[tuple[str, str], str] = {}
    for m in ms:
        key = (m["probe_cc"], m["probe_asn"])
        if key not in reports:
            r = client.post("/report", json={"test_name": m["test_name"], "probe_cc": key[0], "probe_asn": key[1],
                                             "software_name": "tamperscope", "software_version": "0.1.0",
                                             "data_format_version": "0.2.0", "format": "json"})
            assert r.status_code == 200, r.text
            reports[key] = r.json()["report_id"]
        r = client.post(f"/report/{reports[key]}", content=orjson.dumps({"format": "json", "content": m}),
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        uids.append(r.json()["measurement_uid"])
    for report_id in reports.values():
        assert client.post(f"/report/{report_id}/close", json={}).status_code == 200
    ex.xss_uid = uids[len(corpus)]
    ex.rules_uid = uids[len(corpus) + 1]
    ex.hostile_uids = uids[len(corpus) + 2:-2]
    ex.apps_uid = uids[-2]
    # Real OONI-format measurements, as one JSON-lines upload.
    ooni = [orjson.loads(p.read_bytes()) for p in sorted(OONI_SAMPLES.glob("*/measurement.json"))]
    if ooni:
        r = client.post("/api/v1/submit", content=b"\n".join(orjson.dumps(m) for m in ooni),
                        headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["stored"] + out.get("duplicates", 0) == len(ooni), out
        for m in ooni:
            ex.by_country[m["probe_cc"]] = ex.by_country.get(m["probe_cc"], 0) + 1
    ex.total = len(set(uids)) + len(ooni)


SANDBOXED = re.compile(r"/m/[^/]+/body/\d+$")   # the captured page, served into <iframe sandbox>

# Reports CSP violations from every document (Playwright's init scripts are not subject to the CSP),
# with the document's state: whether plotly's stylesheet link was there, how far parsing had gone.
CSP_LISTENER = """document.addEventListener("securitypolicyviolation", function (e) {
  var nav = performance.getEntriesByType("navigation").map(function (n) { return n.type; }).join(",");
  window.__tamperscopeCsp([e.documentURI, e.effectiveDirective, "blocked", e.blockedURI, "at",
    e.sourceFile + ":" + e.lineNumber + ":" + e.columnNumber, "(readyState " + document.readyState,
    "navigation " + nav, "plotly.css link " + !!document.getElementById("plotly.js-style-global") + ")"].join(" "));
});"""


@dataclass
class Guard:
    """What a page did that it must not: console errors, uncaught errors, CSP violations, foreign requests.

    Messages from a sandboxed captured page are kept apart (`sandboxed`): there the browser refusing
    the page's scripts and fetches is the defence working, and a test may even require it.
    """

    base: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    sandboxed: list[str] = field(default_factory=list)

    def local(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            return True
        return parts.scheme == "http" and parts.netloc == urlsplit(self.base).netloc

    def in_sandbox(self, url: str) -> bool:
        return self.local(url) and bool(SANDBOXED.search(urlsplit(url).path))

    def problems(self) -> list[str]:
        return ([f"console: {m}" for m in self.console_errors] + [f"pageerror: {m}" for m in self.page_errors]
                + [f"csp: {m}" for m in self.csp_violations] + [f"foreign request: {u}" for u in self.foreign])

    def check(self) -> None:
        problems = self.problems()
        assert not problems, "\n".join(problems)


def guard_page(browser: Any, base: str, **context_options: Any) -> tuple[Any, Any, Guard]:
    """A fresh context and page with every listener attached; returns (context, page, guard).

    Every request is intercepted: to the explorer it goes on, anywhere else it is aborted and recorded.
    """
    g = Guard(base)
    context = browser.new_context(base_url=base, **context_options)

    def route(r: Any) -> None:
        url = r.request.url
        g.requests.append(url)
        if g.local(url):
            r.continue_()
        else:
            g.foreign.append(url)
            r.abort()

    def csp_report(text: str) -> None:
        document = text.split(" ", 1)[0]
        (g.sandboxed if g.in_sandbox(document) else g.csp_violations).append(text)

    context.route("**/*", route)
    context.expose_function("__tamperscopeCsp", csp_report)
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()

    def console(msg: Any) -> None:
        where = str(msg.location.get("url", "") or "")
        text = f"{msg.text} @ {where}"
        if g.in_sandbox(where):
            g.sandboxed.append(text)
        elif "Content Security Policy" in msg.text or "Content-Security-Policy" in msg.text:
            g.csp_violations.append(text)
        elif msg.type == "error":
            g.console_errors.append(text)

    page.on("console", console)
    page.on("pageerror", lambda exc: g.page_errors.append(str(exc)))
    return context, page, g


def open_page(page: Any, path: str, status: int = 200) -> Any:
    """Go to ``path`` on the explorer and wait until every chart on it reports being drawn."""
    response = page.goto(path, wait_until="load")
    assert response is not None and response.status == status, (path, response and response.status)
    # Functions, not expressions: Playwright evaluates an expression with eval(), which the CSP refuses.
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.chart')).every(n => n.dataset.drawn === 'true')",
        timeout=15000)
    return response


def pwned(page: Any) -> dict[str, str]:
    """``typeof window.__pwned`` in the top page and in every frame, by frame URL."""
    return {f"{i}:{frame.url}": frame.evaluate("typeof window.__pwned") for i, frame in enumerate(page.frames)}


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether two bounding boxes (Playwright's x, y, width, height) intersect."""
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


# Per table with a one-row head: each column's heading, its alignment, and whether every body cell under it that
# is not blank holds a number (td.num), at least one of them.
_COLUMNS_JS = """() => Array.from(document.querySelectorAll('table')).flatMap(t => {
    const heads = t.tHead && t.tHead.rows.length === 1 ? Array.from(t.tHead.rows[0].cells) : [];
    if (!heads.length || heads.some(h => h.colSpan > 1)) return [];
    const rows = Array.from(t.tBodies).flatMap(b => Array.from(b.rows)).filter(r => r.cells.length === heads.length);
    if (!rows.length) return [];
    return heads.map((h, i) => {
        const cells = rows.map(r => r.cells[i]);
        const filled = cells.filter(c => c.innerText.trim() !== '');
        const numbers = filled.length > 0 && filled.every(c => c.tagName === 'TD' && c.classList.contains('num'));
        return [h.innerText.trim(), getComputedStyle(h).textAlign, numbers];
    });
})"""


def table_columns(page: Any) -> list[tuple[str, str, bool]]:
    """(heading, its computed text-align, whether the column holds numbers) for every column of every table."""
    return [tuple(c) for c in page.evaluate(_COLUMNS_JS)]


def misaligned_headings(page: Any) -> list[tuple[str, str, bool]]:
    """Headings not aligned with their column: numbers are right-aligned, so their heading must be too (a heading
    on the left of a wide column stood over the previous column's numbers), and text is left-aligned."""
    return [c for c in table_columns(page) if (c[1] == "right") != c[2]]
