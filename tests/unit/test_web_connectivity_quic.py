"""web_connectivity's HTTP/3 step, the parts that read what others said: which port a site advertises (our
answer's Alt-Svc, else the control's discovered_h3_endpoint) and which addresses get a QUIC handshake."""

from __future__ import annotations

from typing import Any

import pytest

from tamperscope.nettests.web_connectivity import _advertised_h3, _quic_targets
from tamperscope.netx import Trace

HOST = "site.example"


def trace_with(alt_svc: object = None, *, failure: str | None = None, tls: list[tuple[str, str | None]] = ()) -> Trace:
    t = Trace()
    headers: dict[str, Any] = {"Content-Type": "text/html"}
    if alt_svc is not None:
        headers["alt-svc"] = alt_svc
    t.requests.append({"tags": ["depth=0"], "failure": failure, "response": {"headers": headers}})
    for address, fail in tls:
        t.tls_handshakes.append({"address": address, "failure": fail, "tags": ["depth=0"]})
    return t


def keys(control: object = None, endpoints: object = ("198.18.0.7:443",)) -> dict[str, Any]:
    return {"control": control, "x_control_request": {"tcp_connect": endpoints}}


def test_our_answer_names_the_port_first() -> None:
    ctl = {"http_request": {"discovered_h3_endpoint": f"{HOST}:8443"}}
    assert _advertised_h3(HOST, trace_with('h3=":443"; ma=60'), keys(ctl)) == 443
    assert _advertised_h3(HOST, trace_with(None), keys(ctl)) == 8443
    assert _advertised_h3(HOST, trace_with('h3=":443"', failure="eof_error"), keys(ctl)) == 8443


@pytest.mark.parametrize("control", [
    None, "x", [], {"http_request": "x"}, {"http_request": {"discovered_h3_endpoint": 443}},
    {"http_request": {"discovered_h3_endpoint": "other.example:443"}},  # another site's
    {"http_request": {"discovered_h3_endpoint": f"{HOST}:"}},
    {"http_request": {"discovered_h3_endpoint": f"{HOST}:70000"}},
    {"http_request": {"discovered_h3_endpoint": f"{HOST}:４４３"}},
    {"http_request": {"discovered_h3_endpoint": ""}},
])
def test_a_control_that_says_nothing_usable_means_no_http3(control: object) -> None:
    assert _advertised_h3(HOST, trace_with(None), keys(control)) is None


def test_targets_are_our_addresses_that_served_tls_or_the_controls_quic() -> None:
    t = trace_with(tls=[("198.18.0.7:443", None), ("198.18.0.8:443", "connection_reset")])
    ctl = {"quic_handshake": {"198.18.0.8:443": {"status": True}, "198.18.0.9:443": {"status": True},
                              "198.18.0.10:443": {"status": False}}}
    eps = ["198.18.0.7:443", "198.18.0.8:443", "198.18.0.10:443"]
    # .9 succeeded for the control but our DNS never gave it: the helper's word alone sends nothing there
    assert _quic_targets(t, keys(ctl, eps)) == ["198.18.0.7", "198.18.0.8"]


@pytest.mark.parametrize("control", [None, 7, {"quic_handshake": "x"}, {"quic_handshake": {5: {"status": True}}},
                                     {"quic_handshake": {"198.18.0.8:443": "yes"}},
                                     {"quic_handshake": {"198.18.0.8:443": {"status": "true"}}}])
def test_hostile_control_quic_data_adds_no_target(control: object) -> None:
    t = trace_with(tls=[("198.18.0.7:443", None)])
    assert _quic_targets(t, keys(control, ["198.18.0.7:443", "198.18.0.8:443", 9])) == ["198.18.0.7"]
