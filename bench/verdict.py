"""Micro-benchmark: the web_connectivity verdict function alone, in CPU microseconds per measurement.

    .venv/bin/python -m bench.verdict [--n 2000] [--repeats 5]

Replicates the 50 shared OONI samples (../shared/data/ooni-samples) to ``--n``
measurements with bench.analyze's variations (report_id, input, network, time),
each copy parsed from its own JSON bytes so no two share objects, and times
(CPU time, best of ``--repeats`` passes over the whole list):

* ``observe``: the normalised observations alone;
* ``observe + verdict``: ``web_connectivity_verdict`` without a fingerprint matcher;
* ``observe + verdict + fingerprints``: with the analysis' memoised matcher, as
  ``tamperscope analyze`` calls it (every body repeats here, so the memo answers);
* ``probe finish``: ``observe`` + ``summary_keys`` + ``verdict_from`` with the matcher,
  as the probe's web_connectivity ``finish`` step calls them;
* ``orjson parse``: the parse of the same lines, the yardstick of bench.analyze.

The machine is shared: CPU time (``time.process_time``) and the best pass are the
figures to read.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import gc
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
SAMPLES = ROOT.parent / "shared" / "data" / "ooni-samples" / "generated"


def corpus_lines(n: int, seed: int = 5) -> list[bytes]:
    """``n`` JSON lines, round-robin over the samples, varied as bench.analyze varies them."""
    samples = [orjson.loads((p / "measurement.json").read_bytes()) for p in sorted(SAMPLES.iterdir())
               if (p / "measurement.json").is_file()]
    rng = random.Random(seed)
    networks = [("IT", 137), ("RU", 12389), ("TR", 9121), ("IR", 58224), ("CN", 4134), ("MM", 9988)]
    base = dt.datetime(2024, 1, 1)
    out = []
    for i in range(n):
        m = copy.copy(samples[i % len(samples)])
        cc, asn = networks[rng.randrange(len(networks))]
        when = base + dt.timedelta(seconds=rng.randrange(60 * 86400))
        m["report_id"] = f"{when:%Y%m%dT%H%M%SZ}_webconnectivity_{cc}_{asn}_n1_{i:016x}"
        m["probe_cc"], m["probe_asn"] = cc, f"AS{asn}"
        m["measurement_start_time"] = m["test_start_time"] = when.strftime("%Y-%m-%d %H:%M:%S")
        variant = i // len(samples) % 40
        m["input"] = f"{m['input']}{'&' if '?' in m['input'] else '?'}v={variant}" if variant else m["input"]
        out.append(orjson.dumps(m))
    return out


def best_cpu(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        c = time.process_time()
        fn()
        best = min(best, time.process_time() - c)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="measurements (replicated samples)")
    ap.add_argument("--repeats", type=int, default=5, help="passes; the best (least CPU) is reported")
    args = ap.parse_args()

    from tamperscope.analysis.verdicts import default_matcher
    from tamperscope.model.consistency import observe
    from tamperscope.model.summary import summary_keys
    from tamperscope.model.verdict import verdict_from, web_connectivity_verdict

    lines = corpus_lines(args.n)
    ms: list[dict[str, Any]] = [orjson.loads(line) for line in lines]
    matcher = default_matcher()
    for m in ms[:100]:  # warm the fingerprint memo and any lazy compilation
        web_connectivity_verdict(m, matcher)

    def parse() -> None:
        for line in lines:
            orjson.loads(line)

    def obs_only() -> None:
        for m in ms:
            observe(m)

    def verdict() -> None:
        for m in ms:
            web_connectivity_verdict(m)

    def verdict_fp() -> None:
        for m in ms:
            web_connectivity_verdict(m, matcher)

    def finish() -> None:
        for m in ms:
            obs = observe(m)
            summary_keys(m, obs)
            verdict_from(obs, m, matcher)

    rows = [("orjson parse", parse), ("observe", obs_only), ("observe + verdict", verdict),
            ("observe + verdict + fingerprints", verdict_fp), ("probe finish (observe+summary+verdict)", finish)]
    n = len(ms)
    print(f"{n:,} measurements replicated from the OONI samples; CPU time, best of {args.repeats}")
    parse_us = None
    for name, fn in rows:
        us = best_cpu(fn, args.repeats) / n * 1e6
        parse_us = us if parse_us is None else parse_us
        print(f"{name:42s} {us:8.1f} us  {us / parse_us:6.1f}x parse")


if __name__ == "__main__":
    main()
