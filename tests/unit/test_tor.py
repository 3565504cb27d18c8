"""The tor nettest on loopback (real TCP, TLS and HTTP; its targets replaced, as --tor-targets does): a
directory port counts only when it serves a consensus, an OR port when a TLS handshake completes, a
private bridge leaves no address in the measurement, and the targets file is checked line by line."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from tamperscope.analysis.verdicts import verdict_for
from tamperscope.model.measurement import ProbeInfo
from tamperscope.nettests import tor
from tamperscope.nettests.base import Context, NettestError
from tamperscope.probe.engine import Engine
from tamperscope.probe.privacy import Scrubber
from tests.unit.test_netx_servers import TCPServer, TestCA, http_response, read_head
from tests.unit.test_telegram import FAST

CONSENSUS = zlib.compress(b"network-status-version 3 microdesc\nvote-status consensus\n")
BLOCKPAGE = b"<html><title>Access denied</title>This resource is blocked by order of the court</html>"


async def _directory(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _, target, _, _ = await read_head(reader)
    ok = target == tor.CONSENSUS_PATH
    writer.write(http_response(200 if ok else 404, CONSENSUS if ok else b"",
                               [("Content-Type", "application/octet-stream")]))
    await writer.drain()


async def _blockpage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(http_response(200, BLOCKPAGE, [("Content-Type", "text/html")]))
    await writer.drain()


async def _busy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(http_response(503, b"busy"))
    await writer.drain()


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1)  # the TLS layer answered the handshake; tor's link protocol would follow


def _targets(spec: dict[str, dict[str, Any]]) -> tuple[tuple[tor.Target, ...], dict[str, int]]:
    return tor.load_targets(json.dumps(spec))


def _run(tmp_path: Path, make_spec: Any) -> dict[str, Any]:
    """One measurement of the targets ``make_spec(ports)`` names, ``ports`` being the servers' below."""
    ca = TestCA(tmp_path, "a relay's self-signed certificate")

    async def main() -> dict[str, Any]:
        async with TCPServer(_directory) as directory, TCPServer(_blockpage) as blockpage, \
                TCPServer(_busy) as busy, TCPServer(_relay, ssl_context=ca.server_context("localhost")) as relay:
            closed = TCPServer(_relay)
            async with closed:
                closed_port = closed.port
            ports = {"dir": directory.port, "blockpage": blockpage.port, "busy": busy.port,
                     "relay": relay.port, "closed": closed_port}
            targets, skipped = _targets(make_spec(ports))
            ctx = Context(timeouts=FAST, options={"tor_targets": targets, "tor_skipped": skipped})
            return await Engine(tor, ctx, ProbeInfo(), Scrubber([], interfaces=False)).measure(None)

    return asyncio.run(asyncio.wait_for(main(), 30))


def _mixed(p: dict[str, int]) -> dict[str, dict[str, Any]]:
    return {
        "dirauth-or": {"address": f"127.0.0.1:{p['relay']}", "protocol": "or_port_dirauth", "name": "moria1"},
        "dirauth-dir": {"address": f"127.0.0.1:{p['dir']}", "protocol": "dir_port", "name": "moria1",
                        "source": "collector"},
        "censored-dir": {"address": f"127.0.0.1:{p['blockpage']}", "protocol": "dir_port"},
        "busy-dir": {"address": f"127.0.0.1:{p['busy']}", "protocol": "dir_port"},
        "bridge": {"address": f"127.0.0.1:{p['closed']}", "protocol": "or_port"},
        "obfs4-bridge": {"address": "127.0.0.1:1", "protocol": "obfs4", "params": {"cert": ["x"]}},
    }


def test_each_protocol_is_measured_as_ooni_says(tmp_path: Path) -> None:
    m = _run(tmp_path, _mixed)
    tk = m["test_keys"]
    targets = tk["targets"]
    assert list(targets) == ["dirauth-or", "dirauth-dir", "censored-dir", "busy-dir", "bridge"]
    assert {k: t["failure"] for k, t in targets.items()} == {
        "dirauth-or": None, "dirauth-dir": None, "censored-dir": "http_request_failed",
        "busy-dir": "http_request_failed", "bridge": "connection_refused"}
    # the OR port: a TLS handshake without SNI, not verified (a relay's certificate is self-signed)
    hs = targets["dirauth-or"]["tls_handshakes"]
    assert len(hs) == 1 and hs[0]["failure"] is None and hs[0]["server_name"] in (None, "")
    assert hs[0]["no_tls_verify"] is True
    assert targets["dirauth-or"]["summary"] == {"connect": {"failure": None}, "handshake": {"failure": None}}
    assert targets["bridge"]["summary"] == {"connect": {"failure": "connection_refused"}}
    assert targets["bridge"]["tls_handshakes"] is None
    # a directory counts only when it serves a consensus: a 200 blockpage is not one
    assert targets["dirauth-dir"]["x_consensus"] is True and targets["censored-dir"]["x_consensus"] is False
    assert [r["request"]["url"] for r in targets["dirauth-dir"]["requests"]] == \
        [f"http://{targets['dirauth-dir']['target_address']}{tor.CONSENSUS_PATH}"]
    assert targets["censored-dir"]["requests"][0]["response"]["body"].endswith("order of the court</html>")
    assert targets["busy-dir"]["requests"][0]["response"]["code"] == 503
    assert (targets["dirauth-dir"]["target_name"], targets["dirauth-dir"]["target_source"]) == ("moria1", "collector")
    assert "target_name" not in targets["bridge"] and targets["bridge"]["agent"] == "redirect"
    assert {k: v for k, v in tk.items() if k.endswith(("_total", "_accessible"))} == {
        "dir_port_total": 3, "dir_port_accessible": 1, "obfs4_total": 0, "obfs4_accessible": 0,
        "or_port_dirauth_total": 1, "or_port_dirauth_accessible": 1, "or_port_total": 1, "or_port_accessible": 0}
    assert tk["x_skipped"] == {"obfs4": 1}
    # one measurement's records: transaction ids unique across targets, times from the measurement's start
    ids = [c["transaction_id"] for t in targets.values() for c in t["tcp_connect"]]
    assert len(ids) == len(set(ids)) == 5
    assert all(0 <= c["t0"] <= c["t"] < 8 for t in targets.values() for c in t["tcp_connect"])
    # 3 of 5 failed, and every bridge: an anomaly, named by the refused bridge (a refusal says more)
    assert (tk["x_status"], tk["x_mechanism"], tk["blocking"], tk["accessible"]) == \
        ("anomaly", "tcp.rst", "tcp_ip", False)
    assert verdict_for(m).to_test_keys() == {k: tk[k] for k in verdict_for(m).to_test_keys()}


def test_all_reached_is_ok(tmp_path: Path) -> None:
    tk = _run(tmp_path, lambda p: {
        "a": {"address": f"127.0.0.1:{p['relay']}", "protocol": "or_port"},
        "b": {"address": f"localhost:{p['dir']}", "protocol": "dir_port"},
    })["test_keys"]
    assert [t["failure"] for t in tk["targets"].values()] == [None, None]
    assert [q["hostname"] for q in tk["targets"]["b"]["queries"]] == ["localhost"]  # a name is resolved first
    assert (tk["x_status"], tk["blocking"], tk["accessible"]) == ("ok", False, True)
    assert "x_skipped" not in tk


def test_a_private_bridge_leaves_no_address(tmp_path: Path) -> None:
    """Its host, what the host resolved to and what was connected to are all scrubbed, its id too."""
    m = _run(tmp_path, lambda p: {
        f"localhost:{p['relay']}": {"address": f"localhost:{p['relay']}", "protocol": "or_port", "private": True},
        "bridge-by-ip": {"address": f"127.0.0.1:{p['dir']}", "protocol": "dir_port", "source": "bridgedb"},
    })
    tk = m["test_keys"]
    text = json.dumps(tk)
    assert "127.0.0.1" not in text and "localhost" not in text and "::1" not in text, text[:2000]
    assert all(len(k) == 64 and int(k, 16) >= 0 for k in tk["targets"]), list(tk["targets"])
    entries = list(tk["targets"].values())
    assert [e["target_address"].rsplit(":", 1)[0] for e in entries] == ["[scrubbed]", "[scrubbed]"]
    assert [e["failure"] for e in entries] == [None, None]  # scrubbed, still measured
    assert entries[0]["tcp_connect"][0]["ip"] == "[scrubbed]"


def test_default_targets_are_the_directory_authorities() -> None:
    targets = tor.default_targets()
    assert len(targets) == 2 * len(tor.DIRAUTHS) == 20
    assert len({t.id for t in targets}) == 20
    assert {t.protocol for t in targets} == {"or_port_dirauth", "dir_port"}
    moria = [t for t in targets if t.name == "moria1"]
    assert sorted(t.address for t in moria) == ["128.31.0.39:9201", "128.31.0.39:9231"]
    assert not any(t.private for t in targets)


@pytest.mark.parametrize("spec, message", [
    ("[]", "expected a JSON object"),
    ("{}", "expected a JSON object"),
    ("{", "not JSON"),
    ('{"a": 1}', "target 1: expected an object"),
    ('{"a": {"address": "1.2.3.4:443", "protocol": "meek"}}', "protocol must be one of"),
    ('{"a": {"address": "1.2.3.4", "protocol": "or_port"}}', "address must be HOST:PORT"),
    ('{"a": {"address": "1.2.3.4:0", "protocol": "or_port"}}', "must be 1-65535"),
    ('{"a": {"address": "1.2.3.4:70000", "protocol": "or_port"}}', "must be 1-65535"),
    ('{"a": {"address": "2001:db8::1:443", "protocol": "or_port"}}', "address must be HOST:PORT"),
    ('{"a": {"address": "bad host:443", "protocol": "or_port"}}', "address must be HOST:PORT"),
    ('{"a": {"address": "1.2.3.4:443", "protocol": "or_port", "private": "yes"}}', "private must be"),
    ('{"a": {"address": "1.2.3.4:443", "protocol": "or_port", "name": ["x"]}}', "name must be"),
    ('{"a": {"address": "1.2.3.4:443", "protocol": "obfs4"}}', "no target this nettest can measure"),
])
def test_a_bad_targets_file_is_refused_in_one_line(spec: str, message: str) -> None:
    with pytest.raises(NettestError) as e:
        tor.load_targets(spec)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_ooni_s_own_form_loads() -> None:
    """The spec's example: an obfs4 bridge (skipped and counted), a dir_port and an or_port_dirauth, IPv6 too."""
    targets, skipped = tor.load_targets(json.dumps({
        "f372c264": {"address": "38.229.1.78:80", "fingerprint": "C8CB", "params": {"cert": ["H"], "iat-mode": ["1"]},
                     "protocol": "obfs4"},
        "66.111.2.131:9030": {"address": "66.111.2.131:9030", "protocol": "dir_port"},
        "66.111.2.131:9001": {"address": "66.111.2.131:9001", "protocol": "or_port_dirauth"},
        "v6": {"address": "[2001:db8::1]:443", "protocol": "or_port", "source": "bridgedb"},
    }))
    assert [(t.id, t.protocol) for t in targets] == [
        ("66.111.2.131:9030", "dir_port"), ("66.111.2.131:9001", "or_port_dirauth"), ("v6", "or_port")]
    assert (targets[2].host, targets[2].port, targets[2].private) == ("2001:db8::1", 443, True)
    assert skipped == {"obfs4": 1}


def test_tor_takes_no_input() -> None:
    with pytest.raises(NettestError, match="tor takes no input"):
        tor.check_input("https://example.org/")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tamperscope", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)})


@pytest.mark.parametrize("content, message", [
    (None, "cannot read"),
    (b"\xff\xfe", "is not UTF-8 text"),
    (b'{"a": {"address": "1.2.3.4:443", "protocol": "vpn"}}', "protocol must be one of"),
])
def test_the_cli_refuses_a_bad_targets_file_before_contacting_anything(
        tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "targets.json"
    if content is not None:
        path.write_bytes(content)
    r = _cli("run", "tor", "--yes", "--tor-targets", str(path), "-o", str(tmp_path / "out.jsonl"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.jsonl").exists()


def test_tor_targets_is_for_tor_only(tmp_path: Path) -> None:
    path = tmp_path / "targets.json"
    path.write_text('{"a": {"address": "1.2.3.4:443", "protocol": "or_port"}}')
    r = _cli("run", "whatsapp", "--yes", "--tor-targets", str(path), "-o", str(tmp_path / "out.jsonl"), cwd=tmp_path)
    assert (r.returncode, r.stderr.strip()) == (2, "tamperscope: --tor-targets is for the tor nettest")
