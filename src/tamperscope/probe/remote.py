"""`tamperscope remote dns|web`: measure a country from outside, through its own servers.

Censored Planet's remote measurement: nobody inside runs anything. Each domain is measured
through each vantage (an open resolver for `dns`, a web server for `web`) inside the
network under study; a censor that filters traffic entering the country shows itself on
the way in. One OONI-format measurement per (vantage, domain), whose ``probe_cc`` and
``probe_asn`` are the vantage's (from the ASN table, or --cc), never the measurer's; the
measurer's address is scrubbed as in every measurement.

Use infrastructure only: resolvers and web servers run by organisations, never people's
own devices (Censored Planet's ethics). Each vantage gets at most --per-vantage
measurements at once.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from ..cli import UsageError, path_arg, path_text_arg
from ..model.asn import EMPTY, AsnTable
from ..model.inputs import MAX_LIST, BadInput, categories_by_line, check_utf8_url, checked_entries, first_column
from ..model.measurement import ProbeInfo
from ..nettests import remote_dns, remote_web
from ..nettests.base import Context, NettestError, Timeouts
from ..nettests.vantage import DEFAULT_CONTROL_DOMAIN, domain_name
from .command import (
    MAX_TIMEOUT,
    _asn_table,
    _categories,
    _cc,
    _check_ca_bundle,
    _check_capture,
    _ip,
    _matcher,
    _pick,
    _read_bounded,
    _recheck,
    _same_file,
    _sniffer,
    _submission,
    _submit_url,
    _Tee,
    _tune_gc,
    add_recheck_options,
    add_run_options,
    category_pick,
    check_max_runtime,
    checked,
    conclude,
    deadline,
    drive,
    due_rechecks,
    recheck_stage,
    said_rechecks,
)
from .engine import (
    Engine,
    OutputError,
    Progress,
    Resume,
    RunStats,
    descriptor_room,
    open_output,
    said,
    scan_output,
)
from .seen import Seen

KINDS: dict[str, ModuleType] = {"dns": remote_dns, "web": remote_web}
DEFAULT_PER_VANTAGE = {"dns": 2, "web": 1}
LAB_NET = ipaddress.ip_network("198.18.0.0/15")
MAX_VANTAGES = 100_000

DESCRIPTION = """Measure a country from outside, through its own infrastructure (Censored Planet's
remote measurement): `dns` asks in-country open resolvers for each domain and validates
their answers (Satellite); `web` sends each domain as Host and as TLS SNI to in-country web
servers (Hyperquack). One OONI-format JSON line per (vantage, domain) is appended to
--output; the network recorded is the vantage's. A killed run resumes.

Use infrastructure only (resolvers and web servers run by organisations), never people's
own devices. In the lab, run it from the outside vantage:
  tamperscope lab exec --ns outside -- tamperscope remote dns --vantage 198.18.1.53 -i twitter.com"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("remote", help="measure a country from outside, through its resolvers and web servers "
                       "(Censored Planet's method)", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=sorted(KINDS), help="dns: through open resolvers; web: through web servers")
    p.add_argument("--vantage", "-V", action="append", default=[], metavar="IP",
                   help="an in-country resolver (dns) or web server (web); repeatable")
    p.add_argument("--vantages", type=path_arg, action="append", default=[], metavar="FILE",
                   help="vantage addresses, one per line (or a CSV's first column); repeatable")
    p.add_argument("--input", "-i", action="append", default=[], metavar="DOMAIN",
                   help="a domain (or a URL: its host); repeatable")
    p.add_argument("--list", "-l", type=path_arg, action="append", default=[], metavar="FILE",
                   help="one domain per line, a Citizen Lab test-list CSV, a ranked list (Tranco's 1,example.com) or "
                        "a CSV whose header names its column of domains (url or domain); up to 512 MiB; gzip or a zip "
                        "of one file too; repeatable")
    p.add_argument("--category", type=_categories, action="extend", default=[], metavar="CODE[,CODE…]",
                   help="only the --list entries of these Citizen Lab categories (their category_code: NEWS, HUMR, "
                        "POLR, LGBT…; repeatable); --input domains are measured all the same")
    p.add_argument("--output", "-o", type=path_arg, default=None,
                   help="JSONL file to append to (default: tamperscope-remote_KIND.jsonl; - for standard output)")
    p.add_argument("--parallel", "-p", type=int, default=16, help="measurements in flight in all (default 16)")
    p.add_argument("--per-vantage", type=int, default=None, metavar="N",
                   help="measurements in flight through one vantage (default: dns 2, web 1, so that residual "
                        "blocking after one domain is never blamed on another); do not load anyone's server")
    p.add_argument("--residual-wait", type=float, default=None, metavar="S",
                   help="web: seconds a measurement waits for a vantage that stopped serving the control domain "
                        "(residual blocking after an earlier domain) before giving up (default 35)")
    p.add_argument("--resolver", default=None,
                   help="dns: the trusted resolver to compare with, outside the country; default "
                        "$TAMPERSCOPE_PUBLIC_RESOLVER or 8.8.8.8")
    p.add_argument("--control-domain", default=DEFAULT_CONTROL_DOMAIN, metavar="DOMAIN",
                   help="an innocuous domain each vantage must answer before and after "
                        f"(default {DEFAULT_CONTROL_DOMAIN})")
    p.add_argument("--tries", type=int, default=None, metavar="N",
                   help="attempts per domain, remote paths being lossy (default: dns 3, web 2)")
    p.add_argument("--protocol", action="append", choices=remote_web.PORTS, default=[],
                   help="web: http (Host header, port 80), https (SNI, port 443), quic (the SNI of a QUIC "
                        "Initial, UDP 443: for a censor filtering HTTP/3; only for vantages that speak it) and/or "
                        "echo (Quack: a GET naming the domain sent to the vantage's echo service, port 7, which "
                        "must send the same bytes back), echo_tls (the same with a TLS ClientHello naming the "
                        "domain as its SNI), echo_ech (the same with the ClientHello with Encrypted Client Hello "
                        "a browser sends the domain: sealed with the config its HTTPS record publishes, whose "
                        "public name is all a censor reads); default http and https")
    p.add_argument("--http-port", type=int, default=None, metavar="PORT",
                   help="web: the vantages' HTTP port (default 80)")
    p.add_argument("--https-port", type=int, default=None, metavar="PORT",
                   help="web: the vantages' HTTPS port (default 443)")
    p.add_argument("--echo-port", type=int, default=None, metavar="PORT",
                   help="web: the vantages' echo port, for --protocol echo, echo_tls and echo_ech (default 7)")
    p.add_argument("--ca-bundle", type=path_text_arg, default=None,
                   help="dns: CA bundle to validate answers with; default "
                   "$TAMPERSCOPE_CA_BUNDLE or the system's")
    p.add_argument("--asn-table", type=path_text_arg, default=None,
                   help="prefix-to-ASN table (iptoasn.com TSV, or its .tsv.gz): the vantages' networks and countries; "
                        "default $TAMPERSCOPE_ASN_TABLE")
    p.add_argument("--cc", default=None, help="the vantages' country, when the ASN table does not say")
    p.add_argument("--allow-net", action="append", default=[], metavar="CIDR",
                   help="dns: a non-public network the answers may be validated in (in the lab 198.18.0.0/15 "
                        "is allowed); public addresses always are, loopback never")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per measurement (default 120)")
    p.add_argument("--capture", action="store_true",
                   help="(root) capture the packets censors forge (RSTs, injected pages, DNS answers), seen from "
                        "outside, for the equipment's signature: x_packets, x_signature")
    p.add_argument("--no-network-events", action="store_true", help="leave out network_events: smaller output")
    add_recheck_options(p, "vantage and domain pair")
    add_run_options(p)
    p.set_defaults(func=run)


@dataclass(frozen=True)
class Settings:
    nettest: ModuleType
    vantages: list[str]
    inputs: list[str]
    output: Path | None
    resume: Resume
    trusted: str
    ca_bundle: str | None
    asn_table: AsnTable
    cc: str | None
    options: dict[str, Any]
    timeout: float
    submit: str | None
    categories: dict[str, str] = field(default_factory=dict)  # a --list entry's Citizen Lab category, by domain
    recheck: float | None = None  # --recheck: seconds to wait after a measurement before its second; None: no


def resume_key(vantage: str, domain: str) -> str:
    return f"{vantage} {domain}"


def _key(m: dict[str, Any]) -> str | None:
    """What a measurement in the output stands for: its vantage and input (None: not one of ours)."""
    tk = m.get("test_keys")
    vantage = tk.get("vantage") if isinstance(tk, dict) else None
    return resume_key(vantage, m["input"]) if isinstance(vantage, str) else None


# Options of one kind only: given to the other, they were accepted and did nothing
_WEB_ONLY = (("--residual-wait", "residual_wait"), ("--protocol", "protocol"), ("--http-port", "http_port"),
             ("--https-port", "https_port"), ("--echo-port", "echo_port"))
_DNS_ONLY = (("--resolver", "resolver"), ("--ca-bundle", "ca_bundle"), ("--allow-net", "allow_net"))
# ::ffff:127.0.0.0/104 is IPv4 loopback written as IPv6 (an IPv4-mapped address): as much this machine
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"),
            ipaddress.ip_network("::ffff:127.0.0.0/104"))


def settings(args: argparse.Namespace) -> Settings:
    nettest = KINDS[args.kind]
    for flag, name in _WEB_ONLY if args.kind == "dns" else _DNS_ONLY:
        if getattr(args, name, None) not in (None, []):
            raise UsageError(f"{flag} is for `remote {'web' if args.kind == 'dns' else 'dns'}`, not "
                             f"`remote {args.kind}`")
    ports = {"http": 80 if args.http_port is None else args.http_port,
             "https": 443 if args.https_port is None else args.https_port,
             "echo": 7 if args.echo_port is None else args.echo_port}
    if not 1 <= args.parallel <= 1024:
        raise UsageError("--parallel must be between 1 and 1024")
    if args.per_vantage is not None and not 1 <= args.per_vantage <= 64:
        raise UsageError("--per-vantage must be between 1 and 64")
    if args.residual_wait is not None and not 0 <= args.residual_wait <= 600:  # also refuses nan
        raise UsageError(f"--residual-wait must be between 0 and 600 seconds, not {args.residual_wait}")
    if args.tries is not None and not 1 <= args.tries <= 10:
        raise UsageError("--tries must be between 1 and 10")
    if not 0 < args.timeout <= MAX_TIMEOUT:
        raise UsageError(f"--timeout must be more than 0 and at most {MAX_TIMEOUT:.0f} seconds, not {args.timeout}")
    check_max_runtime(args)
    recheck = _recheck(args)
    try:
        control = domain_name(args.control_domain, "--control-domain")
    except NettestError:
        raise UsageError(f"--control-domain must be a domain name, not {args.control_domain!r}") from None
    if args.capture:
        _check_capture()
    cc = _cc(args.cc)
    trusted, label = _pick(args.resolver, "--resolver", "TAMPERSCOPE_PUBLIC_RESOLVER")
    trusted = _ip(trusted, label) if trusted is not None else "8.8.8.8"
    ca, _ = _pick(args.ca_bundle, "--ca-bundle", "TAMPERSCOPE_CA_BUNDLE")
    if ca is not None:
        _check_ca_bundle(ca)
    table_path, _ = _pick(args.asn_table, "--asn-table", "TAMPERSCOPE_ASN_TABLE")
    table = _asn_table(table_path) if table_path else EMPTY
    allow = [_network(c) for c in args.allow_net]
    if os.environ.get("TAMPERSCOPE_LAB") == "1":
        allow.append(LAB_NET)
    submit = _submit_url(args)
    vantages = _vantages(args)
    categories: dict[str, str] = {}
    inputs = _inputs(args, nettest, categories)
    output, resume = _output(args, nettest)
    options: dict[str, Any] = {"control_domain": control, "allow": tuple(allow),
                               "network_events": not args.no_network_events}
    if args.tries is not None:
        options["tries"] = args.tries
    if args.residual_wait is not None:
        options["residual_wait"] = args.residual_wait
    for flag, port in (("--http-port", ports["http"]), ("--https-port", ports["https"]),
                       ("--echo-port", ports["echo"])):
        if not 0 < port < 65536:
            raise UsageError(f"{flag} must be between 1 and 65535, not {port}")
    options["ports"] = ports
    if args.protocol:
        options["protocols"] = tuple(dict.fromkeys(args.protocol))
    return Settings(nettest=nettest, vantages=vantages, inputs=inputs, output=output, resume=resume,
                    trusted=trusted, ca_bundle=ca, asn_table=table, cc=cc, options=options, timeout=args.timeout,
                    submit=submit, categories=categories, recheck=recheck)


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise UsageError(f"--allow-net must be a network (198.51.100.0/24), not {value!r}") from None
    if any(net.version == lo.version and net.overlaps(lo) for lo in LOOPBACK):
        raise UsageError(f"--allow-net {value}: loopback is never allowed (an answer pointing at this machine is "
                         "no site's)")
    return net


def _vantage(value: str, where: str) -> str:
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        raise UsageError(f"{where}a vantage must be an IP address, not {value.strip()!r}") from None
    if addr.is_loopback or addr.is_unspecified or addr.is_multicast or addr.is_reserved or addr.is_link_local:
        # (reserved: 240.0.0.0/4 and the broadcast address, which QA's run took and failed with permission_denied)
        raise UsageError(f"{where}{addr} cannot be a vantage (loopback, unspecified, multicast, broadcast, "
                         "reserved or link-local)")
    return str(addr)


def _vantages(args: argparse.Namespace) -> list[str]:
    found = [_vantage(v, "--vantage: ") for v in args.vantage]
    for path in args.vantages:
        text = _read_bounded(path, MAX_LIST, "vantage list")
        for n, value in _first_column(text, path, ("ip", "address", "vantage")):
            found.append(_vantage(value, f"{path}: line {n}: "))
    found = list(dict.fromkeys(found))
    if not found:
        raise UsageError("remote needs at least one --vantage (or --vantages FILE)")
    if len(found) > MAX_VANTAGES:
        raise UsageError(f"at most {MAX_VANTAGES:,} vantages in one run, not {len(found):,}")
    return found


def _first_column(text: str, path: Path, headers: tuple[str, ...]) -> list[tuple[int, str]]:
    try:
        return first_column(text, str(path), headers)
    except BadInput as e:
        raise UsageError(str(e)) from None


def _inputs(args: argparse.Namespace, nettest: ModuleType, categories: dict[str, str] | None = None) -> list[str]:
    """The domains to measure, each once. ``categories`` gets each list entry's Citizen Lab category, by domain (the
    first list entry to name a domain says), for --summary. A list is read an entry at a time: millions of
    domains (a TMC-sized list) are held once, as the domains measured."""
    items: dict[str, None] = {}

    def check(value: str, where: str, category: str | None = None) -> None:
        try:
            check_utf8_url(value, "input")  # a name from a command line that no measurement can hold
            name = domain_name(value, nettest.NAME)
        except (NettestError, BadInput) as e:
            raise UsageError(f"{where}{e}") from None
        items[name] = None
        if category and categories is not None:
            categories.setdefault(name, category)

    pick = category_pick(args)
    for i in args.input:
        check(i, "")
    for path in args.list:
        text = _read_bounded(path, MAX_DOMAIN_LIST, "list")
        entries: Iterable[tuple[int, str]] = _list_entries(text, path)
        try:
            codes = categories_by_line(text, str(path)) if pick or categories is not None else {}
            if pick:
                entries = list(entries)
                entries = [e for e, kept in zip(entries, pick.keep([codes.get(n) for n, _ in entries], str(path)))
                           if kept]
        except BadInput as e:
            raise UsageError(str(e)) from None
        for n, value in entries:
            check(value, f"{path}: line {n}: ", codes.get(n))
    checked(pick)
    if not items:
        raise UsageError(f"remote {args.kind} needs --input or --list")
    return list(items)


# bytes of a domain list: TMC's 15.5M domains are ~210 MB (read in about a minute and 2 GB here; bench/lists.py)
MAX_DOMAIN_LIST = 512 << 20
LIST_HEADERS = ("url", "domain")  # a list's header row: the name of its column of domains


def _list_entries(text: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, value) of each entry of a domain list, one at a time: a Citizen Lab CSV's first column, a column a
    header names (``rank,domain``), the names of a ranked list (Tranco's ``1,example.com``), or the line. A
    list that holds none, or whose header names its columns otherwise (``urls,category_code``), is refused, as
    `run` refuses it, rather than taken for no list at all or measured as a domain."""
    try:
        yield from checked_entries(text, str(path), LIST_HEADERS, ("domain", "domains"), ranked=True)
    except BadInput as e:
        raise UsageError(str(e)) from None


def _output(args: argparse.Namespace, nettest: ModuleType) -> tuple[Path | None, Resume]:
    if args.output is not None and str(args.output) == "-":
        return None, Resume(regular=False)
    path: Path = args.output or Path(f"tamperscope-{nettest.NAME}.jsonl")
    for lst in [*args.list, *args.vantages]:
        if _same_file(lst, path):
            raise UsageError(f"--output {path} is also a list: refusing to append measurements to it")
    try:
        return path, scan_output(path, nettest.NAME, key=_key, recheck=bool(args.recheck), say=said)
    except OutputError as e:
        raise UsageError(str(e)) from None


def _held(seen: Seen, vantages: list[str], inputs: list[str]) -> dict[str, bytes]:
    """For each vantage of which the output holds something, a byte per domain of this run's (in order): 1 where
    the output holds that vantage and domain pair (`Seen.holds`); {} on a first run."""
    if not seen:  # a first run: no table of millions of domains to look nothing up in
        return {}
    held = {v: seen.holds(resume_key(v, d) for d in inputs) for v in vantages}
    return {v: mask for v, mask in held.items() if 1 in mask}


def plan(s: Settings) -> str:
    shown = ", ".join(s.vantages[:3]) + (", …" if len(s.vantages) > 3 else "")
    parts = [f"{len(s.vantages)} in-country vantage(s) ({shown}) about {len(s.inputs)} domain(s)"]
    if s.nettest is remote_dns:
        parts.append(f"the trusted resolver {s.trusted}")
        parts.append("the addresses the vantages give that the trusted resolver does not (to validate them)")
    if s.submit:
        parts.append(f"the collector {s.submit}")
    return "This run would contact: " + "; ".join(parts) + "."


def vantage_probe(vantage: str, table: AsnTable, cc: str | None, nettest: ModuleType) -> ProbeInfo:
    """The envelope's network: the vantage's, never the measurer's."""
    info = table.lookup(vantage)
    looked_up = info.cc.upper() if info.asn and len(info.cc) == 2 and info.cc.isalpha() else "ZZ"
    resolver = nettest is remote_dns
    return ProbeInfo(cc=cc or looked_up, asn=info.asn, network_name=info.name,
                     resolver_ip=vantage if resolver else "", resolver_asn=info.asn if resolver else 0,
                     resolver_network_name=info.name if resolver else "")


def _adapted(nettest: ModuleType, vantage: str) -> Any:
    """The nettest with its vantage fixed: what one Engine runs."""

    async def run(input: str | None, ctx: Context) -> dict[str, Any]:
        tk: dict[str, Any] = await nettest.run(input, replace(ctx, options={**ctx.options, "vantage": vantage}))
        return tk

    return SimpleNamespace(NAME=nettest.NAME, VERSION=nettest.VERSION, NEEDS_INPUT=True, run=run,
                           finish=nettest.finish)


def run(args: argparse.Namespace) -> int:
    from ..netx import Resolver
    from .consent import ConsentRequired, ensure_consent
    from .privacy import Scrubber, local_addresses

    s = settings(args)
    try:
        ensure_consent(args.yes, plan=plan(s))
    except ConsentRequired as e:
        raise UsageError(str(e)) from None
    mine = sorted(local_addresses([*s.vantages[:8], s.trusted]))
    ctx = Context(udp_resolver=Resolver("udp", s.trusted), ca_bundle=s.ca_bundle, matcher=_matcher(),
                  asn=s.asn_table, timeouts=Timeouts(measurement=s.timeout), options=s.options)
    submit = _submission(args, s.submit)
    label = str(s.output) if s.output is not None else "standard output"
    try:
        out = open_output(s.output, s.resume) if s.output is not None else open(1, "wb", closefd=False)
    except OutputError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write {label}: {e.strerror or e}") from None
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    parallel = descriptor_room(args.parallel, say)
    per_vantage = min(args.per_vantage or DEFAULT_PER_VANTAGE[args.kind], parallel)
    scrub = Scrubber(mine)
    total = len(s.vantages) * len(s.inputs)  # (vantage, domain) pairs: each vantage's list is made when its turn comes
    held = _held(s.resume.seen, s.vantages, s.inputs)
    stats = RunStats(total=total, skipped=sum(mask.count(1) for mask in held.values()),
                     found={} if s.recheck is not None else None, key=_key)
    again = RunStats(found={}, key=_key)
    print(f"tamperscope: {s.nettest.NAME} on {len(s.inputs)} domain(s) through {len(s.vantages)} vantage(s)"
          + (f" ({stats.skipped} measurement(s) already in {label})" if stats.skipped else "")
          + f"; at most {per_vantage} at once per vantage, {parallel} in all; writing {label}"
          + (f"; submitting to {submit.url} (outbox {submit.box.root}, {submit.box.waiting()} waiting)." if submit
             else "; submitting nothing."), file=sys.stderr)
    sink: Any = out if submit is None else _Tee(out, submit.box)
    _tune_gc()
    progress = Progress(stats, enabled=not args.no_progress)
    sniffer = _sniffer() if args.capture else None

    async def through_each(plan: Iterator[tuple[str, list[str]]], vantages: int, counts: RunStats,
                           shown_as: Progress, extra: dict[str, str]) -> None:
        """Each vantage's domains (``plan``, for at most ``vantages`` vantages) through an Engine of its own (its
        network, its report), a vantage at a time per worker; ``extra``: more annotations (--recheck's)."""

        async def worker() -> None:
            for v, todo in plan:
                if stop is not None and time.monotonic() >= stop:
                    return
                engine = Engine(_adapted(s.nettest, v), ctx, vantage_probe(v, s.asn_table, s.cc, s.nettest), scrub,
                                parallel=per_vantage,
                                annotations={"vantage": v, "measured_from": "outside", **extra}, sniffer=sniffer)
                await engine.run(todo, sink, counts, shown_as, deadline=stop)

        try:
            async with asyncio.TaskGroup() as tg:
                for _ in range(min(vantages, max(1, parallel // per_vantage))):
                    tg.create_task(worker())
        except BaseExceptionGroup as group:  # an engine stops only when the output cannot be written
            raise group.exceptions[0] from None

    stop: float | None = None

    async def measure_all() -> None:
        nonlocal stop
        stop = deadline(args)  # as the measuring starts
        # each vantage's list is made when its turn comes (a generator), from the byte mask `_held` made of it
        await through_each(_todo(s.vantages, s.inputs, held), len(s.vantages), stats, progress, {})
        if s.recheck is None:
            return
        keys = (resume_key(v, d) for v in s.vantages for d in s.inputs)

        async def measure(due: list[str], counts: RunStats, shown_as: Progress) -> None:
            by: dict[str, list[str]] = {}
            for key in due:
                v, d = key.split(" ", 1)
                by.setdefault(v, []).append(d)
            await through_each(iter(by.items()), len(by), counts, shown_as, {"recheck": "true"})

        await recheck_stage(due_rechecks(keys, stats.found, s.resume.lone), s.recheck, stats, again, progress, stop,
                            not args.no_progress, measure, "vantage and domain pair")

    try:
        if not drive(measure_all(), submit, s.ca_bundle, out, label, s.resume.regular, progress):
            return 1
    finally:
        if sniffer is not None:
            sniffer.close()
    status = conclude(stats, args.summary, s.output is not None, label, "measurement(s) could not be made",
                      max_runtime=args.max_runtime, resumes=s.resume.regular, categories=s.categories)
    if s.recheck is not None:
        status = max(status, said_rechecks(again, s.resume.lone, stats, "vantage and domain pair"))
    return status


def _todo(vantages: list[str], inputs: list[str], held: dict[str, bytes]) -> Iterator[tuple[str, list[str]]]:
    """Each vantage with the domains it has yet to measure (those its output does not hold: `_held`), made as it
    is asked for; vantages with none are passed over."""
    for v in vantages:
        mask = held.get(v)
        todo = [d for d, there in zip(inputs, mask, strict=True) if not there] if mask is not None else inputs
        if todo:
            yield v, todo
