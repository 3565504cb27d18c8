"""`lab expect` agrees with what plain clients see, for every built-in profile.

Each URL list mixes the profile's blocked names (every rule), redirecting and
innocent sites, http and https. A plain client (tests/lab/plainclient.py, no
code of ours) walks each URL and names what happened; `lab expect` must agree
on every URL.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from tamperscope.lab import farm, manager

pytestmark = pytest.mark.lab
INNOCENT = ["example.com", "www.example.org", "news.example.net", "redirect.example.com", "www.wikimedia.de",
            "www.debian.org", "www.python.org", "duckduckgo.com"]
PROFILE_DIR = Path(__file__).parent / "profiles"


def urls_for(profile_name: str) -> list[str]:
    p = manager.resolve_profile(profile_name)
    hosts: list[str] = list(INNOCENT)
    for r in p.rules:
        for d in r.domains[:3]:
            hosts += [d, f"www.{d}"] if r.suffix else [d]
        if r.regex and "tor" in r.regex:
            hosts += ["www.history.com", "store.steampowered.com"]
        if r.regex and "falun" in r.regex:
            hosts += ["www.falundafa.org", "minghui.org"]
        if r.regex and r.regex.startswith("^drop-dns"):
            hosts += ["drop-dns.example.com"]
    hosts = list(dict.fromkeys(hosts))
    return [f"{scheme}://{h}/" for h in hosts for scheme in ("http", "https")]


PROFILES = ["none", "tm-like", "ru-like", "gfw-like", "middlebox", str(PROFILE_DIR / "all-actions.toml")]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: Path(p).stem)
def test_expect_agrees_with_plain_clients(lab_factory, tmp_path, profile) -> None:  # type: ignore[no-untyped-def]
    urls = urls_for(profile)
    lst = tmp_path / "urls.csv"
    lst.write_text("url,category_code\n" + "".join(f"{u},TEST\n" for u in urls))
    out = subprocess.run([sys.executable, "-m", "tamperscope", "lab", "expect", "--profile", profile, "--list", str(lst)],
                         capture_output=True, text=True, check=True).stdout
    expected = {row["url"]: row for row in csv.DictReader(io.StringIO(out))}
    assert list(expected) == urls
    lab = lab_factory(profile)
    truth = {}
    for u in urls:
        host = u.split("/")[2]
        for h in (host, host.removeprefix("redirect.")):
            truth[h] = None if farm.is_nxdomain(h) else lab.addr(h)
    # the redirect targets too
    results = lab.run([{"op": "url", "args": [u, truth]} for u in urls], parallel=16, timeout=300)
    mismatches = [(u, expected[u]["mechanism"], r) for u, r in zip(urls, results) if r["mechanism"] != expected[u]["mechanism"]]
    mechs = sorted({row["mechanism"] for row in expected.values()})
    print(f"{Path(profile).stem}: {len(urls)} URLs, mechanisms {mechs}, mismatches {len(mismatches)}")
    assert not mismatches, mismatches[:5]
    if Path(profile).stem != "none":
        assert len(mechs) >= 2  # the list really exercises the profile
    else:
        assert mechs == ["none"]
