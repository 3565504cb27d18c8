"""The verdict of a ``riseupvpn`` measurement (ooni/spec ts-026), ours or OONI's.

RiseupVPN needs its provider's API (HTTPS, with the provider's own CA) and then one of its gateways, over
OpenVPN or obfs4. The anomaly rules are OONI fastpath's (``score_riseupvpn``) and its probe's
``IsAnomaly``; the mechanism is named through the model's one classifier of failure strings
(`failure_class`, by way of `torverdict.anomaly_of`). Our ``riseupvpn`` nettest writes these keys, and its
verdict is this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .services import anomaly as _anomaly
from .services import connect_failed, reset_first
from .services import failed as _failure
from .services import ok as _ok
from .services import request_failure as _request_failure
from .services import status as _status
from .services import tcp_failure as _tcp_failure
from .services import test_keys as _tk
from .torverdict import SCAN, TARGET_CONFIDENCE, anomaly_of, failure_string
from .verdict import Verdict, failure_class

TRANSPORTS = ("openvpn", "obfs4")


def _api_failure(tk: Mapping[str, Any]) -> str | None:
    """riseupvpn's ``api_failure``: a string or null, a list of strings since v0.2.0 (a reset first);
    else the failure of an API request (v0.1 left it null when fetching the CA failed)."""
    value = tk.get("api_failure")
    strings = [f for v in (value[:SCAN] if isinstance(value, list) else [value]) if (f := failure_string(v))]
    return reset_first(strings) or _request_failure(tk)


def _gateway_failure(tk: Mapping[str, Any], transports: list[str]) -> tuple[str | None, bool]:
    """The failure of a gateway of a blocked transport, and whether it was over UDP: from our ``x_gateways``
    (which hold the handshake's failure too: a censor that lets the connect through and resets OpenVPN's first
    packet leaves every ``tcp_connect`` a success), a TCP port's first; else from the ``tcp_connect`` records, as
    OONI's measurements have only those; else a UDP port's (a transport offered over UDP only)."""
    gateways = tk.get("x_gateways")
    tried = [(f, g.get("protocol") == "udp") for g in (gateways[:SCAN] if isinstance(gateways, list) else ())
             if isinstance(g, Mapping) and g.get("transport_type") in transports
             and (f := failure_string(g.get("failure")))]
    tcp = reset_first([f for f, udp in tried if not udp]) or _tcp_failure(tk)
    if tcp is not None:
        return tcp, False
    udp_failure = reset_first([f for f, udp in tried if udp])
    return udp_failure, udp_failure is not None


def _riseup(name: str) -> bool:
    """The API's names (api.black.riseup.net, black.riseup.net for the CA)."""
    name = name.rstrip(".")
    return name == "riseup.net" or name.endswith(".riseup.net")


def riseupvpn_verdict(measurement: Mapping[str, Any]) -> Verdict:
    """ts-026, every layout: anomaly when ``api_status`` is "blocked", ``ca_cert_status`` false, or
    ``transport_status`` (since 2021-02) says "blocked" for openvpn or obfs4 (OONI fastpath's
    ``score_riseupvpn`` and the probe's ``IsAnomaly``). The API (HTTPS) fails first and names the
    mechanism from ``api_failure`` ("invalid_ca": none); a blocked transport is named by its gateways'
    failures (our ``x_gateways``: the connect or the handshake after it), else by the TCP connects.
    ``failing_gateways`` alone is not blocking (the spec: an overloaded gateway is listed too); in the
    2020 layout, without ``transport_status``, it lowers the confidence of "ok". No flag: failure.
    """
    tk = _tk(measurement)
    api, ca = _status(tk.get("api_status")), tk.get("ca_cert_status")
    ca_bad = (not ca) if isinstance(ca, bool) else None
    transports = tk.get("transport_status")
    flags = {t: _status(transports.get(t)) for t in TRANSPORTS} if isinstance(transports, Mapping) else {}
    if api or ca_bad:
        evidence = [f"test_keys.{k}" for k, flag in (("api_status", api), ("ca_cert_status", ca_bad)) if flag]
        layer = "tcp" if connect_failed(tk, _riseup) else "https"  # the API's address dropped: no TLS began
        return anomaly_of(_api_failure(tk), layer, TARGET_CONFIDENCE, evidence)
    blocked = [t for t, flag in flags.items() if flag]
    if blocked:
        evidence = [f"test_keys.transport_status.{t}" for t in blocked]
        failure, udp = _gateway_failure(tk, blocked)
        if udp:  # no datagram came back: dropped, as far as one can tell (a refusal names nothing)
            mechanism = "udp.drop" if failure_class(failure) == "timeout" else "none"
            return _anomaly("tcp_ip", mechanism, TARGET_CONFIDENCE, [*evidence, "test_keys.x_gateways"])
        return anomaly_of(failure, "tcp", TARGET_CONFIDENCE, [*evidence, "test_keys.failing_gateways"])
    seen = [f"test_keys.{k}" for k, flag in (("api_status", api), ("ca_cert_status", ca_bad)) if flag is not None]
    seen += [f"test_keys.transport_status.{t}" for t, flag in flags.items() if flag is not None]
    if not seen:
        return _failure()
    gateways = tk.get("failing_gateways")
    unsure = not flags and isinstance(gateways, list) and bool(gateways)
    return _ok(seen, 0.6 if unsure else 0.8)
