"""TLS interception: the certificate we were shown against the one the control saw.

An interception box terminates TLS with a certificate from its own CA. The
probe records the chain even when verification fails (netx), and our control
helper reports the issuer and SubjectPublicKeyInfo hash it saw for the same
endpoint. A different key for the same name and address, with the probe's
verification failing and the control's succeeding, is interception; the
issuer of the certificate we were shown names the interceptor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BAD_CERT = {"ssl_unknown_authority", "ssl_invalid_hostname", "ssl_invalid_certificate"}


def _succeeded(ctrl: Any) -> bool:
    """Whether the control's handshake record says it succeeded: ``status`` exactly true and no failure.

    The helper is a peer like any other: a status of "false", 1 or a list is not a success.
    """
    return isinstance(ctrl, Mapping) and ctrl.get("status") is True and ctrl.get("failure") is None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def interception(measurement: Mapping[str, Any]) -> dict[str, Any] | None:
    """{intercepted, issuer, spki_sha256, control_issuer, control_spki_sha256, address, server_name} or None."""
    tk = measurement.get("test_keys") or {}
    control = tk.get("control") or {}
    ctrl_tls = control.get("tls_handshake") or {} if isinstance(control, Mapping) else {}
    handshakes = tk.get("tls_handshakes")
    for i, h in enumerate(handshakes if isinstance(handshakes, list) else ()):
        if not isinstance(h, Mapping) or not isinstance(h.get("failure"), str) or h["failure"] not in BAD_CERT:
            continue
        addr = str(h.get("address") or "")
        ctrl = ctrl_tls.get(addr) if isinstance(ctrl_tls, Mapping) else None
        if not isinstance(ctrl, Mapping):
            ctrl = next((c for c in ctrl_tls.values() if _succeeded(c)), None) \
                if isinstance(ctrl_tls, Mapping) else None
        ours = h.get("x_spki_sha256")
        theirs = _text(ctrl.get("x_spki_sha256")) if ctrl else None
        control_ok = _succeeded(ctrl)
        return {
            "intercepted": bool(control_ok and ours and (theirs is None or ours != theirs)),
            "issuer": h.get("x_issuer"), "spki_sha256": ours,
            "control_issuer": ctrl.get("x_issuer") if ctrl else None, "control_spki_sha256": theirs,
            "control_ok": control_ok, "address": addr, "server_name": h.get("server_name"),
            "failure": h.get("failure"),
            "evidence": [f"test_keys.tls_handshakes[{i}]", f"test_keys.control.tls_handshake.{addr}"],
        }
    return None


def _attributes(dn: str) -> list[tuple[str, str]]:
    """(type, value) of each attribute of an RFC 4514 string, in its order, escapes undone: a comma, a plus or a
    quote after a backslash is the value's (``O=Fortinet\\, Inc.``), as is a pair of hex digits (``\\2C``, one
    byte of the value's UTF-8)."""
    parts: list[bytes] = []
    part = bytearray()
    i = 0
    while i < len(dn):
        c = dn[i]
        if c == "\\" and i + 1 < len(dn):
            pair = dn[i + 1:i + 3]
            if len(pair) == 2 and all(h in "0123456789abcdefABCDEF" for h in pair):
                part.append(int(pair, 16))
                i += 3
            else:
                part += dn[i + 1].encode("utf-8", "surrogatepass")
                i += 2
            continue
        if c in ",+":
            parts.append(bytes(part))
            part = bytearray()
        else:
            part += c.encode("utf-8", "surrogatepass")
        i += 1
    parts.append(bytes(part))
    out: list[tuple[str, str]] = []
    for raw in parts:
        kind, eq, value = raw.decode("utf-8", "replace").partition("=")
        if eq:
            out.append((kind.strip().upper(), value.strip()))
    return out


def issuer_name(issuer: str | None) -> str | None:
    """The O= (else CN=) of an RFC 4514 issuer string, the first one (the most specific: RFC 4514 writes the
    name's last RDN first): how the interceptor calls itself. Escaped commas are the value's: ``O=Fortinet\\,
    Inc.`` is "Fortinet, Inc." (it was "Fortinet\\")."""
    if not issuer:
        return None
    attributes = _attributes(issuer)
    return next((v for k, v in attributes if k == "O" and v), None) \
        or next((v for k, v in attributes if k == "CN" and v), None) or issuer
