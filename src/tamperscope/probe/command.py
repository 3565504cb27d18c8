"""`tamperscope run NETTEST`: measure from this vantage point, write OONI-format JSONL."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import re
import socket
import ssl
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .. import nettests
from ..cli import UsageError, path_arg, path_text_arg
from ..model.asn import EMPTY, MAX_TABLE, AsnTable
from ..model.categories import category_label
from ..model.inputs import (
    MAX_LIST,
    BadInput,
    CategoryPick,
    byte_size,
    category_codes,
    check_utf8_url,
    list_entries,
    normal_url,
    not_utf8,
    parse_url,
    read_bounded,
    read_url_list,
)
from ..model.measurement import ProbeInfo
from ..model.paths import data_dir
from ..nettests.base import Context, NettestError, Residual, Timeouts, residual_state_path
from ..nettests.tor import Target as TorTarget
from ..nettests.tor import load_targets as load_tor_targets
from ..nettests.wireguard import WgConfig
from ..nettests.wireguard import load_config as load_wg_config
from .engine import (
    COULD_NOT_TELL,
    RESIDUAL_WAIT,
    Engine,
    OutputError,
    Progress,
    Resume,
    RunStats,
    check_backend,
    check_input,
    descriptor_room,
    open_output,
    said,
    scan_output,
)

DESCRIPTION = """Run a nettest from this vantage point and append one OONI-format JSON line per
measurement to --output. A killed run resumes: inputs already in the output are skipped.
With --recheck, each input found blocked or failing is measured once more, a while later: two
measurements with the same anomaly confirm it, and a transient failure shows as one.

Nettests: {names}. Groups (their nettests one after another, as OONI Probe's cards run them):
{groups}.

In the lab (`tamperscope lab exec -- tamperscope run …`) the resolver, public resolver,
helper, echo backend and CA bundle come from the TAMPERSCOPE_* variables the lab sets.
The probe never records your IP address and asks for informed consent on first run."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run a nettest (web_connectivity, dnscheck, …)",
                       description=DESCRIPTION.format(names=", ".join(nettests.names()), groups=", ".join(
                           f"{g} ({', '.join(members)})" for g, members in nettests.GROUPS.items())),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("nettest", help="the nettest to run, or a group of them (im, circumvention)")
    p.add_argument("--input", "-i", action="append", default=[], metavar="INPUT", help="a URL (or a domain for dnscheck and blocking_rules); repeatable")
    p.add_argument("--list", "-l", type=path_arg, action="append", default=[], metavar="FILE",
                   help="Citizen Lab test-list CSV (or a CSV whose header names its url column) or one input per line; "
                        "repeatable")
    p.add_argument("--category", type=_categories, action="extend", default=[], metavar="CODE[,CODE…]",
                   help="web_connectivity: only the --list entries of these Citizen Lab categories (their "
                        "category_code: NEWS, HUMR, POLR, LGBT…; repeatable); --input URLs are measured all the same")
    p.add_argument("--output", "-o", type=path_arg, default=None,
                   help="JSONL file to append to (default: tamperscope-NETTEST.jsonl); one run writes it at a time")
    p.add_argument("--parallel", "-p", type=int, default=16, help="measurements in flight (default 16; at most 2 per server address; lowered to what the "
                        "open-file limit, ulimit -n, leaves room for; at most 32 of their requests at the control "
                        "helper at once)")
    p.add_argument("--helper", default=None, help="control helper URL (OONI TH protocol); default $TAMPERSCOPE_HELPER")
    p.add_argument("--resolver", default=None, help="public DNS resolver IP used over UDP; default $TAMPERSCOPE_PUBLIC_RESOLVER or 8.8.8.8")
    p.add_argument("--ca-bundle", type=path_text_arg, default=None,
                   help="CA bundle for TLS; default $TAMPERSCOPE_CA_BUNDLE or the system's")
    p.add_argument("--asn-table", type=path_text_arg, default=None,
                   help="prefix-to-ASN table (iptoasn.com TSV, or its .tsv.gz); default $TAMPERSCOPE_ASN_TABLE")
    p.add_argument("--cc", default=None, help="your country code, if you want it recorded and it cannot be looked up")
    p.add_argument("--asn", default=None, help="your network's AS number, likewise")
    p.add_argument("--backend", default=None, help="echo/middlebox backend host for middlebox nettests; default $TAMPERSCOPE_ECHO")
    p.add_argument("--silent-resolver", default=None,
                   help="dnscheck and blocking_rules: an address where no DNS server runs (an answer from it was "
                        "forged on the path); default $TAMPERSCOPE_SILENT_RESOLVER")
    p.add_argument("--doh", default=None, help="DoH URL: dnscheck measures it; echcheck asks it for the site's "
                   "ECH config (its HTTPS record); default $TAMPERSCOPE_DOH")
    p.add_argument("--stun", default=None, metavar="stun://HOST[:PORT]",
                   help="ask this STUN server, once before measuring, which address this probe's traffic comes from "
                        "(behind NAT, the public address a blockpage may echo), to scrub it from every measurement; "
                        "never recorded; default $TAMPERSCOPE_STUN")
    p.add_argument("--telegram-dcs", default=None, metavar="IP[,IP...]",
                   help="telegram: the access points to try instead of Telegram's data centres; "
                        "default $TAMPERSCOPE_TELEGRAM_DCS (the lab sets its stand-ins)")
    p.add_argument("--tor-targets", type=path_text_arg, default=None, metavar="FILE",
                   help="tor: the directory authorities and bridges to try instead of Tor's directory authorities, "
                        "a JSON map as OONI's API serves them, or bridge lines as Tor Browser takes them "
                        "(`docs/nettests.md`); bridge lines, and a bridge whose source is bridgedb or marked private, "
                        "are scrubbed from the measurement; default $TAMPERSCOPE_TOR_TARGETS (the lab sets its "
                        "stand-ins)")
    p.add_argument("--tor-network", type=path_text_arg, default=None, metavar="FILE",
                   help="vanilla_tor: bootstrap against another Tor network than Tor's own: torrc lines, only "
                        "DirAuthority, FallbackDir and TestingTorNetwork; default $TAMPERSCOPE_TOR_NETWORK (the lab "
                        "sets its own)")
    p.add_argument("--tor-bridges", type=path_text_arg, default=None, metavar="FILE",
                   help="vanilla_tor: bootstrap through these bridges: obfs4 bridge lines as Tor Browser takes them "
                        "(through obfs4proxy), or plain ones; their addresses, fingerprints and certs are scrubbed "
                        "from the measurement")
    p.add_argument("--wg-config", type=path_text_arg, default=None, metavar="FILE",
                   help="wireguard: your WireGuard client configuration (wg-quick's format: [Interface] PrivateKey, "
                        "[Peer] PublicKey, Endpoint, PresharedKey); its keys are never recorded, the peers' endpoints "
                        "are the inputs; default $TAMPERSCOPE_WG_CONFIG (the lab sets its own)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per measurement (default 60)")
    p.add_argument("--capture", action="store_true",
                   help="(root) capture forged packets (RSTs, injected pages, DNS answers) for equipment signatures: x_packets, x_signature")
    p.add_argument("--no-network-events", action="store_true",
                   help="leave out network_events (every read/write): smaller files, less CPU; the verdict does not use them")
    p.add_argument("--no-quic", action="store_true",
                   help="web_connectivity: no HTTP/3 handshakes (made by default for https sites that advertise "
                        "HTTP/3): OONI's work only, about 0.5 ms less CPU per URL, and a dropped QUIC goes unseen")
    p.add_argument("--fingerprints", type=path_arg, default=None, metavar="FILE",
                   help="web_connectivity: blockpage fingerprints of your own beside the shipped ones (Citizen Lab's "
                        "http.csv columns, as the explorer's /new-blockpages.csv proposes them; docs/fingerprints.md): "
                        "a page they match is a blockpage, its id local/NAME in x_fingerprints; default "
                        "$TAMPERSCOPE_FINGERPRINTS")
    p.add_argument("--strategies", default=None, metavar="NAMES",
                   help="evasion: the strategies to try, in this order, comma-separated (default: every one that applies to the "
                        "URL's scheme; `docs/nettests.md` lists them)")
    add_recheck_options(p, "input")
    p.add_argument("--residual-wait", type=float, default=RESIDUAL_WAIT, metavar="S",
                   help="web_connectivity: a URL whose connects were dropped at an address and port where the censor "
                        "had just acted on another of the run's connections (its residual blocking holds them for a "
                        "while: the GFW's 90 s, Turkmenistan's 30 s) is a failure, not a block (x_residual), and is "
                        f"measured again S seconds after the censor acted there (default {RESIDUAL_WAIT:g}; 0: never)")
    add_run_options(p)
    p.set_defaults(func=run)


def add_recheck_options(p: argparse.ArgumentParser, what: str) -> None:
    """--recheck and --recheck-after, for a command whose measurements are each of one ``what``."""
    p.add_argument("--recheck", action="store_true",
                   help=f"measure again, once, each {what} found blocked or failing, --recheck-after seconds after "
                        "its measurement: two measurements with the same anomaly confirm it in `tamperscope analyze`, "
                        f"a transient failure shows as one; on an output that holds measurements already, each {what} "
                        "it holds once, found blocked or failing, is rechecked")
    p.add_argument("--recheck-after", type=float, default=None, metavar="S",
                   help=f"with --recheck: seconds to wait after a measurement ended before measuring its {what} "
                        f"again (default {RECHECK_AFTER:g}): a censor may go on blocking an address for a while after "
                        "it acted (its residual blocking), which would decide the second measurement instead")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options every measuring command ends with (run, remote): consent, progress, summary, submission."""
    p.add_argument("--yes", "-y", action="store_true", help="consent for this run only, without the prompt (automation; not kept)")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.add_argument("--summary", action="store_true",
                   help="print a table by mechanism at the end (and, for a --list with categories, by Citizen Lab "
                        "category: sites measured and blocked)")
    p.add_argument("--max-runtime", type=float, default=None, metavar="S",
                   help="start no measurement after S seconds (as OONI Probe's max runtime), finishing those under "
                        "way; what is left is said, and the same command measures it next (the output resumes); "
                        "per nettest of a group")
    p.add_argument("--submit", default=None, metavar="URL",
                   help="upload each measurement to this collector (OONI's report protocol, e.g. `tamperscope serve`) "
                        "through a durable local outbox; what cannot be sent now is sent by the next --submit run")
    p.add_argument("--outbox", type=path_arg, default=None, metavar="DIR",
                   help="the outbox directory (default $XDG_DATA_HOME/tamperscope/outbox, else ~/.local/share/...)")
    p.add_argument("--submit-timeout", type=float, default=None, metavar="S",
                   help=f"seconds to keep retrying the upload after the last measurement (default {SUBMIT_TIMEOUT:g})")
    p.add_argument("--outbox-max", default=None, metavar="SIZE",
                   help="the most the outbox may hold, e.g. 500M or 2G (K, M, G, T: powers of 1024; default 1G); "
                        "measurements past it are not queued for submission, they are only in the output file")


def check_max_runtime(args: argparse.Namespace) -> None:
    value = args.max_runtime
    if value is not None and not 0 < value <= MAX_RUNTIME:  # also refuses nan and inf
        raise UsageError(f"--max-runtime must be more than 0 and at most {MAX_RUNTIME:.0f} seconds (a week), not "
                         f"{value}")


def deadline(args: argparse.Namespace) -> float | None:
    """When a run that starts measuring now stops starting measurements (time.monotonic()), from --max-runtime;
    None: never. Taken as the measuring starts: loading the fingerprints before it costs none of it."""
    return time.monotonic() + args.max_runtime if args.max_runtime is not None else None


MAX_RUNTIME = 7 * 86400.0  # seconds: --max-runtime
MAX_CA_BUNDLE = 16 << 20  # bytes of a CA bundle: the system's is ~250 KB
MAX_TIMEOUT = 86400.0  # seconds
MAX_ASN = 4294967295  # AS numbers are 32 bits; 0 means unknown and is not given by hand
MAX_OUTBOX = 1 << 50  # bytes: --outbox-max at most 1024T
SUBMIT_TIMEOUT = 120.0  # seconds: --submit-timeout's default
MAX_SUBMIT_TIMEOUT = 86400.0
SIZE = re.compile(r"([0-9]{1,16}(?:\.[0-9]{1,6})?) ?(?:([KMGT])(?:i?B)?|B)?", re.IGNORECASE)
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
ECHO_HELP = "HOST[:PORT]"


def unknown_nettest(name: str) -> str:
    """The line refusing an unknown nettest: whole, as short as one line shows (20 names were cut in the middle),
    with the likeliest meant and where the list of them is."""
    import difflib

    known = nettests.names()
    close = difflib.get_close_matches(name, [*known, *nettests.GROUPS], n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    shown = name if len(name) <= 60 else name[:60] + "…"
    return (f"unknown nettest {shown!r}: {hint}`tamperscope run --help` lists the {len(known)} nettests "
            f"({', '.join(sorted(known, key=lambda n: n != 'web_connectivity')[:3])}, …) and the groups "
            f"({', '.join(nettests.GROUPS)})")


@dataclass(frozen=True)
class Settings:
    """Everything a run needs, each value checked. Making them contacts nothing (no DNS lookup either):
    consent is asked with them in hand, before `build_context` learns the probe's own addresses."""

    nettest: ModuleType
    inputs: list[str | None]
    output: Path | None  # None: standard output (`-o -`)
    resume: Resume
    helper: str | None
    public: str
    isp: str | None
    ca_bundle: str | None
    asn_table: AsnTable
    cc: str | None
    asn: int | None
    backend: str | None
    silent: str | None
    doh: str | None
    timeout: float
    submit: str | None
    network_events: bool
    quic: bool = True
    strategies: tuple[str, ...] | None = None
    stun: tuple[str, int] | None = None  # (host, port): where to learn the public address from
    telegram_dcs: tuple[str, ...] | None = None  # telegram's access points, when not Telegram's own
    tor_targets: TorTargets | None = None  # tor's targets, when not Tor's directory authorities
    tor_network: TorNetwork | None = None  # vanilla_tor's network, when not Tor's own
    tor_bridges: TorBridges | None = None  # vanilla_tor's bridges (secrets: never recorded)
    wireguard: WgConfig | None = None  # the wireguard nettest's client configuration (keys: never recorded)
    categories: dict[str, str] = field(default_factory=dict)  # a --list entry's Citizen Lab category, by URL
    recheck: float | None = None  # --recheck: seconds to wait after an input's measurement before its second; None: no


def settings(args: argparse.Namespace) -> Settings:
    """Check every option, input and the output, or raise UsageError (one line) before anything happens."""
    try:
        nettest = nettests.load(args.nettest)
    except KeyError:
        raise UsageError(unknown_nettest(args.nettest)) from None
    ready = getattr(nettest, "check_environment", None)  # a program the nettest runs, e.g. vanilla_tor's tor
    if ready is not None:
        try:
            ready()
        except NettestError as e:
            raise UsageError(str(e)) from None
    if args.parallel < 1 or args.parallel > 1024:
        raise UsageError("--parallel must be between 1 and 1024")
    if args.capture:
        _check_capture()
    if not 0 < args.timeout <= MAX_TIMEOUT:  # also refuses nan and inf
        raise UsageError(f"--timeout must be more than 0 and at most {MAX_TIMEOUT:.0f} seconds, not {args.timeout}")
    check_max_runtime(args)
    recheck = _recheck(args)
    _residual_wait(args)  # checked before anything runs
    cc, asn = _cc(args.cc), _asn(args.asn)
    env = os.environ
    helper, label = _pick(args.helper, "--helper", "TAMPERSCOPE_HELPER")
    helper = _http_url(helper, label) if helper is not None else None
    if not nettests.uses_helper(nettest):  # never contacted, named or recorded by a nettest that does not ask it
        helper = None
    public, label = _pick(args.resolver, "--resolver", "TAMPERSCOPE_PUBLIC_RESOLVER")
    public = _ip(public, label) if public is not None else "8.8.8.8"
    isp = env.get("TAMPERSCOPE_RESOLVER") or None
    isp = _ip(isp, "$TAMPERSCOPE_RESOLVER") if isp is not None else _system_resolver()
    silent, label = _pick(args.silent_resolver, "--silent-resolver", "TAMPERSCOPE_SILENT_RESOLVER")
    silent = _ip(silent, label) if silent is not None else None
    doh, label = _pick(args.doh, "--doh", "TAMPERSCOPE_DOH")
    doh = _http_url(doh, label, "a DoH server's http(s) URL") if doh is not None else None
    backend, label = _pick(args.backend, "--backend", "TAMPERSCOPE_ECHO")
    if backend is not None:
        try:
            check_backend(backend)
        except NettestError:
            raise UsageError(f"{label} must be {ECHO_HELP} (or a URL), not {backend!r}") from None
    ca, label = _pick(args.ca_bundle, "--ca-bundle", "TAMPERSCOPE_CA_BUNDLE")
    if ca is not None:
        _check_ca_bundle(ca)
    submit = _submit_url(args)
    stun_spec, label = _pick(getattr(args, "stun", None), "--stun", "TAMPERSCOPE_STUN")
    stun = _stun(stun_spec, label) if stun_spec is not None else None
    dcs, label = _pick(getattr(args, "telegram_dcs", None), "--telegram-dcs", "TAMPERSCOPE_TELEGRAM_DCS")
    telegram_dcs = _telegram_dcs(dcs, label) if dcs is not None else None
    if getattr(args, "tor_targets", None) is not None and nettest.NAME != "tor":  # the lab's variable: any nettest
        raise UsageError("--tor-targets is for the tor nettest")
    tor_file, label = _pick(getattr(args, "tor_targets", None), "--tor-targets", "TAMPERSCOPE_TOR_TARGETS")
    tor_targets = _tor_targets(tor_file, label) if tor_file is not None and nettest.NAME == "tor" else None
    table_path, _ = _pick(args.asn_table, "--asn-table", "TAMPERSCOPE_ASN_TABLE")
    table = _asn_table(table_path) if table_path else EMPTY
    tor_network = _tor_network(args, nettest)
    tor_bridges = _tor_bridges(args, nettest)
    wg = _wireguard(args, nettest)
    categories: dict[str, str] = {}
    inputs = _inputs(args, nettest, backend, [wg.input_of(p) for p in wg.peers] if wg else (), categories)
    if wg is not None:
        for i in inputs:  # each -i must be a peer's endpoint: the keys to use are that peer's
            try:
                wg.peer(i or "")
            except NettestError as e:
                raise UsageError(str(e)) from None
    if recheck is not None and inputs == [None]:
        raise UsageError(f"--recheck measures again the inputs found blocked, and {nettest.NAME} takes no input")
    output, resume = _output(args, nettest)
    return Settings(nettest=nettest, inputs=inputs, output=output, resume=resume, helper=helper, public=public,
                    isp=isp, ca_bundle=ca, asn_table=table, cc=cc, asn=asn, backend=backend,
                    silent=silent, doh=doh, timeout=args.timeout, submit=submit,
                    network_events=not args.no_network_events, quic=not args.no_quic,
                    strategies=_strategies(args.strategies, nettest), stun=stun, telegram_dcs=telegram_dcs,
                    tor_targets=tor_targets, tor_network=tor_network, tor_bridges=tor_bridges,
                    wireguard=wg, categories=categories, recheck=recheck)


@dataclass(frozen=True)
class TorNetwork:
    """``--tor-network``: the torrc lines kept and the file they came from."""

    lines: tuple[str, ...]
    path: str


MAX_TOR_NETWORK = 64 << 10  # bytes: a network's lines are a few hundred


def _file_for(args: argparse.Namespace, nettest: ModuleType, owner: str, option: str,
              variable: str) -> tuple[str | None, str]:
    """(the file ``option`` or $``variable`` names, and which said it) for the nettest ``owner``; (None, "") for
    any other nettest, which may run with the lab's variable set but may not be given the option."""
    given = getattr(args, option.removeprefix("--").replace("-", "_"), None)
    if given is not None and nettest.NAME != owner:
        raise UsageError(f"{option} is for the {owner} nettest")
    if nettest.NAME != owner:
        return None, ""
    return _pick(given, option, variable)


def _tor_network(args: argparse.Namespace, nettest: ModuleType) -> TorNetwork | None:
    """--tor-network (or $TAMPERSCOPE_TOR_NETWORK) for vanilla_tor; without either, Tor's own network."""
    path, label = _file_for(args, nettest, "vanilla_tor", "--tor-network", "TAMPERSCOPE_TOR_NETWORK")
    if path is None:
        return None
    text = _read_bounded(Path(path), MAX_TOR_NETWORK, label)
    from ..nettests.vanilla_tor import load_network

    try:
        return TorNetwork(load_network(text), path)
    except NettestError as e:
        raise UsageError(f"{label}: {path}: {e}") from None


@dataclass(frozen=True)
class TorBridges:
    """``--tor-bridges``: the bridges and the file they came from."""

    bridges: tuple[Any, ...]  # nettests.vanilla_tor.Bridge
    path: str


def _tor_bridges(args: argparse.Namespace, nettest: ModuleType) -> TorBridges | None:
    given = getattr(args, "tor_bridges", None)
    if given is None:
        return None
    if nettest.NAME != "vanilla_tor":
        raise UsageError("--tor-bridges is for the vanilla_tor nettest")
    text = _read_bounded(Path(given), MAX_TOR_NETWORK, "--tor-bridges")
    from ..nettests.vanilla_tor import load_bridges, obfs4proxy

    try:
        bridges = load_bridges(text)
        if any(b.transport == "obfs4" for b in bridges):
            obfs4proxy()
    except NettestError as e:
        raise UsageError(f"--tor-bridges: {given}: {e}") from None
    return TorBridges(bridges, given)


MAX_WG_CONFIG = 1 << 20  # bytes: a wg-quick file is a few hundred


def _wireguard(args: argparse.Namespace, nettest: ModuleType) -> WgConfig | None:
    """--wg-config (or $TAMPERSCOPE_WG_CONFIG) for the wireguard nettest, which cannot run without one."""
    path, label = _file_for(args, nettest, "wireguard", "--wg-config", "TAMPERSCOPE_WG_CONFIG")
    if nettest.NAME != "wireguard":
        return None
    if path is None:
        raise UsageError("wireguard needs --wg-config FILE, your WireGuard client configuration "
                         "(a WireGuard server answers only a client it knows)")
    text = _read_bounded(Path(path), MAX_WG_CONFIG, label)
    try:
        return load_wg_config(text)
    except NettestError as e:
        raise UsageError(f"{label}: {path}: {e}") from None


def _telegram_dcs(value: str, label: str) -> tuple[str, ...]:
    from ..nettests.telegram import access_points

    try:
        return access_points(value)
    except NettestError as e:
        raise UsageError(f"{label}: {e}") from None


@dataclass(frozen=True)
class TorTargets:
    """``--tor-targets``: the targets and the file they came from."""

    targets: tuple[TorTarget, ...]
    path: str


MAX_TOR_TARGETS_FILE = 4 << 20  # bytes: OONI's list of targets is about 20 KB


def _tor_targets(path: str, label: str) -> TorTargets:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TOR_TARGETS_FILE + 1)
    except OSError as e:
        raise UsageError(f"{label}: cannot read {path}: {e.strerror or e}") from None
    if len(data) > MAX_TOR_TARGETS_FILE:
        raise UsageError(f"{label}: {path} is larger than {byte_size(MAX_TOR_TARGETS_FILE)}")
    try:
        targets = load_tor_targets(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{label}: {path} is not UTF-8 text") from None
    except NettestError as e:
        raise UsageError(f"{label}: {path}: {e}") from None
    return TorTargets(targets, path)


def _stun(value: str, label: str) -> tuple[str, int]:
    from ..nettests.stunreachability import endpoint_of

    try:
        check_utf8_url(value, label)
        return endpoint_of(value)
    except BadInput as e:
        raise UsageError(str(e)) from None
    except NettestError:
        raise UsageError(f"{label} must be a STUN server, stun://HOST[:PORT] (a port from 1 to 65535), not "
                         f"{value!r}") from None


def _strategies(given: str | None, nettest: ModuleType) -> tuple[str, ...] | None:
    """--strategies: known evasion strategy names, for the evasion nettest only."""
    if given is None:
        return None
    from ..model.evasion import BY_NAME

    if nettest.NAME != "evasion":
        raise UsageError("--strategies is for the evasion nettest")
    names = tuple(dict.fromkeys(n.strip() for n in given.split(",") if n.strip()))
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        raise UsageError(f"--strategies: unknown strategy {(unknown or [given])[0]!r} "
                         f"(known: {', '.join(BY_NAME)})")
    return names


def _pick(given: str | None, flag: str, env_name: str) -> tuple[str | None, str]:
    """The option's value and how to name it in a message: the flag when given (even empty: an empty
    --resolver is a mistake, not "use the default"), else the environment variable when set and not empty."""
    if given is not None:
        return given, flag
    return os.environ.get(env_name) or None, f"${env_name}"


def _http_url(value: str, label: str, what: str = "an http(s) URL") -> str:
    try:
        parse_url(value)  # scheme, host, port (not 0), no credentials, and UTF-8
    except BadInput as e:
        if not_utf8(value) is not None:  # say why: the repr of its bytes would not
            raise UsageError(f"{label}: {e}") from None
        raise UsageError(f"{label} must be {what}, not {value!r}") from None
    return value.strip()


def _ip(value: str, label: str) -> str:
    """A resolver's address: one host's (not 0.0.0.0, a multicast group or the broadcast address, which no
    resolver answers from), and a zone (``fe80::1%eth0``) only on a link-local address and naming an interface
    this machine has: a query sent nowhere was recorded as the resolver's NXDOMAIN."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise UsageError(f"{label} must be an IP address, not {value!r}") from None
    why = ("no host's (unspecified)" if ip.is_unspecified else "a multicast group's" if ip.is_multicast
           else "the broadcast address" if ip == ipaddress.IPv4Address("255.255.255.255") else None)
    if why:
        raise UsageError(f"{label} must be a resolver's address, not {value!r}: it is {why}")
    zone = getattr(ip, "scope_id", None)
    if zone is not None:
        if not ip.is_link_local:
            raise UsageError(f"{label}: a zone (%{zone}) goes only with a link-local address (fe80::/10), "
                             f"not {value!r}")
        try:
            socket.if_nametoindex(zone) if not zone.isdigit() else socket.if_indextoname(int(zone))
        except OSError:
            raise UsageError(f"{label}: {value!r} names an interface this machine does not have ({zone!r})") from None
    return value


def _cc(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.fullmatch(r"[A-Za-z]{2}", value):  # ASCII only: a 3-letter code cut to 2 names another country
        raise UsageError(f"--cc must be a two-letter country code (AT, br), not {value!r}")
    return value.upper()


def _asn(value: str | None) -> int | None:
    if value is None:
        return None
    m = re.fullmatch(r"(?:AS)?([0-9]{1,10})", value, re.IGNORECASE)
    if m is None or not 1 <= int(m.group(1)) <= MAX_ASN:
        raise UsageError(f"--asn must be an AS number from 1 to {MAX_ASN} (AS1234 or 1234), not {value!r}")
    return int(m.group(1))


def _check_capture() -> None:
    """--capture listens on a packet socket: refuse before anything is written or asked if it cannot."""
    if os.geteuid() != 0:
        raise UsageError("--capture needs root (it listens on a packet socket)")
    if not _has_cap_net_raw():
        raise UsageError("--capture needs the CAP_NET_RAW capability (it listens on a packet socket), "
                         "which this process does not have")


CAP_NET_RAW = 13


def _has_cap_net_raw() -> bool:
    """Whether the process's effective capabilities hold CAP_NET_RAW (root may lack it in a container)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_RAW & 1)
    except (OSError, ValueError, IndexError):
        pass
    return True  # cannot tell: opening the socket will


def _check_ca_bundle(ca: str) -> None:
    """Load the bundle once now: a bad one would otherwise fail every TLS measurement in the middle of the run."""
    path = Path(ca)
    if not path.exists():
        raise UsageError(f"CA bundle {ca} does not exist")
    if not path.is_file():
        raise UsageError(f"CA bundle {ca} is not a file")
    try:
        if path.stat().st_size > MAX_CA_BUNDLE:
            raise UsageError(f"CA bundle {ca} is larger than {byte_size(MAX_CA_BUNDLE)}: is it the right file?")
        ssl.create_default_context(cafile=ca)
    except ssl.SSLError as e:  # before OSError: SSLError is one
        raise UsageError(f"CA bundle {ca} holds no usable certificate ({e.reason or e})") from None
    except OSError as e:
        raise UsageError(f"cannot read CA bundle {ca}: {e.strerror or e}") from None


def _read_bounded(path: Path, limit: int, what: str) -> str:
    try:
        return read_bounded(path, limit, what)
    except BadInput as e:
        raise UsageError(str(e)) from None


def _asn_table(path: str) -> AsnTable:
    text = _read_bounded(Path(path), MAX_TABLE, "ASN table")
    try:
        return AsnTable.from_text(text, path)
    except ValueError as e:
        raise UsageError(f"cannot read ASN table {path}: {e}") from None


def category_pick(args: argparse.Namespace) -> CategoryPick | None:
    """--category's picker (None without it); refused without a --list to pick from."""
    if not args.category:
        return None
    if not args.list:
        raise UsageError("--category picks entries of a --list (a Citizen Lab test-list CSV, with a category_code "
                         "column)")
    return CategoryPick(args.category)


def checked(pick: CategoryPick | None) -> None:
    """After every list: a --category code none of them holds is one line (`CategoryPick.check`)."""
    try:
        if pick:
            pick.check()
    except BadInput as e:
        raise UsageError(str(e)) from None


def _categories(value: str) -> list[str]:
    try:
        return category_codes(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _inputs(args: argparse.Namespace, nettest: Any, backend: str | None,
            defaults: Sequence[str] = (), categories: dict[str, str] | None = None) -> list[str | None]:
    """Every input from --input and --list, each checked as the nettest will read it; the first bad one is
    named (with its file and line) before anything runs: a bad line 201 must not stop a run at 188.
    ``categories`` gets each list entry's Citizen Lab category (the first list to name a URL says)."""
    items: list[str] = []

    def check(value: str, where: str, category: str | None = None, normal: bool = False) -> None:
        try:
            check_input(nettest, value, backend=backend)
            if nettest.NAME == "web_connectivity" and not normal:  # recorded as a list entry is: a rerun and a
                value = normal_url(value)  # resume agree (`read_url_list` wrote its entries so)
        except (NettestError, BadInput) as e:
            raise UsageError(f"{where}{e}") from None
        items.append(value)
        if category and categories is not None:
            categories.setdefault(value, category.upper())

    if args.category and nettest.NAME != "web_connectivity":
        raise UsageError("--category picks a test list's websites by their category: it is for web_connectivity")
    pick = category_pick(args)
    for i in args.input:
        check(i, "")
    for path in args.list:
        text = _read_bounded(path, MAX_LIST, "list")
        if nettest.NAME == "web_connectivity":
            try:
                entries = read_url_list(text, str(path))
            except BadInput as e:
                raise UsageError(str(e)) from None
            try:
                keep = pick.keep([e.category_code for e in entries], str(path)) if pick else [True] * len(entries)
            except BadInput as e:
                raise UsageError(str(e)) from None
            for n, (entry, kept) in enumerate(zip(entries, keep), 1):  # numbered as in the whole list
                if kept:
                    check(entry.url, f"{path}: entry {n}: ", entry.category_code, normal=True)
            continue
        try:
            values = list_entries(text, str(path))  # a Citizen Lab CSV's first column, or the whole line
        except BadInput as e:
            raise UsageError(str(e)) from None
        for n, value in values:
            check(value, f"{path}: line {n}: ")
    checked(pick)
    if items:
        return list(dict.fromkeys(items))
    defaults = tuple(defaults) or getattr(nettest, "DEFAULT_INPUTS", ())
    if defaults:  # stunreachability: well-known servers, as OONI Probe ships its own list
        return list(defaults)
    try:
        check_input(nettest, None, backend=backend)  # one measurement without input: may it run?
    except NettestError as e:
        raise UsageError(str(e)) from None
    return [None]


# seconds: longer than the residual blocking measured of the GFW (its "penalty box": 90 s for the same client,
# server and port, Rambert et al. 2021) and the lab's tm-like (30 s); a censor that holds longer needs more
RECHECK_AFTER = 120.0
MAX_RECHECK_AFTER = 86400.0


def _recheck(args: argparse.Namespace) -> float | None:
    """--recheck's wait (seconds), None without it; one line for a wait out of range or given alone."""
    after = getattr(args, "recheck_after", None)
    if not getattr(args, "recheck", False):
        if after is not None:
            raise UsageError("--recheck-after goes with --recheck")
        return None
    if after is None:
        return RECHECK_AFTER
    if not 0 <= after <= MAX_RECHECK_AFTER:  # also refuses nan and inf
        raise UsageError(f"--recheck-after must be from 0 to {MAX_RECHECK_AFTER:.0f} seconds (a day), not {after}")
    return float(after)


def _output(args: argparse.Namespace, nettest: Any) -> tuple[Path | None, Resume]:
    """The output and what a resume skips. `-o -` is standard output: written, never read back."""
    if args.output is not None and str(args.output) == "-":
        return None, Resume(regular=False)
    path: Path = args.output or Path(f"tamperscope-{nettest.NAME}.jsonl")
    for lst in args.list:
        if _same_file(lst, path):
            raise UsageError(f"--output {path} is also a --list: refusing to append measurements to it")
    try:
        return path, scan_output(path, nettest.NAME, recheck=bool(getattr(args, "recheck", False)), say=said)
    except OutputError as e:
        raise UsageError(str(e)) from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _system_resolver() -> str | None:
    """The first nameserver of /etc/resolv.conf that is an IP address."""
    try:
        with open("/etc/resolv.conf", "rb") as f:
            text = f.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                ipaddress.ip_address(parts[1])
            except ValueError:
                continue
            return parts[1]
    return None


def _targets(s: Settings) -> str:
    given = [i for i in s.inputs if i is not None]
    shown = ", ".join(given[:3]) + (", …" if len(given) > 3 else "")
    contacts = getattr(s.nettest, "CONTACTS", None)
    if s.nettest.NAME == "telegram" and s.telegram_dcs:
        contacts = f"the access points {', '.join(s.telegram_dcs)} (ports 80 and 443) and https://web.telegram.org/"
    if s.nettest.NAME == "tor" and s.tor_targets:
        private = sum(1 for t in s.tor_targets.targets if t.private)
        contacts = f"the {len(s.tor_targets.targets)} Tor targets of {s.tor_targets.path}" + \
            (f" ({private} of them private bridges, scrubbed from the measurement)" if private else "")
    if s.nettest.NAME == "vanilla_tor":
        contacts = (f"the Tor network of {s.tor_network.path} (through the tor program)" if s.tor_network
                    else "Tor's directory authorities and relays (through the tor program)")
        if s.tor_bridges:
            n = len(s.tor_bridges.bridges)
            contacts += (f", through the {n} bridge{'s' * (n != 1)} of {s.tor_bridges.path} (scrubbed from the "
                         "measurement)")
    return f"the targets of {len(given)} input(s) ({shown})" if given else contacts or "the nettest's target"


def plan(s: Settings, *more: Settings) -> str:
    """What this run would contact, said before consent (from the settings: nothing is looked up). With
    ``more`` (a group's other nettests, which share every other setting), their targets too."""
    parts = [_targets(x) for x in (s, *more)]
    parts.append(f"the system resolver ({s.isp})" if s.isp else "the system resolver")
    parts.append(f"the public resolver {s.public}")
    for what, value in (("the control helper", s.helper), ("the DoH server", s.doh),
                        ("an address where no DNS server runs", s.silent), ("the echo backend", s.backend),
                        ("the collector", s.submit)):
        if value:
            parts.append(f"{what} {value}")
    if s.stun:
        parts.append(f"the STUN server {_stun_text(s.stun)} (once: which address this probe's traffic comes from, "
                     "to scrub it; never recorded)")
    return "This run would contact: " + "; ".join(parts) + "."


def build_context(s: Settings, public: str | None) -> tuple[Context, ProbeInfo, list[str]]:
    """The run context and the probe's envelope, ``public`` being the address a STUN server saw (`_public_address`).
    After consent only: learning the probe's own addresses (to scrub them) may resolve the helper's name."""
    from ..netx import Resolver
    from .privacy import local_addresses

    peers = [p for p in (s.isp, s.public, urlsplit(s.helper).hostname if s.helper else None) if p]
    mine = local_addresses(peers)
    if public is not None:
        mine.add(public)
    # the network is looked up by the public address when a STUN server said it (behind NAT a private one
    # is in no AS table), else by the source address towards the resolvers and the helper
    local = public or next(iter(sorted(mine)), "")
    info = s.asn_table.lookup(local) if local else None
    rinfo = s.asn_table.lookup(s.isp) if s.isp else None
    looked_up_cc = info.cc.upper() if info and info.asn and re.fullmatch(r"[A-Za-z]{2}", info.cc) else "ZZ"
    probe = ProbeInfo(cc=s.cc or looked_up_cc,
                      asn=s.asn if s.asn is not None else (info.asn if info else 0),
                      network_name=info.name if info and s.asn is None else "",
                      resolver_ip=s.isp or "", resolver_asn=rinfo.asn if rinfo else 0,
                      resolver_network_name=rinfo.name if rinfo else "")
    options = {"resolver": s.public, "silent": s.silent, "doh": s.doh, "network_events": s.network_events,
               "quic": s.quic, "strategies": s.strategies, "telegram_dcs": s.telegram_dcs,
               "tor_targets": s.tor_targets.targets if s.tor_targets else None, "wireguard": s.wireguard,
               "tor_network": s.tor_network.lines if s.tor_network else None,
               "tor_bridges": s.tor_bridges.bridges if s.tor_bridges else None}
    ctx = Context(helper_url=s.helper, udp_resolver=Resolver("udp", s.public), isp_resolver=s.isp,
                  ca_bundle=s.ca_bundle, matcher=_matcher(), asn=s.asn_table, backend=s.backend,
                  timeouts=Timeouts(measurement=s.timeout), options=options)
    return ctx, probe, sorted(mine)


def _stun_text(endpoint: tuple[str, int]) -> str:
    host, port = endpoint
    return f"stun://[{host}]:{port}" if ":" in host else f"stun://{host}:{port}"


def _public_address(endpoint: tuple[str, int], resolver: str) -> str | None:
    """The address ``endpoint`` (a STUN server) saw this probe's request come from; None, said in one line on
    stderr, when it could not be asked. A name is resolved through the public resolver."""
    from ..netx import Resolver, Trace, lookup_addresses
    from ..netx.stun import binding

    async def ask() -> tuple[str | None, str | None]:
        host, port = endpoint
        trace = Trace(record_io=False)  # nothing of it is recorded
        try:
            ip: str = str(ipaddress.ip_address(host))
        except ValueError:
            res = await lookup_addresses(host, resolver=Resolver("udp", resolver), trace=trace, timeout=4)
            if res.failure is not None or not res.addresses:
                return None, res.failure or "dns_no_answer"
            ip = res.addresses[0]
        result = await binding(ip, port, trace=trace, timeout=5)
        if result.mapped is None:
            return None, result.failure or "no address in the answer"
        return result.mapped[0], None

    address, failure = asyncio.run(ask())
    if address is None:
        print(f"tamperscope: the STUN server {_stun_text(endpoint)} did not say this probe's public address "
              f"({failure}); behind NAT, a page that echoes it will not have it scrubbed", file=sys.stderr)
    return address


def _use_fingerprints(given: Path | None) -> None:
    """Fingerprints of one's own (--fingerprints FILE, else $TAMPERSCOPE_FINGERPRINTS), checked before anything
    is measured: a bad file stops the run in one line."""
    from ..nettests.blockpages import use
    from ..wire.fingerprints import LOCAL_ENV, read_local

    path = given or os.environ.get(LOCAL_ENV) or None
    if path is None:
        return
    try:
        use(read_local(path))
    except ValueError as exc:
        raise UsageError(str(exc) if given else f"${LOCAL_ENV}: {exc}") from None


def _matcher() -> Any:
    from ..nettests.blockpages import matcher

    return matcher()


def run(args: argparse.Namespace) -> int:
    from .consent import ConsentRequired, ensure_consent

    group = nettests.GROUPS.get(args.nettest)
    if group is not None and (args.input or args.list):
        raise UsageError(f"the {args.nettest} group takes no input (its nettests measure their own servers)")
    _use_fingerprints(getattr(args, "fingerprints", None))
    # every nettest's settings checked before anything happens: a mistake stops the group before its first;
    # --tor-targets given to a group that holds tor is tor's alone
    if group is not None and "tor" not in group and getattr(args, "tor_targets", None) is not None:
        raise UsageError("--tor-targets is for the tor nettest")
    runs = [settings(argparse.Namespace(**{**vars(args), "nettest": name,
                                           **({"tor_targets": None} if group and name != "tor" else {})}))
            for name in group or (args.nettest,)]
    try:
        ensure_consent(args.yes, plan=plan(*runs))
    except ConsentRequired as e:
        raise UsageError(str(e)) from None
    # the STUN server is asked once, for the whole group (the notice says so)
    public = _public_address(runs[0].stun, runs[0].public) if runs[0].stun is not None else None
    # one after another (a generator): 1 if any run said so. Each reads its output afresh when its turn comes:
    # the group's earlier nettests may have appended to the same file since the settings were checked
    return max(_run_one(args, s if len(runs) == 1 else _fresh_output(args, s), public) for s in runs)


def _fresh_output(args: argparse.Namespace, s: Settings) -> Settings:
    output, resume = _output(args, s.nettest)
    return replace(s, output=output, resume=resume)


def _run_one(args: argparse.Namespace, s: Settings, public: str | None) -> int:
    from .privacy import Scrubber

    nettest = s.nettest
    ctx, probe, mine = build_context(s, public)
    sniffer = _sniffer() if args.capture else None
    try:
        submit = _submission(args, s.submit)
        label = str(s.output) if s.output is not None else "standard output"
        try:
            # standard output is file descriptor 1 whatever sys.stdout has become; it stays open for the CLI
            out = open_output(s.output, s.resume) if s.output is not None else open(1, "wb", closefd=False)
        except OutputError as e:
            raise UsageError(str(e)) from None
        except OSError as e:
            raise UsageError(f"cannot write {label}: {e.strerror or e}") from None
        parallel = descriptor_room(args.parallel, lambda line: print(line, file=sys.stderr, flush=True))
        engine = Engine(nettest, ctx, probe, Scrubber(mine), parallel=parallel, sniffer=sniffer,
                        residual_wait=_residual_wait(args))
        return _measure(args, s, engine, out, label, submit)
    finally:
        if sniffer is not None:
            sniffer.close()


def _sniffer() -> Any:
    from ..netx.sniffer import Sniffer

    try:
        return Sniffer().start()
    except OSError as e:  # checked first, but a sandbox can still refuse the socket
        raise UsageError(f"--capture: cannot open a packet socket: {e.strerror or e}") from None


def _measure(args: argparse.Namespace, s: Settings, engine: Engine, out: Any, label: str,
             submit: _Submission | None) -> int:
    """Run the engine over what is left to measure; 1 when some input could not be measured or the
    output could not be written (both said in one line), else 0."""
    todo = s.resume.seen.missing(s.inputs)
    stats = RunStats(total=len(s.inputs), skipped=len(s.inputs) - len(todo))
    ctx = engine.ctx
    print(f"tamperscope: {s.nettest.NAME} on {len(todo)} input(s)"
          + (f" ({stats.skipped} already in {label})" if stats.skipped else "")
          + f"; contacting the targets, resolver {ctx.isp_resolver or 'system'}, public resolver "
          f"{ctx.udp_resolver.address if ctx.udp_resolver else '-'}"
          + (f", helper {ctx.helper_url}" if ctx.helper_url else "") + "; "
          f"writing {label}" + ("" if s.resume.regular else " (nothing read back: no resume)") + "; "
          + (f"submitting to {submit.url} (outbox {submit.box.root}, {submit.box.waiting()} waiting)." if submit
             else "submitting nothing."), file=sys.stderr)
    if s.nettest.NAME == "web_connectivity" and len(todo) > 1:
        from ..nettests.blockpages import warm

        warm()
    _tune_gc()
    progress = Progress(stats, enabled=not args.no_progress)
    sink = out if submit is None else _Tee(out, submit.box)
    if engine.residual_wait > 0:
        restore_residual(engine.ctx.residual)
    until = deadline(args)  # taken here, after the fingerprints were loaded
    again: RunStats | None = None
    if s.recheck is None:
        work: Any = engine.run(todo, sink, stats, progress, deadline=until)
    else:
        stats.found = {}
        again = RunStats(found={})
        work = _and_recheck(engine, s, todo, sink, stats, again, progress, until, not args.no_progress)
    try:
        if not drive(work, submit, ctx.ca_bundle, out, label, s.resume.regular, progress):
            return 1
    finally:
        if engine.residual_wait > 0:
            keep_residual(engine.ctx.residual)
    status = conclude(stats, args.summary, s.output is not None, label, "input(s) could not be measured",
                      max_runtime=args.max_runtime, resumes=s.resume.regular, categories=s.categories)
    if again is not None:
        status = max(status, said_rechecks(again, s.resume.lone, stats))
    said_residual(stats, again, engine.residual_wait)
    said_no_control(stats, again)
    return status


def restore_residual(residual: Residual) -> None:
    """Where an earlier run met the censor, if it ended less than a hold ago (`Residual.restore`): a run started
    inside the censor's hold met it at its connects and read an IP block (QA). A file that cannot be read, or is
    not ours, is passed over: it only spares a wrong verdict, and is written again at the end."""
    import orjson

    try:
        with open(residual_state_path(), "rb") as f:
            state = orjson.loads(f.read(MAX_RESIDUAL_STATE))
        written = state["written"]
        age = time.time() - float(written)
        if type(written) in (int, float) and 0 <= age <= MAX_RESIDUAL_WAIT:
            residual.restore(state["endpoints"], age)
    except (OSError, ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        return


def keep_residual(residual: Residual) -> None:
    """Leave the next run where this one met the censor, within the hold (`Residual.kept`): written whole, then
    renamed, readable by this user alone. Only the endpoints and how long ago; nothing when there is none."""
    import orjson

    endpoints = residual.kept()
    path = residual_state_path()
    try:
        if not endpoints:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps({"written": time.time(), "endpoints": endpoints}))
        os.replace(tmp, path)
    except OSError:
        return  # (a read-only home: the next run goes without it)


MAX_RESIDUAL_STATE = 1 << 20  # bytes of residual.json read: 4,096 endpoints take about 150 KiB


def said_no_control(stats: RunStats, again: RunStats | None) -> None:
    """A line on the measurements the control helper did not answer: what they say rests on this side alone (QA: a
    loaded helper's 503s made dozens of a run's verdicts without a word)."""
    lost = stats.no_control + (again.no_control if again is not None else Counter())
    if lost:
        why = ", ".join(f"{n} {failure}" for failure, n in lost.most_common(3))
        print(f"tamperscope: {sum(lost.values())} measurement(s) got no answer from the control helper ({why}): "
              "their verdicts rest on what this side saw alone; measure them again (--recheck, or fewer at once "
              "with --parallel)", file=sys.stderr)


def said_residual(stats: RunStats, again: RunStats | None, wait: float) -> None:
    """A line on the inputs whose connects met residual blocking (the censor holding an address after another
    measurement there), measured again once it was over, and one on those --max-runtime left no time for."""
    met = [*stats.residual, *(again.residual if again is not None else ())]
    left = [*stats.residual_left, *(again.residual_left if again is not None else ())]
    if met:
        shown = ", ".join(met[:5]) + (", …" if len(met) > 5 else "")
        print(f"tamperscope: {len(met)} input(s) met residual blocking (their connects dropped at an address where the "
              f"censor had just acted on another measurement, of this run or one just before): each is written as a "
              f"failure, then "
              f"measured again {wait:g} s after the censor acted there: {shown}", file=sys.stderr)
    if left:
        print(f"tamperscope: {len(left)} of them not measured again (--max-runtime stopped the run first): the same "
              "command with --recheck measures them again", file=sys.stderr)


MAX_RESIDUAL_WAIT = 3600.0


def _residual_wait(args: argparse.Namespace) -> float:
    wait = getattr(args, "residual_wait", RESIDUAL_WAIT)
    if not 0 <= wait <= MAX_RESIDUAL_WAIT:  # also refuses nan and inf
        raise UsageError(f"--residual-wait must be from 0 to {MAX_RESIDUAL_WAIT:.0f} seconds, not {wait}")
    return float(wait)


def said_rechecks(again: RunStats, lone: Mapping[str, tuple[str, float]], stats: RunStats, what: str = "input") -> int:
    """The line on what --recheck found (`rechecked_line`), and one more when some rechecks could not be made:
    1 then, else 0."""
    print(rechecked_line(again, lone, stats, what), file=sys.stderr)
    if again.errors:
        print(f"tamperscope: {again.errors} recheck(s) could not be made (said above); the same command with "
              "--recheck tries them again", file=sys.stderr)
        return 1
    return 0


def due_rechecks(keys: Iterable[str | None], found: Mapping[str, tuple[str, float, bool]] | None,
                 lone: Mapping[str, tuple[str, float]]) -> dict[str, tuple[str, float]]:
    """What --recheck measures again, in the order of ``keys`` (a run's inputs, or remote's vantage and domain
    pairs): what this run found blocked or failing (``found``, `RunStats.found`), and what the output held once
    with an anomaly or a failure (``lone``: a run that stopped before its rechecks); each with its first
    mechanism and when that measurement ended."""
    found = found or {}
    due: dict[str, tuple[str, float]] = {}
    for key in keys:
        if key is None:
            continue
        if key in found:
            mech, ended, needs = found[key]
            if needs:
                due[key] = (mech, ended)
        elif key in lone:
            due[key] = lone[key]
    return due


Measure = Callable[[list[str], RunStats, Progress], Awaitable[None]]


async def recheck_stage(due: dict[str, tuple[str, float]], after: float, stats: RunStats, again: RunStats,
                        progress: Progress, until: float | None, shown: bool, measure: Measure,
                        what: str = "input") -> None:
    """--recheck, once a run has measured what it had to: ``due`` measured again by ``measure`` (counted in
    ``again``, with a progress line of its own), no sooner than ``after`` seconds after the last of them ended.
    Nothing when --max-runtime stopped the run, or would stop the rechecks before they start: said by
    `rechecked_line`, and left to the next run with --recheck."""
    if not due:
        return
    left = stats.total - stats.skipped - stats.done - stats.errors
    wait = max(0.0, max(ended for _, ended in due.values()) + after - time.time())
    if left > 0 or until is not None and time.monotonic() + wait >= until:
        again.total = len(due)
        return
    progress.close()
    print(f"tamperscope: --recheck: {len(due)} {what}(s) found blocked or failing, measured again "
          + (f"in {wait:.0f} s ({after:g} s after each one's measurement ended: a censor may go on blocking an "
             "address for a while after it acted)" if wait >= 0.5 else "now"), file=sys.stderr, flush=True)
    await asyncio.sleep(wait)
    again.total, again.started = len(due), time.monotonic()
    second = Progress(again, enabled=shown)
    try:
        await measure(list(due), again, second)
    finally:
        second.close()


async def _and_recheck(engine: Engine, s: Settings, todo: list[str | None], sink: Any, stats: RunStats,
                       again: RunStats, progress: Progress, until: float | None, shown: bool) -> None:
    """The run, then --recheck: the inputs found blocked or failing measured once more, each no sooner than
    ``s.recheck`` seconds after its measurement ended, with the annotation ``recheck`` "true"."""
    await engine.run(todo, sink, stats, progress, deadline=until)
    assert s.recheck is not None

    async def measure(inputs: list[str], counts: RunStats, shown_as: Progress) -> None:
        engine.annotations = {**engine.annotations, "recheck": "true"}
        await engine.run(list(inputs), sink, counts, shown_as, deadline=until)

    await recheck_stage(due_rechecks(s.inputs, stats.found, s.resume.lone), s.recheck, stats, again, progress,
                        until, shown, measure)


def _outcome(mechanism: str, needs: bool) -> str:
    """A measurement's outcome in a word, for --recheck's line: its mechanism, "failure" or "not blocked"."""
    if not needs:
        return "not blocked"
    return mechanism if mechanism != "none" else "failure"


def rechecked_line(again: RunStats, lone: Mapping[str, tuple[str, float]], stats: RunStats, what: str = "input"
                   ) -> str:
    """One line on what --recheck found: how many came out the same, how many differently (the first few named,
    with both outcomes), and how many were not rechecked (a later run with --recheck does them)."""
    if not again.total:
        return f"tamperscope: --recheck: no {what} found blocked or failing is left to measure again"
    first = {i: _outcome(mech, True) for i, (mech, _) in lone.items()}
    first.update({i: _outcome(mech, True) for i, (mech, _, needs) in (stats.found or {}).items() if needs})
    second = {i: _outcome(mech, needs) for i, (mech, _, needs) in (again.found or {}).items()}
    same = [i for i in second if first.get(i) == second[i]]
    differ = [f"{i} ({first.get(i, '?')}, then {second[i]})" for i in second if first.get(i) != second[i]]
    # what was not measured again: the rechecks --max-runtime left unstarted, and those that could not be made
    # (said_rechecks says how many on the next line, and each was said as it failed)
    not_made = again.total - len(second)
    not_started = max(0, not_made - again.errors)
    why = ("--max-runtime stopped the run first" if not_started == not_made
           else f"--max-runtime stopped {not_started}" if not_started
           else "they could not be made")
    return (f"tamperscope: --recheck: of {again.total} {what}(s) found blocked or failing, {len(same)} the same again"
            f" (`tamperscope analyze` takes two alike as confirmed), {len(differ)} different"
            + (f": {', '.join(differ[:5])}{', …' if len(differ) > 5 else ''}" if differ else "")
            + (f"; {not_made} not measured again ({why}): the same command with --recheck "
               "does them" if not_made > 0 else ""))


def conclude(stats: RunStats, summary: bool, to_file: bool, label: str, missing: str, *,
             max_runtime: float | None = None, resumes: bool = True, categories: dict[str, str] | None = None) -> int:
    """The end of a measuring command: the summary table if asked (on stdout unless the measurements went
    there), what --max-runtime left unmeasured, and 1 with one line when some measurements could not be made
    (they are tried again next run)."""
    if summary:
        print(summary_table(stats, categories), file=sys.stdout if to_file else sys.stderr)
    left = stats.total - stats.skipped - stats.done - stats.errors
    if max_runtime is not None and left > 0:
        print(f"tamperscope: --max-runtime {max_runtime:g} s reached: {left} measurement(s) not started"
              + ("; the same command makes them next (what is in " + label + " is skipped)" if resumes
                 else "; they were not made"), file=sys.stderr)
    if stats.errors:
        print(f"tamperscope: {stats.errors} {missing} (said above); they are not in {label}, "
              "so the same command tries them again", file=sys.stderr)
        return 1
    return 0


def drive(work: Any, submit: _Submission | None, ca_bundle: str | None, out: Any, label: str, regular: bool,
          progress: Progress) -> bool:
    """Run the measuring coroutine `work` to its end (uploading as it goes with --submit), then close the
    output and the progress line. False, said in one line, when the output could not be written."""
    if submit is not None:
        work = _run_and_submit(work, submit, ca_bundle, progress, label)
    try:
        _loop_run(work)
    except BrokenPipeError:
        raise  # the reader of standard output had enough: the CLI ends quietly
    except OSError as e:
        progress.close()
        print(f"tamperscope: cannot write {e.filename or label}: {e.strerror or e}"
              + ("; what was written is kept, and the same command resumes" if regular else ""),
              file=sys.stderr)
        return False
    finally:
        try:
            out.close()
        except OSError:
            pass  # its error, if any, was raised by the write or the final sync already
        progress.close()
    return True


class _Submission:
    def __init__(self, url: str, box: Any, timeout: float) -> None:
        self.url, self.box, self.timeout = url, box, timeout
        self.sent = self.duplicates = self.rejected = self.damaged = 0
        self.last_error: str | None = None
        self.damage: str | None = None
        self.last: Any = None  # the last FlushResult: what is still pending, here or for other collectors
        self.warned_full = False  # said during the run that the outbox is full

    def full(self, label: str, *, now: bool) -> str | None:
        """One line when the outbox refused measurements for being full (None when it did not): ``now``,
        the moment it was first seen, during the run; else how many, at the end."""
        box = self.box
        if not box.refused_full:
            return None
        where = f"the outbox {box.root} is full ({_size(box.pending_bytes)} pending, cap {_size(box.max_bytes)})"
        if now:
            return (f"tamperscope: {where}: measurements that do not fit are not queued for submission; "
                    f"they remain in {label}")
        return (f"tamperscope: {box.refused_full} measurement(s) not queued for submission because the outbox "
                f"{box.root} was full (cap {_size(box.max_bytes)}, {_size(box.pending_bytes)} pending now); "
                f"they remain in {label}")


def _submit_url(args: argparse.Namespace) -> str | None:
    """The collector's URL, checked (no outbox is made yet: that waits for consent)."""
    if args.submit is None:
        if args.outbox is not None:
            raise UsageError("--outbox goes with --submit URL")
        if args.outbox_max is not None:
            raise UsageError("--outbox-max goes with --submit URL")
        if args.submit_timeout is not None:
            raise UsageError("--submit-timeout goes with --submit URL")
        return None
    url = _http_url(args.submit, "--submit", "a collector's http(s) URL")
    parts = urlsplit(url)
    if parts.query or parts.fragment or url.endswith(("?", "#")):  # the API's paths are appended to it
        raise UsageError(f"--submit must be a collector's URL without a query or fragment, not {args.submit!r}")
    url = urlunsplit(parts._replace(scheme=parts.scheme.lower()))  # HTTP://… is http://…
    if args.submit_timeout is not None and not 0 < args.submit_timeout <= MAX_SUBMIT_TIMEOUT:  # nan and inf too
        raise UsageError(f"--submit-timeout must be more than 0 and at most {MAX_SUBMIT_TIMEOUT:.0f} seconds, not "
                         f"{args.submit_timeout}")
    _outbox_max(args.outbox_max)
    return url


def _outbox_max(value: str | None) -> int | None:
    """--outbox-max in bytes (None: not given): 500M, 2G, 1.5G, 1048576; K, M, G, T are powers of 1024."""
    if value is None:
        return None
    m = SIZE.fullmatch(value.strip())
    size = int(float(m.group(1)) * UNITS[(m.group(2) or "").upper()]) if m else 0
    if not 0 < size <= MAX_OUTBOX:
        raise UsageError(f"--outbox-max must be a size such as 500M, 2G or 1048576 (bytes), more than 0 and "
                         f"at most 1024T, not {value!r}")
    return size


def _size(n: int) -> str:
    """Bytes as a person reads them: 812 B, 3.4 MiB, 1.0 GiB."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} B"


def _submission(args: argparse.Namespace, url: str | None) -> _Submission | None:
    if url is None:
        return None
    from .outbox import DEFAULT_MAX_BYTES, Outbox, OutboxError

    directory = args.outbox or data_dir() / "outbox"
    cap = _outbox_max(args.outbox_max)
    try:
        box = Outbox(directory, collector=url, max_bytes=cap if cap is not None else DEFAULT_MAX_BYTES)
    except OutboxError as e:
        raise UsageError(str(e)) from None
    return _Submission(url, box, SUBMIT_TIMEOUT if args.submit_timeout is None else args.submit_timeout)


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


async def _run_and_submit(measuring: Any, submit: _Submission, ca_bundle: str | None, progress: Any,
                          label: str) -> None:
    """Measure while uploading what the outbox holds every few seconds; then upload the rest,
    retrying until --submit-timeout (not when the collector's certificate does not verify). What is still
    pending stays in the outbox for the next run; what the full outbox refused is said in one line."""
    from .outbox import OutboxError

    async def flush(timeout: float) -> None:
        try:
            r = await submit.box.flush(submit.url, timeout=timeout, ca_bundle=ca_bundle)
        except OutboxError as e:
            submit.last_error, submit.last = str(e), None
            return
        submit.sent += r.sent
        submit.duplicates += r.duplicates
        submit.rejected += r.rejected
        submit.damaged += r.damaged
        submit.damage = submit.damage or r.damage
        submit.last_error = r.last_error or submit.last_error
        submit.last = r

    async def uploader() -> None:
        while True:
            await asyncio.sleep(2.0)
            if submit.box.waiting():  # not for what waits for another collector: it would never go
                await flush(30.0)

    async def watch_full() -> None:
        # on its own: the uploader may spend its 30 s retrying a collector that is down
        while not submit.warned_full:
            await asyncio.sleep(0.5)
            if line := submit.full(label, now=True):
                submit.warned_full = True
                progress.note(line)

    tasks = [asyncio.create_task(uploader()), asyncio.create_task(watch_full())]
    try:
        await measuring
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
    await flush(submit.timeout)
    progress.close()
    last = submit.last
    left = last.remaining if last is not None else submit.box.waiting()
    damaged = submit.damaged + (last.unreadable if last is not None else 0)
    msg = (f"tamperscope: submitted {submit.sent} measurement(s) to {submit.url}"
           + (f" ({submit.duplicates} the collector had already)" if submit.duplicates else "")
           + (f"; {submit.rejected} refused, kept in {submit.box.root / 'rejected'}" if submit.rejected else "")
           + (f"; {damaged} damaged outbox file(s) (first: {submit.damage})" if damaged else "")
           + "".join(f"; {n} queued for {other} kept for a run with --submit {other}"
                     for other, n in (last.elsewhere.items() if last is not None else ())))
    if last is not None and last.untrusted:
        msg += f"; stopped at once: {last.last_error} ({submit.box.root})"
    elif left:
        msg += (f"; {left} still waiting in {submit.box.root} (last error: {submit.last_error or 'timeout'}): "
                "the next run with --submit sends them")
    print(msg, file=sys.stderr)
    if line := submit.full(label, now=False):
        print(line, file=sys.stderr)


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


def summary_table(stats: Any, categories: dict[str, str] | None = None) -> str:
    """By mechanism, with examples; then, when the inputs came from a test list with categories, by Citizen Lab
    category: the sites measured and those found blocked (most blocked first; the inputs no list filed last)."""
    # the mechanisms found, then the measurements that could not tell, then those that found nothing
    rows = sorted(stats.by_mechanism.items(), key=lambda kv: (kv[0] == "none", kv[0] == COULD_NOT_TELL, -kv[1], kv[0]))
    lines = [f"{'mechanism':16} {'count':>6}  examples", f"{'-' * 16} {'-' * 6}  {'-' * 40}"]
    for mech, n in rows:
        lines.append(f"{mech:16} {n:6d}  {', '.join(stats.examples.get(mech, [])[:3])}")
    lines.append(f"{'total':16} {sum(stats.by_mechanism.values()):6d}  blocked {stats.blocked}"
                 + (f", could not tell {stats.failures}" if stats.failures else ""))
    if categories and any(i in categories for i in stats.blocked_by_input):
        by: dict[str | None, list[int]] = {}
        for value, blocked in stats.blocked_by_input.items():
            counts = by.setdefault(categories.get(value), [0, 0])
            counts[0] += 1
            counts[1] += blocked
        names = [(code, category_label(code)) for code in by]
        width = max(len("category"), *(len(name) for _, name in names))
        lines += ["", f"{'category':{width}} {'measured':>8} {'blocked':>7}", f"{'-' * width} {'-' * 8} {'-' * 7}"]
        for code, name in sorted(names, key=lambda cn: (cn[0] is None, -by[cn[0]][1], -by[cn[0]][0], cn[1])):
            lines.append(f"{name:{width}} {by[code][0]:8d} {by[code][1]:7d}")
    return "\n".join(lines)
