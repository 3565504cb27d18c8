"""A seeded, bounded structure fuzzer over real measurements: no verdict function and no observation row may
raise on hostile JSON, and every verdict must be one the store can hold.

Seeds: OONI's 50 QA measurements (also read as v0.4), the collector's synthetic ones, the hand-made records of
the other verdict tests (blocking_rules, remote_dns/remote_web, the circumvention and legacy tests), and one
small measurement per other registered test name. Each seed gets a fixed number of mutations from a
`random.Random` seeded by its id: a value replaced by another JSON type (null, bool, 64-bit edge ints, floats,
strings with NUL, control characters and emoji, IPs that are not IPs, unknown failure strings, empty and
nested containers), a key deleted, a list item duplicated, a container emptied, a number negated or scaled, a
string stretched, a value buried 5-150 levels deep, a stray key or item added, and sometimes another test_name.
Then, as `analyze` does: `verdict_for` with the whole fingerprint database, the rules of blocking_rules, the
observation rows and their Arrow table. Deterministic (ids and mutations) and a few seconds in all.
"""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from tamperscope.analysis.observations import ObservationColumns
from tamperscope.analysis.rules import rows_of, rule_table
from tamperscope.analysis.verdicts import VERDICTS, blocking_rules_judged, default_matcher, verdict_for
from tamperscope.collector import samples
from tamperscope.model.verdict import MECHANISMS, STATUSES

from . import test_analysis_verdicts_circumvention as circumvention
from . import test_blocking_rules as blocking_rules
from . import test_remote_verdict as remote

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
MUTATIONS = 30  # per seed: about 6,600 in all
BLOCKING = (False, None, "dns", "tcp_ip", "http-failure", "http-diff")
ODD: tuple[Any, ...] = (
    None, True, False, 0, -1, 2**63 - 1, -2**63, 2**64 - 1, 1.5, -0.0, 1e308, -1e308, "", "x",
    "\x00\x01\x1f\u202e\U0001F600", "not-an-ip", "999.1.1.1", "[::1", "1.2.3.4:99999", "::1", "weird_failure_xyz",
    "depth=99999999999", "fetch_body=maybe", "0.4.1", "0.5.x", [], {}, [None], [[1]], {"a": [1]}, [{}],
)
STRAY_KEYS = ("failure", "tags", "answers", "status", "code", "body", "headers", "x_throttle", "transaction_id",
              "port", "address", "ip", "control", "requests", "quic_handshake", "x_middlebox_tampering")


def _m(name: str, **test_keys: Any) -> dict[str, Any]:
    return {"test_name": name, "test_version": "0.1.0", "input": None, "test_keys": test_keys}


def _others() -> dict[str, dict[str, Any]]:
    """One measurement per registered test name the other seeds lack, with the keys its verdict reads."""
    tcp = [{"ip": "149.154.175.50", "port": 443, "status": {"failure": "connection_reset", "success": False}}]
    requests = [{"failure": "generic_timeout_error", "request": {"url": "http://149.154.175.50/"}, "response": None}]
    handshake = {"address": "198.19.0.5:443", "server_name": "cloudflare-ech.com", "t0": 0.1, "t": 0.2}
    web = remote.Web()
    web.ok("https", "control").attempt("https", "test", failure="connection_reset").ok("http", "control")
    web.attempt("http", "test", code=403, body=remote.BLOCKPAGE).quic("control").quic("test", "generic_timeout_error")
    dns, _ = remote.standard()
    dns.validate_http(remote.ELSEWHERE, remote.BLOCKPAGE)
    return {
        "throttling": _m("throttling", x_throttle={"throttled": True, "confidence": 0.7}),
        "telegram": _m("telegram", telegram_tcp_blocking=True, telegram_http_blocking=True,
                       telegram_web_status="blocked", telegram_web_failure="connection_reset", tcp_connect=tcp,
                       requests=requests),
        "whatsapp": _m("whatsapp", whatsapp_endpoints_status="blocked", registration_server_status="ok",
                       registration_server_failure=None, whatsapp_web_status="blocked",
                       whatsapp_web_failure="eof_error", tcp_connect=tcp),
        "facebook_messenger": _m("facebook_messenger", facebook_dns_blocking=False, facebook_tcp_blocking=True,
                                 tcp_connect=tcp),
        "signal": _m("signal", signal_backend_status="blocked", signal_backend_failure="ssl_unknown_authority"),
        "tcp_connect": _m("tcp_connect", connection="connection_refused"),
        "http_invalid_request_line": _m("http_invalid_request_line", tampering=True, received=["GET / HTTP/1.1"]),
        "http_header_field_manipulation": _m("http_header_field_manipulation", received="x",
                                             tampering={"total": True, "header_name_capitalization": True}),
        "tls_mitm": _m("tls_mitm", x_mitm={"intercepted": True},
                       tls_handshakes=[{"address": "1.2.3.4:443", "failure": "ssl_unknown_authority",
                                        "server_name": "a.example", "x_spki_sha256": "aa", "x_issuer": "O=Evil"}],
                       control={"tls_handshake": {"1.2.3.4:443": {"status": True, "failure": None,
                                                                  "x_spki_sha256": "bb"}}}),
        "echcheck": _m("echcheck", control={**handshake, "failure": None},
                       target={**handshake, "failure": "connection_reset", "echconfig": "GREASE"}),
        "dnscheck": _m("dnscheck", bootstrap_failure=None, lookups={"dot://1.1.1.1": {
            "queries": [{"hostname": "a.example", "answers": [{"answer_type": "A", "ipv4": "1.2.3.4"}]}]}}),
        "dnscheck-ours": {"test_name": "dnscheck", "input": "dot://1.1.1.1", "test_keys": {
            "control": {"dns": {"addrs": ["93.184.216.34"], "failure": None},
                        "ip_info": {"93.184.216.34": {"asn": 15133}}},
            "x_lookups": {"dot": {"engine": "dot", "addrs": ["93.184.216.34"], "failure": None},
                          "udp": {"engine": "udp", "resolver_address": "8.8.8.8:53", "addrs": ["10.0.0.1"]}},
            "x_dns_duplicate_responses": [{"engine": "udp", "resolver_address": "8.8.8.8:53", "query_type": "A"}]}},
        "remote_web": web.build(),
        "remote_dns": dns.build(),
        "evasion": _m("evasion", **_evasion()),
        "tcp_freeze": _m("tcp_freeze", failure="generic_timeout_error", x_address="198.19.200.1:443",
                         x_freeze={"target_bytes": 65536,
                                   "single": {"stage": "http", "requests": 0, "received": 15070,
                                              "failure": "generic_timeout_error", "closed": False,
                                              "silence_s": 9.99, "frozen": True},
                                   "split": {"mode": "range", "connections": 4, "completed": 4, "received": 24170,
                                             "failure": None, "range_ignored": False}}),
        "wireguard": _m("wireguard", endpoint="198.19.3.40:51820", failure="generic_timeout_error",
                        x_address="198.19.3.40:51820",
                        x_handshake={"failure": "generic_timeout_error", "answer": None, "initiations": 5, "junk": 0,
                                     "ignored": 0, "t": None},
                        x_junk_first={"failure": None, "answer": "response", "initiations": 1, "junk": 3,
                                      "ignored": 0, "t": 0.002}),
        "portfiltering": _m("portfiltering", host="portquiz.net", failure=None, x_address="198.19.3.50",
                            x_ports=[{"port": 22, "connect": "generic_timeout_error", "reply": None, "status": None},
                                     {"port": 80, "connect": None, "reply": None, "status": 200},
                                     {"port": 8080, "connect": None, "reply": "connection_reset", "status": None}],
                            control={"tcp_connect": {"198.19.3.50:22": {"status": True, "failure": None},
                                                     "198.19.3.50:80": {"status": True, "failure": None}}}),
        "portfiltering-ooni": _m("portfiltering", tcp_connect=[
            {"ip": "192.0.2.7", "port": 22, "status": {"success": False, "failure": "connection_refused"}, "t": 0.1},
            {"ip": "192.0.2.7", "port": 80, "status": {"success": True, "failure": None}, "t": 0.2}]),
        "generic": _m("some_future_nettest", tampering={"a": True}, x_throttle={"throttled": False}),
    }


def _evasion() -> dict[str, Any]:
    """Four attempts (plain, then three re-framings), each with its tcp_connect, handshake and request."""
    page = "<title>Example</title>" + "x" * 978
    attempts = [(1, "tls-records", None, None, 200, page), (2, "tls-segments", None, "connection_reset", 0, ""),
                (3, "sni-case", None, None, 200, "<title>Blocked</title>"),
                (4, "plain", "generic_timeout_error", None, 0, "")]
    tk: dict[str, Any] = {
        "control": {"dns": {"addrs": ["198.19.0.5"], "failure": None},
                    "http_request": {"status_code": 200, "body_length": 1000, "title": "Example", "failure": None}},
        "x_evasion": {"address": "198.19.0.5:443", "address_source": "dns", "residual_waits": [], "attempts": [
            {"strategy": name, "layer": "tls", "transaction_id": tid, "shaped": None, "failure": None, "step": None,
             "status_code": 200, "fingerprints": [], "matches_control": True, "outcome": "ok"}
            for tid, name, *_ in attempts]},
        "tcp_connect": [], "tls_handshakes": [], "requests": []}
    for tid, _, connect, tls, status, body in attempts:
        tk["tcp_connect"].append({"transaction_id": tid, "ip": "198.19.0.5", "port": 443,
                                  "status": {"failure": connect, "success": connect is None}})
        if connect is None:
            tk["tls_handshakes"].append({"transaction_id": tid, "failure": tls})
        if connect is None and tls is None:
            tk["requests"].append({"transaction_id": tid, "failure": None,
                                   "response": {"code": status, "body": body, "headers": {}}})
    return tk


def _with_quic(m: dict[str, Any]) -> dict[str, Any]:
    """A web_connectivity measurement with the keys only the overlays read (QUIC, AS numbers, duplicates)."""
    tk = m["test_keys"]
    addrs = [a for a in tk["control"]["dns"]["addrs"] if isinstance(a, str)] or ["93.184.216.34"]
    tk["control"]["quic_handshake"] = {f"{a}:443": {"status": True, "failure": None} for a in addrs}
    tk["control"]["ip_info"] = {a: {"asn": 15133, "flags": 3} for a in addrs}
    tk["quic_handshakes"] = [{"address": f"{addrs[0]}:443", "failure": "generic_timeout_error", "t0": 0.1, "t": 5.1,
                              "server_name": "www.example.com", "tags": ["depth=0"], "negotiated_protocol": ""}]
    tk["x_dns_duplicate_responses"] = copy.deepcopy(tk["queries"][:1])
    tk["x_control_request"] = {"http_request": m["input"]}
    return m


def _seeds() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(SAMPLES.glob("*/measurement.json")):
        with path.open(encoding="utf-8") as f:
            m = json.load(f)
        out[f"ooni-{path.parent.name}"] = m
        out[f"ooni04-{path.parent.name}"] = {**copy.deepcopy(m), "test_version": "0.4.3"}
    for name in ("successWithHTTPS", "dnsBlockingBOGON", "httpDiffWithConsistentDNS", "tcpBlockingConnectTimeout"):
        out[f"quic-{name}"] = _with_quic(copy.deepcopy(out[f"ooni-{name}"]))
    for scenario in samples.SCENARIOS:
        out[f"ours-{scenario}"] = samples.measurement(scenario)
    out.update({f"hostile-{i}": m for i, m in enumerate(samples.hostile())})
    out["blocking_rules"] = blocking_rules.measurement()
    out["blocking_rules-path"] = blocking_rules.measurement_with_path()
    for i, (m, _) in enumerate(circumvention.CASES):
        out[f"{m['test_name']}-{i}"] = copy.deepcopy(m)
    out.update(_others())
    return out


SEEDS = _seeds()


def test_the_seeds_cover_every_registered_test_name() -> None:
    assert len([k for k in SEEDS if k.startswith("ooni-")]) == 50
    names = {m.get("test_name") for m in SEEDS.values()}
    assert set(VERDICTS) <= names, set(VERDICTS) - names


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


def _buried(value: Any, depth: int) -> Any:
    for level in range(depth):  # < 200 levels: what orjson and the reader let through
        value = [value] if level % 2 else {"a": value}
    return value


def mutate(m: dict[str, Any], rng: random.Random) -> str:
    """One mutation of ``m`` in place (mostly under test_keys); returns what it did."""
    paths = [p for p in _paths(m) if p]
    if not paths:
        return "nothing to mutate"
    keys = [p for p in paths if p[0] == "test_keys" and len(p) > 1]
    path = rng.choice(keys if keys and rng.random() < 0.85 else paths)
    parent: Any = m
    for step in path[:-1]:
        parent = parent[step]
    key, current = path[-1], parent[path[-1]]
    kind = rng.randrange(8)
    if kind <= 2:
        parent[key] = copy.deepcopy(rng.choice(ODD))
    elif kind == 3:
        del parent[key]
    elif kind == 4 and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(current))
    elif kind == 5 and isinstance(current, (list, dict)):
        parent[key] = type(current)()
    elif kind == 5 and isinstance(current, (int, float)) and not isinstance(current, bool):
        parent[key] = rng.choice([-current, current * 10**6, -1, 0, 65536, 2**63 - 1, float(current) + 0.5])
    elif kind == 5 and isinstance(current, str):
        parent[key] = rng.choice([current + "\x00", current.upper(), current * 40, current[:1], "é" + current])
    elif kind == 7 and isinstance(parent, dict):
        parent[rng.choice(STRAY_KEYS)] = copy.deepcopy(rng.choice(ODD))
    elif kind == 7:
        parent.append(copy.deepcopy(rng.choice(ODD)))
    else:
        parent[key] = _buried(current, rng.randrange(5, 150))
    return f"{kind} at {path!r}"


def analyse(m: dict[str, Any]) -> None:
    """What `analyze` does with one measurement, with the checks the store's tables need."""
    matcher = default_matcher()
    v = verdict_for(m, matcher)
    assert v.mechanism in MECHANISMS and v.status in STATUSES
    assert v.blocking in BLOCKING and v.accessible in (True, False, None), v
    assert isinstance(v.confidence, float | int) and math.isfinite(v.confidence), v
    assert all(type(p) is str for p in v.evidence) and all(type(f) is str for f in v.fingerprints), v
    if v.status == "ok":
        assert not isinstance(v.blocking, str), v
    if m.get("test_name") == "blocking_rules":
        rule_table(rows_of("uid", blocking_rules_judged(m, matcher)[1]))
    tk = m.get("test_keys")
    if isinstance(tk, dict):
        columns = ObservationColumns()
        columns.add("uid", tk)
        columns.to_arrow()


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_mutated_measurements_are_analysed_without_raising(seed: str) -> None:
    rng = random.Random(seed)
    analyse(copy.deepcopy(SEEDS[seed]))
    for _ in range(MUTATIONS):
        m = copy.deepcopy(SEEDS[seed])
        done = [mutate(m, rng) for _ in range(rng.randrange(1, 4))]
        if rng.random() < 0.1:
            m["test_name"] = rng.choice(sorted(VERDICTS))
            done.append(f"test_name={m['test_name']}")
        try:
            analyse(m)
        except Exception as exc:  # noqa: BLE001 - report the mutations that lead to it
            raise AssertionError(f"{seed} after {done}: {type(exc).__name__}: {exc}") from exc


def _first_record_fields(m: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The path of every field of the first record of each list of test_keys, and of each map of the control."""
    tk = m["test_keys"]
    out: list[tuple[Any, ...]] = []
    for key, value in tk.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            out += [("test_keys", key, 0, field) for field in value[0]]
    control = tk.get("control")
    for key, value in (control.items() if isinstance(control, dict) else ()):
        out.append(("test_keys", "control", key))
        if isinstance(value, dict):
            out += [("test_keys", "control", key, field) for field in value]
    return out


@pytest.mark.parametrize("seed", ["quic-successWithHTTPS", "quic-tcpBlockingConnectTimeout", "remote_web"])
def test_every_field_of_a_record_takes_every_odd_value(seed: str) -> None:
    """Exhaustive where the random walk is thin: one value of the wrong type at a time, in every field of the
    first record of each list (and of the control): a QUIC handshake's address as a list raised here."""
    for path in _first_record_fields(SEEDS[seed]):
        for odd in ODD:
            m = copy.deepcopy(SEEDS[seed])
            parent: Any = m
            for step in path[:-1]:
                parent = parent[step]
            parent[path[-1]] = copy.deepcopy(odd)
            try:
                analyse(m)
            except Exception as exc:  # noqa: BLE001 - report the mutation that leads to it
                raise AssertionError(f"{seed} with {path!r} = {odd!r}: {type(exc).__name__}: {exc}") from exc
