"""vanilla_tor: does tor bootstrap on this network (ooni/spec ts-016)?

No input. The nettest runs the tor program (Debian's ``tor``; `make setup` installs it) as a client with a new,
empty data directory and no bridges, and reads its bootstrap log until ``Bootstrapped 100%`` or the measurement's
timeout (``--timeout``, 60 s by default; OONI's default is 200 s). Without ``--tor-network FILE`` tor uses Tor's
own directory authorities and fallback directories; with it, the file's lines (`load_network`: only
``DirAuthority``, ``FallbackDir`` and ``TestingTorNetwork``) point it at another network, as the lab's
(``$TAMPERSCOPE_TOR_NETWORK``). With ``--tor-bridges FILE`` (`load_bridges`: obfs4 bridge lines, as Tor Browser
takes them, or plain ones) tor bootstraps through those bridges instead, obfs4 ones through Debian's obfs4proxy:
whether a bridge gets past what blocks Tor. Tor's log is kept with ``SafeLogging`` on, every bridge's address,
fingerprint and cert are replaced by ``[scrubbed]`` in it (a bridge published is a bridge blocked), and the run's
scrubber takes this probe's addresses out of it like everything else. The data directory is removed afterwards.

Where the bootstrap stopped says how Tor is blocked (`model.torverdict.progress_mechanism`): at 5% (connecting
to a relay), its addresses are dropped; at 10-15% (the TLS handshake), its handshake is; at 80-89% the same for
the first hop of a circuit. A censor that blocks the directory authorities by address, as Turkmenistan's does,
leaves tor at 5%.

``test_keys`` are OONI's (probe-cli's vanilla_tor 0.2.0): ``bootstrap_time`` (seconds to 100%, 0 when it did not
get there), ``error`` (null, ``timeout-reached`` or ``unknown-error``), ``failure`` (null, or the failure
string: ``generic_timeout_error`` for the timeout), ``success`` (true at 100%, false when the timeout came
first, null when tor exited by itself), ``timeout`` (seconds), ``tor_logs`` (tor's log lines at notice level,
and its info-level bootstrap problems, one per failed connection with tor's reason: tor warns only from the tenth;
the last `MAX_LOG_LINES`, timed in UTC whatever the user's time zone, with the temporary directory's path as ``[tmp]`` and
without tor's warning that it runs as root), ``tor_progress``, ``tor_progress_tag`` and ``tor_progress_summary`` (the last bootstrap line's
percentage, tag and words), ``tor_version`` and ``transport_name`` ("vanilla", or "obfs4" through obfs4
bridges); and ours: ``x_tor_network`` ("tor" for Tor's own, "custom" for ``--tor-network``) with ``x_dirauths``,
the number of its authorities, and ``x_bridges``, the number of bridges (never which).
The verdict is `model.torverdict.vanilla_tor_verdict`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import shutil
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import failures as F
from ..model.torverdict import vanilla_tor_verdict
from .base import Context, NettestError

NAME = "vanilla_tor"
VERSION = "0.2.0"
NEEDS_INPUT = False
MAX_LOG_LINES = 256  # of tor's log kept: a bootstrap that works says about 30, one that fails a few hundred
MAX_LINE = 1024  # characters of a log line kept
MAX_NETWORK_LINES = 64
MAX_NETWORK_LINE = 512
NETWORK_KEYS = ("DirAuthority", "FallbackDir", "TestingTorNetwork")
STOP_GRACE = 5.0  # seconds tor has to exit after SIGTERM before it is killed
_BOOTSTRAP = re.compile(r"Bootstrapped (\d{1,3})%(?: \(([A-Za-z0-9_]{1,64})\))?: (.*)$")
_VERSION = re.compile(r"Tor version ([0-9][0-9A-Za-z.\-]{0,40}?)\.?$", re.MULTILINE)


class Config:
    """``--tor-network FILE`` (``options["tor_network"]``, the lines `load_network` kept), ``--tor-bridges FILE``
    (``options["tor_bridges"]``, `Bridge`s), and ``--timeout``."""


MAX_BRIDGES = 16
MAX_BRIDGE_LINE = 1024
_PARAM = re.compile(r"[A-Za-z0-9_-]{1,32}=[!-~]{1,512}")
_FINGERPRINT = re.compile(r"\$?([0-9A-Fa-f]{40})")


@dataclass(frozen=True)
class Bridge:
    """One bridge line: obfs4 (through obfs4proxy) or plain; its address, fingerprint and cert are secrets, scrubbed
    from the measurement."""

    transport: str | None  # "obfs4", or None for a plain bridge
    address: str  # IP:PORT, [IPv6]:PORT
    fingerprint: str | None
    params: tuple[str, ...]  # key=value: obfs4's cert and iat-mode

    @property
    def line(self) -> str:
        return " ".join(x for x in ("Bridge", self.transport, self.address, self.fingerprint, *self.params) if x)

    def secrets(self) -> list[str]:
        host = self.address.rsplit(":", 1)[0].strip("[]")
        out = [self.address, host, *(p.split("=", 1)[1] for p in self.params if p.startswith("cert="))]
        return out + ([self.fingerprint] if self.fingerprint else [])


def load_bridges(text: str) -> tuple[Bridge, ...]:
    """Bridge lines as Tor Browser takes them (``obfs4 IP:PORT FINGERPRINT cert=… iat-mode=…``, with or without
    ``Bridge`` before; a plain ``IP:PORT [FINGERPRINT]``). Comments and blank lines are skipped. Other pluggable
    transports (snowflake, meek, webtunnel) need programs this nettest does not run: refused."""
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) > MAX_BRIDGE_LINE or not line.isascii() or not line.isprintable() or "\\" in line:
            raise NettestError(f"line {n} is no bridge line (too long, or characters one cannot hold)")
        words = line.split()
        if words[0].lower() == "bridge":
            words = words[1:]
        transport = None
        if words and not words[0][:1].isdigit() and not words[0].startswith("["):
            transport = words.pop(0).lower()
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", transport):
                raise NettestError(f"line {n} is no bridge line: it starts with neither a transport nor an address")
            if transport != "obfs4":
                raise NettestError(f"line {n}: {transport[:20]!r} bridges are not run here (obfs4 and plain ones are)")
        if not words:
            raise NettestError(f"line {n}: no bridge address")
        address = _bridge_address(words.pop(0), n)
        fingerprint = None
        if words and (found := _FINGERPRINT.fullmatch(words[0])):
            words.pop(0)
            fingerprint = found.group(1).upper()
        if any(not _PARAM.fullmatch(w) for w in words):
            raise NettestError(f"line {n}: after the address and fingerprint, only key=value parameters")
        if transport == "obfs4" and not any(w.startswith("cert=") for w in words):
            raise NettestError(f"line {n}: an obfs4 bridge needs its cert=")
        out.append(Bridge(transport, address, fingerprint, tuple(words)))
        if len(out) > MAX_BRIDGES:
            raise NettestError(f"more than {MAX_BRIDGES} bridges")
    if not out:
        raise NettestError("no bridge line")
    return tuple(out)


def _bridge_address(word: str, n: int) -> str:
    host, _, port = word.rpartition(":")
    try:
        ip = ipaddress.ip_address(host.strip("[]") if host.startswith("[") and host.endswith("]") else host)
        number = int(port) if port.isdigit() else 0
    except ValueError:
        ip, number = None, 0
    if ip is None or not 0 < number < 65536:
        raise NettestError(f"line {n}: a bridge's address is IP:PORT, not {word[:60]!r}")
    return f"[{ip}]:{number}" if ip.version == 6 else f"{ip}:{number}"


def scrub_bridges(line: str, bridges: tuple[Bridge, ...]) -> str:
    """``line`` with every bridge's address, fingerprint and cert replaced by ``[scrubbed]`` (longest first)."""
    for secret in sorted({x for b in bridges for x in b.secrets()}, key=len, reverse=True):
        if secret in line or (secret.isalnum() and secret.upper() in line.upper()):
            line = re.sub(r"\$?" + re.escape(secret), "[scrubbed]", line, flags=re.IGNORECASE)
    return line


def check_input(input: str) -> None:
    """No input: a list's lines would be measured as the same bootstrap again and again."""
    raise NettestError("vanilla_tor takes no input (it bootstraps tor; --tor-network FILE gives another Tor network)")


_HEX = re.compile(r"[0-9A-Fa-f]+")
_ENDPOINT = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,3}){3}):([0-9]+)")


def _check_directory(n: int, key: str, words: list[str]) -> None:
    """A DirAuthority or FallbackDir line's parts, as far as tor would refuse them (and exit 1, recorded as a
    failure to bootstrap): its IPv4 address and port, its ``orport=``/``dirport=``, its fingerprints in hex."""
    endpoints = [m for m in map(_ENDPOINT.fullmatch, words) if m]
    if len(endpoints) != 1:
        raise NettestError(f"line {n}: {key} needs one IPv4 address and port (198.51.100.7:9030)")
    try:
        ipaddress.IPv4Address(endpoints[0].group(1))
    except ValueError:
        raise NettestError(f"line {n}: {endpoints[0].group(1)!r} is not an IPv4 address") from None
    ports = [("its port", endpoints[0].group(2))]
    ports += [(w.split("=", 1)[0], w.split("=", 1)[1]) for w in words if w.lower().startswith(("orport=", "dirport="))]
    for what, port in ports:
        if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:  # (int("²") raises)
            raise NettestError(f"line {n}: {what} must be 1-65535, not {port[:12]!r}")
    for w in words:
        name, eq, ident = w.partition("=")
        if eq and name.lower() in ("id", "v3ident") and not _HEX.fullmatch(ident):
            raise NettestError(f"line {n}: {name}= must be a fingerprint in hex, not {ident[:12]!r}")
    if key == "DirAuthority":
        after = words[words.index(endpoints[0].group(0)) + 1:]
        if not after or not all(_HEX.fullmatch(w) for w in after):
            raise NettestError(f"line {n}: DirAuthority ends with the authority's fingerprint in hex")
    elif not any(w.lower().startswith("id=") for w in words):
        raise NettestError(f"line {n}: FallbackDir needs id=FINGERPRINT")


def load_network(text: str) -> tuple[str, ...]:
    """A ``--tor-network`` file: torrc lines that name a Tor network, nothing else (no option that could make
    tor listen, write files or run programs). Comments and blank lines are skipped."""
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) > MAX_NETWORK_LINE:
            raise NettestError(f"line {n} is longer than {MAX_NETWORK_LINE} characters")
        if not line.isascii() or not line.isprintable() or "\\" in line:  # a backslash would join the next line
            raise NettestError(f"line {n} holds characters a torrc line cannot")
        key, _, value = line.partition(" ")
        known = next((k for k in NETWORK_KEYS if k.lower() == key.lower()), None)
        if known is None:
            raise NettestError(f"line {n}: {key[:40]!r} is not one of {', '.join(NETWORK_KEYS)}")
        value = value.strip()
        if known == "TestingTorNetwork" and value not in ("0", "1"):
            raise NettestError(f"line {n}: TestingTorNetwork is 0 or 1")
        if known != "TestingTorNetwork" and len(value.split()) < 2:
            raise NettestError(f"line {n}: {known} needs an address and a fingerprint")
        if known != "TestingTorNetwork":
            _check_directory(n, known, value.split())
        out.append(f"{known} {value}")
        if len(out) > MAX_NETWORK_LINES:
            raise NettestError(f"more than {MAX_NETWORK_LINES} lines")
    if not any(line.startswith(("DirAuthority ", "FallbackDir ")) for line in out):
        raise NettestError("no DirAuthority or FallbackDir line: that is no Tor network")
    return tuple(out)


def _binary() -> str:
    found = shutil.which("tor")
    if found is None:
        raise NettestError("vanilla_tor needs the tor program (Debian: apt install tor; `make setup` installs it)")
    return found


def check_environment() -> None:
    """Before consent and before anything is sent: NettestError (one line) when tor is not installed."""
    _binary()


async def _version(binary: str) -> str | None:
    with contextlib.suppress(OSError, TimeoutError):
        proc = await asyncio.create_subprocess_exec(binary, "--version", stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL)
        try:
            async with asyncio.timeout(10):
                out, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        found = _VERSION.search(out[:4096].decode("utf-8", "replace"))
        return found.group(1) if found else None
    return None


_AS_ROOT = "You are running Tor as root"


def torrc(data: Path, network: tuple[str, ...], bridges: tuple[Bridge, ...] = (), obfs4proxy: str | None = None) -> str:
    """The client's configuration: a fresh data directory, a SOCKS port on loopback that nothing uses (tor
    builds circuits only for something), the log on stdout, addresses scrubbed from it, the network, and the
    bridges (obfs4 ones through ``obfs4proxy``)."""
    text = (f"DataDirectory {data}\nSocksPort 127.0.0.1:auto\nClientOnly 1\nAvoidDiskWrites 1\n"
            "Log notice stdout\nLog [control]info-info stdout\nSafeLogging 1\nRunAsDaemon 0\n"
            + "".join(f"{line}\n" for line in network))
    if bridges:
        text += "UseBridges 1\n" + "".join(f"{b.line}\n" for b in bridges)
        if any(b.transport == "obfs4" for b in bridges):
            text += f"ClientTransportPlugin obfs4 exec {obfs4proxy}\n"
    return text


def obfs4proxy() -> str:
    found = shutil.which("obfs4proxy")
    if found is None:
        raise NettestError("obfs4 bridges need the obfs4proxy program (Debian: apt install obfs4proxy; "
                           "`make setup` installs it)")
    return found


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        async with asyncio.timeout(STOP_GRACE):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def _lines(stream: asyncio.StreamReader) -> Any:
    """tor's log, a line at a time, each cut to `MAX_LINE` characters (a longer one is read to its end)."""
    while True:
        try:
            raw = await stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as e:
            if e.partial:
                yield e.partial.decode("utf-8", "replace").rstrip()[:MAX_LINE]
            return
        except asyncio.LimitOverrunError as e:
            head = await stream.readexactly(e.consumed)
            ended = False
            while True:  # the rest of that line, dropped
                try:
                    await stream.readuntil(b"\n")
                    break
                except asyncio.LimitOverrunError as more:
                    await stream.readexactly(more.consumed)
                except asyncio.IncompleteReadError:  # the output ended inside that line
                    ended = True
                    break
            yield head.decode("utf-8", "replace")[:MAX_LINE]
            if ended:
                return
            continue
        yield raw.decode("utf-8", "replace").rstrip()[:MAX_LINE]


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    binary = _binary()
    network: tuple[str, ...] = tuple(ctx.options.get("tor_network") or ())
    bridges: tuple[Bridge, ...] = tuple(ctx.options.get("tor_bridges") or ())
    pt = obfs4proxy() if any(b.transport == "obfs4" for b in bridges) else None
    timeout = float(ctx.timeouts.measurement)
    tk: dict[str, Any] = {
        "bootstrap_time": 0.0, "error": None, "failure": None, "success": False, "timeout": timeout,
        "tor_logs": [], "tor_progress": 0, "tor_progress_tag": None, "tor_progress_summary": None,
        "tor_version": await _version(binary), "transport_name": "obfs4" if pt else "vanilla",
        "x_tor_network": "custom" if network else "tor",
        "x_dirauths": sum(1 for line in network if line.startswith("DirAuthority ")),
        "x_bridges": len(bridges),
    }
    logs: deque[str] = deque(maxlen=MAX_LOG_LINES)
    with tempfile.TemporaryDirectory(prefix="tamperscope-tor-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir(mode=0o700)
        (Path(tmp) / "torrc").write_text(torrc(data, network, bridges, pt))
        (Path(tmp) / "defaults").write_text("")  # not the system's torrc-defaults
        start = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            binary, "-f", str(Path(tmp) / "torrc"), "--defaults-torrc", str(Path(tmp) / "defaults"),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            limit=4 * MAX_LINE, env={**os.environ, "TZ": "UTC"})  # its log's times: not the user's time zone
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                async for line in _lines(proc.stdout):
                    line = scrub_bridges(line, bridges) if bridges else line
                    if _AS_ROOT in line:
                        continue  # how this user runs tor is none of the measurement's business
                    logs.append(line.replace(tmp, "[tmp]"))  # the path names the user's home or account
                    found = _BOOTSTRAP.search(line)
                    if found is None:
                        continue
                    progress = int(found.group(1))
                    if progress > 100:
                        continue  # no bootstrap says that
                    tk["tor_progress"] = progress
                    tk["tor_progress_tag"] = found.group(2)
                    tk["tor_progress_summary"] = found.group(3)[:MAX_LINE]
                    if progress == 100:
                        tk["success"] = True
                        tk["bootstrap_time"] = round(time.monotonic() - start, 3)
                        break
                else:  # tor exited by itself before 100%: its configuration, or its own failure, not the network
                    tk["success"] = None
                    tk["error"] = "unknown-error"
                    code = await proc.wait()
                    tk["failure"] = F.unknown(f"tor exited with status {code}")
        except TimeoutError:
            tk["error"] = "timeout-reached"
            tk["failure"] = F.GENERIC_TIMEOUT_ERROR
        finally:
            await _stop(proc)
    tk["tor_logs"] = list(logs)
    return tk


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    measurement["test_keys"].update(vanilla_tor_verdict(measurement).to_test_keys())
