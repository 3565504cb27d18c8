"""Profile `ru-like`: a poisoning ISP resolver with a real blockpage, SNI RST, SNI throttling,
QUIC drop, an in-path HTTP blockpage."""

from __future__ import annotations

import pytest

from tamperscope.lab import addresses as A
from tamperscope.lab import blockpages

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(lab_factory):  # type: ignore[no-untyped-def]
    return lab_factory("ru-like")


def test_isp_resolver_poisons_to_a_real_blockpage(lab) -> None:  # type: ignore[no-untyped-def]
    res = lab.run([{"op": "dns_system", "args": ["meduza.io"]},
                   {"op": "dns_udp", "args": [A.PUBLIC_RESOLVER, "meduza.io"]},
                   {"op": "dns_udp", "args": [A.ISP_RESOLVER, "www.grani.ru"]},
                   {"op": "http_get", "args": [A.ISP_BLOCKPAGE, "meduza.io"]}])
    assert res[0]["ips"] == [A.ISP_BLOCKPAGE]
    assert [r["ips"] for r in res[1]["responses"]] == [[lab.addr("meduza.io")]]  # not on the wire
    assert [r["ips"] for r in res[2]["responses"]] == [[A.ISP_BLOCKPAGE]]
    assert res[3]["status"] == 200 and res[3]["body"].encode() == blockpages.load("ru-rostelecom")
    assert lab.logged("ru-poison", "meduza.io")


def test_sni_rst_and_http_blockpage(lab) -> None:  # type: ignore[no-untyped-def]
    res = lab.run([{"op": "tls", "args": [lab.addr("www.linkedin.com"), "www.linkedin.com"]},
                   {"op": "sniff_rst", "args": [lab.addr("rutracker.org"), "rutracker.org"]}])
    assert res[0]["error"] == "reset"
    page = res[1]["result"]
    assert page["error"] is None and page["body"].encode() == blockpages.load("ru-mts")
    assert page["headers"]["Connection"] == "close"
    assert lab.logged("ru-sni", "www.linkedin.com") and lab.logged("ru-http-blockpage", "rutracker.org")


def test_sni_throttling_near_rate(lab) -> None:  # type: ignore[no-untyped-def]
    res = lab.run([{"op": "tls", "args": [lab.addr("abs.twimg.com"), "abs.twimg.com"], "kwargs": {"path": "/blob?size=80000"}},
                   {"op": "tls", "args": [lab.addr("example.com"), "example.com"], "kwargs": {"path": "/blob?size=80000"}}],
                  timeout=60)
    slow, fast = res
    assert slow["bytes"] == fast["bytes"] == 80000
    rate = next(r for r in lab.profile.rules if r.id == "ru-throttle").rate_kbps
    assert 0.75 * rate <= slow["kbps"] <= 1.25 * rate, slow["kbps"]
    assert fast["kbps"] > 20 * rate
    assert lab.logged("ru-throttle", "abs.twimg.com")


def test_quic_dropped_only_for_named_addresses(lab) -> None:  # type: ignore[no-untyped-def]
    """The farm speaks QUIC (aioquic's own client completes a verified handshake to example.com); the
    censor drops UDP to port 443 of the named sites only, and leaves their TCP alone."""
    res = lab.run([{"op": "quic", "args": [lab.addr("www.youtube.com"), "www.youtube.com"]},
                   {"op": "quic", "args": [lab.addr("example.com"), "example.com"]},
                   {"op": "tcp", "args": [lab.addr("www.youtube.com"), 443]},
                   {"op": "udp_probe", "args": [lab.addr("example.com"), 8443]}])
    assert [r["error"] for r in res] == ["timeout", None, None, "refused"]
    assert res[1]["alpn"] == "h3"
    assert lab.logged("ru-quic", "www.youtube.com")


def test_probe_finds_quic_dropped_where_tcp_and_tls_work(lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """web_connectivity tries HTTP/3 for sites that advertise it: the farm's Alt-Svc, the helper's handshake to the
    same endpoint succeeding, ours timing out under the censor's drop: quic.drop, with the records as evidence.
    A site the censor leaves alone gets a verified h3 handshake and no accusation; analyze agrees."""
    import json
    import subprocess
    import sys

    from tamperscope.lab import farm, manager

    names = [f"site{i}.example" for i in range(40)]
    h3 = next(n for n in names if farm.speaks_h3(n, lab.profile))
    no_h3 = next(n for n in names if not farm.speaks_h3(n, lab.profile))
    lst = tmp_path / "list.csv"
    lst.write_text(f"url,category_code\nhttps://www.youtube.com/,X\nhttps://{h3}/,X\nhttp://www.youtube.com/,X\n"
                   f"https://{no_h3}/,X\n")
    out = tmp_path / "out.jsonl"
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "run", "web_connectivity", "--list",
                                            str(lst), "--yes", "--no-progress", "-o", str(out)]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    got = {m["input"]: m["test_keys"] for m in map(json.loads, out.read_text().splitlines())}
    yt, ok, plain = got["https://www.youtube.com/"], got[f"https://{h3}/"], got["http://www.youtube.com/"]
    ep = f"{lab.addr('www.youtube.com')}:443"
    assert (yt["x_mechanism"], yt["blocking"], yt["accessible"]) == ("quic.drop", False, True)
    assert [(q["address"], q["server_name"], q["failure"]) for q in yt["quic_handshakes"]] == [
        (ep, "www.youtube.com", "generic_timeout_error"), (ep, "www.example.com", "generic_timeout_error")]
    # the innocent name is dropped too (UDP to the address): no claim that the SNI was read
    assert yt["x_quic_trigger"] == {"address": ep, "innocent_name": "www.example.com",
                                    "innocent_failure": "generic_timeout_error", "trigger": "undetermined"}
    assert yt["control"]["quic_handshake"][ep]["status"] is True
    assert yt["control"]["http_request"]["discovered_h3_endpoint"] == "www.youtube.com:443"
    assert "test_keys.quic_handshakes[0]" in yt["x_evidence"]
    assert all(t["failure"] is None for t in yt["tls_handshakes"])  # TCP and TLS got through
    q = ok["quic_handshakes"]
    assert ok["x_mechanism"] == "none" and len(q) == 1 and q[0]["failure"] is None and "x_quic_trigger" not in ok
    assert (q[0]["negotiated_protocol"], q[0]["tls_version"], q[0]["x_verified"]) == ("h3", "TLSv1.3", True)
    assert q[0]["peer_certificates"] and q[0]["server_name"] == h3
    assert plain["x_mechanism"] == "none" and not plain.get("quic_handshakes")  # http: no HTTP/3 to try
    quiet = got[f"https://{no_h3}/"]  # a site not advertising HTTP/3 is not tried over QUIC, nor by the helper
    assert quiet["x_mechanism"] == "none" and quiet["quic_handshakes"] == []
    assert quiet["control"]["quic_handshake"] == {}
    logged = lab.logged("ru-quic", "www.youtube.com")
    assert logged and all(e["client"].startswith(A.CLIENT + ":") for e in logged)
    db = tmp_path / "a.duckdb"
    jl = tmp_path / "a.jsonl"
    res = subprocess.run([sys.executable, "-m", "tamperscope", "analyze", str(out), "--db", str(db), "--jsonl", str(jl)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    again = {r["input"]: r["x_mechanism"] for r in map(json.loads, jl.read_text().splitlines())}
    assert again == {u: t["x_mechanism"] for u, t in got.items()}


def test_no_quic_leaves_http3_unmeasured(lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--no-quic is OONI's web_connectivity work alone: no QUIC handshake, so the dropped QUIC goes unseen."""
    import json
    import subprocess
    import sys

    from tamperscope.lab import manager

    lst = tmp_path / "list.csv"
    lst.write_text("url,category_code\nhttps://www.youtube.com/,X\n")
    out = tmp_path / "out.jsonl"
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "run", "web_connectivity", "--list",
                                            str(lst), "--yes", "--no-progress", "--no-quic", "-o", str(out)]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    tk = json.loads(out.read_text())["test_keys"]
    assert tk["x_mechanism"] == "none" and tk["quic_handshakes"] == []
    assert tk["control"]["quic_handshake"]  # the helper still looked: the site does speak HTTP/3


def test_echcheck_finds_ech_dropped_to_cloudflares_name_only(lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ru-ech drops ClientHellos with encrypted_client_hello to cloudflare-ech.com (TSPU, since November 2024):
    echcheck's target is dropped there while its control (the same name, no ECH) completes. The lab's
    Cloudflare names publish an ECH config (an HTTPS record) whose public name is cloudflare-ech.com, so the
    target for crypto.cloudflare.com, sealed with it as a browser's is, is dropped too; GREASE to another name
    passes. The ground truth logs the ECH hellos alone, by their outer name, and `analyze` reaches the same."""
    import json
    import subprocess
    import sys

    from tamperscope.lab import manager

    out = tmp_path / "ech.jsonl"
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "run", "echcheck",
                                            "-i", "https://cloudflare-ech.com/", "-i", "crypto.cloudflare.com",
                                            "-i", "example.org", "--yes",
                                            "--no-progress", "-o", str(out)]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    by = {m["input"]: m for m in map(json.loads, out.read_text().splitlines())}
    blocked, free = by["https://cloudflare-ech.com/"]["test_keys"], by["example.org"]["test_keys"]
    assert (blocked["x_mechanism"], blocked["x_status"], blocked["blocking"]) == ("tls.drop", "anomaly", "http-failure")
    assert blocked["control"]["failure"] is None and blocked["control"]["peer_certificates"]
    assert blocked["target"]["failure"] == "generic_timeout_error" and not blocked["target"]["x_server_hello"]
    assert (free["x_mechanism"], free["x_status"]) == ("none", "ok") and free["target"]["x_server_hello"]
    assert free["target"]["echconfig"] == "GREASE" and free["target"]["outer_server_name"] == "example.org"
    sealed = by["crypto.cloudflare.com"]["test_keys"]
    assert (sealed["x_mechanism"], sealed["control"]["failure"]) == ("tls.drop", None)
    assert sealed["target"]["outer_server_name"] == "cloudflare-ech.com"
    assert sealed["target"]["server_name"] == "crypto.cloudflare.com" and sealed["target"]["echconfig"] != "GREASE"
    https = {q["tags"][0]: q for q in sealed["queries"] if q["query_type"] == "HTTPS"}
    assert (https["ech_config"]["engine"], https["ech_config_plain"]["engine"]) == ("doh", "udp")  # the lab's DoH
    assert https["ech_config"]["answers"][0]["x_ech"] == sealed["target"]["echconfig"]  # the lab's config list
    assert "x_ech_config_stripped" not in sealed  # ru-like leaves HTTPS records alone: both lookups got it
    log = lab.logged("ru-ech")
    assert log and {e["name"] for e in log} == {"cloudflare-ech.com"}  # the control's hello passed (above)
    db, jl = tmp_path / "a.duckdb", tmp_path / "a.jsonl"
    res = subprocess.run([sys.executable, "-m", "tamperscope", "analyze", str(out), "--db", str(db),
                          "--jsonl", str(jl)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    again = {r["input"]: r for r in map(json.loads, jl.read_text().splitlines())}
    assert again["https://cloudflare-ech.com/"]["x_mechanism"] == again["crypto.cloudflare.com"]["x_mechanism"] \
        == "tls.drop"
    assert again["example.org"]["x_mechanism"] == "none"
