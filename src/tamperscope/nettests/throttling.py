"""throttling: is one service slowed down, and to what rate?

Downloads the same resource from the same server address, alternately with
the target's SNI/Host and with an innocent one (`www.example.com`), several
rounds, one fetch at a time. A throttler keyed on the name caps only the
target; a slow line slows both. `x_throttle = {target_kbps, control_kbps,
ratio, delay_s, cap_kbps, throttled}`, medians over rounds; `cap_kbps` is the target's
rate when throttled. Use a URL that serves at least ~50 KB (in the lab:
`https://NAME/blob?size=60000`). The rule (`model.throttle.judge`, which the analysis
re-applies to the recorded rounds): the target four times slower, and slower by at
least 0.2 s over the resource (`delay_s`): a fast fetch's rate is mostly jitter.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..model import failures as F
from ..model.inputs import BadInput, parse_url
from ..model.throttle import judge
from ..netx import SYSTEM, Trace, lookup_addresses
from .base import Context, NettestError
from .throughput import INNOCENT, Timed, swap_host, timed_fetch

NAME = "throttling"
VERSION = "0.2.0"  # 0.2.0: throttled needs delay_s >= 0.2 as well as the ratio (model.throttle)
NEEDS_INPUT = True
ROUNDS = 3


class Config:
    """Options: rounds (context option `rounds`, default 3); window (context option `window`: seconds each
    fetch may transfer for; default, the measurement's time shared by the fetches with a tenth to spare)."""


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    if not input:
        raise NettestError("throttling needs an input URL")
    try:
        u = parse_url(input)
    except BadInput as e:
        raise NettestError(str(e)) from None
    trace = Trace(record_io=False)
    tk: dict[str, Any] = {"rounds": [], "queries": trace.queries}
    try:
        # Our own deadline, inside the engine's: a server that drips (each fetch may take a
        # minute) must not cost the rounds already measured.
        async with asyncio.timeout(ctx.timeouts.measurement):
            res = await lookup_addresses(u.host, resolver=SYSTEM, trace=trace, timeout=ctx.timeouts.dns)
            if not res.addresses:
                tk["failure"] = res.failure
                return tk
            ip = res.addresses[0]
            tk["address"] = f"{ip}:{u.port}"
            other = swap_host(input, INNOCENT) if u.scheme == "http" else input
            rounds = int(ctx.options.get("rounds", ROUNDS))
            # Each fetch transfers for at most its share of the measurement, and is measured by what arrived:
            # a resource too big (or a throttle too tight) to finish in time still gives both rates.
            window = float(ctx.options.get("window") or 0.9 * ctx.timeouts.measurement / (2 * rounds))
            for _ in range(rounds):
                t = await timed_fetch(ip, u.port, u.scheme, input, u.host, ctx, window=window)
                c = await timed_fetch(ip, u.port, u.scheme, other, INNOCENT, ctx, window=window)
                tk["rounds"].append({"target": _round(t), "control": _round(c), "same_resource": same_resource(t, c)})
    except TimeoutError:
        tk["x_measurement_failure"] = "generic_timeout_error"
    verdict = judge(tk["rounds"])
    tk["failure"] = None if verdict else F.THROTTLING_INCONCLUSIVE
    if verdict:
        tk["x_throttle"] = {**verdict, "innocent_name": INNOCENT}
    return tk


def same_resource(target: Timed, control: Timed) -> bool:
    """Whether the two fetches can have got the same resource: one that completed got all of it, so the
    other cannot have got much more (a 5 KB blockpage for the target's name is not the 200 KB resource
    the innocent name got, and its rate is latency, not a throttle). Cut by the window, a fetch got less."""
    if target.failure is None and control.bytes > 2 * target.bytes:
        return False
    return not (control.failure is None and target.bytes > 2 * control.bytes)


def _round(t: Timed) -> dict[str, Any]:
    return {"kbps": t.kbps, "bytes": t.bytes, "seconds": round(t.seconds, 4), "failure": t.failure,
            "status": t.status}


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    tk = measurement["test_keys"]
    th = tk.get("x_throttle")
    throttled = bool(th and th.get("throttled"))
    tk["x_mechanism"] = "throttle" if throttled else "none"
    tk["blocking"] = False if th else None
    tk["accessible"] = True if th else None  # no rates: nothing was measured, a failure
    tk["x_confidence"] = 0.9 if throttled else (0.7 if th else 0.0)
    tk["x_status"] = "anomaly" if throttled else ("ok" if th else "failure")
