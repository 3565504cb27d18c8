"""Benchmark: ``tamperscope analyze`` against plain JSON parsing, memory, scaling, Dask, aggregates.

    .venv/bin/python -m bench.analyze [--small 20000] [--large 100000] [--huge 200000] [--heavy 3000]
                                      [--heavy-kb 32] [--cp 20000] [--rows 1000000] [--skip-dask]

Builds a corpus of OONI-format web_connectivity measurements by replicating the
50 shared OONI samples (../shared/data/ooni-samples), varying report_id, input,
probe_asn, probe_cc and the time of each copy so that every uid differs, then
prints tables for:

1. speed: orjson alone parsing the file (read + ``orjson.loads`` per line) and
   ``tamperscope analyze --workers 1`` on the same file in the same run
   (re-deriving every verdict, matching the whole fingerprint database and
   writing the store), as a ratio and as measurements/s against OONI's fastpath
   (~180/s on one core, as measured in issue 5); and three floors: parse plus a mere
   visit of every value the verdict reads (what any Python verdict function costs
   before it tests anything), parse plus the probe's verdict function alone, and
   parse plus the store's own work alone (the content uid's hash of the canonical
   JSON and the raw line's zstd: what no faster verdict function lowers); and analyze
   itself with its verdict function replaced by a constant (every other step as it is,
   the store included): what the 3x target leaves for the verdict function;
   analyze runs three times, and the median is the figure (the machine is noisy);
1b. like for like: a scorer in the manner of OONI's fastpath (stored verdict
   trusted, one substring search per fingerprint) on the same files as analyze,
   the replicated corpus and one whose bodies are 32 KiB and never repeat;
1c. Censored Planet's published lines (Hyperquack v2 and Satellite v2.2, generated as its scans
   write them, real blockpages among their pages): analyze's rate and its ratio to the parse;
2. peak RSS of analyze at the small (three runs), the large and the huge corpus
   (growth should be none): exact, from the kernel's high-water mark, per run and per
   window of as many measurements as the small corpus;
3. scaling: ``--workers 2`` and ``--engine dask`` on a LocalCluster of 2 workers;
4. the explorer's aggregate queries (aggregates.py) over 1,000,000 verdict rows (one in 20 a blocking_rules
   measurement, with its four rules rows):
   p50/p95 latency (target p95 <= 200 ms); and the report's ``changes`` (when a site
   became blocked or unblocked on a network), which the explorer does not run.

Each analyze run is its own process (`python -m tamperscope analyze`), timed by
wall clock from the outside and reporting its own peak RSS (ru_maxrss of the
process and of its children). The library-only time (``pipeline.run``, without
interpreter start and fingerprint compilation) is reported too.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
SAMPLES = ROOT.parent / "shared" / "data" / "ooni-samples" / "generated"
OONI_FASTPATH_RATE = 180.0  # measurements/s on one core (issue 5)

RUNNER = r"""
import json, resource, sys, threading, time
t0 = time.monotonic()
from tamperscope.analysis import pipeline
from tamperscope.analysis.store import Store
from tamperscope.analysis.verdicts import default_matcher
opts = json.loads(sys.argv[1])
paths, db, window = opts.pop("paths"), opts.pop("db"), opts.pop("window", 0)
t_import = time.monotonic()
if opts.pop("null_verdict", False):
    # The floor under analyze that no verdict function lowers: every other step as it is (read, parse,
    # envelope, content uid, observation and verdict rows, the store), the verdict a constant.
    from tamperscope.model.verdict import Verdict
    constant = Verdict(False, True, "none", 0.9, "ok")
    pipeline.verdict_for = lambda m, matcher=None: constant
    opts["fingerprints"] = False
if opts.get("engine", "local") == "local" and opts.get("fingerprints", True):
    default_matcher()
t_ready = time.monotonic()
store = Store(db)

def hwm_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024

# Exact peaks: the kernel's high-water mark of this process's RSS, read and reset
# ("5" > clear_refs) every 0.1 s, so no spike between two readings goes unseen.
marks, stop = [], threading.Event()
def watch():
    while not stop.wait(0.1):
        marks.append((store.stats.accepted, hwm_mb()))
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
if window:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak of the run, not of the imports
    threading.Thread(target=watch, daemon=True).start()
stats = pipeline.run(paths, store, pipeline.Options(**opts))
store.close()
t_done = time.monotonic()
stop.set()
marks.append((stats.accepted, hwm_mb()))
windows = {}
for n, mb in marks:
    k = min(n // window, max(0, stats.accepted - 1) // window) if window else 0
    windows[k] = max(windows.get(k, 0.0), mb)
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
self_rss, child_rss = me.ru_maxrss, kids.ru_maxrss
cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
print(json.dumps({"run": t_done - t_ready, "startup": t_ready - t0, "accepted": stats.accepted, "cpu": cpu,
                  "new": stats.new, "rejected": stats.rejected, "rss_kb": self_rss, "child_rss_kb": child_rss,
                  "matcher_calls": stats.matcher_calls, "matcher_hits": stats.matcher_hits,
                  "cap_raised": store.streaming_limit_raised,
                  "exact_peak_mb": max(mb for _, mb in marks), "window_peaks_mb": [windows[k] for k in sorted(windows)]}))
"""

TRACER = r"""
import gc, json, sys
from tamperscope.analysis import pipeline
from tamperscope.analysis.store import Store
opts = json.loads(sys.argv[1])
every = opts.pop("every")
class Traced(Store):
    seen = 0
    mark = 0
    def _transaction(self, batches):
        super()._transaction(batches)
        self.seen += sum(len(b.order) for b in batches)
        if self.seen >= self.mark:
            self.mark += every
            duck = self.con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()[0] or 0
            rss = int(open("/proc/self/statm").read().split()[1]) * 4096
            print(json.dumps({"n": self.seen, "rss_mb": rss / 2**20, "duckdb_mb": duck / 2**20,
                              "py_blocks": sys.getallocatedblocks(), "py_objects": len(gc.get_objects())}),
                  flush=True)
store = Traced(opts["db"])
pipeline.run(opts["paths"], store, pipeline.Options(workers=1))
store.close()
"""


def memory_trace(path: Path, db: Path, every: int) -> list[dict[str, Any]]:
    """RSS, DuckDB's own memory and Python's live heap every ``every`` measurements of one analyze run."""
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(db.with_name(db.name.removesuffix(".duckdb") + ".raw"), ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    spec = json.dumps({"paths": [str(path)], "db": str(db), "every": every})
    out = subprocess.run([sys.executable, "-c", TRACER, spec], capture_output=True, text=True, env=env, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


# --------------------------------------------------------------------------- corpus


def load_samples() -> list[dict[str, Any]]:
    return [orjson.loads((p / "measurement.json").read_bytes()) for p in sorted(SAMPLES.iterdir())
            if (p / "measurement.json").is_file()]


def build_corpus(path: Path, n: int, seed: int = 5) -> int:
    """Write ``n`` measurements, round-robin over the samples, each copy with its own identity."""
    samples = load_samples()
    rng = random.Random(seed)
    networks = [(cc, f"AS{asn}") for cc, asn in
                [("IT", 137), ("IT", 3269), ("RU", 12389), ("RU", 8359), ("TR", 9121), ("IR", 58224),
                 ("IR", 197207), ("CN", 4134), ("MM", 9988), ("TM", 20661), ("KZ", 9198), ("BY", 6697)]]
    base = dt.datetime(2024, 1, 1)
    written = 0
    with path.open("wb") as f:
        for i in range(n):
            m = copy.deepcopy(samples[i % len(samples)]) if i < len(samples) else _shallow(samples[i % len(samples)])
            cc, asn = networks[rng.randrange(len(networks))]
            when = base + dt.timedelta(seconds=rng.randrange(60 * 86400))
            m["report_id"] = f"{when:%Y%m%dT%H%M%SZ}_webconnectivity_{cc}_{asn[2:]}_n1_{i:016x}"
            m["probe_cc"], m["probe_asn"] = cc, asn
            m["measurement_start_time"] = m["test_start_time"] = when.strftime("%Y-%m-%d %H:%M:%S")
            variant = i // len(samples) % 40  # each input recurs on several networks: confirmations happen
            m["input"] = f"{m['input']}{'&' if '?' in m['input'] else '?'}v={variant}" if variant else m["input"]
            f.write(orjson.dumps(m) + b"\n")
            written += 1
    return written


def build_heavy_corpus(path: Path, n: int, body_kb: int) -> int:
    """``n`` measurements whose HTTP bodies are padded to ``body_kb`` KiB and unique per copy.

    The shared samples carry small bodies (~0.8 KB per measurement on average) and the
    replicated corpus repeats them, so the fingerprint memo answers almost every lookup.
    Real pages weigh tens of kilobytes and never repeat byte for byte: this corpus pads each
    body with the samples' own HTML and marks it with its copy number.
    """
    samples = load_samples()
    filler = "\n".join(b for m in samples for r in (m["test_keys"].get("requests") or ())
                       if isinstance(b := (r.get("response") or {}).get("body"), str) and len(b) > 1000)
    pad = filler * (body_kb * 1024 // max(1, len(filler)) + 1)
    with path.open("wb") as f:
        for i in range(n):
            m = orjson.loads(orjson.dumps(samples[i % len(samples)]))
            m["report_id"] = f"20240101T000000Z_webconnectivity_IT_137_n1_{i:016x}"
            for r in m["test_keys"].get("requests") or ():
                response = r.get("response") or {}
                body = response.get("body")
                if isinstance(body, str) and body:
                    response["body"] = f"<!-- copy {i} -->{body}{pad[:max(0, body_kb * 1024 - len(body))]}"
            f.write(orjson.dumps(m) + b"\n")
    return n


BLOCKPAGES = ROOT.parent / "shared" / "data" / "blockpages" / "citizenlab"
_RESET = "read tcp 198.18.0.2:40000->{vp}:443: read: connection reset by peer"
_TIMEOUT = "read udp 198.18.0.2:6280->{vp}:53: i/o timeout"


def build_cp_corpus(path: Path, n: int, seed: int = 11) -> int:
    """``n`` lines of Censored Planet's published data, as its scans write them (docs/hyperquackv2.rst and
    satellitev2.rst of censoredplanet/censoredplanet): half Hyperquack v2 (http, https, echo and discard, each
    line a domain's trials between two of the vantage's control probes), half Satellite v2.2 (a resolver asked
    for a domain between two queries for the control domain, the answers tagged as the control resolvers' were).
    What the lines show is drawn at random: the template, a real blockpage from Citizen Lab's collection, another
    page, a reset, silence; an answer the controls share, a forged one, NXDOMAIN, silence. Every line its own
    vantage, domain and time, so that every uid differs."""
    rng = random.Random(seed)
    pages = [q.read_text(errors="replace") for q in sorted(BLOCKPAGES.glob("*.html"))[:40]]
    countries = [("Belarus", "BY"), ("Iran", "IR"), ("Russia", "RU"), ("Turkmenistan", "TM"), ("China", "CN"),
                 ("Myanmar", "MM"), ("Kazakhstan", "KZ"), ("Turkey", "TR")]
    base = dt.datetime(2022, 3, 1, 10)

    def at(when: dt.datetime, offset: float, go: bool = False) -> str:
        t = when + dt.timedelta(seconds=offset)
        return t.strftime("%Y-%m-%d %H:%M:%S.%f") + " -0500 EST" if go else t.strftime("%Y-%m-%dT%H:%M:%S.%f-05:00")

    def quack(i: int, vp: str, place: dict[str, str], domain: str, when: dt.datetime) -> dict[str, Any]:
        service = ("http", "https", "echo", "discard")[i % 4]
        control = {"matches_template": True, "control_url": "control-a459b35b8d53c7eb.com"}
        shown = rng.random()
        if shown < 0.5:
            trial: dict[str, Any] = {"matches_template": True}
        elif shown < 0.7 and service == "http":
            trial = {"matches_template": False, "response": {"status_line": "200 OK", "headers": {
                "Content-Type": ["text/html"], "Server": ["nginx"]}, "body": rng.choice(pages)}}
        elif shown < 0.8 and service in ("http", "echo"):
            trial = {"matches_template": False, "response": {"status_line": "403 Forbidden", "headers": {},
                                                             "body": f"<html><p>{domain} is not allowed</p></html>"}
                     if service == "http" else "HTTP/1.1 403 Forbidden"}
        elif shown < 0.9:
            trial = {"matches_template": False, "error": _RESET.format(vp=vp)}
        else:
            trial = {"matches_template": False, "error": "net/http: request canceled (Client.Timeout exceeded while "
                                                         "awaiting headers)"}
        probes = [control, *([trial] * (1 if trial["matches_template"] else 4)), control]
        return {"vp": vp, "location": place, "service": service, "test_url": domain,
                "response": [{**r, "start_time": at(when, 2 * k), "end_time": at(when, 2 * k + 0.4)}
                             for k, r in enumerate(probes)],
                "anomaly": not trial["matches_template"], "controls_failed": False, "stateful_block": False,
                "tag": when.strftime("%Y-%m-%dT%H:%M:%S")}

    def satellite(i: int, vp: str, place: dict[str, str], domain: str, when: dt.datetime) -> dict[str, Any]:
        control = "control-1e0a3d04a0f6.com"

        def trial(k: int, url: str, answers: dict[str, list[str]] | None = None, rcode: int = 0,
                  error: str | None = None) -> dict[str, Any]:
            return {"url": url, "has_type_a": bool(answers), "rcode": rcode, "error": error,
                    "response": {ip: {"http": "ab12", "cert": "", "asname": "EXAMPLE", "asnum": 64511,
                                      "matched": tags} for ip, tags in (answers or {}).items()},
                    "start_time": at(when, k, go=True), "end_time": at(when, k + 0.1, go=True)}

        shown = rng.random()
        if shown < 0.6:
            middle = [trial(2, domain, {f"198.18.0.{i % 200 + 20}": ["ip", "http", "asnum", "asname"]})]
        elif shown < 0.8:
            middle = [trial(2, domain, {"198.18.7.7": []})]
        elif shown < 0.9:
            middle = [trial(2, domain, rcode=3)]
        else:
            middle = [trial(2 + k, domain, rcode=-1, error=_TIMEOUT.format(vp=vp)) for k in range(4)]
        trials = [trial(1, control, {"198.18.0.10": ["ip"]}), *middle, trial(7, control, {"198.18.0.10": ["ip"]})]
        return {"vp": vp, "location": place, "test_url": domain, "response": trials, "passed_liveness": True,
                "connect_error": False, "in_control_group": True, "anomaly": 0.6 <= shown,
                "confidence": {"average": 0 if shown < 0.6 else 100, "matches": [],
                               "untagged_controls": False, "untagged_response": False},
                "start_time": at(when, 0, go=True), "end_time": at(when, 8, go=True),
                "excluded": False, "exclude_reason": []}

    with path.open("wb") as f:
        for i in range(n):
            name, code = countries[rng.randrange(len(countries))]
            vp = f"198.{18 + i % 2}.{i // 256 % 256}.{i % 256}"
            when = base + dt.timedelta(seconds=i)
            line = (quack if i % 2 else satellite)(i // 2, vp, {"country_name": name, "country_code": code},
                                                   f"site{i // 40}.example", when)
            f.write(orjson.dumps(line) + b"\n")
    return n


def _shallow(sample: dict[str, Any]) -> dict[str, Any]:
    return dict(sample)  # only top-level keys change; test_keys are shared and never mutated


# --------------------------------------------------------------------------- measurements


def parse_time(path: Path) -> tuple[float, float, int]:
    """(wall, cpu) seconds for orjson alone to parse every line of the file (best of 3), and the line count."""
    best, best_cpu, count = float("inf"), float("inf"), 0
    loads = orjson.loads
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        count = 0
        with path.open("rb", buffering=1 << 20) as f:
            for line in f:
                loads(line)
                count += 1
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best, best_cpu, count


def analyze(paths: Sequence[Path], db: Path, **options: Any) -> dict[str, Any]:
    """One analyze run in a fresh process: wall time and RSS (sampled) from outside, the rest from inside."""
    import psutil

    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(db.with_name(db.name.removesuffix(".duckdb") + ".raw"), ignore_errors=True)
    spec = json.dumps({"paths": [str(p) for p in paths], "db": str(db), **options})
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, spec], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    samples: list[float] = []  # MB, the whole process tree (workers and Dask included)
    watched = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            samples.append(sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.25)
    out, err = proc.communicate()
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"analyze failed:\n{err.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    result["wall"] = wall
    steady = samples[len(samples) // 5:] or samples or [0.0]
    result["tree_peak_mb"] = max(samples or [0.0])
    n = len(samples)
    result["fifths_mb"] = [max(samples[i * n // 5:(i + 1) * n // 5] or [0.0]) for i in range(5)]
    result["tree_median_mb"] = statistics.median(steady)
    return result


_VERDICT_RECORDS = ("queries", "x_dns_duplicate_responses", "tcp_connect", "tls_handshakes", "requests", "control",
                    "x_control_request")


def _visit(value: Any) -> None:
    kind = type(value)
    if kind is dict:
        for item in value.values():
            _visit(item)
    elif kind is list:
        for item in value:
            _visit(item)


def visit_floor(path: Path) -> tuple[float, float]:
    """(wall, cpu) seconds to parse every line and merely visit every value of the records the verdict
    function reads (no test, no logic, nothing built): a floor under any verdict function written in Python."""
    loads = orjson.loads
    t, c = time.perf_counter(), time.process_time()
    with path.open("rb", buffering=1 << 20) as f:
        for line in f:
            test_keys = loads(line)["test_keys"]
            for name in _VERDICT_RECORDS:
                _visit(test_keys.get(name))
    return time.perf_counter() - t, time.process_time() - c


def store_floor(path: Path) -> tuple[float, float]:
    """(wall, cpu) seconds to parse every line and do only what the store must for each, whatever the verdict: the
    content uid's hash (SHA-256 of the canonical JSON, as `pipeline.content_uid`) and the raw line's compression
    (zstd, in the store's frames). A floor under analyze that no faster verdict function lowers."""
    import hashlib

    from tamperscope.analysis.store import _ZSTD, FRAME_BYTES

    loads, dumps, sha256, sort = orjson.loads, orjson.dumps, hashlib.sha256, orjson.OPT_SORT_KEYS
    t, c = time.perf_counter(), time.process_time()
    frame: list[bytes] = []
    held = 0
    with path.open("rb", buffering=1 << 20) as f:
        for line in f:
            sha256(dumps(loads(line), option=sort)).digest()
            frame.append(line)
            held += len(line)
            if held >= FRAME_BYTES:
                _ZSTD.compress(b"".join(frame), asbytes=True)
                frame, held = [], 0
    if frame:
        _ZSTD.compress(b"".join(frame), asbytes=True)
    return time.perf_counter() - t, time.process_time() - c


def verdict_floor(path: Path, memo: bool = True) -> tuple[float, float]:
    """(wall, cpu) seconds to parse every line and run only the verdict function with the fingerprint matcher:
    the least any analysis reusing the probe's verdict function can cost.

    With ``memo=False`` the fingerprint database is matched against every response (no exact memo): what a
    corpus whose bodies never repeat would cost, since every body of the replicated corpus repeats.
    """
    from tamperscope.analysis.verdicts import default_matcher, verdict_for

    matcher: Any = default_matcher()
    if not memo:
        db = matcher.db
        matcher = lambda body, headers: tuple(m.id for m in db.match_response(body, headers))  # noqa: E731
    loads = orjson.loads
    t, c = time.perf_counter(), time.process_time()
    with path.open("rb", buffering=1 << 20) as f:
        for line in f:
            verdict_for(loads(line), matcher)
    return time.perf_counter() - t, time.process_time() - c


def fastpath_needles() -> list[str]:
    """One substring per HTTP fingerprint of our database (its longest literal, else its pattern text)."""
    from tamperscope.analysis.verdicts import default_matcher

    db = default_matcher().db
    return [max(c.literals, key=len) if c.literals else c.fingerprint.pattern for c in db._compiled]


def fastpath_style(path: Path, needles: Sequence[str]) -> tuple[float, int]:
    """(seconds, measurements) for a scorer in the manner of OONI's fastpath, on one core: parse each line,
    trust the ``blocking`` the probe stored, and run one substring search per fingerprint over each response
    body. Not OONI's code (that one has 1,729 fingerprints and does more per measurement): the part of its
    work that grows with bodies and fingerprints, on the same file as analyze."""
    loads = orjson.loads
    count = 0
    t = time.perf_counter()
    with path.open("rb", buffering=1 << 20) as f:
        for line in f:
            m = loads(line)
            count += 1
            tk = m.get("test_keys") or {}
            tk.get("blocking")  # trusted as stored
            for r in tk.get("requests") or ():
                body = (r.get("response") or {}).get("body")
                if isinstance(body, dict):
                    body = body.get("data")
                if isinstance(body, str) and body:
                    for needle in needles:
                        if needle in body:
                            break
    return time.perf_counter() - t, count


def cli_time(path: Path, db: Path) -> float:
    """Wall time of the real command line, ``tamperscope analyze --workers 1``."""
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(db.with_name(db.name.removesuffix(".duckdb") + ".raw"), ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tamperscope", "analyze", str(path), "--db", str(db), "--workers", "1",
                    "--quiet"], check=True, env=env, capture_output=True)
    return time.perf_counter() - t


def reanalyse_time(db: Path, workers: int) -> float:
    """Seconds to derive again every verdict of ``db`` from its raw bytes (`reanalysis.reanalyse_all`, as
    ``analyze --reanalyse all`` does), pool start included."""
    from tamperscope.analysis import reanalysis
    from tamperscope.analysis.store import Store

    with Store(db, create=False) as store:
        started = time.perf_counter()
        pages = reanalysis.pages(store.con, size=reanalysis.CLI_CHUNK)
        totals = reanalysis.reanalyse_all(store, pages, workers=workers)
        elapsed = time.perf_counter() - started
    assert totals.missing == 0 and totals.changed == 0, totals
    return elapsed


def aggregate_latency(rows: int, db: Path, repeats: int = 30) -> list[tuple[str, float, float]]:
    """p50/p95 milliseconds of each explorer aggregate over ``rows`` synthetic verdict rows."""
    from tamperscope.analysis import aggregates
    from tamperscope.analysis import store as st
    from tamperscope.collector.queries import MeasurementQuery, Reader, list_measurements
    from tamperscope.explorer import feeds, pages

    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    s = st.Store(db)
    s.con.execute(f"""
        INSERT INTO verdicts BY NAME
        WITH r AS (
            SELECT i, (hash(i * 7) % 2000)::BIGINT AS site, (hash(i * 13) % 300)::BIGINT AS net,
                   (hash(i * 17) % (365 * 86400))::BIGINT AS sec, (hash(i * 3) % 10)::BIGINT AS o,
                   (hash(i) % 6)::BIGINT AS mech, (hash(i * 5) % 50)::BIGINT AS sig, (hash(i) % 12)::BIGINT AS kind,
                   (hash(i * 11) % 2)::BIGINT AS conf
            FROM range({rows}) t(i))
        SELECT printf('%016x', i) AS measurement_uid,
               CASE WHEN i % 4 = 3 THEN 'dnscheck' WHEN i % 20 = 5 THEN 'blocking_rules'
                    WHEN i % 20 = 1 THEN (['telegram', 'whatsapp', 'facebook_messenger', 'signal'])[1 + (i // 20) % 4]
                    ELSE 'web_connectivity' END AS test_name,
               -- one measurement in 20 is a messaging app's, which has no input
               CASE WHEN i % 20 <> 1 THEN 'https://site' || site || '.example/' END AS input,
               CASE WHEN i % 20 <> 1 THEN 'site' || site || '.example' END AS domain,
               (['IT','RU','TR','IR','CN','MM','TM','KZ','BY','DE','US','BR'])[1 + net % 12] AS probe_cc,
               'AS' || (1000 + net) AS probe_asn,
               'Network ' || net AS probe_network_name,
               (DATE '2024-01-01' + (sec // 86400)::INTEGER) AS day,
               TIMESTAMP '2024-01-01' + to_seconds(sec) AS measurement_start_time,
               CASE WHEN o < 3 THEN 'dns' ELSE 'false' END AS blocking,
               o >= 3 AS accessible,
               CASE WHEN o < 3 THEN
                   (['dns.poison','dns.nxdomain','tcp.rst','tls.rst','http.blockpage','throttle'])[1 + mech]
                   ELSE 'none' END AS mechanism,
               0.8 AS confidence,
               CASE WHEN o < 3 THEN 'anomaly' WHEN o = 9 THEN 'failure' ELSE 'ok' END AS status,
               []::VARCHAR[] AS evidence,
               -- a blockpage's fingerprint (one of 60) on blockpages, a DNS one on a third of the poisoned answers
               CASE WHEN o < 3 AND mech = 4 THEN ['cp/bench_page_' || (sig + kind) % 60]
                    WHEN o < 3 AND mech = 0 AND sig % 3 = 0 THEN ['cl/bench_dns_' || kind]
                    ELSE []::VARCHAR[] END AS fingerprints,
               -- half the keys fixed (a box's constant IP-ID), half a key per packet (a counter): folded
               CASE WHEN sig = 0 THEN (CASE WHEN kind < 6 THEN 'tcp/RA/ttl64/win0/ipid' || kind
                                            ELSE 'udp/ttl64/ipid' || (i % 65536) END) END AS signature,
               CASE WHEN sig = 0 THEN (['Fortinet','Netsweeper','Sandvine'])[1 + kind % 3] END AS equipment,
               '1' AS analysis_version,
               CASE WHEN o < 3 THEN (CASE WHEN conf = 0 THEN 'confirmed' ELSE 'anomaly' END)
                    WHEN o = 9 THEN 'failure' ELSE 'ok' END AS outcome
        FROM r""")
    # the measurements' own rows (the report's sources join them): OONI Probe's in several versions, ours, and
    # Censored Planet's published data
    s.con.execute("""
        INSERT INTO measurements BY NAME
        SELECT measurement_uid, (hash(measurement_uid) >> 1)::BIGINT AS uid_key, input, domain, test_name, probe_cc,
               probe_asn, probe_network_name, measurement_start_time, day,
               (['ooniprobe-cli', 'ooniprobe-android', 'tamperscope', 'censoredplanet-hyperquack'])
                   [1 + (hash(measurement_uid) % 4)::INTEGER] AS software_name,
               '3.' || (hash(measurement_uid || 'v') % 20) || '.0' AS software_version
        FROM verdicts""")
    # one measurement in 20 is a blocking_rules one, with its four layers' rules (the explorer's area pages
    # and the report read them joined with the verdicts)
    s.con.execute("""
        INSERT INTO rules
        SELECT v.measurement_uid, l.layer,
               (['exact', 'domain_and_subdomains', 'ends_with', 'substring', 'not_blocked', 'undetermined'])
                   [1 + (hash(v.measurement_uid || l.layer) % 6)::INTEGER] AS rule,
               'site' AS keyword, 'q1' || v.domain AS overblocks
        FROM verdicts v, (VALUES ('dns'), ('dns_path'), ('tls'), ('http')) l(layer)
        WHERE v.test_name = 'blocking_rules'""")
    # Citizen Lab-style test lists: a global one naming 1,500 of the 2,000 sites (a third of them as pages, not
    # the whole site) and a country one filing 200 of them otherwise for RU
    from tamperscope.analysis.categories import TestList, store_lists
    from tamperscope.model.categories import NAMES
    from tamperscope.model.inputs import ListEntry

    codes = sorted(NAMES)
    store_lists(s.con, [
        TestList("global.csv", "ZZ", [ListEntry(f"https://site{n}.example/" + ("page/" if n % 3 == 0 else ""),
                                                codes[n % len(codes)]) for n in range(1500)]),
        TestList("ru.csv", "RU", [ListEntry(f"https://site{n}.example/", codes[(n + 1) % len(codes)])
                                  for n in range(0, 2000, 10)])])
    s.con.execute("CHECKPOINT")
    reader = Reader(s)
    filtered = aggregates.Filters(probe_cc="RU", since="2024-03-01", until="2024-06-30")
    queries: list[tuple[str, Callable[[], object]]] = [
        ("timeline", lambda: aggregates.timeline(s)),
        ("timeline (RU, 4 months)", lambda: aggregates.timeline(s, filtered)),
        ("per_domain", lambda: aggregates.per_domain(s)),
        ("per_domain (one network)", lambda: aggregates.per_domain(s, aggregates.Filters(probe_asn="AS1042"))),
        ("per_network", lambda: aggregates.per_network(s)),
        ("per_test", lambda: aggregates.per_test(s)),
        ("per_mechanism", lambda: aggregates.per_mechanism(s)),
        ("per_country", lambda: aggregates.per_country(s)),
        ("domain_network (heatmap)", lambda: aggregates.domain_network(s)),
        ("signatures", lambda: aggregates.signatures(s)),
        ("blockpages (fingerprints matched)", lambda: aggregates.blockpages(s)),
        ("blockpages (one country: the explorer's)",
         lambda: aggregates.blockpages(s, aggregates.Filters(probe_cc="RU"))),
        ("per_network (one fingerprint: its measurements)",
         lambda: aggregates.per_network(s, aggregates.Filters(fingerprint="cp/bench_page_7"))),
        ("blocking_rules (the report's: 100 rows of 200,000 rules)", lambda: aggregates.blocking_rules(s)),
        ("blocking_rules (one country: the explorer's)", lambda: aggregates.blocking_rules(s, aggregates.Filters(probe_cc="RU"))),
        ("blocking_rules (one domain)", lambda: aggregates.blocking_rules(s, aggregates.Filters(domain="site7.example"))),
        ("sources (the report's: by the software that made them)", lambda: aggregates.sources(s)),
        ("sources (one country)", lambda: aggregates.sources(s, aggregates.Filters(probe_cc="RU"))),
        ("changes (the report's; outcomes flip at random)", lambda: aggregates.changes(s)),
        ("changes (one country: the explorer's country page)", lambda: aggregates.changes(s, aggregates.Filters(probe_cc="RU"))),
        ("changes (one network)", lambda: aggregates.changes(s, aggregates.Filters(probe_asn="AS1042"))),
        ("apps (the report's: 4 apps x 300 networks)", lambda: aggregates.apps(s)),
        ("apps (one country: the explorer's)", lambda: aggregates.apps(s, aggregates.Filters(probe_cc="RU"))),
        ("per_category (the home page's; 2 lists)", lambda: aggregates.per_category(s)),
        ("per_category (one country: the explorer's)",
         lambda: aggregates.per_category(s, aggregates.Filters(probe_cc="RU"))),
        ("per_domain (one category)", lambda: aggregates.per_domain(s, aggregates.Filters(category_code="NEWS"))),
        ("timeline (one category, one country)",
         lambda: aggregates.timeline(s, aggregates.Filters(category_code="NEWS", probe_cc="RU"))),
        ("OONI's aggregation: by day and country",
         lambda: aggregates.counts_by(s, aggregates.Slice(), ["measurement_start_day", "probe_cc"])),
        ("OONI's aggregation: by category and country",
         lambda: aggregates.counts_by(s, aggregates.Slice(), ["category_code", "probe_cc"])),
        ("OONI's aggregation: one country by week",
         lambda: aggregates.counts_by(s, aggregates.Slice(probe_cc=("RU",)), ["measurement_start_day"], "week")),
        # the explorer's /chart (OONI's MAT): the counts, the form's choices, the chart and the table's links
        ("chart page (MAT): by day, a row of bars per country", lambda: pages.chart(s, {"axis_y": "probe_cc"})),
        ("chart page (MAT): one country by network and technique",
         lambda: pages.chart(s, {"probe_cc": "RU", "axis_x": "probe_asn", "axis_y": "mechanism"})),
        # the Atom feeds (the rows, the entries and the document): the newest anomalies, one country's changes
        ("feed: the newest 50 anomalies (/feed.atom?outcome=anomaly)",
         lambda: feeds.atom(feeds.Feed(id="x", title="x", self_url="x", page_url="x", entries=feeds.measurement_entries(
             list_measurements(reader, MeasurementQuery(anomaly=True, limit=50), count=False)[0], "http://x")))),
        ("feed: one country's changes (/changes.atom?probe_cc=RU)",
         lambda: feeds.atom(feeds.Feed(id="x", title="x", self_url="x", page_url="x", entries=feeds.change_entries(
             aggregates.changes(s, aggregates.Filters(probe_cc="RU"), limit=50), "http://x")))),
        # /new-blockpages' queries (its count, and the newest 1,000 of each kind): this store has no raw lines,
        # so no page is read; reading 2,000 pages costs 0.1-0.3 s more (docs/analysis.md)
        ("new blockpages page: its queries (no raw lines here)", lambda: pages.new_blockpages(reader, {})),
    ]
    # the whole HTML report, as `report --html` and serve's /api/v1/export/report.html make it (plotly read once)
    from plotly.offline import get_plotlyjs

    from tamperscope.analysis.report import html_report

    js = get_plotlyjs()
    whole = [("HTML report, whole (the report's; 5 runs)", lambda: html_report(s, plotly_js=js)),
             ("HTML report, one country (the explorer's link; 5 runs)",
              lambda: html_report(s, aggregates.Filters(probe_cc="RU"), plotly_js=js))]
    out = []
    for name, fn in [*queries, *whole]:
        fn()  # warm
        samples = []
        for _ in range(repeats if (name, fn) not in whole else 5):
            t = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t) * 1000)
        samples.sort()
        out.append((name, statistics.median(samples), samples[max(0, int(round(0.95 * len(samples))) - 1)]))
    s.close()
    return out


# --------------------------------------------------------------------------- output


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=20_000, help="measurements in the main corpus")
    ap.add_argument("--large", type=int, default=100_000, help="measurements in the memory-growth corpus")
    ap.add_argument("--huge", type=int, default=200_000,
                    help="measurements in a third corpus, to show memory stays flat past DuckDB's cap (0: skip)")
    ap.add_argument("--heavy", type=int, default=3_000, help="measurements in the corpus with heavier bodies")
    ap.add_argument("--heavy-kb", type=int, default=32, help="KiB per HTTP body in that corpus")
    ap.add_argument("--rows", type=int, default=1_000_000, help="verdict rows for the aggregate queries")
    ap.add_argument("--cp", type=int, default=20_000,
                    help="lines of Censored Planet's published data in their own corpus (0: skip)")
    ap.add_argument("--skip-dask", action="store_true")
    ap.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = ap.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="ts-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        small, large = work / f"corpus-{args.small}.jsonl", work / f"corpus-{args.large}.jsonl"
        n_small = build_corpus(small, args.small)
        size_mb = small.stat().st_size / 1e6
        print(f"corpus: {n_small:,} web_connectivity measurements replicated from {len(load_samples())} OONI "
              f"samples, {size_mb:.0f} MB ({small.stat().st_size / n_small / 1e3:.1f} kB each)")
        from tamperscope.analysis.verdicts import default_matcher
        print(f"fingerprint database: {default_matcher().pattern_count:,} HTTP patterns, all matched")

        load = os.getloadavg()[0]
        parse_s, parse_cpu, _ = parse_time(small)
        visit_s, visit_cpu = visit_floor(small)
        floor_s, floor_cpu = verdict_floor(small)
        store_s, store_cpu = store_floor(small)
        nomemo_s, nomemo_cpu = verdict_floor(small, memo=False)
        # Three runs (section 2 reads their memory too): the median is the figure, the spread is the machine's.
        repeats = [analyze([small], work / f"w1-{i}.duckdb", workers=1, window=args.small) for i in range(3)]
        one = sorted(repeats, key=lambda r: r["run"])[1]
        # analyze with its verdict a constant, twice (the faster is the figure): what the rest of analyze costs
        null = min((analyze([small], work / f"null-{i}.duckdb", workers=1, null_verdict=True) for i in range(2)),
                   key=lambda r: r["run"])
        cli = cli_time(small, work / "cli.duckdb")
        parse_again, _, _ = parse_time(small)
        parse_s = min(parse_s, parse_again)
        rate = one["accepted"] / one["run"]
        us = lambda s: f"{s / n_small * 1e6:.0f} us"  # noqa: E731
        print_table("1. speed, --workers 1 (same file, same run; wall clock, and CPU in brackets)",
                    ["step", "seconds", "per measurement", "vs parse"], [
            ["orjson parse only (read + loads)", f"{parse_s:.2f} ({parse_cpu:.2f})", us(parse_s), "1.0x"],
            ["parse + visit what the verdict reads (no logic)", f"{visit_s:.2f} ({visit_cpu:.2f})", us(visit_s),
             f"{visit_s / parse_s:.1f}x"],
            ["parse + verdict function only", f"{floor_s:.2f} ({floor_cpu:.2f})", us(floor_s),
             f"{floor_s / parse_s:.1f}x"],
            ["parse + the store's own work only (uid hash, zstd)", f"{store_s:.2f} ({store_cpu:.2f})", us(store_s),
             f"{store_s / parse_s:.1f}x"],
            ["parse + verdict function, fingerprint memo off", f"{nomemo_s:.2f} ({nomemo_cpu:.2f})", us(nomemo_s),
             f"{nomemo_s / parse_s:.1f}x"],
            ["analyze, library, verdict a constant (all the rest)", f"{null['run']:.2f}", us(null["run"]),
             f"{null['run'] / parse_s:.1f}x"],
            ["analyze, library (pipeline.run), median of 3", f"{one['run']:.2f}", us(one["run"]),
             f"{one['run'] / parse_s:.1f}x"],
            ["analyze, whole process (that run)", f"{one['wall']:.2f} ({one['cpu']:.2f})", us(one["wall"]),
             f"{one['wall'] / parse_s:.1f}x"],
            ["tamperscope analyze --workers 1 (CLI)", f"{cli:.2f}", us(cli), f"{cli / parse_s:.1f}x"],
        ])
        calls, hits = one["matcher_calls"], one["matcher_hits"]
        print(f"rate: {rate:,.0f} measurements/s = {rate / OONI_FASTPATH_RATE:.1f}x OONI fastpath "
              f"({OONI_FASTPATH_RATE:.0f}/s); the verdict function alone is {floor_s / parse_s:.1f}x the parse, "
              f"{100 * (floor_s - parse_s) / max(1e-9, one['run']):.0f}% of analyze")
        print(f"fingerprints: {calls:,} responses looked up, {hits:,} ({100 * hits / max(1, calls):.0f}%) answered "
              "from the exact memo (replicated bodies repeat)")
        print(f"without its verdict function, analyze still takes {null['run'] / parse_s:.1f}x the parse (reading, "
              "envelope, content uid, observation and verdict rows, the store): the 3x target leaves "
              f"{max(0.0, 3 * parse_s - null['run']) / n_small * 1e6:.0f} us per measurement for the verdict "
              f"function, which takes {(floor_s - parse_s) / n_small * 1e6:.0f} us")
        print("analyze, library, the three runs: " + ", ".join(f"{r['run']:.2f} s ({r['run'] / parse_s:.1f}x)"
                                                              for r in repeats))
        print(f"load average at start: {load:.2f}, after: {os.getloadavg()[0]:.2f} (2 cores, shared: other jobs "
              "skew wall times)")

        needles = fastpath_needles()
        heavy = work / f"corpus-heavy-{args.heavy_kb}k.jsonl"
        n_heavy = build_heavy_corpus(heavy, args.heavy, args.heavy_kb)
        like = []
        for name, path, n, result in ((small.name, small, n_small, one),
                                      (heavy.name, heavy, n_heavy, analyze([heavy], work / "heavy.duckdb", workers=1))):
            fp_s, _ = fastpath_style(path, needles)
            p_s, _, _ = parse_time(path)
            like.append([name, f"{path.stat().st_size / n / 1e3:.1f} kB", f"{p_s:.2f}",
                         f"{fp_s:.2f} ({n / fp_s:,.0f}/s)", f"{result['run']:.2f} ({n / result['run']:,.0f}/s)",
                         f"{fp_s / result['run']:.1f}x", f"{result['run'] / p_s:.1f}x"])
        heavy.unlink()
        print_table(f"1b. like for like: a fastpath-style scorer ({len(needles):,} substring searches per body, "
                    "stored verdict trusted) on the same files",
                    ["corpus", "per measurement", "parse s", "fastpath-style s", "analyze s (library)",
                     "analyze vs fastpath-style", "analyze vs parse"], like)
        print("(OONI's own fastpath, with its 1,729 fingerprints, measured ~180/s on real OONI measurements: "
              "the 'x OONI fastpath' figure above divides by that constant)")

        if args.cp:
            cp = work / f"censoredplanet-{args.cp}.jsonl"
            n_cp = build_cp_corpus(cp, args.cp)
            cp_parse, _, _ = parse_time(cp)
            cp_run = analyze([cp], work / "cp.duckdb", workers=1)
            print_table("1c. Censored Planet's published lines (half Hyperquack v2, half Satellite v2.2), read as "
                        "remote_web and remote_dns measurements, --workers 1",
                        ["corpus", "per line", "parse s", "analyze s (library)", "lines/s", "analyze vs parse"],
                        [[cp.name, f"{cp.stat().st_size / n_cp / 1e3:.1f} kB", f"{cp_parse:.2f}",
                          f"{cp_run['run']:.2f}", f"{n_cp / cp_run['run']:,.0f}", f"{cp_run['run'] / cp_parse:.1f}x"]])
            print(f"({cp_run['accepted']:,} of {n_cp:,} lines stored, each converted to OONI's format and judged by "
                  "the remote verdict functions; CP's scans hold millions of lines, so this rate is what a scan costs)")
            cp.unlink()

        n_large = build_corpus(large, args.large, seed=7)
        big = analyze([large], work / "w1-large.duckdb", workers=1, window=args.small)
        runs = [(small.name, n_small, one), (large.name, n_large, big)]
        if args.huge:
            huge = work / f"corpus-{args.huge}.jsonl"
            n_huge = build_corpus(huge, args.huge, seed=9)
            runs.append((huge.name, n_huge, analyze([huge], work / "w1-huge.duckdb", workers=1, window=args.small)))
            huge.unlink()
        # The small corpus's three runs of section 1: how far the peak of the same run moves by itself.
        small_peaks = [r["exact_peak_mb"] for r in repeats]
        runs[0] = (f"{small.name} (3 runs)", n_small, one)
        print_table("2. memory of analyze --workers 1: exact peak RSS (the kernel's VmHWM, reset every 0.1 s), "
                    "and RSS sampled every 0.25 s",
                    ["corpus", "measurements", "exact peak", "sampled peak", "median RSS", "DuckDB cap raised",
                     "run s"],
                    [[name, f"{n:,}",
                      (" / ".join(f"{p:.0f}" for p in small_peaks) if r is one else f"{r['exact_peak_mb']:.0f}") + " MB",
                      f"{r['tree_peak_mb']:.0f} MB", f"{r['tree_median_mb']:.0f} MB", str(r["cap_raised"]),
                      f"{r['run']:.1f}"] for name, n, r in runs])
        mid = statistics.median(small_peaks)
        print(f"the {n_small:,} run's exact peak, three times: {min(small_peaks):.0f}-{max(small_peaks):.0f} MB "
              f"(median {mid:.0f} MB; the spread is what one run moves by itself)")
        for _, n, r in runs[1:]:
            print(f"growth from {n_small:,} to {n:,}: exact peak {r['exact_peak_mb'] - mid:+.0f} MB against the "
                  f"median of the {n_small:,} runs ({r['exact_peak_mb'] - max(small_peaks):+.0f} against their "
                  f"highest); sampled peak {r['tree_peak_mb'] - one['tree_peak_mb']:+.0f} MB, "
                  f"median RSS {r['tree_median_mb'] - one['tree_median_mb']:+.0f} MB")
        for _, n, r in runs[1:]:
            print(f"exact peak in each {n_small:,} measurements of the {n:,} run: "
                  + ", ".join(f"{x:.0f}" for x in r["window_peaks_mb"]) + " MB")
        print("(a trend would show in these windows: each is as long as the small run; the first holds the start-up)")
        from tamperscope.analysis.store import INGEST_MEMORY_LIMIT
        trace = memory_trace(large, work / "trace.duckdb", max(4096, n_large // 8))
        print_table(f"2b. inside one run over {n_large:,}: Python's heap, DuckDB's buffers (capped at "
                    f"{INGEST_MEMORY_LIMIT} while analyze runs) and RSS",
                    ["measurements", "RSS", "DuckDB", "Python blocks", "Python objects"],
                    [[f"{t['n']:,}", f"{t['rss_mb']:.0f} MB", f"{t['duckdb_mb']:.0f} MB", f"{t['py_blocks']:,}",
                      f"{t['py_objects']:,}"] for t in trace])
        if len(trace) >= 2:
            print(f"Python heap from the first to the last row: {trace[-1]['py_blocks'] - trace[0]['py_blocks']:+,} "
                  f"blocks; DuckDB {trace[-1]['duckdb_mb'] - trace[0]['duckdb_mb']:+.0f} MB (its limit bounds it)")

        two = analyze([small], work / "w2.duckdb", workers=2)
        rows = [["local, --workers 1", f"{one['run']:.2f}", f"{n_small / one['run']:,.0f}", "1.00x",
                 f"{one['tree_peak_mb']:.0f} MB"],
                ["local, --workers 2", f"{two['run']:.2f}", f"{n_small / two['run']:,.0f}",
                 f"{one['run'] / two['run']:.2f}x", f"{two['tree_peak_mb']:.0f} MB"]]
        if not args.skip_dask:
            dask = analyze([small], work / "dask.duckdb", engine="dask", workers=2, split_bytes=16 << 20)
            rows.append(["dask LocalCluster, 2 workers", f"{dask['run']:.2f}", f"{n_small / dask['run']:,.0f}",
                         f"{one['run'] / dask['run']:.2f}x", f"{dask['tree_peak_mb']:.0f} MB"])
        print_table("3. scaling (library time incl. pool/cluster start; 2 cores)",
                    ["engine", "seconds", "measurements/s", "speed-up", "peak RSS, all processes"], rows)

        again = [(w, reanalyse_time(work / "w1-0.duckdb", w)) for w in (1, 2)]
        print_table(f"3b. re-analysis of the {n_small:,} stored measurements from their raw bytes (analyze "
                    "--reanalyse all: read, derive, replace a page of 2,048 per transaction)",
                    ["workers", "seconds", "measurements/s", "vs analyze --workers 1 from the file"],
                    [[str(w), f"{t:.2f}", f"{n_small / t:,.0f}", f"{t / one['run']:.2f}x"] for w, t in again])

        latencies = aggregate_latency(args.rows, work / "agg.duckdb")
        print_table(f"4. explorer aggregates over {args.rows:,} verdict rows (30 runs each, the HTML reports 5)",
                    ["query", "p50 ms", "p95 ms"], [[n, f"{a:.1f}", f"{b:.1f}"] for n, a, b in latencies])
        worst = max(b for n, _, b in latencies if "the report's" not in n and not n.startswith("HTML report"))
        print(f"worst p95 of the explorer's aggregates: {worst:.1f} ms (target <= 200 ms); 'changes' and "
              "'blocking_rules' over the whole store are the report's, and the explorer runs them for one country, "
              "network or domain")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
