"""blocking_rules: what does the censor's rule for this name match? (The TMC study's method.)

For a domain or an http(s) URL's host H, on each of its layers at once (a DNS lookup through the
system's resolver; with a silent address (``--silent-resolver``, where no DNS server runs), the same
question sent there, which only a device on the path can answer; the SNI of a ClientHello and the Host of
a request, both to one address the site really has, chosen as the evasion nettest chooses it), the
nettest shows the censor H and names made from it (``model/rules.py``): an innocent name first, H
itself, then ``<salt>.H``, ``<salt>H`` and ``H.<salt>.net``, and when both ends of the rule are free,
ever shorter parts of H to find its keyword.
What each name meets gives the rule: exact, H and its subdomains, any name ending in H, starting with H,
or containing a keyword (the over-broad kind, which blocks names nobody meant to block).

Each probe is a lookup or a fresh connection with its own transaction_id, its records tagged
``rules=LAYER:KIND``, judged from those records (``model.rules.judge``, which the analysis applies again).
Before each TLS or HTTP probe that follows a blocked one, the nettest waits out the censor's residual
blocking of the address (a bare connect; as evasion does), so no probe is blamed for another's trigger. A
censor with a long hold needs a long ``--timeout``: probes it leaves no time for are ``residual`` and
their layer ``undetermined``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import string
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from ..model import rules as R
from ..model.inputs import BadInput, check_host
from ..model.webparts import endpoint, idna_host, is_ip
from ..netx import SYSTEM, NetxError, Trace, lookup_addresses, lookup_udp, round_trip, tcp_connect, tls_handshake
from ..netx.http import Limits
from .base import Context, NettestError
from .control import ask_helper, control_request
from .evasion import choose_address, wait_residual

NAME = "blocking_rules"
VERSION = "0.1.0"
NEEDS_INPUT = True
USES_HELPER = True

BODY_LIMIT = 256 << 10
GRACE = 4.0  # seconds past --timeout a probe may end in (the engine stops a measurement 5 s past it)
MAX_KEYWORD_PROBES = 16
PATH_WAIT = 2.0  # seconds a query to the silent address waits: forged answers come within a round trip


class Config:
    """Input: a domain name or an http(s) URL (its host is the name probed)."""


def _host(input: str) -> str:
    text = input.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NettestError(f"blocking_rules needs a domain or an http(s) URL: {input!r}")
        text = parts.hostname
    host = idna_host(text)
    if is_ip(host):
        raise NettestError(f"blocking_rules needs a domain name, not an address: {input!r}")
    try:
        check_host(host)
    except BadInput as e:
        raise NettestError(f"blocking_rules: {e}") from None
    if "." not in host:
        raise NettestError(f"blocking_rules needs a domain name with a dot: {input!r}")
    return host


def check_input(input: str) -> None:
    _host(input)


def _salt() -> str:
    """A label no site has: a letter, then 7 random letters and digits."""
    alphabet = string.ascii_lowercase + string.digits
    return "q" + "".join(secrets.choice(alphabet) for _ in range(7))


class _Layer:
    """One layer's probes, one at a time, judged as they come."""

    def __init__(self, layer: str, host: str, salt: str, ip: str | None, trace: Trace, ctx: Context,
                 end: float) -> None:
        self.layer, self.host, self.salt, self.ip = layer, host, salt, ip
        self.trace, self.ctx = trace, ctx
        self.port = R.PORTS.get(layer, 0)
        t = ctx.timeouts
        # a probe starts only when all its steps' own timeouts fit before the end: none is cut short (a
        # probe cut short would read as a silent censor)
        self.deadline = end - (t.dns if layer not in R.PORTS else t.connect + (t.tls if layer == "tls" else t.http))
        self.silent: str | None = None  # dns_path: the address where no DNS server runs
        self.probes: list[dict[str, Any]] = []
        self.waits: list[float] = []
        self.lies: set[str] | None = None  # dns: the censor's answers (None: not to be told apart)
        self.held = False  # the address stayed held past the deadline: the rest is residual

    async def probe(self, kind: str, name: str, part: str | None = None) -> str:
        """Ask about ``name``; its outcome (blocked, passed, residual, unusable)."""
        record: dict[str, Any] = {"kind": kind, "name": name}
        if part is not None:
            record["part"] = part
        loop = asyncio.get_running_loop()
        if self.held or loop.time() >= self.deadline:
            self.probes.append({**record, "transaction_id": None, "outcome": "residual"})
            return "residual"
        # before every probe, not only after this layer's caught ones: a censor may hold the whole address
        # after the other layer's trigger (TLS and HTTP are asked at once)
        if self.layer in R.PORTS and self.ip is not None:
            waited = await wait_residual(self.ip, self.port, self.trace, self.ctx, self.deadline,
                                         tag=f"{R.TAG}={self.layer}:residual-check")
            if waited is None or loop.time() >= self.deadline:
                self.held = True
                self.probes.append({**record, "transaction_id": None, "outcome": "residual"})
                return "residual"
            if waited:
                self.waits.append(round(waited, 1))
        tid = self.trace.next_transaction_id()
        tags = (f"{R.TAG}={self.layer}:{kind}",)
        await self._ask(name, tid, tags)
        judged = R.judge(self.layer, tid, self.trace.test_keys(), self.lies, self.ctx.matcher)
        self.probes.append({**record, "transaction_id": tid, **judged})
        return str(judged["outcome"])

    async def _ask(self, name: str, tid: int, tags: tuple[str, ...]) -> None:
        ctx, trace = self.ctx, self.trace
        if self.layer == "dns":
            await lookup_addresses(name, resolver=SYSTEM, trace=trace, timeout=ctx.timeouts.dns, tags=tags,
                                   transaction_id=tid)
            return
        if self.layer == "dns_path":
            assert self.silent is not None
            with contextlib.suppress(NetxError):  # recorded: the judgement reads the records
                await lookup_udp(name, "A", server=self.silent, trace=trace, timeout=min(ctx.timeouts.dns, PATH_WAIT),
                                 tags=tags, transaction_id=tid)
            return
        assert self.ip is not None
        conn: Any = None
        try:
            conn = await tcp_connect(self.ip, self.port, trace=trace, timeout=ctx.timeouts.connect, tags=tags,
                                     transaction_id=tid)
            if self.layer == "tls":
                conn = await tls_handshake(conn, server_name=name, ca_bundle=ctx.ca_bundle, verify=False,
                                           alpn=("http/1.1",), timeout=ctx.timeouts.tls, tags=tags)
            else:
                await round_trip(conn, f"http://{name}/", trace=trace, timeout=ctx.timeouts.http,
                                 limits=Limits(body=BODY_LIMIT), tags=tags)
        except NetxError:
            pass  # recorded: the judgement reads the records
        finally:
            if conn is not None:
                await conn.aclose()

    async def run(self, exact_done: Callable[[], Awaitable[str]] | None = None) -> dict[str, Any]:
        if self.layer in R.PORTS and self.ip is None:
            return {"probes": [], **R.conclude([])}
        if await self.probe("innocent", R.innocent(self.salt)) != "passed":
            return self._done()
        exact = await (exact_done() if exact_done is not None else self.probe("exact", self.host))
        if exact != "blocked":
            return self._done()
        outcomes = {}
        for p in R.variants(self.host, self.salt):
            outcomes[p.kind] = await self.probe(p.kind, p.name)
        if outcomes.get("prefixed") == "blocked" and outcomes.get("suffixed") == "blocked":
            await self._keyword()
        return self._done()

    async def _keyword(self) -> None:
        """The shortest part of the name still caught: trim from the left while caught (binary search), then
        from the right. A substring rule is monotonic: a part holding the keyword is always caught."""
        host, budget = self.host, [MAX_KEYWORD_PROBES]

        async def caught(start: int, end: int) -> bool | None:
            part = host[start:end]
            name = R.keyword_name(part, self.salt, host[start - 1:start], host[end:end + 1])
            if name is None or budget[0] <= 0:
                return None
            budget[0] -= 1
            o = await self.probe("keyword", name, part)
            return True if o == "blocked" else False if o == "passed" else None

        lo, hi = 0, len(host) - 1  # the largest start still caught lies in [lo, hi]; host[0:] is
        while lo < hi:
            mid = (lo + hi + 1) // 2
            c = await caught(mid, len(host))
            if c is None:
                return
            lo, hi = (mid, hi) if c else (lo, mid - 1)
        start = lo
        lo, hi = start + 1, len(host)  # the smallest end still caught lies in [lo, hi]
        while lo < hi:
            mid = (lo + hi) // 2
            c = await caught(start, mid)
            if c is None:
                return
            lo, hi = (lo, mid) if c else (mid + 1, hi)
        if (start, lo) != (0, len(host)) and not any(p.get("part") == host[start:lo] for p in self.probes):
            await caught(start, lo)  # the keyword itself, shown caught on its own

    def _done(self) -> dict[str, Any]:
        out = {"probes": self.probes, **R.conclude(self.probes)}
        if self.waits:
            out["residual_waits"] = self.waits
        return out


async def _verify(address: str, host: str, trace: Trace, ctx: Context, port: int = 443) -> None:
    """A handshake naming the site, its certificate checked, to an address our resolver gave and the control
    did not: Satellite's test of whether the answer was the site's (``model.rules.injected`` reads it)."""
    tags = (R.VERIFY_TAG,)
    conn: Any = None
    try:
        conn = await tcp_connect(address, port, trace=trace, timeout=ctx.timeouts.connect, tags=tags)
        conn = await tls_handshake(conn, server_name=host, ca_bundle=ctx.ca_bundle, alpn=("http/1.1",),
                                   timeout=ctx.timeouts.tls, tags=tags)
    except NetxError:
        pass  # recorded: R.injected reads the records
    finally:
        if conn is not None:
            await conn.aclose()


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    if not input:
        raise NettestError("blocking_rules needs an input (a domain name or an http(s) URL)")
    host = _host(input)
    salt = _salt()
    trace = Trace()
    tk: dict[str, Any] = {}
    loop = asyncio.get_running_loop()
    end = loop.time() + ctx.timeouts.measurement + GRACE
    async with trace:
        dns = _Layer("dns", host, salt, None, trace, ctx, end)
        # the DNS probe of the name itself is also how the site's addresses are found
        tid = trace.next_transaction_id()
        res = await lookup_addresses(host, resolver=SYSTEM, trace=trace, timeout=ctx.timeouts.dns,
                                     tags=(f"{R.TAG}=dns:exact",), transaction_id=tid)
        ours = list(res.addresses[:8])
        control, failure = await ask_helper(ctx, control_request(f"https://{host}/",
                                                                 [endpoint(a, 443) for a in ours]))
        tk["control"] = control
        tk["control_failure"] = failure
        ip, source = choose_address(ours, control)
        exact = [q for q in trace.queries if q.get("transaction_id") == tid]
        check = R.to_verify(exact, control)
        if check is not None:  # an answer unlike the control's and no bogon: a CDN's, or the censor's server?
            await _verify(check, host, trace, ctx)
        dns.lies = R.injected(exact, control, R.verify_records(trace.test_keys()))

        async def exact_dns() -> str:  # already asked: judged now, in its place after the innocent name
            judged = R.judge("dns", tid, trace.test_keys(), dns.lies, ctx.matcher)
            dns.probes.append({"kind": "exact", "name": host, "transaction_id": tid, **judged})
            return str(judged["outcome"])

        tls = _Layer("tls", host, salt, ip, trace, ctx, end)
        http = _Layer("http", host, salt, ip, trace, ctx, end)
        silent = ctx.options.get("silent")
        path: _Layer | None = None
        if silent:
            path = _Layer("dns_path", host, salt, None, trace, ctx, end)
            path.silent = str(silent)
        async with contextlib.AsyncExitStack() as stack:
            if ip is not None:  # counted as one of the run's flows to that address
                await stack.enter_async_context(ctx.limiter.hold([ip]))
            async with asyncio.TaskGroup() as g:
                d = g.create_task(dns.run(exact_dns))
                p = g.create_task(path.run()) if path is not None else None
                t = g.create_task(tls.run())
                h = g.create_task(http.run())
    tk.update(trace.test_keys())
    layers = {"dns": d.result(), **({"dns_path": p.result()} if p is not None else {}),
              "tls": t.result(), "http": h.result()}
    tk["x_blocking_rules"] = {"host": host, "salt": salt,
                              "address": None if ip is None else ip, "address_source": source,
                              "silent_resolver": str(silent) if silent else None, "layers": layers}
    return tk


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    measurement["test_keys"].update(R.rules_verdict(measurement["test_keys"]))
