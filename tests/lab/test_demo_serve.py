"""`tamperscope demo --serve`: the demo ends with an explorer holding its measurements and located hops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

PORT = 18190
URLS = ["https://facebook.com/", "https://signal.org/", "http://www.bbc.com/", "https://x.com/"]
CATEGORIES = ["GRP", "COMT", "NEWS", "GRP"]  # a Citizen Lab list: the demo's stores keep its categories


def get(path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=10) as r:
        return r.read().decode()


def test_demo_serve_prints_the_explorer_url_with_the_data_in_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lst = tmp_path / "urls.csv"
    lst.write_text("url,category_code\n" + "".join(f"{u},{c}\n" for u, c in zip(URLS, CATEGORIES, strict=True)))
    proc = subprocess.Popen([sys.executable, "-m", "tamperscope", "demo", "--list", str(lst), "--serve", "--port", str(PORT),
                             "--db", str(tmp_path / "demo.duckdb"), "--serve-seconds", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)})  # its work directory, removed by pytest
    try:
        out = []
        deadline = time.monotonic() + 400
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if "serving for" in line:
                break
        text = "".join(out)
        assert f"explorer: http://127.0.0.1:{PORT}/" in text, text
        assert "agreement with the lab's ground truth: 4/4" in text
        # the analysis pipeline re-derived every verdict from the raw records and reached the probe's
        # tm-like blocks three of the four (facebook.com, signal.org, bbc.com); the probe measured those again
        # (--recheck, on the same output, after the other steps): the same again, so the analysis confirms them
        assert ("measured again (tamperscope run web_connectivity --recheck, later): 3 URLs found blocked or "
                "failing, the same mechanism for 3/3; agreement with the lab's ground truth: 3/3") in text, text
        assert "the probe's mechanism reached again for 7/7" in text, text
        assert "7 measurements (3 of them second measurements)" in text, text
        assert "3 URLs with an anomaly (3 confirmed by a blockpage fingerprint or a repeat), 0 failures" in text, text
        # the same domains measured from outside, through the ISP's resolver: the injection shows there too
        assert "the inside probe's DNS findings seen again from outside: 1/1" in text, text
        actions = next(line for line in out if "censor DNS actions logged while measuring from outside:" in line)
        assert int(actions.rsplit(":", 1)[1]) >= 1, actions
        # located from both sides: the censor between the access router (inside) and the border router (outside)
        assert "the censor sits between 198.18.1.1 and 198.18.4.1" in text, text
        # tm-like has no rule against ECH: echcheck's hello, sealed with the site's published config, got its
        # ServerHello
        assert ("ECH (tamperscope run echcheck -i crypto.cloudflare.com): not blocked: the hello for "
                "crypto.cloudflare.com, sealed with its published ECH config inside one naming cloudflare-ech.com,"
                in text), text
        assert "the censor has no rule against ECH: agrees with the lab's ground truth" in text, text
        assert "ECH, judged again from the records: https://crypto.cloudflare.com/ none" in text, text
        # OONI's instant-messaging tests: tm-like injects 127.0.0.1 for facebook.com and whatsapp.com (and their
        # subdomains), so Messenger's names and WhatsApp Web are blocked by DNS, and Telegram is left alone;
        assert "Telegram            reachable; the censor did nothing to it: agrees" in text, text
        assert "WhatsApp            blocked (dns.poison): WhatsApp Web; the censor's rule tm-dns acted" in text, text
        assert "Facebook Messenger  blocked (dns.poison): its names (their answers checked against Facebook's " \
               "network, AS32934); the censor's rule " \
               "tm-dns acted" in text, text
        # and its SNI blocklist names signal.org: four of Signal's five backends are reset
        assert "Signal              blocked (tls.rst): its servers; the censor's rule tm-sni acted on it (4 times): " \
               "agrees" in text, text
        assert "apps agreeing with the lab's ground truth: 4/4" in text, text
        # OONI's middlebox tests against the echo backend: tm-like has no proxy, and what was sent came back
        assert "    headers        came back as sent; no proxy relayed it: agrees with the lab's ground truth" in text
        assert "    request lines  came back as sent; no proxy relayed it: agrees with the lab's ground truth" in text
        assert ("the middlebox tests, judged again from the records: http_header_field_manipulation none, "
                "http_invalid_request_line none") in text, text
        # Tor: tm-like null-routes the stand-ins for its directory authorities, OR and directory ports alike; the
        # obfs4 bridge, at an address it does not know, still works
        assert ("OR ports reached 0/10, directories serving a consensus 0/10, obfs4 bridges 1/1: blocked (tcp.drop); "
                "the censor's rule tm-tor acted on it") in text, text
        assert ("located (tamperscope locate https://198.19.3.1:443/, layer tls): hop 2, after router 198.18.1.1 "
                "(in-path, every packet to the address)") in text, text
        # tor itself: tm-like null-routes the lab's Tor network with Tor's directory authorities (198.19.3.0/28)
        assert ("stopped at 5% (conn: Connecting to a relay): blocked (tcp.drop); the censor's rule tm-tor acted on "
                "it") in text, text
        # RiseupVPN: tm-like resets OpenVPN's first packet wherever it goes, after letting the connect through; its
        # API and the obfs4 transport pass
        # (over UDP, the same rule drops its datagram: one more action, on the UDP flow)
        assert ("API ok, OpenVPN gateways 0/1 (connected 1/1), OpenVPN over UDP 0/1, obfs4 gateways 1/1: blocked "
                "(tcp.rst); the censor's rule tm-openvpn acted on it (2 times): agrees with the lab's ground truth") \
            in text, text
        # tm-like holds the gateway for 30 s after the reset: the split retry cannot connect, and says so
        assert ("OpenVPN's first packet split in two TCP segments: through at 0/1; 1 could not connect again (the "
                "censor held the gateway after the reset)") in text, text
        # located with OpenVPN's first packet sent to the gateway's other port (tm-like holds the one just measured
        # for 30 s): the same DPI, at hop 2, for this protocol only
        assert ("located (tamperscope locate https://198.19.3.30:23042/ --layer openvpn, layer openvpn): hop 2, "
                "after router 198.18.1.1 (in-path, this protocol only)") in text, text
        # WireGuard: tm-like drops a UDP flow begun by its handshake initiation; one begun by junk gets through
        assert ("handshake generic_timeout_error (5 initiations), junk first: answered: blocked (udp.drop): DPI judged "
                "the flow by its first datagram; the censor's rule tm-wireguard acted on it (1 time): agrees with the "
                "lab's ground truth") in text, text
        assert ("located (tamperscope locate https://198.19.3.40:51820/ --layer wireguard, layer wireguard): hop 2, "
                "after router 198.18.1.1 (in-path, this protocol only)") in text, text
        assert ("the messaging apps, Tor, RiseupVPN and WireGuard, judged again from the records: Telegram none, "
                "WhatsApp dns.poison, Facebook Messenger dns.poison, Signal tls.rst, Tor tcp.drop, Tor (its own bootstrap) "
                "tcp.drop, Tor (its own bootstrap) through a bridge none, RiseupVPN tcp.rst, WireGuard udp.drop\n") \
            in text, text
        report = next(line.split("HTML report: ", 1)[1].strip() for line in out if "HTML report: " in line)
        html = Path(report).read_text(encoding="utf-8")
        assert "facebook.com" in html and "dns.injection" in html
        # where on the path, from the analysed records: the hop `tamperscope locate` found for each located URL and
        # tool (Tor's OR port, RiseupVPN's OpenVPN, WireGuard), the device in the traffic's way (resets, drops) and
        # the DNS injector beside it, both just after the access router
        where = next(line for line in out if "where on the path, from the records" in line)
        assert "hop 2, after router 198.18.1.1" in where, where
        assert ", in-path: http.rst, tcp.drop, tcp.rst, tls.rst, udp.drop;" in where, where
        assert ", on-path: dns.injection" in where, where
        hops = html.split("<h2>Where on the path</h2>", 1)[1].split("</section>", 1)[0]
        assert hops.count("<tr>") == 3 and "in-path" in hops and "on-path" in hops and "198.18.1.1" in hops, hops
        assert "bbc.com" in hops and "facebook.com" in hops and "WireGuard" in hops and "RiseupVPN" in hops, hops
        # Tor blocked on the lab's network, and reachable through the obfs4 bridge: two rows of the report's apps
        # table (the bridge's bootstrap, measured last, is not the latest word on Tor)
        apps = html.split("<section id='apps'>", 1)[1].split("</section>", 1)[0]
        tor = [row for row in apps.split("<tr>")[2:] if "Tor (its own bootstrap)" in row]
        assert len(tor) == 2, tor
        direct = next(row for row in tor if "bridge" not in row)
        bridged = next(row for row in tor if "Tor (its own bootstrap) through a bridge (obfs4)</td>" in row)
        assert "<td data-label='latest'>blocked</td>" in direct, tor
        assert "<td data-label='latest'>reachable</td>" in bridged, tor
        page = json.loads(get("/api/v1/measurements?limit=100&test_name=web_connectivity"))
        blocked = ["https://facebook.com/", "https://signal.org/", "http://www.bbc.com/"]
        assert sorted(r["input"] for r in page["results"]) == sorted(URLS + blocked)
        # the collector confirmed each blocked URL from its two measurements, as the demo's own analysis did
        assert {r["input"] for r in page["results"] if r["confirmed"]} == set(blocked), page["results"]
        assert sum(r["confirmed"] for r in page["results"]) == 6
        # the apps', tools' and middlebox tests' measurements are published too; WireGuard's page says what its
        # two handshakes found, and carries the hop `locate --layer wireguard` placed the drop at
        every = json.loads(get("/api/v1/measurements?limit=100"))["results"]
        assert sorted(r["test_name"] for r in every) == sorted(["web_connectivity"] * len(URLS + blocked) + [
            "telegram", "whatsapp", "facebook_messenger", "signal", "tor", "vanilla_tor", "vanilla_tor", "riseupvpn", "wireguard",
            "http_header_field_manipulation", "http_invalid_request_line", "blocking_rules", "echcheck"])
        # tor stuck at 5%, then through the lab's obfs4 bridge at 100%
        assert "through the lab's obfs4 bridge: bootstrapped in" in text, text
        boot_uid = next(r["measurement_uid"] for r in every if r["test_name"] == "vanilla_tor"
                        and json.loads(get(f"/api/v1/measurement/{r['measurement_uid']}"))["test_keys"]["x_bridges"] == 0)
        assert "That step is connecting to a relay: its address is not reached." in get(f"/m/{boot_uid}")
        wg_uid = next(r["measurement_uid"] for r in every if r["test_name"] == "wireguard")
        wg = json.loads(get(f"/api/v1/measurement/{wg_uid}"))
        assert wg["test_keys"]["x_hop"]["ttl"] == 2 and "located" not in wg
        assert wg["test_keys"]["x_hop"]["method"].startswith("tamperscope locate --layer wireguard")
        assert "DPI dropped the flow by its first datagram" in get(f"/m/{wg_uid}")
        by = {r["input"]: r for r in page["results"]}
        assert by["https://facebook.com/"]["scores"]["mechanism"] == "dns.injection"
        assert by["http://www.bbc.com/"]["anomaly"] is True and by["https://x.com/"]["anomaly"] is False
        # the located hop reached the evidence: the router before the censor, from `tamperscope locate`
        uid = by["http://www.bbc.com/"]["measurement_uid"]
        m = json.loads(get(f"/api/v1/measurement/{uid}"))
        assert m["test_keys"]["x_hop"]["ttl"] == 2 and m["test_keys"]["x_hop"]["ip"] == "198.18.1.1"
        page_html = get(f"/m/{uid}")
        assert "198.18.1.1" in page_html and "http.rst" in page_html
        # and why it is confirmed: the recheck found the same reset, from the same network
        assert "The same anomaly (http.rst) on 2 measurements of this input from AS64500" in page_html, page_html
        assert "facebook.com" in get("/")
        # the list's categories reached both stores: the sites by category, blocked ones first, on the home page
        # and in the demo's own report (tm-like blocks bbc.com, facebook.com and, by its SNI list, signal.org; not
        # x.com)
        by_category = {c["category_code"]: (c["domain_count"], c["blocked_domain_count"])
                       for c in json.loads(get("/index.json"))["categories"]}
        kinds = next(line for line in out if "blocked sites by category" in line)
        assert "Social Networking (GRP) 1/2" in kinds and "News Media (NEWS) 1/1" in kinds, kinds
        # (and echcheck's site, crypto.cloudflare.com, is in no list: not blocked here)
        assert by_category == {"GRP": (2, 1), "NEWS": (1, 1), "COMT": (1, 1), None: (1, 0)}, by_category
        assert "<section id='categories'>" in html and "Social Networking (GRP)" in html
        # the chart the demo points at (OONI's MAT): every technique it found, by test, its rows linking the search
        chart_url = next(line.split(": ", 1)[1].strip() for line in out if "what was blocked, by technique" in line)
        assert chart_url.startswith(f"http://127.0.0.1:{PORT}/chart?"), chart_url
        chart = json.loads(get(chart_url.split(str(PORT), 1)[1].replace("/chart?", "/chart.json?", 1)))
        cells = {(r["mechanism"], r["test_name"]): r["measurement_count"] for r in chart["rows"]}
        assert cells[("dns.injection", "web_connectivity")] >= 1 and cells[("udp.drop", "wireguard")] == 1, cells
        assert sum(cells.values()) == len(every) and chart["charts"]["counts"]["data"], cells
        # the feed it points at (Atom): every anomaly, newest first, each entry the measurement's page
        feed_url = next(line.split(": ", 1)[1].strip() for line in out if "to follow in a feed reader" in line)
        assert feed_url == f"http://127.0.0.1:{PORT}/feed.atom?outcome=anomaly", feed_url
        atom = "{http://www.w3.org/2005/Atom}"
        entries = ET.fromstring(get("/feed.atom?outcome=anomaly")).findall(f"{atom}entry")
        anomalies = [r for r in every if r["anomaly"]]
        assert len(entries) == len(anomalies) >= 10, (len(entries), len(anomalies))
        facebook = by["https://facebook.com/"]["measurement_uid"]
        entry = next(e for e in entries if e.findtext(f"{atom}id", "").endswith(f"/m/{facebook}"))
        assert "facebook.com" in entry.findtext(f"{atom}title", "") and "dns.injection" in entry.findtext(
            f"{atom}title", ""), entry.findtext(f"{atom}title")
        # the server's report (its explorer's link) tells what the demo's own report file tells
        served = get("/api/v1/export/report.html")
        summary = [h.split("<p class='summary'>", 1)[1].split("</p>", 1)[0] for h in (html, served)]
        assert summary[0] == summary[1] and "measurements" in summary[0], summary
        # the submissions' spool went with them; the work directory (measurements, store, report) stays
        assert not list(tmp_path.glob("tamperscope-demo-outbox-*"))
        work = list(tmp_path.glob("tamperscope-demo-*"))
        assert len(work) == 1 and (work[0] / "measurements.jsonl").is_file(), list(tmp_path.iterdir())
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
