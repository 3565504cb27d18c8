"""The verdict of an echcheck measurement: is TLS with Encrypted Client Hello blocked?

ECH (draft-ietf-tls-esni) hides the real server name inside an encrypted
extension; the ClientHello shows only a public "outer" name. A censor that cannot read
the name may block ECH itself: Russia's TSPU has dropped hellos carrying ECH to
Cloudflare's public name since November 2024. nettests/echcheck.py sends, to one
address, a control (a plain ClientHello naming the site, a handshake completed) and a
target (the same hello with a GREASE ``encrypted_client_hello`` extension, which a
server without ECH keys ignores, read up to the server's ServerHello). The records
decide, so `analyze` re-derives the probe's verdict:

1. No target record, or the control failed: failure. Nothing can be said of ECH when
   the plain handshake fails too (web_connectivity tells whether the name is blocked).
2. The target reached the server's ServerHello: not blocked (0.85), unless the site's ECH config came over
   DoH and not over plain DNS (``x_ech_config_stripped``): ECH blocked by DNS, ``dns.drop`` (0.6 where the
   plain query failed, 0.5 where its answer held no config: a resolver may serve no HTTPS records at all),
   whoever asks their resolver in plain never gets the config to encrypt with.
3. The target failed where the control passed: its failure's mechanism, as for any TLS
   step (a reset or a close ``tls.rst``, silence ``tls.drop``; model/verdict.py's
   `step_mechanism`), with the target and the control as evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .verdict import OONI_BLOCKING, Verdict, failure_class, step_mechanism

CONTROL, TARGET, STRIPPED = "test_keys.control", "test_keys.target", "test_keys.x_ech_config_stripped"


def _record(tk: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = tk.get(key)
    return value if isinstance(value, Mapping) else None


def _failure(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def echcheck_verdict(measurement: Mapping[str, Any], matcher: Any = None) -> Verdict:
    tk = measurement.get("test_keys")
    tk = tk if isinstance(tk, Mapping) else {}
    control, target = _record(tk, "control"), _record(tk, "target")
    if control is None or target is None or "failure" not in control or "failure" not in target:
        return Verdict(None, None, "none", 0.0, "failure", tuple(k for k, r in ((CONTROL, control), (TARGET, target))
                                                               if r is not None))
    if _failure(control.get("failure")) is not None:
        return Verdict(None, None, "none", 0.0, "failure", (CONTROL,))
    failure = _failure(target.get("failure"))
    if failure is None:
        stripped = _record(tk, "x_ech_config_stripped")
        if stripped is not None:  # TLS lets ECH through; DNS keeps its config from whoever asks in plain
            dropped = failure_class(_failure(stripped.get("failure"))) in ("timeout", "dns_error")
            return Verdict("dns", False, "dns.drop", 0.6 if dropped else 0.5, "anomaly",
                           (STRIPPED, TARGET, CONTROL))
        return Verdict(False, True, "none", 0.85, "ok", (TARGET, CONTROL))
    mechanism, confidence = step_mechanism("tls", failure)
    return Verdict(OONI_BLOCKING[mechanism], False, mechanism, confidence, "anomaly", (TARGET, CONTROL))


__all__ = ["echcheck_verdict"]
