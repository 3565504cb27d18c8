"""Finding the equipment, as a scenario table run in the lab: middlebox nettests, TLS
interception, throttling, and the packet signatures the probe captures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tamperscope.lab import manager

pytestmark = pytest.mark.lab


def run(tmp_path, nettest: str, *args: str) -> list[dict]:  # type: ignore[no-untyped-def]
    out = tmp_path / f"{nettest}.jsonl"
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "run", nettest, *args, "--yes",
                                            "--no-progress", "-o", str(out)]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("profile,tampered", [("middlebox", True), ("none", False)])
def test_middlebox_nettests(lab_factory, tmp_path, profile, tampered) -> None:  # type: ignore[no-untyped-def]
    lab_factory(profile)
    irl = run(tmp_path, "http_invalid_request_line")[0]["test_keys"]
    hfm = run(tmp_path, "http_header_field_manipulation")[0]["test_keys"]
    assert irl["tampering"] is tampered and hfm["tampering"]["total"] is tampered
    assert irl["x_mechanism"] == hfm["x_mechanism"] == ("middlebox" if tampered else "none")
    if tampered:
        t = hfm["tampering"]
        assert t["header_name_capitalization"] and t["header_field_number"]
        assert t["header_name_diff"] == ["via", "x-forwarded-for"]
        assert "X-Forwarded-For: [scrubbed]" in hfm["received"]  # the proxy echoed our address: scrubbed
    else:
        assert irl["received"] == irl["sent"] and hfm["received"] == hfm["sent"]


def test_tls_interception_named(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("middlebox")
    by = {m["input"]: m["test_keys"] for m in run(tmp_path, "tls_mitm", "-i", "www.facebook.com", "-i", "example.com")}
    fb = by["www.facebook.com"]
    assert fb["x_mechanism"] == "tls.mitm" and fb["x_interception"]["intercepted"]
    assert fb["x_equipment"]["name"] == "Interception Equipment Ltd"
    assert fb["x_interception"]["spki_sha256"] != fb["x_interception"]["control_spki_sha256"]
    assert "tamperscope lab" in fb["x_interception"]["control_issuer"]
    assert by["example.com"]["x_mechanism"] == "none" and by["example.com"]["x_interception"] is None
    wc = run(tmp_path, "web_connectivity", "-i", "https://mail.google.com/")[0]["test_keys"]
    assert wc["x_mechanism"] == "tls.mitm" and wc["x_equipment"]["name"] == "Interception Equipment Ltd"


def test_throttling_cap_and_no_false_flags(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    profile = lab_factory("ru-like")
    rate = next(r.rate_kbps for r in profile.profile.rules if r.action == "throttle")
    ms = run(tmp_path, "throttling", "-i", "https://abs.twimg.com/blob?size=30000", "-i", "https://example.com/blob?size=30000")
    by = {m["input"]: m["test_keys"] for m in ms}
    th = by["https://abs.twimg.com/blob?size=30000"]["x_throttle"]
    assert th["throttled"] and 0.75 * rate <= th["cap_kbps"] <= 1.25 * rate, th
    assert by["https://example.com/blob?size=30000"]["x_throttle"]["throttled"] is False
    lab_factory("none")
    th = run(tmp_path, "throttling", "-i", "https://abs.twimg.com/blob?size=60000")[0]["test_keys"]["x_throttle"]
    assert th["throttled"] is False


@pytest.mark.parametrize("profile,url,mechanism,key_parts", [
    ("tm-like", "http://www.bbc.com/", "http.rst", ["tcp/RA", "ttl128", "win0", "ipid30000"]),
    ("tm-like", "https://www.youtube.com/", "tls.rst", ["tcp/RA", "ttl128", "ipid30000"]),
    ("tm-like", "http://www.facebook.com/", "dns.injection", ["udp", "ttl64", "ipid0"]),
    ("gfw-like", "http://www.falundafa.org/", "http.rst", ["tcp/RA", "ttl64", "win2050"]),
    ("ru-like", "http://rutracker.org/", "http.blockpage", ["tcp/", "ipid12345", "fp:"]),
    ("ru-like", "https://www.linkedin.com/", "tls.rst", ["tcp/RA", "ipid0", "win0"]),
])
def test_signature_in_the_verdict(lab_factory, tmp_path, profile, url, mechanism, key_parts) -> None:  # type: ignore[no-untyped-def]
    if manager.read_state() is None or (manager.read_state() or {}).get("profile") != profile:
        lab_factory(profile)
    tk = run(tmp_path, "web_connectivity", "--capture", "-i", url)[0]["test_keys"]
    assert tk["x_mechanism"] == mechanism
    key = tk["x_signature"]["key"]
    for part in key_parts:
        assert part in key, (part, key)
