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
from tamperscope.lab import manager
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


def test_the_probe_recognises_the_page_with_a_fingerprint_of_ones_own(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same ISP, measured again with the fingerprint /new-blockpages would propose, given to `run
    --fingerprints`: the pages OONI's diff let through are blockpages now, in the probe's own verdict."""
    mine = tmp_path / "mine.csv"
    mine.write_text("name,common_name,pattern,location_found,exp_url,confidence_no_fp,source,scope,"
                    "expected_countries,notes\n"
                    "lab_notice,Notice from your provider,This content was closed under a decision of the National "
                    "Board,body,,,[],isp,[],\n")
    measured = run_nettest(tmp_path / "wc.jsonl", "web_connectivity", (*BLOCKED, FINE),
                           ("--fingerprints", str(mine)))
    found = {url: (m["test_keys"]["x_mechanism"], m["test_keys"]["x_fingerprints"]) for url, m in measured.items()}
    assert found[BLOCKED[0]] == found[BLOCKED[1]] == ("http.blockpage", ["local/lab_notice"]), found
    assert found[BLOCKED[2]][0] == "dns.poison" and found[BLOCKED[2]][1] == ["local/lab_notice"], found
    assert found[FINE] == ("none", []), found
    # a bad file stops the run before anything is measured, in one line
    (tmp_path / "bad.csv").write_text("name,pattern\n")
    out = tmp_path / "none.jsonl"
    run = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "run", "web_connectivity", "--yes",
                                            "--no-progress", "-o", str(out), "-i", FINE, "--fingerprints",
                                            str(tmp_path / "bad.csv")]),  # in the lab, should it measure after all
                         env=manager.client_env(), capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "no fingerprint in it" in run.stderr and run.stderr.count("\n") == 1
    assert not out.exists()
