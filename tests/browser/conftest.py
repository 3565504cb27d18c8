"""Browser-test fixtures: a real ``tamperscope serve`` on loopback, fed through the submission endpoints,
and Debian's chromium driven by Playwright (never a downloaded browser; see `harness.py`).

* `explorer` (session): the server on 127.0.0.1:<free port> with a fresh DuckDB file, fed through
  the submission endpoints; ready once the store shows every acknowledged measurement;
* `browser` (module): one headless chromium per test module;
* `guarded` (function): a page in a fresh context, and its `Guard`; the test fails at teardown on
  any console error, page error, CSP violation or request leaving 127.0.0.1.

Where chromium is missing the tests skip, unless ``TAMPERSCOPE_REQUIRE_LAB=1`` or ``CI=true``, where
they fail: in CI the browser tests must run.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tamperscope.collector.testing import free_port
from tests.browser.harness import CHROMIUM, MUST_RUN, Explorer, Guard, feed, guard_page, start_server


@pytest.fixture(scope="session")
def explorer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Explorer]:
    workdir = tmp_path_factory.mktemp("browser")
    port = free_port()
    log = workdir / "serve.log"
    proc = start_server(workdir / "explorer.duckdb", port, log)
    ex = Explorer(url=f"http://127.0.0.1:{port}", proc=proc, log=log)
    try:
        with httpx.Client(base_url=ex.url, timeout=30) as client:
            feed(client, ex)
            # The store follows the acknowledgements by one transaction: wait until every one is readable.
            deadline = time.monotonic() + 30
            while client.get("/index.json").json()["totals"]["measurement_count"] != ex.total:
                assert time.monotonic() < deadline, "acknowledged measurements did not reach the store"
                time.sleep(0.1)
            # Warm up: the server builds and gzips the 4.8 MB plotly bundle on the first request.
            assert client.get("/static/plotly.min.js", headers={"Accept-Encoding": "gzip"}).status_code == 200
        yield ex
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if MUST_RUN:
            pytest.fail(f"{CHROMIUM} is missing; browser tests must run here (CI / TAMPERSCOPE_REQUIRE_LAB=1)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def guarded(browser: Any, explorer: Explorer) -> Iterator[tuple[Any, Guard]]:
    """A page whose console errors, page errors, CSP violations and foreign requests fail the test."""
    context, page, g = guard_page(browser, explorer.url)
    try:
        yield page, g
        g.check()
    finally:
        context.close()
