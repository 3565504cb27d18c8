"""`tamperscope run NETTEST`: measure from this vantage point, write OONI-format JSONL."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from .. import nettests
from ..cli import UsageError
from ..model.asn import EMPTY, AsnTable
from ..model.inputs import BadInput, parse_url, read_url_list
from ..model.measurement import ProbeInfo
from ..nettests.base import Context, NettestError, Timeouts

DESCRIPTION = """Run a nettest from this vantage point and append one OONI-format JSON line per
measurement to --output. A killed run resumes: inputs already in the output are skipped.

Nettests: {names}.

In the lab (`tamperscope lab exec -- tamperscope run …`) the resolver, public resolver,
helper, echo backend and CA bundle come from the TAMPERSCOPE_* variables the lab sets.
The probe never records your IP address and asks for informed consent on first run."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a nettest (web_connectivity, dnscheck, …)",
                       description=DESCRIPTION.format(names=", ".join(nettests.names())),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("nettest", help="the nettest to run")
    p.add_argument("--input", "-i", action="append", default=[], metavar="INPUT", help="a URL (or domain for dnscheck); repeatable")
    p.add_argument("--list", "-l", type=Path, action="append", default=[], metavar="FILE",
                   help="Citizen Lab test-list CSV or one input per line; repeatable")
    p.add_argument("--output", "-o", type=Path, default=None, help="JSONL file to append to (default: tamperscope-NETTEST.jsonl)")
    p.add_argument("--parallel", "-p", type=int, default=16, help="measurements in flight (default 16; at most 2 per server address)")
    p.add_argument("--helper", default=None, help="control helper URL (OONI TH protocol); default $TAMPERSCOPE_HELPER")
    p.add_argument("--resolver", default=None, help="public DNS resolver IP used over UDP; default $TAMPERSCOPE_PUBLIC_RESOLVER or 8.8.8.8")
    p.add_argument("--ca-bundle", default=None, help="CA bundle for TLS; default $TAMPERSCOPE_CA_BUNDLE or the system's")
    p.add_argument("--asn-table", default=None, help="prefix-to-ASN table (iptoasn.com TSV); default $TAMPERSCOPE_ASN_TABLE")
    p.add_argument("--cc", default=None, help="your country code, if you want it recorded and it cannot be looked up")
    p.add_argument("--asn", type=int, default=None, help="your network's AS number, likewise")
    p.add_argument("--backend", default=None, help="echo/middlebox backend host for middlebox nettests; default $TAMPERSCOPE_ECHO")
    p.add_argument("--silent-resolver", default=None, help="dnscheck: an address where no DNS server runs; default $TAMPERSCOPE_SILENT_RESOLVER")
    p.add_argument("--doh", default=None, help="dnscheck: DoH URL; default $TAMPERSCOPE_DOH")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per measurement (default 60)")
    p.add_argument("--capture", action="store_true",
                   help="(root) capture forged packets (RSTs, injected pages, DNS answers) for equipment signatures: x_packets, x_signature")
    p.add_argument("--no-network-events", action="store_true",
                   help="leave out network_events (every read/write): smaller files, less CPU; the verdict does not use them")
    p.add_argument("--yes", "-y", action="store_true", help="give informed consent without the prompt (automation)")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.add_argument("--summary", action="store_true", help="print a table by mechanism at the end")
    p.add_argument("--submit", default=None, metavar="URL",
                   help="upload each measurement to this collector (OONI's report protocol, e.g. `tamperscope serve`) "
                        "through a durable local outbox; what cannot be sent now is sent by the next --submit run")
    p.add_argument("--outbox", type=Path, default=None, metavar="DIR",
                   help="the outbox directory (default $XDG_DATA_HOME/tamperscope/outbox, else ~/.local/share/...)")
    p.add_argument("--submit-timeout", type=float, default=120.0, metavar="S",
                   help="seconds to keep retrying the upload after the last measurement (default 120)")
    p.set_defaults(func=run)


def _inputs(args: argparse.Namespace, nettest: Any) -> list[str]:
    items: list[str] = []
    for i in args.input:
        items.append(i)
    for path in args.list:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read list {path}: {e.__class__.__name__}: {getattr(e, 'strerror', None) or e}") from None
        if nettest.NAME == "web_connectivity":
            try:
                items += [e.url for e in read_url_list(text, str(path))]
            except BadInput as e:
                raise UsageError(str(e)) from None
        else:
            items += [ln.strip().split(",")[0] for ln in text.splitlines()
                      if ln.strip() and not ln.startswith("#") and ln.split(",")[0].strip().lower() != "url"]
    if nettest.NAME == "web_connectivity":
        for i in items:
            try:
                parse_url(i)
            except BadInput as e:
                raise UsageError(str(e)) from None
    if nettest.NEEDS_INPUT and not items:
        raise UsageError(f"{nettest.NAME} needs --input or --list")
    if not items:
        return [None]  # type: ignore[list-item]  # one measurement without input
    return list(dict.fromkeys(items))


def _system_resolver() -> str | None:
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                return parts[1]
    except OSError:
        pass
    return None


def build_context(args: argparse.Namespace) -> tuple[Context, ProbeInfo, list[str]]:
    from ..netx import Resolver
    from .privacy import local_addresses

    env = os.environ
    helper = args.helper or env.get("TAMPERSCOPE_HELPER")
    public = args.resolver or env.get("TAMPERSCOPE_PUBLIC_RESOLVER") or "8.8.8.8"
    isp = env.get("TAMPERSCOPE_RESOLVER") or _system_resolver()
    ca = args.ca_bundle or env.get("TAMPERSCOPE_CA_BUNDLE")
    table_path = args.asn_table or env.get("TAMPERSCOPE_ASN_TABLE")
    asn: AsnTable = EMPTY
    if table_path:
        try:
            asn = AsnTable.from_text(Path(table_path).read_text(encoding="utf-8"), table_path)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise UsageError(f"cannot read ASN table {table_path}: {e}") from None
    if ca and not Path(ca).is_file():
        raise UsageError(f"CA bundle {ca} does not exist")
    if helper and not helper.startswith(("http://", "https://")):
        raise UsageError(f"--helper must be an http(s) URL, not {helper!r}")
    try:
        udp = Resolver("udp", public)
        import ipaddress

        ipaddress.ip_address(public)
    except ValueError:
        raise UsageError(f"--resolver must be an IP address, not {public!r}") from None
    from urllib.parse import urlsplit

    peers = [p for p in (isp, public, urlsplit(helper).hostname if helper else None) if p]
    mine = local_addresses(peers)
    local = next(iter(sorted(mine)), "")
    info = asn.lookup(local) if local else None
    rinfo = asn.lookup(isp) if isp else None
    probe = ProbeInfo(cc=(args.cc or (info.cc if info and info.asn else "ZZ")).upper()[:2],
                      asn=args.asn if args.asn is not None else (info.asn if info else 0),
                      network_name=info.name if info and args.asn is None else "",
                      resolver_ip=isp or "", resolver_asn=rinfo.asn if rinfo else 0,
                      resolver_network_name=rinfo.name if rinfo else "")
    options = {"resolver": public, "silent": args.silent_resolver or env.get("TAMPERSCOPE_SILENT_RESOLVER"),
               "doh": args.doh or env.get("TAMPERSCOPE_DOH"), "network_events": not args.no_network_events}
    ctx = Context(helper_url=helper, udp_resolver=udp, isp_resolver=isp, ca_bundle=ca, matcher=_matcher(), asn=asn,
                  backend=args.backend or env.get("TAMPERSCOPE_ECHO"),
                  timeouts=Timeouts(measurement=args.timeout), options=options)
    return ctx, probe, sorted(mine)


def _matcher() -> Any:
    from ..nettests.blockpages import matcher

    return matcher()


def run(args: argparse.Namespace) -> int:
    from .consent import ConsentRequired, ensure_consent
    from .engine import Engine, Progress, RunStats, done_inputs
    from .privacy import Scrubber

    try:
        nettest = nettests.load(args.nettest)
    except KeyError:
        raise UsageError(f"unknown nettest {args.nettest!r} (known: {', '.join(nettests.names())})") from None
    if args.parallel < 1 or args.parallel > 1024:
        raise UsageError("--parallel must be between 1 and 1024")
    inputs = _inputs(args, nettest)
    ctx, probe, mine = build_context(args)
    try:
        ensure_consent(args.yes)
    except ConsentRequired as e:
        raise UsageError(str(e)) from None
    submit = _submission(args)
    out_path: Path = args.output or Path(f"tamperscope-{nettest.NAME}.jsonl")
    try:
        seen = done_inputs(out_path, nettest.NAME)
        out = open(out_path, "ab")
    except OSError as e:
        raise UsageError(f"cannot write {out_path}: {e.strerror or e}") from None
    todo = [i for i in inputs if i not in seen]
    stats = RunStats(total=len(inputs), skipped=len(inputs) - len(todo))
    print(f"tamperscope: {nettest.NAME} on {len(todo)} input(s)"
          + (f" ({stats.skipped} already in {out_path})" if stats.skipped else "")
          + f"; contacting the targets, resolver {ctx.isp_resolver or 'system'}, public resolver "
          f"{ctx.udp_resolver.address if ctx.udp_resolver else '-'}, helper {ctx.helper_url or 'none'}; "
          f"writing {out_path}; "
          + (f"submitting to {submit.url} (outbox {submit.box.root}, {len(submit.box)} waiting)." if submit
             else "submitting nothing."), file=sys.stderr)
    sniffer = None
    if args.capture:
        if os.geteuid() != 0:
            raise UsageError("--capture needs root (it listens on a packet socket)")
        from ..netx.sniffer import Sniffer

        sniffer = Sniffer().start()
    engine = Engine(nettest, ctx, probe, Scrubber(mine), parallel=args.parallel, sniffer=sniffer)
    if nettest.NAME == "web_connectivity" and len(todo) > 1:
        from ..nettests.blockpages import warm

        warm()
    _tune_gc()
    progress = Progress(stats, enabled=not args.no_progress)
    work: Any = engine.run(todo, out if submit is None else _Tee(out, submit.box), stats, progress)
    if submit is not None:
        work = _run_and_submit(work, submit, ctx.ca_bundle, progress)
    try:
        _loop_run(work)
    except NettestError as e:
        raise UsageError(str(e)) from None
    finally:
        out.close()
        progress.close()
        if sniffer is not None:
            sniffer.close()
    if args.summary:
        print(summary_table(stats))
    return 0


class _Submission:
    def __init__(self, url: str, box: Any, timeout: float) -> None:
        self.url, self.box, self.timeout = url, box, timeout
        self.sent = self.duplicates = self.rejected = 0
        self.last_error: str | None = None


def _submission(args: argparse.Namespace) -> _Submission | None:
    if args.submit is None:
        if args.outbox is not None:
            raise UsageError("--outbox goes with --submit URL")
        return None
    from urllib.parse import urlsplit

    from .outbox import Outbox, OutboxError

    parts = urlsplit(args.submit)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--submit must be a collector's http(s) URL, not {args.submit!r}")
    if not 0 < args.submit_timeout <= 86400:
        raise UsageError("--submit-timeout must be more than 0 and at most 86400 seconds")
    directory = args.outbox or Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "tamperscope" / "outbox"
    try:
        box = Outbox(directory)
    except OutboxError as e:
        raise UsageError(str(e)) from None
    return _Submission(args.submit, box, args.submit_timeout)


class _Tee:
    """The output file, with every measurement put in the outbox first (durably), then written."""

    def __init__(self, out: Any, box: Any) -> None:
        self.out, self.box = out, box

    def write(self, line: bytes) -> int:
        self.box.add(line)
        return int(self.out.write(line))

    def flush(self) -> None:
        self.out.flush()

    def fileno(self) -> int:
        return int(self.out.fileno())


async def _run_and_submit(measuring: Any, submit: _Submission, ca_bundle: str | None, progress: Any) -> None:
    """Measure while uploading what the outbox holds every few seconds; then upload the rest,
    retrying until --submit-timeout. What is still pending stays in the outbox for the next run."""
    from .outbox import OutboxError

    async def flush(timeout: float) -> None:
        try:
            r = await submit.box.flush(submit.url, timeout=timeout, ca_bundle=ca_bundle)
        except OutboxError as e:
            submit.last_error = str(e)
            return
        submit.sent += r.sent
        submit.duplicates += r.duplicates
        submit.rejected += r.rejected
        submit.last_error = r.last_error or submit.last_error

    async def uploader() -> None:
        while True:
            await asyncio.sleep(2.0)
            if len(submit.box):
                await flush(30.0)

    task = asyncio.create_task(uploader())
    try:
        await measuring
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    await flush(submit.timeout)
    progress.close()
    left = len(submit.box)
    msg = (f"tamperscope: submitted {submit.sent} measurement(s) to {submit.url}"
           + (f" ({submit.duplicates} the collector had already)" if submit.duplicates else "")
           + (f"; {submit.rejected} refused, kept in {submit.box.root / 'rejected'}" if submit.rejected else ""))
    if left:
        msg += (f"; {left} still waiting in {submit.box.root} (last error: {submit.last_error or 'timeout'}): "
                "the next run with --submit sends them")
    print(msg, file=sys.stderr)


def _tune_gc() -> None:
    """What is loaded by now (modules, the fingerprint database) lives as long as the run: keep the
    cyclic collector off it, and collect young objects less often (measurements are freed by
    reference counting; the collector only finds the odd cycle). Saves ~10% of the probe's CPU."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 20, 20)


def _loop_run(coro: Any) -> None:
    import uvloop

    from ..netx.dns import wide_libuv_pool

    wide_libuv_pool()

    uvloop.run(coro)


def summary_table(stats: Any) -> str:
    rows = sorted(stats.by_mechanism.items(), key=lambda kv: (kv[0] == "none", -kv[1], kv[0]))
    lines = [f"{'mechanism':16} {'count':>6}  examples", f"{'-' * 16} {'-' * 6}  {'-' * 40}"]
    for mech, n in rows:
        lines.append(f"{mech:16} {n:6d}  {', '.join(stats.examples.get(mech, [])[:3])}")
    lines.append(f"{'total':16} {sum(stats.by_mechanism.values()):6d}  blocked {stats.blocked}")
    return "\n".join(lines)
