"""The analysis pipeline: raw lines in, verdicts, observations and raw frames out, on any engine.

One pure step, `analyse_batch()`, turns a batch of input records (`reader.Line`
and `reader.Rejection`) into a `store.BatchResult`:

1. parse each line with orjson; check the envelope (`envelope()`), rejecting with
   a reason from `reader.REASONS`;
2. derive the ``measurement_uid`` from the content (`content_uid()`);
3. compute the verdict by test name (`verdicts.verdict_for`: web_connectivity is
   re-derived from the raw records with the probe's verdict function and the
   whole blockpage fingerprint database);
4. flatten the archival records into observation rows;
5. keep the raw bytes, for the store to append to its raw segments.

The engines only decide where that step runs; the store is the single writer:

* ``local``, ``workers=1``: in this process, streaming, batch after batch;
* ``local``, ``workers=N``: N worker processes; this process reads and writes,
  with at most 2N batches in flight (memory stays flat however big the input);
* ``dask``: one task per partition (whole files, and byte ranges of big plain
  JSONL files) on a Dask cluster (``--scheduler tcp://...``, or a LocalCluster of
  N workers); results come back in partition order and are written by the same
  store code, so the tables are identical to the local engine's. Workers must
  see the input paths (same machine, or a shared file system).
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pyarrow as pa

from tamperscope.analysis import censoredplanet, reader
from tamperscope.analysis.observations import ObservationColumns
from tamperscope.analysis.reader import FileDone, Line, Partition, Rejection, Unread
from tamperscope.analysis.records import TOO_DEEP
from tamperscope.analysis.rules import rows_of, rule_table
from tamperscope.analysis.schema import path_text, rows_to_table
from tamperscope.analysis.store import (
    MEASUREMENT_SCHEMA,
    VERDICT_SCHEMA,
    BatchResult,
    Store,
    WriteStats,
)
from tamperscope.analysis.transport import transport_of
from tamperscope.analysis.verdicts import (
    Matcher,
    analysis_version,
    blocking_rules_judged,
    default_matcher,
    verdict_for,
)
from tamperscope.model import interrupts
from tamperscope.model.inputs import unicode_host
from tamperscope.model.services import APPS, TOOLS
from tamperscope.model.verdict import Verdict

BATCH_SIZE = 512            # records per batch handed to a worker ...
BATCH_BYTES = 16 * 1024 * 1024  # ... or this many bytes of input, whichever comes first
ENGINES = ("local", "dask")


@dataclass(frozen=True)
class Selection:
    """Which measurements a run analyses and stores (None: any); the rest are counted, not stored.

    Files whose place in OONI's archive names another country or test (`reader.layout`)
    are not even opened: selecting one country of a mirror of the archive reads that
    country's files only.
    """

    probe_cc: frozenset[str] | None = None    # upper case
    test_name: frozenset[str] | None = None   # lower case
    since: dt.date | None = None              # by measurement_start_time's day (UTC), inclusive
    until: dt.date | None = None

    def admits(self, env: Envelope) -> bool:
        if self.probe_cc is not None and env.probe_cc.upper() not in self.probe_cc:
            return False
        if self.test_name is not None and (not env.test_name.isascii()  # "faceboo\u212a" lower-cases to "facebook"
                                           or env.test_name.lower() not in self.test_name):
            return False
        if self.since is not None or self.until is not None:
            day = env.start.date()
            if (self.since is not None and day < self.since) or (self.until is not None and day > self.until):
                return False
        return True

    def opens(self, path: str | os.PathLike[str]) -> bool:
        """False only when the file's OONI path says it holds another country or another test."""
        if self.probe_cc is None and self.test_name is None:
            return True
        cc, test = reader.layout(path)
        if cc is not None and self.probe_cc is not None and cc not in self.probe_cc:
            return False
        return not (test is not None and self.test_name is not None
                    and test not in {reader.archive_test_name(t) for t in self.test_name})


@dataclass(frozen=True)
class Options:
    """How to run an analysis."""

    engine: str = "local"            # "local" | "dask"
    workers: int = 1                 # processes (local) or LocalCluster workers (dask)
    scheduler: str | None = None     # dask: address of an existing scheduler
    batch_size: int = BATCH_SIZE
    max_bytes: int = reader.MAX_MEASUREMENT_BYTES
    split_bytes: int = reader.SPLIT_BYTES  # dask: plain JSONL files are cut into partitions this big
    fingerprints: bool = True        # match the blockpage fingerprint database
    selection: Selection | None = None  # only these measurements (None: all)
    reread: bool = False             # read files an earlier run analysed in full (skipped by default)


@dataclass(frozen=True)
class Progress:
    records: int
    rejected: int
    elapsed: float                   # seconds


class EngineError(Exception):
    """The engine could not be started or reached (e.g. no Dask scheduler at that address)."""


# --------------------------------------------------------------------------- one measurement


class Invalid(Exception):
    """A record that is not a usable measurement; ``reason`` is a key of reader.REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_REQUIRED = ("test_name", "measurement_start_time", "probe_cc", "probe_asn", "test_keys")


@dataclass(frozen=True)
class Envelope:
    """The envelope fields the store indexes, checked."""

    test_name: str
    start: dt.datetime               # naive UTC
    probe_cc: str
    probe_asn: str                   # "AS1234"
    input: str | None
    report_id: str | None


def _type(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def json_kind(value: object) -> str:
    """``value``'s JSON type with its article, for a refusal: "an array", "a string", "null" (the collector's too)."""
    name = _type(value)
    return name if name == "null" else f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def envelope(m: Any) -> Envelope:
    """Check the fields every measurement must have; raise `Invalid` otherwise."""
    if not isinstance(m, dict):
        raise Invalid("wrong_type", f"the record is a JSON {_type(m)}, not an object")
    for name in _REQUIRED:
        if m.get(name) is None:
            raise Invalid("missing_field", f"no {name}")
    test_name, start, cc, asn = m["test_name"], m["measurement_start_time"], m["probe_cc"], m["probe_asn"]
    if not isinstance(m["test_keys"], dict):
        raise Invalid("wrong_type", f"test_keys is {json_kind(m['test_keys'])}, not an object")
    for name, value in (("test_name", test_name), ("measurement_start_time", start), ("probe_cc", cc)):
        if not isinstance(value, str):
            raise Invalid("wrong_type", f"{name} is {json_kind(value)}, not a string")
    if isinstance(asn, int) and not isinstance(asn, bool):
        asn = f"AS{asn}"
    elif not isinstance(asn, str):
        raise Invalid("wrong_type", f"probe_asn is {json_kind(asn)}, not a string")
    if not test_name or len(test_name) > 100:
        raise Invalid("invalid_value", "empty or overlong test_name")
    try:
        when = dt.datetime.fromisoformat(start.strip())
        if when.tzinfo is not None:
            when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise Invalid("invalid_value", f"measurement_start_time {start[:40]!r} is not a time") from None
    inp = m.get("input")
    if inp is not None and not isinstance(inp, str):
        raise Invalid("wrong_type", f"input is {json_kind(inp)}, not a string")
    report_id = m.get("report_id")
    return Envelope(test_name, when, _cc(cc), _asn(asn), inp or None,
                    report_id if isinstance(report_id, str) else None)


def _compact(text: str, keep: str) -> str:
    return "".join(ch for ch in text if ch in keep)


_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@lru_cache(maxsize=1024)
def _uid_test(test_name: str) -> str:
    # ASCII letters kept before lower-casing: a Kelvin sign (U+212A) lower-cases to "k", "İ" to "i" and a dot
    return _compact(test_name, _ALNUM + _UPPER).lower()[:40] or "unknown"


@lru_cache(maxsize=4096)
def _cc(probe_cc: str) -> str:
    """A country code as the store keeps it: two ASCII capitals, or OONI's "ZZ" (unknown) for anything else
    (a path, markup, a name): it names Parquet partitions and is shown everywhere. ASCII is checked before
    upper-casing, which turns some letters into ASCII ones ("ır" into "IR", "ß" into "SS", "ﬆ" into "ST")."""
    cc = probe_cc.strip()
    return cc.upper() if len(cc) == 2 and cc.isascii() and cc.isalpha() else "ZZ"


@lru_cache(maxsize=4096)
def _asn(probe_asn: str) -> str:
    """A network as the store keeps it: "AS" and the number (OONI writes "AS0" when it is unknown)."""
    text = probe_asn.strip()
    if text[:2] in ("AS", "as", "As", "aS"):  # not by upper(): "aſ" ("ſ", long s) upper-cases to "AS"
        text = text[2:]
    if text.isascii() and text.isdigit() and len(text) <= 10 and int(text) < 2**32:
        return f"AS{int(text)}"
    return "AS0"


def content_uid(m: Mapping[str, Any], env: Envelope) -> tuple[str, int]:
    """(measurement_uid, 64-bit key): ``YYYYmmddHHMMSS_CC_testname_<128-bit hash>``.

    The hash is a SHA-256 of the canonical JSON (orjson, keys sorted): the same
    measurement, however formatted, always gets the same uid. Raises ``orjson.JSONEncodeError``
    for a measurement nested too deep to write back (`TOO_DEEP`).
    """
    digest = _content_hash(m)
    # the year padded by hand: strftime's %Y writes year 1 as "1", not "0001"
    uid = f"{env.start.year:04d}{env.start:%m%d%H%M%S}_{env.probe_cc}_{_uid_test(env.test_name)}_{digest[:16].hex()}"
    return uid, int.from_bytes(digest[:8], "big", signed=True)


def gives_uid(data: bytes, uid: str) -> bool:
    """Whether a measurement's stored bytes still give the content hash its uid ends with (`content_uid`): a zstd
    frame carries no checksum, and a segment damaged in place decompresses to the size written. A line of Censored
    Planet's is hashed as published, without what analyze added to it (`censoredplanet.with_source`)."""
    try:
        m = orjson.loads(data)
        added = isinstance(m, dict) and not censoredplanet.ADDED.isdisjoint(m)
        return any(_content_hash(kept)[:16].hex() == uid[-32:]
                   for kept in ((m, censoredplanet.published(m)) if added else (m,)))
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return False


def _content_hash(m: Any) -> bytes:
    """SHA-256 of the canonical JSON (orjson, keys sorted): what a uid's hash is the first 128 bits of."""
    return hashlib.sha256(orjson.dumps(m, option=orjson.OPT_SORT_KEYS)).digest()


SITELESS_TESTS = frozenset((*APPS, *TOOLS))  # OONI's instant-messaging and circumvention tests, and our wireguard


@lru_cache(maxsize=65536)  # inputs recur: test lists hold a few thousand URLs, measured everywhere
def domain_of(test_name: str, inp: str | None) -> str | None:
    """The site a measurement's input names, or None. An app's or a tool's test names no site: its input, where it
    has one, is one of the tool's servers (wireguard://198.19.3.40:51820), which the reports and the explorer show
    under the app or tool, not among the sites (and their input still finds it)."""
    if not inp or test_name in SITELESS_TESTS:
        return None
    if "://" in inp:
        try:
            host = urlsplit(inp).hostname
        except ValueError:
            return None
        return _host(host)
    if test_name == "dnscheck" or ("." in inp and " " not in inp and "/" not in inp):
        return _host(inp.strip())
    return None


_NOT_IN_HOSTS = frozenset('<>"\'`{}|\\^%/?#@ ')


def _host(host: str | None) -> str | None:
    """A host name as the store keeps it, or None if it cannot be one (markup, spaces, controls).

    Controls are what `str.isprintable` refuses: C0 and C1 controls, DEL, format characters (bidi overrides
    and isolates, zero-width spaces and joiners, the BOM, soft hyphens), line and paragraph separators, spaces
    other than ASCII's, surrogates, private use and unassigned code points. IDNA allows none of them in a
    name but the zero-width joiner and non-joiner, which IDNA 2008 allows in some scripts' names (CONTEXTJ:
    Persian writes with the non-joiner): those two are kept."""
    if not host:
        return None
    host = host.rstrip(".").lower()
    if not host or len(host) > 253 or not _printable(host) or any(ch in _NOT_IN_HOSTS for ch in host):
        return None
    host = unicode_host(host)  # one spelling per site: yandex's page is not split by how a list wrote it
    return host if _printable(host) else None  # an xn-- label decodes to no control (IDNA), but checked


def _printable(host: str) -> bool:
    """`str.isprintable`, but for the joiners IDNA 2008 allows in names (U+200C and U+200D)."""
    return host.isprintable() or host.replace("\u200c", "").replace("\u200d", "").isprintable()


def _label(value: Any) -> str | None:
    """x_signature / x_equipment as one short string, whatever shape the probe gave: our x_signature's
    ``key`` (``tcp/RA/ttl128/win0/ipid30000``, the same for every packet the box forged, wherever it was
    sent), an equipment's ``name`` (tls_mitm) or ``kind`` (evasion), another probe's id or name."""
    if value is None or value == "" or value == {} or value == []:
        return None
    if isinstance(value, str):
        return value[:200]
    if isinstance(value, Mapping):
        for key in ("id", "name", "label", "key", "signature", "vendor", "kind"):
            if isinstance(value.get(key), str) and value[key]:
                return str(value[key])[:200]
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()[:200]


def _blocking(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _local_outcome(v: Verdict) -> str:
    if v.status == "failure":
        return "failure"
    if v.status != "anomaly":
        return "ok"
    return "confirmed" if v.fingerprints else "anomaly"  # the store upgrades repeated anomalies


def _not_json(data: bytes, exc: orjson.JSONDecodeError) -> str:
    """Why a record is not JSON, in one line: orjson's words, or, for bytes that are not UTF-8 (for which orjson
    says "surrogates not allowed", whatever the byte), the first such byte and where it is."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not UTF-8: byte {data[bad.start]:#04x} at offset {bad.start}"
    return str(exc).splitlines()[0][:160] if str(exc) else "not valid JSON"


def _analysis_failure(exc: BaseException) -> Verdict:
    return Verdict(None, None, "none", 0.0, "failure", (f"analysis_error: {type(exc).__name__}",))


# --------------------------------------------------------------------------- one batch


Item = Line | Rejection | FileDone | Unread


def analyse_batch(items: Sequence[Item], matcher: Matcher | None = None,
                  *, fingerprints: bool = True, selection: Selection | None = None) -> BatchResult:
    """Everything one batch of input records yields (pure apart from the matcher's memo)."""
    if matcher is None and fingerprints:
        matcher = default_matcher()
    calls0, hits0 = (matcher.calls, matcher.hits) if matcher else (0, 0)
    version = analysis_version()  # with the fingerprints of one's own it matched with, if any
    mrows: list[tuple[Any, ...]] = []
    vrows: list[tuple[Any, ...]] = []
    raw: list[bytes] = []
    rrows: list[tuple[Any, ...]] = []
    obs = ObservationColumns()
    rejections: list[Rejection] = []
    errors: list[Rejection] = []
    order: list[str] = []
    seen: set[str] = set()
    done: list[FileDone] = []
    records = outside = unread = 0
    cp = [0] * 7  # BatchResult.censoredplanet
    loads = orjson.loads
    for item in items:
        if isinstance(item, FileDone):
            done.append(item)
            continue
        if isinstance(item, Unread):
            unread += 1
            continue
        records += 1
        if isinstance(item, Rejection):
            rejections.append(item)
            continue
        try:
            m = loads(item.data)
        except orjson.JSONDecodeError as exc:
            rejections.append(Rejection(item.source, item.line, "corrupt_json", _not_json(item.data, exc)))
            continue
        kept = m  # the record as it came: its content names it
        data = item.data
        try:
            env = envelope(m)
        except Invalid as exc:
            try:  # not OONI's: a line of Censored Planet's, read as a remote_web or remote_dns measurement
                if not censoredplanet.looks_like(m):
                    raise exc
                if censoredplanet.is_page(m):  # a page of Satellite's blockpages.json: read with its measurement
                    if _page_joined(item, m):
                        cp[5] += 1
                        continue
                else:  # with what its source adds: a v1 line's protocol or scan, a Satellite line's pages
                    data, m, kept = censoredplanet.with_source(data, m, item.source)
                m = censoredplanet.convert(m)
                if m["test_keys"]["x_censoredplanet"].get("pages"):
                    cp[6] += 1
                env = envelope(m)
            except censoredplanet.Unreadable as why:
                rejections.append(Rejection(item.source, item.line, "invalid_value", f"censoredplanet: {why}"))
                continue
            except Invalid as final:
                rejections.append(Rejection(item.source, item.line, final.reason, final.detail))
                continue
            except Exception as bug:  # a bug in the conversion must not stop the run either
                rejections.append(Rejection(item.source, item.line, "invalid_value",
                                            f"censoredplanet: {type(bug).__name__}: {str(bug)[:120]}"))
                continue
        if selection is not None and not selection.admits(env):
            outside += 1
            continue
        try:
            uid, key = content_uid(kept, env)
        except orjson.JSONEncodeError:  # parsed, but too deep to write back: no canonical form, no uid
            rejections.append(Rejection(item.source, item.line, "invalid_value", TOO_DEEP))
            continue
        order.append(uid)
        if uid in seen:
            continue
        seen.add(uid)
        try:
            if env.test_name == "blocking_rules":  # and the rule of each layer, for report and explorer
                verdict, x_rules = blocking_rules_judged(m, matcher)
                rrows += rows_of(uid, x_rules)
            else:
                verdict = verdict_for(m, matcher)
        except Exception as exc:  # a bug in a verdict function must not stop the run
            verdict = _analysis_failure(exc)
            errors.append(Rejection(item.source, item.line, "analysis_error",
                                    f"{type(exc).__name__}: {str(exc)[:120]}"))
        if m is not kept:  # a line of Censored Planet's: its own judgement against ours
            cp[0] += 1
            flagged = m["test_keys"]["x_censoredplanet"].get("anomaly")  # v1 calls it Blocked
            if isinstance(flagged, bool) and verdict.status != "failure":
                found = verdict.status == "anomaly"
                cp[(1 if found else 2) if flagged else (3 if found else 4)] += 1
        tk = m["test_keys"]
        day = env.start.date()
        inp, test, cc, asn, start = env.input, env.test_name, env.probe_cc, env.probe_asn, env.start
        domain = domain_of(test, inp)
        network_name = _opt_str(m.get("probe_network_name"))
        # Rows in MEASUREMENT_SCHEMA and VERDICT_SCHEMA order.
        mrows.append((uid, key, env.report_id, inp, domain, test, _opt_str(m.get("test_version")), cc, asn,
                      network_name, start, day, _opt_str(m.get("software_name")),
                      _opt_str(m.get("software_version")), path_text(item.source)))
        vrows.append((uid, test, inp, domain, cc, asn, network_name, day, start, _blocking(verdict.blocking),
                      verdict.accessible, verdict.mechanism, verdict.confidence, verdict.status,
                      list(verdict.evidence), list(verdict.fingerprints), _label(tk.get("x_signature")),
                      _label(tk.get("x_equipment")), version, _local_outcome(verdict), transport_of(tk)))
        obs.add(uid, tk)
        raw.append(data)
    return BatchResult(
        measurements=rows_to_table(mrows, MEASUREMENT_SCHEMA),
        verdicts=rows_to_table(vrows, VERDICT_SCHEMA),
        observations=obs.to_arrow(),
        rules=rule_table(rrows) if rrows else None,
        raw=tuple(raw),
        rejections=tuple(rejections),
        records=records,
        order=tuple(order),
        errors=tuple(errors),
        matcher_calls=(matcher.calls - calls0) if matcher else 0,
        matcher_hits=(matcher.hits - hits0) if matcher else 0,
        outside=outside,
        unread=unread,
        files_done=tuple(done),
        censoredplanet=(cp[0], cp[1], cp[2], cp[3], cp[4], cp[5], cp[6]),
    )


def _page_joined(item: Line, page: dict[str, Any]) -> bool:
    """Whether this page of Satellite's blockpages.json is among those joined to the measurements of the
    results.json beside it (and needs no row of its own); `censoredplanet.Unreadable` for one that is beyond
    the pages held per scan. False when no results.json is beside it: a rejection, with its reason."""
    index = censoredplanet.pages_beside(item.source)
    if index is None or not index.results:
        return False
    key, ip = page.get("keyword"), page.get("ip")
    if isinstance(key, str) and isinstance(ip, str) and item.data in index.pages.get((key, ip), ()):
        return True
    if index.over:
        raise censoredplanet.Unreadable(f"a page of blockpages.json beyond the {censoredplanet.MAX_PAGES_BYTES >> 20} "
                                        "MB of pages held per scan: not joined to its measurement")
    return False


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _batches(items: Iterable[Item], size: int, max_bytes: int = BATCH_BYTES) -> Iterator[list[Item]]:
    """Batches of at most ``size`` records and about ``max_bytes`` of input (memory stays bounded)."""
    batch: list[Item] = []
    held = 0
    for item in items:
        batch.append(item)
        if isinstance(item, Line):
            held += len(item.data)
        if len(batch) >= size or held >= max_bytes:
            yield batch
            batch = []
            held = 0
    if batch:
        yield batch


# --------------------------------------------------------------------------- worker entry points


def _worker_batch(items: list[Item], fingerprints: bool, selection: Selection | None = None) -> BatchResult:
    return analyse_batch(items, fingerprints=fingerprints, selection=selection)


def analyse_partition(part: Partition, batch_size: int = BATCH_SIZE, max_bytes: int = reader.MAX_MEASUREMENT_BYTES,
                      fingerprints: bool = True, selection: Selection | None = None) -> list[BatchResult]:
    """A Dask task: one partition, analysed batch by batch."""
    return [analyse_batch(b, fingerprints=fingerprints, selection=selection)
            for b in _batches(reader.read_partition(part, max_bytes), batch_size)]


def _file_marker(done: FileDone) -> BatchResult:
    """A batch that holds nothing but the news that a file was read in full (the Dask engine's)."""
    return BatchResult(measurements=MEASUREMENT_SCHEMA.empty_table(), verdicts=VERDICT_SCHEMA.empty_table(),
                       observations=ObservationColumns().to_arrow(), raw=(), rejections=(), records=0,
                       files_done=(done,))


def _marked(items: Iterator[Line | Rejection | Unread], done: FileDone | None) -> Iterator[Item]:
    """The records of one file, then ``done`` unless the file could not be read in full ("unreadable")."""
    whole = True
    for item in items:
        if type(item) is Rejection and item.reason == "unreadable":
            whole = False
        yield item
    if done is not None and whole:
        yield done


def _warm(fingerprints: bool) -> int:
    """Compile the fingerprint database in a worker before the first batch arrives."""
    return default_matcher().pattern_count if fingerprints else 0


# --------------------------------------------------------------------------- engines


def run(paths: Sequence[str | os.PathLike[str]], store: Store, options: Options = Options(),
        progress: Callable[[Progress], None] | None = None) -> WriteStats:
    """Analyse everything under ``paths`` into ``store``; returns the run's counts.

    The caller opens the run (``store.begin_run``) when it wants to name the
    engine or track the order; otherwise one is opened here.
    """
    if options.engine not in ENGINES:
        raise ValueError(f"unknown engine {options.engine!r}")
    if options.workers < 1:
        raise ValueError("workers must be at least 1")
    store.run_id  # noqa: B018 - opens a run if the caller did not
    started = time.monotonic()
    seen = [0, 0]

    def write(result: BatchResult) -> None:
        store.write(result)
        seen[0] += result.records
        seen[1] += len(result.rejections)
        if progress is not None:
            progress(Progress(seen[0], seen[1], time.monotonic() - started))

    _lean_allocators()
    skipped = _Skipped()
    with store.streaming(), _quiet_gc(), _prompt_threads():
        if options.engine == "dask":
            _run_dask(paths, options, write, store, skipped)
        elif options.workers == 1:
            matcher = default_matcher() if options.fingerprints else None
            for batch in _batches(_read(paths, options, store, skipped), options.batch_size):
                write(analyse_batch(batch, matcher, fingerprints=options.fingerprints, selection=options.selection))
        else:
            _run_processes(paths, options, write, store, skipped)
        stats = store.finish_run()
        stats.files_skipped += skipped.elsewhere
        stats.files_known += skipped.known
        stats.files_unread += skipped.unread
        return stats


@dataclass
class _Skipped:
    elsewhere: int = 0   # files whose OONI path names another country or test than the selection's
    known: int = 0       # files an earlier run analysed in full
    unread: int = 0      # files of Censored Planet's scans that hold no measurement (scans.not_measurements)

    def count_unread(self, path: Path) -> None:
        self.unread += 1


_LOOKUP = 1024  # files looked up in the store at once


def _files(paths: Sequence[str | os.PathLike[str]], options: Options, store: Store,
           skipped: _Skipped) -> Iterator[tuple[Path, str, FileDone | None]]:
    """(file, kind, its identity to record once read in full, or None) for each file this run reads.

    Files outside the selection's countries and tests, and (unless ``reread``) files an earlier run
    analysed in full and that have not changed since, are counted and left out. A run with a
    selection reads files without recording them: it did not store all they hold.
    """
    def chunks() -> Iterator[list[tuple[Path, str, FileDone | None]]]:
        chunk: list[tuple[Path, str, FileDone | None]] = []
        for path, kind in reader.discover(paths, unread=skipped.count_unread):
            if options.selection is not None and not options.selection.opens(path):
                skipped.elsewhere += 1
                continue
            chunk.append((path, kind, None if kind == "stream" else reader.file_identity(path)))
            if len(chunk) >= _LOOKUP:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    for chunk in chunks():
        known = set() if options.reread else store.ingested([d for _, _, d in chunk if d is not None])
        for path, kind, identity in chunk:
            if identity is not None and identity.key in known:
                skipped.known += 1
                continue
            yield path, kind, identity if options.selection is None else None


@contextmanager
def _quiet_gc() -> Iterator[None]:
    """The cyclic collector off what is loaded (modules, the fingerprint database) and run less often
    for the run: a batch's parsed measurements are thousands of dicts and lists that reference
    counting frees, and the collector, run every 700 of them, only rescans them (~4% of the main
    thread). The previous settings come back afterwards."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(100_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


SWITCH_INTERVAL = 0.0001  # s: how long a thread that wants the GIL waits for the one holding it to let go


@contextmanager
def _prompt_threads() -> Iterator[None]:
    """A shorter switch interval for the run (Python's default is 5 ms).

    The store's writer thread (`Store.write`) spends its transaction in DuckDB, zstd and file
    writes, which release the GIL; after each of those calls it must get the GIL back from the
    analysing thread, which gives it up only when the interval has passed. At 5 ms, each of the
    20,000-measurement corpus's transactions took 0.6-1.1 s of wall time instead of ~0.3, and
    the analysis waited for them (bench/analyze: run time beyond `analyse_batch`'s own 0.6-1.1 s;
    at 0.1 ms, 0.40-0.42 s and no wait). The previous interval comes back afterwards."""
    previous = sys.getswitchinterval()
    if previous <= SWITCH_INTERVAL:  # already as short: left as it is (setting it again would round it down)
        yield
        return
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _lean_allocators() -> None:
    """Allocators that give memory back, for the rest of the process.

    Arrow's allocations go through malloc: its default pool (mimalloc in these wheels) keeps
    pages it has freed for reuse; with a few hundred short-lived tables per run that retention
    grew the process by ~20 MB between a 20,000- and a 100,000-measurement run, and cost ~30 MB
    overall (bench/analyze, section 2). And malloc maps big blocks on their own
    (`_fixed_mmap_threshold`).
    """
    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())
    _fixed_mmap_threshold()


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


@lru_cache(maxsize=1)
def _fixed_mmap_threshold(threshold: int = 128 * 1024) -> bool:
    """Blocks of 128 KiB and more (Arrow buffers, zstd frames, joined raw lines) from their own
    mappings, returned to the system when freed.

    glibc starts with that threshold but raises it to the size of every mapped block freed, up
    to 32 MiB: after the first flush, each flush's multi-megabyte buffers come from the heap,
    which they fragment, and the process kept ~15 MB more at its peaks (bench/analyze,
    section 2). Setting the threshold explicitly turns that adjustment off. glibc only; a no-op
    (False) elsewhere.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or os.uname().sysname != "Linux":
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


def _read(paths: Sequence[str | os.PathLike[str]], options: Options, store: Store,
          skipped: _Skipped) -> Iterator[Item]:
    for path, kind, identity in _files(paths, options, store, skipped):
        yield from _marked(reader.read_partition(Partition(str(path), kind), options.max_bytes), identity)


def _run_processes(paths: Sequence[str | os.PathLike[str]], options: Options,
                   write: Callable[[BatchResult], None], store: Store, skipped: _Skipped) -> None:
    import multiprocessing

    # "spawn": this process holds a DuckDB connection and its threads; forking that is unsafe.
    context = multiprocessing.get_context("spawn")
    window = 2 * options.workers
    with ProcessPoolExecutor(max_workers=options.workers, mp_context=context,
                             initializer=interrupts.ignored_here) as pool:
        try:
            warm = [pool.submit(_warm, options.fingerprints) for _ in range(options.workers)]
            for f in warm:
                f.result()
            pending: deque[Future[BatchResult]] = deque()
            for batch in _batches(_read(paths, options, store, skipped), options.batch_size):
                pending.append(pool.submit(_worker_batch, batch, options.fingerprints, options.selection))
                while len(pending) >= window:
                    write(pending.popleft().result())
            while pending:
                write(pending.popleft().result())
        except BaseException:  # Ctrl-C (the workers leave it to us), a full disk: what is queued is not begun
            pool.shutdown(wait=False, cancel_futures=True)
            raise


WORKER_WAIT = 30.0  # seconds an external Dask scheduler with no worker is given to get one


def _run_dask(paths: Sequence[str | os.PathLike[str]], options: Options,
              write: Callable[[BatchResult], None], store: Store, skipped: _Skipped) -> None:
    from contextlib import ExitStack

    from distributed import Client, LocalCluster

    files = {str(path): identity for path, _, identity in _files(paths, options, store, skipped)}
    parts = [p for p in reader.partitions(paths, options.split_bytes) if p.path in files]
    streams = [p.path for p in parts if p.kind == "stream"]
    if streams:  # a worker would read its own standard input, or wait on a pipe it cannot see
        raise EngineError(f"the dask engine reads files, not standard input or pipes ({streams[0]}): "
                          "use the local engine")
    with ExitStack() as stack:
        if options.scheduler:
            try:
                client = stack.enter_context(Client(options.scheduler, timeout="5s"))  # type: ignore[no-untyped-call]
            except (OSError, TimeoutError) as exc:
                raise EngineError(f"cannot reach the Dask scheduler at {options.scheduler}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
            except (ValueError, TypeError) as exc:  # Dask refused the address or its scheme before connecting
                raise EngineError(f"cannot connect to {options.scheduler} as a Dask scheduler: "
                                  f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                                  ) from exc
            except Exception as exc:  # noqa: BLE001 - whatever answered there does not speak Dask's protocol
                # (an HTTP server's reply read as a frame length made Dask allocate exabytes: MemoryError)
                raise EngineError(f"cannot use {options.scheduler} as a Dask scheduler: it answered, but not as "
                                  f"one ({type(exc).__name__})") from exc
            if not client.scheduler_info().get("workers"):  # every task would wait, and the run say nothing
                try:
                    client.wait_for_workers(1, timeout=WORKER_WAIT)
                except TimeoutError:
                    raise EngineError(f"the Dask scheduler at {options.scheduler} has no workers (waited "
                                      f"{WORKER_WAIT:g} s): start one with `dask worker {options.scheduler}`") \
                        from None
        else:
            # Its scheduler's HTTP server (there is no dashboard without bokeh) on a free port of this machine
            # only: with dashboard_address=None it takes 0.0.0.0:8787, open to the network, and two analyses at
            # once collide there.
            # Its workers leave Ctrl-C to this process (analysis/daskworker.py), and Dask's own logs are not said:
            # after a Ctrl-C each worker printed its traceback and Dask its errors about the tasks it dropped.
            cluster = stack.enter_context(LocalCluster(  # type: ignore[no-untyped-call]  # Dask: no annotations
                n_workers=options.workers, threads_per_worker=1, processes=True, silence_logs=logging.CRITICAL,
                preload=["tamperscope.analysis.daskworker"],
                dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False}, host="127.0.0.1"))
            client = stack.enter_context(Client(cluster))  # type: ignore[no-untyped-call]
        client.run(_warm, options.fingerprints)
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        window = 2 * workers
        pending: deque[tuple[Partition, Any]] = deque()
        broken: set[str] = set()  # files with an "unreadable" piece: never recorded as read in full

        def write_partition(part: Partition, results: list[BatchResult]) -> None:
            for result in results:
                if any(r.reason == "unreadable" for r in result.rejections):
                    broken.add(part.path)
                write(result)
            # results come back in partition order: a file's last range (or whole file) comes after the rest
            done = files[part.path]
            if part.end is None and done is not None and part.path not in broken:
                write(_file_marker(done))

        for part in parts:
            pending.append((part, client.submit(analyse_partition, part, options.batch_size, options.max_bytes,
                                                options.fingerprints, options.selection, pure=False)))
            while len(pending) >= window:
                done_part, future = pending.popleft()
                write_partition(done_part, future.result())
        while pending:
            done_part, future = pending.popleft()
            write_partition(done_part, future.result())


# --------------------------------------------------------------------------- single submissions


def ingest(store: Store, records: Sequence[bytes], source: str = "api") -> list[str | None]:
    """Analyse and store raw measurements one call at a time (the collector's path).

    Returns the uid of each record, or None where it was rejected; flushes before
    returning, so what was acknowledged is on disk.
    """
    items: list[Line | Rejection] = [Line(source, i + 1, data.strip()) for i, data in enumerate(records)]
    result = analyse_batch(items)
    store.write(result)
    store.flush()
    rejected = {r.line for r in result.rejections}
    order = iter(result.order)
    return [None if i + 1 in rejected else next(order) for i in range(len(records))]


__all__ = [
    "BATCH_SIZE", "ENGINES", "EngineError", "Envelope", "Invalid", "Options", "Progress", "Selection",
    "analyse_batch",
    "analyse_partition", "content_uid", "domain_of", "envelope", "gives_uid", "ingest", "json_kind", "run",
]
