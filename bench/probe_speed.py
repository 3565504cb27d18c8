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

Each repeat runs twice, alternately: by default (a QUIC handshake for the https
sites that advertise HTTP/3: one farm host in three) and with --no-quic (OONI's
web_connectivity work alone), so the HTTP/3 step's cost is read side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tamperscope.lab import manager

OONI_SECONDS_PER_URL = 2.0


def one_run(lst: Path, out: Path, parallel: int, extra: str) -> dict[str, float] | None:
    """`tamperscope run web_connectivity` over the list in the client namespace: rate, CPU per URL, QUIC."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "run", "web_connectivity",
                                            "--list", str(lst), "--parallel", str(parallel), "--yes",
                                            "--no-progress", "-o", str(out), *extra.split()]),
                         env=manager.client_env(), capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        print(res.stderr[-2000:])
        return None
    ms = [json.loads(line) for line in out.read_text().splitlines()]
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    quic = [q for m in ms for q in m["test_keys"].get("quic_handshakes") or ()]
    return {"n": len(ms), "ok": sum(1 for m in ms if m["test_keys"].get("blocking") is False),
            "quic": len(quic), "quic_ok": sum(1 for q in quic if q.get("failure") is None),
            "wall": wall, "rate": len(ms) / wall, "cpu": (user + system) * 1000 / len(ms),
            "user": user * 1000 / len(ms), "sys": system * 1000 / len(ms), "load": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--urls", type=int, default=1000)
    ap.add_argument("--parallel", type=int, default=64)
    ap.add_argument("--delay-ms", type=float, default=25.0)
    ap.add_argument("--extra", default="", help="extra arguments for tamperscope run, e.g. --no-network-events")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs (fresh URLs each time); the table gives the median and the best (default 3)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ts-bench-"))
    prof = work / "bench.toml"
    prof.write_text(f'name = "bench"\ndescription = "none, with {args.delay_ms} ms one-way delay"\n'
                    f"[network]\ndelay_ms = {args.delay_ms}\n")
    lst = work / "urls.txt"
    manager.down()
    manager.up(str(prof))
    runs: list[dict[str, float]] = []
    bare: list[dict[str, float]] = []  # the same runs with --no-quic, alternately: OONI's work alone
    try:
        ping = manager.run_in(manager.A.NS_CLIENT, ["ping", "-c", "5", "-i", "0.2", manager.A.FARM[0]],
                              capture_output=True, text=True).stdout
        rtt = float(ping.strip().splitlines()[-1].split("=")[1].split("/")[1]) / 1000
        for k in range(args.repeat):
            for label, extra in (("default", args.extra), ("no-quic", f"{args.extra} --no-quic")):
                # fresh names each run: nothing is cached by a resolver between runs
                urls = [f"{'https' if i % 2 else 'http'}://www.site{i}.run{k}{label}.bench.example/"
                        for i in range(args.urls)]
                lst.write_text("\n".join(urls) + "\n")
                out = work / f"out{k}{label}.jsonl"
                run = one_run(lst, out, args.parallel, extra)
                if run is None:
                    return 1
                (runs if label == "default" else bare).append(run)
    finally:
        manager.down()
    bound = args.parallel / (4 * rtt)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    best_rate = max(r["rate"] for r in runs)
    best_cpu = min(r["cpu"] for r in runs)
    print(f"probe speed: {args.urls} URLs (half https) x {args.repeat} runs, --parallel {args.parallel}, "
          f"delay_ms {args.delay_ms} {args.extra}")
    print(f"  {'metric':34} {'median':>9} {'best':>9}")
    print(f"  {'measured RTT (ms)':34} {rtt * 1000:9.1f}")
    print(f"  {'wall time (s)':34} {med('wall'):9.1f} {min(r['wall'] for r in runs):9.1f}")
    print(f"  {'URLs/s end to end':34} {med('rate'):9.1f} {best_rate:9.1f}   target >= 50")
    print(f"  {'network bound P/(4 x RTT) (URLs/s)':34} {bound:9.1f}")
    print(f"  {'probe CPU per URL (ms)':34} {med('cpu'):9.2f} {best_cpu:9.2f}   target <= 5")
    print(f"  {'  of which user / system (ms)':34} {med('user'):4.2f}/{med('sys'):4.2f}")
    print(f"  {'measurements not blocked':34} {min(r['ok'] for r in runs):9.0f}   of {args.urls} (all should be)")
    q = runs[0]
    print(f"  {'QUIC handshakes (HTTP/3 sites)':34} {q['quic']:9.0f}   {q['quic_ok']} succeeded; the farm's https "
          "hosts advertise HTTP/3 one in three, as about a third of real sites do")
    nq_cpu = statistics.median(r["cpu"] for r in bare)
    nq_rate = statistics.median(r["rate"] for r in bare)
    print(f"  {'the same with --no-quic (alternately)':34} {nq_cpu:9.2f} {min(r['cpu'] for r in bare):9.2f}   "
          f"ms CPU per URL, {nq_rate:.1f} URLs/s: OONI's work alone; the HTTP/3 step costs "
          f"{med('cpu') - nq_cpu:.2f} ms per URL here ({(med('cpu') - nq_cpu) * args.urls / max(q['quic'], 1):.1f} "
          "per QUIC handshake)")
    print(f"  {'speed-up vs OONI (1 URL / 2 s)':34} {med('rate') * OONI_SECONDS_PER_URL:8.0f}x")
    print(f"  {'load average during the runs':34} {', '.join(format(r['load'], '.1f') for r in runs + bare)}"
          "   (other work on this machine inflates CPU per URL)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
