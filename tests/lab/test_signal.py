"""signal in the lab: Signal's names resolve to web-farm hosts, whose certificates the lab's CA signs (the
probe trusts it, and Signal's own CA beside it); a censor resetting TLS by Signal's names is seen for what it
does, with the first backend's failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tamperscope.lab import manager
from tamperscope.nettests.signal import BACKENDS

from .test_probe_cli import measure_once

pytestmark = pytest.mark.lab
PROFILE = str(Path(__file__).parent / "profiles" / "signal.toml")



def test_signal_reachable_without_a_censor(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("none")
    tk = measure_once("signal", tmp_path / "s.jsonl")
    assert (tk["signal_backend_status"], tk["signal_backend_failure"], tk["x_status"]) == ("ok", None, "ok"), tk
    assert tk["x_backends"] == {u: None for u in BACKENDS}
    assert {h["server_name"] for h in tk["tls_handshakes"] if h["failure"] is None} == \
        {u.split("/")[2] for u in BACKENDS}


def test_signal_blocked_by_sni(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory(PROFILE)
    tk = measure_once("signal", tmp_path / "b.jsonl")
    assert (tk["signal_backend_status"], tk["signal_backend_failure"]) == ("blocked", "connection_reset"), tk
    assert set(tk["x_backends"].values()) == {"connection_reset"}
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("anomaly", "tls.rst", "http-failure")
    truth = [json.loads(line) for line in manager.PATHS.log.read_text().splitlines()]
    assert {u.split("/")[2] for u in BACKENDS} <= {t["name"] for t in truth if t["rule"] == "sig-sni"}
