"""Benchmark: remote measurement's rate from the lab's outside vantage, with a real RTT.

    .venv/bin/python -m bench.remote [--domains 1000] [--per-vantage 32] [--web 40] [--delay-ms 25]

A profile that filters traffic entering the country (a DNS injection, an HTTP reset
and an SNI reset for a few names among many clean ones, `delay_ms` one way), then,
from the outside namespace:
1. `tamperscope remote dns` through the ISP resolver for N fresh names (every name is
   new, so the resolver recurses through the censor each time): measurements/s, the
   measurer's CPU per measurement, and the verdicts against what the profile does;
2. `tamperscope remote web` through the ISP's web server for M names, one at a time as
   the default is (residual blocking): measurements/s and the verdicts.

Each remote_dns measurement is five lookups (the control domain before and after, the
domain, the domain and the control domain through the trusted resolver) and waits
0.3 s for late answers, so P / (0.3 s + 3 x RTT) is what one vantage allows at P in
flight; a real run spreads its work over many vantages. OONI Probe measures one URL
every 2 s (quoted, not measured: no internet here).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tamperscope.lab import manager

OONI_SECONDS_PER_URL = 2.0
BLOCKED_DNS = ("inject-a.bench.example", "inject-b.bench.example")
BLOCKED_HTTP = ("rst-a.bench.example",)
BLOCKED_SNI = ("sni-a.bench.example",)

PROFILE = """name = "bench-remote"
description = "ingress filtering for a few names, {delay} ms one way"
[network]
delay_ms = {delay}
[[rule]]
id = "dns"
layer = "dns"
action = "inject"
domains = {dns}
answer = "127.0.0.1"
direction = "ingress"
[[rule]]
id = "http"
layer = "http"
action = "rst"
domains = {http}
direction = "ingress"
[[rule]]
id = "sni"
layer = "tls"
action = "rst"
domains = {sni}
direction = "ingress"
"""


def remote(kind: str, vantage: str, names: Path, out: Path, *extra: str) -> tuple[float, float, list[dict]]:
    """(wall seconds, the measurer's CPU seconds, measurements) of one remote run from the outside namespace."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "remote", kind, "--vantage", vantage,
                                            "--list", str(names), "--yes", "--no-progress", "-o", str(out), *extra],
                                           manager.A.NS_OUTSIDE), env=manager.client_env(), capture_output=True,
                         text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"remote {kind} failed:\n{res.stderr[-2000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, [json.loads(line) for line in out.read_text().splitlines()]


def scored(ms: list[dict], expected: dict[str, str]) -> tuple[int, Counter[str]]:
    """(measurements whose mechanism is the expected one, mechanisms seen)."""
    right = sum((m["test_keys"].get("x_mechanism") or "none") == expected.get(m["input"], "none") for m in ms)
    return right, Counter(m["test_keys"].get("x_mechanism") or "none" for m in ms)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domains", type=int, default=1000, help="names measured by remote dns (default 1000)")
    ap.add_argument("--per-vantage", type=int, default=32, help="remote dns measurements in flight (default 32)")
    ap.add_argument("--web", type=int, default=40, help="names measured by remote web (default 40)")
    ap.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay at the censor (default 25)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ts-bench-remote-"))
    prof = work / "bench-remote.toml"
    prof.write_text(PROFILE.format(delay=args.delay_ms, dns=json.dumps(BLOCKED_DNS), http=json.dumps(BLOCKED_HTTP),
                                   sni=json.dumps(BLOCKED_SNI)))
    dns_names = [*BLOCKED_DNS, *(f"site{i}.bench.example" for i in range(args.domains - len(BLOCKED_DNS)))]
    web_names = [*BLOCKED_HTTP, *BLOCKED_SNI, *(f"web{i}.bench.example" for i in range(args.web - 2))]
    (work / "dns.txt").write_text("\n".join(dns_names) + "\n")
    (work / "web.txt").write_text("\n".join(web_names) + "\n")
    manager.down()
    manager.up(str(prof))
    try:
        ping = manager.run_in(manager.A.NS_OUTSIDE, ["ping", "-c", "5", "-i", "0.2", manager.A.ISP_RESOLVER],
                              capture_output=True, text=True).stdout
        rtt = float(ping.strip().splitlines()[-1].split("=")[1].split("/")[1]) / 1000
        dns = remote("dns", manager.A.ISP_RESOLVER, work / "dns.txt", work / "dns.jsonl",
                     "--per-vantage", str(args.per_vantage), "--parallel", str(args.per_vantage))
        web = remote("web", manager.A.ISP_WEB, work / "web.txt", work / "web.jsonl")
    finally:
        manager.down()
    dns_right, dns_seen = scored(dns[2], dict.fromkeys(BLOCKED_DNS, "dns.injection"))
    web_right, web_seen = scored(web[2], {**dict.fromkeys(BLOCKED_HTTP, "http.rst"),
                                          **dict.fromkeys(BLOCKED_SNI, "tls.rst")})
    bound = args.per_vantage / (0.3 + 3 * rtt)
    print(f"remote measurement from the lab's outside vantage; RTT to the ISP resolver {rtt * 1000:.1f} ms "
          f"(delay_ms {args.delay_ms}); load average {os.getloadavg()[0]:.1f}")
    print(f"  {'run':44} {'measurements':>12} {'wall s':>7} {'per s':>7} {'CPU ms each':>11}  verdicts right")
    for label, (wall, cpu, ms), right in ((f"remote dns, 1 resolver, {args.per_vantage} in flight", dns, dns_right),
                                          ("remote web, 1 web server, one at a time", web, web_right)):
        print(f"  {label:44} {len(ms):12d} {wall:7.1f} {len(ms) / wall:7.1f} {cpu * 1000 / len(ms):11.2f}  "
              f"{right}/{len(ms)}")
    print(f"  remote dns: one vantage allows P / (0.3 s + 3 x RTT) = {bound:.0f}/s at P = {args.per_vantage}; "
          f"mechanisms {dict(dns_seen)}")
    print(f"  remote web: mechanisms {dict(web_seen)}")
    print(f"  vs OONI Probe (1 URL / 2 s, from inside): remote dns {len(dns[2]) / dns[0] * OONI_SECONDS_PER_URL:.0f}x "
          "per vantage")
    return 0


if __name__ == "__main__":
    sys.exit(main())
