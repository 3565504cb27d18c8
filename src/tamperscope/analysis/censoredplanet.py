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

Satellite v2.2 (docs/satellitev2.rst; v2.1's lines hold one object of answers, not a list of trials: `_satellite_v21`):
``{"vp", "location", "test_url", "response": [{"url", "has_type_a", "response": {"<address>": {"http",
"cert", "asnum", "asname", "matched": [...]}}, "error", "rcode", "start_time", "end_time"}, …],
"passed_liveness", "connect_error", "in_control_group", "anomaly", "confidence", "excluded",
"exclude_reason"}``: one ``queries`` record per trial (the control
domain before and after, the domain up to four times; rcode 3 is ``dns_nxdomain_error``, -1 a
connection error as Go wrote it), the addresses whose tags matched the control resolvers' in
``x_consistent`` and ``in_control_group`` as ``x_control_answered``, which the remote_dns rules read
where our nettest has its trusted resolver's answer. The times are Go's (``2021-10-20 14:51:41.295287198 -0400
EDT``), on the line only. The pages Satellite fetched from the answers' addresses (``blockpages.json``, beside
``results.json``) are joined to the line they belong to (`pages_beside`, `join`): kept with it under `PAGES`,
and read as ``validate`` records (a known blockpage confirms the poisoning; a trusted certificate for the domain
clears the address), as our own remote_dns's validation is.

Censored Planet's own flags are kept in ``test_keys.x_censoredplanet``. The lines name no network:
``probe_asn`` is AS0 unless the vantage's AS is found in the table ``$TAMPERSCOPE_ASN_TABLE`` names
(``analyze --asn-table``; iptoasn.com's TSV, as `run` and `remote` read it); the country is the line's
own ``location.country_code``, for a Satellite v1 line (which has no location) the one its scan's
``tagged_resolvers.json`` names for its resolver (`with_country`), else the table's. Not read, each rejected
with its reason and counted as any bad line: Hyperquack v1 lines (``Server``, ``Keyword``, ``Results``:
2018-2021; read as v2's, `_v1`) and Satellite v1 lines (``resolver``, ``query``, ``answers``: 2018-2021;
`_satellite_v1`) from a file whose name does not give their protocol or their scan, the flattened rows of the
later ``Hyperquack-v2-raw`` files, Satellite's other files (its ``responses`` files, its lists of resolvers,
v1's ``interference_err.json`` and ``answers_control.json``), and the lines of a ``blockpages.json`` with no
``results.json`` beside it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import posixpath
import re
import tarfile
import zlib
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, NoReturn

import orjson

from tamperscope.analysis.documents import read_json
from tamperscope.analysis.reader import read
from tamperscope.analysis.records import MAX_MEASUREMENT_BYTES, Line
from tamperscope.model import failures as F
from tamperscope.model.asn import AsnTable
from tamperscope.model.countries import MAX_NAME, code_of
from tamperscope.model.inputs import Damaged, inflated, read_upto
from tamperscope.model.remote import AFTER, BEFORE, TEST, VALIDATE

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
        "vp" in m and "test_url" in m or is_v1(m) or is_satellite_v1(m) or _unread(m) is not None)


def is_v1(m: Any) -> bool:
    """A line of Hyperquack v1 (``Server``, ``Keyword``, ``Results``: July 2018 to February 2021)."""
    return isinstance(m, dict) and "Server" in m and "Keyword" in m and "Results" in m and "test_keys" not in m


def _unread(m: dict[str, Any]) -> str | None:
    if "server_ip" in m and "domain" in m and "domain_is_control" in m:
        return "a flattened Hyperquack-v2-raw row (one probe, not a measurement), which is not read"
    if "keyword" in m and "ip" in m and "fetched" in m:
        return ("a line of Satellite's blockpages.json with no results.json beside it: a page is read with the "
                "measurement whose answer it was fetched from")
    if "resolver" in m and "query" in m and isinstance(m.get("answers"), list):
        return ("a line of Satellite v1's answers that were not judged (interference_err.json: no control resolver "
                "answered the domain) or of a control resolver's own (answers_control.json)")
    if ("resolver" in m or "vp" in m) and "query" not in m and "test_url" not in m and (
            "country" in m or "location" in m or "name" in m):
        return ("a line of Satellite's lists of resolvers (resolvers.json, tagged_resolvers.json: where a resolver is "
                "or its name, not a measurement): a v1 line's country is read from its scan's tagged_resolvers.json")
    if "vp" in m and "test_url" in m and "service" not in m and "anomaly" not in m and _trials_of(m):
        return ("a line of Satellite's responses files (one resolver's answers, not yet compared with the control "
                "resolvers'): results.json holds the measurement")
    return None


def _trials_of(m: Mapping[str, Any]) -> bool:
    """Whether ``response`` is Satellite's list of trials (each names the ``url`` it asked for)."""
    trials = m.get("response")
    return isinstance(trials, list) and bool(trials) and isinstance(trials[0], Mapping) and "url" in trials[0]


_GO_TIME = re.compile(r"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?) ([+-]\d\d)(\d\d)(?: \S+)*")


def _time(value: Any, what: str) -> dt.datetime:
    """A time as Censored Planet writes it: RFC 3339 (Hyperquack v2: ``2021-05-30T01:02:03.620124638-04:00``), or
    Go's ``time.String()`` (Satellite v2.2 and its blockpages: ``2021-10-20 14:51:41.295287198 -0400 EDT``, with a
    monotonic-clock ``m=+8.07`` at times); in UTC, without a zone."""
    if not isinstance(value, str):
        raise Unreadable(f"{what} is not a time")
    text = value.strip()
    go = _GO_TIME.fullmatch(text)
    if go is not None:
        text = f"{go[1]}T{go[2]}{go[3]}:{go[4]}"
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
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
        return AsnTable.from_text(_table_text(path), path)
    except (OSError, ValueError):  # Damaged and _TooLarge are ValueErrors
        return None


class _TooLarge(ValueError):
    pass


def _table_text(path: str) -> str:
    """An ASN table file's text (a byte that is not UTF-8 replaced), inflated when it is compressed (iptoasn.com
    publishes ``ip2asn-v4.tsv.gz``); _TooLarge past `MAX_ASN_TABLE` bytes, compressed or not."""
    with open(path, "rb") as f:
        data = read_upto(f, MAX_ASN_TABLE + 1)
    if len(data) <= MAX_ASN_TABLE:
        data = inflated(data, MAX_ASN_TABLE + 1)
    if len(data) > MAX_ASN_TABLE:
        raise _TooLarge(f"larger than {MAX_ASN_TABLE >> 20} MB: not an ASN table")
    return data.decode("utf-8", errors="replace")


def use_asn_table(given: str | os.PathLike[str] | None) -> int | None:
    """`analyze --asn-table FILE`, else ``$TAMPERSCOPE_ASN_TABLE``: read and checked, and named in the environment
    so that worker processes read it too; how many ranges it holds, or None when neither names a file.
    ValueError in one line (naming the variable when it was the one) for a file that cannot be read or parsed."""
    path = os.fspath(given) if given else os.environ.get(ASN_TABLE_ENV) or None
    if path is None:
        return None
    where = path if given else f"${ASN_TABLE_ENV} ({path})"
    try:
        text = _table_text(path)
    except OSError as exc:
        raise ValueError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    except Damaged as exc:
        raise ValueError(f"{where}: cannot read it: {exc}") from None
    except _TooLarge as exc:
        raise ValueError(f"{where}: {exc}") from None
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
    code = next((int(part) for part in status.split()[:2] if part.isascii() and part.isdigit() and len(part) == 3),
                None)
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
    """The measurement a line of Censored Planet's is: `remote_web` for Hyperquack (v1, v2), `remote_dns` for Satellite
    (v1, v2.1, v2.2); `Unreadable` (its reason) for one that is not usable: no vantage address, an unknown service, no
    probes, a probe without a time; a format not read."""
    if (why := _unread(dict(m))) is not None:
        raise Unreadable(why)
    if is_v1(m):
        return _v1(m)
    if is_satellite_v1(m):
        return _satellite_v1(m)
    vantage = _vantage(m, "vp")
    if "service" not in m and any(k in m for k in _SATELLITE_KEYS):
        return _satellite(m, vantage)
    return _hyperquack(m, vantage)


def _vantage(m: Mapping[str, Any], key: str) -> str:
    """The vantage's address, ``m[key]``, written as Python writes it; `Unreadable` when it is none."""
    found = _address(m.get(key))
    return found if found is not None else _no_address(key)


def _no_address(key: str) -> NoReturn:
    raise Unreadable(f"{key} is not an IP address")


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


def _service(service: Any) -> tuple[str, int]:
    """(protocol, port) of a Hyperquack ``service``: its name, with the port after a colon when the vantage's
    service listened on another than the usual one (``echo:8080``); `Unreadable` for anything else."""
    name, colon, port = service.partition(":") if isinstance(service, str) else ("", "", "")
    if name in SERVICES and not colon:
        return SERVICES[name]
    if name in SERVICES and port.isascii() and port.isdigit() and len(port) <= 5 and 0 < int(port) < 65536:
        return SERVICES[name][0], int(port)
    raise Unreadable(f"service {str(service)[:20]!r} is none of {', '.join(SERVICES)} (with a :port or not)")


def _hyperquack(m: Mapping[str, Any], vantage: str, fmt: str = FORMAT) -> dict[str, Any]:
    service = m.get("service")
    protocol, port = _service(service)
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
    tk["x_censoredplanet"] = {"format": fmt, "service": service, "anomaly": m.get("anomaly"),
                              "controls_failed": m.get("controls_failed"), "stateful_block": m.get("stateful_block"),
                              "tag": m.get("tag"), "country_name": location.get("country_name")}
    tag = _text(m.get("tag"))
    return _envelope(m, vantage, start, "remote_web", fmt, "censoredplanet-hyperquack",
                     f"censoredplanet-{service}-{tag}" if tag else None, tk)


# --------------------------------------------------------------------------- Hyperquack v1 (2018-2021)

V1 = "hyperquack-v1"
SERVICE = "x_service"  # the protocol of a Hyperquack v1 line, which only its scan's name says, kept with it
V1_CONTROL = "example5718349450314.com"  # v1's control domain, named where a control probe's Sent is empty
_QUACK_SCAN = re.compile(r"CP_Quack-(echo|discard|http|https)-\d{4}-\d\d-\d\d")
_HOST = re.compile(r"(?im)^host:[ \t]*([^\r\n]*)")


def service_of(source: str) -> str | None:
    """The protocol a scan's name gives (``CP_Quack-https-2020-11-06-15-15-31/results.json``), or None."""
    found = _QUACK_SCAN.findall(source or "")
    return found[-1] if found else None


def _sent_domain(sent: Any, service: str) -> str | None:
    """The domain a v1 probe sent: the bytes' Host for echo and discard, the name itself for http and https."""
    if not isinstance(sent, str) or not sent.strip():
        return None
    if service in ("echo", "discard"):
        host = _HOST.search(sent)
        return host[1].strip() or None if host else None
    return sent.strip()


def _v1(m: Mapping[str, Any]) -> dict[str, Any]:
    """The `remote_web` measurement a Hyperquack v1 line is: its ``Results`` read as v2's probes. The first
    ``Retries`` + 1 are the domain's; the rest are the control domain's, which v1 probed only after the domain's
    had failed (``x_control_after_only``: the remote_web rules take a completed probe, of the domain or of the
    control after it, as the vantage's proof of life). ``Success`` is v2's ``matches_template``; an ``Error`` that
    says so ("Incorrect web response: …", "Incorrect echo response") is the template's mismatch, not a failure."""
    service = m.get(SERVICE)
    if not isinstance(service, str) or service not in SERVICES:
        raise Unreadable("a Hyperquack v1 line, whose protocol only its scan's name says (CP_Quack-<protocol>-<date>):"
                         " analyze its scan's directory or tarball, or a results.json inside one")
    vantage = _vantage(m, "Server")
    domain = _text(m.get("Keyword"))
    if domain is None:
        raise Unreadable("no Keyword")
    results = m.get("Results")
    trials = [r for r in results if isinstance(r, Mapping)] if isinstance(results, list) else []
    if not trials:
        raise Unreadable("no probe in Results")
    retries = m.get("Retries")
    tests = retries + 1 if type(retries) is int and retries >= 0 else len(trials)
    probes: list[dict[str, Any]] = []
    for i, trial in enumerate(trials):
        sent = _sent_domain(trial.get("Sent"), service)
        control = i >= tests if sent is None else sent != domain
        error = _text(trial.get("Error"))
        mismatch = error is not None and error.startswith("Incorrect ")
        probe = {"matches_template": trial.get("Success") is True, "response": trial.get("Received"),
                 "error": None if mismatch else error, "start_time": trial.get("StartTime"),
                 "end_time": trial.get("EndTime")}
        if control:
            probe["control_url"] = sent or V1_CONTROL
        probes.append(probe)
    line = {"vp": vantage, "service": service, "test_url": domain, "response": probes, "anomaly": m.get("Blocked"),
            "controls_failed": m.get("FailSanity"), "stateful_block": m.get("StatefulBlock")}
    out = _hyperquack(line, vantage, V1)
    out["test_keys"]["x_control_after_only"] = True
    out["test_keys"]["x_censoredplanet"]["retries"] = retries
    return out


def with_service(data: bytes, m: Mapping[str, Any], source: str) -> tuple[bytes, dict[str, Any]] | None:
    """A Hyperquack v1 line with the protocol its scan's name gives, added as a last key (`SERVICE`), so that
    what the store keeps says it; None when the name gives none."""
    service = service_of(source)
    if service is None or SERVICE in m:
        return None
    joined = _append(data, SERVICE, orjson.dumps(service))
    return (joined, {**m, SERVICE: service}) if joined is not None else None


def _append(data: bytes, key: str, value: bytes) -> bytes | None:
    """A JSON object's bytes with ``key``: ``value`` added last, the rest byte for byte; None if not an object."""
    body = data.rstrip()
    if not body.endswith(b"}"):
        return None
    head = body[:-1].rstrip()
    return head + (b"" if head.endswith(b"{") else b",") + orjson.dumps(key) + b":" + value + b"}"


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
    if isinstance(trials, Mapping):
        return _satellite_v21(m, vantage, domain, trials)
    if not isinstance(trials, list):
        raise Unreadable("response is neither a list of trials (Satellite v2.2) nor an object of answers (v2.1)")
    trials = [t for t in trials if isinstance(t, Mapping)]
    if not trials:
        raise Unreadable("no trial in response")
    # the line's start (a trial of v2.2's results.json has no time of its own; the test data of 2021 had one)
    start = _time(m.get("start_time") or trials[0].get("start_time"), "start_time")
    queries: list[dict[str, Any]] = []
    consistent: list[str] = []
    asns: dict[str, int] = {}
    answered: set[str] = set()  # the addresses of the domain's answers: the pages fetched from them are joined
    tested = False
    for i, trial in enumerate(trials):
        url = _text(trial.get("url")) or ""
        if url == domain:
            role, tested = TEST, True
        else:
            role = AFTER if tested else BEFORE
        times = _times(trial, start, f"response[{i}]")
        answers: list[dict[str, Any]] = []
        found = trial.get("response")
        for ip, tags in (found.items() if isinstance(found, Mapping) else ()):
            address = _address(ip)
            if address is None:
                continue
            v4 = ":" not in address
            answers.append({"answer_type": "A" if v4 else "AAAA", "ipv4" if v4 else "ipv6": address})
            tags = tags if isinstance(tags, Mapping) else {}
            if role == TEST:
                answered.add(address)
                if tags.get("matched"):
                    consistent.append(address)
            if type(tags.get("asnum")) is int and tags["asnum"] > 0:
                asns[address] = tags["asnum"]
        queries.append({"transaction_id": i + 1, "tags": [role], **times, "hostname": url,
                        "query_type": "A", "engine": "udp", "resolver_address": f"{vantage}:53",
                        "answers": answers or None,
                        "failure": _rcode_failure(trial.get("rcode"), trial.get("error"), bool(answers))})
    tk: dict[str, Any] = {"vantage": vantage, "domain": domain, "queries": queries,
                          "x_consistent": sorted(set(consistent)), "x_control_answered": m.get("in_control_group")
                          is True, "x_asn": asns}
    control = next((q["hostname"] for q in queries if BEFORE in q["tags"] and q["hostname"]), None)
    if control:
        tk["control_domain"] = control
    return _judged(m, tk, answered, start, SATELLITE, "passed_liveness")


def _judged(m: Mapping[str, Any], tk: dict[str, Any], answered: set[str], start: dt.datetime, fmt: str,
            liveness: str) -> dict[str, Any]:
    """The `remote_dns` measurement of a line of Satellite v2 (``results.json``) with its records ``tk``: the pages
    fetched from the addresses it answered for the domain (`PAGES`) added as ``validate`` records, and Censored
    Planet's own flags (``liveness`` names the one that says the resolver answered the control domain)."""
    where = m.get("location")
    location: Mapping[str, Any] = where if isinstance(where, Mapping) else {}
    pages = _page_records(m.get(PAGES), tk["domain"], answered, start, len(tk["queries"]) + 1)
    tk.update({key: value for key, value in pages.items() if value})
    tk["x_censoredplanet"] = {
        "format": fmt, "pages": len(m[PAGES]) if isinstance(m.get(PAGES), list) else 0,
        "anomaly": m.get("anomaly"), liveness: m.get(liveness),
        "connect_error": m.get("connect_error"), "in_control_group": m.get("in_control_group"),
        "confidence": m.get("confidence"), "excluded": m.get("excluded"), "exclude_reason": m.get("exclude_reason"),
        "country_name": location.get("country_name")}
    return _envelope(m, tk["vantage"], start, "remote_dns", fmt, "censoredplanet-satellite", None, tk)


SATELLITE_V21 = "satellite-v2.1"
_MATCHED = frozenset(("ip", "http", "cert", "asnum", "asname"))  # v1 and v2.1: the tags an answer shared with the
# control resolvers' (an address with none of them, or only "no_tags", is unlike theirs)
_NOT_ADDRESSES = ("rcode", "error")  # the keys of v2.1's response object that are not answers


_RCODE = re.compile(r"-?[0-9]{1,7}")


def _rcode(value: Any) -> int | None:
    """A DNS rcode as Satellite wrote it: an integer (v2.2) or its decimal text (v2.1, ``"-1"``)."""
    if type(value) is int:
        return value
    if isinstance(value, str) and _RCODE.fullmatch(value):
        return int(value)
    return None


def _tagged(found: Mapping[str, Any]) -> tuple[list[str], list[str], list[dict[str, str]]]:
    """(the addresses, those whose tags matched the control resolvers', the answer records) of an object of answered
    addresses and their tags (v1's ``answers``, v2.1's ``response``: ``{"<address>": ["ip", "cert", ...]}``)."""
    addresses: list[str] = []
    consistent: list[str] = []
    for ip, tags in found.items():
        address = _address(ip) if ip not in _NOT_ADDRESSES else None
        if address is None:
            continue
        if address not in addresses:
            addresses.append(address)
        if isinstance(tags, list) and not _MATCHED.isdisjoint(t for t in tags if isinstance(t, str)):
            consistent.append(address)
    answers = [{"answer_type": "A", "ipv4": ip} if ":" not in ip else {"answer_type": "AAAA", "ipv6": ip}
               for ip in addresses]
    return addresses, consistent, answers


def _satellite_v21(m: Mapping[str, Any], vantage: str, domain: str, found: Mapping[str, Any]) -> dict[str, Any]:
    """The `remote_dns` measurement a Satellite v2.1 line is (March to June 2021: ``results.json``, and the
    ``interference.json`` of its first scans). Its ``response`` is one object: each answered address with the
    tags it shared with the control resolvers' answers (``ip``, ``http``, ``cert``, ``asnum``, ``asname``; or
    ``no_tags``), ``rcode`` the rcodes of the domain's trials (Satellite asked up to four times, until one was
    answered) and ``error`` the connection errors of the trials whose rcode is -1, in order. One ``queries``
    record per trial; the addresses are the answer of the trial answered last (rcode 0); the control domain's
    queries were not kept, only whether both were answered (``passed_control``, ``x_vantage_alive``)."""
    rcodes = found.get("rcode")
    codes = [_rcode(r) for r in rcodes] if isinstance(rcodes, list) else []
    errors = found.get("error")
    texts = iter([e for e in errors if isinstance(e, str)] if isinstance(errors, list) else [])
    trials: list[tuple[int | None, str | None]] = [(c, next(texts, None) if c == -1 else None) for c in codes]
    trials += [(-1, text) for text in texts]  # some lines hold errors whose -1 rcodes were not written
    answered = max((k for k, (code, _) in enumerate(trials) if code == 0), default=None)
    addresses, consistent, answers = _tagged(found)
    if addresses and answered is None:
        raise Unreadable("answers but no trial that got them (no rcode 0): Satellite v2.1 wrote some such lines")
    start = _time(m.get("start_time"), "start_time")
    queries = [{"transaction_id": k + 1, "tags": [TEST], "hostname": domain, "query_type": "A", "engine": "udp",
                "resolver_address": f"{vantage}:53", "answers": (answers or None) if k == answered else None,
                # another trial answered (rcode 0) before the last: its answer was not kept apart
                "failure": F.unknown("no rcode") if code is None else _rcode_failure(code, error, bool(answers))
                if k == answered or code != 0 else None}
               for k, (code, error) in enumerate(trials)]
    tk: dict[str, Any] = {"vantage": vantage, "domain": domain, "queries": queries,
                          "x_consistent": sorted(set(consistent)),
                          "x_control_answered": m.get("in_control_group") is True,
                          "x_vantage_alive": m.get("passed_control") is True}
    return _judged(m, tk, set(addresses), start, SATELLITE_V21, "passed_control")


# --------------------------------------------------------------------------- Satellite v1 (2018 to February 2021)

SATELLITE_V1 = "satellite-v1"
SCAN = "x_scan"  # the name of the scan a Satellite v1 line came from, which alone says when it was measured
LOCATION = "x_location"  # a Satellite v1 line's resolver's country, from its scan's tagged_resolvers.json
_SATELLITE_SCAN = re.compile(r"CP[_-]Satellite-(\d{4}-\d\d-\d\d)(?:-(\d\d)-(\d\d)-(\d\d))?")


def is_satellite_v1(m: Any) -> bool:
    """A judged line of Satellite v1's ``interference.json`` (``resolver``, ``query``, ``answers`` an object of the
    answered addresses and their tags, or ``error``), with or without the scan's name analyze adds (`SCAN`)."""
    return isinstance(m, dict) and "resolver" in m and "query" in m and "test_keys" not in m and (
        isinstance(m.get("answers"), Mapping) or "error" in m)


def scan_of(source: str) -> str | None:
    """The name of the Satellite scan a file belongs to (``CP_Satellite-2020-09-02-12-00-01``), or None."""
    found = list(_SATELLITE_SCAN.finditer(source or ""))
    return found[-1][0] if found else None


def with_scan(data: bytes, m: Mapping[str, Any], source: str) -> tuple[bytes, dict[str, Any]] | None:
    """A Satellite v1 line with the name of its scan, added as a last key (`SCAN`), so that what the store keeps
    says when it was measured; None when the source's name gives none."""
    scan = scan_of(source)
    if scan is None or SCAN in m:
        return None
    joined = _append(data, SCAN, orjson.dumps(scan))
    return (joined, {**m, SCAN: scan}) if joined is not None else None


def _scan_time(scan: Any) -> dt.datetime:
    found = _SATELLITE_SCAN.fullmatch(scan) if isinstance(scan, str) else None
    if found is None:
        raise Unreadable("a line of Satellite v1, whose time only its scan's name says (CP_Satellite-<date>): "
                         "analyze its scan's directory or tarball, or a file inside one")
    try:
        return dt.datetime.fromisoformat(found[1] + (f"T{found[2]}:{found[3]}:{found[4]}" if found[2] else ""))
    except ValueError:
        raise Unreadable(f"{scan[:40]!r} does not name a time") from None


def _satellite_v1(m: Mapping[str, Any]) -> dict[str, Any]:
    """The `remote_dns` measurement a line of Satellite v1's ``interference.json`` is: one ``queries`` record, the
    resolver's answer (``answers``: each address with the tags it shared with the control resolvers' answers) or
    its error, judged as v2's by Satellite itself (``passed``). v1 queried no control domain beside each domain: it
    chose, at the scan's start, the resolvers that answered its probe domain rightly (``x_vantage_vetted``, which
    stands for rule 1's answer before). Its file held only the domains a control resolver answered
    (``x_control_answered``; those no control answered are in ``interference_err.json``), so an answer with no
    tag in common with the controls' is poisoned, as in v2. No time on the line: the scan's start, which its name
    gives (`SCAN`, added by analyze); no location: the country is the one its scan's ``tagged_resolvers.json`` gives
    the resolver (`LOCATION`, added by analyze), else the ASN table's."""
    vantage = _vantage(m, "resolver")
    domain = _text(m.get("query"))
    if domain is None:
        raise Unreadable("no query")
    start = _scan_time(m.get(SCAN))
    found = m.get("answers")
    _, consistent, answers = _tagged(found if isinstance(found, Mapping) else {})
    error = m.get("error")
    text = error if isinstance(error, str) else orjson.dumps(error).decode() if error is not None else None
    failure = F.from_go(text) if text else None if answers else F.DNS_NO_ANSWER
    passed = m.get("passed")
    tk: dict[str, Any] = {
        "vantage": vantage, "domain": domain, "queries": [{
            "transaction_id": 1, "tags": [TEST], "hostname": domain, "query_type": "A", "engine": "udp",
            "resolver_address": f"{vantage}:53", "answers": answers or None, "failure": failure}],
        "x_consistent": sorted(set(consistent)), "x_control_answered": isinstance(passed, bool),
        "x_vantage_vetted": True}
    where = m.get(LOCATION)
    location: Mapping[str, Any] = where if isinstance(where, Mapping) else {}
    tk["x_censoredplanet"] = {"format": SATELLITE_V1, "anomaly": not passed if isinstance(passed, bool) else None,
                              "confidence": m.get("confidence"), "scan": m.get(SCAN),
                              "country_name": location.get("country_name")}
    return _envelope({"test_url": domain, "location": location}, vantage, start, "remote_dns", SATELLITE_V1,
                     "censoredplanet-satellite", None, tk)


def _times(record: Mapping[str, Any], start: dt.datetime, where: str) -> dict[str, float]:
    """``t0`` and ``t`` (seconds since the line's start) of a trial or a page, or nothing: a trial of Satellite v2.2
    has no time of its own."""
    if record.get("start_time") is None:
        return {}
    t0 = (_time(record.get("start_time"), f"{where}.start_time") - start).total_seconds()
    try:
        t = (_time(record.get("end_time"), f"{where}.end_time") - start).total_seconds()
    except Unreadable:
        t = t0
    return {"t0": t0, "t": t}


# --------------------------------------------------------------------------- Satellite's pages (blockpages.json)

PAGES = "x_satellite_pages"  # the key under which a results.json line's pages are joined to it
PAGE_FILES = ("blockpages.json", "blockpages.json.gz")
RESULT_FILES = ("results.json", "results.json.gz")
MAX_PAGES_BYTES = 64 << 20  # held per scan; pages beyond it are counted and not joined
MAX_PAGES_PER_LINE = 16


def is_page(m: Any) -> bool:
    """A line of Satellite's ``blockpages.json``: the page an answer's address served for the domain."""
    return isinstance(m, dict) and "keyword" in m and "ip" in m and "fetched" in m and "test_keys" not in m


def _page_records(pages: Any, domain: str, answered: set[str], start: dt.datetime,
                  first_tx: int) -> dict[str, list[dict[str, Any]]]:
    """The ``validate`` records of the pages Satellite fetched from the addresses the vantage answered for the
    domain (``blockpages.json``, joined under `PAGES`): for each, a ``requests`` record of the HTTP fetch, and
    a ``tls_handshakes`` record (``x_verified``: a certificate that is trusted and names the domain) with a
    ``requests`` record of the HTTPS one. Pages of another domain, or of an address the vantage did not give,
    are not the line's and are left out."""
    out: dict[str, list[dict[str, Any]]] = {"tls_handshakes": [], "requests": []}
    if not isinstance(pages, list):
        return out
    tx = first_tx
    for k, page in enumerate(pages[:MAX_PAGES_PER_LINE]):
        if not isinstance(page, Mapping) or page.get("keyword") != domain:
            continue
        ip = page.get("ip")
        if not isinstance(ip, str) or ip not in answered:
            continue
        try:
            times = _times(page, start, f"{PAGES}[{k}]")
        except Unreadable:
            times = {}
        for scheme, port in (("http", 80), ("https", 443)):
            fetched = page.get(scheme)
            got = _response(fetched) if isinstance(fetched, Mapping) and fetched.get("status_line") else None
            error = _text(fetched) if isinstance(fetched, str) else None
            if got is None and error is None:
                continue
            failure = None if got is not None else F.from_go(error or "")
            address = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
            base = {"transaction_id": tx, "tags": [VALIDATE], **times}
            tx += 1
            if scheme == "https":
                tls = fetched.get("tls") if isinstance(fetched, Mapping) else None
                cert = tls.get("cert") if isinstance(tls, Mapping) else None
                out["tls_handshakes"].append({
                    **base, "address": address, "server_name": domain, "failure": failure,
                    "x_verified": got is not None and page.get("trusted_cert") is True
                    and page.get("cert_hostname_match") is True,
                    "peer_certificates": [{"format": "base64", "data": cert}] if isinstance(cert, str) and cert
                    else []})
                if got is None:
                    continue
            out["requests"].append({
                **base, "request": {"url": f"{scheme}://{domain}/", "method": "GET", "headers_list": [["Host", domain]],
                                    "body": "", "tor": {"is_tor": False}, "x_address": address},
                "response": got or {}, "failure": failure})
    return out


class PageIndex:
    """The pages of one scan's ``blockpages.json``, by (domain, address): each page's line as it was published."""

    def __init__(self) -> None:
        self.pages: dict[tuple[str, str], list[bytes]] = {}
        self.read = 0  # pages held
        self.over = 0  # pages beyond MAX_PAGES_BYTES, not held
        self.held = 0  # their bytes
        self.results = False  # whether a results.json is beside them

    def add(self, data: bytes) -> None:
        try:
            page = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not is_page(page) or not isinstance(page["keyword"], str) or not isinstance(page["ip"], str):
            return
        if self.held + len(data) > MAX_PAGES_BYTES:
            self.over += 1
            return
        self.pages.setdefault((page["keyword"], page["ip"]), []).append(data)
        self.read += 1
        self.held += len(data)


def _scan_of(source: str) -> tuple[str, str | None] | None:
    """Where a line came from: (a regular file's directory, None), or for a member of a tar archive (the archive,
    the member's directory inside it); None for a stream (standard input, a pipe) or a record sent to the API."""
    if os.path.isfile(source):
        return os.path.dirname(os.path.abspath(source)), None
    for i, ch in enumerate(source):
        if ch == "!" and os.path.isfile(source[:i]):
            return source[:i], posixpath.dirname(source[i + 1:])
    return None


def _each_line_beside(where: str, member_dir: str | None, names: tuple[str, ...], take: Callable[[bytes], None],
                      sought: tuple[str, ...] = ()) -> tuple[bool, bool]:
    """Give ``take`` each line of the first file of ``names`` beside a line's file: in the directory ``where``, or
    among the members under ``member_dir`` of the archive ``where`` (read as ``.json`` only). (Whether such a file
    was found, whether one of ``sought`` is there too.) A damaged archive gives the lines read before the damage;
    the reader reports the damage."""
    if member_dir is None:
        found = next((os.path.join(where, n) for n in names if os.path.isfile(os.path.join(where, n))), None)
        if found is None:
            return False, False
        for record in read([found]):
            if isinstance(record, Line):
                take(record.data)
        return True, any(os.path.isfile(os.path.join(where, n)) for n in sought)
    wanted = posixpath.join(member_dir, names[0])
    also = posixpath.join(member_dir, sought[0]) if sought else None
    seen = present = False
    try:
        with tarfile.open(where, "r|*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                present |= member.name == also
                if member.name == wanted and not seen and (f := archive.extractfile(member)) is not None:
                    seen = True
                    for record in read_json(f"{where}!{member.name}", f, MAX_MEASUREMENT_BYTES):
                        if isinstance(record, Line):
                            take(record.data)
                if seen and (present or also is None):
                    break
    except (OSError, EOFError, tarfile.TarError, zlib.error):
        pass
    return seen, present


@lru_cache(maxsize=2)  # a scan's pages are read once per process; two scans at most held
def _index(where: str, member_dir: str | None) -> PageIndex | None:
    index = PageIndex()
    found, index.results = _each_line_beside(where, member_dir, PAGE_FILES, index.add, RESULT_FILES)
    return index if found else None


def pages_beside(source: str) -> PageIndex | None:
    """The pages of the ``blockpages.json`` beside the file (or archive member) ``source`` names, read once per
    process and scan; None when there is none."""
    where = _scan_of(source) if source else None
    return _index(*where) if where is not None else None


def join(data: bytes, m: Mapping[str, Any], index: PageIndex) -> tuple[bytes, dict[str, Any]] | None:
    """A Satellite line with the pages fetched from its answers for its domain: its bytes as published, the pages'
    lines as published added as a last key (`PAGES`), and the object; None when there is no page to join."""
    domain = m.get("test_url")
    trials = m.get("response")
    if not isinstance(domain, str) or not isinstance(trials, (list, Mapping)) or PAGES in m:
        return None
    addresses: list[str] = []
    if isinstance(trials, Mapping):  # Satellite v2.1: one object of the domain's answers
        addresses.extend(ip for ip in trials if isinstance(ip, str) and ip not in _NOT_ADDRESSES)
    for trial in trials if isinstance(trials, list) else ():
        if isinstance(trial, Mapping) and trial.get("url") == domain and isinstance(trial.get("response"), Mapping):
            addresses.extend(ip for ip in trial["response"] if isinstance(ip, str) and ip not in addresses)
    found: list[bytes] = []
    size = len(data)
    for line in (line for ip in addresses for line in index.pages.get((domain, ip), ())):
        if len(found) == MAX_PAGES_PER_LINE or size + len(line) > MAX_MEASUREMENT_BYTES:
            break  # a measurement stays within what the reader holds of one
        found.append(line)
        size += len(line) + 1
    joined = _append(data, PAGES, b"[" + b",".join(found) + b"]") if found else None
    if joined is None:
        return None
    return joined, {**m, PAGES: [orjson.loads(line) for line in found]}


# --------------------------------------------------------------------------- Satellite v1's countries

RESOLVER_FILES = ("tagged_resolvers.json", "tagged_resolvers.json.gz")
MAX_RESOLVERS = 1 << 18  # resolvers held per scan (a v1 scan tagged some tens of thousands); beyond, not held


class ResolverIndex:
    """Where one scan's resolvers are, as its ``tagged_resolvers.json`` says: a line of v1's
    (``{"resolver", "country": "<the country's name>"}``) or of v2's (``{"vp", "location": {"country_name",
    "country_code"}}``), by the resolver's address as Python writes it."""

    def __init__(self) -> None:
        self.places: dict[str, dict[str, str | None]] = {}
        self._shared: dict[tuple[str | None, str | None], dict[str, str | None]] = {}  # one object per country

    def add(self, data: bytes) -> None:
        if len(self.places) >= MAX_RESOLVERS:
            return
        try:
            line = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(line, dict):
            return
        address = _address(line.get("resolver", line.get("vp")))
        where = line.get("location")
        name, code = (where.get("country_name"), where.get("country_code")) if isinstance(where, Mapping) else (
            line.get("country"), None)
        name = name[:MAX_NAME] if isinstance(name, str) and name.strip() else None
        code = code_of(code) or code_of(name)
        if address is None or (name is None and code is None):
            return
        self.places[address] = self._shared.setdefault((name, code), {"country_name": name, "country_code": code})

    def of(self, address: Any) -> dict[str, str | None] | None:
        found = _address(address)
        return self.places.get(found) if found is not None else None


def _address(value: Any) -> str | None:
    """An IP address as Python writes it, or None for anything else."""
    try:
        return str(ipaddress.ip_address(value)) if isinstance(value, str) else None
    except ValueError:
        return None


@lru_cache(maxsize=2)  # a scan's resolvers are read once per process; two scans at most held
def _resolvers(where: str, member_dir: str | None) -> ResolverIndex | None:
    index = ResolverIndex()
    found, _ = _each_line_beside(where, member_dir, RESOLVER_FILES, index.add)
    return index if found else None


def with_country(data: bytes, m: Mapping[str, Any], source: str) -> tuple[bytes, dict[str, Any]] | None:
    """A Satellite v1 line with where its resolver is, as the ``tagged_resolvers.json`` beside the line's file says
    (``{"country_name", "country_code"}``, the code None for a name no table holds), added as a last key
    (`LOCATION`); None when there is no such file or it does not name the resolver."""
    where = _scan_of(source) if source else None
    index = _resolvers(*where) if where is not None else None
    place = index.of(m.get("resolver")) if index is not None else None
    if place is None or LOCATION in m:
        return None
    joined = _append(data, LOCATION, orjson.dumps(place))
    return (joined, {**m, LOCATION: place}) if joined is not None else None


ADDED = frozenset((PAGES, SERVICE, SCAN, LOCATION))  # what analyze adds to a line it keeps: Satellite's pages, the
# protocol of a Hyperquack v1 line, the scan of a Satellite v1 line and its resolver's country


def published(m: Mapping[str, Any]) -> dict[str, Any]:
    """A line as Censored Planet published it: without what analyze added to it (`ADDED`)."""
    return {k: v for k, v in m.items() if k not in ADDED}


def with_source(data: bytes, m: dict[str, Any], source: str) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """A line of Censored Planet's with what where it came from adds to it: (the bytes to keep, the line to convert,
    the line as published, whose content names it). A Hyperquack v1 line gains its protocol and a Satellite v1 line
    its scan, from the scan's name, and its resolver's country, from the tagged_resolvers.json beside it; a Satellite
    v2 line the pages fetched from its answers, from the blockpages.json beside it. A line kept before with what
    analyze added (a re-analysis) is taken as it is."""
    if not ADDED.isdisjoint(m):
        return data, m, published(m)
    added: tuple[bytes, dict[str, Any]] | None = None
    if is_v1(m):
        added = with_service(data, m, source)
    elif is_satellite_v1(m):
        added = with_scan(data, m, source)
        if added is not None:
            added = with_country(*added, source) or added
    elif "service" not in m and (index := pages_beside(source)) is not None:
        added = join(data, m, index)
    return (added[0], added[1], m) if added is not None else (data, m, m)


def as_measurement(m: Any) -> Any:
    """``m`` itself, or the measurement a Hyperquack line is (for those who read the store's raw bytes: the
    explorer, the report's blockpages); ``m`` when it cannot be converted."""
    if not looks_like(m):
        return m
    try:
        return convert(m)
    except Unreadable:
        return m


__all__ = ["ADDED", "ASN_TABLE_ENV", "FORMAT", "LOCATION", "PAGES", "SATELLITE", "SATELLITE_V1", "SATELLITE_V21",
           "SCAN", "SERVICE", "SERVICES", "V1", "PageIndex", "ResolverIndex", "Unreadable", "as_measurement", "convert",
           "is_page", "is_satellite_v1", "is_v1", "join", "looks_like", "pages_beside", "published", "scan_of",
           "service_of", "use_asn_table", "with_country", "with_scan", "with_service", "with_source"]
