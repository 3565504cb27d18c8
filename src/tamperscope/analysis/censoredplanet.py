"""Censored Planet's Hyperquack and Satellite measurements, read as `remote_web` and `remote_dns` ones.

Censored Planet publishes what its scans saw: ``CP_Quack-<service>-<date>.tar.gz`` and
``CP_Satellite-<date>.tar.gz``, each with a ``results.json`` of JSON lines inside. Hyperquack sends
a domain to an in-country web, echo or discard server from outside, between two probes of an
innocuous control domain; Satellite asks in-country open resolvers for it, between two queries for
a control domain. That is what our `remote_web` and `remote_dns` nettests do, so a line is read as
one of our measurements and judged by the same rules (model/remote.py), with the fingerprints every
other measurement meets. The raw line is kept as it was; this conversion is run again wherever the
store's raw bytes are read (the explorer, a re-analysis), so the verdict's evidence pointers
(``test_keys.requests[1]``) name records of the converted measurement, which the explorer shows.

Hyperquack v2 (2021 on; docs/hyperquackv2.rst of censoredplanet/censoredplanet):

    {"vp": "203.0.113.7", "location": {"country_name": "…", "country_code": "TR"}, "service": "http",
     "test_url": "example.org", "response": [
        {"matches_template": true, "control_url": "control-….com", "start_time": "…", "end_time": "…"},
        {"matches_template": false, "response": {"status_line": "503 …", "headers": {"Name": ["v"]},
         "body": "…", "tls": {"cert": "<base64 DER>"}}, "error": "…", "start_time": "…", "end_time": "…"},
        …],
     "anomaly": true, "controls_failed": false, "stateful_block": false, "tag": "…"}

How each probe becomes records (transaction ids in the order of ``response``; a control probe before
the first probe of the domain is the ``vantage_before`` one, after it ``vantage_after``):
- an ``error`` is Go's text, mapped to OONI's failure strings (`failures.from_go`); a ``dial …`` error
  failed at the connect, any other after it (in the TLS handshake for ``https`` when no response came,
  in the HTTP round trip for ``http``, in the read of the echo for ``echo`` and ``discard``);
- ``http`` and ``https``: a ``tcp_connect`` record, for https a ``tls_handshakes`` one, and a
  ``requests`` one holding the response Censored Planet kept (only when it did not match the
  vantage's template), with ``x_matches_template``;
- ``echo`` and ``discard`` (Quack): an ``x_echo`` record: nothing back from discard or the very bytes
  back from echo is what the template says (``matches_template``); other bytes are ``echo_mismatch``,
  their text kept as ``received``.

Satellite v2.2 (docs/satellitev2.rst; v2.1's lines held one object of answers, not a list of trials):
``{"vp", "location", "test_url", "response": [{"url", "has_type_a", "response": {"<address>": {"http",
"cert", "asnum", "asname", "matched": [...]}}, "error", "rcode", "start_time", "end_time"}, …],
"passed_liveness", "connect_error", "in_control_group", "anomaly", "confidence", "excluded",
"exclude_reason"}``: one ``queries`` record per trial (the control
domain before and after, the domain up to four times; rcode 3 is ``dns_nxdomain_error``, -1 a
connection error as Go wrote it), the addresses whose tags matched the control resolvers' in
``x_consistent`` and ``in_control_group`` as ``x_control_answered``, which the remote_dns rules read
where our nettest has its trusted resolver's answer. The pages Satellite fetched from the answers
(``blockpages.json``, another file) are not joined: its verdicts are not fingerprinted.

Censored Planet's own flags are kept in ``test_keys.x_censoredplanet``. The lines name no network:
``probe_asn`` is AS0 unless the vantage's AS is found in the table ``$TAMPERSCOPE_ASN_TABLE`` names
(``analyze --asn-table``; iptoasn.com's TSV, as `run` and `remote` read it); the country is the line's
own ``location.country_code`` (else the table's). Not read, each rejected with its reason and counted as
any bad line: Hyperquack v1 lines (``Server``, ``Keyword``, ``Results``: 2018-2021), the flattened rows of
the later ``Hyperquack-v2-raw`` files, Satellite v2.1 and older lines, and Satellite's other files.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from tamperscope.model import failures as F
from tamperscope.model.asn import AsnTable
from tamperscope.model.remote import AFTER, BEFORE, TEST

FORMAT = "hyperquack-v2"
SERVICES = {"http": ("http", 80), "https": ("https", 443), "echo": ("echo", 7), "discard": ("discard", 9)}
ASN_TABLE_ENV = "TAMPERSCOPE_ASN_TABLE"
MAX_ASN_TABLE = 256 << 20


class Unreadable(ValueError):
    """A line that looks like Censored Planet's but cannot be read as a measurement (the reason, one line)."""


def looks_like(m: Any) -> bool:
    """A line of Censored Planet's Hyperquack or Satellite (what no OONI measurement is: ``vp`` and ``test_url``,
    no ``test_keys``), or of a format of theirs this module names but does not read (v1, flattened rows...)."""
    return isinstance(m, dict) and "test_keys" not in m and (
        "vp" in m and "test_url" in m or _unread(m) is not None)


def _unread(m: dict[str, Any]) -> str | None:
    if "Server" in m and "Keyword" in m and "Results" in m:
        return "a Hyperquack v1 line (Server, Keyword, Results: 2018-2021), which is not read"
    if "server_ip" in m and "domain" in m and "domain_is_control" in m:
        return "a flattened Hyperquack-v2-raw row (one probe, not a measurement), which is not read"
    if "keyword" in m and "ip" in m and "fetched" in m:
        return "a line of Satellite's blockpages.json (pages fetched from answers), which is not read"
    return None


def _time(value: Any, what: str) -> dt.datetime:
    if not isinstance(value, str):
        raise Unreadable(f"{what} is not a time")
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Unreadable(f"{what} {value[:40]!r} is not a time") from None
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return when


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


@lru_cache(maxsize=1)
def _table(path: str) -> AsnTable | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(MAX_ASN_TABLE + 1)
        return AsnTable.from_text(text[:MAX_ASN_TABLE], path)
    except (OSError, ValueError):
        return None


def use_asn_table(given: str | os.PathLike[str] | None) -> int | None:
    """`analyze --asn-table FILE`, else ``$TAMPERSCOPE_ASN_TABLE``: read and checked, and named in the environment
    so that worker processes read it too; how many ranges it holds, or None when neither names a file.
    ValueError in one line (naming the variable when it was the one) for a file that cannot be read or parsed."""
    path = os.fspath(given) if given else os.environ.get(ASN_TABLE_ENV) or None
    if path is None:
        return None
    where = path if given else f"${ASN_TABLE_ENV} ({path})"
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(MAX_ASN_TABLE + 1)
    except OSError as exc:
        raise ValueError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    if len(text) > MAX_ASN_TABLE:
        raise ValueError(f"{where}: larger than {MAX_ASN_TABLE >> 20} MB: not an ASN table")
    table = AsnTable.from_text(text, where)  # ValueError naming the line
    if not table.size:
        raise ValueError(f"{where}: no IPv4 range in it (iptoasn.com's TSV: range_start, range_end, AS number, "
                         "country, description)")
    os.environ[ASN_TABLE_ENV] = str(os.path.abspath(path))
    return table.size


def _network(vantage: str) -> tuple[str, str | None, str | None]:
    """(probe_asn, probe_network_name, country) of the vantage, from the table $TAMPERSCOPE_ASN_TABLE names (AS0,
    None, None without one, or for an address it does not hold)."""
    path = os.environ.get(ASN_TABLE_ENV)
    table = _table(path) if path else None
    info = table.lookup(vantage) if table is not None else None
    if info is None or not info.asn:
        return "AS0", None, None
    return f"AS{info.asn}", info.name or None, info.cc if info.cc != "ZZ" else None


def _response(value: Mapping[str, Any]) -> dict[str, Any]:
    """Censored Planet's HTTP response object in OONI's shape (``code``, ``headers_list``, ``headers``, ``body``)."""
    status = _text(value.get("status_line")) or ""
    code = next((int(part) for part in status.split()[:2] if part.isdigit() and len(part) == 3), None)
    pairs: list[list[str]] = []
    headers = value.get("headers")
    if isinstance(headers, Mapping):
        for name, values in headers.items():
            for v in values if isinstance(values, list) else [values]:
                if isinstance(v, str):
                    pairs.append([str(name), v])
    body = value.get("body")
    return {"code": code, "x_status_line": status, "headers_list": pairs,
            "headers": {name: v for name, v in reversed(pairs)}, "body": body if isinstance(body, str) else None}


def _failure(error: Any) -> tuple[bool, str | None]:
    """(failed at the connect, the OONI failure string) of a probe's ``error``."""
    text = _text(error)
    if text is None:
        return False, None
    return text.lstrip().lower().startswith("dial "), F.from_go(text)


def convert(m: Mapping[str, Any]) -> dict[str, Any]:
    """The measurement a line of Censored Planet's is: `remote_web` for Hyperquack v2, `remote_dns` for Satellite
    v2.2; `Unreadable` (its reason) for one that is not usable: no vantage address, an unknown service, no
    probes, a probe without a time; a format not read."""
    if (why := _unread(dict(m))) is not None:
        raise Unreadable(why)
    vantage = m.get("vp")
    try:
        vantage = str(ipaddress.ip_address(vantage)) if isinstance(vantage, str) else None
    except ValueError:
        vantage = None
    if vantage is None:
        raise Unreadable("vp is not an IP address")
    if "service" not in m and any(k in m for k in _SATELLITE_KEYS):
        return _satellite(m, vantage)
    return _hyperquack(m, vantage)


def _envelope(m: Mapping[str, Any], vantage: str, start: dt.datetime, test_name: str, version: str,
              software: str, report_id: str | None, tk: dict[str, Any]) -> dict[str, Any]:
    where = m.get("location")
    location: Mapping[str, Any] = where if isinstance(where, Mapping) else {}
    asn, network, cc = _network(vantage)
    when = start.strftime("%Y-%m-%d %H:%M:%S")
    return {"test_name": test_name, "test_version": version, "software_name": software,
            "software_version": version.rsplit("-v", 1)[-1],  # "2" (Hyperquack v2), "2.2" (Satellite v2.2)
            "input": _text(m.get("test_url")), "probe_cc": _text(location.get("country_code")) or cc or "ZZ",
            "probe_asn": asn, "probe_network_name": network, "measurement_start_time": when, "test_start_time": when,
            "report_id": report_id, "test_keys": tk}


def _hyperquack(m: Mapping[str, Any], vantage: str) -> dict[str, Any]:
    service = m.get("service")
    if not isinstance(service, str) or service not in SERVICES:
        raise Unreadable(f"service {str(service)[:20]!r} is none of {', '.join(SERVICES)}")
    protocol, port = SERVICES[service]
    domain = _text(m.get("test_url"))
    if domain is None:
        raise Unreadable("no test_url")
    host = domain.split("/", 1)[0]
    probes = [p for p in m.get("response") or () if isinstance(p, Mapping)] if isinstance(
        m.get("response"), list) else []
    if not probes:
        raise Unreadable("no probe in response")
    start = _time(probes[0].get("start_time"), "response[0].start_time")
    where = m.get("location")
    location: Mapping[str, Any] = where if isinstance(where, Mapping) else {}
    tk: dict[str, Any] = {"vantage": vantage, "domain": domain, "protocols": [protocol]}
    records: dict[str, list[dict[str, Any]]] = {"tcp_connect": [], "tls_handshakes": [], "requests": [],
                                                 "x_echo": []}
    tested = False
    address = f"[{vantage}]:{port}" if ":" in vantage else f"{vantage}:{port}"
    for i, probe in enumerate(probes):
        control = _text(probe.get("control_url"))
        if control is None:
            role, name, tested = TEST, host, True
        else:
            role, name = (AFTER if tested else BEFORE), control.split("/", 1)[0]
            tk.setdefault("control_domain", name)
        t0 = (_time(probe.get("start_time"), f"response[{i}].start_time") - start).total_seconds()
        try:
            t = (_time(probe.get("end_time"), f"response[{i}].end_time") - start).total_seconds()
        except Unreadable:
            t = t0
        base = {"transaction_id": i + 1, "tags": [protocol, role], "t0": t0, "t": t}
        matches = probe.get("matches_template") is True
        at_connect, failure = _failure(probe.get("error"))
        answer = probe.get("response")
        if matches:
            at_connect, failure = False, None
        records["tcp_connect"].append({**base, "ip": vantage, "port": port, "status": {
            "success": not at_connect, "failure": failure if at_connect else None, "blocked": None}})
        if at_connect:
            continue
        if protocol in ("echo", "discard"):
            received = answer if isinstance(answer, str) and answer else None
            echo_failure = None if matches else F.ECHO_MISMATCH if received else failure or F.unknown(
                "the answer did not match the template")
            records["x_echo"].append({**base, "received": received, "failure": echo_failure,
                                      "x_matches_template": matches})
            continue
        got = _response(answer) if isinstance(answer, Mapping) and answer.get("status_line") \
            else None
        if protocol == "https":
            tls = answer.get("tls") if isinstance(answer, Mapping) else None
            cert = tls.get("cert") if isinstance(tls, Mapping) else None
            records["tls_handshakes"].append({
                **base, "address": address, "server_name": name, "failure": None if got or matches else failure,
                "peer_certificates": [{"format": "base64", "data": cert}] if isinstance(cert, str) and cert else []})
            if got is None and not matches:
                continue
        records["requests"].append({
            **base, "request": {"url": f"{protocol}://{name}/", "method": "GET", "headers_list": [["Host", name]],
                                "body": "", "tor": {"is_tor": False}},
            "response": got or {}, "failure": None if got or matches else failure or F.unknown(
                "the answer did not match the template"),
            "x_matches_template": matches})
    tk.update({key: value for key, value in records.items() if value})
    tk["x_censoredplanet"] = {"format": FORMAT, "service": service, "anomaly": m.get("anomaly"),
                              "controls_failed": m.get("controls_failed"), "stateful_block": m.get("stateful_block"),
                              "tag": m.get("tag"), "country_name": location.get("country_name")}
    tag = _text(m.get("tag"))
    return _envelope(m, vantage, start, "remote_web", FORMAT, "censoredplanet-hyperquack",
                     f"censoredplanet-{service}-{tag}" if tag else None, tk)


SATELLITE = "satellite-v2.2"
_SATELLITE_KEYS = ("passed_liveness", "in_control_group", "connect_error")
_RCODES = {2: F.DNS_SERVFAIL_ERROR, 3: F.DNS_NXDOMAIN_ERROR, 5: F.DNS_REFUSED_ERROR}


def _rcode_failure(rcode: Any, error: Any, answered: bool) -> str | None:
    """The OONI failure string of one Satellite trial: its DNS rcode, or (rcode -1) its connection error."""
    if rcode == 0 or (rcode is None and not _text(error)):
        return None if answered else F.DNS_NO_ANSWER
    if rcode == -1 or rcode is None:
        text = _text(error)
        return F.from_go(text) if text and text != "null" else F.unknown("no answer")
    return _RCODES.get(rcode, F.DNS_SERVER_MISBEHAVING) if type(rcode) is int else F.DNS_SERVER_MISBEHAVING


def _satellite(m: Mapping[str, Any], vantage: str) -> dict[str, Any]:
    """The `remote_dns` measurement a Satellite v2.2 line (``results.json``) is: one ``queries`` record per trial
    (the control domain before and after, the domain up to four times), with the answers' addresses; the addresses
    Censored Planet found consistent with its control resolvers' answers (a tag matched: the address itself, its
    page's or certificate's hash, its AS) in ``x_consistent``, and whether a control resolver answered the domain
    in ``x_control_answered``: what the remote_dns rules read where our nettest has its trusted resolver's answer."""
    domain = _text(m.get("test_url"))
    if domain is None:
        raise Unreadable("no test_url")
    trials = m.get("response")
    if not isinstance(trials, list):
        raise Unreadable("response is not a list of trials (Satellite v2.1 and older lines are not read)")
    trials = [t for t in trials if isinstance(t, Mapping)]
    if not trials:
        raise Unreadable("no trial in response")
    start = _time(trials[0].get("start_time") or m.get("start_time"), "response[0].start_time")
    queries: list[dict[str, Any]] = []
    consistent: list[str] = []
    asns: dict[str, int] = {}
    tested = False
    for i, trial in enumerate(trials):
        url = _text(trial.get("url")) or ""
        if url == domain:
            role, tested = TEST, True
        else:
            role = AFTER if tested else BEFORE
        t0 = (_time(trial.get("start_time"), f"response[{i}].start_time") - start).total_seconds()
        try:
            t = (_time(trial.get("end_time"), f"response[{i}].end_time") - start).total_seconds()
        except Unreadable:
            t = t0
        answers: list[dict[str, Any]] = []
        found = trial.get("response")
        for ip, tags in (found.items() if isinstance(found, Mapping) else ()):
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                continue
            v4 = address.version == 4
            answers.append({"answer_type": "A" if v4 else "AAAA", "ipv4" if v4 else "ipv6": str(address)})
            tags = tags if isinstance(tags, Mapping) else {}
            if role == TEST and tags.get("matched"):
                consistent.append(str(address))
            if type(tags.get("asnum")) is int and tags["asnum"] > 0:
                asns[str(address)] = tags["asnum"]
        queries.append({"transaction_id": i + 1, "tags": [role], "t0": t0, "t": t, "hostname": url,
                        "query_type": "A", "engine": "udp", "resolver_address": f"{vantage}:53",
                        "answers": answers or None,
                        "failure": _rcode_failure(trial.get("rcode"), trial.get("error"), bool(answers))})
    where = m.get("location")
    location: Mapping[str, Any] = where if isinstance(where, Mapping) else {}
    tk: dict[str, Any] = {"vantage": vantage, "domain": domain, "queries": queries,
                          "x_consistent": sorted(set(consistent)), "x_control_answered": m.get("in_control_group")
                          is True, "x_asn": asns}
    control = next((q["hostname"] for q in queries if BEFORE in q["tags"] and q["hostname"]), None)
    if control:
        tk["control_domain"] = control
    tk["x_censoredplanet"] = {
        "format": SATELLITE, "anomaly": m.get("anomaly"), "passed_liveness": m.get("passed_liveness"),
        "connect_error": m.get("connect_error"), "in_control_group": m.get("in_control_group"),
        "confidence": m.get("confidence"), "excluded": m.get("excluded"), "exclude_reason": m.get("exclude_reason"),
        "country_name": location.get("country_name")}
    return _envelope(m, vantage, start, "remote_dns", SATELLITE, "censoredplanet-satellite", None, tk)


def as_measurement(m: Any) -> Any:
    """``m`` itself, or the measurement a Hyperquack line is (for those who read the store's raw bytes: the
    explorer, the report's blockpages); ``m`` when it cannot be converted."""
    if not looks_like(m):
        return m
    try:
        return convert(m)
    except Unreadable:
        return m


__all__ = ["ASN_TABLE_ENV", "FORMAT", "SATELLITE", "SERVICES", "Unreadable", "as_measurement", "convert",
           "looks_like", "use_asn_table"]
