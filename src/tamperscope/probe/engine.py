"""The probe engine: many measurements at once, each one written as soon as it is done.

- `parallel` measurements in flight (default 16), at most 2 towards one server
  address (Context.limiter), a deadline per step and per measurement.
- Each measurement gets OONI's envelope, its verdict (from the raw records),
  is scrubbed of the probe's own addresses, and is appended to the output as
  one JSON line, flushed. A killed run resumes: inputs already in the output
  are skipped (`scan_output` reads it line by line first), and a torn last
  line is cut off before appending. An output that holds anything but
  measurements is refused, never appended to nor cut.
- Inputs are checked before anything runs (`validate_inputs`); an input that
  still fails while measuring is reported and left out of the output (a
  resume tries it again): it never stops the other measurements.
- A progress line on stderr with counts, rate and ETA.
- ``--recheck`` (run by `probe.command`; here `needs_recheck`, `RunStats.found`
  and `Resume.lone`): each input found blocked or failing is measured once more,
  no sooner than a wait after its first measurement (a censor's residual blocking
  of the address must not decide the second one). Two measurements with the same
  anomaly confirm it in `tamperscope analyze`. A resume with it rechecks the
  inputs of the output measured once, with an anomaly or a failure.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import fcntl
import heapq
import os
import queue
import resource
import stat
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

import orjson

from ..model import failures as F
from ..model.inputs import BadInput, check_host, check_utf8_url, parse_url
from ..model.measurement import ProbeInfo, envelope, new_report_id
from ..model.webparts import split_endpoint
from ..nettests.base import Context, NettestError
from ..netx.listening import open_files
from .privacy import Scrubber, address_in, interface_addresses
from .seen import Seen

COULD_NOT_TELL = "could not tell"  # `RunStats.by_mechanism`'s row for failed measurements


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
    errors: int = 0  # inputs that could not be measured at all: reported, not written
    # each input measured: was it found blocked (by any of its measurements: remote measures one through many vantages)
    blocked_by_input: dict[str, bool] = field(default_factory=dict)
    # for --recheck (None: not kept): each input measured, by the last of its measurements: its mechanism, when that
    # measurement ended (seconds since the epoch), and whether it was an anomaly or a failure (`needs_recheck`)
    found: dict[str, tuple[str, float, bool]] | None = None
    # what ``found`` keys a measurement by (None: its input); remote's: its vantage and input
    key: Callable[[dict[str, Any]], str | None] | None = None
    # inputs whose connects met residual blocking (`Engine.residual_held`): measured again once the hold was over;
    # and those the run's --max-runtime left no time for
    residual: list[str] = field(default_factory=list)
    residual_left: list[str] = field(default_factory=list)
    # measurements the control helper did not answer (not those of a run without one, `--helper ''`), by failure
    no_control: Counter[str] = field(default_factory=Counter)

    def add(self, m: dict[str, Any]) -> None:
        tk = m.get("test_keys") or {}
        blocked, failed = _blocked(tk), _failed(tk)
        mech = tk.get("x_mechanism") or "none"
        # a measurement that could not tell says "none" for its mechanism: summed up with the sites found
        # accessible, an unreachable vantage's four failures read "none 4" (QA)
        row = COULD_NOT_TELL if failed and mech == "none" else mech
        self.by_mechanism[row] += 1
        ex = self.examples.setdefault(row, [])
        # an example: the input, or for a nettest without one (telegram, signal...) its name and evidence keys
        example = str(m["input"]) if m.get("input") else (
            f"{m.get('test_name')} ({', '.join(str(e).removeprefix('test_keys.') for e in tk.get('x_evidence') or ())})"
            if mech != "none" and tk.get("x_evidence") else str(m.get("test_name") or ""))
        if len(ex) < 3 and example:
            ex.append(example)
        lost = tk.get("control_failure")
        if isinstance(lost, str) and lost != F.CONTROL_DISABLED:
            self.no_control[lost[:80]] += 1
        self.blocked += blocked
        if m.get("input"):
            key = str(m["input"])
            self.blocked_by_input[key] = self.blocked_by_input.get(key, False) or blocked
        self.failures += failed
        if self.found is not None:
            found = self.key(m) if self.key is not None else m.get("input")
            if isinstance(found, str):
                self.found[found] = (mechanism_of(m), ended_at(m), blocked or failed)


class Progress:
    """One line on stderr: counts, rate, ETA. Redrawn in place on a terminal, every 5 s otherwise."""

    def __init__(self, stats: RunStats, stream: IO[str] | None = None, enabled: bool = True) -> None:
        self.stats = stats
        self.stream = sys.stderr if stream is None else stream  # looked up now: sys.stderr may have been replaced
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self._last = 0.0
        self._closed = False

    def line(self) -> str:
        s = self.stats
        elapsed = max(1e-6, time.monotonic() - s.started)
        rate = s.done / elapsed
        finished = s.done + s.skipped + s.errors
        left = max(0, s.total - finished)
        eta = left / rate if rate > 0 else 0.0
        width = 24
        frac = finished / s.total if s.total else 1.0
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        return (f"[{bar}] {finished}/{s.total}  {rate:5.1f}/s  ETA {int(eta) // 60}:{int(eta) % 60:02d}"
                f"  blocked {s.blocked}" + (f"  resumed past {s.skipped}" if s.skipped else "")
                + (f"  not measured {s.errors}" if s.errors else ""))

    def note(self, text: str) -> None:
        """A message of its own line, whatever the progress line is doing (on a terminal it is redrawn below)."""
        if self.tty and self.enabled and not self._closed:
            self.stream.write("\r\x1b[K" + text + "\n")
            self._last = 0.0
            self.update()
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

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


MAX_LINE = 64 << 20  # bytes: far above any measurement; a longer line is not one the probe wrote


class OutputError(ValueError):
    """The output cannot be appended to as asked; the message is one line naming the file."""


@dataclass(frozen=True)
class Resume:
    """What an existing output holds, read before anything is written to it."""

    seen: Seen = field(default_factory=Seen)  # inputs of this nettest measured already: a resume skips them
    size: int = 0  # bytes read; the file must still have exactly these when it is opened
    cut: int | None = None  # where a torn last measurement starts: cut off before appending
    newline: bool = False  # the last line is complete but has no newline: one is added before appending
    regular: bool = True  # False: a pipe or a device, written to but never read, cut or fsync'd
    # read only for --recheck: the inputs measured once, whose measurement found an anomaly or failed: their
    # mechanism ("none" for a failure) and when that measurement ended (seconds since the epoch, `ended_at`)
    lone: Mapping[str, tuple[str, float]] = field(default_factory=dict)


def said(line: str) -> None:
    """One line of the run's own on stderr, begun as its others are."""
    print(f"tamperscope: {line}", file=sys.stderr, flush=True)


# bytes of an output past which its reading is said first: at TMC's scale a resume reads tens of gigabytes (a
# measurement is 2-5 KB), minutes in which the run would otherwise print nothing
SAID_READING = 256 << 20


def scan_output(path: Path, test_name: str, key: Callable[[dict[str, Any]], str | None] | None = None, *,
                recheck: bool = False, say: Callable[[str], None] | None = None) -> Resume:
    """Read the output `path` line by line (never whole: outputs reach gigabytes) and say what a resume skips
    and what must be mended before appending. Changes nothing: `open_output` does, once the run may start.

    Raises OutputError for a file that holds anything but measurements (notes, the URL list itself):
    appending to it, or cutting its last line, would damage what the user had.

    `key` names what a measurement of `test_name` stands for, when its input alone does not (a remote
    nettest measures each input through several vantages); None from it: not counted. ``recheck``: also
    say which inputs were measured once and found blocked or failing (`Resume.lone`), for --recheck. ``say``
    is told, in a line, that an output of `SAID_READING` bytes or more is being read."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise OutputError(f"cannot write {path}: no directory {path.parent}") from None
        return Resume()
    except OSError as e:
        raise OutputError(f"cannot use {path} as the output: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"the output {path} is a directory")
    if not stat.S_ISREG(st.st_mode):
        # /dev/stdout into a pipe, /dev/null, a FIFO: reading it to resume would block or never end
        return Resume(regular=False)
    if say is not None and st.st_size >= SAID_READING:
        size = f"{st.st_size / (1 << 30):,.1f} GiB" if st.st_size >= 1 << 30 else f"{st.st_size >> 20:,} MiB"
        say(f"reading {path} ({size}) to resume: the measurements it holds are not made again")
    seen = Seen()
    # for --recheck: the first measurement of each input found blocked or failing; those measured once are `lone`
    anomalous: dict[str, tuple[str, float]] = {}
    offset = 0
    newline = False
    measured = False  # a measurement (of any nettest) seen before the line at hand
    try:
        with open(path, "rb", buffering=1 << 20) as f:
            for n, line in enumerate(iter(lambda: f.readline(MAX_LINE), b""), 1):
                complete = line.endswith(b"\n")
                if not complete and len(line) == MAX_LINE and f.peek(1):  # type: ignore[attr-defined]  # buffered
                    raise OutputError(f"{path}: line {n} is longer than {MAX_LINE >> 20} MiB, not a measurement; "
                                      "refusing to append to it (choose another --output)")
                verdict, m = _line_kind(line.strip(), test_name, key)
                if verdict is _NOT_OURS:
                    raise OutputError(f"{path}: line {n} is not a JSON measurement; refusing to append to a file "
                                      "that holds anything else (choose another --output)")
                if verdict is _TORN and not complete:
                    if not measured and not _begun_as_ours(line):
                        # one line that does not parse, with no measurement before it: the user's own JSON, not
                        # a write of ours cut short; cutting it would lose it
                        raise OutputError(f"{path}: line {n} is not a JSON measurement; refusing to append to a "
                                          "file that holds anything else (choose another --output)")
                    # a kill in mid-write
                    return Resume(seen.freeze(), offset + len(line), cut=offset, lone=_lone(seen, anomalous))
                measured = measured or isinstance(verdict, str) or verdict is _OTHER and bool(line.strip())
                if isinstance(verdict, str):
                    if recheck and m is not None and verdict not in anomalous and needs_recheck(m):
                        anomalous[verdict] = (mechanism_of(m), ended_at(m))
                    seen.add(verdict)
                offset += len(line)
                newline = not complete
    except OSError as e:
        raise OutputError(f"cannot read {path} to resume: {e.strerror or e}") from None
    return Resume(seen.freeze(), offset, newline=newline, lone=_lone(seen, anomalous))


def _lone(seen: Seen, anomalous: dict[str, tuple[str, float]]) -> dict[str, tuple[str, float]]:
    """Of the inputs whose first measurement found them blocked or failing, those measured once (none again: no
    recheck yet, and not the same input twice)."""
    keys = list(anomalous)
    return {k: anomalous[k] for k, once in zip(keys, seen.once(keys), strict=True) if once}


# How every measurement the probe writes begins (`model.measurement.envelope`, written by orjson)
_OUR_START = b'{"annotations":{"engine_name":"'


def _begun_as_ours(line: bytes) -> bool:
    """Whether a line that does not parse is the start of a measurement as the probe writes one."""
    return line.startswith(_OUR_START) or _OUR_START.startswith(line)


_TORN = object()  # starts like a measurement but does not parse: a write cut short
_NOT_OURS = object()  # anything else that is not a measurement
_OTHER = object()  # a measurement of another nettest, or blank: kept, not counted


def _line_kind(body: bytes, test_name: str, key: Callable[[dict[str, Any]], str | None] | None = None
               ) -> tuple[object, dict[str, Any] | None]:
    """One output line (stripped): the input it measured and the measurement, or one of _TORN, _NOT_OURS,
    _OTHER and None."""
    if not body:
        return _OTHER, None
    if not body.startswith(b"{"):
        return _NOT_OURS, None
    try:
        m = orjson.loads(body)
    except orjson.JSONDecodeError:
        # a torn line in the middle (an older crash) stays where it is, and is measured again
        return _TORN, None
    if not isinstance(m, dict) or not isinstance(m.get("test_name"), str):
        return _NOT_OURS, None
    if m["test_name"] == test_name and isinstance(m.get("input"), str):
        if key is None:
            return m["input"], m
        return key(m) or _OTHER, m
    return _OTHER, None


def _blocked(tk: Mapping[str, Any]) -> bool:
    """The measurement's test keys say its input was found blocked (``blocking`` names how)."""
    return tk.get("blocking") not in (False, None)


def _failed(tk: Mapping[str, Any]) -> bool:
    """The measurement could not tell: a failure, or neither ``blocking`` nor ``accessible`` said."""
    return tk.get("x_status") == "failure" or tk.get("blocking") is None and tk.get("accessible") is None


def needs_recheck(m: dict[str, Any]) -> bool:
    """Whether --recheck measures this measurement's input again: it found the input blocked, or could not
    tell (a failure), as `RunStats.add` counts them."""
    tk = m.get("test_keys")
    return isinstance(tk, dict) and (_blocked(tk) or _failed(tk))


def mechanism_of(m: dict[str, Any]) -> str:
    """The measurement's mechanism (``test_keys.x_mechanism``), "none" when it names none."""
    tk = m.get("test_keys")
    mech = tk.get("x_mechanism") if isinstance(tk, dict) else None
    return mech if isinstance(mech, str) and mech else "none"


def ended_at(m: dict[str, Any]) -> float:
    """When the measurement ended, at the latest, in seconds since the epoch: its ``measurement_start_time``
    (OONI's "YYYY-MM-DD HH:MM:SS" in UTC, cut to the second: plus 1) plus its ``test_runtime``; 0.0 when it
    has no start time that reads (a wait counted from it is over). Now when it started later than now: a start in
    the future is a clock that was wrong (skew, a file from elsewhere), and --recheck waited for it (9999-12-31:
    for ever)."""
    value = m.get("measurement_start_time")
    try:
        when = dt.datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return 0.0
    runtime = m.get("test_runtime")
    took = float(runtime) if isinstance(runtime, (int, float)) and 0 <= runtime < 86400 else 0.0
    start, now = when.replace(tzinfo=dt.timezone.utc).timestamp(), time.time()
    return now if start > now else start + 1.0 + took


def open_output(path: Path, resume: Resume) -> IO[bytes]:
    """`path` opened for appending, mended as `scan_output` found it: a torn last line cut off, a
    missing last newline added (so the first new measurement does not glue onto the last one)."""
    f = open(path, "ab")
    try:
        if resume.regular:
            try:  # one run writes a file at a time (QA: a second run on the same output measured again the inputs
                # the first had under way, 62 of 66 twice, and within the censor's hold)
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OutputError(f"{path} is being written by another run: wait for it to end, or give this one "
                                  "an output of its own (-o)") from None
            if os.fstat(f.fileno()).st_size != resume.size:
                raise OutputError(f"{path} changed while it was being read (is another run writing to it?)")
            if resume.cut is not None:
                f.truncate(resume.cut)
            elif resume.newline:
                f.write(b"\n")
                f.flush()
    except BaseException:
        f.close()
        raise
    return f


class Output(Protocol):
    """Where measurements go, a line each: the output file, or the outbox and then the file."""

    def write(self, line: bytes) -> int: ...

    def flush(self) -> None: ...

    def fileno(self) -> int: ...


def sync(out: Output) -> None:
    """Flush `out` to the disk; only a regular file can be (fsync fails on /dev/null, pipes, terminals)."""
    out.flush()
    fd = out.fileno()
    if stat.S_ISREG(os.fstat(fd).st_mode):
        os.fsync(fd)


def _first(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (what one task of a TaskGroup raised)."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


class OutOfDescriptors(Exception):
    """This machine ran out of file descriptors during a measurement: what it recorded is about this machine,
    not the network (a failed lookup would read as dns.drop), so it is not written."""

    def __str__(self) -> str:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return (f"this machine ran out of file descriptors (ulimit -n {soft}); the next run tries it again, "
                "use a lower --parallel or a higher ulimit -n")


_NO_DESCRIPTORS = orjson.dumps(F.TOO_MANY_OPEN_FILES)  # as a whole JSON string, to find it cheaply


def _failed_here(value: Any) -> bool:
    """Whether a ``…failure`` key of the measurement says this machine ran out of descriptors (a body that
    merely holds the words is no failure)."""
    if isinstance(value, dict):
        return any(k.endswith("failure") and v == F.TOO_MANY_OPEN_FILES or _failed_here(v)
                   for k, v in value.items() if isinstance(v, (dict, list)) or k.endswith("failure"))
    if isinstance(value, list):
        return any(_failed_here(v) for v in value if isinstance(v, (dict, list)))
    return False


def _out_of_descriptors(e: BaseException) -> bool:
    if isinstance(e, BaseExceptionGroup):
        return any(_out_of_descriptors(x) for x in e.exceptions)
    return isinstance(e, OSError) and e.errno in (errno.EMFILE, errno.ENFILE)


DESCRIPTORS_PER_MEASUREMENT = 16  # sockets one measurement may hold at once (lookups, connects, control, TLS)
DESCRIPTORS_SPARE = 64  # for the output, the outbox, the sniffer, the event loop


def descriptor_room(parallel: int, say: Callable[[str], None]) -> int:
    """``parallel``, or as many measurements in flight as the open-file limit leaves room for (raised to its
    hard limit first). Out of descriptors, measurements fail on this machine, not on the network."""
    soft = open_files()
    if soft is None:
        return parallel
    room = max(1, (soft - DESCRIPTORS_SPARE) // DESCRIPTORS_PER_MEASUREMENT)
    if room < parallel:
        say(f"tamperscope: --parallel {parallel} lowered to {room}: the open-file limit is {soft} (ulimit -n), "
            f"and each measurement may hold {DESCRIPTORS_PER_MEASUREMENT} sockets")
        return room
    return parallel


def why_not_measured(e: Exception) -> str:
    """One line for an input whose measurement raised."""
    if isinstance(e, OutOfDescriptors) or _out_of_descriptors(e):
        return str(OutOfDescriptors())
    text = " ".join(str(e).split()) or "no message"
    if isinstance(e, NettestError):
        return text
    return f"internal error ({type(e).__name__}: {text}); please report it"


def _address(value: Any) -> str | None:
    """An IP address as `ipaddress` writes it, from an address, "ip:port" or "[ip]:port"; None otherwise."""
    ip = address_in(value) if isinstance(value, str) else None
    return None if ip is None else str(ip)


def _host_of(url: Any) -> str | None:
    try:
        return _address(urlsplit(url).hostname) if isinstance(url, str) else None
    except ValueError:
        return None


def measured_addresses(m: Mapping[str, Any]) -> set[str]:
    """The addresses a measurement measured: its input's, its DNS answers, what it connected to, what the
    control resolved and connected to (each read defensively: a nettest's keys, or a hostile helper's)."""
    out: set[str] = set()

    def add(value: Any) -> None:
        a = _address(value)
        if a is not None:
            out.add(a)

    def items(value: Any) -> list[Any]:
        return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []

    add(_host_of(m.get("input")) or m.get("input"))
    tk = m.get("test_keys")
    if not isinstance(tk, dict):
        return out
    for q in items(tk.get("queries")):
        for a in items(q.get("answers")):
            add(a.get("ipv4"))
            add(a.get("ipv6"))
    for key in ("tcp_connect", "tls_handshakes", "quic_handshakes"):
        for c in items(tk.get(key)):
            add(c.get("ip"))
            add(c.get("address"))
    for r in items(tk.get("requests")):
        request = r.get("request")
        if isinstance(request, dict):
            add(_host_of(request.get("url")))
    control = tk.get("control")
    if isinstance(control, dict):
        dns = control.get("dns")
        if isinstance(dns, dict) and isinstance(dns.get("addrs"), list):
            for a in dns["addrs"]:
                add(a)
        for key in ("tcp_connect", "tls_handshake"):
            if isinstance(control.get(key), dict):
                for endpoint in control[key]:
                    add(endpoint)
    return out


class _ScrubThread:
    """The one thread measurements are scrubbed on (`Engine.measure`). A daemon: a run stopped (Ctrl-C,
    --max-runtime) does not wait for a scrub under way, whose measurement is not written and is measured again by
    the next run (QA: a thread pool's worker was joined at exit, 44 s after the interrupt)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = queue.SimpleQueue()
        threading.Thread(target=self._work, name="tamperscope-scrub", daemon=True).start()

    def _work(self) -> None:
        while True:
            future, fn, args = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the awaiting measurement, which reports it
                future.set_exception(exc)
            else:
                future.set_result(result)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._jobs.put((future, fn, args))
        return future


_SCRUB_THREAD: list[_ScrubThread] = []


def _scrubbing() -> _ScrubThread:
    if not _SCRUB_THREAD:
        _SCRUB_THREAD.append(_ScrubThread())
    return _SCRUB_THREAD[0]


# seconds an input whose connects met residual blocking waits, after the censor last acted at that address and
# port, before it is measured again: longer than the GFW's 90 s for HTTP (Turkmenistan's is 30 s)
RESIDUAL_WAIT = 120.0


class Engine:
    def __init__(self, nettest: ModuleType, ctx: Context, probe: ProbeInfo, scrubber: Scrubber, *,
                 parallel: int = 16, annotations: dict[str, str] | None = None,
                 sink: Callable[[dict[str, Any]], None] | None = None, sniffer: Any = None,
                 residual_wait: float = RESIDUAL_WAIT) -> None:
        self.nettest = nettest
        self.residual_wait = residual_wait  # seconds after residual blocking was met before measuring again
        if residual_wait > 0:  # a hold is taken to last as long as the wait: a trigger older is over
            ctx.residual.window = residual_wait
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
        self._own = set(scrubber.addresses)  # ours for sure: interfaces, sources, STUN (not what a helper says)

    async def measure(self, input: str | None, annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
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
                     annotations={**self.annotations, **annotations} if annotations else self.annotations,
                     test_helpers={"backend": {"address": self.ctx.helper_url, "type": "https"}} if self.ctx.helper_url else {})
        # Scrubbing is CPU work on what a server sent (QA: a hostile gzip body took 12 s), done on one thread
        # of its own so that the event loop goes on: run there, it held every measurement under way, whose
        # timeouts then fired and read as blocking. One thread for every engine (remote's share a scrubber):
        # the scrubber's state changes on it alone.
        scrubbed: dict[str, Any] = await asyncio.wrap_future(
            _scrubbing().submit(self._scrubbed, m, frozenset(self.ctx.own_addresses)))
        finish = getattr(self.nettest, "finish", None)
        if finish is not None:
            finish(scrubbed, self.ctx)
        return scrubbed

    def _scrubbed(self, m: dict[str, Any], own: frozenset[str]) -> dict[str, Any]:
        """``m`` scrubbed of our addresses, with ``own`` (the public address the helper saw, behind NAT) learnt."""
        scrub = self.scrub
        if own:
            self.scrub.learn(own)
            # A helper's word is taken for our address, never for what this measurement measured: a hostile
            # helper naming the site's address would have it (and the input) scrubbed from the evidence.
            spare = (own & measured_addresses(m)) - self._own
            if spare:
                spare -= interface_addresses()
            if spare:
                scrub = Scrubber([a for a in self.scrub.addresses if a not in spare], interfaces=False)
        scrubbed: dict[str, Any] = scrub(m)
        return scrubbed

    async def run(self, inputs: Sequence[str | None], out: Output | None, stats: RunStats, progress: Progress,
                  on_error: Callable[[str | None, str], None] | None = None, *, deadline: float | None = None) -> None:
        """Measure every input, writing each measurement as it is done. An input whose measurement raises is
        passed to `on_error` (default: a line on stderr) and not written, so a resume tries it again; it
        stops nothing else. Only an output that cannot be written ends the run (with that error, not a group).
        Past ``deadline`` (time.monotonic(), from --max-runtime) no measurement starts; those under way finish."""
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        for i in inputs:
            queue.put_nowait(i)
        # residual blocking met: (when to measure again, order, input, the endpoints it met it at)
        later: list[tuple[float, int, str, tuple[tuple[str, int], ...]]] = []

        def report(item: str | None, reason: str) -> None:
            progress.note(f"tamperscope: not measured: {item!r}: {reason}")

        async def worker() -> None:
            while True:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                again: Mapping[str, str] | None = None
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    if not later:
                        return
                    due, order, item, held = heapq.heappop(later)
                    # the censor may have acted there again since (another input measured meanwhile, blocked by
                    # its own name at the same address): its hold too must be over first
                    due = max(due, self.free_at(held))
                    if deadline is not None and due >= deadline:
                        stats.residual_left.append(item)
                        continue
                    if due > time.monotonic() + 0.05:
                        await asyncio.sleep(due - time.monotonic())
                        if self.free_at(held) > due:  # a trigger while waiting: wait for that one too
                            heapq.heappush(later, (self.free_at(held), order, item, held))
                            continue
                    again = {"residual_retry": "true"}
                try:
                    m = await self.measure(item, again)
                    line = orjson.dumps(m) + b"\n"
                    if _NO_DESCRIPTORS in line and _failed_here(m):
                        raise OutOfDescriptors()
                except Exception as e:  # noqa: BLE001 - one input's failure must not end the other measurements
                    stats.errors += 1
                    (on_error or report)(item, why_not_measured(e))
                    progress.update()
                    continue
                if out is not None:
                    out.write(line)
                    out.flush()
                if self.sink is not None:
                    self.sink(m)
                stats.done += again is None  # a measurement made again is no more done of the run's inputs
                stats.add(m)
                if item is not None and again is None and (held := self.residual_held(m)):
                    # measured again once the hold is over: it began before the connects failed, so a wait from
                    # now is enough, unless the censor acts there again meanwhile (`free_at`). Not one more input
                    # (the progress line, --recheck's counts)
                    heapq.heappush(later, (max(time.monotonic() + self.residual_wait, self.free_at(held)),
                                           len(stats.residual), item, held))
                    stats.residual.append(item)
                progress.update()

        try:
            async with asyncio.TaskGroup() as tg:
                for _ in range(min(self.parallel, max(1, len(inputs)))):
                    tg.create_task(worker())
        except BaseExceptionGroup as group:
            # a worker stops early only when the output cannot be written: raise that error itself, which
            # the CLI turns into one line (a group would be a traceback)
            raise _first(group) from None
        stats.residual_left += [item for _, _, item, _ in sorted(later)]  # the deadline came first
        if out is not None:
            sync(out)

    def residual_held(self, m: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
        """The endpoints where a measurement that could not tell met residual blocking (``x_residual``, and a
        failure): its input is measured again once they are free (`free_at`). None with no wait: ()."""
        tk = m.get("test_keys")
        if not isinstance(tk, dict) or self.residual_wait <= 0 or tk.get("x_status") != "failure":
            return ()
        held = tk.get("x_residual")
        if not isinstance(held, list):
            return ()
        return tuple(dict.fromkeys(ep for h in held if isinstance(h, dict) and isinstance(h.get("endpoint"), str)
                                   if (ep := split_endpoint(h["endpoint"]))[1]))

    def free_at(self, held: Sequence[tuple[str, int]]) -> float:
        """When the endpoints' holds are over (time.monotonic()): `residual_wait` after the censor last acted at
        any of them, as far as the run knows (0.0: it saw it act at none)."""
        last = [t for ep in held if (t := self.ctx.residual.last(*ep)) is not None]
        return max(last) + self.residual_wait if last else 0.0


def host_ok(host: str) -> bool:
    """An IP address or a DNS name (IDN allowed): something a connection can be made to. Checked before
    the run, so a typo is one line instead of a failed measurement recorded as done."""
    try:
        check_host(host)
    except BadInput:
        return False
    return True


def _url_input(input: str) -> None:
    try:
        parse_url(input)
    except BadInput as e:
        raise NettestError(str(e)) from None


def _domain_input(input: str) -> None:
    """dnscheck's rule (a name, or a URL's host), and a name a query can carry."""
    name = input.strip().lower()
    if "://" in name:
        try:
            name = urlsplit(name).hostname or ""
        except ValueError:
            name = ""
    name = name.rstrip(".")
    if not name or ".." in name or not host_ok(name):
        raise NettestError(f"not a domain name: {input!r}")


def _endpoint(spec: str, default_scheme: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL or of host[:port]; ValueError when it is neither."""
    parts = urlsplit(spec if "://" in spec else f"{default_scheme}://{spec}")
    port = parts.port  # raises ValueError for a port out of range or not a number
    host = parts.hostname or ""
    if not host or port == 0 or not host_ok(host) or ("[" in parts.netloc and ":" not in host):  # [v1.x]
        raise ValueError(spec)
    return parts.scheme, host, port


def _tls_input(input: str) -> None:
    try:
        scheme, _, _ = _endpoint(input, "https")
    except ValueError:
        raise NettestError(f"not a URL or domain: {input!r}") from None
    if scheme not in ("http", "https"):
        raise NettestError(f"not an http(s) URL or a domain: {input!r}")


def no_credentials(input: str) -> None:
    """NettestError for an input naming a user (``https://alice:secret@host/``, ``alice@host:7``): every input is
    published with its measurement, so no nettest takes one (web_connectivity's `parse_url` refused it, but
    dnscheck, tls_mitm, echcheck, blocking_rules, evasion and the middlebox nettests recorded it as given)."""
    spec = input.strip()
    try:
        netloc = urlsplit(spec if "://" in spec else f"//{spec}").netloc
    except ValueError:
        return  # not a URL: the nettest's own check names what is wrong with it
    if "@" in netloc:
        raise NettestError(f"{input!r} holds a user name or password: refused, because it would be published "
                           "with the measurement")


def check_backend(spec: str) -> None:
    """An echo backend as the middlebox nettests take it: host[:port] or a URL (port 80 unless it says)."""
    no_credentials(spec)
    try:
        _endpoint(spec, "tcp")
    except ValueError:
        raise NettestError(f"bad backend {spec!r}: expected HOST[:PORT]") from None


# How each nettest's input is checked before the run, the same way its run() reads it. A nettest
# may define check_input(input) itself, which then takes precedence.
_INPUT_CHECKS: dict[str, Callable[[str], None]] = {
    "web_connectivity": _url_input,
    "throttling": _url_input,
    "dnscheck": _domain_input,
    "tls_mitm": _tls_input,
    "echcheck": _tls_input,
    "http_invalid_request_line": check_backend,
    "http_header_field_manipulation": check_backend,
}
_NEEDS_BACKEND = frozenset({"http_invalid_request_line", "http_header_field_manipulation"})


def check_input(nettest: ModuleType, input: str | None, *, backend: str | None = None) -> None:
    """Raise NettestError (one line) for an input the nettest would refuse once running."""
    if input is None:
        if nettest.NEEDS_INPUT:
            raise NettestError(f"{nettest.NAME} needs --input or --list")
        if nettest.NAME in _NEEDS_BACKEND and not backend:
            raise NettestError("needs an echo backend: --backend HOST[:PORT] (in the lab, TAMPERSCOPE_ECHO)")
        return
    try:  # from a command line: no measurement, JSON line or request can hold it, every one would fail
        check_utf8_url(input, "input")
    except BadInput as e:
        raise NettestError(str(e)) from None
    no_credentials(input)
    check = getattr(nettest, "check_input", None) or _INPUT_CHECKS.get(nettest.NAME)
    if check is not None:
        try:
            check(input)
        except NettestError:
            raise
        except ValueError as e:
            raise NettestError(str(e)) from None


def validate_inputs(nettest: ModuleType, inputs: Sequence[str | None], *, backend: str | None = None) -> None:
    """Raise NettestError for an input the nettest would refuse, before anything is written."""
    if nettest.NEEDS_INPUT and not [i for i in inputs if i is not None]:
        raise NettestError(f"{nettest.NAME} needs --input or --list")
    for i in inputs:
        check_input(nettest, i, backend=backend)
