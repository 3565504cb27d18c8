"""portfiltering: which TCP ports does this network let through to a server that listens on all of them?

Some networks filter by port: SSH, RDP, VPNs (OpenVPN's 1194, PPTP's 1723), Tor's relay ports, mail, or
everything but the web, as Iran's "protocol whitelisting" has done since 2022. OONI's experimental
``portfiltering`` asks the same question of a server of its own.

The input is the server: ``HOST`` or ``tcp://HOST``, optionally with the ports to try, ``HOST:22,80,1194``
(at most `MAX_PORTS`; 80 is always tried, as the baseline). Without one, `DEFAULT_INPUTS`: portquiz.net, a
public server that answers HTTP on every TCP port. Its name is resolved first (a DNS failure is the
measurement's failure); then, for every port at once (`CONCURRENCY` at a time), a connection to the first
address and one ``GET /`` over it, reading no more than the status line. The control helper connects to the same
address and ports from outside meanwhile: a port that it reaches and this network does not is filtered here.

``test_keys``: ``host``, ``failure`` (the DNS failure, else null), ``x_address`` (the address tried),
``x_ports`` (one entry per port, in order: ``port``, ``connect`` (the connection's failure, or null),
``reply`` (the request's failure once connected, or null), ``status`` (the HTTP status answered, or null)),
``control`` and ``control_failure`` (the helper's answer, web_connectivity's format), OONI's ``queries``,
``tcp_connect`` and ``network_events``; and the verdict's (`model.portverdict`): the standard keys and
``x_blocked_ports``. Nothing of the answer beyond its status code is kept.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from ..model import failures as F
from ..model.portverdict import blocked_ports, port_results, portfiltering_verdict
from ..model.webparts import endpoint
from ..netx import NetxError, Trace, classify, tcp_connect
from .base import Context, NettestError, first_address
from .control import ask_helper, control_request

NAME = "portfiltering"
VERSION = "0.1.0"
NEEDS_INPUT = True
USES_HELPER = True
DEFAULT_INPUTS = ("portquiz.net",)
BASELINE = 80  # always tried: the port a network that lets anything through lets through
# Ports that networks are known to filter, or that tools people depend on use: remote access (SSH, Telnet,
# RDP), mail, DNS over TCP and TLS, VPNs (PPTP, OpenVPN, IPsec's IKE over TCP, Shadowsocks' default), Tor's
# relay and directory ports, proxies, XMPP and WhatsApp, Google's push, SIP, BitTorrent, alternative web ports.
DEFAULT_PORTS = (21, 22, 23, 25, 53, 80, 110, 143, 443, 465, 587, 853, 993, 995, 1080, 1194, 1723, 3128, 3389,
                 4500, 5060, 5222, 5228, 6881, 8080, 8388, 8443, 9001, 9030)
MAX_PORTS = 31  # the helper connects to at most 32 endpoints per request (helper.server.MAX_ENDPOINTS)
CONCURRENCY = 8  # connections in flight to the server at once
MAX_REPLY = 4096  # bytes of an answer read, at most: its status line is all that is kept
USAGE = "a server and ports: HOST, tcp://HOST, or HOST:PORT,PORT,... (at most 31 ports)"


class Config:
    """No options: the ports are the input's."""


def target_of(input: str) -> tuple[str, tuple[int, ...]]:
    """(host, ports) of ``HOST``, ``tcp://HOST`` or either with ``:PORT,PORT,...``; NettestError otherwise."""
    bad = NettestError(f"not {USAGE}: {input!r}")
    spec = input.strip()
    if spec.lower().startswith("tcp://"):
        spec = spec[6:].removesuffix("/")
    if not spec or any(c in spec for c in "/?#@%") or any(c.isspace() for c in spec):
        raise bad
    if spec.startswith("["):  # an IPv6 literal: [ADDR] or [ADDR]:PORTS
        host, _, rest = spec[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise bad
        ports_text = rest[1:]
    elif spec.count(":") == 1:  # HOST:PORTS
        host, _, ports_text = spec.partition(":")
    else:  # HOST, or an IPv6 literal without ports
        host, ports_text = spec, ""
    try:
        checked = (urlsplit(f"tcp://[{host}]/" if ":" in host else f"tcp://{host}/").hostname or "").rstrip(".")
    except ValueError:
        raise bad from None
    if not checked or len(checked) > 253 or ".." in checked or (":" not in host and "[" in spec):
        raise bad
    if not ports_text:
        return checked, DEFAULT_PORTS
    ports: list[int] = []
    for item in ports_text.split(","):
        if not (item.isascii() and item.isdigit() and len(item) <= 5 and 0 < int(item) < 65536):
            raise NettestError(f"not a port (1-65535): {item[:16]!r} in {input!r}")
        ports.append(int(item))
    chosen = tuple(dict.fromkeys([BASELINE, *ports]))
    if len(chosen) > MAX_PORTS:
        raise NettestError(f"at most {MAX_PORTS} ports, 80 included (the control helper's limit): {input!r}")
    return checked, tuple(sorted(chosen))


def check_input(input: str) -> None:
    target_of(input)


async def _one(ip: str, port: int, host: str, trace: Trace, ctx: Context) -> dict[str, Any]:
    """Connect, send one GET, read the status line: {port, connect, reply, status}."""
    t = ctx.timeouts
    entry: dict[str, Any] = {"port": port, "connect": None, "reply": None, "status": None}
    try:
        stream = await tcp_connect(ip, port, trace=trace, timeout=t.connect, tags=(f"port={port}",))
    except NetxError as e:
        entry["connect"] = e.failure
        return entry
    named = f"[{host}]" if ":" in host else host
    try:
        async with asyncio.timeout(t.http):
            await stream.write(f"GET / HTTP/1.1\r\nHost: {named}\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n"
                               "Connection: close\r\n\r\n".encode())
            got = b""
            while b"\n" not in got and len(got) < MAX_REPLY:
                chunk = await stream.read(MAX_REPLY - len(got))
                if not chunk:
                    break
                got += chunk
        await stream.aclose()
    except Exception as e:  # a reset, a timeout: what the request met
        entry["reply"] = classify(e, operation=F.READ)
        return entry
    finally:
        stream.abort()  # at once when it failed or was cancelled (the measurement's deadline); closed already else
    line = got.split(b"\n", 1)[0].strip()
    fields = line.split()
    if not got:
        entry["reply"] = F.EOF_ERROR
    elif len(fields) >= 2 and fields[0].startswith(b"HTTP/1.") and fields[1].isdigit() and len(fields[1]) == 3:
        entry["status"] = int(fields[1])
    else:
        entry["reply"] = F.HTTP_PROTOCOL_ERROR
    return entry


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    if not input:
        raise NettestError(f"portfiltering needs an input: {USAGE}")
    host, ports = target_of(input)
    trace = Trace(record_io=bool(ctx.options.get("network_events", True)))
    url = f"http://[{host}]/" if ":" in host else f"http://{host}/"  # the helper fetches it besides the connects
    tk: dict[str, Any] = {"host": host, "failure": None, "x_address": None, "x_ports": [],
                          "control": None, "control_failure": None}
    async with trace:
        ip, tk["failure"] = await first_address(host, ctx, trace)
        if ip is None:
            tk["control"], tk["control_failure"] = await ask_helper(ctx, control_request(url, []))
        else:
            tk["x_address"] = ip
            gate = asyncio.Semaphore(CONCURRENCY)

            async def one(port: int) -> dict[str, Any]:
                async with gate:
                    return await _one(ip, port, host, trace, ctx)

            async with asyncio.TaskGroup() as tg:
                control = tg.create_task(ask_helper(ctx, control_request(url, [endpoint(ip, p) for p in ports])))
                tasks = [tg.create_task(one(p)) for p in ports]
            tk["x_ports"] = [task.result() for task in tasks]
            tk["control"], tk["control_failure"] = control.result()
    keys = trace.test_keys()
    tk["queries"] = keys["queries"]
    tk["tcp_connect"] = keys["tcp_connect"]
    tk["network_events"] = keys["network_events"]
    return tk


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    tk = measurement["test_keys"]
    tk.update(portfiltering_verdict(measurement).to_test_keys())
    tk["x_blocked_ports"] = blocked_ports(port_results(measurement))
