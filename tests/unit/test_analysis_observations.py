"""Observation rows: what each archival record becomes, hostile values, and the fast path against a plain one.

`observations.py` inlines its type checks for speed. `reference_rows` below is the
straightforward statement of the same rules (one helper per check); hypothesis feeds
both arbitrary JSON in every field and they must agree row for row.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as hst

from tamperscope.analysis.observations import SCHEMA, ObservationColumns, observations_of

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
LISTS = (("queries", "dns"), ("x_dns_duplicate_responses", "dns"), ("tcp_connect", "tcp"),
         ("tls_handshakes", "tls"), ("quic_handshakes", "quic"), ("requests", "http"))


# --------------------------------------------------------------------------- the plain statement of the rules


def _s(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _i(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**63 else None


def _f(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    return float(v) if isinstance(v, (int, float)) else None


def _port(v: Any) -> int | None:
    if isinstance(v, str) and 0 < len(v) <= 5 and all("0" <= c <= "9" for c in v):
        v = int(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return v if 0 <= v < 65536 else None
    return None


def _split(address: Any) -> tuple[str | None, int | None]:
    if not isinstance(address, str) or not address:
        return None, None
    m = re.fullmatch(r"\[([^\]]*)\](?::(.*))?|([^:]*):(.*)", address, re.DOTALL)
    if m is None:  # no port, or a bare IPv6 address: whole
        return address, None
    host, port = (m[1], m[2]) if m[1] is not None else (m[3], m[4])
    if port is None:  # [IPv6] alone
        return host, None
    if not port or not all("0" <= c <= "9" for c in port):
        return address, None
    return host, _port(port)


def _answers(v: Any) -> list[str] | None:
    if not isinstance(v, list):
        return None
    out = []
    for a in v:
        if isinstance(a, dict):
            found = a.get("ipv4") or a.get("ipv6") or a.get("hostname")
            if isinstance(found, str):
                out.append(found)
    return out


def reference_rows(uid: str, tk: dict[str, Any]) -> list[dict[str, Any]]:
    from tamperscope.analysis.observations import _body_length, _host_of

    rows: list[dict[str, Any]] = []
    lists = [(f"test_keys.{key}", step, tk.get(key)) for key, step in LISTS]
    for nest in ("lookups", "targets"):
        if isinstance(tk.get(nest), dict):
            for name, inner in tk[nest].items():
                if isinstance(inner, dict):
                    lists += [(f"test_keys.{nest}[{name!r}].{key}", step, inner.get(key)) for key, step in LISTS]
    for prefix, step, records in lists:
        if not records or not isinstance(records, list):
            continue
        for i, r in enumerate(records):
            if not isinstance(r, dict):
                continue
            row: dict[str, Any] = {f.name: None for f in SCHEMA}
            row.update(measurement_uid=uid, idx=len(rows), step=step, pointer=f"{prefix}[{i}]", t0=_f(r.get("t0")),
                       t=_f(r.get("t")), transaction_id=_i(r.get("transaction_id")))
            failure = r.get("failure")
            if step == "dns":
                row.update(hostname=_s(r.get("hostname")), engine=_s(r.get("engine")),
                           resolver=_s(r.get("resolver_address")), query_type=_s(r.get("query_type")),
                           answers=_answers(r.get("answers")))
            elif step == "tcp":
                status = r.get("status")
                failure = status.get("failure") if isinstance(status, dict) else None
                row.update(ip=_s(r.get("ip")), port=_port(r.get("port")))
            elif step in ("tls", "quic"):
                ip, port = _split(r.get("address"))
                row.update(ip=ip, port=port, server_name=_s(r.get("server_name")))
            else:
                request, response = r.get("request"), r.get("response")
                url = _s(request.get("url")) if isinstance(request, dict) else None
                ip, port = _split(r.get("address"))
                row.update(hostname=_host_of(url), ip=ip, port=port, url=url)
                if isinstance(response, dict):
                    code = _i(response.get("code"))
                    row.update(status_code=code if code is not None and 0 < code < 1000 else None,
                               body_length=_body_length(response.get("body")),
                               body_truncated=response.get("body_is_truncated")
                               if isinstance(response.get("body_is_truncated"), bool) else None)
            row["failure"] = _s(failure) or None
            rows.append(row)
    return rows


def fast_rows(uid: str, tk: dict[str, Any]) -> list[dict[str, Any]]:
    cols = ObservationColumns()
    cols.add(uid, tk)
    return cols.to_arrow().to_pylist()


# --------------------------------------------------------------------------- hostile values

json_leaf = hst.one_of(hst.none(), hst.booleans(), hst.integers(-2**63, 2**64 - 1), hst.floats(allow_nan=False),
                       hst.text(max_size=8), hst.sampled_from(["1.2.3.4:443", "[::1]:80", "x:²", "h:99999", "h:",
                                                                "2001:db8::1", "[::1]", "[::1]:x", "[]:80", ":80",
                                                                "https://A.example:8/p?q", "", "0", "443"]))
json_value = hst.recursive(json_leaf, lambda inner: hst.lists(inner, max_size=3)
                           | hst.dictionaries(hst.text(max_size=6), inner, max_size=3), max_leaves=6)
FIELDS = ["t0", "t", "transaction_id", "hostname", "engine", "resolver_address", "query_type", "answers", "failure",
          "ip", "port", "status", "address", "server_name", "request", "response"]
record = hst.one_of(
    json_value,
    hst.fixed_dictionaries({}, optional={f: json_value for f in FIELDS}),
    hst.fixed_dictionaries({}, optional={
        "answers": hst.lists(hst.fixed_dictionaries({}, optional={k: json_leaf for k in ("ipv4", "ipv6", "hostname")})),
        "status": hst.fixed_dictionaries({}, optional={"failure": json_leaf}),
        "request": hst.fixed_dictionaries({}, optional={"url": json_leaf}),
        "response": hst.fixed_dictionaries({}, optional={
            "code": json_leaf, "body_is_truncated": json_leaf,
            "body": hst.one_of(json_leaf, hst.fixed_dictionaries({"format": hst.sampled_from(["base64", "x"]),
                                                                  "data": json_leaf}))})}),
)
test_keys = hst.fixed_dictionaries({}, optional={key: hst.one_of(json_value, hst.lists(record, max_size=4))
                                                 for key, _ in LISTS}
                                   | {nest: hst.dictionaries(hst.text(max_size=5), hst.fixed_dictionaries(
                                       {}, optional={"queries": hst.lists(record, max_size=2),
                                                     "tcp_connect": hst.lists(record, max_size=2)}), max_size=2)
                                      for nest in ("lookups", "targets")})


@settings(max_examples=400, deadline=None)
@given(test_keys)
def test_fast_path_matches_the_plain_rules(tk: dict[str, Any]) -> None:
    tk = orjson.loads(orjson.dumps(tk, option=orjson.OPT_NON_STR_KEYS))  # exactly what a parsed line holds
    assert fast_rows("u", tk) == reference_rows("u", tk)


def test_the_fifty_samples_match_the_plain_rules() -> None:
    total = 0
    for path in sorted(SAMPLES.glob("*/measurement.json")):
        tk = json.loads(path.read_text())["test_keys"]
        rows = fast_rows("u", tk)
        assert rows == reference_rows("u", tk)
        total += len(rows)
    assert total > 500


def test_what_a_record_becomes() -> None:
    tk = {
        "queries": [{"t0": 1, "t": 0.5, "transaction_id": True, "hostname": "a.example", "engine": "udp",
                     "resolver_address": "8.8.8.8:53", "query_type": "A", "failure": "",
                     "answers": [{"ipv4": "1.2.3.4"}, {"ipv6": ""}, {"hostname": "b.example"}, "junk"]},
                    "not a record"],
        "tcp_connect": [{"ip": "1.2.3.4", "port": "443", "status": {"failure": "connection_reset"}},
                        {"ip": 5, "port": "²"}, {"port": 70000}],
        "tls_handshakes": [{"address": "[2001:db8::1]:443", "server_name": "a.example", "failure": None}],
        "requests": [{"request": {"url": "https://User@A.Example:8443/x"},
                      "response": {"code": 1000, "body": {"format": "base64", "data": "aGk="},
                                   "body_is_truncated": "no"}}],
    }
    rows = observations_of("u", {"test_keys": tk}).to_pylist()
    assert [(r["idx"], r["step"], r["pointer"]) for r in rows] == [
        (0, "dns", "test_keys.queries[0]"), (1, "tcp", "test_keys.tcp_connect[0]"),
        (2, "tcp", "test_keys.tcp_connect[1]"), (3, "tcp", "test_keys.tcp_connect[2]"),
        (4, "tls", "test_keys.tls_handshakes[0]"), (5, "http", "test_keys.requests[0]")]
    dns, tcp, odd, far, tls, http = rows
    assert (dns["t0"], dns["t"], dns["transaction_id"], dns["failure"]) == (1.0, 0.5, None, None)
    assert isinstance(dns["t0"], float)
    assert dns["answers"] == ["1.2.3.4", "b.example"]
    assert (tcp["ip"], tcp["port"], tcp["failure"]) == ("1.2.3.4", 443, "connection_reset")
    assert (odd["ip"], odd["port"]) == (None, None)  # a superscript two is a digit to Python, not a port
    assert far["port"] is None
    assert (tls["ip"], tls["port"], tls["server_name"], tls["failure"]) == ("2001:db8::1", 443, "a.example", None)
    assert (http["hostname"], http["port"], http["status_code"], http["body_length"], http["body_truncated"]) == \
        ("a.example", None, None, 2, None)


def test_tor_targets_become_rows_under_their_pointers() -> None:
    """ts-023 nests each target's records under ``targets``: they are observations too."""
    tk = {"targets": {
        "128.31.0.39:9101": {"target_protocol": "or_port_dirauth", "failure": "connection_reset",
                             "tcp_connect": [{"ip": "128.31.0.39", "port": 9101,
                                              "status": {"failure": "connection_reset"}}]},
        "dir": {"target_protocol": "dir_port", "failure": None,
                "tcp_connect": [{"ip": "199.58.81.140", "port": 80, "status": {"failure": None}}],
                "requests": [{"request": {"url": "http://199.58.81.140:80/tor/status-vote/current/consensus.z"},
                              "response": {"code": 200, "body": "x"}}]},
        "junk": ["not", "a", "target"]}}
    rows = observations_of("u", {"test_keys": tk}).to_pylist()
    assert [(r["step"], r["pointer"], r["ip"], r["failure"]) for r in rows] == [
        ("tcp", "test_keys.targets['128.31.0.39:9101'].tcp_connect[0]", "128.31.0.39", "connection_reset"),
        ("tcp", "test_keys.targets['dir'].tcp_connect[0]", "199.58.81.140", None),
        ("http", "test_keys.targets['dir'].requests[0]", None, None)]
    assert rows[2]["status_code"] == 200 and rows[2]["hostname"] == "199.58.81.140"
