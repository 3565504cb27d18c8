"""The tor nettest on loopback (real TCP, TLS, HTTP and obfs4 handshakes; its targets replaced, as --tor-targets
does): a directory port counts only when it serves a consensus, an OR port when a TLS handshake completes, an
obfs4 bridge when it proves its key, a private bridge leaves no address in the measurement, and the targets file
is checked target by target. The obfs4 bridges here are fakes written for these tests; the lab runs a real one
(Debian's obfs4proxy: tests/lab/test_tor.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from tamperscope.analysis.verdicts import verdict_for
from tamperscope.collector import testing
from tamperscope.model import failures as F
from tamperscope.model.measurement import ProbeInfo
from tamperscope.nettests import tor
from tamperscope.nettests.base import Context, NettestError
from tamperscope.netx import obfs4
from tamperscope.probe.engine import Engine
from tamperscope.probe.privacy import Scrubber
from tests.unit.test_netx_servers import TCPServer, TestCA, http_response, read_head
from tests.unit.test_telegram import FAST

# a consensus's opening, then a megabyte of what follows (random: it does not compress)
CONSENSUS = zlib.compress(b"network-status-version 3 microdesc\nvote-status consensus\n" + secrets.token_bytes(1 << 20))
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


NODE_ID = hashlib.sha256(b"test bridge node").digest()[:20]
BRIDGE_KEY = X25519PrivateKey.from_private_bytes(hashlib.sha256(b"test bridge key").digest())
IDENTITY = BRIDGE_KEY.public_key().public_bytes_raw()
CERT = base64.b64encode(NODE_ID + IDENTITY).decode().rstrip("=")


def _mac(data: bytes) -> bytes:
    return hmac.new(IDENTITY + NODE_ID, data, hashlib.sha256).digest()[:16]


def bridge_reply(hello: bytes) -> tuple[bytes, bytes]:
    """The bridge's side of obfs4's ntor handshake for a client's ``hello``: its representative and its AUTH."""
    client = obfs4.forward(int.from_bytes(hello[:32], "little") & ((1 << 254) - 1)).to_bytes(32, "little")
    key, public, rep = obfs4._keypair()
    xy = key.exchange(X25519PublicKey.from_public_bytes(client))
    xb = BRIDGE_KEY.exchange(X25519PublicKey.from_public_bytes(client))
    suffix = IDENTITY + IDENTITY + client + public + obfs4.PROTOID + NODE_ID
    verify = hmac.new(obfs4.T_VERIFY, xy + xb + suffix, hashlib.sha256).digest()
    return rep, hmac.new(obfs4.T_MAC, verify + suffix + b"Server", hashlib.sha256).digest()


def _bridge(impostor: bool = False) -> Any:
    """A fake obfs4 bridge: finds the client's mark, checks its MAC, answers with a representative, obfs4's ntor
    AUTH (garbage from an ``impostor``, who knows the bridge line but not the bridge's private key), padding, its
    mark and MAC, then a frame's worth of bytes, as a bridge sends its first frame at once."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = b""
        while True:
            chunk = await reader.read(8192)
            if not chunk:  # the client gave up (or sent no obfs4): not a loop without end (a helper's remark)
                return
            data += chunk
            at = data.find(_mac(data[:32]), 32 + obfs4.CLIENT_MIN_PAD)
            if at >= 0 and len(data) >= at + 32:
                break
        # the client's hour, as obfs4proxy takes it: this one or either beside it (the client may have read the
        # clock on the other side of an hour's turn: QA)
        now = int(time.time()) // 3600
        epoch = next((e for e in (str(h).encode() for h in (now, now - 1, now + 1))
                     if data[at + 16:at + 32] == _mac(data[:at + 16] + e)), None)
        assert epoch is not None, "the client's MAC matches no hour"
        rep, auth = bridge_reply(data)
        answer = rep + (secrets.token_bytes(32) if impostor else auth) + secrets.token_bytes(secrets.randbelow(200))
        answer += _mac(rep)
        answer += _mac(answer + epoch)
        writer.write(answer + secrets.token_bytes(45))
        await writer.drain()
        await reader.read(1)

    return serve


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1 << 16)  # an obfs4 bridge given a wrong cert= says nothing, and neither does a black hole
    await asyncio.sleep(30)


def _targets(spec: dict[str, dict[str, Any]]) -> tuple[tor.Target, ...]:
    return tor.load_targets(json.dumps(spec))


def _run(tmp_path: Path, make_spec: Any) -> dict[str, Any]:
    """One measurement of the targets ``make_spec(ports)`` names, ``ports`` being the servers' below."""
    ca = TestCA(tmp_path, "a relay's self-signed certificate")

    async def main() -> dict[str, Any]:
        async with TCPServer(_directory) as directory, TCPServer(_blockpage) as blockpage, \
                TCPServer(_busy) as busy, TCPServer(_relay, ssl_context=ca.server_context("localhost")) as relay, \
                TCPServer(_bridge()) as bridge, TCPServer(_bridge(impostor=True)) as impostor, \
                TCPServer(_silent) as silent:
            closed_port = testing.closed_port()  # held, never listening: no other test's server can take it
            ports = {"dir": directory.port, "blockpage": blockpage.port, "busy": busy.port,
                     "relay": relay.port, "closed": closed_port, "bridge": bridge.port,
                     "impostor": impostor.port, "silent": silent.port}
            ctx = Context(timeouts=FAST, options={"tor_targets": _targets(make_spec(ports))})
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
        "obfs4-bridge": {"address": f"127.0.0.1:{p['bridge']}", "protocol": "obfs4",
                         "params": {"cert": [CERT], "iat-mode": ["0"]}},
        "obfs4-impostor": {"address": f"127.0.0.1:{p['impostor']}", "protocol": "obfs4", "params": {"cert": [CERT]}},
        "obfs4-silent": {"address": f"127.0.0.1:{p['silent']}", "protocol": "obfs4", "params": {"cert": CERT}},
    }


@pytest.mark.wallclock  # obfs4 handshakes within FAST's 1 s: not among the low-priority tests (scripts/test.sh)
def test_each_protocol_is_measured_as_ooni_says(tmp_path: Path) -> None:
    m = _run(tmp_path, _mixed)
    tk = m["test_keys"]
    targets = tk["targets"]
    assert list(targets) == ["dirauth-or", "dirauth-dir", "censored-dir", "busy-dir", "bridge", "obfs4-bridge",
                             "obfs4-impostor", "obfs4-silent"]
    assert {k: t["failure"] for k, t in targets.items()} == {
        "dirauth-or": None, "dirauth-dir": None, "censored-dir": "http_request_failed",
        "busy-dir": "http_request_failed", "bridge": "connection_refused", "obfs4-bridge": None,
        "obfs4-impostor": F.OBFS4_HANDSHAKE_FAILED, "obfs4-silent": "generic_timeout_error"}
    # the OR port: a TLS handshake without SNI, not verified (a relay's certificate is self-signed)
    hs = targets["dirauth-or"]["tls_handshakes"]
    assert len(hs) == 1 and hs[0]["failure"] is None and hs[0]["server_name"] in (None, "")
    assert hs[0]["no_tls_verify"] is True
    assert targets["dirauth-or"]["summary"] == {"connect": {"failure": None}, "handshake": {"failure": None}}
    assert targets["bridge"]["summary"] == {"connect": {"failure": "connection_refused"}}
    assert targets["bridge"]["tls_handshakes"] is None
    # obfs4: the handshake, recorded as OONI records it (summary, and the stream's reads and writes)
    assert [targets[k]["summary"] for k in ("obfs4-bridge", "obfs4-impostor", "obfs4-silent")] == [
        {"connect": {"failure": None}, "handshake": {"failure": f}}
        for f in (None, F.OBFS4_HANDSHAKE_FAILED, "generic_timeout_error")]
    ops = [e["operation"] for e in targets["obfs4-bridge"]["network_events"]]
    assert ops[:2] == ["connect", "write"] and "read" in ops and targets["obfs4-bridge"]["tls_handshakes"] is None
    hello = next(e["num_bytes"] for e in targets["obfs4-bridge"]["network_events"] if e["operation"] == "write")
    assert obfs4.CLIENT_MIN_HANDSHAKE + obfs4.CLIENT_MIN_PAD <= hello <= obfs4.MAX_HANDSHAKE
    # a directory counts only when it serves a consensus: a 200 blockpage is not one
    assert targets["dirauth-dir"]["x_consensus"] is True and targets["censored-dir"]["x_consensus"] is False
    response = targets["dirauth-dir"]["requests"][0]["response"]  # only its opening is read and kept
    assert response["body_is_truncated"] is True and len(base64.b64decode(response["body"]["data"])) == tor.DIR_BODY
    assert [r["request"]["url"] for r in targets["dirauth-dir"]["requests"]] == \
        [f"http://{targets['dirauth-dir']['target_address']}{tor.CONSENSUS_PATH}"]
    assert targets["censored-dir"]["requests"][0]["response"]["body"].endswith("order of the court</html>")
    assert targets["busy-dir"]["requests"][0]["response"]["code"] == 503
    assert (targets["dirauth-dir"]["target_name"], targets["dirauth-dir"]["target_source"]) == ("moria1", "collector")
    assert "target_name" not in targets["bridge"] and targets["bridge"]["agent"] == "redirect"
    assert {k: v for k, v in tk.items() if k.endswith(("_total", "_accessible"))} == {
        "dir_port_total": 3, "dir_port_accessible": 1, "obfs4_total": 3, "obfs4_accessible": 1,
        "or_port_dirauth_total": 1, "or_port_dirauth_accessible": 1, "or_port_total": 1, "or_port_accessible": 0}
    # one measurement's records: transaction ids unique across targets, times from the measurement's start
    ids = [c["transaction_id"] for t in targets.values() for c in t["tcp_connect"]]
    assert len(ids) == len(set(ids)) == 8
    assert all(0 <= c["t0"] <= c["t"] < 8 for t in targets.values() for c in t["tcp_connect"])
    # 5 of 8 failed, and every OR-port bridge: an anomaly, named by the refused one (a refusal says more)
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
    ('{"a": {"address": "1.2.3.4:443", "protocol": "obfs4"}}', "target 1: an obfs4 bridge needs params.cert"),
    ('{"a": {"address": "1.2.3.4:443", "protocol": "obfs4", "params": {"cert": ["a", "b"]}}}', "needs params.cert"),
    ('{"a": {"address": "1.2.3.4:443", "protocol": "obfs4", "params": {"cert": ["!!"]}}}', "cert is not base64"),
    ('{"a": {"address": "1.2.3.4:443", "protocol": "obfs4", "params": {"cert": ["AAAA"]}}}', "must hold 52 bytes"),
    # bridge lines, refused by their line number
    ("Bridge snowflake 1.2.3.4:80 2B28 fingerprint=2B28 url=https://x/",
     "line 1: the 'snowflake' transport is not measured"),
    ("webtunnel [2001:db8::1]:443 url=https://x/", "line 1: the 'webtunnel' transport is not measured"),
    ("# nothing\n\n", "no bridge line"),
    ("obfs4 1.2.3.4:443 " + "AB" * 20, "line 1: an obfs4 bridge needs params.cert"),
    ("\nBridge obfs4", "line 2: a bridge line needs HOST:PORT"),
    ("1.2.3.4:443 nothex", "line 1: after HOST:PORT, a fingerprint"),
    ("1.2.3.4:99999", "line 1: its port must be 1-65535"),
    ("1.2.3.4:٤٤٣", "line 1: its port must be 1-65535"),  # digits, but not ASCII ones
    ('{"a": {"address": "1.2.3.4:²", "protocol": "or_port"}}', "its port must be 1-65535"),
    ('{"a": ' + "[" * 1500 + "]" * 1500 + "}", "nested too deeply"),  # was a RecursionError's traceback
])
def test_a_bad_targets_file_is_refused_in_one_line(spec: str, message: str) -> None:
    with pytest.raises(NettestError) as e:
        tor.load_targets(spec)
    assert message in str(e.value) and "\n" not in str(e.value)
    # a bridge's address is never printed: the line may be pasted anywhere
    assert "1.2.3.4" not in str(e.value) and "2001:db8" not in str(e.value)


def test_ooni_s_own_form_loads() -> None:
    """The spec's example: an obfs4 bridge, a dir_port and an or_port_dirauth, IPv6 too."""
    targets = tor.load_targets(json.dumps({
        "f372c264": {"address": "38.229.1.78:80", "fingerprint": "C8CB", "protocol": "obfs4",
                     "params": {"cert": ["Hmyfd2ev46gGY7NoVxA9ngrPF2zCZtzskRTzoWXbxNkzeVnGFPWmrTtILRyqCTjHR+s9dg"],
                                "iat-mode": ["1"]}},
        "66.111.2.131:9030": {"address": "66.111.2.131:9030", "protocol": "dir_port"},
        "66.111.2.131:9001": {"address": "66.111.2.131:9001", "protocol": "or_port_dirauth"},
        "v6": {"address": "[2001:db8::1]:443", "protocol": "or_port", "source": "bridgedb"},
    }))
    assert [(t.id, t.protocol) for t in targets] == [("f372c264", "obfs4"),
        ("66.111.2.131:9030", "dir_port"), ("66.111.2.131:9001", "or_port_dirauth"), ("v6", "or_port")]
    assert (targets[3].host, targets[3].port, targets[3].private) == ("2001:db8::1", 443, True)
    node_id, key = targets[0].cert or (b"", b"")
    assert len(node_id) == 20 and len(key) == 32 and targets[1].cert is None


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
    (b'{"a": ' + b"[" * 1500 + b"]" * 1500 + b"}", "nested too deeply"),
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


def test_elligator2_representatives_map_back_to_their_keys() -> None:
    """About half of X25519 keys have a representative; each maps back to its key, is below 2^254 (its two top
    bits free for noise), and a key without one is said to have none."""
    found = 0
    for _ in range(200):
        u = int.from_bytes(X25519PrivateKey.generate().public_key().public_bytes_raw(), "little")
        r = obfs4.representative(u)
        if r is not None:
            found += 1
            assert obfs4.forward(r) == u and r < 1 << 254
    assert 60 <= found <= 140, found
    assert obfs4.representative(0) is None and obfs4.representative(obfs4.P - obfs4.A) is None


def test_an_obfs4_hello_looks_random_and_carries_a_noisy_representative() -> None:
    """The top two bits of the representative vary between hellos (a fixed 0 would tell obfs4 apart)."""
    tops = {obfs4._keypair()[2][31] >> 6 for _ in range(64)}
    assert len(tops) >= 3, tops


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1 << 16)
    for _ in range(64):  # endless noise, never a bridge's mark: 64 KiB and more
        writer.write(secrets.token_bytes(1024))
        await writer.drain()
    await asyncio.sleep(30)


async def _hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1 << 16)
    writer.write(secrets.token_bytes(50))  # less than a handshake, then the connection closes
    await writer.drain()


@pytest.mark.wallclock  # obfs4 handshakes within FAST's 1 s: not among the low-priority tests (scripts/test.sh)
def test_a_hostile_obfs4_server_is_a_bounded_failure(tmp_path: Path) -> None:
    """Noise without end stops at obfs4's 8 KiB cap (a failure of its own, not the timeout's), and a server that
    hangs up half-way is an EOF."""

    async def main() -> dict[str, Any]:
        async with TCPServer(_garbage) as noise, TCPServer(_hangs_up) as short:
            spec = {k: {"address": f"127.0.0.1:{port}", "protocol": "obfs4", "params": {"cert": [CERT]}}
                    for k, port in (("noise", noise.port), ("short", short.port))}
            ctx = Context(timeouts=FAST, options={"tor_targets": _targets(spec)})
            return await Engine(tor, ctx, ProbeInfo(), Scrubber([], interfaces=False)).measure(None)

    tk = asyncio.run(asyncio.wait_for(main(), 30))["test_keys"]
    assert {k: t["failure"] for k, t in tk["targets"].items()} == {
        "noise": F.OBFS4_HANDSHAKE_TOO_LONG, "short": "eof_error"}
    read = sum(e["num_bytes"] or 0 for e in tk["targets"]["noise"]["network_events"] if e["operation"] == "read")
    assert obfs4.MAX_HANDSHAKE <= read < 2 * obfs4.MAX_HANDSHAKE + 1024


def test_bridge_lines_load_as_private_targets() -> None:
    """As bridges.torproject.org and Tor Browser give them: with or without "Bridge", plain or obfs4."""
    targets = tor.load_targets(f"""# my bridges
Bridge obfs4 192.0.2.7:443 {"AB" * 20} cert={CERT} iat-mode=0

192.0.2.8:9001 {"cd" * 20}
obfs4 [2001:db8::9]:8443 cert={CERT} iat-mode=1
""")
    assert [(t.id, t.address, t.protocol, t.private) for t in targets] == [
        ("bridge-2", "192.0.2.7:443", "obfs4", True), ("bridge-4", "192.0.2.8:9001", "or_port", True),
        ("bridge-5", "[2001:db8::9]:8443", "obfs4", True)]
    assert targets[0].cert == (NODE_ID, IDENTITY) and targets[1].cert is None



@pytest.mark.wallclock  # obfs4 handshakes within FAST's 1 s: not among the low-priority tests (scripts/test.sh)
def test_bridges_given_as_lines_are_measured_and_scrubbed(tmp_path: Path) -> None:
    ca = TestCA(tmp_path, "a bridge's self-signed certificate")

    async def main() -> dict[str, Any]:
        async with TCPServer(_bridge()) as bridge, TCPServer(_relay, ssl_context=ca.server_context("x")) as relay:
            text = f"Bridge obfs4 127.0.0.1:{bridge.port} {'AB' * 20} cert={CERT} iat-mode=0\n127.0.0.1:{relay.port}\n"
            ctx = Context(timeouts=FAST, options={"tor_targets": tor.load_targets(text)})
            return await Engine(tor, ctx, ProbeInfo(), Scrubber([], interfaces=False)).measure(None)

    tk = asyncio.run(asyncio.wait_for(main(), 30))["test_keys"]
    assert [(t["target_protocol"], t["failure"], t["target_source"]) for t in tk["targets"].values()] == [
        ("obfs4", None, "bridge_line"), ("or_port", None, "bridge_line")]
    assert "127.0.0.1" not in json.dumps(tk) and all(len(k) == 64 for k in tk["targets"])
