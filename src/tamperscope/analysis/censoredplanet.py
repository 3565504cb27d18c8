"""Censored Planet's Hyperquack measurements, read as `remote_web` measurements.

Censored Planet publishes what its Hyperquack scans saw (``CP_Quack-<service>-<date>.tar.gz``, one
``results.json`` of JSON lines inside): a domain sent to an in-country web, echo or discard server
from outside, between two probes of an innocuous control domain. That is what our `remote_web`
nettest does, so a line of it is read as one of our measurements and judged by the same rules
(model/remote.py), with the fingerprints every other measurement meets. The raw line is kept as it
was; this conversion is run again wherever the store's raw bytes are read (the explorer, a
re-analysis), so the verdict's evidence pointers (``test_keys.requests[1]``) name records of the
converted measurement, which the explorer shows.

The format read is Hyperquack v2's (2021 on; docs/hyperquackv2.rst of censoredplanet/censoredplanet):

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

Censored Planet's own flags (``anomaly``, ``controls_failed``, ``stateful_block``) and the scan's
``tag`` are kept in ``test_keys.x_censoredplanet``. The line names no network: ``probe_asn`` is AS0
unless the vantage's AS is found in the table ``$TAMPERSCOPE_ASN_TABLE`` names (iptoasn.com's TSV,
as `run` and `remote` read it); the country is the line's own ``location.country_code``.
Hyperquack v1 lines (``Server``, ``Keyword``, ``Results``: 2018-2021) and the flattened rows of the
later ``Hyperquack-v2-raw`` files are not read: such a line is rejected (``missing_field``), counted,
as any other.
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


class NotHyperquack(ValueError):
    """A line that looks like Censored Planet's but cannot be read as a measurement (the reason, one line)."""


def looks_like(m: Any) -> bool:
    """A line of Censored Planet's Hyperquack (what no OONI measurement is: ``vp`` and ``test_url``, no
    ``test_keys``), or of a format of theirs this module names but does not read (v1, flattened rows)."""
    return isinstance(m, dict) and "test_keys" not in m and (
        "vp" in m and "test_url" in m or _unread(m) is not None)


def _unread(m: dict[str, Any]) -> str | None:
    if "Server" in m and "Keyword" in m and "Results" in m:
        return "a Hyperquack v1 line (Server, Keyword, Results: 2018-2021), which is not read"
    if "server_ip" in m and "domain" in m and "domain_is_control" in m:
        return "a flattened Hyperquack-v2-raw row (one probe, not a measurement), which is not read"
    return None


def _time(value: Any, what: str) -> dt.datetime:
    if not isinstance(value, str):
        raise NotHyperquack(f"{what} is not a time")
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise NotHyperquack(f"{what} {value[:40]!r} is not a time") from None
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


def _network(vantage: str) -> tuple[str, str | None]:
    """(probe_asn, probe_network_name) of the vantage, from the table $TAMPERSCOPE_ASN_TABLE names (AS0, None
    without one, or for an address it does not hold)."""
    path = os.environ.get(ASN_TABLE_ENV)
    table = _table(path) if path else None
    info = table.lookup(vantage) if table is not None else None
    if info is None or not info.asn:
        return "AS0", None
    return f"AS{info.asn}", info.name or None


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
    """The `remote_web` measurement a Hyperquack v2 line is; `NotHyperquack` (its reason) for one that is not
    usable: no vantage address, an unknown service, no probes, a probe without a time; a format not read."""
    if (why := _unread(dict(m))) is not None:
        raise NotHyperquack(why)
    vantage = m.get("vp")
    try:
        vantage = str(ipaddress.ip_address(vantage)) if isinstance(vantage, str) else None
    except ValueError:
        vantage = None
    if vantage is None:
        raise NotHyperquack("vp is not an IP address")
    service = m.get("service")
    if service not in SERVICES:
        raise NotHyperquack(f"service {str(service)[:20]!r} is none of {', '.join(SERVICES)}")
    protocol, port = SERVICES[service]
    domain = _text(m.get("test_url"))
    if domain is None:
        raise NotHyperquack("no test_url")
    host = domain.split("/", 1)[0]
    probes = [p for p in m.get("response") or () if isinstance(p, Mapping)] if isinstance(
        m.get("response"), list) else []
    if not probes:
        raise NotHyperquack("no probe in response")
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
        except NotHyperquack:
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
    asn, network = _network(vantage)
    when = start.strftime("%Y-%m-%d %H:%M:%S")
    tag = _text(m.get("tag"))
    return {"test_name": "remote_web", "test_version": FORMAT, "software_name": "censoredplanet-hyperquack",
            "software_version": "2", "input": domain, "probe_cc": _text(location.get("country_code")) or "ZZ",
            "probe_asn": asn, "probe_network_name": network, "measurement_start_time": when,
            "test_start_time": when, "report_id": f"censoredplanet-{service}-{tag}" if tag else None,
            "test_keys": tk}


def as_measurement(m: Any) -> Any:
    """``m`` itself, or the measurement a Hyperquack line is (for those who read the store's raw bytes: the
    explorer, the report's blockpages); ``m`` when it cannot be converted."""
    if not looks_like(m):
        return m
    try:
        return convert(m)
    except NotHyperquack:
        return m


__all__ = ["ASN_TABLE_ENV", "FORMAT", "NotHyperquack", "SERVICES", "as_measurement", "convert", "looks_like",
           "use_asn_table"]
