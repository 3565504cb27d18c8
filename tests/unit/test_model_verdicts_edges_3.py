"""Edges of the flag- and record-reading verdicts (model.torverdict, model.services, model.evasion, model.rules,
model.remote) that the existing tests leave open, found by mutation testing."""

from __future__ import annotations

from typing import Any

from tamperscope.model.evasion import attempts_from_records, evasion_verdict
from tamperscope.model.remote import remote_web_verdict
from tamperscope.model.rules import injected, to_verify
from tamperscope.model.services import facebook_messenger_verdict, signal_verdict, telegram_verdict, whatsapp_verdict
from tamperscope.model.torverdict import PROBLEM_TAIL, problem_failure, tor_verdict, vanilla_tor_verdict
from tests.unit.test_remote_verdict import BOGON, DNS, Web

# --------------------------------------------------------------------------- torverdict


def _tor(targets: dict[str, Any], **tk: Any) -> dict[str, Any]:
    return {"test_name": "tor", "test_keys": {"targets": targets, **tk}}


def test_tor_counters_of_a_protocol_that_never_ran_say_nothing() -> None:
    """A ``*_total`` of 0 (or none) beside ``*_accessible`` 0 is a protocol not run, not one wholly blocked."""
    targets = {"a": {"failure": "generic_timeout_error"}, **{f"ok{i}": {"failure": None} for i in range(3)}}
    v = tor_verdict(_tor(targets, obfs4_total=0, obfs4_accessible=0, dir_port_accessible=0))
    assert v.status == "ok", v
    blocked = tor_verdict(_tor(targets, obfs4_total=2, obfs4_accessible=0))
    assert blocked.status == "anomaly" and "test_keys.obfs4_accessible" in blocked.evidence, blocked


def test_tor_counters_are_not_read_when_the_targets_name_their_protocols() -> None:
    """Stale counters saying obfs4 wholly failed are ignored when the targets themselves show obfs4 working."""
    targets = {"slow": {"failure": "generic_timeout_error", "target_protocol": "dir_port"},
               **{f"ok{i}": {"failure": None, "target_protocol": "obfs4"} for i in range(3)},
               "dir": {"failure": None, "target_protocol": "dir_port"}}
    v = tor_verdict(_tor(targets, obfs4_total=3, obfs4_accessible=0))
    assert v.status == "ok", v


def test_a_legacy_tor_log_is_read_for_its_stuck_warning_at_its_end() -> None:
    """The warning is looked for in the last PROBLEM_TAIL characters of a long legacy log, not in its start."""
    warning = ("Problem bootstrapping. Stuck at 5% (conn): Connecting to a relay. (Connection refused; "
               "CONNECTREFUSED; count 3; recommendation warn; host 0123 at [scrubbed])")
    log = "Dec 07 10:00:00.000 [notice] Bootstrapped 5% (conn): Connecting to a relay\n" * 2000 + warning
    assert len(log) > PROBLEM_TAIL
    tk = {"success": False, "tor_progress": 5, "tor_log": log}
    assert problem_failure(tk, 5) == "connection_refused"
    v = vanilla_tor_verdict({"test_name": "vanilla_tor", "test_keys": tk})
    assert (v.status, v.mechanism) == ("anomaly", "tcp.rst"), v


def test_a_tor_anomaly_is_named_by_the_wholly_failed_protocol_before_a_reset_elsewhere() -> None:
    """Every directory authority timed out: that names the mechanism, not a reset of one obfs4 bridge of several."""
    targets = {"bridge": {"failure": "connection_reset", "target_protocol": "obfs4"},
               "auth": {"failure": "generic_timeout_error", "target_protocol": "or_port_dirauth"},
               **{f"ok{i}": {"failure": None, "target_protocol": "obfs4"} for i in range(3)},
               "dir": {"failure": None, "target_protocol": "dir_port"}}
    v = tor_verdict(_tor(targets))
    assert (v.status, v.mechanism) == ("anomaly", "tls.drop"), v
    assert v.evidence[1] == "test_keys.targets['auth']", v


def _vanilla(**tk: Any) -> dict[str, Any]:
    return {"test_name": "vanilla_tor", "test_keys": tk}


def test_a_null_success_is_ok_only_when_the_log_reached_one_hundred_percent() -> None:
    """"Bootstrapped 10%" is not "Bootstrapped 100%": tor exited early, a failure."""
    line = "Dec 07 10:00:00.000 [notice] Bootstrapped {}% (done): Done"
    assert vanilla_tor_verdict(_vanilla(success=None, tor_logs=[line.format(10)])).status == "failure"
    assert vanilla_tor_verdict(_vanilla(success=None, tor_logs=[line.format(100)])).status == "ok"


def test_a_long_tor_log_list_is_read_at_its_end() -> None:
    """Only the last lines of ``tor_logs`` are read (bounded), and that is where "Bootstrapped 100%" is."""
    lines = [f"Dec 07 10:00:00.000 [notice] line {i}" for i in range(200)]
    lines.append("Dec 07 10:00:01.000 [notice] Bootstrapped 100% (done): Done")
    v = vanilla_tor_verdict(_vanilla(success=None, tor_logs=lines))
    assert (v.status, v.evidence) == ("ok", ("test_keys.tor_logs",)), v


def test_a_tor_target_whose_summary_says_its_connect_failed_failed_at_tcp() -> None:
    """The 2020 ``summary.connect.failure`` puts the failure at the TCP connect, not at the OR port's TLS handshake."""
    targets = {"relay": {"failure": "generic_timeout_error", "target_protocol": "or_port",
                         "summary": {"connect": {"failure": "generic_timeout_error"}, "handshake": None}}}
    v = tor_verdict(_tor(targets))
    assert (v.status, v.mechanism) == ("anomaly", "tcp.drop"), v
    targets["relay"]["summary"] = {"connect": {"failure": None}, "handshake": {"failure": "generic_timeout_error"}}
    assert tor_verdict(_tor(targets)).mechanism == "tls.drop"


# --------------------------------------------------------------------------- services


def test_of_several_failures_none_a_reset_the_first_names_the_mechanism() -> None:
    """Without a reset or a refusal among the connects' failures, the first one is cited, not the last."""
    tk = {"telegram_tcp_blocking": True, "telegram_http_blocking": False, "telegram_web_status": "ok",
          "tcp_connect": [{"ip": "149.154.175.50", "port": 443, "status": {"failure": "generic_timeout_error"}},
                          {"ip": "149.154.167.51", "port": 443, "status": {"failure": "eof_error"}}]}
    v = telegram_verdict({"test_keys": tk})
    assert (v.status, v.mechanism) == ("anomaly", "tcp.drop"), v


def test_a_bogon_for_a_whatsapp_name_that_is_no_chat_endpoint_is_not_the_endpoints_lie() -> None:
    """Only eN.whatsapp.net (N digits) are the chat endpoints: a lie about edge.whatsapp.net leaves them at TCP."""
    tk = {"whatsapp_endpoints_status": "blocked", "registration_server_status": "ok", "whatsapp_web_status": "ok",
          "queries": [{"hostname": "edge.whatsapp.net", "answers": [{"ipv4": "127.0.0.1"}]}],
          "tcp_connect": [{"ip": "157.240.1.53", "port": 5222, "status": {"failure": "generic_timeout_error"}}]}
    assert whatsapp_verdict({"test_keys": tk}).mechanism == "tcp.drop"
    tk["queries"] = [{"hostname": "e7.whatsapp.net", "answers": [{"ipv4": "127.0.0.1"}]}]
    assert whatsapp_verdict({"test_keys": tk}).mechanism == "dns.poison"


def test_a_bogon_for_a_name_merely_ending_in_signal_org_is_not_signals_lie() -> None:
    """notsignal.org is not under signal.org: its bogon answer does not make Signal's failure the resolver's."""
    tk = {"signal_backend_status": "blocked", "signal_backend_failure": "generic_timeout_error",
          "queries": [{"hostname": "notsignal.org", "answers": [{"ipv4": "10.10.34.35"}]}]}
    assert signal_verdict({"test_keys": tk}).mechanism == "tls.drop"
    tk["queries"] = [{"hostname": "chat.signal.org", "answers": [{"ipv4": "10.10.34.35"}]}]
    assert signal_verdict({"test_keys": tk}).mechanism == "dns.poison"


def test_a_facebook_measurement_with_only_the_new_tcp_flag_is_read_by_its_new_keys() -> None:
    """One underscored key is enough to tell a 0.3.0+ measurement: its flags are not looked up with dashes."""
    v = facebook_messenger_verdict({"test_keys": {"facebook_tcp_blocking": True}})
    assert (v.status, v.evidence) == ("anomaly", ("test_keys.facebook_tcp_blocking",)), v


# --------------------------------------------------------------------------- evasion

EVASION_CONTROL = {"http_request": {"status_code": 200, "body_length": 1000, "title": "Example", "failure": None}}
PAGE = "<title>Example</title>" + "x" * 978


def _attempt(strategy: str, outcome: str, tid: Any = 1, **more: Any) -> dict[str, Any]:
    return {"strategy": strategy, "layer": "tls", "transaction_id": tid, "shaped": None, "failure": None,
            "step": None, "status_code": None, "fingerprints": [], "matches_control": None, "outcome": outcome,
            **more}


def _evasion(*attempts: dict[str, Any], **records: Any) -> dict[str, Any]:
    return {"control": EVASION_CONTROL, "x_evasion": {"address": "198.19.0.5:443", "attempts": list(attempts)},
            **records}


def _page_records(code: int, body: str = PAGE) -> dict[str, Any]:
    return {"tcp_connect": [{"transaction_id": 1, "status": {"failure": None, "success": True}}],
            "tls_handshakes": [{"transaction_id": 1, "failure": None}],
            "requests": [{"transaction_id": 1, "failure": None, "response": {"code": code, "body": body}}]}


def test_an_attempt_whose_transaction_id_is_a_bool_is_not_judged_by_transaction_one() -> None:
    """``true`` is no transaction id, though it hashes as 1: the attempt borrows no other attempt's records."""
    tk = _evasion(_attempt("plain", "ok", tid=True), **_page_records(200))
    assert [a["outcome"] for a in attempts_from_records(tk, None)] == [None]
    assert [a["outcome"] for a in attempts_from_records({**tk, **_evasion(_attempt("plain", "ok"))}, None)] == ["ok"]


def test_a_response_with_status_code_zero_is_no_answer() -> None:
    """A code of 0 is no HTTP status: the attempt got no answer (blocked), not a page different from the control's."""
    judged = attempts_from_records(_evasion(_attempt("plain", "ok"), **_page_records(0)), None)
    assert [(a["outcome"], a["status_code"]) for a in judged] == [("blocked", None)]


def test_the_attempts_read_are_bounded() -> None:
    """At most 64 attempts of a hostile x_evasion are read."""
    tk = _evasion(*(_attempt("tls-segments", "residual") for _ in range(200)))
    assert len(attempts_from_records(tk, None)) == 64


RESET = {"step": "tls", "failure": "connection_reset"}


def test_a_strategy_not_in_the_catalogue_never_counts_as_evading() -> None:
    """A hostile strategy name with outcome ok is no evasion: x_evaded holds catalogue strategies only."""
    keys = evasion_verdict(_evasion(_attempt("plain", "blocked", **RESET), _attempt("bogus", "ok")))
    assert keys["x_evaded"] == [] and keys["x_confidence"] < 0.95, keys


def test_a_different_page_is_no_sign_of_coping_when_the_plain_request_was_reset() -> None:
    """Only "blocked" shows the box caught a strategy when the plain request itself was blocked (not "different")."""
    keys = evasion_verdict(_evasion(_attempt("plain", "blocked", **RESET), _attempt("tls-segments", "different")))
    assert keys["x_mechanism"] == "tls.rst" and "x_equipment" not in keys, keys


def test_one_strategy_getting_through_decides_a_trait_two_strategies_share() -> None:
    """tls-segments got through and http-segments was caught: the box does not reassemble TCP (False wins)."""
    keys = evasion_verdict(_evasion(_attempt("plain", "blocked", **RESET), _attempt("tls-segments", "ok"),
                                    _attempt("http-segments", "blocked", **RESET)))
    assert keys["x_equipment"]["traits"] == {"reassembles_tcp": False}, keys


def test_a_failed_connect_is_the_attempts_failure_whatever_handshake_record_follows() -> None:
    """A handshake record beside a connect that failed (hostile records) does not replace the connect's failure."""
    records = {"tcp_connect": [{"transaction_id": 1, "status": {"failure": "connection_refused", "success": False}}],
               "tls_handshakes": [{"transaction_id": 1, "failure": None}]}
    judged = attempts_from_records(_evasion(_attempt("plain", "ok"), **records), None)
    assert [(a["outcome"], a["step"], a["failure"]) for a in judged] == [("blocked", "tcp", "connection_refused")]


# --------------------------------------------------------------------------- rules

RULES_CONTROL = {"dns": {"addrs": ["93.184.216.34"], "failure": None}}


def _answered(*addrs: str) -> list[dict[str, Any]]:
    return [{"transaction_id": 2, "answers": [{"answer_type": "A", "ipv4": a} for a in addrs], "failure": None}]


def test_an_answer_mixing_a_bogon_and_a_public_address_needs_checking_before_it_is_a_lie() -> None:
    """Only an answer all of whose unlike-the-control addresses are bogons is a lie without a handshake to check."""
    exact = _answered("10.10.34.35", "93.184.216.35")
    assert injected(exact, RULES_CONTROL) is None
    assert to_verify(exact, RULES_CONTROL) == "93.184.216.35"
    assert injected(_answered("10.10.34.35"), RULES_CONTROL) == {"10.10.34.35"}


def test_a_handshake_not_known_to_be_checked_does_not_make_an_address_the_sites() -> None:
    """A verify handshake without ``no_tls_verify: false`` proves nothing about the certificate: still undecided."""
    exact = _answered("93.184.216.35")
    unchecked = [{"transaction_id": 3, "server_name": "a.example", "failure": None}]
    assert injected(exact, RULES_CONTROL, unchecked) is None
    checked = [{**unchecked[0], "no_tls_verify": False}]
    assert injected(exact, RULES_CONTROL, checked) == set()


# --------------------------------------------------------------------------- remote


def test_ghost_dns_needs_every_control_lookup_to_say_the_name_does_not_exist() -> None:
    """A bogon for a name is "ghost" DNS only if every trusted lookup said NXDOMAIN, not beside a SERVFAIL."""
    d = DNS().before()
    d.test(BOGON)
    d.control(failure="dns_nxdomain_error", rcode=3).control(failure="dns_servfail_error", rcode=2).after()
    assert d.verdict().status == "failure"
    only = DNS().before()
    only.test(BOGON)
    only.control(failure="dns_nxdomain_error", rcode=3).after()
    assert only.verdict().mechanism == "dns.poison"


def _by_tid(records: list[dict[str, Any]], tid: int) -> dict[str, Any]:
    return next(r for r in records if r["transaction_id"] == tid)


def test_a_web_probe_is_a_page_unlike_the_template_only_when_every_completed_attempt_says_so() -> None:
    """One completed attempt that matched the vantage's template keeps the domain not blocked (not a 0.5 blockpage)."""
    w = Web().ok("http", "vantage_before").ok("http", "test").ok("http", "test").ok("http", "vantage_after")
    m = w.build()
    _by_tid(m["test_keys"]["requests"], 2)["x_matches_template"] = False
    _by_tid(m["test_keys"]["requests"], 3)["x_matches_template"] = True
    v = remote_web_verdict(m)
    assert (v.status, v.mechanism, v.confidence) == ("ok", "none", 0.85), v
    _by_tid(m["test_keys"]["requests"], 3)["x_matches_template"] = False
    assert remote_web_verdict(m).mechanism == "http.blockpage"


def test_a_web_record_whose_transaction_id_is_a_bool_starts_no_attempt() -> None:
    """``true`` is no transaction id (though it equals 1): a control probe filed under it shows no vantage alive."""
    w = Web().ok("http", "vantage_before").ok("http", "test")
    m = w.build()
    for key in ("tcp_connect", "requests"):
        _by_tid(m["test_keys"][key], 1)["transaction_id"] = True
    assert remote_web_verdict(m).status == "failure"


def test_an_http3_drop_beside_another_protocols_anomaly_keeps_the_domain_inaccessible() -> None:
    """The "HTTP/3 dropped but TCP came through" leniency is for a lone quic.drop: not beside an HTTP drop."""
    w = Web().ok("https", "vantage_before").ok("https", "test")
    w.quic("vantage_before").quic("test", failure="generic_timeout_error").quic("vantage_after")
    w.ok("http", "vantage_before").attempt("http", "test", failure="generic_timeout_error")
    v = remote_web_verdict(w.build())
    assert (v.mechanism, v.accessible) == ("quic.drop", False), v
    lone = Web().ok("https", "vantage_before").ok("https", "test")
    lone.quic("vantage_before").quic("test", failure="generic_timeout_error").quic("vantage_after")
    assert remote_web_verdict(lone.build()).accessible is True


def test_a_second_record_with_a_taken_transaction_id_does_not_replace_the_attempt() -> None:
    """The first connect filed under an id keeps it: a hostile duplicate cannot hide the reset of the request."""
    w = Web().ok("http", "vantage_before").attempt("http", "test", failure="connection_reset")
    m = w.build()
    m["test_keys"]["tcp_connect"].append({"ip": "85.15.1.1", "port": 80, "tags": ["http", "test"], "transaction_id": 2,
                                          "status": {"failure": "generic_timeout_error", "success": False}})
    v = remote_web_verdict(m)
    assert (v.status, v.mechanism) == ("anomaly", "http.rst"), v


def test_an_evasion_body_of_exactly_70_percent_of_the_controls_is_not_its_page() -> None:
    """Bodies match when the smaller is more than 70% of the larger (OONI's rule, web_connectivity's too): at exactly
    70% with another title, the page is not the control's (evasion said it was, and called the attempt ok)."""
    from tamperscope.model.evasion import matches_control

    control = {"http_request": {"failure": None, "status_code": 200, "body_length": 1000, "title": "Site"}}
    assert matches_control(200, b"x" * 700, control) is False
    assert matches_control(200, b"x" * 701, control) is True
    assert matches_control(200, b"<title>Site</title>" + b"x" * 100, control) is True  # by its title
