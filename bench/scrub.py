"""Benchmark: what scrubbing the probe's own addresses costs (`probe/privacy.py`), and the share of each search.

    .venv/bin/python -m bench.scrub [--repeat 7]

Times, best of ``--repeat`` (the machine is noisy), side by side in one process:

1. the whole scrub of each of OONI's 50 shared measurements (`Scrubber.__call__`: the quick search of its JSON,
   then the walk when that finds something), and `Scrubber.text` and `Scrubber.raw` over the 160 real blockpages
   of Citizen Lab's collection (../shared/data/blockpages/citizenlab), as the probe scrubs a body;
2. the same with the search for addresses broken by tags or invisible characters turned off (`_broken`), and with
   the escaped spellings' search off too (`_escaped`): what each costs, as a ratio;
3. hostile pages of the probe's body limit (512 KiB, `netx.http.DEFAULT_BODY_LIMIT`): seconds per page for the
   patterns that make the searches do the most work (tags between digits, escapes, invisible characters).

There is no target: the probe's CPU per URL (bench/probe_speed: <= 5 ms) holds the scrub with the rest. No address
here is ever sent anywhere.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tamperscope.netx.http import DEFAULT_BODY_LIMIT  # noqa: E402
from tamperscope.probe.privacy import Scrubber  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
ADDRESSES = ("198.18.1.2", "2001:db8:85a3::8a2e:370:7334")  # the lab's kind: documentation and benchmark ranges


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def variants() -> list[tuple[str, Scrubber]]:
    """The scrubber as the probe has it, and with the broken, then also the escaped, spellings' search off."""
    whole = Scrubber(ADDRESSES, interfaces=False)
    unbroken = Scrubber(ADDRESSES, interfaces=False)
    unbroken._broken = lambda s, text, escaped: []  # type: ignore[method-assign]
    plain = Scrubber(ADDRESSES, interfaces=False)
    plain._broken = lambda s, text, escaped: []  # type: ignore[method-assign]
    plain._escaped = lambda s, text: []  # type: ignore[method-assign]
    return [("as the probe scrubs", whole), ("without _broken", unbroken), ("without _broken, _escaped", plain)]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.scrub", description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--repeat", type=int, default=7, help="runs of each timing; the best is shown (default 7)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    samples = sorted((SHARED / "ooni-samples" / "generated").glob("*/measurement.json"))
    pages_at = sorted((SHARED / "blockpages" / "citizenlab").glob("*.html"))
    if not samples or not pages_at:
        print(f"bench.scrub: the shared data is missing under {SHARED}", file=sys.stderr)
        return 2
    measurements = [orjson.loads(p.read_bytes()) for p in samples]
    pages = [p.read_text(errors="replace") for p in pages_at]
    raw_pages = [p.encode() for p in pages]
    kib = sum(map(len, raw_pages)) / 1024

    print(f"1-2. scrubbing real data ({len(measurements)} OONI measurements; {len(pages)} blockpages, {kib:.0f} KiB), "
          f"best of {args.repeat}")
    print(f"{'scrubber':28} {'per measurement':>16} {'text, per page':>15} {'raw, per page':>14} {'ratio':>7}")
    first = None
    for name, s in variants():
        m = best(lambda: [s(x) for x in measurements], args.repeat) / len(measurements)
        t = best(lambda: [s.text(p) for p in pages], args.repeat) / len(pages)
        r = best(lambda: [s.raw(p) for p in raw_pages], args.repeat) / len(pages)
        total = m + t + r
        first = first or total
        print(f"{name:28} {m * 1e6:13.1f} µs {t * 1e6:12.1f} µs {r * 1e6:11.1f} µs {total / first:6.2f}x")

    size = DEFAULT_BODY_LIMIT
    s = Scrubber(ADDRESSES, interfaces=False)
    print(f"\n3. hostile pages of {size // 1024} KiB (the probe's body limit): seconds for text + raw + the quick search")
    hostile = {
        "tags between digits": "1<b>." * (size // 5),
        "our address's middle, then a tag": "198.18.1.<b>" * (size // 12),
        "table cells of numbers": "1</td><td>2." * (size // 12),
        "zero-width spaces between digits": "1\u200b." * (size // 3),
        "character references of them": "1&#8203;." * (size // 9),
        "escaped dots": "1&#46;18&#46;" * (size // 12),
        "one run of tags": "1" + "<b>" * (size // 3) + "2",
        # base64 runs that each encode our address (`Scrubber._tokens` decodes, scrubs and encodes each again)
        "base64 tokens of our address, each other": " ".join(
            base64.b64encode(f"{i:06d} 198.18.1.2".encode()).decode() for i in range(size // 25)),
        "base64 runs that almost do": "MTk4LjE4LjEuMx " * (size // 15),
        # digits glued to our address, over and over (`Scrubber._glued`, then `_spelled` past MAX_GLUED windows)
        "our address glued to itself": "198.18.1.2" * (size // 10),
        "reversed, underscored, glued": "2_1_18_1989" * (size // 11),
    }
    for name, page in hostile.items():
        body = page.encode()
        took = best(lambda: (s.text(page), s.raw(body), s.needed({"body": page})), 3)
        print(f"  {name:34} {took:6.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
