"""Blockpages no fingerprint knows, end to end: a lab ISP serves a page no database has (in-path for two sites,
from its blockpage server for a third whose name it poisons); the probe measures them over the lab's network,
analyze stores them, and the explorer's /new-blockpages finds one template for the three sites, with a
fingerprint that recognises the ISP's page and not the site's (tests/lab/profiles/new-blockpage.toml). The
in-path page passes OONI's HTTP diff (its headers are all common ones, as the site's): the verdict, which keeps
OONI's rules, calls it accessible, and this view is where it shows."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from tamperscope.collector.config import Settings
from tamperscope.collector.testing import running_app
from tamperscope.wire.fingerprints import match_response
from tests.lab.conftest import run_nettest

pytestmark = pytest.mark.lab
PROFILES = Path(__file__).parent / "profiles"
PROFILE = str(PROFILES / "new-blockpage.toml")
PAGE = (PROFILES / "isp-notice.html").read_text()
BLOCKED = ("http://paper-one.example/", "http://paper-two.example/", "http://paper-three.example/")
FINE = "http://paper-fine.example/"


@pytest.fixture(scope="module")
def lab(lab_factory):  # type: ignore[no-untyped-def]
    return lab_factory(PROFILE)


def test_the_isps_page_is_one_new_template_with_a_fingerprint(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert match_response(PAGE, [("Content-Type", "text/html")], 200) == []  # no database knows it
    out = tmp_path / "wc.jsonl"
    measured = run_nettest(out, "web_connectivity", (*BLOCKED, FINE))
    mechanisms = {url: m["test_keys"].get("x_mechanism") for url, m in measured.items()}
    # OONI's HTTP diff lets the in-path page through: its headers are all common ones, as the site's are
    assert mechanisms == {BLOCKED[0]: "none", BLOCKED[1]: "none", BLOCKED[2]: "dns.poison", FINE: "none"}, \
        mechanisms
    db = tmp_path / "a.duckdb"
    run = subprocess.run([sys.executable, "-m", "tamperscope", "analyze", "--db", str(db), "--quiet", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as client:
        data = client.get("/new-blockpages.json").json()
        assert data["candidates"] == 1 and data["accessible_read"] == 3 and data["with_page"] == 3, data
        (group,) = data["groups"]
        assert group["title"] == "Notice from your provider"
        assert sorted(d["domain"] for d in group["domains"]) == ["paper-one.example", "paper-three.example",
                                                                  "paper-two.example"]
        assert group["mechanisms"] == {"accessible by OONI's rules": 2, "dns.poison": 1}, group["mechanisms"]
        pattern = group["pattern"]
        assert pattern and pattern in PAGE and group["pattern_matches"] == 3, pattern
        # the site's own page, as the lab's farm served it to the unblocked site, does not hold it
        site_page = measured[FINE]["test_keys"]["requests"][0]["response"]["body"]
        assert site_page and pattern not in site_page
        rows = list(csv.DictReader(io.StringIO(client.get("/new-blockpages.csv").text)))
        assert [r["pattern"] for r in rows] == [pattern] and rows[0]["location_found"] == "body"
