"""The ``analyze``, ``report`` and ``export`` subcommands: thin over the analysis library.

Exit codes: 0 done (bad input may have been skipped: it is counted and shown);
1 the input held records but not one usable measurement; 2 usage errors (a
path that does not exist, no measurement files, a store in use or too new, an
unreachable Dask scheduler, bad options), always as one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import duckdb

from tamperscope.analysis.categories import TestList, read_test_lists, store_lists
from tamperscope.analysis.reader import REASONS
from tamperscope.analysis.schema import blocking_json
from tamperscope.analysis.store import Store, StoreError, WriteStats, default_db_path, error_line, raw_root_for
from tamperscope.cli import UsageError, check_utf8_path, path_arg, path_text_arg, quiet_stdout, utf8_path_arg
from tamperscope.model import interrupts
from tamperscope.model.categories import GLOBAL, normal_code
from tamperscope.model.inputs import BadInput, unicode_host

if TYPE_CHECKING:
    from tamperscope.analysis.aggregates import Filters

JSONL_KEYS = ("measurement_uid", "report_id", "input", "test_name", "probe_cc", "probe_asn", "blocking",
              "accessible", "x_mechanism", "x_confidence", "fingerprints")


MAX_LIMIT = 10_000  # rows per table of a report: more is not a report any more (and DuckDB wants an int64)


# ASCII is checked before changing case: upper() makes "ır" "IR" and "aſ1" "AS1", lower() makes a Kelvin sign "k"


def _country(value: str) -> str:
    cc = value.strip()
    if len(cc) != 2 or not cc.isascii() or not cc.isalpha():
        raise argparse.ArgumentTypeError(f"{value!r} is not a two-letter country code")
    return cc.upper()


def _asn(value: str) -> str:
    text = value.strip()
    number = text.upper().removeprefix("AS") if text.isascii() else text
    if not number.isascii() or not number.isdigit() or not 0 < int(number) < 2**32:
        raise argparse.ArgumentTypeError(f"{value!r} is not an AS number (AS12345, or 12345)")
    return f"AS{int(number)}"


def _day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _test_name(value: str) -> str:
    name = value.strip()
    name = name.lower() if name.isascii() else name
    if not 0 < len(name) <= 64 or not name.isascii() or not all(c.isalnum() or c == "_" for c in name):
        raise argparse.ArgumentTypeError(f"{value!r} is not a test name (web_connectivity, telegram, tor...)")
    return name


def _domain(value: str) -> str:
    """A host name as the store keeps it (lower case, no trailing dot; an IDN in Unicode, as in the URL)."""
    name = value.strip().rstrip(".").lower()
    if not 0 < len(name) <= 253 or not all(c.isalnum() or c in "-._" for c in name):
        raise argparse.ArgumentTypeError(f"{value!r} is not a domain name (example.com)")
    return unicode_host(name)  # xn--d1acpjx3f.xn--p1ai and яндекс.рф are one site


def _category(value: str) -> str:
    try:
        return normal_code(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _check_days(args: argparse.Namespace) -> None:
    if args.since is not None and args.until is not None and args.since > args.until:
        raise UsageError(f"--since {args.since} is after --until {args.until}")


def _countries(value: str) -> list[str]:
    return [_country(part) for part in value.split(",") if part.strip()] or [_country(value)]


def _test_names(value: str) -> list[str]:
    return [_test_name(part) for part in value.split(",") if part.strip()] or [_test_name(value)]


def _unreadable(store: Store, exc: duckdb.Error) -> int:
    """A store whose tables do not read: one line, exit 1; unless Ctrl-C came, which DuckDB can turn into any
    error of its own ('Table with name _m does not exist!' where it was looking up a table of ours)."""
    if interrupts.interrupted(exc):
        raise KeyboardInterrupt from None
    print(f"tamperscope: the store {store.path} cannot be read: {error_line(exc)}", file=sys.stderr)
    return 1


def add_parser(subparsers: Any) -> None:
    from tamperscope.analysis.verdicts import ANALYSIS_VERSION

    db_help = f"the analysis store (default: {default_db_path()}; env TAMPERSCOPE_DB)"

    p = subparsers.add_parser(
        "analyze", help="turn OONI-format measurements into verdicts and aggregates",
        description="Read measurements (ours or OONI's: .json, .jsonl, .jsonl.gz, .jsonl.zst, .post, OONI's raw "
                    "archive layout with .tar.gz postcans, and its historical .json.lz4 and .tar.lz4 files; "
                    "Censored Planet's Hyperquack (v1, v2) and Satellite (v1, v2.1, v2.2) scans, read as "
                    "remote_web and remote_dns measurements (a v1 line's protocol or time from its scan's name, a "
                    "Satellite v1 resolver's country from its scan's tagged_resolvers.json), "
                    "with the pages a Satellite scan fetched from its answers (blockpages.json) "
                    "joined to them; files or directories), re-derive every verdict from "
                    "the raw records, and write the store: raw measurements (verbatim, append-only), "
                    "measurements, observations and verdicts. Bad input is skipped, counted and reported. "
                    "Ingesting the same measurement twice leaves one row.")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="measurement files or directories; '-' reads standard input (plain, gzip, zstd or lz4: "
                        "zcat *.jsonl.gz | tamperscope analyze -); none with --test-list alone")
    p.add_argument("--test-list", type=utf8_path_arg, action="append", metavar="FILE", dest="test_lists",
                   help="a Citizen Lab test list (url,category_code,...) whose categories the store keeps, to count "
                        "blocked sites by category (news, human rights...); repeat it for several. tm.csv is for "
                        "TM's measurements, global.csv and any other name for every country; a list given again "
                        "replaces the one of the same file name. It categorises what the store holds already too")
    p.add_argument("--db", type=utf8_path_arg, help=db_help)
    p.add_argument("--jsonl", metavar="OUT", type=path_text_arg,
                   help="also write one JSON line per measurement (measurement_uid, report_id, input, test_name, "
                        "probe_cc, probe_asn, blocking, accessible, x_mechanism, x_confidence: the outcome, confirmed, "
                        "anomaly, failure or ok, fingerprints); '-' for stdout. "
                        "Written whole when the run ends (a run that analyses nothing leaves the file as it was); "
                        "never the store or an input")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes (local engine) or LocalCluster workers (dask engine); default 1")
    p.add_argument("--engine", choices=("local", "dask"), default="local",
                   help="where the analysis runs: this machine's processes, or a Dask cluster (default local)")
    p.add_argument("--scheduler", metavar="ADDR",
                   help="with --engine dask: an existing scheduler (tcp://host:8786); default: a LocalCluster")
    p.add_argument("--cc", type=_countries, action="extend", metavar="CC[,CC…]",
                   help="only measurements from these countries (probe_cc); files of OONI's archive that name "
                        "another country are not opened")
    p.add_argument("--test", type=_test_names, action="extend", metavar="NAME[,NAME…]",
                   help="only these nettests (test_name); files of OONI's archive that name another test are "
                        "not opened")
    p.add_argument("--since", type=_day, metavar="YYYY-MM-DD",
                   help="only measurements started on this day (UTC) or later")
    p.add_argument("--until", type=_day, metavar="YYYY-MM-DD",
                   help="only measurements started on this day (UTC) or earlier")
    p.add_argument("--fingerprints", type=path_arg, metavar="FILE",
                   help="blockpage fingerprints of your own, beside the shipped ones: a CSV in the columns of "
                        "Citizen Lab's http.csv (name, pattern, location_found body or header, ...), as the "
                        "explorer's /new-blockpages.csv proposes them; a page they match is a blockpage, with id "
                        f"local/NAME. The verdicts record them (analysis_version {ANALYSIS_VERSION}+local.DIGEST); "
                        "measurements stored before are judged with them by --reanalyse stale; default "
                        "$TAMPERSCOPE_FINGERPRINTS")
    p.add_argument("--asn-table", type=path_arg, metavar="FILE",
                   help="prefix-to-ASN table (iptoasn.com TSV, or its .tsv.gz), for Censored Planet's lines, which "
                        "name no network: each vantage's AS and name from it (AS0 without); default "
                        "$TAMPERSCOPE_ASN_TABLE")
    p.add_argument("--reanalyse", "--reanalyze", choices=("stale", "all"), metavar="stale|all",
                   help="derive again the verdicts, observations and rules the store holds, from the raw "
                        "measurements it keeps: 'stale' those another analysis derived (an older release's rules, "
                        "or other fingerprints of your own), 'all' every one. --cc, --test, --since and --until "
                        "narrow it. Runs on this machine, in --workers processes (whatever the engine), after the "
                        "PATHs given (if any) are analysed; a measurement whose raw bytes cannot be read keeps its "
                        "verdict and is counted")
    p.add_argument("--reread", action="store_true",
                   help="read again the files an earlier run analysed in full (by default they are skipped "
                        "while their size and modification time are unchanged)")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=analyze_command)

    r = subparsers.add_parser(
        "report", help="summarise the store: terminal tables, optionally a self-contained HTML report",
        description="Print the top blocked domains, the tests with interference (apps and circumvention tools "
                    "too), networks and mechanisms, what the censors' rules match (from blocking_rules "
                    "measurements), and the blockpages no fingerprint knows, grouped by template, each with a "
                    "fingerprint proposed. With --html, also write one self-contained HTML file (plotly embedded, "
                    "works offline): timeline, domain x network heatmap, mechanisms by country, equipment signatures, "
                    "rules, tests. The filters combine: --cc IR --test telegram --since 2024-01-01.")
    r.add_argument("--db", type=utf8_path_arg, help=db_help)
    r.add_argument("--html", metavar="OUT", type=path_arg,
                   help="write the HTML report to OUT ('-': standard output, instead of the tables)")
    r.add_argument("--json", metavar="OUT", type=path_text_arg,
                   help="write the report's numbers as one JSON document to OUT ('-': standard output, "
                        "instead of the tables); format in docs/analysis.md")
    r.add_argument("--propose-fingerprints", metavar="OUT", type=path_arg, dest="propose",
                   help="write the fingerprints proposed for the blockpages no fingerprint knows (up to "
                        "100 templates, the largest first) as a CSV in the columns of Citizen Lab's http.csv, to "
                        "review and then give to analyze --fingerprints FILE --reanalyse stale ('-': standard "
                        "output, instead of the tables)")
    r.add_argument("--cc", type=_country, help="only this country (probe_cc, two letters: IR, ru)")
    r.add_argument("--asn", type=_asn, help="only this network (probe_asn: AS12345, or 12345)")
    r.add_argument("--test", type=_test_name, help="only this nettest (test_name: web_connectivity, telegram, tor...)")
    r.add_argument("--domain", type=_domain, help="only this site (the input's host name: example.com)")
    r.add_argument("--category", type=_category, metavar="CODE",
                   help="only sites of this Citizen Lab category (NEWS, HUMR, ANON...), as the store's test lists "
                        "file them (tamperscope analyze --test-list)")
    r.add_argument("--since", type=_day, metavar="YYYY-MM-DD", help="only measurements of this day or later")
    r.add_argument("--until", type=_day, metavar="YYYY-MM-DD", help="only measurements of this day or earlier")
    r.add_argument("--limit", type=int, default=15, help=f"rows per table (default 15, at most {MAX_LIMIT:,})")
    r.set_defaults(func=report_command)

    e = subparsers.add_parser(
        "export", help="write the store's tables as Parquet, partitioned by day and country",
        description="Write measurements, verdicts, observations and rules as Parquet under DIR/<table>/day=.../"
                    "probe_cc=.../, plus rejections.parquet, runs.parquet and test_lists.parquet.")
    e.add_argument("--parquet", metavar="DIR", type=Path, required=True, help="output directory")
    e.add_argument("--db", type=utf8_path_arg, help=db_help)
    e.set_defaults(func=export_command)


def store_path(db: Path | None) -> Path:
    """The store's path: ``--db``, else ``$TAMPERSCOPE_DB``, else the default; a usage error, naming where it came
    from, for one whose bytes are not UTF-8 (DuckDB cannot open it)."""
    path = db or default_db_path()
    check_utf8_path("--db" if db else "$TAMPERSCOPE_DB" if os.environ.get("TAMPERSCOPE_DB") else "the store", path)
    return path


def _open(db: Path | None, *, create: bool) -> Store:
    path = store_path(db)
    try:
        return Store(path, create=create)
    except StoreError as exc:
        raise UsageError(str(exc)) from None


# --------------------------------------------------------------------------- analyze


def analyze_command(args: argparse.Namespace) -> int:
    from tamperscope.analysis import pipeline, reader

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.workers > (most := 4 * (os.cpu_count() or 1)):
        raise UsageError(f"--workers {args.workers}: this machine has {os.cpu_count() or 1} CPUs; at most {most} "
                         "workers help")
    if args.scheduler is not None and args.engine != "dask":
        raise UsageError("--scheduler needs --engine dask")
    from tamperscope.analysis.verdicts import FINGERPRINTS_ENV, use_fingerprints_given

    if args.scheduler is not None and (args.fingerprints or os.environ.get(FINGERPRINTS_ENV)):
        raise UsageError("--fingerprints and --scheduler: the workers of a scheduler of yours do not have the "
                         "file; use the LocalCluster (no --scheduler) or the local engine")
    if args.scheduler is not None and args.asn_table:
        raise UsageError("--asn-table and --scheduler: the workers of a scheduler of yours do not have the file; "
                         "use the LocalCluster (no --scheduler) or the local engine")
    try:  # named in the environment: the worker processes match with it too
        use_fingerprints_given(args.fingerprints)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from tamperscope.analysis.censoredplanet import use_asn_table

    try:  # likewise
        use_asn_table(args.asn_table)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not args.paths:
        if not args.test_lists and not args.reanalyse:
            raise UsageError("give the measurement files or directories to analyse (PATH), --test-list FILE or "
                             "--reanalyse stale")
        if args.jsonl:
            raise UsageError("--jsonl writes the verdicts of the measurements analysed: give them (PATH)")
        if not args.reanalyse:
            print(f"store: {keep_test_lists(args.db, args.test_lists)}")
            return 0
        _check_days(args)
        lists = _test_lists(args.test_lists or [])
        store = _open(args.db, create=False)
        try:
            if lists:
                _keep_lists(store, lists)
            return _reanalyse(store, args, show=not args.quiet and sys.stderr.isatty())
        except duckdb.Error as exc:
            return _unreadable(store, exc)
        finally:
            store.close()
    lists = _test_lists(args.test_lists or [])
    if args.scheduler is not None:
        _check_scheduler(args.scheduler)
    _check_days(args)
    if args.engine == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UsageError("--engine dask needs the 'distributed' package") from None
    if args.engine == "dask" and any(reader.is_stream(p) for p in args.paths):
        raise UsageError("standard input and pipes can only be read by this process: use --engine local "
                         "(--workers N still analyses in parallel)")
    unread: list[Path] = []  # files of Censored Planet's scans that hold no measurement
    try:
        files = list(reader.discover(args.paths, unread=unread.append))
    except reader.InputError as exc:
        raise UsageError(str(exc)) from None
    if not files and unread:  # said first: a long path would push it out of the one line shown
        raise UsageError(f"the {len(unread):,} files of Censored Planet's scans under " + ", ".join(args.paths)
                         + " hold no measurement: they are the scans' resolvers, answers before their comparison, "
                         "logs and statistics")
    if not files:
        raise UsageError("no measurement files (.json, .jsonl, .jsonl.gz, .jsonl.zst, .json.lz4, .post, .tar.gz, "
                         ".tar.lz4) under "
                         + ", ".join(args.paths))
    out_tmp: Path | None = None
    if args.jsonl and args.jsonl != "-":
        target = Path(args.jsonl)
        if target.is_dir():
            raise UsageError(f"--jsonl {args.jsonl} is a directory: give the name of the file to write")
        if not target.parent.is_dir():
            raise UsageError(f"cannot write {args.jsonl}: no such directory {target.parent}")
        for path, kind in files:
            if kind != "stream" and _same(target, path):
                raise UsageError(f"--jsonl {args.jsonl} is also an input: give the verdicts a file of their own")
        _not_the_store("--jsonl", target, args.db)
        out_tmp = _temporary(target)

    store = _open(args.db, create=True)
    if lists:
        _keep_lists(store, lists)
    show = not args.quiet and sys.stderr.isatty()
    last = [0.0]

    def progress(p: pipeline.Progress) -> None:
        if show and p.elapsed - last[0] >= 0.5:
            last[0] = p.elapsed
            rate = p.records / p.elapsed if p.elapsed else 0.0
            print(f"\ranalyze: {p.records:,} records, {p.rejected:,} skipped, {rate:,.0f}/s",
                  end="", file=sys.stderr, flush=True)

    selection = None
    if args.cc or args.test or args.since or args.until:
        selection = pipeline.Selection(
            probe_cc=frozenset(args.cc) if args.cc else None, test_name=frozenset(args.test) if args.test else None,
            since=args.since, until=args.until)
    options = pipeline.Options(engine=args.engine, workers=args.workers, scheduler=args.scheduler,
                               selection=selection, reread=args.reread)
    # the workers of a cluster started elsewhere (another directory, another machine sharing the files) read
    # the paths from where they run: a relative one named another file, or none
    paths = [os.path.abspath(p) for p in args.paths] if args.scheduler is not None else args.paths
    started = time.monotonic()
    try:
        try:
            store.begin_run(engine=args.engine, workers=args.workers, paths=[str(p) for p in paths],
                            track_order=bool(args.jsonl))
            stats = pipeline.run(paths, store, options, progress)
        except pipeline.EngineError as exc:
            store.abandon_run()
            raise UsageError(str(exc)) from None
        except StoreError as exc:  # e.g. out of memory at the store's limit: what was committed stays
            print(f"tamperscope: {exc}", file=sys.stderr)
            return 1
        except duckdb.Error as exc:  # a damaged file (cut short): it opened, its tables do not read
            return _unreadable(store, exc)
        if show:
            print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
        told = sys.stderr if args.jsonl == "-" else sys.stdout
        print(summary(stats, time.monotonic() - started, store.path, _selection_words(args)), file=told)
        reanalysed = _reanalyse(store, args, show, told) if args.reanalyse else 0
        if not args.reanalyse:
            _tell_older(store, told)
        failing = not stats.accepted and bool(stats.records or stats.files_skipped or stats.files_unread) \
            and not stats.files_known
        jsonl_note = ""
        if args.jsonl and args.jsonl != "-" and not stats.accepted:
            # nothing analysed (bad input, all outside the selection, or known files skipped): an earlier run's
            # verdicts in that file are worth more than an empty file
            what = "left as it was" if os.path.lexists(args.jsonl) else "not written"
            jsonl_note = f"; --jsonl {args.jsonl} {what}"  # on the line that says why (one failure, one line)
            if not failing:
                print(f"tamperscope: --jsonl {args.jsonl} {what}: this run analysed no measurement", file=sys.stderr)
        elif args.jsonl:
            try:
                _write_jsonl(store, args.jsonl, out_tmp)
            except OSError as exc:
                if not (isinstance(exc, BrokenPipeError) and args.jsonl == "-"):
                    # a full disk, a directory made read-only meanwhile: the store keeps the run
                    print(f"tamperscope: cannot write {args.jsonl}: {exc.strerror or exc}; the verdicts are in "
                          f"the store {store.path}", file=sys.stderr)
                    return 1
                # `--jsonl - | head`: the reader had enough. Quietly, as `cat` would be; stdout goes
                # to /dev/null so that the interpreter's last flush does not complain either.
                quiet_stdout()
    finally:
        store.close()
    if reanalysed:
        return reanalysed
    if failing:
        if stats.outside or stats.files_skipped:
            why = "no measurement in the input matches the selection"
        elif not stats.records:
            why = "no measurement in the input, only the other files of Censored Planet's scans"
        else:
            why = "no usable measurement in the input"
        print(f"tamperscope: {why}{jsonl_note}", file=sys.stderr)
        return 1
    return 0


def _reanalyse(store: Store, args: argparse.Namespace, show: bool, told: Any = None) -> int:
    """``--reanalyse stale|all``: the stored verdicts selected derived again, a chunk per transaction. Exit code: 0,
    or 1 when some raw measurements could not be read (their verdicts stay as they were)."""
    from tamperscope.analysis import reanalysis
    from tamperscope.analysis.report import counted
    from tamperscope.analysis.verdicts import analysis_version

    told = told or sys.stdout
    clauses: list[str] = []
    params: list[Any] = []
    for column, values in (("probe_cc", args.cc), ("test_name", args.test)):
        if values:
            clauses.append(f"{column} IN (SELECT unnest(?::VARCHAR[]))")
            params.append(sorted(set(values)))
    for clause, day in (("day >= ?::DATE", args.since), ("day <= ?::DATE", args.until)):
        if day is not None:
            clauses.append(clause)
            params.append(str(day))
    stale = args.reanalyse == "stale"
    started = time.monotonic()
    store.flush()
    where = " AND ".join(clauses) or "TRUE"
    total = reanalysis.count(store.con, where=where, params=params, stale_only=stale)
    narrowed = f" ({words})" if (words := _selection_words(args)) else ""
    version = analysis_version()
    if not total:
        what = f"no stored verdict{narrowed} was derived by another analysis than {version}" if stale else \
            f"the store holds no verdict{narrowed}"
        print(f"reanalyse: {what}: nothing to do", file=told)
        return 0

    def progress(done: int) -> None:
        if show:
            print(f"\rreanalyse: {done:,} of {total:,} measurements", end="", file=sys.stderr, flush=True)

    pages = reanalysis.pages(store.con, where=where, params=params, stale_only=stale, size=reanalysis.CLI_CHUNK)
    totals = reanalysis.reanalyse_all(store, pages, workers=args.workers, progress=progress)
    if show:
        print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
    elapsed = time.monotonic() - started
    which = "stale " if stale else ""
    print(f"reanalysed {counted(totals.reanalysed, which + 'measurement')}{narrowed} with analysis {version} in "
          f"{elapsed:.1f} s: {counted(totals.changed, 'verdict')} changed"
          + (f"; {totals.fingerprinted} more kept {'its' if totals.fingerprinted == 1 else 'their'} verdict with "
             "other fingerprints (a blockpage a fingerprint now names)" if totals.fingerprinted else ""), file=told)
    if totals.networks_named:
        print(f"networks: {counted(totals.networks_named, 'measurement')} stored without one (AS0: read without an "
              "ASN table) now on the network the ASN table names", file=told)
    if totals.missing:
        why = _example("; ".join(sorted(set(store.unreadable.values()))) or "their raw bytes are not in the store")
        print(f"tamperscope: {counted(totals.missing, 'measurement')} kept {'its' if totals.missing == 1 else 'their'}"
              f" older verdict: {why}", file=sys.stderr)
        return 1
    return 0


def _tell_older(store: Store, told: Any) -> None:
    """A line when the store holds verdicts an older release's rules derived (after an upgrade), and how to
    derive them again."""
    from tamperscope.analysis import reanalysis
    from tamperscope.analysis.verdicts import ANALYSIS_VERSION

    store.flush()
    older = reanalysis.older(store.con)
    if older:
        print(f"note: the store holds {reanalysis.older_words(older)}: `tamperscope analyze --reanalyse stale` "
              "derives them again from the raw measurements", file=told)
    newer = reanalysis.newer(store.con)
    if newer:
        print(f"note: the store holds {reanalysis.older_words(newer, 'a newer')}, written by a later tamperscope "
              f"than this one (version {ANALYSIS_VERSION}); `--reanalyse stale` would derive them by these older "
              "rules", file=told)


def _selection_words(args: argparse.Namespace) -> str | None:
    words = []
    if args.cc:
        ccs = sorted(set(args.cc))
        words.append(f"{'country' if len(ccs) == 1 else 'countries'} {', '.join(ccs)}")
    if args.test:
        tests = sorted(set(args.test))
        words.append(f"{'test' if len(tests) == 1 else 'tests'} {', '.join(tests)}")
    if args.since:
        words.append(f"from {args.since}")
    if args.until:
        words.append(f"until {args.until}")
    return "; ".join(words) or None


def _write_jsonl(store: Store, target: str, tmp: Path | None) -> None:
    """To standard output (``-``), in place (a device or a pipe: ``tmp`` is None), or to ``tmp`` renamed."""
    import orjson

    from tamperscope.analysis.sheets import escaped_json

    out = sys.stdout.buffer if target == "-" else open(target if tmp is None else tmp, "wb")
    try:
        for row in store.run_lines():
            line = {
                "measurement_uid": row["measurement_uid"], "report_id": row["report_id"],
                "input": row["input"], "test_name": row["test_name"], "probe_cc": row["probe_cc"],
                "probe_asn": row["probe_asn"], "blocking": blocking_json(row["blocking"]),
                "accessible": row["accessible"], "x_mechanism": row["mechanism"],
                "x_confidence": row["outcome"], "fingerprints": list(row["fingerprints"] or []),
            }
            out.write(escaped_json(orjson.dumps(line)) + b"\n")  # no C1 or bidi control raw: `escaped_json`
        if target == "-":
            out.flush()
        else:
            out.close()
            if tmp is not None:
                os.replace(tmp, _destination(Path(target)))
    except BaseException:
        if target != "-":
            with contextlib.suppress(OSError):  # closing flushes, and a full disk fails that too
                out.close()
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


def _open_for_report(db: Path | None, filters: Filters) -> Store:
    """The store, or a usage error; when `tamperscope serve` holds it, the address of the same report there (a
    store opens in one process at a time, and a report is what a running server gives too)."""
    path = store_path(db)
    try:
        return Store(path, create=False)
    except StoreError as exc:
        if exc.serving is None:
            raise UsageError(str(exc)) from None
        narrowed = {k: str(v) for k, v in vars(filters).items() if v is not None}
        url = f"{exc.serving}/api/v1/export/report.html" + (f"?{urlencode(narrowed)}" if narrowed else "")
        raise UsageError(f"the store {path} is in use by `tamperscope serve`, which gives this report at {url} (or "
                         "stop it and run report again)") from None


def _test_lists(paths: list[Path]) -> list[TestList]:
    """Every --test-list read and checked before the store is touched (BadInput is a usage error)."""
    try:
        return read_test_lists(paths)
    except BadInput as exc:
        raise UsageError(str(exc)) from None


def _keep_lists(store: Store, lists: list[TestList], quiet: bool = False) -> None:
    from tamperscope.analysis.report import counted

    store_lists(store.con, lists)
    for tl in [] if quiet else lists:
        where = "every country" if tl.cc == GLOBAL else tl.cc
        entries = counted(len(tl.entries), "entry", "entries")
        print(f"test list {tl.name}: {entries}, {tl.categorised:,} with a category, for {where}")


def keep_test_lists(db: Path | None, paths: list[Path], quiet: bool = False) -> Path:
    """``--test-list`` without measurements (`analyze`, and `serve` before it starts): the lists read and checked,
    then kept in the store, each said in a line unless ``quiet``; a usage error for a bad list or a store that
    cannot be opened. Returns the store's path."""
    lists = _test_lists(paths)
    store = _open(db, create=True)
    try:
        _keep_lists(store, lists, quiet)
    finally:
        store.close()
    return store.path


def summary(stats: WriteStats, elapsed: float, db: Path, selection: str | None = None) -> str:
    from tamperscope.analysis.report import counted

    rate = stats.accepted / elapsed if elapsed > 0 else 0.0
    lines = [f"analyzed {counted(stats.accepted, 'measurement')} in {elapsed:.1f} s ({rate:,.0f}/s): "
             f"{stats.new:,} new, {stats.duplicates:,} already in the store; "
             f"{counted(stats.rejected, 'record')} skipped as bad input",
             f"store: {db}"]
    if stats.files_known:
        lines.append(f"{counted(stats.files_known, 'file')} skipped: analysed in full by an earlier run and "
                     f"unchanged since (--reread reads {'it' if stats.files_known == 1 else 'them'} again)")
    if stats.files_unread:
        lines.append(f"{counted(stats.files_unread, 'file')} of Censored Planet's scans not read: "
                     f"{'it holds' if stats.files_unread == 1 else 'they hold'} no measurement (the resolvers, the "
                     "answers before their comparison, logs and statistics; docs/analysis.md)")
    if selection is not None:
        unopened = (f"; {counted(stats.files_skipped, 'file')} of OONI's archive not opened (another country "
                    "or test)") if stats.files_skipped else ""
        lines.append(f"selection: {selection}: {counted(stats.outside, 'other measurement')} read and left "
                     f"out{unopened}")
    read, flagged_found, flagged_not, unflagged_found, neither, pages, with_pages = stats.censoredplanet
    if read:
        lines.append(f"Censored Planet's lines: {read:,} read as remote_web or remote_dns measurements; where it "
                     f"flagged an anomaly we found interference in {flagged_found:,} of {flagged_found + flagged_not:,}"
                     f", where it did not in {unflagged_found:,} of {unflagged_found + neither:,} (our failures, "
                     "and lines without its flag, in neither)")
    if with_pages or pages:
        lines.append(f"Satellite's pages (blockpages.json, fetched from the answers): joined to "
                     f"{counted(with_pages, 'measurement')} and kept with them; {counted(pages, 'page')} of the "
                     "input read that way, not as measurements")
    if stats.renamed:
        lines.append(f"{counted(stats.renamed, 'measurement')} already read under another uid: a uid's country "
                     "can come from beside the line (a Satellite v1 scan's tagged_resolvers.json, or the ASN table), "
                     "and the store keeps the first reading's (a table's countries and networks reach the stored "
                     "lines by --reanalyse all --asn-table FILE; the tags' only a new store)")
    if stats.networks_unused:
        lines.append(f"networks: {counted(stats.networks_unused, 'measurement')} already stored without one (AS0), "
                     "read now with one: the store keeps what it holds (--reanalyse all --asn-table FILE gives them "
                     "the table's networks)")
    if stats.matcher_calls:
        lines.append(f"fingerprints: {counted(stats.matcher_calls, 'response')} matched against the database "
                     f"({counted(stats.matcher_hits, 'repeat')} answered from memory)")
    if stats.analysis_errors:
        lines.append(f"warning: the verdict failed on {counted(stats.analysis_errors, 'measurement')}; they are "
                     "stored with a 'failure' verdict")
    if stats.by_reason:
        lines.append("skipped input, by reason:")
        for reason, count in sorted(stats.by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {reason:<19} {count:>9,}  {REASONS.get(reason, '')}")
            for example in stats.examples.get(reason, []):
                lines.append("      e.g. " + _example(example))
    return "\n".join(lines)


def _example(text: str) -> str:
    """A skipped record's ``file:line: detail`` as the summary shows it (`WriteStats.add_rejections` cut it):
    file and member names come from the input, so no terminal escapes and no line breaks (``?``)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


# --------------------------------------------------------------------------- report, export


def _writable(option: str, target: Path) -> None:
    if target.is_dir():
        raise UsageError(f"{option} {target} is a directory: give the name of the file to write")
    if not target.parent.is_dir():
        raise UsageError(f"cannot write {target}: no such directory {target.parent}")


def _same(a: Path, b: Path) -> bool:
    """The same file, however spelled (``x/../x``, a link), or the same path where one does not exist yet."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _not_the_store(option: str, target: Path, db: Path | None) -> None:
    """Refuse an output that is the store, its write-ahead log, its raw folder or anything in it: writing a
    report or an export there would replace the measurements, or mix with them."""
    path = store_path(db)
    raw = os.path.realpath(raw_root_for(path))
    if (_same(target, path) or _same(target, path.with_name(path.name + ".wal"))
            or os.path.realpath(target) == raw or os.path.realpath(target).startswith(raw + os.sep)):
        what = "the store" if _same(target, path) else "the store's write-ahead log" if _same(
            target, path.with_name(path.name + ".wal")) else "the store's raw measurements"
        kind = "directory" if option == "--parquet" else "file"
        raise UsageError(f"{option} {target} is {what} ({path}): give the output a {kind} of its own")
    if option != "--parquet" and (held := _holds_data(target)):
        raise UsageError(f"{option} {target} holds {held}, which writing there would replace: give the output a "
                         "file of its own")


_COMPRESSED_MAGIC = ((b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x04\x22\x4d\x18", "LZ4"),
                     (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"PK\x03\x04", "zip"))
# a measurement's own keys, as OONI's format writes them (no report or verdict line has them)
_MEASUREMENT_KEY = re.compile(rb'"(?:test_keys"\s*:\s*\{|measurement_start_time"\s*:|data_format_version"\s*:)')


def _holds_data(target: Path) -> str | None:
    """What an existing output file holds that no report or verdict file does: measurements (OONI's
    ``"test_keys": {``, ``measurement_start_time`` or ``data_format_version`` in its first 64 KiB: a line, a whole
    file, an array or a ``.post`` alike), or compressed data (as measurements are kept). QA: `report --json`
    overwrote a file of measurements, where `analyze --jsonl` refuses only the files it reads; then, the first fix
    missed measurements longer than 64 KiB."""
    try:
        if not target.is_file():
            return None
        with open(target, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    for magic, name in _COMPRESSED_MAGIC:
        if head.startswith(magic):
            return f"{name}-compressed data"
    if head[257:262] == b"ustar":
        return "a tar archive"
    start = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if start[:1] in (b"{", b"[") and _MEASUREMENT_KEY.search(head):
        return "measurements"
    return None


def _check_scheduler(address: str) -> None:
    """A Dask scheduler address: ``tcp://host:port`` (or ``tls://``, ``ws://``, ``wss://``, ``inproc://``).
    Checked before anything is sent: a typo is a usage error, not a 5 s wait for an answer."""
    from urllib.parse import urlsplit

    shown = address if len(address) <= 100 else address[:100] + "…"
    if not address.strip():
        raise UsageError("--scheduler needs an address (tcp://host:8786); without it, a LocalCluster is started")
    try:
        parts = urlsplit(address if "://" in address else f"tcp://{address}")
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"--scheduler {shown!r} is not an address: {exc}") from None
    if parts.scheme not in ("tcp", "tls", "ws", "wss"):  # inproc:// names a scheduler in another process's memory
        raise UsageError(f"--scheduler {shown!r}: the scheme must be tcp://, tls://, ws:// or wss://")
    if not parts.hostname or port is None or port == 0:
        raise UsageError(f"--scheduler {shown!r} needs a host and a port (tcp://host:8786)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"--scheduler {shown!r}: an address is a host and a port, without a path")


def _special(target: Path) -> bool:
    """A device, a FIFO, a socket: written to in place. Renaming a file over /dev/null or over a pipe
    another program reads would replace it (as root, for everyone) and write nowhere."""
    try:
        return not stat.S_ISREG(os.stat(target).st_mode)
    except OSError:
        return False  # not there yet: a new regular file


def _destination(target: Path) -> Path:
    """The file a rename must replace: a symbolic link's target (the link stays a link), else ``target``."""
    return Path(os.path.realpath(target)) if target.is_symlink() else target


def _temporary(target: Path) -> Path | None:
    """Where to write before renaming onto ``target`` (beside the file a link points to); None to write
    ``target`` in place."""
    if _special(target):
        return None
    real = _destination(target)
    return real.with_name(f".{real.name}.{os.getpid()}.tmp")


def _write_atomically(target: Path, data: bytes) -> str | None:
    """Write ``target`` whole or not at all (in place if it is a device or a pipe); why it failed, or None."""
    tmp = _temporary(target)
    try:
        if tmp is None:
            with open(target, "wb") as f:
                f.write(data)
        else:
            tmp.write_bytes(data)
            os.replace(tmp, _destination(target))
    except OSError as exc:  # a full disk, say: no half-written file left behind
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        return str(exc.strerror or exc)
    return None


def report_command(args: argparse.Namespace) -> int:
    import orjson

    from tamperscope.analysis.aggregates import Filters
    from tamperscope.analysis.report import html_report, json_report, terminal_report
    from tamperscope.analysis.sheets import escaped_json

    html_out = None if args.html is None or str(args.html) == "-" else args.html
    propose_out = None if args.propose is None or str(args.propose) == "-" else args.propose
    outputs = (("--json", args.json, args.json), ("--html", args.html, html_out),
               ("--propose-fingerprints", args.propose, propose_out))
    to_stdout_options = [name for name, given, out in outputs if given is not None and (out is None or str(out) == "-")]
    if len(to_stdout_options) > 1:
        raise UsageError(f"{' and '.join(o + ' -' for o in to_stdout_options)} "
                         f"{'both' if len(to_stdout_options) == 2 else 'all'} name standard output: send "
                         f"{'one' if len(to_stdout_options) == 2 else 'all but one'} of them to a file")
    if propose_out is not None:
        _writable("--propose-fingerprints", propose_out)
        _not_the_store("--propose-fingerprints", propose_out, args.db)
        for option, other in (("--html", html_out), ("--json", None if args.json in (None, "-") else Path(args.json))):
            if other is not None and propose_out.resolve() == other.resolve() and not _special(other):
                raise UsageError(f"--propose-fingerprints and {option} both name {other}: give each its own file")
    if html_out is not None:
        _writable("--html", html_out)
        _not_the_store("--html", html_out, args.db)
    json_out = None if args.json in (None, "-") else Path(args.json)
    if json_out is not None:
        _writable("--json", json_out)
        _not_the_store("--json", json_out, args.db)
        if html_out is not None and json_out.resolve() == html_out.resolve() and not _special(json_out):
            raise UsageError(f"--json and --html both name {json_out}: give each its own file")
    if not 1 <= args.limit <= MAX_LIMIT:
        raise UsageError(f"--limit must be between 1 and {MAX_LIMIT:,}")
    _check_days(args)
    filters = Filters(probe_cc=args.cc, probe_asn=args.asn, test_name=args.test, domain=args.domain,
                      category_code=args.category, since=args.since, until=args.until)
    store = _open_for_report(args.db, filters)
    # With --json - or --html -, standard output is the document alone; what would be printed goes to stderr.
    to_stdout = bool(to_stdout_options)
    say = sys.stderr if to_stdout else sys.stdout
    try:
        if not to_stdout:
            print(terminal_report(store, filters, args.limit))
        _tell_older(store, say)
        if args.json is not None:
            document = escaped_json(orjson.dumps(json_report(store, filters, args.limit),
                                                 option=orjson.OPT_INDENT_2)) + b"\n"
            if code := _deliver(document, json_out, f"\nJSON report: {json_out}", say):
                return code
        if args.html is not None:
            page = html_report(store, filters, limit=max(args.limit, 30)).encode()
            if code := _deliver(page, html_out, f"\nHTML report: {html_out} ({len(page) / 1e6:.1f} MB, works offline)",
                                say):
                return code
        if args.propose is not None and (code := _propose(store, filters, propose_out, say)):
            return code
    except duckdb.Error as exc:  # a damaged file (cut short, overwritten): the store opened, its tables do not read
        return _unreadable(store, exc)
    finally:
        store.close()
    return 0


def _propose(store: Store, filters: Filters, out: Path | None, say: Any) -> int:
    """``--propose-fingerprints``: the CSV to ``out`` (None: standard output), or a line saying there is nothing
    to propose (no file is written then: one without a fingerprint is not one --fingerprints takes)."""
    from tamperscope.analysis.report import proposed_fingerprints_csv, unknown_blockpages_in_words
    from tamperscope.analysis.unrecognised import MOST_GROUPS

    rows = [r for r in unknown_blockpages_in_words(store, filters, MOST_GROUPS) if r["fingerprint"]]
    if not rows:
        print("\nno blockpage without a fingerprint has a pattern to propose"
              + ("" if out is None else f": {out} not written"), file=say)
        return 0
    return _deliver(proposed_fingerprints_csv(rows).encode(), out, f"\nproposed fingerprints: {out} ({len(rows):,} "
                    f"to review; then analyze --fingerprints {out} --reanalyse stale)", say)


def _deliver(document: bytes, out: Path | None, done: str, say: Any) -> int:
    """``document`` to standard output (``out`` None), or to ``out`` whole and then ``done`` said; the exit code
    (1: it could not be written, said in one line)."""
    if out is None:
        _to_stdout(document)
    elif (why := _write_atomically(out, document)) is not None:
        print(f"tamperscope: cannot write {out}: {why}", file=sys.stderr)
        return 1
    else:
        print(done, file=say)
    return 0


def _to_stdout(document: bytes) -> None:
    try:
        sys.stdout.buffer.write(document)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader had enough, as with `cat`
        quiet_stdout()


def export_command(args: argparse.Namespace) -> int:
    if not str(args.parquet).strip() or args.parquet == Path("."):
        raise UsageError("--parquet needs the name of a directory to make and write into (not the current one: "
                         "the export replaces the partitions it writes)")
    check_utf8_path("--parquet", args.parquet)  # before the directory is made: DuckDB cannot write under it
    if args.parquet.exists() and not args.parquet.is_dir():
        raise UsageError(f"--parquet {args.parquet} exists and is not a directory")
    if not args.parquet.parent.is_dir():
        raise UsageError(f"cannot write {args.parquet}: no such directory {args.parquet.parent}")
    _not_the_store("--parquet", args.parquet, args.db)  # its raw folder: as report and --jsonl refuse it
    store = _open(args.db, create=False)
    try:
        counts = store.export_parquet(args.parquet)
    except StoreError as exc:  # DIR holds something of its own under an export's name: not replaced
        raise UsageError(str(exc)) from None
    except (OSError, duckdb.Error) as exc:  # a full disk: the previous export is left as it was
        print(f"tamperscope: cannot export to {args.parquet}: {error_line(exc)}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"exported to {args.parquet}: " + ", ".join(f"{name} {n:,}" for name, n in counts.items()))
    return 0
