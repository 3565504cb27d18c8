"""What every nettest gets and gives: the run context and the nettest protocol.

A nettest module has the same parts in the same order: NAME, VERSION,
NEEDS_INPUT, `Config` (its options, if any), `run(input, ctx) -> test_keys`.
`run` raises only when it cannot run at all (`NettestError`, bad input);
every network outcome is a record with a failure string.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..model import failures as F
from ..model.asn import EMPTY, AsnTable
from ..model.paths import data_dir
from ..model.verdict import BlockpageMatcher as BlockpageMatcher  # re-exported: nettests take it from here
from ..netx import Resolver, Trace, lookup_addresses, lookup_system


class IPLimiter:
    """At most `per_ip` measurements in flight towards one server address.

    Addresses are taken in sorted order, one at a time, so two measurements
    waiting for each other's addresses cannot deadlock.
    """

    def __init__(self, per_ip: int = 2) -> None:
        self.per_ip = per_ip
        self._sems: dict[str, asyncio.Semaphore] = {}

    @contextlib.asynccontextmanager
    async def hold(self, ips: Sequence[str]) -> AsyncIterator[None]:
        taken: list[asyncio.Semaphore] = []
        try:
            for ip in sorted(set(ips)):
                sem = self._sems.get(ip)
                if sem is None:
                    sem = self._sems[ip] = asyncio.Semaphore(self.per_ip)
                await sem.acquire()
                taken.append(sem)
            yield
        finally:
            for sem in taken:
                sem.release()


MAX_KEPT_ENDPOINTS = 4096  # endpoints a run hands the next (`Residual.kept`)


def residual_state_path() -> Path:
    """Where a run leaves the next one the endpoints the censor acted at (`Residual.kept`):
    ``$XDG_DATA_HOME/tamperscope/residual.json`` (``~/.local/share/…``). The lab removes it when its censor starts
    or stops: holds do not outlive the censor that made them."""
    return data_dir() / "residual.json"


RESIDUAL_WINDOW = 180.0  # seconds: the longest residual blocking reported (the GFW's of QUIC, per client and port)


class Residual:
    """Where this run met a censor after connecting, and when: a censor with residual blocking (the GFW's 90 s,
    Turkmenistan's 30 s) then drops or resets this client's every packet to that address and port for a while, so
    another measurement there meets the first one's block, not its own.

    Each measurement takes a `token`. A nettest calls `connected` for each connection it makes, `trigger` as the
    censor acts on one (a reset, a stall or a recognised blockpage after the connect), and `met` for a connect
    that failed: whether another measurement connected to that endpoint, or met the censor there, less than
    `window` seconds before the connect began or while it ran. A connection made there is enough: what came back
    on it may be a blockpage no fingerprint knows (QA: a residual hold after one was taken for an IP block), and a
    connect that fails where another succeeded a moment ago is worth measuring again, whatever the cause. `window`
    is how long a hold is taken to last: the run's wait before measuring such an input again
    (`Engine.residual_wait`), else `RESIDUAL_WINDOW`; an event older than that is over, so the input measured
    again stands on its own result. Times are `time.monotonic()`."""

    KEPT = 8  # triggers remembered per endpoint (the latest)

    def __init__(self, window: float = RESIDUAL_WINDOW) -> None:
        self.window = window
        self._at: dict[tuple[str, int], list[tuple[float, int]]] = {}  # triggers
        self._touched: dict[tuple[str, int], list[tuple[float, int]]] = {}  # connections made, and triggers
        self._tokens = itertools.count(1)

    def token(self) -> int:
        return next(self._tokens)

    def trigger(self, ip: str, port: int, token: int, at: float | None = None) -> None:
        self._note(self._at, ip, port, token, at)
        self._note(self._touched, ip, port, token, at)

    def connected(self, ip: str, port: int, token: int, at: float | None = None) -> None:
        self._note(self._touched, ip, port, token, at)

    def _note(self, book: dict[tuple[str, int], list[tuple[float, int]]], ip: str, port: int, token: int,
              at: float | None) -> None:
        kept = book.setdefault((ip, port), [])
        kept.append((time.monotonic() if at is None else at, token))
        del kept[:-self.KEPT]

    def met(self, ip: str, port: int, token: int, began: float, failed: float) -> float | None:
        """Seconds from another measurement's latest connection or trigger at ``ip``:``port`` to a connect of
        ``token``'s that began at ``began`` and failed at ``failed``, when it came within the window before it or
        during it."""
        times = [at for at, who in self._touched.get((ip, port), ()) if who != token
                 and began - self.window <= at <= failed]
        return failed - max(times) if times else None

    def last(self, ip: str, port: int) -> float | None:
        """When the censor last acted at the endpoint (monotonic), if it did in this run."""
        kept = self._at.get((ip, port))
        return max(at for at, _ in kept) if kept else None

    def kept(self) -> list[list[Any]]:
        """Where the censor acted within the window, and how many seconds ago: ``[[ip, port, age], …]``, for the
        next run (`restore`). A second run started inside the censor's hold met it at its connects and read an IP
        block (QA)."""
        now = time.monotonic()
        ages = [(ip, port, round(now - max(at for at, _ in times), 3)) for (ip, port), times in self._at.items()]
        return [[ip, port, age] for ip, port, age in ages if 0 <= age <= self.window][:MAX_KEPT_ENDPOINTS]

    def restore(self, entries: Any, age: float) -> int:
        """Take in what an earlier run `kept`, ``age`` seconds ago, as triggers of no measurement of this run (token
        0): a connect failing there within the window is residual blocking. Hostile or damaged entries are skipped.
        Returns how many were taken."""
        now, taken = time.monotonic(), 0
        for e in entries[:MAX_KEPT_ENDPOINTS] if isinstance(entries, list) else ():
            if not (isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) and len(e[0]) <= 64
                    and type(e[1]) is int and 0 < e[1] < 65536 and type(e[2]) in (int, float)):
                continue
            ago = float(e[2]) + age
            if 0 <= ago <= self.window:
                self.trigger(e[0], e[1], 0, now - ago)
                taken += 1
        return taken


class NettestError(ValueError):
    """A nettest cannot run as asked (bad input or configuration); one-line message."""


@dataclass(frozen=True)
class Timeouts:
    dns: float = 4.0
    connect: float = 5.0
    tls: float = 5.0
    http: float = 10.0
    control: float = 15.0
    measurement: float = 60.0


CONTROL_SLOTS = 32  # half the control helper's own limit (`helper --max-inflight`, 64), for other probes' share


@dataclass(frozen=True)
class Context:
    """Where the probe is and what it may use, for every nettest of a run."""

    helper_url: str | None = None  # the control helper (OONI's TH protocol)
    udp_resolver: Resolver | None = None  # a public resolver spoken to over UDP
    isp_resolver: str | None = None  # the system resolver's address, when known (recorded, never the user's IP)
    ca_bundle: str | None = None  # trust store for TLS; None: the system's
    matcher: BlockpageMatcher | None = None
    asn: AsnTable = EMPTY
    backend: str | None = None  # echo / middlebox backend (host or URL)
    timeouts: Timeouts = field(default_factory=Timeouts)
    limiter: IPLimiter = field(default_factory=IPLimiter)
    residual: Residual = field(default_factory=Residual)  # where the censor acted in this run (residual blocking)
    # requests to the control helper in flight at once: a run of --parallel 1024 asked 1024 at once, the helper
    # (64 by default) answered most of them 503, and measurements without a control read as blocking (QA)
    control_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONTROL_SLOTS))
    options: Mapping[str, Any] = field(default_factory=dict)
    # This probe's own addresses as the control helper saw them (its public one, behind NAT or CGNAT, which no
    # interface has): the engine scrubs them from every measurement; never recorded. Filled by `ask_helper`.
    own_addresses: set[str] = field(default_factory=set)


class Nettest(Protocol):
    NAME: str
    VERSION: str
    NEEDS_INPUT: bool

    async def run(self, input: str | None, ctx: Context) -> dict[str, Any]: ...


async def first_address(host: str, ctx: Context, trace: Trace) -> tuple[str | None, str | None]:
    """(an address of ``host``, None), or (None, the lookup's failure string). An IP literal is itself; a name is
    looked up through the run's public resolver over UDP when it has one, else the system's, into ``trace``."""
    try:
        return str(ipaddress.ip_address(host)), None
    except ValueError:
        pass
    if ctx.udp_resolver is not None:
        res = await lookup_addresses(host, resolver=ctx.udp_resolver, trace=trace, timeout=ctx.timeouts.dns)
    else:
        res = await lookup_system(host, trace=trace, timeout=ctx.timeouts.dns)
    if res.failure is not None or not res.addresses:
        return None, res.failure or F.DNS_NO_ANSWER
    return res.addresses[0], None
