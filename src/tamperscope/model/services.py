"""Verdicts of OONI's instant-messaging tests (ooni/spec ts-018 whatsapp, ts-019 facebook_messenger,
ts-020 telegram, ts-029 signal), ours or OONI's, and the pieces other flag-reading verdicts share.

These tests carry their probe's own conclusions as flags: there are no raw records rich enough to
re-derive them, so the flags are read, and the failure strings beside them say how (a reset or a
timeout, at which layer), through the model's one classifier of failure strings (`failure_class`).
A failure after a lookup of the service's name was answered with a bogon (`lied`) is the resolver's lie,
whatever layer failed next. Our `telegram`, `whatsapp`, `facebook_messenger` and `signal` nettests write
the same flags, and their verdicts are these.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .verdict import Verdict, failure_class
from .webparts import is_bogon

# OONI's instant-messaging tests, by test name: the app, and its services as their flags say them: (the flag's
# key, its failure's key, the service in words). A flag is a bool (true: blocked) or OONI's "ok" / "blocked".
# The probe's `im` group, the report, the explorer and the demo all read this table.
APPS: dict[str, tuple[str, tuple[tuple[str, str | None, str], ...]]] = {
    "telegram": ("Telegram", (("telegram_tcp_blocking", None, "its access points (TCP)"),
                              ("telegram_http_blocking", None, "its access points (HTTP)"),
                              ("telegram_web_status", "telegram_web_failure", "Telegram Web"))),
    "whatsapp": ("WhatsApp", (("whatsapp_endpoints_status", None, "its chat servers (e1-e16.whatsapp.net, port 5222)"),
                              ("registration_server_status", "registration_server_failure",
                               "its registration service (v.whatsapp.net)"),
                              ("whatsapp_web_status", "whatsapp_web_failure", "WhatsApp Web"))),
    "facebook_messenger": ("Facebook Messenger", (
        ("facebook_dns_blocking", None, "its names (their answers checked against Facebook's network, AS32934)"),
        ("facebook_tcp_blocking", None, "its servers (TCP 443)"))),
    "signal": ("Signal", (("signal_backend_status", "signal_backend_failure", "its servers"),)),
}
# OONI's circumvention tests, by test name: the tool each says can or cannot be used from a network. Beside the
# apps, the report and the explorer show them network by network (`analysis.aggregates.apps`).
TOOLS: dict[str, str] = {
    "tor": "Tor",
    "torsf": "Tor with Snowflake",
    "vanilla_tor": "Tor (its own bootstrap)",
    "psiphon": "Psiphon",
    "riseupvpn": "RiseupVPN",
    "wireguard": "WireGuard",
}
# Facebook Messenger's endpoints: (OONI's key, the name), ooni/spec ts-019, in its order
FACEBOOK_ENDPOINTS = (
    ("stun", "stun.fbsbx.com"),
    ("b_api", "b-api.facebook.com"),
    ("b_graph", "b-graph.facebook.com"),
    ("edge", "edge-mqtt.facebook.com"),
    ("external_cdn", "external.xx.fbcdn.net"),
    ("scontent_cdn", "scontent.xx.fbcdn.net"),
    ("star", "star.c10r.facebook.com"),
)


def facebook_key(tk: Mapping[str, Any], key: str) -> str:
    """``key`` (``facebook_dns_blocking``) as this facebook_messenger measurement spells it: with ``-`` in place
    of ``_`` up to the test's version 0.3.0."""
    new = "facebook_dns_blocking" in tk or "facebook_tcp_blocking" in tk
    return key if new else key.replace("_", "-")


def test_keys(measurement: Mapping[str, Any]) -> Mapping[str, Any]:
    tk = measurement.get("test_keys")
    return tk if isinstance(tk, Mapping) else {}


def ok(evidence: Sequence[str] = (), confidence: float = 0.8) -> Verdict:
    return Verdict(False, True, "none", confidence, "ok", tuple(evidence))


def failed(evidence: Sequence[str] = ()) -> Verdict:
    """The measurement itself failed: nothing to judge."""
    return Verdict(None, None, "none", 0.0, "failure", tuple(evidence))


def anomaly(blocking: str, mechanism: str, confidence: float, evidence: Sequence[str]) -> Verdict:
    return Verdict(blocking, False, mechanism, confidence, "anomaly", tuple(evidence))


def how(failure: Any, layer: str) -> str:
    """The mechanism an OONI failure string points to, for a failure at ``layer`` (dns, tcp, http,
    https), through the model's one classifier of failure strings (`model.verdict.failure_class`)."""
    kind = failure_class(failure if isinstance(failure, str) else None)
    if kind == "dns_nxdomain":
        return "dns.nxdomain"
    if kind in ("dns_error", "dns_no_answer"):
        return "dns.drop"
    if layer == "dns":
        return "dns.poison"
    reset = kind in ("reset", "refused", "eof")
    if layer == "tcp":
        return "tcp.rst" if reset else "tcp.drop"
    if layer == "http":
        return "http.rst" if reset else "http.drop"
    if kind == "tls_cert":
        return "tls.mitm"
    return "tls.rst" if reset else "tls.drop"


def ooni_blocking(mechanism: str) -> str:
    """OONI's ``blocking`` word for a mechanism: "dns", "tcp_ip" (for UDP too: OONI has no word of its own for
    it), else its catch-all "http-failure"."""
    return {"dns": "dns", "tcp": "tcp_ip", "udp": "tcp_ip"}.get(mechanism.split(".")[0], "http-failure")


def tcp_failure(tk: Mapping[str, Any]) -> str | None:
    """A failure string from the tcp_connect records (a reset, if any connection was reset)."""
    connects = tk.get("tcp_connect")
    failures = [f for r in (connects if isinstance(connects, list) else ())
                if isinstance(r, Mapping) and isinstance(r.get("status"), Mapping)
                and isinstance(f := r["status"].get("failure"), str) and f]
    return reset_first(failures)


def reset_first(failures: Sequence[str]) -> str | None:
    """The failure that says most of several: a reset or a refusal (a censor's answer) before any other."""
    return next((f for f in failures if failure_class(f) in ("reset", "refused")), failures[0] if failures else None)


def query_failure(tk: Mapping[str, Any]) -> str | None:
    """The first failure string among the DNS queries."""
    queries = tk.get("queries")
    return next((f for q in (queries if isinstance(queries, list) else ())
                 if isinstance(q, Mapping) and isinstance(f := q.get("failure"), str) and f), None)


def request_failure(tk: Mapping[str, Any]) -> str | None:
    """The first failure string among the HTTP transactions."""
    requests = tk.get("requests")
    return next((f for r in (requests if isinstance(requests, list) else ())
                 if isinstance(r, Mapping) and isinstance(f := r.get("failure"), str) and f), None)


_TESTBEDS = ipaddress.ip_network("198.18.0.0/15")  # benchmarking: a bogon, but test beds' internet (our lab's)


def is_lie(address: str) -> bool:
    """Whether a DNS answer for a public name is an address no public server has: a bogon (OONI's), the
    benchmarking range 198.18.0.0/15 excepted (test beds' internet, our lab's)."""
    if not is_bogon(address):  # (also False for what is no address at all)
        return False
    addr = ipaddress.ip_address(address)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr not in _TESTBEDS


def lied(tk: Mapping[str, Any], about: Callable[[str], bool]) -> bool:
    """Whether a lookup of a name ``about`` accepts was answered with an address no public server has
    (127.0.0.1, a private network: OONI's bogons, except the benchmarking range 198.18.0.0/15, which test
    beds such as our lab use as their internet). That is a resolver's lie, whatever failed after it: the
    connection went where the lie pointed."""
    return any(is_lie(a) for a in _addresses_of(tk, about))


def _addresses_of(tk: Mapping[str, Any], about: Callable[[str], bool]) -> set[str]:
    """The addresses the lookups of names ``about`` accepts were answered with."""
    out: set[str] = set()
    queries = tk.get("queries")
    for q in queries if isinstance(queries, list) else ():
        if not isinstance(q, Mapping) or not isinstance(name := q.get("hostname"), str) or not about(name.lower()):
            continue
        answers = q.get("answers")
        out |= {v for a in (answers if isinstance(answers, list) else ()) if isinstance(a, Mapping)
                for k in ("ipv4", "ipv6") if isinstance(v := a.get(k), str)}
    return out


def connect_failed(tk: Mapping[str, Any], about: Callable[[str], bool]) -> bool:
    """Whether every connection to the addresses of names ``about`` accepts failed (there was one at least): the
    failure of an HTTPS check is then the connection's, a TCP block (``tcp.drop``, ``tcp.rst``), not a TLS one. A
    failure string alone does not tell: a timeout is ``generic_timeout_error`` in the connect and the handshake
    alike (QA: web.telegram.org dropped by address read as ``tls.drop``)."""
    addrs = _addresses_of(tk, about)
    connects = tk.get("tcp_connect")
    results = [r["status"].get("success") is True for r in (connects if isinstance(connects, list) else ())
               if isinstance(r, Mapping) and isinstance(ip := r.get("ip"), str) and ip in addrs
               and isinstance(r.get("status"), Mapping)]
    return bool(results) and not any(results)


def https_layer(tk: Mapping[str, Any], about: Callable[[str], bool]) -> str:
    """The layer an HTTPS check of names ``about`` failed at: "dns" when a lookup of one lied (`lied`), "tcp" when
    no connection to them went through (`connect_failed`), else "https"."""
    if lied(tk, about):
        return "dns"
    return "tcp" if connect_failed(tk, about) else "https"


def _named(*names: str) -> Callable[[str], bool]:
    return lambda name: name.rstrip(".") in names


def _whatsapp_endpoint(name: str) -> bool:
    """e1.whatsapp.net … e16.whatsapp.net (and any eN the app may add)."""
    first, _, rest = name.rstrip(".").partition(".")
    return rest == "whatsapp.net" and first[:1] == "e" and first[1:].isdigit()


def _signal(name: str) -> bool:
    name = name.rstrip(".")
    return any(name == d or name.endswith("." + d) for d in ("signal.org", "whispersystems.org"))


def services(checks: Sequence[tuple[str, bool | None, str, Any]]) -> Verdict:
    """One verdict from several services' flags: (evidence key, blocked?, layer, failure string).

    Blocked anywhere is an anomaly (the first one found names the mechanism, every blocked
    key is evidence); all flags present and clear is "ok"; no flag at all is a failure.
    """
    blocked = [(key, layer, failure) for key, flag, layer, failure in checks if flag is True]
    seen = [key for key, flag, _, _ in checks if flag is not None]
    if blocked:
        key, layer, failure = blocked[0]
        mechanism = how(failure, layer)
        return anomaly(ooni_blocking(mechanism), mechanism, 0.8, [f"test_keys.{k}" for k, _, _ in blocked])
    if not seen:
        return failed()
    return ok([f"test_keys.{k}" for k in seen])


def flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def status(value: Any) -> bool | None:
    """OONI's "blocked" / "ok" status strings as blocked?"""
    return {"blocked": True, "ok": False}.get(value) if isinstance(value, str) else None


def blocked(value: Any) -> bool | None:
    """Any app flag (`APPS`) as blocked?: a bool as it is, a status string as `status` reads it."""
    return flag(value) if isinstance(value, bool) else status(value)


def telegram_verdict(measurement: Mapping[str, Any]) -> Verdict:
    tk = test_keys(measurement)
    return services([
        ("telegram_tcp_blocking", flag(tk.get("telegram_tcp_blocking")), "tcp", tcp_failure(tk)),
        ("telegram_http_blocking", flag(tk.get("telegram_http_blocking")), "http", request_failure(tk)),
        ("telegram_web_status", status(tk.get("telegram_web_status")),
         https_layer(tk, _named("web.telegram.org")), tk.get("telegram_web_failure")),
    ])


def whatsapp_verdict(measurement: Mapping[str, Any]) -> Verdict:
    tk = test_keys(measurement)
    return services([
        # the endpoints' failure: a connection's, else a lookup's (a name the censor's resolver denies)
        ("whatsapp_endpoints_status", status(tk.get("whatsapp_endpoints_status")),
         "dns" if lied(tk, _whatsapp_endpoint) else "tcp", tcp_failure(tk) or query_failure(tk)),
        ("registration_server_status", status(tk.get("registration_server_status")),
         https_layer(tk, _named("v.whatsapp.net")), tk.get("registration_server_failure")),
        ("whatsapp_web_status", status(tk.get("whatsapp_web_status")),
         https_layer(tk, _named("web.whatsapp.com")), tk.get("whatsapp_web_failure")),
    ])


def facebook_messenger_verdict(measurement: Mapping[str, Any]) -> Verdict:
    tk = test_keys(measurement)
    dns, tcp = facebook_key(tk, "facebook_dns_blocking"), facebook_key(tk, "facebook_tcp_blocking")
    return services([
        (dns, flag(tk.get(dns)), "dns", query_failure(tk)),  # a failed lookup names its mechanism, else a lie
        (tcp, flag(tk.get(tcp)), "tcp", tcp_failure(tk)),
    ])


def signal_verdict(measurement: Mapping[str, Any]) -> Verdict:
    tk = test_keys(measurement)
    return services([
        ("signal_backend_status", status(tk.get("signal_backend_status")),
         https_layer(tk, _signal), tk.get("signal_backend_failure")),
    ])
