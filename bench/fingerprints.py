"""Benchmark: the one-pass fingerprint matcher against a naive re.search-per-pattern loop.

Both run in the same process on the same inputs: the ordinary pages the unit
tests generate (tests/unit/test_fingerprints.py, same seed) and the 160 real
blockpages in ../shared/data/blockpages/citizenlab. The naive loop is what a
straightforward implementation does: decode the (capped) response once, then
``search`` every fingerprint's own regex over its whole region.

Run: .venv/bin/python bench/fingerprints.py   (or: python -m bench.fingerprints)
"""

from __future__ import annotations

import importlib.util
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # works from a checkout without an install

from tamperscope.wire import fingerprints as fpm  # noqa: E402

BLOCKPAGES = ROOT.parent / "shared" / "data" / "blockpages" / "citizenlab"
Response = tuple[bytes, tuple[tuple[str, str], ...], int | None]


def _test_module() -> ModuleType:
    path = ROOT / "tests" / "unit" / "test_fingerprints.py"
    spec = importlib.util.spec_from_file_location("test_fingerprints", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class NaiveMatcher:
    """Every fingerprint's regex, compiled once, searched one after another over the response."""

    def __init__(self, db: fpm.FingerprintDB) -> None:
        self.patterns: list[tuple[str, re.Pattern[str]]] = []
        for fp in db.fingerprints:
            if fp.kind == "dns":
                continue
            if fp.syntax == "substring":
                self.patterns.append((fp.where, re.compile(re.escape(fp.pattern))))
            else:
                self.patterns.append((fp.where, re.compile(fp.pattern, re.DOTALL)))

    def match(self, body: bytes, headers: Sequence[tuple[str, str]], status: int | None) -> int:
        head = fpm.serialise_head(status, headers)
        full = head + fpm.decode_body(body[: fpm.MAX_BODY_SCAN], headers)
        split, hits = len(head), 0
        for where, regex in self.patterns:
            lo, hi = {"header": (0, split), "body": (split, len(full))}.get(where, (0, len(full)))
            hits += regex.search(full, lo, hi) is not None
        return hits


def _median_us(fn: Callable[[bytes, tuple[tuple[str, str], ...], int | None], object], inputs: Sequence[Response]) -> float:
    samples = []
    for body, headers, status in inputs:
        started = time.perf_counter()
        fn(body, headers, status)
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples)


def main() -> int:
    started = time.perf_counter()
    db = fpm.FingerprintDB.load()
    load_s = time.perf_counter() - started
    naive = NaiveMatcher(db)
    tests = _test_module()
    ordinary: list[Response] = [(p.body, p.headers, p.status) for p in tests.ordinary_pages()]
    blockpages: list[Response] = [(p.read_bytes(), (), None) for p in sorted(BLOCKPAGES.glob("*.html"))]
    for body, headers, status in ordinary[:20]:  # warm caches
        db.classify_response(body, headers, status)
        naive.match(body, headers, status)

    evaluations = statistics.mean(db.classify_response(*r).regex_evaluations for r in ordinary)
    rows = []
    for name, inputs in (("ordinary page", ordinary), ("blockpage", blockpages)):
        if not inputs:
            continue
        ours = _median_us(db.classify_response, inputs)
        theirs = _median_us(naive.match, inputs)
        size = statistics.median(len(body) for body, _, _ in inputs)
        rows.append((f"{name} ({len(inputs)}, median {size / 1024:.0f} KiB)", ours, theirs))

    big = ordinary[0][0] * (10 * 1024 * 1024 // len(ordinary[0][0]) + 1)
    big_ms = _median_us(db.classify_response, [(big[: 10 * 1024 * 1024], (), None)] * 3) / 1000

    print(f"fingerprint matcher benchmark, Python {sys.version.split()[0]}")
    print(f"{'patterns loaded':34} {db.pattern_count:>8}   (+{len(db.fingerprints) - db.pattern_count} DNS answers)")
    print(f"{'  literal-indexed':34} {db.literal_indexed_count:>8}")
    print(f"{'  always-run':34} {len(db.always_run):>8}   {', '.join(db.always_run)}")
    print(f"{'  run as linear .* chains':34} {len(db.chains):>8}")
    print(f"{'  rejected by the guard':34} {len(db.rejected):>8}")
    print(f"{'anchors in the one scanner regex':34} {len(db.anchors):>8}")
    print(f"{'load + compile (once per process)':34} {load_s * 1000:>6.0f} ms")
    print(f"{'full-regex evaluations / ordinary':34} {evaluations:>8.1f}   (naive: {len(naive.patterns)})")
    print(f"{'10 MiB body (capped at 256 KiB)':34} {big_ms:>6.1f} ms")
    print()
    print(f"{'median µs per response':40} {'one-pass':>10} {'naive loop':>12} {'ratio':>7}")
    for label, ours, theirs in rows:
        print(f"{label:40} {ours:>10,.0f} {theirs:>12,.0f} {theirs / ours:>6.1f}x")
    if not blockpages:
        print(f"(no blockpages: {BLOCKPAGES} not found)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
