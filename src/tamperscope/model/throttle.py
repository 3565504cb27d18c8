"""Whether the rounds of a throttling measurement show a throttle: the probe's rule, which the analysis re-applies.

The throttling nettest fetches one resource from one address, alternately with the target's SNI/Host and with an
innocent one, and records each round (``test_keys.rounds``: each fetch's ``kbps``, ``bytes``, ``seconds``, and
whether the two can have got the same resource). `judge` reads those rounds and gives ``x_throttle``.

Throttled means both:

* the target's median rate is under `RATIO` times the control's (four times slower), and
* the slowdown costs real time: fetching the resource (the control's median bytes) at the target's rate takes at
  least `MIN_DELAY_S` longer than at the control's.

The second condition is the one a rate alone cannot give. A small resource over a fast path is fetched in a few
milliseconds, so its rate is mostly latency and scheduling: on a busy machine a 30 KB fetch took 7 ms instead of 2
ms (2 of 3 rounds), a median "ratio" of 0.2454, and the rate rule alone called it a 33 Mbit/s throttle. A throttle
is a cap that holds for the length of a transfer; under a fifth of a second of difference, none can be told from
jitter. The price: a cap is seen only when the resource is big enough for it (50 KB shows caps up to about 2 Mbit/s;
a bigger resource shows higher ones).

Rounds are measurement content, hostile when read back: anything that is not a finite positive number is no rate.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

RATIO = 0.25        # the target at least four times slower than the control
MIN_DELAY_S = 0.2   # ... and slower by at least this many seconds over the resource
MAX_ROUNDS = 1000   # rounds read at most (hostile input)


def _number(value: Any) -> float | None:
    """A finite positive number (not a bool), else None."""
    if type(value) is bool or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int past a float's range
        return None
    return number if math.isfinite(number) and number > 0 else None


def _fetch(round_: Mapping[str, Any], which: str) -> tuple[float | None, float | None]:
    """(kbps, bytes) of one fetch of a round."""
    fetch = round_.get(which)
    if not isinstance(fetch, Mapping):
        return None, None
    return _number(fetch.get("kbps")), _number(fetch.get("bytes"))


def judge(rounds: Any) -> dict[str, Any] | None:
    """``x_throttle`` from the recorded rounds (without ``innocent_name``), or None when no round of the same
    resource gave both a target and a control rate."""
    if not isinstance(rounds, list):
        return None
    targets: list[float] = []
    controls: list[float] = []
    sizes: list[float] = []
    for round_ in rounds[:MAX_ROUNDS]:
        if not isinstance(round_, Mapping) or round_.get("same_resource") is not True:
            continue
        target, _ = _fetch(round_, "target")
        control, size = _fetch(round_, "control")
        if target is not None:
            targets.append(target)
        if control is not None:
            controls.append(control)
            if size is not None:
                sizes.append(size)
    if not targets or not controls:
        return None
    tkbps, ckbps = statistics.median(targets), statistics.median(controls)
    ratio = tkbps / ckbps
    kilobits = statistics.median(sizes) * 8 / 1000 if sizes else 0.0
    delay = kilobits / tkbps - kilobits / ckbps  # seconds more, for the resource at the target's rate
    throttled = ratio < RATIO and delay >= MIN_DELAY_S
    return {"target_kbps": round(tkbps, 1), "control_kbps": round(ckbps, 1), "ratio": round(ratio, 4),
            "delay_s": round(delay, 4), "cap_kbps": round(tkbps, 1) if throttled else None, "throttled": throttled}


__all__ = ["MIN_DELAY_S", "RATIO", "judge"]
