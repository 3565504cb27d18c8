"""`tamperscope remote` from the lab's outside vantage: Censored Planet's remote measurement, scored
against the censor's ground truth (tests/lab/profiles/remote.toml filters traffic entering the country)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tamperscope.lab import addresses as A
from tamperscope.lab import manager
from tamperscope.wire.tlshello import ClientHello, parse_client_hello

pytestmark = pytest.mark.lab

PROFILE = str(Path(__file__).parent / "profiles" / "remote.toml")

# What a correct remote measurement concludes, and the rule the censor logs for it (None: nothing).
DNS = {"inject.example": ("dns.injection", "in-dns"), "poison.example": ("dns.poison", "isp-poison"),
       "dnsdrop.example": ("dns.drop", "dns-drop"), "example.org": ("none", None),
       "rst.example": ("none", None), "egress-only.example": ("none", None)}
WEB = {"rst.example": ("http.rst", "in-rst"), "page.example": ("http.blockpage", "in-page"),
       "sni.example": ("tls.rst", "in-sni"), "snidrop.example": ("tls.drop", "in-sni-drop"),
       "example.org": ("none", None), "inject.example": ("none", None),
       # the rule is for traffic leaving the country only: from outside nothing happens
       "egress-only.example": ("none", None)}


def remote(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "tamperscope", "remote", *args, "--yes", "--no-progress"]
    return subprocess.run(manager.exec_argv(argv, A.NS_OUTSIDE), env=manager.client_env(), capture_output=True,
                          text=True, timeout=timeout)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def inputs(names: dict[str, object]) -> list[str]:
    return [arg for name in names for arg in ("-i", name)]


@pytest.fixture(scope="module")
def lab(lab_factory):  # type: ignore[no-untyped-def]
    return lab_factory(PROFILE)


@pytest.fixture(scope="module")
def runs(lab, tmp_path_factory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("remote")
    dns, web = out / "dns.jsonl", out / "web.jsonl"
    # side by side: each waits out its own retries on what the censor drops (12 s for a DNS drop, 10 s for a hello)
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(remote, "dns", "-V", A.ISP_RESOLVER, *inputs(DNS), "-o", str(dns)),
                pool.submit(remote, "web", "-V", A.ISP_WEB, *inputs(WEB), "-o", str(web))]
    for run in runs:
        assert run.result().returncode == 0, run.result().stderr
    return dns, web


def test_remote_verdicts_match_the_censors_ground_truth(lab, runs) -> None:  # type: ignore[no-untyped-def]
    log = lab.log()
    for path, expected, test_name, layers in ((runs[0], DNS, "remote_dns", {"dns"}),
                                              (runs[1], WEB, "remote_web", {"http", "tls", "ip"})):
        ms = read(path)
        assert sorted(m["input"] for m in ms) == sorted(expected)
        for m in ms:
            tk = m["test_keys"]
            mechanism, rule = expected[m["input"]]
            assert m["test_name"] == test_name
            assert tk["x_mechanism"] == mechanism, (m["input"], tk["x_mechanism"], tk["x_evidence"])
            from_outside = [e for e in log if e["name"] == m["input"] and e["layer"] in layers
                            and e["client"].startswith(A.OUTSIDE + ":")]
            if rule is None:
                assert tk["blocking"] is False and tk["accessible"] is True and tk["x_status"] == "ok", m["input"]
                assert not from_outside, from_outside  # and the censor indeed did nothing to the measurer
            else:
                assert tk["blocking"] not in (False, None) and tk["x_status"] == "anomaly"
                assert any(e["rule"] == rule for e in from_outside), (m["input"], from_outside)
    dns = {m["input"]: m["test_keys"] for m in read(runs[0])}
    assert dns["poison.example"]["x_fingerprints"]  # the page at the forged address is a known blockpage
    assert dns["inject.example"]["x_dns_duplicate_responses"]  # the injector's answer, then the resolver's
    web = {m["input"]: m["test_keys"] for m in read(runs[1])}
    assert web["page.example"]["x_fingerprints"] and web["page.example"]["x_confidence"] == 0.95
    # the egress-only rule does fire for the same name when someone inside fetches it from abroad
    inside = lab.one("http_get", lab.addr("egress-only.example"), "egress-only.example")
    assert inside["error"] == "reset" and lab.logged("egress-only", "egress-only.example")


def test_the_measurement_is_the_vantages_and_never_names_the_measurer(runs) -> None:  # type: ignore[no-untyped-def]
    for path, vantage in ((runs[0], A.ISP_RESOLVER), (runs[1], A.ISP_WEB)):
        text = path.read_text()
        assert A.OUTSIDE not in text  # the measurer's address is scrubbed
        ms = read(path)
        assert len({m["report_id"] for m in ms}) == 1
        for m in ms:
            assert m["probe_ip"] == "127.0.0.1" and m["probe_asn"] == "AS64500"  # the ISP's network, not ours
            assert m["annotations"]["vantage"] == vantage and m["test_keys"]["vantage"] == vantage
    assert all(m["resolver_ip"] == A.ISP_RESOLVER for m in read(runs[0]))


def test_analyze_reaches_the_probes_verdicts(runs, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "verdicts.jsonl"
    res = subprocess.run([sys.executable, "-m", "tamperscope", "analyze", str(runs[0]), str(runs[1]),
                          "--db", str(tmp_path / "a.duckdb"), "--jsonl", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    derived = {(v["test_name"], v["input"]): v["x_mechanism"] for v in read(out)}
    probe = {(m["test_name"], m["input"]): m["test_keys"]["x_mechanism"] for p in runs for m in read(p)}
    assert derived == probe and len(probe) == len(DNS) + len(WEB)


def test_a_vantage_that_is_no_resolver_is_a_failure_and_a_rerun_resumes(runs) -> None:  # type: ignore[no-untyped-def]
    dns = runs[0]
    before = read(dns)
    # the web server is no resolver: every measurement through it fails, none accuses the network
    res = remote("dns", "-V", A.ISP_RESOLVER, "-V", A.ISP_WEB, "-i", "inject.example", "-i", "example.org",
                 "-o", str(dns), timeout=120)
    assert res.returncode == 0, res.stderr
    assert "2 measurement(s) already in" in res.stderr
    after = read(dns)
    assert after[:len(before)] == before
    new = after[len(before):]
    assert sorted(m["input"] for m in new) == ["example.org", "inject.example"]
    for m in new:
        tk = m["test_keys"]
        assert tk["vantage"] == A.ISP_WEB and tk["x_status"] == "failure" and tk["blocking"] is None


def test_recheck_measures_each_blocked_pair_again_through_its_vantage(lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`remote --recheck`: each (vantage, domain) found blocked is measured again through the same vantage, and the
    analysis confirms it from the two; a pair that went through is not measured again."""
    out = tmp_path / "dns.jsonl"
    res = remote("dns", "-V", A.ISP_RESOLVER, "-i", "inject.example", "-i", "poison.example", "-i", "example.org",
                 "--recheck", "--recheck-after", "1", "-o", str(out), timeout=200)
    assert res.returncode == 0, res.stderr
    got = read(out)
    assert len(got) == 5, [(m["input"], m["annotations"]) for m in got]
    again = got[3:]
    assert sorted((m["input"], m["test_keys"]["x_mechanism"]) for m in again) == [
        ("inject.example", "dns.injection"), ("poison.example", "dns.poison")]
    assert all(m["annotations"]["recheck"] == "true" and m["annotations"]["vantage"] == A.ISP_RESOLVER
               and m["test_keys"]["vantage"] == A.ISP_RESOLVER for m in again)
    assert "of 2 vantage and domain pair(s) found blocked or failing, 2 the same again" in res.stderr, res.stderr
    verdicts = tmp_path / "verdicts.jsonl"
    done = subprocess.run([sys.executable, "-m", "tamperscope", "analyze", str(out), "--db", str(tmp_path / "a.duckdb"),
                           "--jsonl", str(verdicts), "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    judged = sorted((v["input"], v["x_confidence"]) for v in read(verdicts))
    assert judged == [("example.org", "ok"), ("inject.example", "confirmed"), ("inject.example", "confirmed"),
                      ("poison.example", "confirmed"), ("poison.example", "confirmed")], judged
    # the same command again: nothing to measure, nothing to recheck
    res = remote("dns", "-V", A.ISP_RESOLVER, "-i", "inject.example", "-i", "poison.example", "-i", "example.org",
                 "--recheck", "--recheck-after", "1", "-o", str(out), timeout=120)
    assert res.returncode == 0 and len(read(out)) == 5, res.stderr
    assert "no vantage and domain pair found blocked or failing is left to measure again" in res.stderr, res.stderr


def in_outside(code: str) -> str:
    res = subprocess.run(manager.exec_argv([sys.executable, "-c", code], A.NS_OUTSIDE), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-1500:]
    return res.stdout


def test_remote_measurements_go_to_a_collector_and_its_explorer(lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = 18193
    server = subprocess.Popen(manager.exec_argv([sys.executable, "-m", "tamperscope", "serve", "--db",
                                                 str(tmp_path / "c.duckdb"), "--host", "127.0.0.1", "--port",
                                                 str(port), "--rate", "0", "--read-rate", "0", "--quiet"],
                                                A.NS_OUTSIDE), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        in_outside("import socket, time\n"
                   "for _ in range(300):\n"
                   "    try:\n"
                   f"        socket.create_connection(('127.0.0.1', {port}), 0.5).close(); break\n"
                   "    except OSError: time.sleep(0.1)\n"
                   "else: raise SystemExit('the collector did not start')\n")
        res = remote("web", "-V", A.ISP_WEB, "-i", "rst.example", "-i", "example.org", "-o",
                     str(tmp_path / "w.jsonl"), "--submit", f"http://127.0.0.1:{port}",
                     "--outbox", str(tmp_path / "outbox"))
        assert res.returncode == 0, res.stderr
        assert "submitted 2 measurement(s)" in res.stderr, res.stderr
        # accepted submissions reach the store (and the listing) on the ingestor's next batch
        page = json.loads(in_outside("import json, urllib.request, sys, time\n"
                                     "for _ in range(100):\n"
                                     f"    r = urllib.request.urlopen('http://127.0.0.1:{port}/api/v1/measurements"
                                     "?limit=10', timeout=10).read().decode()\n"
                                     "    if len(json.loads(r)['results']) >= 2: break\n"
                                     "    time.sleep(0.2)\n"
                                     "sys.stdout.write(r)\n"))
        by = {r["input"]: r for r in page["results"]}
        assert set(by) == {"rst.example", "example.org"}
        assert by["rst.example"]["scores"]["mechanism"] == "http.rst" and by["rst.example"]["anomaly"] is True
        assert by["example.org"]["anomaly"] is False and by["rst.example"]["probe_asn"] == "AS64500"
        html = in_outside("import urllib.request, sys\n"
                          f"r = urllib.request.urlopen('http://127.0.0.1:{port}/m/{by['rst.example']['measurement_uid']}'"
                          ", timeout=10)\nsys.stdout.write(r.read().decode())\n")
        assert "http.rst" in html and "remote_web" in html and A.OUTSIDE not in html
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_locate_from_outside_finds_the_censor_after_the_border_router(lab) -> None:  # type: ignore[no-untyped-def]
    # CenTrace's own setting: TTL-limited triggers from outside the country to an in-country server. From the
    # client the same censor shows after the access router; from outside, after the border router.
    argv = [sys.executable, "-m", "tamperscope", "locate", "http://rst.example/", "--server", A.ISP_WEB, "--json",
            "--yes", "--runs", "1", "--wait", "0.3"]
    res = subprocess.run(manager.exec_argv(argv, A.NS_OUTSIDE), env=manager.client_env(), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    loc = json.loads(res.stdout)
    assert loc["address"] == A.ISP_WEB and loc["layer"] == "http"
    assert loc["router"] == A.BORDER_OUT and loc["placement"] == "in-path", loc
    assert any(e["rule"] == "in-rst" and e["client"].startswith(A.OUTSIDE + ":") for e in lab.logged("in-rst"))


def test_capture_names_the_equipment_from_outside(lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--capture: the forged packets, seen from outside, carry the rules' header values (the equipment's
    signature), as the inside probe's do."""
    web, dns = tmp_path / "w.jsonl", tmp_path / "d.jsonl"
    res = remote("web", "-V", A.ISP_WEB, "-i", "rst.example", "-i", "sni.example", "-i", "example.org",
                 "--capture", "-o", str(web))
    assert res.returncode == 0, res.stderr
    res = remote("dns", "-V", A.ISP_RESOLVER, "-i", "inject.example", "--capture", "-o", str(dns))
    assert res.returncode == 0, res.stderr
    by = {m["input"]: m["test_keys"] for m in read(web) + read(dns)}
    for name in ("rst.example", "sni.example"):
        sig = by[name]["x_signature"]
        assert sig["key"] == "tcp/RA/ttl128/win0/ipid30000" and sig["remote"].startswith(A.ISP_WEB + ":"), sig
        assert sig["ttl"] == 127  # one router (the border) between the censor and the measurer
    assert by["inject.example"]["x_signature"]["key"] == "udp/ttl64/ipid0"
    assert "x_signature" not in by["example.org"] and A.OUTSIDE not in web.read_text()


def test_remote_web_over_echo_finds_the_host_read_on_any_port(lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--protocol echo (Quack) sends a GET naming each domain to the in-country server's echo service (port 7),
    between control echoes: the censor reading Hosts entering the country on port 7 too resets rst.example's and
    answers page.example's with its blockpage, and the other domains come back byte for byte."""
    out = tmp_path / "echo.jsonl"
    names = {"rst.example": ("http.rst", "in-rst"), "page.example": ("http.blockpage", "in-page"),
             "example.org": ("none", None), "sni.example": ("none", None)}
    res = remote("web", "-V", A.ISP_WEB, "--protocol", "echo", *inputs(names), "-o", str(out))
    assert res.returncode == 0, res.stderr
    got = {m["input"]: m["test_keys"] for m in read(out)}
    assert {n: tk["x_mechanism"] for n, tk in got.items()} == {n: v[0] for n, v in names.items()}
    for name, tk in got.items():
        assert tk["protocols"] == ["echo"] and {c["port"] for c in tk["tcp_connect"]} == {7}
        controls = [e for e in tk["x_echo"] if "test" not in e["tags"]]
        assert len(controls) >= 2 and all(e["failure"] is None and e["received"] == e["sent"] for e in controls)
        assert all(f"Host: {'example.com'}" in e["sent"] for e in controls)
        tests = [e for e in tk["x_echo"] if "test" in e["tags"]]
        assert tests and all(f"Host: {name}\r\n" in e["sent"] for e in tests)
        if names[name][0] == "none":
            assert tk["x_status"] == "ok" and all(e["received"] == e["sent"] for e in tests)
    rst = got["rst.example"]
    assert rst["x_confidence"] >= 0.85 and any(p.startswith("test_keys.x_echo[") for p in rst["x_evidence"])
    assert all(e["failure"] in ("connection_reset", "eof_error") for e in rst["x_echo"] if "test" in e["tags"])
    page = got["page.example"]
    assert page["x_confidence"] == 0.95 and page["x_fingerprints"]  # the forged answer is a known blockpage
    forged = [e for e in page["x_echo"] if "test" in e["tags"]]
    assert forged and all(e["failure"] == "echo_mismatch" and "HTTP/1.1 200" in e["received"] for e in forged)
    for rule, name in (("in-rst", "rst.example"), ("in-page", "page.example")):
        log = [e for e in lab.logged(rule) if e["client"].startswith(A.OUTSIDE + ":") and e["server"].endswith(":7")]
        assert log and {e["name"] for e in log} == {name}
    assert A.OUTSIDE not in out.read_text()


def test_remote_web_over_echo_tls_finds_the_sni_read_on_any_port(lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--protocol echo_tls (Quack's TLS payload) sends a real ClientHello naming each domain as its SNI to the
    echo service: the censor reading SNIs entering the country on port 7 too resets sni.example's and drops
    snidrop.example's; its HTTP rules do not read a ClientHello, and the other hellos come back byte for byte."""
    out = tmp_path / "echo_tls.jsonl"
    names = {"sni.example": ("tls.rst", "in-sni"), "snidrop.example": ("tls.drop", "in-sni-drop"),
             "rst.example": ("none", None), "example.org": ("none", None)}
    # one try: a dropped hello is tried once, not waited for twice (the drop is the censor's, the lab loses nothing)
    res = remote("web", "-V", A.ISP_WEB, "--protocol", "echo_tls", "--tries", "1", *inputs(names), "-o", str(out))
    assert res.returncode == 0, res.stderr
    got = {m["input"]: m["test_keys"] for m in read(out)}
    assert {n: tk["x_mechanism"] for n, tk in got.items()} == {n: v[0] for n, v in names.items()}
    for name, tk in got.items():
        assert tk["protocols"] == ["echo_tls"] and {c["port"] for c in tk["tcp_connect"]} == {7}
        controls = [e for e in tk["x_echo"] if "test" not in e["tags"]]
        assert len(controls) >= 2 and all(e["failure"] is None and e["received"] == e["sent"] for e in controls)
        tests = [e for e in tk["x_echo"] if "test" in e["tags"]]
        assert tests and all(parse_client_hello(base64.b64decode(e["sent"]["data"])) == ClientHello(name, ("http/1.1",))
                             for e in tests)
        if names[name][0] == "none":
            assert tk["x_status"] == "ok" and all(e["received"] == e["sent"] for e in tests)
        else:
            assert tk["x_status"] == "anomaly" and any(p.startswith("test_keys.x_echo[") for p in tk["x_evidence"])
    assert got["sni.example"]["x_confidence"] >= 0.85
    assert all(e["failure"] in ("connection_reset", "eof_error") for e in got["sni.example"]["x_echo"]
               if "test" in e["tags"])
    assert {e["failure"] for e in got["snidrop.example"]["x_echo"] if "test" in e["tags"]} == {"generic_timeout_error"}
    for rule, name in (("in-sni", "sni.example"), ("in-sni-drop", "snidrop.example")):
        log = [e for e in lab.logged(rule) if e["client"].startswith(A.OUTSIDE + ":") and e["server"].endswith(":7")]
        assert log and {e["name"] for e in log} == {name}
    assert A.OUTSIDE not in out.read_text()


def test_remote_web_over_quic_finds_the_sni_read_in_the_initial(lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--protocol quic sends each domain as the SNI of a QUIC Initial to the in-country server, between control
    handshakes: the censor reading Initials entering the country drops quicsni.example's (quic.drop, logged for
    the outside vantage), and nothing else; the TLS rules do not see QUIC."""
    out = tmp_path / "quic.jsonl"
    names = {"quicsni.example": ("quic.drop", "in-quic-sni"), "example.org": ("none", None),
             "sni.example": ("none", None)}
    res = remote("web", "-V", A.ISP_WEB, "--protocol", "quic", *inputs(names), "-o", str(out))
    assert res.returncode == 0, res.stderr
    got = {m["input"]: m["test_keys"] for m in read(out)}
    assert {n: tk["x_mechanism"] for n, tk in got.items()} == {n: v[0] for n, v in names.items()}
    blocked = got["quicsni.example"]
    assert blocked["x_status"] == "anomaly" and blocked["blocking"] == "http-failure"
    assert any(p.startswith("test_keys.quic_handshakes[") for p in blocked["x_evidence"])
    tests = [q for q in blocked["quic_handshakes"] if "test" in q["tags"]]
    assert tests and all(q["failure"] == "generic_timeout_error" and q["server_name"] == "quicsni.example"
                         for q in tests)
    controls = [q for q in blocked["quic_handshakes"] if "test" not in q["tags"]]
    assert controls and all(q["negotiated_protocol"] == "h3" for q in controls)  # the vantage answered them
    assert not blocked["tcp_connect"] and blocked["protocols"] == ["quic"]
    log = [e for e in lab.logged("in-quic-sni") if e["client"].startswith(A.OUTSIDE + ":")]
    assert log and {e["name"] for e in log} == {"quicsni.example"}
    assert A.OUTSIDE not in out.read_text()


def test_remote_web_over_echo_ech_finds_ech_blocked_by_its_public_name(lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--protocol echo_ech sends the echo service what a browser sends the domain: crypto.cloudflare.com's hello
    sealed with the config its HTTPS record publishes, whose public name cloudflare-ech.com is all the censor
    reads, so in-ech drops it entering the country; example.org publishes none, and its GREASE hello naming
    itself passes, as the control domain's does."""
    out = tmp_path / "echo_ech.jsonl"
    res = remote("web", "-V", A.ISP_WEB, "--protocol", "echo_ech", "--tries", "1", "-i", "crypto.cloudflare.com",
                 "-i", "example.org", "-o", str(out))
    assert res.returncode == 0, res.stderr
    got = {m["input"]: m["test_keys"] for m in read(out)}
    assert {n: tk["x_mechanism"] for n, tk in got.items()} == {"crypto.cloudflare.com": "tls.drop",
                                                             "example.org": "none"}
    for name, tk in got.items():
        controls = [e for e in tk["x_echo"] if "test" not in e["tags"]]
        assert controls and all(e["failure"] is None and e["received"] == e["sent"] for e in controls)
        hellos = [parse_client_hello(base64.b64decode(e["sent"]["data"])) for e in tk["x_echo"] if "test" in e["tags"]]
        outer = "cloudflare-ech.com" if name == "crypto.cloudflare.com" else name
        assert hellos and all(isinstance(h, ClientHello) and h.ech and h.sni == outer for h in hellos)
    log = [e for e in lab.logged("in-ech") if e["client"].startswith(A.OUTSIDE + ":") and e["server"].endswith(":7")]
    assert log and {e["name"] for e in log} == {"cloudflare-ech.com"}
    assert A.OUTSIDE not in out.read_text()


def test_remote_category_measures_only_those_list_entries(lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A Citizen Lab test list narrowed by --category: only its NEWS entry is measured through the resolver."""
    lst = tmp_path / "cl.csv"
    lst.write_text("url,category_code,category_description\nhttp://inject.example/,NEWS,News Media\n"
                   "http://example.org/,COMM,\nhttps://poison.example/,HUMR,\n")
    out = tmp_path / "dns.jsonl"
    res = remote("dns", "-V", A.ISP_RESOLVER, "-l", str(lst), "--category", "news", "-o", str(out), timeout=120)
    assert res.returncode == 0, res.stderr
    (m,) = read(out)
    assert m["input"] == "inject.example" and m["test_keys"]["x_mechanism"] == "dns.injection"
    # --summary sums the sites up by their category too; each domain by the list's entry for it, through two
    # vantages (the ISP's resolver and the lab's public one: only the first is inside the censored country)
    out = tmp_path / "dns-all.jsonl"
    res = remote("dns", "-V", A.ISP_RESOLVER, "-V", A.PUBLIC_RESOLVER, "-l", str(lst), "--category", "news,comm",
                 "--summary", "-o", str(out), timeout=120)
    assert res.returncode == 0, res.stderr
    measured = {(m["test_keys"]["vantage"], m["input"]): m["test_keys"]["x_mechanism"] for m in read(out)}
    assert measured == {(A.ISP_RESOLVER, "inject.example"): "dns.injection", (A.ISP_RESOLVER, "example.org"): "none",
                        (A.PUBLIC_RESOLVER, "inject.example"): "none", (A.PUBLIC_RESOLVER, "example.org"): "none"}
    table = res.stdout.split("\n\n")[1].splitlines()
    assert [line.rsplit(None, 2) for line in table[2:]] == [["News Media (NEWS)", "1", "1"], ["E-commerce (COMM)", "1", "0"]]


def test_remote_reads_a_ranked_list_and_measures_its_names(lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A list as Tranco writes it (``rank,domain``, CRLF), long enough to be read in parts: its names are measured,
    each once, and no rank becomes a domain; the censored names among them are found as the other tests find them."""
    names = [f"site{i}.bench.example" for i in range(90_000)]  # ~2 MB: split into lines a part at a time
    names[40_000:40_000] = ["inject.example", "poison.example", "example.org", "Inject.Example"]
    lst = tmp_path / "top-1m.csv"
    lst.write_bytes("".join(f"{rank},{name}\r\n" for rank, name in enumerate(names, 1)).encode())
    # measure the list's stretch around the censored names: --max-runtime would stop anywhere, so a list of
    # its middle, sliced from the same file as a user would with sed, keeps the ranks as they were
    middle = tmp_path / "middle.csv"
    middle.write_bytes(b"".join(lst.read_bytes().splitlines(keepends=True)[39_800:40_204]))
    out = tmp_path / "dns.jsonl"
    res = remote("dns", "-V", A.ISP_RESOLVER, "-l", str(middle), "--per-vantage", "32", "-o", str(out), timeout=240)
    assert res.returncode == 0, res.stderr
    measured = {m["input"]: m["test_keys"]["x_mechanism"] for m in read(out)}
    assert len(measured) == len(read(out)) == 403  # 404 lines, "Inject.Example" the same name as "inject.example"
    assert not any(name.isdigit() for name in measured)
    assert {k: measured[k] for k in ("inject.example", "poison.example", "example.org")} == {
        "inject.example": "dns.injection", "poison.example": "dns.poison", "example.org": "none"}
    assert set(measured) - {"inject.example", "poison.example", "example.org"} == set(names[39_800:40_000]) | set(
        names[40_004:40_204])
    # the whole list is read and checked before anything is measured: a bad name near its end is named by its line
    lst.write_bytes(lst.read_bytes() + b"90005,bad..name\r\n")
    res = remote("dns", "-V", A.ISP_RESOLVER, "-l", str(lst), "-o", str(tmp_path / "none.jsonl"), timeout=120)
    assert res.returncode == 2 and "top-1m.csv: line 90005: not a domain name: 'bad..name'" in res.stderr, res.stderr
    assert not (tmp_path / "none.jsonl").exists()
