"""Profile `gfw-like`: an on-path tap — injection races, keyword RSTs, originals never dropped, in both
directions."""

from __future__ import annotations

import pytest

from tamperscope.lab import addresses as A
from tamperscope.wire.packet import initial_ttl

from .conftest import locate_json

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(lab_factory):  # type: ignore[no-untyped-def]
    return lab_factory("gfw-like")


def test_injection_first_real_answer_later(lab) -> None:  # type: ignore[no-untyped-def]
    udp = lab.one("dns_udp", A.PUBLIC_RESOLVER, "www.google.com")
    assert [r["ips"] for r in udp["responses"]] == [["198.18.250.3"], [lab.addr("www.google.com")]]
    # A query to an address where no DNS server runs still gets the forged answer: proof of injection.
    silent = lab.one("dns_udp", A.SILENT, "www.google.com")
    assert [r["ips"] for r in silent["responses"]] == [["198.18.250.3"]]
    quiet = lab.one("dns_udp", A.SILENT, "example.com")
    assert quiet["responses"] == []


def test_keyword_and_sni_rst(lab) -> None:  # type: ignore[no-untyped-def]
    res = lab.run([{"op": "sniff_rst", "args": [lab.addr("www.falundafa.org"), "www.falundafa.org"]},
                   {"op": "tls", "args": [lab.addr("www.bbc.com"), "www.bbc.com"]},
                   {"op": "http_get", "args": [lab.addr("example.com"), "example.com"]}])
    assert res[0]["result"]["error"] == "reset"
    assert res[0]["rst"]["window"] == 2050 and initial_ttl(res[0]["rst"]["ttl"]) == 64 and res[0]["rst"]["ttl"] == 48
    assert res[1]["error"] == "reset"
    assert res[2]["error"] is None
    assert lab.logged("gfw-keyword", "www.falundafa.org") and lab.logged("gfw-sni", "www.bbc.com")


def test_located_from_outside_as_an_on_path_tap_next_to_the_server(lab) -> None:  # type: ignore[no-untyped-def]
    """CenTrace's setting: from outside, a request naming www.bbc.com to the ISP's web server. The tap resets it
    (its rules read both directions) at the server's own hop, where no ICMP comes: the server's ACK of the trigger
    beside the forged RST says the trigger went on, so on-path, as from inside."""
    loc = locate_json("http://www.bbc.com/", "--server", A.ISP_WEB, "--runs", "1", ns=A.NS_OUTSIDE)
    assert (loc["hop"], loc["router"], loc["placement"]) == (2, A.BORDER_OUT, "on-path"), loc
    assert any(e["client"].startswith(A.OUTSIDE + ":") for e in lab.logged("gfw-http", "www.bbc.com"))


def test_on_path_profile_rejects_drops(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tamperscope.lab.blockpages import names
    from tamperscope.model.profile import ProfileError, load_profile

    p = tmp_path / "bad.toml"
    p.write_text('[network]\nplacement = "on-path"\n[[rule]]\nid = "x"\nlayer = "tls"\naction = "drop"\ndomains = ["a.org"]\n')
    with pytest.raises(ProfileError, match="needs an in-path censor"):
        load_profile(p, names())
