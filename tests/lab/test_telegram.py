"""telegram in the lab: the access points are web-farm stand-ins (198.19.2.1-5, `TAMPERSCOPE_TELEGRAM_DCS`)
and web.telegram.org a farm host; a censor that drops the access points' addresses and resets the web
client's TLS by its SNI is seen for what it does, and agrees with the ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tamperscope.lab import addresses as A
from tamperscope.lab import manager

from .test_probe_cli import measure_once

pytestmark = pytest.mark.lab
PROFILE = str(Path(__file__).parent / "profiles" / "telegram.toml")



def test_telegram_reachable_without_a_censor(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory("none")
    tk = measure_once("telegram", tmp_path / "t.jsonl", "--summary")
    assert (tk["telegram_tcp_blocking"], tk["telegram_http_blocking"], tk["telegram_web_status"]) == \
        (False, False, "ok"), tk
    assert tk["telegram_web_failure"] is None and (tk["x_status"], tk["x_mechanism"]) == ("ok", "none")
    assert tk["x_access_points"] == list(A.TELEGRAM_DCS)
    points = {c["ip"] for c in tk["tcp_connect"] if "access_point" in c["tags"]}
    assert points == set(A.TELEGRAM_DCS)
    posts = [r for r in tk["requests"] if r["request"]["method"] == "POST"]
    assert len(posts) == 2 * len(A.TELEGRAM_DCS)
    assert any(r["failure"] is None and r["response"]["code"] == 200 for r in posts)


def test_telegram_blocked_by_address_and_by_sni(lab_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lab_factory(PROFILE)
    tk = measure_once("telegram", tmp_path / "b.jsonl", "--summary")
    assert (tk["telegram_tcp_blocking"], tk["telegram_http_blocking"], tk["telegram_web_status"]) == \
        (True, True, "blocked"), tk
    assert tk["telegram_web_failure"] == "connection_reset"
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"]) == ("anomaly", "tcp.drop", "tcp_ip")
    assert set(tk["x_evidence"]) == {"test_keys.telegram_tcp_blocking", "test_keys.telegram_http_blocking",
                                     "test_keys.telegram_web_status"}
    failures = {c["status"]["failure"] for c in tk["tcp_connect"] if "access_point" in c["tags"]}
    assert failures == {"generic_timeout_error"}
    truth = [json.loads(line) for line in manager.PATHS.log.read_text().splitlines()]
    assert {t["rule"] for t in truth} >= {"tg-ip", "tg-sni"}
    assert {t["server"].rsplit(":", 1)[0] for t in truth if t["rule"] == "tg-ip"} == set(A.TELEGRAM_DCS)
