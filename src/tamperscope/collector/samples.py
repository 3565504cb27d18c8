"""Synthetic OONI-format measurements, for tests, load generation and trying the explorer.

Each builder returns a complete ``web_connectivity`` measurement (OONI's
envelope and archival records, our ``x_`` keys) whose raw records lead the
analysis to the named mechanism: the verdict is re-derived from the records on
ingest, so the records, not the ``x_mechanism`` label, have to tell the story.

`SCENARIOS` lists what can be asked for; `measurement()` builds one; `corpus()`
builds many distinct ones (distinct content, so distinct ``measurement_uid``).
Nothing here touches the network.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

SCENARIOS = ("ok", "dns.poison", "tcp.drop", "tls.rst", "http.rst", "http.blockpage")

SITE_IP = "93.184.216.34"
POISON_IP = "10.10.34.34"
BLOCKPAGE = ("<html><head><title>Access restricted</title></head><body><h1>Access restricted</h1>"
             "<p>Access to the requested resource is restricted. See zapret-info.prometey.me</p></body></html>")
SITE_PAGE = ("<!doctype html><html><head><title>{host}</title></head><body><h1>{host}</h1>"
             "<p>The ordinary page of {host}, long enough to compare lengths.</p>" + "x" * 1200 + "</body></html>")


def _when(start: dt.datetime | str | None) -> str:
    if start is None:
        start = dt.datetime(2026, 5, 1, 12, 0, 0)
    if isinstance(start, str):
        return start
    return start.strftime("%Y-%m-%d %H:%M:%S")


def _query(host: str, addrs: list[str], engine: str, resolver: str, tid: int) -> dict[str, Any]:
    return {
        "answers": [{"answer_type": "A", "ipv4": a, "ttl": 300} for a in addrs] or None,
        "engine": engine, "failure": None if addrs else "dns_nxdomain_error", "hostname": host,
        "query_type": "A", "resolver_address": resolver, "resolver_hostname": None, "resolver_port": None,
        "t0": 0.001, "t": 0.02, "tags": ["depth=0"], "transaction_id": tid,
    }


def _headers(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"headers_list": [list(p) for p in pairs], "headers": dict(pairs)}


def _request(url: str, host: str, address: str, tid: int, *, code: int | None, body: str | None,
             failure: str | None, response_headers: list[tuple[str, str]]) -> dict[str, Any]:
    request_headers = [("Accept", "text/html"), ("Host", host), ("User-Agent", "Mozilla/5.0")]
    response: dict[str, Any] = {"body": body or "", "body_is_truncated": False, "code": code or 0,
                                **_headers(response_headers if code else [])}
    return {
        "network": "tcp", "address": address, "alpn": "http/1.1", "failure": failure,
        "request": {"body": "", "body_is_truncated": False, **_headers(request_headers), "method": "GET",
                    "tor": {"exit_ip": None, "exit_name": None, "is_tor": False}, "x_transport": "tcp",
                    "url": url},
        "response": response, "t0": 0.1, "t": 0.2, "tags": ["depth=0"], "transaction_id": tid,
    }


def measurement(scenario: str = "ok", *, url: str = "https://www.example.com/", probe_cc: str = "IT",
                probe_asn: str = "AS30722", network_name: str = "Vodafone Italia S.p.A.",
                start: dt.datetime | str | None = None, body: str | None = None,
                signature: Any = None, hop: Any = None, report_id: str | None = None,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One web_connectivity measurement of ``url`` showing ``scenario`` (a name in SCENARIOS).

    ``body`` replaces the captured page (blockpage or site page); ``signature``
    and ``hop`` become ``test_keys.x_signature`` / ``x_hop``; ``extra`` is merged
    into ``test_keys`` last.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
    parts = urlsplit(url)
    host = parts.hostname or "www.example.com"
    https = parts.scheme == "https"
    port = 443 if https else 80
    when = _when(start)
    site_page = SITE_PAGE.format(host=host)
    site_headers = [("Content-Type", "text/html; charset=utf-8"), ("Server", "nginx")]
    addrs = [POISON_IP] if scenario == "dns.poison" else [SITE_IP]
    endpoint = f"{addrs[0]}:{port}"
    tk: dict[str, Any] = {
        "agent": "redirect", "client_resolver": "192.0.2.53", "retries": None, "socksproxy": None,
        "queries": [_query(host, addrs, "system", "", 1), _query(host, addrs, "udp", "192.0.2.53:53", 2)],
        "tcp_connect": [], "tls_handshakes": [], "requests": [], "network_events": [],
        "control": {
            "tcp_connect": {f"{SITE_IP}:{port}": {"status": True, "failure": None}},
            "tls_handshake": ({f"{SITE_IP}:{port}": {"server_name": host, "status": True, "failure": None}}
                              if https else {}),
            "quic_handshake": {}, "http3_request": None,
            "http_request": {"body_length": len(site_page), "failure": None, "title": host,
                             "headers": dict(site_headers), "status_code": 200, "discovered_h3_endpoint": ""},
            "dns": {"failure": None, "addrs": [SITE_IP]},
            "ip_info": {SITE_IP: {"asn": 15133, "flags": 11}},
        },
        "control_failure": None, "dns_experiment_failure": None, "http_experiment_failure": None,
    }
    connect_failure = {"tcp.drop": "generic_timeout_error", "dns.poison": "connection_refused"}.get(scenario)
    tk["tcp_connect"].append({"ip": addrs[0], "port": port,
                              "status": {"failure": connect_failure, "success": connect_failure is None},
                              "t0": 0.03, "t": 0.05, "tags": ["depth=0"], "transaction_id": 3})
    if connect_failure is None and https:
        tls_failure = "connection_reset" if scenario == "tls.rst" else None
        tk["tls_handshakes"].append({
            "network": "tcp", "address": endpoint, "cipher_suite": "TLS_AES_128_GCM_SHA256" if not tls_failure else "",
            "failure": tls_failure, "negotiated_protocol": "http/1.1" if not tls_failure else "",
            "no_tls_verify": False, "peer_certificates": None, "server_name": host, "t0": 0.05, "t": 0.09,
            "tags": ["depth=0"], "tls_version": "TLSv1.3" if not tls_failure else "", "transaction_id": 3})
    handshake_ok = connect_failure is None and scenario != "tls.rst"
    if handshake_ok:
        if scenario == "http.rst":
            tk["requests"].append(_request(url, host, endpoint, 3, code=None, body=None,
                                           failure="connection_reset", response_headers=[]))
        elif scenario == "http.blockpage":
            page = body if body is not None else BLOCKPAGE
            tk["requests"].append(_request(url, host, endpoint, 3, code=200, body=page, failure=None,
                                           response_headers=[("Content-Type", "text/html"),
                                                             ("Server", "block-appliance")]))
        else:
            page = body if body is not None else site_page
            tk["requests"].append(_request(url, host, endpoint, 3, code=200, body=page, failure=None,
                                           response_headers=site_headers))
    if signature is not None:
        tk["x_signature"] = signature
    if hop is not None:
        tk["x_hop"] = hop
    if extra:
        tk.update(extra)
    stamp = when.replace("-", "").replace(":", "").replace(" ", "T")
    return {
        "annotations": {"engine_name": "tamperscope", "platform": "linux"},
        "data_format_version": "0.2.0", "input": url, "measurement_start_time": when,
        "probe_asn": probe_asn, "probe_cc": probe_cc, "probe_ip": "127.0.0.1", "probe_network_name": network_name,
        "report_id": report_id or f"{stamp}Z_webconnectivity_{probe_cc}_{probe_asn[2:]}_n1_sample",
        "resolver_asn": probe_asn, "resolver_ip": "192.0.2.53", "resolver_network_name": network_name,
        "software_name": "tamperscope", "software_version": "0.1.0", "test_helpers": {},
        "test_keys": tk, "test_name": "web_connectivity", "test_runtime": 0.5, "test_start_time": when,
        "test_version": "0.5.28",
    }


NETWORKS = (("IT", "AS30722", "Vodafone Italia S.p.A."), ("RU", "AS12389", "Rostelecom"),
            ("RU", "AS8359", "MTS PJSC"), ("TR", "AS9121", "Turk Telekom"), ("IR", "AS197207", "MCCI"))
DOMAINS = ("www.example.com", "news.example.org", "social.example.net", "video.example.com",
           "blog.example.info", "chat.example.io")


def corpus(count: int, *, seed: str = "", start: dt.datetime | None = None) -> Iterator[dict[str, Any]]:
    """``count`` distinct measurements spread over networks, domains, days and scenarios.

    Deterministic for a given ``seed``: the same call yields the same content,
    so the same uids (what idempotence tests need).
    """
    base = start or dt.datetime(2026, 5, 1, 0, 0, 0)
    for i in range(count):
        h = hashlib.sha256(f"{seed}:{i}".encode()).digest()
        cc, asn, name = NETWORKS[h[0] % len(NETWORKS)]
        domain = DOMAINS[h[1] % len(DOMAINS)]
        scenario = "ok" if cc == "IT" or h[2] % 3 == 0 else SCENARIOS[1 + h[3] % (len(SCENARIOS) - 1)]
        when = base + dt.timedelta(days=h[4] % 14, seconds=i)
        anomaly = scenario != "ok"
        scheme = "http" if scenario == "http.blockpage" else "https"
        yield measurement(
            scenario, url=f"{scheme}://{domain}/", probe_cc=cc, probe_asn=asn, network_name=name, start=when,
            signature={"id": f"{asn.lower()}-ttl-{h[5] % 3}", "name": f"{name} DPI box"} if anomaly and h[6] % 2 else None,
            hop={"ttl": 3 + h[7] % 4, "ip": f"198.18.{h[8]}.1", "asn": asn, "name": name} if anomaly else None,
            extra={"x_sample": f"{seed}:{i}"},
        )


__all__ = ["BLOCKPAGE", "DOMAINS", "NETWORKS", "POISON_IP", "SCENARIOS", "SITE_IP", "corpus", "measurement"]


# Hostile content, as a censor's blockpage or a malicious submitter would write it: every string a
# page shows carries markup that would set window.__pwned if it ever ran.
PAYLOAD = ('<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">'
           '"><svg onload=window.__pwned=1>\'><iframe src="javascript:window.__pwned=1"></iframe>')


def hostile(start: str = "2026-05-09 09:09:09") -> list[dict[str, Any]]:
    """Measurements whose input, body, headers, names, signature and hop carry script payloads."""
    body = ("<html><head><title>" + PAYLOAD + "</title><script>window.__pwned=1;alert(1)</script></head>"
            "<body onload=\"window.__pwned=1\"><h1>Access restricted</h1>" + PAYLOAD +
            "<p>zapret-info.prometey.me</p></body></html>")
    first = measurement("http.blockpage", url="http://evil.example/<script>window.__pwned=1</script>?q=\"><img src=x onerror=window.__pwned=1>",
                        probe_cc="RU", probe_asn="AS12389", network_name=PAYLOAD, start=start, body=body,
                        signature={"id": PAYLOAD, "name": PAYLOAD}, hop={"ttl": 4, "ip": PAYLOAD, "name": PAYLOAD},
                        report_id="x_" + PAYLOAD)
    first["test_keys"]["requests"][0]["response"]["headers_list"].append(["X-Evil", PAYLOAD])
    first["test_keys"]["requests"][0]["response"]["headers"]["X-Evil"] = PAYLOAD
    first["test_keys"]["queries"][0]["hostname"] = PAYLOAD
    second = measurement("dns.poison", url="https://<svg onload=window.__pwned=1>.example/", probe_cc="RU",
                         probe_asn="AS12389", network_name="Rostelecom", start=start,
                         hop={"ttl": 5, "ip": "198.18.0.9", "name": PAYLOAD})
    return [first, second]


__all__ += ["PAYLOAD", "hostile"]
