"""Benchmark: what a resume of `remote` costs in memory and time, with the output's keys kept as 16-byte digests
(`probe.seen.Seen`, as the probe keeps them) and, side by side, as a set of the key strings (as it kept them until
December 2026).

    .venv/bin/python -m bench.resume [--sizes 1000000,4000000] [--tmc]

For each size N: a list of N domains and two vantages, and an output that holds every domain through the first
vantage and half of them through the second, as a run killed three quarters of the way leaves it (1.5 N lines,
each a small remote_dns measurement). Each way runs in a process of its own, with the domains already read (as
`remote` holds them): it reads the output (`engine.scan_output`, with `Seen` or with a set of the strings, frozen
as it was), then says which pairs are left (`remote._held` and `remote._todo`; for the strings, the
comprehension the probe ran). Printed: the seconds of each step, the peak resident memory above what the process
held before reading the output (the kernel's VmHWM, reset first) and what is still resident after. The lines are
small (about 160 bytes), so that the keys' cost is not hidden in the parsing: a measurement as the lab writes one is
about 4.8 KB, and its parse time is printed beside. ``--tmc`` adds 15.5M domains (TMC's count): a 3.7 GB output,
about 6 GB of memory at once, and ten minutes.
"""

from __future__ import annotations

import argparse
import random
import string
import subprocess
import sys
import tempfile
from pathlib import Path

from .lists import TMC_DOMAINS

VANTAGES = ["198.18.2.7", "198.18.2.8"]

CHILD = r"""
import gc, sys, time
from pathlib import Path
import numpy, orjson  # the modules, before the baseline
from tamperscope.probe import engine, remote

way, domains_path, output = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
vantages = sys.argv[4].split(",")

def status(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field)) * 1024

domains = domains_path.read_text().split()  # as remote holds its list: one string a domain
gc.collect()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # VmHWM back to VmRSS: the peak from here is the resume's
base = status("VmRSS")
t0 = time.perf_counter()
if way == "digests":
    resume = engine.scan_output(output, "remote_dns", key=remote._key)
    t1 = time.perf_counter()
    held = remote._held(resume.seen, vantages, domains)
    skipped = sum(mask.count(1) for mask in held.values())
    left = sum(len(todo) for _, todo in remote._todo(vantages, domains, held))
else:  # strings: the probe until December 2026, the same reading with a set of the keys
    class Strings:
        def __init__(self):
            self.keys = set()
        def add(self, key):
            self.keys.add(key)
        def freeze(self):
            self.keys = frozenset(self.keys)  # as it was: the set copied, both held for a moment
            return self
        def once(self, keys):  # asked only for --recheck's inputs: none here
            return bytes(len(list(keys)))
    engine.Seen = Strings
    seen = engine.scan_output(output, "remote_dns", key=remote._key).seen.keys
    t1 = time.perf_counter()
    vs, ds = set(vantages), set(domains)
    skipped = sum(1 for key in seen if (parts := key.split(" ", 1)) and parts[0] in vs and parts[-1] in ds)
    del vs, ds
    left = 0
    for v in vantages:
        left += len([d for d in domains if remote.resume_key(v, d) not in seen])
t2 = time.perf_counter()
print(orjson.dumps({"read": t1 - t0, "asked": t2 - t1, "skipped": skipped, "left": left,
                    "peak": status("VmHWM") - base, "kept": status("VmRSS") - base}).decode())
"""


def write(root: Path, n: int, seed: int) -> tuple[Path, Path]:
    rnd = random.Random(seed)
    domains = root / f"domains-{n}.txt"
    output = root / f"out-{n}.jsonl"
    names = [f"{''.join(rnd.choices(string.ascii_lowercase, k=rnd.randint(6, 12)))}{i}.com" for i in range(n)]
    domains.write_text("\n".join(names) + "\n")
    with output.open("w") as f:
        for v, share in ((VANTAGES[0], names), (VANTAGES[1], names[: n // 2])):
            for d in share:
                f.write('{"annotations":{"engine_name":"tamperscope"},"test_name":"remote_dns","input":"%s",'
                        '"test_keys":{"vantage":"%s","x_mechanism":"none"}}\n' % (d, v))
    return domains, output


def lab_like(domain: str, vantage: str) -> bytes:
    """A remote_dns measurement shaped as the lab's are (`make demo`'s remote-dns.jsonl: 4.8-5.5 KB a line): five
    queries, ten network events, the envelope."""
    import orjson

    def query(i: int, host: str, resolver: str, ip: str, tag: str) -> dict[str, object]:
        return {"answers": [{"answer_type": "A", "ipv4": ip, "ttl": 300}], "engine": "udp", "failure": None,
                "hostname": host, "query_type": "A", "resolver_address": f"{resolver}:53", "resolver_hostname": None,
                "resolver_port": None, "t0": 0.0049606039974605665 * i, "t": 0.007746281997242477 * i, "tags": [tag],
                "transaction_id": i, "raw_response": "bPuBgAABAAEAAAAAA2FicwV0d2ltZwNjb20AAAEAAcAMAAEAAQAAASwABMYTARQ="}

    queries = [query(1, "example.com", vantage, "198.19.1.6", "vantage_before"),
               query(2, domain, "198.19.0.8", "198.19.1.20", "control"),
               query(3, domain, "198.19.0.8", "198.19.1.20", "control"),
               query(4, domain, vantage, "198.19.1.20", "test"),
               query(5, "example.com", vantage, "198.19.1.6", "vantage_after")]
    events = [{"address": f"{vantage}:53", "failure": None, "num_bytes": 29 + i, "operation": op, "proto": "udp",
               "t0": 0.0048469100001966 * i, "t": 0.004850486002396792 * i, "tags": [], "transaction_id": i // 2 + 1}
              for i, op in enumerate(["write_to", "read_from"] * 5)]
    m = {"annotations": {"engine_name": "tamperscope", "platform": "linux", "vantage": vantage,
                         "measured_from": "outside"},
         "data_format_version": "0.2.0", "input": domain, "measurement_start_time": "2026-12-06 16:16:38",
         "probe_asn": "AS64500", "probe_cc": "ZZ", "probe_ip": "127.0.0.1",
         "probe_network_name": "LABTELECOM tamperscope lab access ISP",
         "report_id": "20261206T161638Z_remotedns_ZZ_64500_n1_vsvCWrpw5YLNLwvc", "resolver_asn": "AS64500",
         "resolver_ip": vantage, "resolver_network_name": "LABTELECOM tamperscope lab access ISP",
         "software_name": "tamperscope", "software_version": "0.1.0", "test_helpers": {},
         "test_keys": {"vantage": vantage, "control_domain": "example.com", "domain": domain, "queries": queries,
                       "x_dns_duplicate_responses": [], "tcp_connect": [], "tls_handshakes": [], "requests": [],
                       "network_events": events, "x_asn": {"198.19.1.6": 64511, "198.19.1.20": 64511},
                       "blocking": False, "accessible": True, "x_mechanism": "none", "x_confidence": 0.9,
                       "x_evidence": ["test_keys.queries[3]"], "x_fingerprints": [], "x_status": "ok"},
         "test_name": "remote_dns", "test_runtime": 0.0172, "test_start_time": "2026-12-06 16:16:38",
         "test_version": "0.1.0"}
    return orjson.dumps(m)


def parse_cost(repeat: int = 20_000) -> tuple[int, float]:
    """A lab-like line's size and what orjson takes to parse it, in µs (the best of five)."""
    import time

    import orjson

    line = lab_like("abs.twimg.com", VANTAGES[0])
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(repeat):
            orjson.loads(line)
        best = min(best, (time.perf_counter() - t) / repeat * 1e6)
    return len(line), best


def run(way: str, domains: Path, output: Path) -> dict[str, float]:
    import orjson

    res = subprocess.run([sys.executable, "-c", CHILD, way, str(domains), str(output), ",".join(VANTAGES)],
                         capture_output=True, text=True, check=False)
    if res.returncode:
        sys.exit(f"bench.resume: the {way} child failed: {res.stderr.strip().splitlines()[-1:]}")
    out: dict[str, float] = orjson.loads(res.stdout)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="bench.resume", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,4000000", help="domains, comma-separated")
    ap.add_argument("--tmc", action="store_true", help=f"add {TMC_DOMAINS:,} domains (TMC's count)")
    args = ap.parse_args()
    sizes = sorted({int(x) for x in args.sizes.split(",") if x} | ({TMC_DOMAINS} if args.tmc else set()))
    mib = 1 << 20
    print("resume of remote: an output holding 1.5 N of the 2 N (vantage, domain) pairs; the keys kept as digests "
          "(the probe) and as strings (before), each in its own process")
    print(f"{'domains':>11} {'lines':>11} {'way':>8} {'read s':>7} {'asked s':>8} {'peak MiB':>9} {'kept MiB':>9} "
          f"{'B/line':>7} {'skipped':>11} {'left':>10}")
    with tempfile.TemporaryDirectory(prefix="ts-bench-resume-") as tmp:
        for n in sizes:
            domains, output = write(Path(tmp), n, n)
            rows = {way: run(way, domains, output) for way in ("strings", "digests")}
            if rows["strings"]["skipped"] != rows["digests"]["skipped"] or \
                    rows["strings"]["left"] != rows["digests"]["left"]:
                sys.exit(f"bench.resume: the two ways disagree: {rows}")
            lines = n + n // 2
            for way, r in rows.items():
                print(f"{n:>11,} {lines:>11,} {way:>8} {r['read']:>7.1f} {r['asked']:>8.1f} {r['peak'] / mib:>9.0f} "
                      f"{r['kept'] / mib:>9.0f} {r['kept'] / lines:>7.1f} {int(r['skipped']):>11,} "
                      f"{int(r['left']):>10,}")
            print(f"{'':>11} {'':>11} {'ratio':>8} {rows['digests']['read'] / rows['strings']['read']:>6.2f}x "
                  f"{rows['digests']['asked'] / rows['strings']['asked']:>7.2f}x "
                  f"{rows['digests']['peak'] / rows['strings']['peak']:>8.2f}x "
                  f"{rows['digests']['kept'] / rows['strings']['kept']:>8.2f}x")
            output.unlink()
            domains.unlink()
            extra = (rows["digests"]["read"] - rows["strings"]["read"]) / lines * 1e6
            size, parse = parse_cost()
            print(f"{'':>11} {'':>11} the digests' read costs {extra:+.1f} µs a line; a remote_dns measurement as the "
                  f"lab writes it ({size:,} bytes) takes {parse:.1f} µs to parse alone")


if __name__ == "__main__":
    main()
