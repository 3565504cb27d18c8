"""The probe scored against the lab's ground truth: every built-in profile, >= 200 URLs each.

URL lists mix the demo list (real-world sites), URLs naming every rule of the
profile, and real entries of Citizen Lab's global test list, http and https.
`lab expect` gives what a correct probe concludes; the probe must agree on
`blocking` for >= 99 % of URLs and on `x_mechanism` for >= 97 %, with zero
false positives under `none`. The confusion matrix is printed.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from tamperscope.lab import manager

from .test_lab_expect import urls_for

pytestmark = pytest.mark.lab
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "test-lists" / "global.csv"
PROFILES = ["none", "tm-like", "ru-like", "gfw-like", "middlebox"]


def url_list(profile: str, minimum: int = 200) -> list[str]:
    demo = resources.files("tamperscope.data").joinpath("demo-urls.csv").read_text()
    urls = [row["url"] for row in csv.DictReader(io.StringIO(demo))]
    urls += urls_for(profile)
    for row in csv.DictReader(io.StringIO(SHARED.read_text())):
        if len({(u.split("/")[0], u.split("/")[2]) for u in urls}) >= minimum + 20:
            break
        urls.append(row["url"])
    seen: set[tuple[str, str]] = set()
    out = []
    for u in urls:
        key = (u.split(":")[0], u.split("/")[2].lower())
        if key not in seen:  # one URL per scheme and host: residual blocking is per endpoint
            seen.add(key)
            out.append(u)
    return out


def ooni_blocking(v: object) -> str:
    return "false" if v is False else str(v)


def confusion(pairs: list[tuple[str, str]]) -> str:
    labels = sorted({a for a, _ in pairs} | {b for _, b in pairs})
    counts = Counter(pairs)
    w = max(len(x) for x in labels) + 1
    lines = ["expected \\ probe".ljust(w + 2) + " ".join(lab[:10].rjust(10) for lab in labels)]
    for a in labels:
        lines.append(a.ljust(w + 2) + " ".join(str(counts.get((a, b), "")).rjust(10) for b in labels))
    return "\n".join(lines)


@pytest.mark.parametrize("profile", PROFILES)
def test_probe_agrees_with_ground_truth(lab_factory, tmp_path, profile) -> None:  # type: ignore[no-untyped-def]
    urls = url_list(profile)
    assert len(urls) >= 200
    lst = tmp_path / "list.csv"
    lst.write_text("url,category_code\n" + "".join(f"{u},X\n" for u in urls))
    exp = subprocess.run([sys.executable, "-m", "tamperscope", "lab", "expect", "--profile", profile, "--list", str(lst)],
                         capture_output=True, text=True, check=True).stdout
    expected = {r["url"]: r for r in csv.DictReader(io.StringIO(exp))}
    lab_factory(profile)
    out = tmp_path / "out.jsonl"
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "run", "web_connectivity", "--list", str(lst),
                                            "--yes", "--parallel", "32", "--no-progress", "--timeout", "40",
                                            "-o", str(out)]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    got = {}
    for line in out.read_text().splitlines():
        m = json.loads(line)
        got[m["input"]] = m["test_keys"]
    assert set(got) == set(urls)
    block_pairs = [(expected[u]["blocking"], ooni_blocking(got[u]["blocking"])) for u in urls]
    mech_pairs = [(expected[u]["mechanism"], got[u]["x_mechanism"]) for u in urls]
    block_ok = sum(a == b for a, b in block_pairs) / len(urls)
    mech_ok = sum(a == b for a, b in mech_pairs) / len(urls)
    wrong = [(u, expected[u]["mechanism"], got[u]["x_mechanism"], ooni_blocking(got[u]["blocking"])) for u in urls
             if expected[u]["mechanism"] != got[u]["x_mechanism"] or expected[u]["blocking"] != ooni_blocking(got[u]["blocking"])]
    print(f"\n{profile}: {len(urls)} URLs, blocking agreement {block_ok:.1%}, mechanism agreement {mech_ok:.1%}")
    print(confusion(mech_pairs))
    for w in wrong[:10]:
        print("  disagree:", w)
    if profile == "none":
        assert all(got[u]["blocking"] is False for u in urls), wrong[:5]
    assert block_ok >= 0.99, wrong[:10]
    assert mech_ok >= 0.97, wrong[:10]
