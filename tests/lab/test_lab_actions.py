"""Every action the built-in profiles leave out, from a profile written from the docs alone."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tamperscope.lab import addresses as A

pytestmark = pytest.mark.lab
PROFILE = str(Path(__file__).parent / "profiles" / "all-actions.toml")


@pytest.fixture(scope="module")
def lab(lab_factory):  # type: ignore[no-untyped-def]
    return lab_factory(PROFILE)


def test_dns_nxdomain_and_drop(lab) -> None:  # type: ignore[no-untyped-def]
    res = lab.run([{"op": "dns_udp", "args": [A.PUBLIC_RESOLVER, "www.nx-me.org"]},
                   {"op": "dns_udp", "args": [A.PUBLIC_RESOLVER, "drop-dns.example.com"]},
                   {"op": "dns_system", "args": ["drop-dns.example.com"]},
                   {"op": "dns_system", "args": ["www.nx-me.org"]}], parallel=4)
    assert [r["rcode"] for r in res[0]["responses"]] == ["NXDOMAIN"]  # in-path: the query was dropped
    assert res[1]["responses"] == [] and res[1]["error"] == "timeout"
    assert res[2]["error"] == "gai:-3"  # the ISP resolver gave up: SERVFAIL -> EAI_AGAIN
    assert res[3]["error"] == "gai:-2"  # NXDOMAIN
    assert lab.logged("nx", "www.nx-me.org") and lab.logged("dnsdrop", "drop-dns.example.com")


def test_ip_rst_only_on_its_port(lab) -> None:  # type: ignore[no-untyped-def]
    ip = lab.addr("refused.example")
    res = lab.run([{"op": "tcp", "args": [ip, 443]}, {"op": "tcp", "args": [ip, 80]}])
    assert [r["error"] for r in res] == ["refused", None]
    assert lab.logged("refuse", "refused.example")


def test_http_drop_tls_drop_and_blockpage_file(lab) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    res = lab.run([{"op": "http_get", "args": [lab.addr("http-drop.example"), "http-drop.example"]},
                   {"op": "tls", "args": [lab.addr("tls-drop.example"), "tls-drop.example"]},
                   {"op": "sniff_rst", "args": [lab.addr("page.example"), "page.example"]}], parallel=3)
    assert res[0]["stage"] == "http" and res[0]["error"] == "timeout"
    assert res[1]["stage"] == "tls" and res[1]["error"] == "timeout"
    page = res[2]["result"]
    assert page["status"] == 200 and "custom-blockpage-marker" in page["body"]
    assert time.monotonic() - t0 < 10
    for rule in ("httpdrop", "tlsdrop", "page"):
        assert lab.logged(rule), rule


def test_quic_sni_drop_reads_the_name_in_the_initial(lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """sni-drop decrypts the QUIC Initial and drops by the name inside, whatever the address: the blocked name
    fails at any address, an innocent name passes at the blocked site's own address. The probe calls it quic.drop
    while TCP and TLS to the same site work."""
    import json
    import subprocess
    import sys

    from tamperscope.lab import manager

    blocked, other = lab.addr("www.quic-sni.example"), lab.addr("example.com")
    res = lab.run([{"op": "quic", "args": [blocked, "www.quic-sni.example"]},
                   {"op": "quic", "args": [other, "www.quic-sni.example"]},
                   {"op": "quic", "args": [blocked, "example.com"]},
                   {"op": "tls", "args": [blocked, "www.quic-sni.example"]}], parallel=4)
    assert [r["error"] for r in res] == ["timeout", "timeout", None, None]
    logged = lab.logged("quicsni", "www.quic-sni.example")
    assert {e["server"] for e in logged} == {f"{blocked}:443", f"{other}:443"}
    assert not lab.logged("quicsni", "example.com")
    lst = tmp_path / "l.csv"
    lst.write_text("url,category_code\nhttps://quic-sni.example/,X\n")
    out = tmp_path / "o.jsonl"
    run = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "run", "web_connectivity", "--list",
                                            str(lst), "--yes", "--no-progress", "-o", str(out)]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    tk = json.loads(out.read_text())["test_keys"]
    assert tk["x_mechanism"] == "quic.drop" and tk["accessible"] is True
    assert [(q["server_name"], q["failure"]) for q in tk["quic_handshakes"]] == [
        ("quic-sni.example", "generic_timeout_error"), ("www.example.com", None)]
    assert tk["x_quic_trigger"]["trigger"] == "sni"  # the innocent name got through to the same address


def test_delay_adds_round_trip(lab) -> None:  # type: ignore[no-untyped-def]
    from tamperscope.lab import manager

    out = manager.run_in(A.NS_CLIENT, ["ping", "-c", "3", "-i", "0.2", lab.addr("example.com")],
                         capture_output=True, text=True).stdout
    avg = float(out.strip().splitlines()[-1].split("=")[1].split("/")[1])
    assert 10.0 <= avg < 14.0, out  # 2 x 5 ms


def test_docs_example_profile_is_valid(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tamperscope.lab.blockpages import names
    from tamperscope.model.profile import load_profile

    doc = (Path(__file__).parents[2] / "docs" / "lab-profiles.md").read_text()
    example = doc.split("## A complete example", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    p = tmp_path / "example.toml"
    p.write_text(example)
    prof = load_profile(p, names())
    assert [r.id for r in prof.rules] == ["hijack", "sni", "video"]


def test_an_ech_reset_is_found_and_its_equipment_named(lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ech-rst resets hellos carrying ECH to ech-rst.example: `run echcheck --capture` finds tls.rst where the
    control (no ECH) completed, and the captured RST carries the rule's forged header values."""
    import json
    import subprocess
    import sys

    from tamperscope.lab import manager

    out = tmp_path / "ech.jsonl"
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "run", "echcheck", "--capture",
                                            "-i", "https://ech-rst.example/", "--yes", "--no-progress",
                                            "-o", str(out)]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    tk = json.loads(out.read_text().splitlines()[0])["test_keys"]
    assert (tk["x_mechanism"], tk["x_status"]) == ("tls.rst", "anomaly"), tk
    assert tk["control"]["failure"] is None and tk["target"]["failure"] in ("connection_reset", "eof_error")
    assert tk["x_signature"]["key"] == "tcp/RA/ttl255/win0/ipid4242", tk["x_signature"]
    assert lab.logged("ech-rst", "ech-rst.example")


def test_an_https_record_stripped_on_plain_dns_is_seen_against_doh(lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """https-strip drops HTTPS queries for strip.cloudflare.com (its A queries pass): echcheck gets the site's ECH
    config over DoH, seals its target with it (nothing blocks that at TLS), and says the record did not come over
    plain DNS to the public resolver: ECH blocked by DNS, dns.drop (QA: the verdict said "ok"); the ground truth
    logs the dropped query."""
    import json
    import subprocess
    import sys

    from tamperscope.lab import addresses as A
    from tamperscope.lab import manager

    out = tmp_path / "strip.jsonl"
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "run", "echcheck",
                                            "-i", "strip.cloudflare.com", "-i", "crypto.cloudflare.com", "--yes",
                                            "--no-progress", "-o", str(out)]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    by = {m["input"]: m["test_keys"] for m in map(json.loads, out.read_text().splitlines())}
    tk = by["strip.cloudflare.com"]
    assert (tk["x_mechanism"], tk["x_status"], tk["blocking"]) == ("dns.drop", "anomaly", "dns")
    assert tk["control"]["failure"] is None and tk["target"]["failure"] is None
    assert tk["target"]["outer_server_name"] == "cloudflare-ech.com" and tk["target"]["echconfig"] != "GREASE"
    assert tk["x_ech_config_stripped"] == {"resolver": f"{A.PUBLIC_RESOLVER}:53", "failure": "generic_timeout_error"}
    engines = {q["tags"][0]: q["engine"] for q in tk["queries"] if q["query_type"] == "HTTPS"}
    assert engines == {"ech_config": "doh", "ech_config_plain": "udp"}
    assert "x_ech_config_stripped" not in by["crypto.cloudflare.com"]  # its record came both ways
    assert (by["crypto.cloudflare.com"]["x_mechanism"], by["crypto.cloudflare.com"]["x_status"]) == ("none", "ok")
    assert lab.logged("https-strip", "strip.cloudflare.com")
