"""An app's HTTPS check that failed in the connection is a TCP block, not a TLS one (QA against the lab's truth).

web.telegram.org dropped by address read as ``tls.drop``, web.whatsapp.com reset by address as ``tls.rst``, and the
same for Signal's backend and RiseupVPN's API: the verdicts named the layer from the failure string alone, which is
``generic_timeout_error`` in a connect and in a handshake alike. The tcp_connect records say which it was.
"""

from __future__ import annotations

from typing import Any

import pytest

from tamperscope.analysis.verdicts import verdict_for

ADDR = "198.19.242.229"


def _records(host: str, connected: bool, failure: str) -> dict[str, Any]:
    """The lookup of ``host`` and one connection to its address, which went through or failed with ``failure``."""
    status = {"success": True, "failure": None} if connected else {"success": False, "failure": failure}
    return {"queries": [{"hostname": host, "query_type": "A", "engine": "system", "failure": None,
                         "answers": [{"answer_type": "A", "ipv4": ADDR, "ttl": None}]}],
            "tcp_connect": [{"ip": ADDR, "port": 443, "status": status, "t": 0.1}]}


def _telegram(connected: bool, failure: str) -> dict[str, Any]:
    return {"test_name": "telegram", "test_keys": {
        "telegram_tcp_blocking": False, "telegram_http_blocking": False, "telegram_web_status": "blocked",
        "telegram_web_failure": failure, **_records("web.telegram.org", connected, failure)}}


def _whatsapp(connected: bool, failure: str) -> dict[str, Any]:
    return {"test_name": "whatsapp", "test_keys": {
        "whatsapp_endpoints_status": "ok", "registration_server_status": "ok", "whatsapp_web_status": "blocked",
        "whatsapp_web_failure": failure, **_records("web.whatsapp.com", connected, failure)}}


def _signal(connected: bool, failure: str) -> dict[str, Any]:
    return {"test_name": "signal", "test_keys": {
        "signal_backend_status": "blocked", "signal_backend_failure": failure,
        **_records("storage.signal.org", connected, failure)}}


def _riseupvpn(connected: bool, failure: str) -> dict[str, Any]:
    return {"test_name": "riseupvpn", "test_keys": {
        "api_status": "blocked", "api_failure": failure, "ca_cert_status": True,
        "transport_status": {"openvpn": "ok", "obfs4": "ok"}, **_records("api.black.riseup.net", connected, failure)}}


BUILDERS = [_telegram, _whatsapp, _signal, _riseupvpn]


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__.strip("_"))
@pytest.mark.parametrize(("failure", "in_connect", "after_connect"), [
    ("generic_timeout_error", "tcp.drop", "tls.drop"),
    ("connection_reset", "tcp.rst", "tls.rst"),
    ("connection_refused", "tcp.rst", "tls.rst"),
])
def test_the_layer_is_the_connections_when_no_connection_went_through(build: Any, failure: str, in_connect: str,
                                                                      after_connect: str) -> None:
    v = verdict_for(build(False, failure))
    assert (v.blocking, v.mechanism) == ("tcp_ip", in_connect), v
    v = verdict_for(build(True, failure))  # connected: the handshake (or what came after) failed
    assert (v.blocking, v.mechanism) == ("http-failure", after_connect), v


def test_a_connection_to_another_name_does_not_count() -> None:
    """Telegram's data centres' connections are their own check: a failed one to another address says nothing of
    web.telegram.org's."""
    m = _telegram(True, "generic_timeout_error")
    m["test_keys"]["tcp_connect"].append({"ip": "149.154.167.51", "port": 443,
                                          "status": {"success": False, "failure": "generic_timeout_error"}})
    assert verdict_for(m).mechanism == "tls.drop"
    m["test_keys"]["tcp_connect"] = m["test_keys"]["tcp_connect"][1:]  # only the other address's: nothing known
    assert verdict_for(m).mechanism == "tls.drop"
