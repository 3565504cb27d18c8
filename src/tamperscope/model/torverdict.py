"""The verdict of a ``tor`` measurement (ooni/spec ts-023), ours or OONI's, and the pieces every
circumvention verdict shares (`analysis.circumvention`).

Tor's directory authorities and bridges are each a ``targets`` entry whose ``failure`` says whether it
worked. The anomaly rules are OONI fastpath's (``score_tor``) plus the probe's own over whole protocols;
differences are said in `tor_verdict`'s docstring. A tool also fails when its servers are down or the
network is slow, so a failure string saying reset or refused is stronger evidence than a timeout. The
mechanism is named through the model's one classifier of failure strings (`failure_class`, by way of
`services.how`). Our ``tor`` nettest writes these keys, and its verdict is this one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .services import anomaly as _anomaly
from .services import failed as _failure
from .services import how as _how
from .services import ok as _ok
from .services import ooni_blocking as _ooni_blocking
from .services import test_keys as _tk
from .verdict import Verdict, failure_class

TARGET_CONFIDENCE = 0.7     # a named server failed with a failure string (a timeout, a TLS error)
RESET_CONFIDENCE = 0.8      # a failure string says reset or refused
# Where a directory port serves the consensus (ts-023): what the tor nettest GETs and the lab's stand-ins serve
CONSENSUS_PATH = "/tor/status-vote/current/consensus.z"
SCAN = 64                  # records read per list: these are small in real data, not in hostile data

# The layer a failure string's class points to when the caller only knows "the connection failed".
_LAYER_OF_CLASS = {"tls_error": "https", "tls_cert": "https", "http_error": "http"}


def mechanism(failure: Any, layer: str) -> str:
    """`_how` for a failure at ``layer``, except that a string no classifier knows names no mechanism."""
    kind = failure_class(failure if isinstance(failure, str) else None)
    if kind in ("ok", "unknown"):
        return "none"
    return _how(failure, _LAYER_OF_CLASS.get(kind, layer) if layer == "tcp" else layer)


def confidence(failure: Any, otherwise: float) -> float:
    kind = failure_class(failure if isinstance(failure, str) else None)
    return RESET_CONFIDENCE if kind in ("reset", "refused") else otherwise


def anomaly_of(failure: Any, layer: str, otherwise: float, evidence: Sequence[str]) -> Verdict:
    """The anomaly a failure string names (mechanism, OONI's blocking word, confidence)."""
    named = mechanism(failure, layer)
    return _anomaly(_ooni_blocking(named), named, confidence(failure, otherwise), evidence)


def failure_string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def count(value: Any) -> int | None:
    """A counter from test_keys: a non-negative int (not a bool, a string or a float)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None




_TOR_PROTOCOLS = ("dir_port", "obfs4", "or_port_dirauth", "or_port")
# What a tor target does after its TCP connect (ts-023 "Test description"): GET the consensus over
# HTTP, a TLS handshake, an obfs4 handshake (a TCP stream to a censor: no TLS to see).
_TOR_LAYERS = {"dir_port": "http", "or_port": "https", "or_port_dirauth": "https", "obfs4": "tcp"}


def _tor_layer(target: Mapping[str, Any]) -> str:
    """The layer a tor target failed at: "tcp" if its connect failed, else its protocol's next step."""
    connects = target.get("tcp_connect")
    for c in connects[:SCAN] if isinstance(connects, list) else ():
        if isinstance(c, Mapping) and isinstance(c.get("status"), Mapping) and c["status"].get("failure"):
            return "tcp"
    summary = target.get("summary")  # since 2020-01-30: {"connect": {"failure": ...}, "handshake": ...}
    connect = summary.get("connect") if isinstance(summary, Mapping) else None
    if isinstance(connect, Mapping) and connect.get("failure"):
        return "tcp"
    protocol = target.get("target_protocol")
    return _TOR_LAYERS.get(protocol, "tcp") if isinstance(protocol, str) else "tcp"


TorFailure = tuple[str, Mapping[str, Any], str]  # (target id, target, failure string)


def _tor_targets(targets: Mapping[Any, Any]) -> tuple[list[TorFailure], int, dict[str, list[int]]]:
    """(failed targets, how many succeeded, [total, accessible] by protocol) of the targets that ran.

    ``failure`` is null on success and a string on error; OONI's fastpath reads ``false`` as "did
    not run", and so do we for anything else (a missing key, an empty string, a number).
    """
    failed: list[TorFailure] = []
    succeeded = 0
    classes: dict[str, list[int]] = {}
    for key, target in targets.items():
        if not isinstance(target, Mapping) or "failure" not in target:
            continue
        failure = target["failure"]
        if failure is not None and not failure_string(failure):
            continue
        if failure is None:
            succeeded += 1
        else:
            failed.append((str(key)[:100], target, failure))
        protocol = target.get("target_protocol")
        if protocol in _TOR_PROTOCOLS:
            counts = classes.setdefault(protocol, [0, 0])
            counts[0] += 1
            counts[1] += failure is None
    return failed, succeeded, classes


def _tor_counters(tk: Mapping[str, Any]) -> list[str]:
    """Protocols none of whose targets was accessible, by the summary counters (since 2020-01-27)."""
    out = []
    for protocol in _TOR_PROTOCOLS:
        total, accessible = count(tk.get(f"{protocol}_total")), count(tk.get(f"{protocol}_accessible"))
        if total and accessible == 0:
            out.append(protocol)
    return out


def tor_verdict(measurement: Mapping[str, Any]) -> Verdict:
    """ts-023: directory authorities and bridges, one ``targets`` entry each ("Possible conclusions":
    each target worked or not by its ``failure``).

    Anomaly when more than half of the targets that ran failed (OONI fastpath's ``score_tor``), or
    when every target of one protocol failed, e.g. all directory authorities (the probe's own
    ``IsAnomaly`` over the ``*_total``/``*_accessible`` counters, which fastpath does not apply: there
    we say anomaly where OONI's flag says ok). The classes are counted from the targets themselves;
    the counters are read only when no target names its protocol. The failing target that names the
    mechanism is one of a wholly failed protocol if any, a reset or refusal first; its layer is its
    TCP connect if that failed, else its protocol's next step (HTTP, TLS, obfs4 over TCP). ``targets``
    not a map (a list in early experiments) or no target that ran: failure, as in fastpath (which also
    fails a measurement whose targets lack ``network_events``: we do not need them).
    """
    tk = _tk(measurement)
    targets = tk.get("targets")
    if not isinstance(targets, Mapping):
        return _failure()
    failed, succeeded, classes = _tor_targets(targets)
    if not failed:
        return _ok(["test_keys.targets"]) if succeeded else _failure(["test_keys.targets"])
    whole = [p for p, (total, accessible) in classes.items() if total and not accessible]
    counters = [] if classes else _tor_counters(tk)
    if 2 * len(failed) <= len(failed) + succeeded and not whole and not counters:
        return _ok(["test_keys.targets"])
    pool = [f for f in failed if f[1].get("target_protocol") in whole] or failed
    key, target, failure = next((f for f in pool if failure_class(f[2]) in ("reset", "refused")), pool[0])
    # the other targets that failed the same way, at the same layer: those that failed otherwise (a directory port
    # answered with a blockpage beside OR ports dropped) are no evidence of this mechanism (QA: cited for tcp.drop)
    how = (failure_class(failure), _tor_layer(target))
    others = [k for k, t, f in failed if k != key and (failure_class(f), _tor_layer(t)) == how][:3]
    evidence = ["test_keys.targets", *(f"test_keys.targets[{k!r}]" for k in (key, *others)),
                *(f"test_keys.{p}_accessible" for p in counters)]
    return anomaly_of(failure, _tor_layer(target), TARGET_CONFIDENCE, evidence)


# --------------------------------------------------------------------------- a tor bootstrap (vanilla_tor, ts-016)

BOOTSTRAP_CONFIDENCE = 0.6  # a tool did not come up, and nothing says why

# Where tor's bootstrap stopped (the same percentages in tor 0.2 and 0.4): connecting to a relay
# (tcp.drop), in the TLS handshake with it (tls.drop), and the same two steps towards the first hop
# of a circuit at 80-89%. Elsewhere (0%: tor never tried; 20-79%: directory downloads) nothing says how.
_TOR_STUCK = ((1, 10, "tcp.drop"), (10, 20, "tls.drop"), (80, 85, "tcp.drop"), (85, 90, "tls.drop"))


def progress_mechanism(progress: Any) -> str | None:
    """The mechanism a bootstrap that stopped at ``progress`` percent points to ("none": nothing says how;
    None: no percentage)."""
    if isinstance(progress, bool) or not isinstance(progress, (int, float)) or not 0 <= progress <= 100:
        return None
    return next((m for low, high, m in _TOR_STUCK if low <= progress < high), "none")


def _log_lines(tk: Mapping[str, Any]) -> list[Any]:
    """The log's last lines (``tor_log``, a string, legacy, as one; ``tor_logs``, a list, since 2022)."""
    log, logs = tk.get("tor_log"), tk.get("tor_logs")
    return [log] if isinstance(log, str) else logs[-SCAN:] if isinstance(logs, list) else []


def _log_done(tk: Mapping[str, Any]) -> bool:
    """The log reached 100%."""
    return any(isinstance(line, str) and "Bootstrapped 100%" in line for line in _log_lines(tk))


# tor's warning while a bootstrap is stuck (control_bootstrap.c), its reason the connection's end (an OR
# connection's reason code): "Problem bootstrapping. Stuck at 5% (conn): Connecting to a relay. (Connection
# refused; CONNECTREFUSED; count 3; recommendation warn; host … at …)". Bounded: hostile logs are long.
_PROBLEM = re.compile(r"Problem bootstrapping\. Stuck at (\d{1,3})% \([a-z_]{0,40}\): [^()\n]{0,300}"
                      r"\(([^;()\n]{0,100}); ([A-Z_]{1,32}); count ")
PROBLEM_TAIL = 64 * 1024  # of a legacy log (one string): the end, where a stuck bootstrap's warnings are
# The reason codes that say how the connection ended, as a failure string; the others (DONE, IDENTITY,
# IOERROR, RESOURCELIMIT, MISC, PT_MISSING, and TIMEOUT, which is what a stuck bootstrap says anyway) add nothing.
_REASON_FAILURE = {"CONNECTREFUSED": "connection_refused", "CONNECTRESET": "connection_reset",
                   "NOROUTE": "host_unreachable"}


def problem_failure(tk: Mapping[str, Any], progress: Any) -> str | None:
    """The failure string tor's last warning at the bootstrap's final percentage gives (a relay refused or
    reset the connection), or None."""
    found = None
    for line in _log_lines(tk):
        if isinstance(line, str) and "Problem bootstrapping" in line:
            for match in _PROBLEM.finditer(line[-PROBLEM_TAIL:]):
                if int(match.group(1)) == progress:
                    found = _REASON_FAILURE.get(match.group(3))
    return found


def bootstrap_verdict(tk: Mapping[str, Any], confidence: float) -> Verdict:
    """One tor bootstrap: ``success`` (true: 100%; false: it timed out or failed; null: tor exited)."""
    success = tk.get("success")
    if success is True:
        return _ok(["test_keys.success"])
    if success is not False:
        return _ok(["test_keys.tor_logs" if "tor_logs" in tk else "test_keys.tor_log"]) \
            if _log_done(tk) else _failure()
    key = next((k for k in ("failure", "error") if failure_string(tk.get(k))), None)
    failure = tk.get(key) if key else None
    stuck = progress_mechanism(tk.get("tor_progress"))
    if failure_class(failure) not in ("ok", "unknown", "timeout") or stuck is None:
        # a reset, a TLS or a DNS error says more than where the bootstrap stopped
        return anomaly_of(failure, "tcp", confidence,
                          ["test_keys.success", *([f"test_keys.{key}"] if key else [])])
    problem = problem_failure(tk, tk.get("tor_progress")) if stuck != "none" else None
    if problem is not None:
        # tor said why it was stuck connecting or handshaking: a relay refused or reset it (a timeout only
        # says where the bootstrap stopped)
        return anomaly_of(problem, "tls" if stuck.startswith("tls.") else "tcp", confidence,
                          ["test_keys.success", "test_keys.tor_progress",
                           "test_keys.tor_logs" if "tor_logs" in tk else "test_keys.tor_log"])
    return _anomaly(_ooni_blocking(stuck), stuck, confidence, ["test_keys.success", "test_keys.tor_progress"])


def vanilla_tor_verdict(measurement: Mapping[str, Any]) -> Verdict:
    """ts-016 (both the legacy and the 2022 Go layouts; ours is the Go one): ``success`` false is an anomaly,
    true ok.

    The mechanism comes from ``failure``/``error`` when it names one (a reset: tcp.rst, 0.8), else from
    ``tor_progress``, where the bootstrap stopped. ``success`` null or missing: ok if the log reached
    100%, else failure. OONI fastpath (``score_vanilla_tor``) reads only the legacy ``tor_log``: it
    calls every 2022 measurement ok (we read ``success``), and a legacy null ``success`` whose log
    stops short an anomaly (the spec says tor exited before the test completed: we say failure).
    """
    return bootstrap_verdict(_tk(measurement), BOOTSTRAP_CONFIDENCE)
