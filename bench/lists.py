"""Benchmark: reading long lists, as `remote` and `run` read them before they measure anything.

    .venv/bin/python -m bench.lists [--sizes 100000,1000000,3600000] [--tmc] [--urls 100000,1000000]

TMC measured 15.5M domains; researchers start from lists of that order (Tranco, zone files). For each size, a
list of random names, one per line (as ``remote dns --list`` takes it), then the same names as a Tranco-style
ranked CSV (``1,example.com``), and for `run` the same names as URLs (``http://name/``). Each is read in a process
of its own, by the function the command runs (`remote._inputs`, `command._inputs`): the domains or URLs checked,
each once. Printed: the entries, the file's size, the seconds, the peak resident memory of the process above what
its modules took before the list was read, and the same for a floor, the file read and split into its lines,
nothing checked. ``--tmc`` adds 15.5M domains (210 MB, about a minute and 2 GB here).
"""

from __future__ import annotations

import argparse
import os
import random
import string
import subprocess
import sys
import tempfile
from pathlib import Path

TMC_DOMAINS = 15_500_000

# run in a process of its own: its peak resident memory is the reading's alone
CHILD = r"""
import argparse, resource, sys, time
from pathlib import Path
from tamperscope.nettests import web_connectivity
from tamperscope.probe import command, remote
kind, path = sys.argv[1], Path(sys.argv[2])
command.MAX_LIST = 1 << 30  # run's own cap (64 MiB) is for lists measured at a URL every second or two
args = argparse.Namespace(input=[], list=[path], category=None)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the interpreter and the modules
started = time.perf_counter()
if kind == "floor":
    n = len(path.read_bytes().decode().splitlines())
elif kind == "remote":
    n = len(remote._inputs(args, remote.KINDS["dns"], {}))
else:
    n = len(command._inputs(args, web_connectivity, None, (), {}))
seconds = time.perf_counter() - started
print(n, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)
"""


def write_lists(root: Path, n: int, seed: int) -> dict[str, Path]:
    rnd = random.Random(seed)
    names = ("".join(rnd.choices(string.ascii_lowercase, k=rnd.randint(6, 12))) + rnd.choice(
        (".com", ".net", ".org", ".tm", ".ru")) for _ in range(n))
    paths = {"plain": root / f"domains-{n}.txt", "ranked": root / f"ranked-{n}.csv", "urls": root / f"urls-{n}.txt"}
    with paths["plain"].open("w") as plain:
        for name in names:
            plain.write(name + "\n")
    with paths["plain"].open() as src, paths["ranked"].open("w") as ranked, paths["urls"].open("w") as urls:
        for rank, line in enumerate(src, 1):
            ranked.write(f"{rank},{line}")
            urls.write(f"http://{line.rstrip()}/\n")
    return paths


def measure(kind: str, path: Path) -> tuple[int, float, int] | str:
    """(entries, seconds, peak bytes) of a reading, or the last line it wrote when it failed (a list refused)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(path)], capture_output=True, text=True, env=env,
                         check=False)
    if out.returncode != 0:
        return (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1][:100]
    n, seconds, peak = out.stdout.split()
    return int(n), float(seconds), int(peak)


def sizes(value: str) -> list[int]:
    try:
        found = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of sizes: {value!r}") from None
    if not found or min(found) < 1:
        raise argparse.ArgumentTypeError(f"sizes are positive numbers: {value!r}")
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.lists", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=sizes, default=[100_000, 1_000_000, 3_600_000],
                    help="domains in each list (default 100000,1000000,3600000)")
    ap.add_argument("--urls", type=sizes, default=[100_000, 1_000_000],
                    help="sizes also read as run's URL lists (default 100000,1000000)")
    ap.add_argument("--tmc", action="store_true", help=f"add {TMC_DOMAINS:,} domains (TMC's count)")
    args = ap.parse_args(argv)
    counts = sorted(set(args.sizes + args.urls + ([TMC_DOMAINS] if args.tmc else [])))
    print(f"{'list':<22} {'entries':>11} {'MB':>7} {'seconds':>8} {'us/entry':>9} {'peak MB':>8} "
          f"{'x floor s':>9} {'peak/file':>9}")
    with tempfile.TemporaryDirectory(prefix="bench-lists-") as tmp:
        for n in counts:
            paths = write_lists(Path(tmp), n, seed=n)
            floor = measure("floor", paths["plain"])
            if isinstance(floor, str):
                raise SystemExit(f"bench.lists: reading {paths['plain']} failed: {floor}")
            _, floor_s, floor_peak = floor
            rows = [("floor (read, split)", "floor", paths["plain"])]
            if n in args.sizes or n == TMC_DOMAINS:
                rows += [("remote, one per line", "remote", paths["plain"]),
                         ("remote, ranked CSV", "remote", paths["ranked"])]
            if n in args.urls:
                rows.append(("run, URLs", "run", paths["urls"]))
            for label, kind, path in rows:
                found = floor if kind == "floor" else measure(kind, path)
                size = path.stat().st_size
                if isinstance(found, str):
                    print(f"{label:<22} {n:>11,} {size / 1e6:>7.1f} refused: {found}", flush=True)
                    continue
                got, seconds, peak = found
                print(f"{label:<22} {got:>11,} {size / 1e6:>7.1f} {seconds:>8.2f} {seconds / n * 1e6:>9.2f} "
                      f"{peak / 1e6:>8.0f} {seconds / floor_s:>9.1f} {peak / size:>9.1f}", flush=True)
            for path in paths.values():
                path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
