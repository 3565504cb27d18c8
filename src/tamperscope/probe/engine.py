"""The probe engine: many measurements at once, each one written as soon as it is done.

- `parallel` measurements in flight (default 16), at most 2 towards one server
  address (Context.limiter), a deadline per step and per measurement.
- Each measurement gets OONI's envelope, its verdict (from the raw records),
  is scrubbed of the probe's own addresses, and is appended to the output as
  one JSON line, flushed. A killed run resumes: inputs already in the output
  are skipped, and a torn last line is cut off before appending.
- A progress line on stderr with counts, rate and ETA.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import orjson

from ..model.measurement import ProbeInfo, envelope, new_report_id
from ..nettests.base import Context, NettestError
from .privacy import Scrubber


@dataclass
class RunStats:
    done: int = 0
    skipped: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)
    by_mechanism: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    blocked: int = 0
    failures: int = 0

    def add(self, m: dict[str, Any]) -> None:
        tk = m.get("test_keys") or {}
        mech = tk.get("x_mechanism") or "none"
        self.by_mechanism[mech] += 1
        ex = self.examples.setdefault(mech, [])
        if len(ex) < 3 and m.get("input"):
            ex.append(str(m["input"]))
        if tk.get("blocking") not in (False, None):
            self.blocked += 1
        if tk.get("x_status") == "failure" or tk.get("blocking") is None and tk.get("accessible") is None:
            self.failures += 1


class Progress:
    """One line on stderr: counts, rate, ETA. Redrawn in place on a terminal, every 5 s otherwise."""

    def __init__(self, stats: RunStats, stream: IO[str] = sys.stderr, enabled: bool = True) -> None:
        self.stats = stats
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self._last = 0.0
        self._closed = False

    def line(self) -> str:
        s = self.stats
        elapsed = max(1e-6, time.monotonic() - s.started)
        rate = s.done / elapsed
        left = max(0, s.total - s.done - s.skipped)
        eta = left / rate if rate > 0 else 0.0
        width = 24
        frac = (s.done + s.skipped) / s.total if s.total else 1.0
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        return (f"[{bar}] {s.done + s.skipped}/{s.total}  {rate:5.1f}/s  ETA {int(eta) // 60}:{int(eta) % 60:02d}"
                f"  blocked {s.blocked}" + (f"  resumed past {s.skipped}" if s.skipped else ""))

    def update(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < (0.1 if self.tty else 5.0):
            return
        self._last = now
        if self.tty:
            self.stream.write("\r" + self.line() + "\x1b[K")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and not self._closed:  # idempotent: --submit closes it before its report
            self._closed = True
            if self.tty or time.monotonic() - self._last > 0.5:
                self.update(force=True)
            if self.tty:
                self.stream.write("\n")
            self.stream.flush()


def packets_of(tk: dict[str, Any], sniffer: Any, since: float, until: float) -> list[dict[str, Any]]:
    """The captured packets from this measurement's remote endpoints, in OONI-ish records."""
    import base64

    remotes: set[str] = set()
    for rec in tk.get("tcp_connect") or []:
        remotes.add(f"{rec['ip']}:{rec['port']}")
    raw: dict[str, str] = {}
    for key in ("queries", "x_dns_duplicate_responses"):
        for i, q in enumerate(tk.get(key) or []):
            addr = q.get("resolver_address") or ""
            if q.get("engine") == "udp" and addr:
                remotes.add(addr)
                if q.get("raw_response"):
                    raw.setdefault(q["raw_response"], f"test_keys.{key}[{i}]")
    out = []
    for p in sniffer.packets_for(remotes, since, until):
        rec = p.as_record(since)
        if p.proto == "udp":
            rec["matches"] = raw.get(base64.b64encode(p.payload).decode())
            if rec["matches"] is None:
                continue  # a DNS answer to some other measurement
        elif "R" not in p.flags and not ("F" in p.flags and p.payload):
            continue  # an ordinary close
        out.append(rec)
    return out


def done_inputs(path: Path, test_name: str) -> set[str]:
    """Inputs already measured in `path` (JSONL); cuts a torn last line so appending stays valid."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(cut)
        data = data[:cut]
    seen: set[str] = set()
    for line in data.splitlines():
        try:
            m = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(m, dict) and m.get("test_name") == test_name and isinstance(m.get("input"), str):
            seen.add(m["input"])
    return seen


class Engine:
    def __init__(self, nettest: ModuleType, ctx: Context, probe: ProbeInfo, scrubber: Scrubber, *,
                 parallel: int = 16, annotations: dict[str, str] | None = None,
                 sink: Callable[[dict[str, Any]], None] | None = None, sniffer: Any = None) -> None:
        self.nettest = nettest
        self.ctx = ctx
        self.probe = probe
        self.scrub = scrubber
        self.parallel = max(1, parallel)
        self.annotations = annotations or {}
        self.sink = sink
        self.sniffer = sniffer  # netx.sniffer.Sniffer when run with --capture
        now = dt.datetime.now(dt.timezone.utc)
        self.test_start = now
        self.report_id = new_report_id(nettest.NAME, probe, now)

    async def measure(self, input: str | None) -> dict[str, Any]:
        start = dt.datetime.now(dt.timezone.utc)
        t0 = time.monotonic()
        wall0 = time.time()
        try:
            async with asyncio.timeout(self.ctx.timeouts.measurement + 5):
                tk = await self.nettest.run(input, self.ctx)
        except TimeoutError:
            tk = {"x_measurement_failure": "generic_timeout_error"}
        if self.sniffer is not None:
            await asyncio.sleep(0.05)  # let the capture thread catch the last packets
            tk["x_packets"] = packets_of(tk, self.sniffer, wall0, time.time())
        m = envelope(test_name=self.nettest.NAME, test_version=self.nettest.VERSION, input=input,
                     report_id=self.report_id, probe=self.probe, test_start_time=self.test_start,
                     measurement_start_time=start, runtime=time.monotonic() - t0, test_keys=tk,
                     annotations=self.annotations,
                     test_helpers={"backend": {"address": self.ctx.helper_url, "type": "https"}} if self.ctx.helper_url else {})
        m = self.scrub(m)
        finish = getattr(self.nettest, "finish", None)
        if finish is not None:
            finish(m, self.ctx)
        return m

    async def run(self, inputs: Sequence[str | None], out: IO[bytes] | None, stats: RunStats, progress: Progress) -> None:
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        for i in inputs:
            queue.put_nowait(i)

        async def worker() -> None:
            while True:
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                m = await self.measure(item)
                line = orjson.dumps(m) + b"\n"
                if out is not None:
                    out.write(line)
                    out.flush()
                if self.sink is not None:
                    self.sink(m)
                stats.done += 1
                stats.add(m)
                progress.update()

        async with asyncio.TaskGroup() as tg:
            for _ in range(min(self.parallel, max(1, len(inputs)))):
                tg.create_task(worker())
        if out is not None:
            out.flush()
            os.fsync(out.fileno())


def validate_inputs(nettest: ModuleType, inputs: Sequence[str]) -> None:
    """Raise NettestError for an input the nettest would refuse, before anything is written."""
    if nettest.NEEDS_INPUT and not inputs:
        raise NettestError(f"{nettest.NAME} needs --input or --list")
    check = getattr(nettest, "check_input", None)
    for i in inputs:
        if check is not None:
            check(i)
