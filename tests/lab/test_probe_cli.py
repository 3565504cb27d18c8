"""The probe as a user runs it in the lab: privacy, dnscheck, resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tamperscope.lab import addresses as A
from tamperscope.lab import manager

pytestmark = pytest.mark.lab


def probe(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "run", *args, "--yes", "--no-progress"]),
                          env=manager.client_env(), capture_output=True, text=True, timeout=timeout)


def read(path) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(line) for line in path.read_text().splitlines()]


def measure_once(nettest: str, out, *args: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """`tamperscope run NETTEST` (no input) in the lab's client: its one measurement's test_keys."""
    res = probe(nettest, "-o", str(out), *args)
    assert res.returncode == 0, res.stderr
    (m,) = read(out)
    assert m["input"] is None and m["test_name"] == nettest
    return m["test_keys"]  # type: ignore[no-any-return]


def test_own_address_is_scrubbed_everywhere(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("none")  # the whoami page prints the address it sees: the client's
    out = tmp_path / "m.jsonl"
    res = probe("web_connectivity", "-i", "http://whoami.example.net/whoami", "-i", "https://whoami.example.net/whoami",
                "-o", str(out))
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    assert A.CLIENT not in text
    # the page also styles it in parts and lets it wrap: "<span>198</span>.<span>18</span>…", "198.<wbr>18.<wbr>…"
    assert "<span>" + "</span>.<span>".join(A.CLIENT.split(".")) + "</span>" not in text
    assert A.CLIENT.replace(".", ".<wbr>") not in text
    ms = read(out)
    assert all(m["probe_ip"] == "127.0.0.1" for m in ms)
    bodies = [r["response"]["body"] for m in ms for r in m["test_keys"]["requests"] if r["response"]["body"]]
    assert bodies and all("You are [scrubbed]<p><span>[scrubbed]</span></p><p>[scrubbed]</p>" in b for b in bodies)
    hdrs = [r["response"]["headers"].get("X-Client-IP") for m in ms for r in m["test_keys"]["requests"]]
    assert "[scrubbed]" in hdrs
    assert ms[0]["probe_asn"] == "AS64500" and ms[0]["resolver_ip"] == A.ISP_RESOLVER


def test_dnscheck_injection_trap_and_poison(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("gfw-like")
    out = tmp_path / "d.jsonl"
    res = probe("dnscheck", "-i", "www.google.com", "-i", "example.com", "-o", str(out))
    assert res.returncode == 0, res.stderr
    by = {m["input"]: m["test_keys"] for m in read(out)}
    g = by["www.google.com"]
    assert g["x_injection"]["answers"] == ["198.18.250.3"] and g["x_mechanism"] == "dns.injection" and g["blocking"] == "dns"
    assert {lk["engine"] for lk in g["x_lookups"].values()} == {"system", "udp", "tcp", "dot", "doh"}
    enc = [lk for lk in g["x_lookups"].values() if lk["engine"] in ("dot", "doh")]
    assert all(lk["failure"] is None and lk["addrs"] and lk["addrs"][0].startswith("198.19.") for lk in enc)
    assert by["example.com"]["blocking"] is False and by["example.com"]["x_injection"]["answers"] == []
    lab_factory("ru-like")
    out2 = tmp_path / "d2.jsonl"
    assert probe("dnscheck", "-i", "meduza.io", "-o", str(out2)).returncode == 0
    m = read(out2)[0]["test_keys"]
    assert m["x_lookups"]["system"]["addrs"] == [A.ISP_BLOCKPAGE]
    assert m["x_mechanism"] == "dns.poison" and m["blocking"] == "dns"


def test_killed_run_resumes_without_duplicates(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("none")
    urls = [f"https://site{i}.example.org/" for i in range(60)]
    lst = tmp_path / "l.txt"
    lst.write_text("\n".join(urls) + "\n")
    out = tmp_path / "r.jsonl"
    argv = manager.exec_argv([sys.executable, "-m", "tamperscope", "run", "web_connectivity", "--list", str(lst), "--yes",
                              "--no-progress", "--parallel", "2", "-o", str(out)])
    proc = subprocess.Popen(argv, env=manager.client_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 10):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = out.read_text().count("\n")
    assert 10 <= first < 60
    with open(out, "ab") as f:
        f.write(b'{"torn": ')  # what a kill in the middle of a write leaves
    res = probe("web_connectivity", "--list", str(lst), "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert f"({first} already in" in res.stderr
    inputs = [m["input"] for m in read(out)]
    assert sorted(inputs) == sorted(urls)  # every input exactly once, the torn line gone


def test_category_measures_only_those_entries_of_a_test_list(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """OONI Probe's website categories: `--category` keeps the list entries of those Citizen Lab codes (in any
    case); an --input URL is measured all the same; a code the list does not hold names the ones it does."""
    lab_factory("none")
    lst = tmp_path / "cl.csv"
    lst.write_text("url,category_code,category_description,date_added,source,notes\n"
                   "http://www.bbc.com/,NEWS,News Media,2014-04-15,citizenlab,\n"
                   "https://x.com/,COMM,,2014-04-15,citizenlab,\n"
                   "https://www.amnesty.org/,HUMR,,2014-04-15,citizenlab,\n"
                   "https://facebook.com/,GRP,,2014-04-15,citizenlab,\n")
    out = tmp_path / "m.jsonl"
    res = probe("web_connectivity", "--list", str(lst), "--category", "news,humr", "-i", "https://signal.org/",
                "-o", str(out), "--summary")
    assert res.returncode == 0, res.stderr
    assert sorted(m["input"] for m in read(out)) == ["http://www.bbc.com/", "https://signal.org/",
                                                     "https://www.amnesty.org/"]
    assert "web_connectivity on 3 input(s)" in res.stderr
    # --summary sums them up by category too (nothing is blocked in the `none` lab): the --input URL in no list
    table = res.stdout.split("\n\n", 1)[1].splitlines()
    assert [line.rsplit(None, 2) for line in table[2:]] == [
        ["Human Rights Issues (HUMR)", "1", "0"], ["News Media (NEWS)", "1", "0"], ["Not in a test list", "1", "0"]]
    wrong = probe("web_connectivity", "--list", str(lst), "--category", "NEWS,LGBT", "-o", str(tmp_path / "w.jsonl"))
    assert wrong.returncode == 2 and not (tmp_path / "w.jsonl").exists()
    assert wrong.stderr == ("tamperscope: --category LGBT: no entry of the list is of this category; the list holds: "
                            "COMM 1, GRP 1, HUMR 1, NEWS 1\n")


def test_max_runtime_stops_starting_and_the_same_command_makes_the_rest(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """OONI Probe's max runtime: one measurement at a time, 0.2 s allowed; real lab measurements take longer than
    that each (the control helper's fetch alone), so some are left, said, and made by the same command again."""
    lab_factory("none")
    urls = ["http://www.bbc.com/", "https://x.com/", "https://signal.org/", "https://facebook.com/",
            "https://www.amnesty.org/", "https://www.torproject.org/"]
    args = [a for u in urls for a in ("-i", u)]
    out = tmp_path / "m.jsonl"
    first = probe("web_connectivity", *args, "--parallel", "1", "--max-runtime", "0.2", "-o", str(out))
    assert first.returncode == 0, first.stderr
    made = len(read(out))
    assert 1 <= made < len(urls), first.stderr
    assert first.stderr.strip().splitlines()[-1] == (
        f"tamperscope: --max-runtime 0.2 s reached: {len(urls) - made} measurement(s) not started; the same command "
        f"makes them next (what is in {out} is skipped)")
    rest = probe("web_connectivity", *args, "-o", str(out))
    assert rest.returncode == 0, rest.stderr
    assert f"({made} already in {out})" in rest.stderr
    assert sorted(m["input"] for m in read(out)) == sorted(urls)
