"""The equipment signature on a measurement's page in words (its key, then the forged packet field by field),
where it was a JSON blob; hostile values are typed away or shown as text."""

from __future__ import annotations

from pathlib import Path

import orjson

from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import running_app
from tamperscope.explorer.evidence import signature_view

RST = {"kind": "tcp", "flags": "RA", "ip_id": 30000, "ip_ids": [30000, 30000], "ttl": 127, "initial_ttl": 128,
       "window": 0, "packets": 2, "key": "tcp/RA/ttl128/win0/ipid30000", "remote": "198.19.175.123:443"}


def test_a_reset_signature_reads_field_by_field() -> None:
    view = signature_view(RST)
    assert view is not None and view["key"] == "tcp/RA/ttl128/win0/ipid30000"
    assert dict(view["rows"]) == {"packet": "TCP, flags RA (RST+ACK)",
                                  "TTL": "127 as received, sent with 128 or less", "TCP window": "0",
                                  "IP-ID": "30000 in every packet", "packets seen": "2",
                                  "as if from": "198.19.175.123:443"}


def test_what_was_sent_is_said_only_where_the_hop_says_it() -> None:
    """QA: a box sending with TTL 61 arrived with 60 and was said "sent with 64 (4 routers on the way)": the class a
    TTL fits under is no value sent. Where locate placed the censor, its ``sent_ttl`` is (received + routers)."""
    rows = dict(signature_view({**RST, "ttl": 60, "initial_ttl": 64})["rows"])  # type: ignore[index]
    assert rows["TTL"] == "60 as received, sent with 64 or less"
    rows = dict(signature_view({**RST, "ttl": 61, "initial_ttl": 64, "sent_ttl": 62})["rows"])  # type: ignore[index]
    assert rows["TTL"] == "61 as received, sent with 62 (1 router on the way)"
    from tamperscope.model.location import signature

    forged = [{"kind": "tcp", "flags": "RA", "ip_id": 1, "ttl": 61, "initial_ttl": 64, "window": 0},
              {"kind": "tcp", "flags": "RA", "ip_id": 2, "ttl": 61, "initial_ttl": 64, "window": 0}]
    sig = signature(forged, hop=2)
    assert sig is not None and sig["sent_ttl"] == 62 and sig["ip_id"] is None and sig["ip_ids"] == [1, 2]
    assert "sent_ttl" not in (signature(forged) or {})  # no hop: not known


def test_a_counter_ip_id_and_hostile_values() -> None:
    view = signature_view({**RST, "ip_ids": [5, 6, 7], "ttl": True, "window": "0", "flags": "<b>", "packets": None})
    assert view is not None
    rows = dict(view["rows"])
    assert rows["IP-ID"] == "30000 (varies: 5, 6, 7)"
    assert "TTL" not in rows and "TCP window" not in rows and "packets seen" not in rows  # wrong types: left out
    assert rows["packet"] == "TCP, flags <b>"  # text, escaped by the template
    assert signature_view("tcp/RA") is None and signature_view(None) is None


def test_the_page_shows_it_in_words(tmp_path: Path) -> None:
    m = samples.measurement("http.rst", url="http://sig.example/", start="2026-05-27 00:00:00",
                            signature={**RST, "remote": "<script>window.__pwned=1</script>"})
    with running_app(Settings(db_path=tmp_path / "s.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        out = c.post("/api/v1/submit", content=orjson.dumps(m)).json()
        uid = out["results"][0]["measurement_uid"]
        page = c.get(f"/m/{uid}").text
        twin = c.get(f"/m/{uid}.json").json()
    section = page.split('id="hop"', 1)[1].split("</section>", 1)[0]
    assert "<code>tcp/RA/ttl128/win0/ipid30000</code>" in section
    assert "<dt>TTL</dt><dd>127 as received, sent with 128 or less</dd>" in section
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in section and "<script>window" not in section
    assert twin["evidence"]["signature"]["key"] == RST["key"]  # the twin keeps the record as it is


def test_the_verdict_says_in_words_what_it_means(tmp_path: Path) -> None:
    """The verdict box names the technique and the outcome in the report's words; an ok has no technique."""
    rst = samples.measurement("tls.rst", url="https://words.example/", start="2026-05-27 00:00:00")
    ok = samples.measurement("ok", url="https://fine.example/", start="2026-05-27 00:00:01")
    with running_app(Settings(db_path=tmp_path / "w.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        uids = [c.post("/api/v1/submit", content=orjson.dumps(m)).json()["results"][0]["measurement_uid"]
                for m in (rst, ok)]
        pages = [c.get(f"/m/{u}").text.split('id="verdict"', 1)[1].split("</section>", 1)[0] for u in uids]
        twin = c.get(f"/m/{uids[0]}.json").json()["evidence"]["verdict"]
    assert '<span id="mechanism">tls.rst</span>' in pages[0]
    assert "the encrypted connection was cut during the handshake" in pages[0]
    assert "differs from the uncensored control" in pages[0]  # what an anomaly is
    assert twin["mechanism_meaning"].startswith("the encrypted connection was cut")
    assert '<span id="mechanism">none</span>' in pages[1] and "no single technique" not in pages[1]
    assert "the site was reachable as expected" in pages[1]
