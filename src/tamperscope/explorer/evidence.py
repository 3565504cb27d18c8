"""The evidence in one measurement, laid out for people: what was seen, against the control.

`evidence(measurement, verdict)` reads the OONI archival records and our ``x_``
keys and returns plain dicts (the measurement page renders them, its JSON twin
returns them):

* ``dns``: each lookup's answers beside the control's, with the answers the
  control never saw marked (injection, poisoning), and late duplicate answers;
* ``tcp``: each connect and the control's connect to the same endpoint;
* ``targets``: tor's directory authorities and bridges, each reached, failed or not run;
* ``tls``: each handshake, the certificate chain (subject, issuer, validity,
  names, SHA-256) and the control's handshake;
* ``http``: each response (status, headers, the body as text) and the diff
  against the control (status code, body length, title, header names);
* ``fingerprints``: the blockpage fingerprints that matched, with their source;
* ``hop`` and ``signature``: where on the path, and what equipment.

Everything here is measurement content, so hostile: it is returned as data
and only ever rendered through autoescaping templates, or in a sandboxed frame.
Bodies are decoded for display only (the raw JSON keeps the bytes). The work per page is
bounded whatever the measurement holds: the first `MAX_REQUESTS` requests are listed, the first
`MAX_BODIES` bodies decoded, and a title is found in linear time in at most `MAX_TITLE_SCAN`
characters. Keys the probe wrote (``x_fingerprints``, ``x_evidence``, certificates) may have any
shape; the wrong ones are shown as missing, never trusted to be lists or strings.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from itertools import islice
from typing import Any

from tamperscope.analysis.hops import hop_fields
from tamperscope.analysis.report import MECHANISM_WORDS, OUTCOME_WORDS, not_certainly
from tamperscope.analysis.schema import blocking_json
from tamperscope.explorer.display import Whole
from tamperscope.model.consistency import request_order
from tamperscope.model.freeze import stalls
from tamperscope.model.location import FLAG_NAMES
from tamperscope.model.services import APPS, FACEBOOK_ENDPOINTS, blocked, facebook_key

MAX_BODY_TEXT = 64 * 1024       # characters of a body shown on the page
MAX_TITLE_SCAN = 64 * 1024      # characters of a body searched for its <title>
MAX_BODIES = 20                 # bodies decoded per measurement view (redirect chains are a handful)
MAX_REQUESTS = 200              # HTTP requests listed on the page
MAX_RECORDS = 200               # DNS lookups, connections and handshakes each listed on the page
MAX_QUERY_ANSWERS = 32          # answers listed per DNS lookup
MAX_HEADERS = 100               # headers listed per response
MAX_EVIDENCE = 50               # lines of the verdict's evidence listed
MAX_CHARSET_LABEL = 200         # characters of a Content-Type header read for the charset
# Only the two tags are searched for, each with one linear scan: a lazy ``<title[^>]*>(.*?)</title``
# retried from every ``<title`` of a body that never closes it is quadratic (seconds per body).
_TITLE_OPEN = re.compile(r"<title", re.I)
_TITLE_CLOSE = re.compile(r"</title", re.I)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Any]:
    """A list as is, a lone string as a list of one; junk (a number, true, an object) as nothing."""
    if isinstance(value, list):
        return value
    return [value] if isinstance(value, str) and value else []


def _blocking(value: Any) -> str | bool | None:
    """OONI's ``blocking`` as written (``false``, ``"dns"``...): a boolean stays one; anything else is text."""
    return value if value is None or isinstance(value, bool) else _str(value)


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def body_bytes(value: Any) -> bytes:
    """An OONI body (a string, or ``{"format": "base64", "data": ...}``) as bytes."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, dict) and value.get("format") == "base64" and isinstance(value.get("data"), str):
        try:
            return base64.b64decode(value["data"], validate=False)
        except (binascii.Error, ValueError):
            return b""
    return b""


def headers_of(response: Mapping[str, Any], most: int = MAX_HEADERS) -> list[tuple[str, str]]:
    """The first `most` headers of a response, as (name, value): a hostile one may carry 150,000."""
    pairs = response.get("headers_list")
    if isinstance(pairs, list) and pairs:
        return [(str(p[0]), str(p[1])) for p in islice((p for p in pairs if isinstance(p, list) and len(p) == 2),
                                                       most)]
    headers = response.get("headers")
    out: list[tuple[str, str]] = []
    if isinstance(headers, dict):
        for k, v in headers.items():
            for item in v if isinstance(v, list) else [v]:
                if len(out) >= most:
                    return out
                out.append((str(k), str(item)))
    return out


def _content_type(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Only what the charset comes from, and only its start: the charset regex backtracks over long
    runs of spaces, and a hostile header can be megabytes long."""
    return {name: value[:MAX_CHARSET_LABEL] for name, value in headers if name.lower() == "content-type"}


# Lone surrogates: what a few codecs a body may name as its charset (utf-7, unicode_escape) decode to, and
# what no UTF-8 answer (the page, its JSON twin, the sandboxed view) can carry.
_SURROGATE = re.compile("[\ud800-\udfff]")


def body_text(value: Any, headers: Sequence[tuple[str, str]] = ()) -> str:
    """The body decoded for display (charset from the headers or the page, else UTF-8 with replacement);
    a surrogate the charset decodes to is shown as U+FFFD, as an undecodable byte is."""
    data = body_bytes(value)
    try:
        from tamperscope.model.charset import decode_body

        text = decode_body(data, _content_type(headers))
    except Exception:  # a hostile charset label must not break the page
        return data.decode("utf-8", "replace")
    return _SURROGATE.sub("\ufffd", text)


def title_of(text: str) -> str | None:
    """The text of the first ``<title>``, in time linear in the text (it is hostile)."""
    text = text[:MAX_TITLE_SCAN]
    opening = _TITLE_OPEN.search(text)
    if opening is None:
        return None
    # The first "<title" decides: if it has no ">" or no "</title" after it, no later one has.
    start = text.find(">", opening.end())
    if start < 0:
        return None
    closing = _TITLE_CLOSE.search(text, start + 1)
    if closing is None:
        return None
    return " ".join(text[start + 1:closing.start()].split())[:300] or None


# --------------------------------------------------------------------------- DNS


def _answers(query: Mapping[str, Any]) -> list[str]:
    out = []
    for a in _list(query.get("answers"))[:MAX_QUERY_ANSWERS]:
        if not isinstance(a, dict):
            continue
        for key in ("ipv4", "ipv6", "hostname", "cname", "ns", "txt"):
            if a.get(key):
                out.append(str(a[key]))
                break
    return out


def dns(tk: Mapping[str, Any]) -> dict[str, Any]:
    control = _dict(_dict(tk.get("control")).get("dns"))
    known = {str(a) for a in _list(control.get("addrs"))}
    control_addrs = [str(a) for a in _list(control.get("addrs"))[:MAX_QUERY_ANSWERS]]

    def row(q: Any) -> dict[str, Any] | None:
        if not isinstance(q, dict):
            return None
        answers = _answers(q)
        return {
            "engine": _str(q.get("engine")), "resolver": _str(q.get("resolver_address")) or "system",
            "hostname": _str(q.get("hostname")), "query_type": _str(q.get("query_type")),
            "answers": answers, "failure": _str(q.get("failure")),
            "unexpected": [a for a in answers if known and a not in known and _looks_ip(a)],
            "t": q.get("t"),
        }

    listed, late = _list(tk.get("queries")), _list(tk.get("x_dns_duplicate_responses"))
    queries = [r for r in (row(q) for q in listed[:MAX_RECORDS]) if r]
    duplicates = [r for r in (row(q) for q in late[:MAX_RECORDS]) if r]
    return {"queries": queries, "late_answers": duplicates, "not_listed": max(0, len(listed) - MAX_RECORDS),
            "late_not_listed": max(0, len(late) - MAX_RECORDS),
            "control": {"addrs": control_addrs, "failure": _str(control.get("failure"))} if control else None,
            "consistency": _str(tk.get("dns_consistency")), "failure": _str(tk.get("dns_experiment_failure"))}


def _looks_ip(text: str) -> bool:
    return bool(re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+", text)) and ("." in text or ":" in text)


# --------------------------------------------------------------------------- TCP and TLS


def tcp(tk: Mapping[str, Any]) -> list[dict[str, Any]]:
    control = _dict(_dict(tk.get("control")).get("tcp_connect"))
    out = []
    for c in _list(tk.get("tcp_connect"))[:MAX_RECORDS]:
        if not isinstance(c, dict):
            continue
        endpoint = f"{c.get('ip')}:{c.get('port')}"
        if ":" in str(c.get("ip")):
            endpoint = f"[{c.get('ip')}]:{c.get('port')}"
        status = _dict(c.get("status"))
        ctrl = _dict(control.get(endpoint))
        out.append({"endpoint": endpoint, "success": status.get("success") is True,
                    "failure": _str(status.get("failure")), "t": c.get("t"), "role": _role(c),
                    "control": {"success": ctrl.get("status") is True, "failure": _str(ctrl.get("failure"))}
                    if ctrl else None})
    return out


def _role(record: Mapping[str, Any]) -> str | None:
    """What a remote measurement's connection was for, from its tags ("https vantage_before"), if it says."""
    tags = [t for t in _list(record.get("tags")) if isinstance(t, str) and t in _ROLES]
    return " ".join(tags[:2]) or None


_ROLES = frozenset({"http", "https", "vantage_before", "vantage_after", "test", "control", "validate"})


def remote(m: Mapping[str, Any]) -> dict[str, str] | None:
    """A measurement made from outside the country through an in-country vantage (tamperscope remote)."""
    tk = _dict(m.get("test_keys"))
    name, vantage = _str(m.get("test_name")), _str(tk.get("vantage"))
    if not name or not name.startswith("remote_") or not vantage:
        return None
    return {"vantage": vantage[:64], "kind": "a resolver" if name == "remote_dns" else "a web server"}


_CP_FLAGS = (("anomaly", "anomaly"), ("controls_failed", "controls failed"), ("stateful_block", "stateful block"),
             ("passed_liveness", "resolver answered the control domain"),
             ("passed_control", "resolver answered the control domain before and after"),
             ("in_control_group", "a control resolver answered"), ("excluded", "excluded by its verification"))


def censoredplanet(tk: Mapping[str, Any]) -> dict[str, Any] | None:
    """What Censored Planet itself said of a line of its data (``x_censoredplanet``, analysis/censoredplanet.py):
    its flags that are true or false, in words, and the reasons it excluded the line, beside our own verdict."""
    cp = tk.get("x_censoredplanet")
    if not isinstance(cp, Mapping):
        return None
    flags = [{"name": words, "value": "yes" if cp[key] else "no"} for key, words in _CP_FLAGS
             if isinstance(cp.get(key), bool)]
    reasons = [r[:80] for r in _list(cp.get("exclude_reason")) if isinstance(r, str)][:8]
    return {"format": (_str(cp.get("format")) or "")[:40], "flags": flags, "exclude_reason": reasons}


MAX_TARGETS = 200               # tor targets listed on the page (real measurements have a few dozen)


def targets(tk: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Tor's ``targets`` (ts-023): each directory authority or bridge, its name, protocol and address, and
    whether it was reached (``failure`` null), failed (a string), or did not run (anything else); and whether
    a directory port's answer was no consensus (our ``x_consensus`` false)."""
    out = []
    for name, t in list(_dict(tk.get("targets")).items())[:MAX_TARGETS]:
        if not isinstance(t, dict):
            continue
        failure = t.get("failure")
        state = "reached" if failure is None and "failure" in t else "failed" if isinstance(failure, str) and failure \
            else "did not run"
        label = t.get("target_name")
        out.append({"name": _str(name), "protocol": _str(t.get("target_protocol")),
                    "address": _str(t.get("target_address")), "state": state,
                    "failure": failure if state == "failed" else None,
                    "label": label[:100] if isinstance(label, str) and label else None,
                    # ours: a directory port answered, with something that is not a consensus (a blockpage)
                    "not_consensus": t.get("x_consensus") is False})
    return out


MAX_GATEWAYS = 64  # riseupvpn's gateway ports listed (the nettest tries at most 64 gateways' ports)


def vpn(test_name: Any, tk: Mapping[str, Any]) -> dict[str, Any] | None:
    """A riseupvpn measurement (ts-026) in words: the provider's API (its CA fetched, then the API through it),
    each transport's status, and each gateway port: its connect and its transport's first exchange (ours,
    ``x_gateways``; over UDP, the exchange alone), else OONI's ``failing_gateways``. None for other tests."""
    if test_name != "riseupvpn":
        return None
    ca = tk.get("ca_cert_status")
    failure = tk.get("api_failure")
    if isinstance(failure, list):  # a list of strings since OONI's v0.2.0
        failure = next((f for f in failure if isinstance(f, str) and f), None)
    transports = {t: s for t, s in _dict(tk.get("transport_status")).items()
                  if isinstance(t, str) and isinstance(s, str)}
    gateways = []
    for g in _list(tk.get("x_gateways"))[:MAX_GATEWAYS]:
        if not isinstance(g, dict):
            continue
        summary = _dict(g.get("summary"))
        split = g.get("split")  # ours: the first packet again, in two TCP segments
        gateways.append({"address": _gateway_address(g),
                         "transport": _str(g.get("transport_type")), "host": _str(g.get("host")),
                         "udp": g.get("protocol") == "udp",  # ours: OpenVPN over UDP, no connect
                         "connect": _str(_dict(summary.get("connect")).get("failure")),
                         "handshake": _str(_dict(summary.get("handshake")).get("failure")),
                         "tried_handshake": "handshake" in summary, "failure": _str(g.get("failure")),
                         "split": {"connect": _str(split.get("connect")), "handshake": _str(split.get("handshake"))}
                         if isinstance(split, dict) else None})
    failing = [{"address": _gateway_address(g), "transport": _str(g.get("transport_type"))}
               for g in _list(tk.get("failing_gateways"))[:MAX_GATEWAYS] if isinstance(g, dict)]
    return {"api_status": _str(tk.get("api_status")), "api_failure": _str(failure),
            "ca": ca if isinstance(ca, bool) else None, "transports": transports,
            "gateways": gateways, "failing": [] if gateways else failing}


def _gateway_address(g: Mapping[str, Any]) -> str:
    return f"{_str(g.get('ip')) or '?'}:{_number(g.get('port')) or '?'}"


def certificate(entry: Any) -> dict[str, Any]:
    """A DER certificate (OONI's ``{"format": "base64", "data"}``) → what a person checks."""
    der = body_bytes(entry)
    if not der:  # null, {}, [], a number, empty data: nothing to hash, so no sha256 either
        return {"error": "no certificate data"}
    info: dict[str, Any] = {"sha256": hashlib.sha256(der).hexdigest()}
    try:
        from cryptography import x509

        cert = x509.load_der_x509_certificate(der)
        info["subject"] = cert.subject.rfc4514_string()
        info["issuer"] = cert.issuer.rfc4514_string()
        info["not_before"] = cert.not_valid_before_utc.isoformat()
        info["not_after"] = cert.not_valid_after_utc.isoformat()
        info["self_signed"] = cert.subject == cert.issuer
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            info["names"] = [str(n) for n in san.get_values_for_type(x509.DNSName)][:50]
        except x509.ExtensionNotFound:
            info["names"] = []
    except Exception as exc:  # hostile or damaged DER
        info["error"] = f"unparsable certificate: {type(exc).__name__}"
    return info


def tls(tk: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The TLS handshakes over TCP, then HTTP/3's over QUIC, each beside the control's for its endpoint."""
    out = []
    for records, key, transport in (("tls_handshakes", "tls_handshake", "TCP"),
                                    ("quic_handshakes", "quic_handshake", "QUIC")):
        out += _handshakes(_list(tk.get(records))[:MAX_RECORDS], _dict(_dict(tk.get("control")).get(key)), transport)
    return out


def _not_listed(tk: Mapping[str, Any], *keys: str) -> int:
    """How many records under `keys` the page leaves out, each list past its first `MAX_RECORDS`."""
    return sum(max(0, len(_list(tk.get(key))) - MAX_RECORDS) for key in keys)


# A record's role among its tags (remote measurement, echcheck), named in our words, never the measurement's.
ROLE_WORDS = {"control": "control", "target": "target", "test": "the domain",
              "vantage_before": "control domain, before", "vantage_after": "control domain, after",
              "validate": "validation"}


def _role_words(record: Mapping[str, Any]) -> str | None:
    return next((ROLE_WORDS[t] for t in _list(record.get("tags")) if isinstance(t, str) and t in ROLE_WORDS), None)


def _handshakes(records: list[Any], control: dict[str, Any], transport: str) -> list[dict[str, Any]]:
    out = []
    for h in records:
        if not isinstance(h, dict):
            continue
        endpoint = _str(h.get("address")) or "?"
        ctrl = _dict(control.get(endpoint))
        echconfig = _str(h.get("echconfig"))
        out.append({
            "role": _role_words(h), "server_hello": h.get("x_server_hello") is True,
            "ech": None if not echconfig else "GREASE" if echconfig == "GREASE" else "the site's published config",
            "outer_name": _str(h.get("outer_server_name")),
            "transport": transport, "endpoint": endpoint, "server_name": _str(h.get("server_name")),
            "tls_version": _str(h.get("tls_version")), "cipher_suite": _str(h.get("cipher_suite")),
            "alpn": _str(h.get("negotiated_protocol")), "failure": _str(h.get("failure")),
            "no_tls_verify": h.get("no_tls_verify") is True,
            "certificates": [certificate(c) for c in _list(h.get("peer_certificates"))[:5]],
            "control": {"success": ctrl.get("status") is True, "failure": _str(ctrl.get("failure")),
                        "server_name": _str(ctrl.get("server_name"))} if ctrl else None,
        })
    return out


# --------------------------------------------------------------------------- HTTP


def http(tk: Mapping[str, Any], input_url: str = "") -> dict[str, Any]:
    control = _dict(_dict(tk.get("control")).get("http_request"))
    requests = []
    listed = _list(tk.get("requests"))
    decoded = 0
    stalled = {s.request: s for s in stalls(tk)}  # timed out after the response started: frozen, or slowed
    for i, r in enumerate(listed[:MAX_REQUESTS]):
        if not isinstance(r, dict):
            continue
        request, response = _dict(r.get("request")), _dict(r.get("response"))
        headers = headers_of(response)
        # A 5 MiB measurement can carry thousands of bodies: the page decodes the first few only.
        shown = decoded < MAX_BODIES and response.get("body") is not None
        if shown:
            decoded += 1
        text = body_text(response.get("body"), headers) if shown else ""
        requests.append({
            "index": i, "url": _str(request.get("url")), "method": _str(request.get("method")),
            "address": _str(r.get("address")), "failure": _str(r.get("failure")),
            "status_code": response.get("code") if isinstance(response.get("code"), int) else None,
            "headers": headers, "body_length": len(body_bytes(response.get("body"))),
            "body_truncated": response.get("body_is_truncated") is True,
            "body_text": Whole(text[:MAX_BODY_TEXT]), "body_text_cut": len(text) > MAX_BODY_TEXT,
            "body_skipped": not shown and response.get("body") is not None,
            "title": title_of(text),
            "stall": ({"received": st.received, "reads": st.reads, "silence_s": st.silence_s, "frozen": st.frozen}
                      if (st := stalled.get(i)) is not None else None),
        })
    ctrl: dict[str, Any] | None = None
    if control:
        ctrl_headers = _dict(control.get("headers"))
        ctrl = {"status_code": control.get("status_code"), "body_length": control.get("body_length"),
                "title": _str(control.get("title")), "failure": _str(control.get("failure")),
                "headers": [(str(k), str(v)) for k, v in islice(ctrl_headers.items(), MAX_HEADERS)]}
    diff = None
    # the chain's newest response with a status, in the order the verdict reads it (OONI lists the newest first;
    # taking the last listed compared a redirect's 301 with the control's page: QA)
    shown_at: dict[Any, dict[str, Any]] = {r["index"]: r for r in requests}
    objects = [i for i, r in enumerate(listed[:MAX_REQUESTS]) if isinstance(r, dict)]  # (those shown: bounded)
    newest_first = reversed(request_order([listed[i] for i in objects], input_url))
    final = next((r for k in newest_first if (r := shown_at.get(objects[k])) is not None and r["status_code"]), None)
    if final is not None and ctrl is not None and ctrl.get("status_code"):
        measured_names = {k.lower() for k, _ in final["headers"]}
        control_names = {k.lower() for k, _ in ctrl["headers"]}
        c_len = ctrl.get("body_length") if isinstance(ctrl.get("body_length"), int) else None
        proportion = None
        if c_len and final["body_length"]:
            proportion = round(min(c_len, final["body_length"]) / max(c_len, final["body_length"]), 3)
        diff = {
            "status_code": {"measured": final["status_code"], "control": ctrl["status_code"],
                            "match": final["status_code"] == ctrl["status_code"]},
            "body_length": {"measured": final["body_length"], "control": c_len, "proportion": proportion,
                            "match": tk.get("body_length_match")},
            "title": {"measured": final["title"], "control": ctrl["title"],
                      "match": (final["title"] or "").lower() == (ctrl["title"] or "").lower()},
            "headers": {"only_measured": sorted(measured_names - control_names)[:40],
                        "only_control": sorted(control_names - measured_names)[:40],
                        "match": tk.get("headers_match")},
        }
    return {"requests": requests, "requests_not_listed": max(0, len(listed) - MAX_REQUESTS), "control": ctrl,
            "diff": diff, "failure": _str(tk.get("http_experiment_failure"))}


def captured_body(m: Mapping[str, Any], index: int) -> str | None:
    """The text of request ``index``'s body (for the sandboxed view), decoding that body alone."""
    requests = _list(_dict(m.get("test_keys")).get("requests"))
    if not 0 <= index < len(requests) or not isinstance(requests[index], dict):
        return None
    response = _dict(requests[index].get("response"))
    return body_text(response.get("body"), headers_of(response))[:MAX_BODY_TEXT]


# --------------------------------------------------------------------------- verdict, fingerprints, hop


def fingerprints(ids: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    db = None
    if ids:
        try:
            from tamperscope.analysis.verdicts import default_matcher

            db = default_matcher().db
        except Exception:
            db = None
    for fid in ids:
        entry: dict[str, Any] = {"id": str(fid)}
        try:
            fp = db.get(fid) if db is not None else None
        except KeyError:
            fp = None
        if fp is not None:
            entry.update({"name": fp.name, "source": fp.source, "kind": fp.kind, "label": fp.label,
                          "countries": list(fp.expected_countries), "title": fp.title, "where": fp.where,
                          "pattern": fp.pattern[:300], "also_on": fp.also_on_words()})
            if entry["also_on"]:  # said as the report says it
                entry["doubt"] = not_certainly(entry["also_on"])
        out.append(entry)
    return out


def evidence(m: Mapping[str, Any], verdict: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything the measurement page shows, as plain data."""
    tk = _dict(m.get("test_keys"))
    v = dict(verdict or {})
    # The probe's own x_ keys may be anything (a number, true): only lists (or one string) are read.
    fps = _items(v.get("fingerprints")) or _items(tk.get("x_fingerprints"))
    hop_raw = tk.get("x_hop")
    hop = hop_fields(hop_raw)
    mechanism, outcome = v.get("mechanism", _str(tk.get("x_mechanism"))), v.get("outcome")
    return {
        "verdict": {
            "blocking": blocking_json(v["blocking"]) if isinstance(v.get("blocking"), str) else v.get(
                "blocking", _blocking(tk.get("blocking"))), "accessible": v.get("accessible", tk.get("accessible")),
            "mechanism": mechanism, "confidence": v.get("confidence"),
            "status": v.get("status"), "outcome": outcome,
            # in words, as the report says them: what the outcome means, and the technique, where one was seen
            "outcome_meaning": OUTCOME_WORDS.get(outcome) if isinstance(outcome, str) else None,
            "mechanism_meaning": (MECHANISM_WORDS.get(mechanism) if isinstance(mechanism, str)
                                  and outcome in ("anomaly", "confirmed") else None),
            "evidence": (said := _items(v.get("evidence")) or _items(tk.get("x_evidence")))[:MAX_EVIDENCE],
            "evidence_not_listed": max(0, len(said) - MAX_EVIDENCE),
            "probe_said": {"x_mechanism": _str(tk.get("x_mechanism")), "x_confidence": tk.get("x_confidence"),
                           "blocking": _blocking(tk.get("blocking"))},
        },
        "dns": dns(tk),
        "tcp": tcp(tk),
        "tcp_not_listed": _not_listed(tk, "tcp_connect"),
        "targets": targets(tk),
        "vpn": vpn(m.get("test_name"), tk),
        "tls": tls(tk),
        "tls_not_listed": _not_listed(tk, "tls_handshakes", "quic_handshakes"),
        "http": http(tk, m["input"] if isinstance(m.get("input"), str) else ""),
        "fingerprints": fingerprints([str(f) for f in fps][:20]),
        "hop": {**hop, "raw": hop_raw} if hop is not None else None,
        "signature": tk.get("x_signature"),
        "signature_view": signature_view(tk.get("x_signature")),
        "equipment": tk.get("x_equipment"),
        "remote": remote(m),
        "censoredplanet": censoredplanet(tk),
        "throttle": tk.get("x_throttle"),
        "quic_trigger": quic_trigger(tk),
        "ech_config": ech_config(tk) if m.get("test_name") == "echcheck" else None,
        "stun": stun(tk) if m.get("test_name") in ("stunreachability", "stun_reachability") else None,
        "wireguard": wireguard(tk) if m.get("test_name") == "wireguard" else None,
        "freeze": freeze(tk) if m.get("test_name") == "tcp_freeze" else None,
        "ports": ports(m) if m.get("test_name") == "portfiltering" else None,
        "bootstrap": bootstrap(tk) if m.get("test_name") == "vanilla_tor" else None,
        "rewritten": rewritten(m.get("test_name"), tk),
        "apps": apps(m.get("test_name"), tk),
        "evasion": evasion(tk),
        "rules": rules(tk),
        "echo": echoes(tk),
    }


MAX_ANSWERS = 4  # addresses shown per endpoint
MAX_BACKENDS = 16  # signal's backends listed (it has five)


def apps(test_name: Any, tk: Mapping[str, Any]) -> dict[str, Any] | None:
    """One of OONI's instant-messaging tests in words: each of the app's services, reached or blocked (and
    the failure), from the flags the probe wrote; for Facebook Messenger, each endpoint's answer (the
    addresses and their networks) and connection. None for other tests."""
    if not isinstance(test_name, str) or test_name not in APPS:
        return None
    app, services = APPS[test_name]

    def key(k: str) -> str:
        return facebook_key(tk, k) if test_name == "facebook_messenger" else k

    rows = [{"service": what, "blocked": blocked(tk.get(key(flag))), "failure": _str(tk.get(fkey)) if fkey else None}
            for flag, fkey, what in services]
    if test_name == "signal":  # ours: each backend's failure (null: reached)
        backends = tk.get("x_backends")
        for url, failure in list(backends.items())[:MAX_BACKENDS] if isinstance(backends, dict) else ():
            if isinstance(url, str) and (failure is None or isinstance(failure, str)):
                rows.append({"service": url, "blocked": failure is not None, "failure": failure})
    endpoints = []
    if test_name == "facebook_messenger":
        answers: dict[str, list[dict[str, Any]]] = {}
        for q in _list(tk.get("queries")):
            if not isinstance(q, dict) or not (name := _str(q.get("hostname"))):
                continue
            shown = answers.setdefault(name.lower().rstrip("."), [])
            for a in _list(q.get("answers")):
                ip = _str(a.get("ipv4")) if isinstance(a, dict) else None
                if ip and len(shown) < MAX_ANSWERS:
                    shown.append({"ip": ip, "asn": _number(a.get("asn")), "network": _str(a.get("as_org_name"))})
        for endpoint, name in FACEBOOK_ENDPOINTS:
            consistent = tk.get(key(f"facebook_{endpoint}_dns_consistent"))
            reachable = tk.get(key(f"facebook_{endpoint}_reachable"))
            endpoints.append({"name": name, "answers": answers.get(name, []),
                              "consistent": consistent if isinstance(consistent, bool) else None,
                              "reachable": reachable if isinstance(reachable, bool) else None})
    return {"app": app, "services": rows, "endpoints": endpoints}


MAX_STUN_EVENTS = 32


def stun(tk: Mapping[str, Any]) -> dict[str, Any]:
    """A stunreachability measurement in words: the server, whether it answered, and each datagram sent and
    received (ours: the address asked, requests sent and datagrams that were no answer; OONI's have only the
    endpoint and the events)."""
    address = _str(tk.get("x_address"))
    events: list[dict[str, Any]] = []
    for e in _list(tk.get("network_events")):
        if len(events) >= MAX_STUN_EVENTS:
            break
        if not isinstance(e, dict) or e.get("operation") not in ("write_to", "read_from"):
            continue
        if address is not None and e.get("address") != address:
            continue  # the lookup of the server's name has datagrams too
        t = e.get("t")
        events.append({"operation": "sent" if e["operation"] == "write_to" else "received",
                       "t": t if isinstance(t, (int, float)) and not isinstance(t, bool) else None,
                       "bytes": _number(e.get("num_bytes")), "ignored": e.get("x_stun_ignored") is True,
                       "failure": _str(e.get("failure"))})
    failure = tk.get("failure")
    return {"endpoint": _str(tk.get("endpoint")), "address": address, "answered": "failure" in tk and failure is None,
            "failure": _str(failure), "requests": _number(tk.get("x_requests")),
            "ignored": _number(tk.get("x_ignored")), "events": events}


MAX_WG_EVENTS = 32      # datagrams of a wireguard measurement listed (a run sends a dozen at most)
MAX_WG_TEXT = 200       # characters of an endpoint, address or failure shown
_WG_ANSWERS = ("response", "cookie")
_WG_DATAGRAMS = {"initiation": "handshake initiation", "junk": "junk (no WireGuard message)",
                 "response": "handshake response", "cookie": "cookie reply", "ignored": "ignored: no answer to us"}


def _wg_text(value: Any) -> str | None:
    text = _str(value)
    return text[:MAX_WG_TEXT] if text is not None else None


def _count(value: Any) -> int | None:
    n = _number(value)
    return n if n is not None and 0 <= n <= 10**9 else None


def _wg_seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 <= value <= 10**6 else None  # NaN and the infinities fail both comparisons


def _wg_attempt(value: Any, junk_first: bool) -> dict[str, Any] | None:
    """One handshake record (``x_handshake``, ``x_junk_first``) typed, with its sentence; None when there is none."""
    if not isinstance(value, dict):
        return None
    answered = "failure" in value and value["failure"] is None
    answer = value.get("answer") if value.get("answer") in _WG_ANSWERS else None
    failure = None if answered else _wg_text(value.get("failure")) or "no failure recorded"
    initiations, junk = _count(value.get("initiations")), _count(value.get("junk"))
    ignored, t = _count(value.get("ignored")), _wg_seconds(value.get("t"))
    sent = [] if initiations is None else [f"{initiations} initiation{'' if initiations == 1 else 's'}"]
    if junk_first:
        lead = "The junk-first retry, from a new UDP flow"
        if junk is not None:
            sent.insert(0, f"{junk} junk datagram{'' if junk == 1 else 's'} (random bytes no WireGuard message "
                           "starts with) first")
    else:
        lead = "The plain handshake, as a WireGuard client starts it"
    said = lead + (f": {', then '.join(sent)} sent; " if sent else ": ")
    after = f" after {t:.3f} s" if t is not None else ""
    if answered and answer == "cookie":
        said += f"the server answered with a cookie reply{after}: it is under load, and was reached all the same."
    elif answered:
        said += (f"the server's handshake response came{after} and opened with our keys: only the real server "
                 "can make one." if answer == "response" else f"the server answered{after}.")
    else:
        said += f"no answer ({failure})."
    if ignored:
        said += f" {ignored} datagram{' that was' if ignored == 1 else 's that were'} no answer to us came back."
    return {"answered": answered, "failure": failure, "answer": answer, "initiations": initiations, "junk": junk,
            "ignored": ignored, "t": t, "says": said}


def wireguard(tk: Mapping[str, Any]) -> dict[str, Any]:
    """A wireguard measurement in words: the endpoint, the plain handshake's outcome, the junk-first retry's
    when it was tried, what the two together say (``dpi``: the plain one failed where a flow begun by junk got
    through), and each datagram sent and received. Hostile input: every value typed here, the lists cut."""
    from tamperscope.model.verdict import failure_class

    address = _wg_text(tk.get("x_address"))
    plain = _wg_attempt(tk.get("x_handshake"), junk_first=False)
    junk = _wg_attempt(tk.get("x_junk_first"), junk_first=True)
    failure = _wg_text(tk.get("failure"))
    dpi = plain is not None and not plain["answered"] and junk is not None and junk["answered"]
    if plain is not None and plain["answered"]:
        verdict = "The server answered the plain handshake: WireGuard reaches it from this network."
    elif dpi:
        verdict = ("DPI dropped the flow by its first datagram: the plain handshake got no answer, while a flow "
                   "begun by junk datagrams got through to the same server with the same keys. Only the flow's start "
                   "differed (Russia's TSPU has dropped WireGuard this way since 2023; AmneziaWG's clients send "
                   "such junk).")
    elif plain is not None and junk is not None:
        verdict = ("Neither handshake got an answer, the junk-first one included: the server may be down, or "
                   "blocked by its address.")
    elif plain is not None:
        verdict = "The plain handshake got no answer; no junk-first retry is recorded."
    elif failure is not None and failure_class(failure).startswith("dns"):
        verdict = f"The endpoint's name did not resolve ({failure}): no handshake was tried."
    else:
        verdict = "No handshake is recorded" + (f" ({failure})." if failure is not None else ".")
    events: list[dict[str, Any]] = []
    more = 0
    for e in _list(tk.get("network_events")):
        if not isinstance(e, dict) or e.get("operation") not in ("write_to", "read_from"):
            continue
        kind = e.get("x_wireguard")
        kind = kind if isinstance(kind, str) and kind in _WG_DATAGRAMS else None
        if (e.get("address") != address) if address is not None else kind is None:
            continue  # the lookup of the server's name has datagrams too
        if len(events) >= MAX_WG_EVENTS:
            more += 1
            continue
        events.append({"operation": "sent" if e["operation"] == "write_to" else "received",
                       "t": _wg_seconds(e.get("t")), "bytes": _count(e.get("num_bytes")), "what": kind,
                       "words": _WG_DATAGRAMS[kind] if kind is not None else None,
                       "junk_first": "junk" in _list(e.get("tags"))})
    return {"endpoint": _wg_text(tk.get("endpoint")), "address": address, "failure": failure,
            "handshake": plain, "junk_first": junk, "dpi": dpi, "says": verdict, "events": events,
            "events_not_listed": more}


MAX_PORT_FAILURE = 80  # characters of a failure string shown (OONI's are short; hostile ones need not be)
_PORT_STATES = {
    "open": "reached",
    "blocked": "blocked here: the helper reached it from outside",
    "suspect": "blocked here, it seems: another port of the server was open (no control for this one)",
    "cut": "connected, then the request was cut while other ports answered",
    "unreached": "not the network's doing: the helper could not reach it either",
    "failed": "failed, and nothing says why",
}


def ports(m: Mapping[str, Any]) -> dict[str, Any] | None:
    """portfiltering's ports, each as the verdict judged it (`model.portverdict.port_results`): what happened here,
    what the helper saw from outside, and the state in words. Hostile input: the model reads only well-typed
    entries; failure strings are cut."""
    from tamperscope.model.portverdict import BLOCKING_STATES, port_results

    def cut(value: str | None) -> str | None:
        return value if value is None or len(value) <= MAX_PORT_FAILURE else value[:MAX_PORT_FAILURE] + "…"

    tk = _dict(m.get("test_keys"))
    results = port_results(m)
    if not results:
        return None
    rows = [{"port": r.port, "here": "connected" if r.connect is None else cut(r.connect),
             "reply": cut(r.reply), "outside": "connected" if r.control == "ok" else cut(r.control),
             "state": r.state, "blocking": r.state in BLOCKING_STATES, "mechanism": r.mechanism,
             "words": _PORT_STATES[r.state]} for r in results]
    blocked = [r["port"] for r in rows if r["blocking"]]
    reached = sum(1 for r in rows if r["state"] == "open")
    if blocked:
        said = (f"{len(blocked)} of {len(rows)} ports blocked from this network: "
                f"{', '.join(str(p) for p in blocked)}; {reached} reached.")
    elif reached:
        said = f"{reached} of {len(rows)} ports reached; none blocked."
    else:
        said = "No port was reached, and nothing shows that another network could reach them."
    requests = "x_ports" in tk  # ours sent one; OONI's (ts-038) only connects
    address = _str(tk.get("x_address"))
    if not requests and not address:
        first = next((e for e in _list(tk.get("tcp_connect")) if isinstance(e, dict)), {})
        address = _str(first.get("ip"))
    return {"host": _wg_text(tk.get("host")), "address": address[:MAX_WG_TEXT] if address else None,
            "rows": rows, "blocked": blocked, "says": said, "requests": requests,
            "control": isinstance(tk.get("control"), dict)}


MAX_BOOT_LINES = 12  # of tor's log shown: the last ones, where it stopped
MAX_BOOT_TEXT = 300  # characters of a log line, tag or summary shown


def bootstrap(tk: Mapping[str, Any]) -> dict[str, Any] | None:
    """vanilla_tor's bootstrap (ours, OONI's 2022 layout, and the legacy ``tor_log``): how far tor got, in how
    long or within what timeout, what that step is, and the last lines of its log. Hostile input: numbers out
    of range are left out, text is cut."""
    progress = tk.get("tor_progress")
    progress = progress if type(progress) is int and 0 <= progress <= 100 else None
    if progress is None and "success" not in tk:
        return None

    def text(value: Any) -> str | None:
        v = _str(value)
        return v if v is None or len(v) <= MAX_BOOT_TEXT else v[:MAX_BOOT_TEXT] + "…"

    def seconds(value: Any) -> float | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e6
        return round(float(value), 1) if ok else None

    logs = tk.get("tor_logs")
    lines = [x for x in logs[-MAX_BOOT_LINES:] if isinstance(x, str)] if isinstance(logs, list) else \
        (tk["tor_log"].splitlines()[-MAX_BOOT_LINES:] if isinstance(tk.get("tor_log"), str) else [])
    success = tk.get("success")
    from tamperscope.model.torverdict import problem_failure, progress_mechanism

    stuck = progress_mechanism(progress) if success is False else None
    # tor's own warning, when it says how the connection ended (a refusal, a reset), over what a timeout implies
    said = {"connection_refused": "tor says the relay refused the connection",
            "connection_reset": "tor says the connection to the relay was reset",
            "host_unreachable": "tor says there is no route to the relay"}.get(
        problem_failure(tk, progress) or "") if stuck in ("tcp.drop", "tls.drop") else None
    step = {"tcp.drop": f"connecting to a relay: {said or 'its address is not reached'}",
            "tls.drop": "the TLS handshake with a relay: the connection is made, and "
                        f"{said or 'the handshake does not finish'}"}.get(stuck or "")
    network = _str(tk.get("x_tor_network"))
    bridges = _count(tk.get("x_bridges"))
    transport = _str(tk.get("transport_name"))
    return {"bridges": bridges if bridges else None,
            "transport": transport if transport in ("vanilla", "obfs4") else None,
            "success": success if isinstance(success, bool) else None, "progress": progress,
            "tag": text(tk.get("tor_progress_tag")), "summary": text(tk.get("tor_progress_summary")),
            "time": seconds(tk.get("bootstrap_time")), "timeout": seconds(tk.get("timeout")),
            "error": text(tk.get("error")), "step": step, "version": text(tk.get("tor_version")),
            "network": network if network in ("tor", "custom") else None,
            "log": [line[:MAX_BOOT_TEXT] + ("…" if len(line) > MAX_BOOT_TEXT else "") for line in lines]}


MAX_ATTEMPTS = 32
MAX_ECHOES = 32                 # echo exchanges listed (a measurement makes a handful)
ECHO_PREVIEW = 512              # characters of what came back shown


def freeze(tk: Mapping[str, Any]) -> dict[str, Any] | None:
    """tcp_freeze's two steps in words: one connection (what it carried, and whether it froze), then the same bytes
    over several (whether they all came). Hostile input: numbers that are no counts are left out."""
    x = _dict(tk.get("x_freeze"))
    single, split = _dict(x.get("single")), _dict(x.get("split"))
    if not single:
        return None
    received, requests = _count(single.get("received")), _count(single.get("requests"))
    silence = single.get("silence_s")
    silence = round(float(silence), 1) if isinstance(silence, (int, float)) and not isinstance(silence, bool) \
        and 0 <= silence < 1e6 else None
    failure = _str(single.get("failure"))
    if single.get("frozen") is True:
        during = f" for {silence} s" if silence is not None else " before the timeout"
        says = (f"One connection carried {received or 0:,} bytes (TLS included), then not one more{during}: it "
                "froze, as a censor that lets each connection carry a few kilobytes does.")
    elif failure is None:
        says = f"One connection carried {received or 0:,} bytes in {requests or 0} requests: it did not freeze."
    else:
        says = f"The connection failed ({single.get('stage') if _str(single.get('stage')) else '?'}: {failure})."
    out: dict[str, Any] = {"says": says, "frozen": single.get("frozen") is True, "split": None}
    if split:
        mode = _str(split.get("mode"))
        done, made = _count(split.get("completed")), _count(split.get("connections"))
        how = "the same request, one connection each" if mode == "repeat" else "4 KiB ranges, one connection each"
        whole = split.get("failure") is None and done is not None and done == made and bool(made)
        words = (f"Split over {made or 0} new connections ({how}): "
                 + ("every one came whole: the limit is per connection, and splitting gets past it." if whole else
                    f"{done or 0} came whole, then {_str(split.get('failure')) or 'the rest did not'}"
                    + (" (the server answered a range with the whole page)" if split.get("range_ignored") is True
                       else "") + "."))
        out["split"] = {"says": words, "whole": whole}
    out["control"] = _freeze_control(tk, single.get("frozen") is True or failure is not None)
    return out


def _freeze_control(tk: Mapping[str, Any], failed_here: bool) -> str | None:
    """What the control helper saw of the same URL from outside, in words (None when it was not asked);
    ``failed_here``: the probe's own connection froze or failed."""
    failure = _str(tk.get("control_failure"))
    if failure is not None:
        return f"The control helper could not be asked ({failure}): nothing to compare with."
    control = _dict(tk.get("control"))
    if not control:
        return None
    http = _dict(control.get("http_request"))
    code, length = http.get("status_code"), _count(http.get("body_length"))
    if http.get("failure") is None and isinstance(code, int) and not isinstance(code, bool) and 0 < code < 1000:
        size = f", {length:,} bytes" if length is not None else ""
        return f"From outside, the control helper fetched the page ({code}{size}): the site works there."
    address = tk.get("x_address")
    ep = _dict(_dict(control.get("tcp_connect")).get(address)) if isinstance(address, str) else {}
    why = _str(ep.get("failure")) or _str(http.get("failure")) or "no answer"
    if failed_here:
        return f"From outside, the control helper could not fetch it either ({why}): the site is down for everyone."
    return f"From outside, the control helper could not fetch it ({why}), where this connection did."


MAX_LINES = 32          # request lines listed for a middlebox test (HIRL sends five)
LINE_PREVIEW = 300      # characters of each request line or header block shown
# http_header_field_manipulation's tampering flags, in words (OONI's names)
TAMPERING_WORDS = {
    "header_field_name": "a header's name changed",
    "header_field_number": "headers were added or removed",
    "header_field_value": "a header's value changed",
    "header_name_capitalization": "header names were re-cased",
    "request_line_capitalization": "the request line was re-cased",
}


def _text(value: Any, limit: int = LINE_PREVIEW) -> str:
    """Bytes a server sent back, as text to show: cut at ``limit`` characters (escaped by the template)."""
    text = value if isinstance(value, str) else ""
    return text if len(text) <= limit else text[:limit] + "…"


def rewritten(test_name: Any, tk: Mapping[str, Any]) -> dict[str, Any] | None:
    """OONI's middlebox tests: what was sent to the echo backend and what reached it (it sends back what it read),
    and what changed on the way, in words. Hostile input: strings are cut, anything else left out."""
    if test_name == "http_header_field_manipulation":
        tampering = _dict(tk.get("tampering"))
        changed = [words for key, words in TAMPERING_WORDS.items() if tampering.get(key) is True]
        diff = [_text(h, 80) for h in _list(tampering.get("header_name_diff"))[:MAX_LINES] if isinstance(h, str)]
        return {"kind": "headers", "backend": _text(tk.get("backend"), 120), "changed": changed, "diff": diff,
                "sent": _text(tk.get("sent"), 2000), "received": _text(tk.get("received"), 2000),
                "tampered": tampering.get("total") is True}
    if test_name == "http_invalid_request_line":
        sent, received = _list(tk.get("sent")), _list(tk.get("received"))
        lines = [{"sent": _text(a), "received": _text(b) if isinstance(b, str) else "",
                  "same": isinstance(a, str) and a == b}
                 for a, b in zip(sent[:MAX_LINES], received[:MAX_LINES])]
        return {"kind": "lines", "backend": _text(tk.get("backend"), 120), "lines": lines,
                "tampered": tk.get("tampering") is True}
    return None


def echoes(tk: Mapping[str, Any]) -> list[dict[str, Any]]:
    """remote_web's exchanges with an echo service (``x_echo``, Quack): what was sent, in our words (a GET or a
    ClientHello, and the name it carried, read from the bytes), and what came back: the very bytes, or the
    start of others (as text, binary shown by its length)."""
    from tamperscope.wire.tlshello import ClientHello, parse_client_hello

    out = []
    for e in _list(tk.get("x_echo"))[:MAX_ECHOES]:
        if not isinstance(e, dict):
            continue
        tags = e.get("tags")
        tags = tags if isinstance(tags, list) else []
        protocol = next((p for p in ("echo_ech", "echo_tls", "echo") if p in tags), None)
        sent, received = body_bytes(e.get("sent")), body_bytes(e.get("received"))
        hello = parse_client_hello(sent) if protocol in ("echo_tls", "echo_ech") else None
        if isinstance(hello, ClientHello):  # with ECH, the name in the clear: the outer one
            what = "a TLS ClientHello with Encrypted Client Hello" if hello.ech else "a TLS ClientHello"
            name = hello.sni
        else:
            host = re.search(rb"\r\nhost:[ \t]*([^\r\n]{0,253})", sent[:4096], re.I)
            what, name = "an HTTP request", host.group(1).decode("utf-8", "replace").strip() if host else None
        failure = _str(e.get("failure"))
        text = received[:ECHO_PREVIEW * 4].decode("utf-8", "replace")
        binary = "\ufffd" in text or any(ch < " " and ch not in "\r\n\t" for ch in text[:ECHO_PREVIEW])
        out.append({"role": _role_words(e), "protocol": protocol, "sent": what, "name": name, "failure": failure,
                    "intact": failure is None and bool(sent) and received == sent,
                    "received_length": len(received),
                    "received": None if binary or failure is None else text[:ECHO_PREVIEW]})
    return out


def evasion(tk: Mapping[str, Any]) -> dict[str, Any] | None:
    """The evasion nettest's attempts (``x_evasion``) as typed text, each judged again from its own records as
    the analysis judges it (``model.evasion.attempts_from_records``, the whole fingerprint database): an
    attempt with no records of its own reads ``no records``, and what the probe wrote is shown only where it
    differs (``written``). What each strategy does and what its getting through says come from our
    catalogue, never from the measurement."""
    from tamperscope.analysis.verdicts import default_matcher
    from tamperscope.model.evasion import BY_NAME, PLAIN, attempts_from_records

    x = _dict(tk.get("x_evasion"))
    if not x:
        return None
    written = [_dict(a) for a in _list(x.get("attempts"))[:MAX_ATTEMPTS]]
    try:
        judged = [_dict(a) for a in attempts_from_records(tk, default_matcher())][:MAX_ATTEMPTS]
    except Exception:  # noqa: BLE001 - hostile records: the analysis says "analysis_error"; show what was written
        judged = []
    # attempts_from_records keeps the written attempts that are mappings, in order: the same rows
    said = [a for a in written if a]
    rows = []
    for i, a in enumerate(judged or said):
        name = _str(a.get("strategy"))
        known = BY_NAME.get(name or "")
        outcome = _str(a.get("outcome"))
        wrote = _str(said[i].get("outcome")) if judged and i < len(said) else None
        status = a.get("status_code")
        rows.append({"strategy": name, "outcome": outcome or "no records", "failure": _str(a.get("failure")),
                     "step": _str(a.get("step")),
                     "status_code": status if isinstance(status, int) and not isinstance(status, bool) else None,
                     "written": wrote if judged and wrote != outcome else None,
                     "what": "the request as any client sends it" if name == PLAIN else (known.what if known else ""),
                     "says": known.trait if known and outcome == "ok" else
                     known.coped if known and outcome == "blocked" else ""})
    waits = [w for w in _list(x.get("residual_waits"))[:MAX_ATTEMPTS] if isinstance(w, (int, float))
             and not isinstance(w, bool)]
    return {"address": _str(x.get("address")), "source": _str(x.get("address_source")), "attempts": rows,
            "residual_waits": waits}


def rules(tk: Mapping[str, Any]) -> dict[str, Any] | None:
    """The blocking_rules nettest's layers (``x_blocking_rules``) as typed text, each probe judged again from
    its own records as the analysis judges it (``model.rules.rules_from_records``, the whole fingerprint
    database): what the probe wrote is shown only where it differs (``written``). Each layer's rule is one of
    ours and its sentence is written here, never taken from the measurement."""
    from tamperscope.analysis.verdicts import default_matcher
    from tamperscope.model import rules as R

    x = _dict(tk.get("x_blocking_rules"))
    if not x:
        return None
    host = _str(x.get("host")) or "?"
    written = _dict(x.get("layers"))
    try:
        judged: Mapping[str, Any] = R.rules_from_records(tk, default_matcher())
    except Exception:  # noqa: BLE001 - hostile records: the analysis says "analysis_error"; show what was written
        judged = {}
    layers = []
    for name in R.LAYERS:
        said = _dict(written.get(name))
        data = _dict(judged.get(name)) or said
        if not data:
            continue
        rule = data.get("rule") if data.get("rule") in R.RULES else "undetermined"
        wrote = said.get("rule") if said.get("rule") in R.RULES else "undetermined"
        keyword = _str(data.get("keyword"))
        probes = [{"kind": _str(_dict(p).get("kind")), "name": _str(_dict(p).get("name")),
                   "outcome": _str(_dict(p).get("outcome")), "failure": _str(_dict(p).get("failure"))}
                  for p in _list(data.get("probes"))[:MAX_ATTEMPTS]]
        layers.append({"layer": name, "label": R.LAYER_NAMES[name], "rule": rule, "keyword": keyword,
                       "overblocks": _str(data.get("overblocks")), "written": wrote if wrote != rule else None,
                       "says": R.describe(host, name, {"rule": rule, "keyword": keyword}), "probes": probes})
    return {"host": host, "address": _str(x.get("address")), "layers": layers}


def ech_config(tk: Mapping[str, Any]) -> dict[str, Any] | None:
    """Where echcheck's target got its ECH config (the site's HTTPS record) and what plain DNS lost of it, as
    text: hostile input, typed here. None when no HTTPS record was asked (a run without a resolver)."""
    asked = {t: q for q in _list(tk.get("queries")) if isinstance(q, dict) and q.get("query_type") == "HTTPS"
             for t in _list(q.get("tags")) if t in ("ech_config", "ech_config_plain")}
    main = asked.get("ech_config")
    if main is None:
        return None
    target = _dict(tk.get("target"))
    config = _str(target.get("echconfig"))
    stripped = _dict(tk.get("x_ech_config_stripped"))
    engine = _str(main.get("engine"))
    return {
        "asked": "over DNS-over-HTTPS" if engine == "doh" else f"of {_str(main.get('resolver_address')) or '?'} "
                 f"over {engine or '?'}",
        "published": bool(config) and config != "GREASE",
        "outer_name": _str(target.get("outer_server_name")),
        "failure": _str(main.get("failure")),
        "error": _str(tk.get("x_ech_config_error")),
        "stripped": {"resolver": _str(stripped.get("resolver")), "failure": _str(stripped.get("failure"))}
        if stripped else None,
    }


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def signature_view(value: Any) -> dict[str, Any] | None:
    """``x_signature`` in words, for the page: its key (what groups the same gear), then what the forged
    packets were, field by field. Hostile input: every field typed here, or left out."""
    sig = _dict(value)
    if not sig:
        return None
    rows: list[tuple[str, str]] = []
    kind, flags = _str(sig.get("kind")), _str(sig.get("flags"))
    if kind:
        rows.append(("packet", kind.upper()[:16] + (f", flags {flags[:16]}" if flags else "")
                     + (f" ({'+'.join(FLAG_NAMES[f] for f in flags if f in FLAG_NAMES)})"
                        if flags and set(flags) <= set(FLAG_NAMES) else "")))
    ttl, initial, sent = _number(sig.get("ttl")), _number(sig.get("initial_ttl")), _number(sig.get("sent_ttl"))
    if ttl is not None:
        # what was sent is known only where the censor's hop is (locate's ``sent_ttl``); otherwise the class the
        # received TTL fits under says at most (QA: "sent with 64 (3 routers on the way)" of a box sending 61)
        routers = sent - ttl if sent is not None and sent >= ttl else None
        rows.append(("TTL", f"{ttl} as received" + (
            f", sent with {sent} ({routers} router{'' if routers == 1 else 's'} on the way)" if routers is not None
            else f", sent with {initial} or less" if initial is not None and initial >= ttl else "")))
    if (window := _number(sig.get("window"))) is not None:
        rows.append(("TCP window", str(window)))
    ids = [i for i in _list(sig.get("ip_ids")) if _number(i) is not None][:10]
    if (ip_id := _number(sig.get("ip_id"))) is not None or ids:
        fixed = len(set(ids)) <= 1
        varies = "" if fixed else f" (varies: {', '.join(map(str, ids))})"
        rows.append(("IP-ID", (str(ip_id) if ip_id is not None else "") + (
            " in every packet" if fixed and len(ids) > 1 else varies)))
    if (packets := _number(sig.get("packets"))) is not None:
        rows.append(("packets seen", str(packets)))
    if remote := _str(sig.get("remote")):
        rows.append(("as if from", remote[:80]))
    return {"key": (_str(sig.get("key")) or "")[:200], "rows": rows}


def quic_trigger(tk: Mapping[str, Any]) -> dict[str, str | None] | None:
    """What a dropped QUIC handshake was dropped for (``x_quic_trigger``), as text: hostile input, typed here."""
    x = _dict(tk.get("x_quic_trigger"))
    if not x:
        return None
    trigger = _str(x.get("trigger"))
    said = {"sni": "the name in the QUIC Initial: the same handshake with an innocent name got through",
            "undetermined": "undetermined: the same handshake with an innocent name was dropped too (the address "
                            "may be blocked, or the name's drop still held it)"}
    return {"address": _str(x.get("address")), "innocent_name": _str(x.get("innocent_name")),
            "innocent_failure": _str(x.get("innocent_failure")), "trigger": trigger,
            "meaning": said.get(trigger or "", "not given")}


__all__ = ["MAX_BODIES", "MAX_BODY_TEXT", "MAX_REQUESTS", "MAX_TARGETS", "body_bytes", "body_text", "captured_body",
           "censoredplanet", "certificate", "dns", "evasion", "evidence", "fingerprints", "headers_of", "http",
           "remote", "ports", "signature_view", "targets", "tcp", "title_of", "tls", "wireguard"]
