"""tor: can this network reach Tor's directory authorities and bridges (ooni/spec ts-023)?

No input. The targets are Tor's directory authorities (`DIRAUTHS`, as tor's own ``auth_dirs.inc`` lists
them: each one's OR port, ``or_port_dirauth``, and directory port, ``dir_port``), or those of
``--tor-targets FILE``: a JSON map in the form OONI's API serves them, or bridge lines as Tor Browser takes
them (`load_targets`). At once, at most
`IN_FLIGHT` at a time, each within its own timeouts:

- ``dir_port``: a GET of ``/tor/status-vote/current/consensus.z``; anything but a 200 whose body is a
  consensus (zlib data, or its text) fails with ``http_request_failed``, so a blockpage served on the
  directory port is not taken for the directory. Only its first `DIR_BODY` bytes are read and kept (a
  consensus is about a megabyte, ten of them a cost to a volunteer on a metered line, and a blockpage is
  far shorter);
- ``or_port`` (a bridge) and ``or_port_dirauth``: a TCP connect and a TLS handshake without SNI, the
  certificate not verified (a relay's is self-signed), as tor itself connects;
- ``obfs4``: a TCP connect and obfs4's handshake (`netx.obfs4`) with the bridge's ``cert`` (its
  ``params``): it counts only when the bridge proves it holds its key, so a censor that lets the connect
  through and kills what follows, or answers in the bridge's place, is not taken for the bridge.

``test_keys`` are OONI's: ``{dir_port,obfs4,or_port_dirauth,or_port}_{total,accessible}`` and
``targets``, one entry per target id: ``failure`` (null when it worked), ``summary`` (``connect`` and,
after a TLS or obfs4 handshake, ``handshake``), ``target_address``, ``target_protocol``, ``target_name`` and
``target_source`` when known, and the target's own archival ``queries``, ``tcp_connect``,
``tls_handshakes``, ``requests`` and ``network_events``. A private bridge's address (a target whose
``source`` is ``bridgedb``, or that says ``"private": true``) is replaced by ``[scrubbed]`` everywhere in
its entry and in its id, as OONI's probe does, so that publishing the measurement does not publish the
bridge. The verdict is `model.torverdict.tor_verdict`.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from ..model import failures as F
from ..model.torverdict import CONSENSUS_PATH, tor_verdict
from ..netx import DirectConnector, Limits, NetxError, TCPStream, Trace, fetch, obfs4, tls_handshake
from .base import Context, NettestError

NAME = "tor"
VERSION = "0.1.0"
NEEDS_INPUT = False
IN_FLIGHT = 24  # targets measured at once: the ten authorities' two ports and a few bridges in one wave
DIR_BODY = 16 * 1024  # bytes of a directory's answer read and kept
IDS_PER_TARGET = 1000  # transaction ids: each target's from its own range, unique in the measurement
SCRUBBED = "[scrubbed]"
PROTOCOLS = ("dir_port", "or_port", "or_port_dirauth", "obfs4")
MAX_TARGETS = 512
MAX_FIELD = 256  # characters of a target's id, name or source
# Tor's directory authorities as tor's src/app/config/auth_dirs.inc lists them (2024: moria1 on its new ports,
# tor26 on its new address): (name, IPv4 address, OR port, directory port). Serge is the bridge authority.
DIRAUTHS = (
    ("moria1", "128.31.0.39", 9201, 9231),
    ("tor26", "217.196.147.77", 443, 80),
    ("dizum", "45.66.35.11", 443, 80),
    ("Serge", "66.111.2.131", 9001, 9030),
    ("gabelmoo", "131.188.40.189", 443, 80),
    ("dannenberg", "193.23.244.244", 443, 80),
    ("maatuska", "171.25.193.9", 80, 443),
    ("longclaw", "199.58.81.140", 443, 80),
    ("bastet", "204.13.164.118", 443, 80),
    ("faravahar", "216.218.219.41", 443, 80),
)
CONTACTS = "Tor's ten directory authorities (their OR and directory ports)"
_ZLIB = re.compile(rb"\x78[\x01\x5e\x9c\xda]")  # a zlib stream's header, at any compression level
_CONSENSUS_TEXT = b"network-status-version"


class Config:
    """Options (from the run context): tor_targets (`Target`s replacing `DIRAUTHS`, from ``--tor-targets``)."""


@dataclass(frozen=True)
class Target:
    """One thing to measure: ``address`` is ``host:port`` (an IPv6 host in brackets)."""

    id: str
    address: str
    protocol: str
    name: str | None = None
    source: str | None = None
    private: bool = False
    cert: tuple[bytes, bytes] | None = None  # obfs4: the bridge's node id and public key

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])


def check_input(input: str) -> None:
    """No input: a list's lines would be measured as the same test again and again, each named wrongly."""
    raise NettestError("tor takes no input (it measures Tor's directory authorities; --tor-targets FILE "
                       "gives other targets)")


def default_targets() -> tuple[Target, ...]:
    out = []
    for name, ip, or_port, dir_port in DIRAUTHS:
        out.append(Target(f"{ip}:{or_port}", f"{ip}:{or_port}", "or_port_dirauth", name, "collector"))
        out.append(Target(f"{ip}:{dir_port}", f"{ip}:{dir_port}", "dir_port", name, "collector"))
    return tuple(out)


def _address(value: Any, where: str) -> str:
    """``host:port`` checked: an IP address or a DNS name, and a port 1-65535; IPv6 in brackets."""
    if not isinstance(value, str) or not 3 <= len(value) <= MAX_FIELD or ":" not in value:
        raise NettestError(f"{where}: address must be HOST:PORT")
    host, _, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    bare = host[1:-1] if bracketed else host
    try:
        ip = ipaddress.ip_address(bare)
        if (ip.version == 6) != bracketed:  # IPv6 in brackets, and only IPv6 ("[198.51.100.7]:443" is no address)
            raise ValueError
    except ValueError:
        if bracketed or not re.fullmatch(r"(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?)+", bare):
            raise NettestError(f"{where}: address must be HOST:PORT") from None
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise NettestError(f"{where}: its port must be 1-65535")
    return value


def _text(value: Any, where: str, key: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_FIELD or not value.isprintable():
        raise NettestError(f"{where}: {key} must be a short string")
    return value


def load_targets(text: str) -> tuple[Target, ...]:
    """Targets from JSON in OONI's form (``{"id": {"address": "1.2.3.4:443", "protocol": "or_port",
    "name": ..., "source": ..., "fingerprint": ..., "params": ...}}``; an obfs4 bridge's ``params`` hold its
    ``cert``, a list of one string), or from Tor bridge lines (`bridge_lines`). NettestError (one line, naming
    the target at fault by its place in the file, never by its address) for anything else."""
    if not text.lstrip().startswith(("{", "[")):
        return bridge_lines(text)
    try:
        data = json.loads(text)
    except ValueError as e:
        raise NettestError(f"not JSON: {e}") from None
    except RecursionError:  # json recurses into nested arrays and objects
        raise NettestError("not JSON: arrays or objects nested too deeply") from None
    if not isinstance(data, dict) or not data:
        raise NettestError("expected a JSON object of targets, {\"id\": {\"address\": ..., \"protocol\": ...}}")
    if len(data) > MAX_TARGETS:
        raise NettestError(f"at most {MAX_TARGETS} targets, not {len(data)}")
    targets: list[Target] = []
    for n, (key, spec) in enumerate(data.items(), 1):
        where = f"target {n}"
        if not key or len(key) > MAX_FIELD or not key.isprintable():
            raise NettestError(f"{where}: its id must be a short string")
        if not isinstance(spec, dict):
            raise NettestError(f"{where}: expected an object with address and protocol")
        protocol = spec.get("protocol")
        if protocol not in PROTOCOLS:
            raise NettestError(f"{where}: protocol must be one of {', '.join(PROTOCOLS)}, not {str(protocol)[:40]!r}")
        address = _address(spec.get("address"), where)
        private = spec.get("private", False)
        if not isinstance(private, bool):
            raise NettestError(f"{where}: private must be true or false")
        source = _text(spec.get("source"), where, "source")
        name = _text(spec.get("name"), where, "name")
        cert = _cert(spec.get("params"), where) if protocol == "obfs4" else None
        targets.append(Target(key, address, protocol, name, source, private or source == "bridgedb", cert))
    return tuple(targets)


def bridge_lines(text: str) -> tuple[Target, ...]:
    """Targets from bridge lines, one per line, as bridges.torproject.org and Tor Browser give them: ``[Bridge]
    [obfs4] HOST:PORT [FINGERPRINT] [cert=... iat-mode=...]`` (a plain bridge is an ``or_port`` target). Blank
    lines and ``#`` comments are skipped. Every one is private: a user's own bridges are scrubbed from the
    measurement. Other transports (snowflake, meek, webtunnel...) are refused, by line number."""
    targets: list[Target] = []
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        where = f"line {n}"
        if words[0].lower() == "bridge":
            words = words[1:]
        transport = "" if not words or _looks_like_address(words[0]) else words.pop(0)
        if transport and transport != "obfs4":
            raise NettestError(f"{where}: the {transport[:20]!r} transport is not measured (obfs4 and plain bridges "
                               "are)")
        if not words:
            raise NettestError(f"{where}: a bridge line needs HOST:PORT")
        address = _address(words[0], where)
        options = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        fingerprint = [w for w in words[1:] if "=" not in w]
        if fingerprint and not re.fullmatch(r"[0-9A-Fa-f]{40}", fingerprint[0]) or len(fingerprint) > 1:
            raise NettestError(f"{where}: after HOST:PORT, a fingerprint (40 hex digits) and key=value options")
        cert = _cert({"cert": options.get("cert")}, where) if transport else None
        protocol = "obfs4" if transport else "or_port"
        targets.append(Target(f"bridge-{n}", address, protocol, None, "bridge_line", True, cert))
        if len(targets) > MAX_TARGETS:
            raise NettestError(f"at most {MAX_TARGETS} targets")
    if not targets:
        raise NettestError("no bridge line, and not JSON either")
    return tuple(targets)


def _looks_like_address(word: str) -> bool:
    return ":" in word and (word[0].isdigit() or word[0] == "[" or "." in word.rsplit(":", 1)[0])


def _cert(params: Any, where: str) -> tuple[bytes, bytes]:
    """An obfs4 bridge's ``params.cert`` (``["..."]``, or a string) as (node id, public key)."""
    cert = params.get("cert") if isinstance(params, dict) else None
    if isinstance(cert, list) and len(cert) == 1:
        cert = cert[0]
    if not isinstance(cert, str):
        raise NettestError(f"{where}: an obfs4 bridge needs params.cert, its bridge line's cert=")
    try:
        return obfs4.parse_cert(cert)
    except ValueError as e:
        raise NettestError(f"{where}: params.cert: {e}") from None


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    given = ctx.options.get("tor_targets")
    targets: tuple[Target, ...] = tuple(given) if given else default_targets()
    record_io = bool(ctx.options.get("network_events", True))
    gate = asyncio.Semaphore(IN_FLIGHT)
    results: dict[str, dict[str, Any]] = {}
    zero = time.monotonic()  # every target's times from the measurement's start, as one trace's would be

    async def one(n: int, target: Target) -> None:
        async with gate:
            trace = Trace(record_io=record_io, first_transaction_id=1 + n * IDS_PER_TARGET)
            trace.zero = zero
            results[target.id] = await _measure(target, ctx, trace)

    async with asyncio.TaskGroup() as tg:
        for n, target in enumerate(targets):
            tg.create_task(one(n, target))
    entries: dict[str, Any] = {}
    for target in targets:  # in the targets' order, private ones scrubbed
        entry = results[target.id]
        if target.private:
            entry = _scrub(entry, _addresses_of(entry, target.host))
            key = hashlib.sha256(f"{target.protocol} {target.address}".encode()).hexdigest()
        else:
            key = target.id
        entries[key] = entry
    tk: dict[str, Any] = {}
    for protocol in ("dir_port", "obfs4", "or_port_dirauth", "or_port"):
        tk[f"{protocol}_total"] = sum(1 for e in entries.values() if e["target_protocol"] == protocol)
        tk[f"{protocol}_accessible"] = sum(1 for e in entries.values()
                                           if e["target_protocol"] == protocol and e["failure"] is None)
    tk["targets"] = entries
    return tk


async def _measure(target: Target, ctx: Context, trace: Trace) -> dict[str, Any]:
    t = ctx.timeouts
    failure: str | None = None
    summary: dict[str, dict[str, str | None]] = {}
    consensus: bool | None = None
    host = f"[{target.host}]" if ":" in target.host else target.host
    async with trace:
        if target.protocol == "dir_port":
            res = await fetch(f"http://{host}:{target.port}{CONSENSUS_PATH}", trace=trace, max_redirects=0,
                              connector=DirectConnector(connect_timeout=t.connect),  # as the OR ports' connects
                              timeout=t.dns + t.connect + t.http, tags=("dir_port",), limits=Limits(body=DIR_BODY))
            failure = res.failure
            final = res.final
            # a redirect is not followed (max_redirects=0): it is an answer, and no consensus (a helper's remark: it
            # was said "stopped after too many redirects", x_consensus missing)
            if final is not None and failure in (None, F.HTTP_TOO_MANY_REDIRECTS):
                consensus = final.status == 200 and _is_consensus(final.body)
                failure = None if consensus else F.HTTP_REQUEST_FAILED
        else:
            connector = DirectConnector(connect_timeout=t.connect)
            try:
                stream = await connector(f"http://{host}:{target.port}/", trace=trace, timeout=t.dns + t.connect,
                                         tags=(target.protocol,))
            except NetxError as e:
                failure = e.failure
            else:
                tcp = cast(TCPStream, stream)  # an http URL: the connector's stream is TCP, before any TLS
                if target.cert is not None:
                    try:
                        await obfs4.handshake(tcp, *target.cert, timeout=t.tls)
                    except NetxError as e:
                        failure = e.failure
                    summary["handshake"] = {"failure": failure}
                    await tcp.aclose()
                else:
                    try:
                        tls = await tls_handshake(tcp, server_name=None, trace=trace, alpn=(), verify=False,
                                                  timeout=t.tls, tags=(target.protocol,))
                    except NetxError as e:
                        failure = e.failure
                    else:
                        await tls.aclose()
    records = trace.test_keys()
    connects = records["tcp_connect"]
    if connects:
        summary["connect"] = {"failure": connects[-1]["status"]["failure"]}
    if target.protocol in ("or_port", "or_port_dirauth") and records["tls_handshakes"]:
        summary["handshake"] = {"failure": records["tls_handshakes"][0]["failure"]}
    entry: dict[str, Any] = {
        "agent": "redirect",
        "failure": failure,
        "network_events": records["network_events"] or None,
        "queries": records["queries"] or None,
        "requests": records["requests"] or None,
        "summary": summary,
        "target_address": target.address,
        "target_protocol": target.protocol,
        "tcp_connect": connects or None,
        "tls_handshakes": records["tls_handshakes"] or None,
    }
    if target.name:
        entry["target_name"] = target.name
    if target.source:
        entry["target_source"] = target.source
    if consensus is not None:
        entry["x_consensus"] = consensus
    return entry


def _is_consensus(body: bytes) -> bool:
    """A directory's answer: the consensus zlib-compressed (``.z``), or its text when a proxy inflated it."""
    return bool(_ZLIB.match(body)) or body.lstrip().startswith(_CONSENSUS_TEXT)


def _addresses_of(entry: Mapping[str, Any], host: str) -> list[str]:
    """What names a private bridge in its entry: its host, the addresses that host resolved to, and those
    connected to; longest first, so that no shorter one leaves a piece of a longer one."""
    found = {host}
    for query in entry.get("queries") or ():
        for answer in query.get("answers") or ():
            found.update(a for a in (answer.get("ipv4"), answer.get("ipv6"), answer.get("hostname")) if a)
    found.update(c["ip"] for c in entry.get("tcp_connect") or () if c.get("ip"))
    return sorted(found, key=lambda a: (-len(a), a))


def _scrub(value: Any, secrets: list[str]) -> Any:
    """``value`` with every occurrence of each of ``secrets`` in its strings (keys too) replaced by `SCRUBBED`."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, SCRUBBED)
        return value
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    return value


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    measurement["test_keys"].update(tor_verdict(measurement).to_test_keys())
