"""Benchmark: the probe's end-to-end rate in the lab, with a real RTT.

    .venv/bin/python -m bench.probe_speed [--urls 1000] [--parallel 64] [--delay-ms 25]

Lab profile `none` plus `delay_ms` (one-way, each direction: RTT >= 2 x delay),
N unblocked URLs (http and https), `tamperscope run web_connectivity --parallel P`
inside the client namespace. Prints wall time, URLs/s, the probe's CPU ms per
URL (user+sys of the probe process only, from its rusage), and the RTT lower
bound: one URL needs at least ~4 round trips (DNS, TCP, TLS, HTTP), so
P / (4 x RTT) URLs/s is what the network alone would allow.

Targets (issue 3): >= 50 URLs/s end to end on this 2-core machine, helper and lab
included (>= 100x OONI Probe's median of one URL per 2 s), and <= 5 ms of
probe CPU per URL. OONI's rate is quoted, not measured here (no internet).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tamperscope.lab import manager

OONI_SECONDS_PER_URL = 2.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--urls", type=int, default=1000)
    ap.add_argument("--parallel", type=int, default=64)
    ap.add_argument("--delay-ms", type=float, default=25.0)
    ap.add_argument("--extra", default="", help="extra arguments for tamperscope run, e.g. --no-network-events")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ts-bench-"))
    prof = work / "bench.toml"
    prof.write_text(f'name = "bench"\ndescription = "none, with {args.delay_ms} ms one-way delay"\n'
                    f"[network]\ndelay_ms = {args.delay_ms}\n")
    urls = [f"{'https' if i % 2 else 'http'}://www.site{i}.bench.example/" for i in range(args.urls)]
    lst = work / "urls.txt"
    lst.write_text("\n".join(urls) + "\n")
    out = work / "out.jsonl"
    manager.down()
    manager.up(str(prof))
    try:
        ping = manager.run_in(manager.A.NS_CLIENT, ["ping", "-c", "5", "-i", "0.2", manager.A.FARM[0]],
                              capture_output=True, text=True).stdout
        rtt = float(ping.strip().splitlines()[-1].split("=")[1].split("/")[1]) / 1000
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "run", "web_connectivity",
                                                "--list", str(lst), "--parallel", str(args.parallel), "--yes",
                                                "--no-progress", "-o", str(out), *args.extra.split()]),
                             env=manager.client_env(), capture_output=True, text=True)
        wall = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if res.returncode != 0:
            print(res.stderr[-2000:])
            return 1
    finally:
        manager.down()
    ms = [json.loads(line) for line in out.read_text().splitlines()]
    ok = sum(1 for m in ms if m["test_keys"].get("blocking") is False)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rate = len(ms) / wall
    bound = args.parallel / (4 * rtt)
    print(f"probe speed: {len(ms)} URLs (half https), --parallel {args.parallel}, delay_ms {args.delay_ms} {args.extra}")
    print(f"  {'metric':34} {'value':>12}")
    print(f"  {'measured RTT (ms)':34} {rtt * 1000:12.1f}")
    print(f"  {'wall time (s)':34} {wall:12.1f}")
    print(f"  {'URLs/s end to end':34} {rate:12.1f}   target >= 50")
    print(f"  {'network bound P/(4 x RTT) (URLs/s)':34} {bound:12.1f}")
    print(f"  {'probe CPU per URL (ms)':34} {cpu * 1000 / len(ms):12.2f}   target <= 5")
    print(f"  {'measurements not blocked':34} {ok:12d}   (all should be)")
    print(f"  {'speed-up vs OONI (1 URL / 2 s)':34} {rate * OONI_SECONDS_PER_URL:11.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
