"""A measurement's page says why its anomaly is confirmed, or what would confirm it; and that it was a recheck."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson

from tamperscope.collector.config import Settings
from tamperscope.collector.testing import running_app

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ooni-samples" / "generated"


def sample(name: str, **changes: object) -> dict:
    m = json.loads((SAMPLES / name / "measurement.json").read_text())
    m.update(changes)
    return m


def test_the_page_says_why_an_anomaly_is_confirmed_or_what_would_confirm_it(tmp_path: Path) -> None:
    reset = sample("httpBlockingConnectionReset")  # http://www.example.com/ on AS137: an anomaly
    again = sample("httpBlockingConnectionReset", measurement_start_time="2026-01-01 00:00:00",
                   annotations={"recheck": "true"})
    once = sample("dnsBlockingAndroidDNSCacheNoData")  # https://www.example.com/ on AS137, measured once
    nowhere = sample("dnsBlockingAndroidDNSCacheNoData", probe_asn="AS0", measurement_start_time="2026-01-02 00:00:00")
    fine = sample("badSSLWithExpiredCertificate")  # no anomaly: nothing to say
    with running_app(Settings(db_path=tmp_path / "s.duckdb", announce=False, submit_rate=0, read_rate=0)) as c:
        out = c.post("/api/v1/submit", content=b"\n".join(orjson.dumps(m) for m in (reset, again, once, nowhere, fine)
                                                          )).json()
        assert out["stored"] == 5, out
        uids = [r["measurement_uid"] for r in out["results"]]
        pages = [c.get(f"/m/{uid}").text for uid in uids]
        twins = [c.get(f"/m/{uid}.json").json() for uid in uids]
        # both of the reset's measurements: confirmed by each other, with the search that lists them
        for page, twin in zip(pages[:2], twins[:2], strict=True):
            assert "badge confirmed" in page
            why = page.split('id="support">', 1)[1].split("</dd>", 1)[0]
            assert "The same anomaly (http.rst) on 2 measurements of this input from AS137" in why, why
            href = twin["support"]["href"]
            assert parse_qs(urlsplit(href).query) == {"test_name": ["web_connectivity"],
                                                      "input": ["http://www.example.com/"], "probe_asn": ["AS137"],
                                                      "mechanism": ["http.rst"], "outcome": ["anomaly"]}
            listed = c.get(href.replace("/search?", "/search.json?", 1)).json()
            assert sorted(r["measurement_uid"] for r in listed["results"]) == sorted(uids[:2]), listed
        # the second one says it was made by --recheck; the first does not
        assert 'id="recheck"' in pages[1] and "tamperscope run --recheck" in pages[1].split('id="recheck"', 1)[1]
        assert twins[1]["recheck"] is True and twins[0]["recheck"] is False and 'id="recheck"' not in pages[0]
        # seen once: what would confirm it
        assert "badge anomaly" in pages[2]
        assert ("Seen once from AS137 so far: a second measurement with the same anomaly would confirm it"
                in pages[2]), pages[2]
        assert twins[2]["support"]["count"] == 1 and twins[2]["support"]["href"] is None
        # a network nobody named: nothing can confirm it
        assert "Its network is not known (AS0): no other measurement can confirm it." in pages[3]
        # no anomaly: no such line
        assert 'id="support"' not in pages[4] and twins[4]["support"] is None
        # the home page and the network's say how the confirmed were confirmed (both by a repeat here)
        home = " ".join(c.get("/").text.split())
        assert "2 confirmed (0 by a blockpage fingerprint, 2 by a repeat)" in home, home
        area = " ".join(c.get("/network/AS137").text.split())
        assert "(2 confirmed: 0 by a blockpage fingerprint, 2 by a repeat)" in area, area
        assert c.get("/index.json").json()["totals"]["fingerprint_confirmed_count"] == 0
