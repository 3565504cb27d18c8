"""whatsapp in the lab: WhatsApp's names resolve to web-farm hosts, which accept connections on its chat
port (5222) at every address; a censor that answers NXDOMAIN for whatsapp.net and resets the web client by
its SNI is seen for what it does, with the DNS mechanism named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tamperscope.lab import manager
from tamperscope.nettests.whatsapp import ENDPOINTS

from .test_probe_cli import measure_once

pytestmark = pytest.mark.lab
PROFILE = str(Path(__file__).parent / "profiles" / "whatsapp.toml")



def test_whatsapp_reachable_without_a_censor(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("none")
    tk = measure_once("whatsapp", tmp_path / "w.jsonl")
    assert (tk["whatsapp_endpoints_status"], tk["registration_server_status"], tk["whatsapp_web_status"]) == \
        ("ok", "ok", "ok"), tk
    assert tk["whatsapp_endpoints_blocked"] == [] and (tk["x_status"], tk["x_mechanism"]) == ("ok", "none")
    connects = [c for c in tk["tcp_connect"] if "endpoint" in c["tags"]]
    assert len(connects) == len(ENDPOINTS) and all(c["status"]["success"] and c["port"] == 5222 for c in connects)


def test_whatsapp_blocked_by_name(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory(PROFILE)
    tk = measure_once("whatsapp", tmp_path / "b.jsonl")
    assert (tk["whatsapp_endpoints_status"], tk["registration_server_status"], tk["whatsapp_web_status"]) == \
        ("blocked", "blocked", "blocked"), tk
    assert len(tk["whatsapp_endpoints_blocked"]) == len(ENDPOINTS)
    assert (tk["registration_server_failure"], tk["whatsapp_web_failure"]) == ("dns_nxdomain_error", "connection_reset")
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("anomaly", "dns.nxdomain", "dns")
    truth = [json.loads(line) for line in manager.PATHS.log.read_text().splitlines()]
    assert {"e1.whatsapp.net", "v.whatsapp.net"} <= {t["name"] for t in truth if t["rule"] == "wa-dns"}
    assert any(t["rule"] == "wa-sni" and t["name"] == "web.whatsapp.com" for t in truth)
