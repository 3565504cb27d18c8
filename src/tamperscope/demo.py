"""`tamperscope demo`: the whole job on the built-in lab, start to finish.

Lab up with a censor profile (tm-like by default) → the probe over a bundled
list of real-world URLs, from inside the lab's client namespace → `tamperscope
locate` on one URL per mechanism → the same domains measured from outside the
country, through the ISP's resolver (`tamperscope remote dns`), and one reset
located from there too (`tamperscope locate --server`) → `tamperscope run evasion` on one
URL blocked over HTTP and one over TLS (which re-framings get past the box) → `tamperscope run
echcheck` (is TLS with Encrypted Client Hello blocked?) → `tamperscope run tcp_freeze` on a page that froze
(ru-like's 16 KiB freeze; a freeze cannot be located) → OONI's middlebox tests against the lab's echo backend
(`http_header_field_manipulation`, `http_invalid_request_line`: the middlebox profile's rewriting proxy) →
OONI's instant-messaging tests (`telegram`,
`whatsapp`, `facebook_messenger`, `signal`) → `tor`, `vanilla_tor` (tor itself bootstrapping against the lab's
own Tor network; when it does not, again through the network's obfs4 bridge), `riseupvpn` and `wireguard`, each
blocked one located
→ the URLs found blocked measured a second time (the probe's command again with `--recheck`: it resumes, and
measures only those; two alike confirm an anomaly) → lab down → a
summary by mechanism, checked against the lab's own ground truth, the equipment
seen, and the outside view against the inside one (the censor bracketed between
the routers each side sees last) → `tamperscope
analyze` re-deriving every verdict from the raw records into a store, checked
against the probe's, and `tamperscope report --html` (the analysis is the last
thing printed).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from .lab import addresses as A
from .lab import manager, tornet
from .lab.expect import expect_url
from .model.profile import Profile
from .model.services import APPS as MODEL_APPS
from .model.services import TOOLS, blocked


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="lab up, probe a bundled URL list, locate, lab down, summarise, analyse",
                       description="Bring the lab up with a censor profile, run web_connectivity over a bundled list "
                                   "of real-world URLs inside it, locate one URL per mechanism, measure the same "
                                   "domains from outside the country (tamperscope remote dns), try re-framed requests "
                                   "on one URL blocked over HTTP and one over TLS (tamperscope run evasion), read the "
                                   "censor's rule for one name it injects DNS answers for (tamperscope run "
                                   "blocking_rules), check whether TLS with Encrypted Client Hello is blocked "
                                   "(tamperscope run echcheck), confirm a page that froze after a few "
                                   "kilobytes (tamperscope run tcp_freeze, when one did), look for a proxy that "
                                   "rewrites HTTP (tamperscope run http_header_field_manipulation, "
                                   "http_invalid_request_line), measure the messaging "
                                   "apps as OONI does "
                                   "(tamperscope run telegram, whatsapp, facebook_messenger, signal), check whether "
                                   "Tor's directory authorities can be reached (tamperscope run tor) and tor "
                                   "bootstraps (tamperscope run vanilla_tor; when it does not, again through "
                                   "the lab's obfs4 bridge), RiseupVPN "
                                   "can be used (tamperscope run riseupvpn) and a WireGuard server answers "
                                   "(tamperscope run wireguard), measure the URLs found blocked a second time "
                                   "(tamperscope run web_connectivity --recheck: two alike confirm an anomaly), and "
                                   "take the lab down. "
                                   "Then print a per-mechanism summary checked against the lab's ground truth, the "
                                   "equipment seen, and the measurements analysed again from their raw records "
                                   "(tamperscope analyze, into a store of their own, and an HTML report; both in the "
                                   "demo's temporary directory). Needs root.")
    p.add_argument("--profile", default="tm-like", help="lab profile (default tm-like)")
    p.add_argument("--list", type=Path, default=None, help="URL list instead of the bundled one")
    p.add_argument("--output", type=Path, default=None, help="keep the measurements here (JSONL)")
    p.add_argument("--parallel", type=int, default=32, help="measurements in flight (default 32)")
    p.add_argument("--serve", action="store_true",
                   help="then submit the measurements (the web ones, the censor's rules, ECH, the apps' and the "
                        "tools', each with the hop "
                        "located for it) to a local collector (`tamperscope serve`, OONI's report protocol) and keep "
                        "its explorer running; prints the explorer's URL")
    p.add_argument("--port", type=int, default=8080, help="--serve: port on 127.0.0.1 (default 8080)")
    p.add_argument("--db", type=Path, default=None, help="--serve: the store to fill (default: a new one in the demo's "
                                                         "temporary directory)")
    p.add_argument("--serve-seconds", type=float, default=None, metavar="S",
                   help="--serve: stop after S seconds (default: until Ctrl-C)")
    p.set_defaults(func=run)


def bundled_list() -> str:
    return resources.files("tamperscope.data").joinpath("demo-urls.csv").read_text()


def run(args: argparse.Namespace) -> int:
    from .cli import UsageError

    if not 1 <= args.parallel <= 1024:
        raise UsageError("--parallel must be between 1 and 1024")
    if not 0 < args.port < 65536:
        raise UsageError("--port must be between 1 and 65535")
    if not args.serve and (args.db is not None or args.serve_seconds is not None):
        raise UsageError("--db and --serve-seconds go with --serve")
    if args.serve_seconds is not None and args.serve_seconds <= 0:
        raise UsageError("--serve-seconds must be more than 0")
    if args.serve:
        _port_is_free(args.port)
    urls = demo_urls(args.list)
    check_output(args.output, args.list)
    if args.db is not None:
        check_db(args.db)
    manager.require_root()
    profile = manager.resolve_profile(args.profile)
    work = Path(tempfile.mkdtemp(prefix="tamperscope-demo-"))
    lst = work / "urls.csv"
    write_list(lst, urls)
    categories = category_list(args.list, work)
    out = args.output or work / "measurements.jsonl"

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    say(f"demo: lab up with profile {profile.name}: {profile.description.splitlines()[0]}")
    t0 = time.monotonic()
    manager.up(args.profile)
    try:
        say(f"demo: probing {len(urls)} URLs with web_connectivity from the lab's client ({A.CLIENT})")
        probe = [sys.executable, "-m", "tamperscope", "run", "web_connectivity", "--list", str(lst), "--yes",
                 "--parallel", str(args.parallel), "--capture", "-o", str(out)]
        res = subprocess.run(manager.exec_argv(probe), env=manager.client_env())
        measurements, status = probe_results(res.returncode, Path(out), say)
        measurements, _ = first_and_again(measurements)
        if not measurements:
            return status or 1
        located = locate_examples(measurements, say)
        truth = [json.loads(line) for line in manager.PATHS.log.read_text().splitlines() if line.strip()]
        outside = outside_view(measurements, work, say)
        outside_truth = [json.loads(line) for line in manager.PATHS.log.read_text().splitlines()[len(truth):]
                         if line.strip()]
        located_outside = locate_from_outside(measurements, say)
        evaded = evasion_examples(measurements, located, work, say)
        ruled = rules_example(measurements, work, say)
        ech_name, ech = ech_example(profile, work, say)
        frozen = freeze_example(measurements, say, work)
        rewritten = middlebox_example(say, work)
        apps = apps_example(say, work)
        onion = tor_example(say, work)
        booted, bridged = vanilla_tor_example(say, work)
        vpn = riseupvpn_example(say, work)
        wg = wireguard_example(say, work)
        repeats, recheck_status, recheck_truth = recheck_blocked(measurements, probe, Path(out), say, profile)
        status = status or recheck_status
    finally:
        manager.down()
        say("demo: lab down")
    print(summary(measurements, profile, truth, time.monotonic() - t0, out))
    print(recheck_summary(measurements, repeats, profile, recheck_truth), flush=True)
    print(equipment(measurements, located), flush=True)
    print(outside_summary(outside, measurements, outside_truth), flush=True)
    print(bracket(located, located_outside), flush=True)
    print(evasion_summary(evaded), flush=True)
    print(rules_summary(ruled), flush=True)
    print(ech_summary(ech_name, ech, profile), flush=True)
    if frozen is not None:
        print(freeze_summary(frozen), flush=True)
    print(middlebox_summary(rewritten), flush=True)
    print(apps_summary(apps), flush=True)
    print(tor_summary(*onion), flush=True)
    print(vanilla_tor_summary(booted, bridged), flush=True)
    print(riseupvpn_summary(*vpn), flush=True)
    print(wireguard_summary(*wg), flush=True)
    placed = {name: m for name, (m, _) in (("tor", onion), ("riseupvpn", vpn), ("wireguard", wg)) if m is not None}
    analysed = analysis(measurements, Path(out), work, say, categories, located, placed, repeats)
    print(analysed, flush=True)
    if not analysed.startswith("\n  analysis:"):
        status = status or 1
    if args.serve:
        tools = [m for m, _ in (*apps, onion, booted, *((bridged,) if bridged else ()), vpn, wg, *rewritten,
                                *((frozen,) if frozen else ()))
                 if m is not None]  # the other nettests' measurements too
        # and the censor's rules and ECH, as the analysis had them: the explorer then shows what the demo's report does
        tools += [m for m in (ruled, ech) if m is not None]
        served = serve(with_hops(measurements + repeats + tools, located), args.db or work / "demo.duckdb", args.port,
                       args.serve_seconds, say, categories)
        return served or status
    return status


def category_list(path: Path | None, work: Path) -> Path | None:
    """The test list whose categories the demo's stores keep (`tamperscope analyze --test-list`): the bundled
    list, written out as ``demo-urls.csv``, or the user's ``--list`` when it is a Citizen Lab CSV with
    categories (None when it is not: a one-URL-per-line list says nothing of categories)."""
    from .analysis.categories import read_test_list
    from .model.inputs import BadInput

    if path is None:
        bundled = work / "demo-urls.csv"
        bundled.write_text(bundled_list())
        return bundled
    try:
        read_test_list(path)
    except BadInput:
        return None
    return path


def demo_urls(path: Path | None) -> list[str]:
    """The URLs the demo measures: the bundled list, or `path` read and checked as `tamperscope run
    web_connectivity --list` reads and checks it (`model.inputs`, then the nettest's own check). The probe
    inside the lab would refuse the same list in the same words, but only once the lab is up; a file that
    is missing, a directory, binary, or a CSV without its url column is refused here in one line, first."""
    from . import nettests
    from .cli import UsageError
    from .model.inputs import MAX_LIST, BadInput, read_bounded, read_url_list
    from .nettests.base import NettestError
    from .probe.engine import check_input

    source = str(path) if path is not None else "the bundled list"
    try:
        entries = read_url_list(read_bounded(path, MAX_LIST, "list") if path is not None else bundled_list(), source)
    except BadInput as e:
        raise UsageError(str(e)) from None
    nettest = nettests.load("web_connectivity")
    for n, entry in enumerate(entries, 1):
        try:
            check_input(nettest, entry.url)
        except NettestError as e:
            raise UsageError(f"{source}: entry {n}: {e}") from None
    return [entry.url for entry in entries]


def write_list(path: Path, urls: list[str]) -> None:
    """The list the probe reads in the lab: a test-list CSV, each URL quoted as CSV wants (a URL may hold a
    comma or a quote), so that the probe reads back exactly the URLs `demo_urls` checked."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["url", "category_code"])
        writer.writerows([u, "DEMO"] for u in urls)


def check_output(path: Path | None, url_list: Path | None) -> None:
    """Refuse an --output before the lab comes up that the probe would refuse inside it (a directory, a file
    holding anything but measurements, a directory that does not exist), or that the demo could not read its
    measurements back from (standard output, a pipe, a device). Nothing is written to it here."""
    from .cli import UsageError
    from .probe.engine import OutputError, scan_output

    if path is None:
        return
    if str(path) == "-":
        raise UsageError("--output must be a file: the demo reads the measurements back (- is standard output)")
    if url_list is not None and _same_file(url_list, path):
        raise UsageError(f"--output {path} is also the --list: refusing to append measurements to it")
    try:
        resume = scan_output(path, "web_connectivity")
    except OutputError as e:
        raise UsageError(str(e)) from None
    if not resume.regular:
        raise UsageError(f"--output {path} is not a regular file: the demo reads the measurements back from it")


def check_db(path: Path) -> None:
    """Refuse a --db that `serve` would refuse once the lab's measurements are made (a directory, another
    program's file, a store cut short or in use): opened and closed here, as `serve` will open it. A store
    that does not exist yet is not created: only its directory must be there."""
    from .analysis.store import Store, StoreError
    from .cli import UsageError

    if not path.exists():
        if not path.parent.is_dir():
            raise UsageError(f"--db {path}: no such directory {path.parent}")
        return
    try:
        Store(path, create=False, background=False).close()
    except StoreError as e:
        raise UsageError(str(e)) from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def probe_results(returncode: int, out: Path, say: Callable[[str], None]) -> tuple[list[dict[str, Any]], int]:
    """The measurements the probe wrote, and the demo's exit status. The probe exits 1 when some inputs could
    not be measured (it says which) and the others were written: the demo goes on with those, and ends with 1."""
    if returncode not in (0, 1):
        say(f"demo: the probe failed (exit {returncode})")
        return [], returncode
    measurements = []
    try:
        with out.open("rb") as f:
            for line in f:
                try:
                    m = json.loads(line)
                except ValueError:
                    continue  # a line the probe did not finish
                if isinstance(m, dict) and isinstance(m.get("test_keys"), dict) and isinstance(m.get("input"), str):
                    measurements.append(m)
    except OSError as exc:
        say(f"demo: cannot read the probe's measurements ({out}): {exc.strerror or exc}")
        return [], 1
    if returncode:
        say(f"demo: the probe could not measure every input (it said why above); the summary covers the "
            f"{len(measurements)} it measured" if measurements else "demo: the probe failed and measured nothing")
    return measurements, returncode


def first_and_again(measurements: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The measurements split in the order they were written: each input's first, and the later ones (the
    probe's --recheck of those found blocked)."""
    first: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []
    seen: set[str] = set()
    for m in measurements:
        (again if m["input"] in seen else first).append(m)
        seen.add(m["input"])
    return first, again


def recheck_blocked(measurements: list[dict[str, Any]], probe: list[str], out: Path, say: Callable[[str], None],
                    profile: Profile) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
    """The probe's command again, with --recheck, on the same output: it resumes, so it measures only the URLs
    found blocked or failing, a second time. The wait after a first measurement (--recheck-after) is twice the
    profile's residual blocking (tm-like: 30 s), at least 30 s, instead of the probe's default, which is made for
    censors the user does not know (the GFW's 90 s): the lab's profile says how long its censor holds an address.
    The second measurements, the demo's exit status for this step, and the ground-truth lines the censor logged
    meanwhile. Two alike make the analysis call an anomaly confirmed."""
    from .probe.engine import needs_recheck

    again = [m for m in measurements if needs_recheck(m)]
    if not again:
        return [], 0, []
    residual = profile.network.residual_s
    after = max(30.0, 2 * residual)
    say(f"demo: measuring again the {len(again)} URLs found blocked or failing (tamperscope run web_connectivity "
        f"--recheck --recheck-after {after:g}, on the same output: it resumes, so it measures those alone, a second "
        f"time, no sooner than {after:g} s after the first" + (f"; the censor holds an address {residual:g} s after "
                                                            "it acts" if residual else "") + ")")
    before = len(manager.PATHS.log.read_text().splitlines())
    res = subprocess.run(manager.exec_argv([*probe, "--recheck", "--recheck-after", f"{after:g}", "--no-progress"]),
                         env=manager.client_env(),
                         capture_output=True, text=True, timeout=900)
    truth = [json.loads(line) for line in manager.PATHS.log.read_text().splitlines()[before:] if line.strip()]
    if res.returncode:  # what went wrong, as the probe said it (the first run's stderr is the terminal's)
        for line in res.stderr.splitlines()[-20:]:
            say(line)
    said = [line for line in res.stderr.splitlines() if line.startswith("tamperscope: --recheck: of ")]
    if said:
        say("demo: " + said[-1].removeprefix("tamperscope: "))
    lines, status = probe_results(res.returncode, out, say)
    return first_and_again(lines)[1], status, truth


def recheck_summary(measurements: list[dict[str, Any]], repeats: list[dict[str, Any]], profile: Profile,
                    truth: list[dict[str, Any]]) -> str:
    """One line on the second measurements: how many came out as the first did, and as the lab's ground truth
    says they should."""
    first = {m["input"]: m["test_keys"].get("x_mechanism") or "none" for m in measurements}
    second = [(m["input"], m["test_keys"].get("x_mechanism") or "none") for m in repeats]
    if not second:
        return "  measured again (--recheck): nothing"
    same = sum(first.get(url) == mech for url, mech in second)
    agree = sum(expect_url(profile, url).mechanism == mech for url, mech in second)
    differ = [f"{url} ({first.get(url)}, then {mech})" for url, mech in second if first.get(url) != mech]
    return (f"  measured again (tamperscope run web_connectivity --recheck, later): {len(second)} URLs found blocked "
            "or failing, "
            f"the same mechanism for {same}/{len(second)}; agreement with the lab's ground truth: "
            f"{agree}/{len(second)}; censor actions logged: {len(truth)}"
            + (f"; different: {', '.join(differ[:5])}" if differ else ""))


def with_hops(measurements: list[dict[str, Any]], located: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The measurements, each located URL's carrying its hop as ``test_keys.x_hop`` (from `tamperscope locate`):
    the web measurements' by their input (``located``, by mechanism), a tool's (tor, riseupvpn, wireguard) from
    the ``located`` the demo attached to it, which is the demo's and is not submitted itself."""
    from .model.asn import AsnTable

    try:
        table = AsnTable.from_text(Path(manager.client_env()["TAMPERSCOPE_ASN_TABLE"]).read_text(), "lab")
    except (KeyError, OSError, ValueError):
        table = None
    by_url = {loc["url"]: loc for loc in located.values() if loc.get("hop")}
    out = []
    for m in measurements:
        own = m.get("located")
        loc = by_url.get(m.get("input")) or (own if isinstance(own, dict) and own.get("hop") else None)
        m = {k: v for k, v in m.items() if k != "located"}
        if loc is not None:
            info = table.lookup(loc["router"]) if table is not None and loc.get("router") else None
            how = f"tamperscope locate --layer {loc['layer']}" if loc.get("layer") else "tamperscope locate"
            m = {**m, "test_keys": {**m["test_keys"], "x_hop": {
                "ttl": loc["hop"], "ip": loc.get("router"), "asn": f"AS{info.asn}" if info and info.asn else None,
                "name": info.name if info else None, "placement": loc.get("placement"),
                "signature": loc.get("signature"), "method": f"{how}: TTL-limited trigger packets"}}}
        out.append(m)
    return out


def serve(measurements: list[dict[str, Any]], db: Path, port: int, seconds: float | None,
          say: Callable[[str], None], categories: Path | None = None) -> int:
    """Start `tamperscope serve` on 127.0.0.1, submit the measurements through the probe's outbox
    (OONI's report protocol over loopback), print the explorer's URL, and serve until Ctrl-C."""
    import asyncio
    import socket

    from .probe.outbox import Outbox

    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "tamperscope", "serve", "--db", str(db), "--host", "127.0.0.1",
                               "--port", str(port), "--rate", "0", "--read-rate", "0", "--quiet",
                               *(["--test-list", str(categories)] if categories is not None else [])])
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                say(f"demo: the explorer could not start (port {port} taken? try --port)")
                return 1
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    say("demo: the explorer did not start within 60 s")
                    return 1
                time.sleep(0.1)
        with tempfile.TemporaryDirectory(prefix="tamperscope-demo-outbox-") as spool:  # empty once all is sent
            box = Outbox(Path(spool), durable=False)
            for m in measurements:
                box.add(m)
            result = asyncio.run(box.flush(url, timeout=120))
        if not result.done:
            say(f"demo: {result.remaining} measurements could not be submitted: {result.last_error}")
            return 1
        _wait_listed(url, result.sent + result.duplicates)
        web = [m for m in measurements if m.get("test_name") == "web_connectivity"]  # a domain page to point at
        blocked = next((m for m in web if m["test_keys"].get("x_hop")), None) or \
            next((m for m in web if (m["test_keys"].get("x_mechanism") or "none") != "none"), None)
        print(f"\n  explorer: {url}/  ({result.sent} measurements submitted; store {db})")
        if blocked is not None:
            print(f"  e.g. the evidence for {blocked['input']}: {url}/domain/{_host(blocked['input'])}")
        print(f"  what was blocked, by technique and test: {url}/chart?axis_x=mechanism&axis_y=test_name")
        print(f"  to follow in a feed reader (Atom): {url}/feed.atom?outcome=anomaly")
        print("  Ctrl-C to stop." if seconds is None else f"  serving for {seconds:g} s.", flush=True)
        try:
            server.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            pass
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


def _port_is_free(port: int) -> None:
    """Refuse a taken port before the demo's minute of measuring, not after it."""
    import socket

    from .cli import UsageError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as the server will bind: connections of an earlier run in TIME_WAIT do not make the port taken
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise UsageError(f"port {port} on 127.0.0.1 is taken; choose another with --port") from None


def _wait_listed(url: str, n: int, seconds: float = 60) -> None:
    """Until the explorer lists ``n`` measurements (its tables follow the acknowledgements by a moment)."""
    import urllib.request

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/measurements?limit=1", timeout=5) as r:
                if json.loads(r.read())["metadata"]["count"] >= n:
                    return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or ""


# Mechanisms `tamperscope locate` cannot place, and why (the demo says so instead of trying)
UNLOCATABLE = {
    "tcp.freeze": "the server's packets are dropped after a few KiB, and none of the client's, whatever its TTL",
    "throttle": "the flow is slowed, and nothing answers a trigger sent with a short TTL",
    "dns.poison": "the resolver itself answers with the lie; nothing on the path forges it",
}
# The layer `tamperscope locate` triggers at, for a mechanism whose trigger is not the URL's TCP connection
LOCATE_OPTIONS = {"quic.drop": ("--layer", "quic")}


def locate_examples(measurements: list[dict[str, Any]], say: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """One `tamperscope locate` per mechanism seen (the first example URL), inside the lab."""
    seen: dict[str, str] = {}
    for m in measurements:
        mech = m["test_keys"].get("x_mechanism") or "none"
        if mech != "none" and mech not in seen and mech not in UNLOCATABLE:
            seen[mech] = m["input"]
    out: dict[str, dict[str, Any]] = {}
    for mech, url in seen.items():
        options = LOCATE_OPTIONS.get(mech, ())
        say(f"demo: locating {mech} with {url}" + (f" ({' '.join(options)})" if options else ""))
        res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "locate", url, *options, "--yes",
                                                "--json", "--wait", "0.3", "--spread", *A.FARM[:3]]),
                             env=manager.client_env(),
                             capture_output=True, text=True, timeout=300)
        if res.returncode == 0:
            out[mech] = {"url": url, **json.loads(res.stdout)}
    return out


def outside_view(measurements: list[dict[str, Any]], work: Path, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """`tamperscope remote dns` from the lab's outside vantage, through the ISP's resolver, for every domain the
    probe measured: Censored Planet's view of the same censor, with nobody inside running anything."""
    domains = sorted({h for h in (_host(m["input"]) for m in measurements) if h})
    names, out = work / "domains.txt", work / "remote-dns.jsonl"
    names.write_text("".join(f"{d}\n" for d in domains))
    say(f"demo: measuring the {len(domains)} domains from outside the country (tamperscope remote dns, from "
        f"{A.OUTSIDE} through the ISP resolver {A.ISP_RESOLVER})")
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "remote", "dns", "--vantage",
                                            A.ISP_RESOLVER, "--list", str(names), "--yes", "--no-progress",
                                            "--per-vantage", "8",  # the lab's own resolver: no one else's to spare
                                            "-o", str(out)], A.NS_OUTSIDE), env=manager.client_env(),
                         capture_output=True, text=True, timeout=600)
    if res.returncode != 0 or not out.exists():
        say(f"demo: remote dns failed: {(res.stderr.strip().splitlines() or ['no output'])[-1]}")
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def locate_from_outside(measurements: list[dict[str, Any]], say: Callable[[str], None]) -> dict[str, Any] | None:
    """CenTrace's own setting: `tamperscope locate --server` from the outside vantage towards the ISP's web server,
    with the first URL the probe found reset over HTTP."""
    url = next((m["input"] for m in measurements if m["test_keys"].get("x_mechanism") == "http.rst"), None)
    if url is None:
        return None
    say(f"demo: locating http.rst from outside, with {url} sent to the ISP's web server {A.ISP_WEB}")
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "locate", url, "--server",
                                            A.ISP_WEB, "--yes", "--json", "--runs", "1", "--wait", "0.3"],
                                           A.NS_OUTSIDE), env=manager.client_env(), capture_output=True,
                         text=True, timeout=300)
    return {"url": url, **json.loads(res.stdout)} if res.returncode == 0 else None


EVASION_STRATEGIES = "http-segments,tls-records"  # one of each kind: each blocked try costs the censor's hold


def evasion_examples(measurements: list[dict[str, Any]], located: dict[str, dict[str, Any]], work: Path,
                     say: Callable[[str], None]) -> list[dict[str, Any]]:
    """`tamperscope run evasion` on the first URL blocked over HTTP and the first reset over TLS that `locate`
    did not use (its probes left the censor holding those sites), both at once."""
    busy = {loc.get("url") for loc in located.values()}
    urls = []
    for mechanisms in (("http.rst", "http.blockpage"), ("tls.rst",)):
        url = next((m["input"] for m in measurements if m["test_keys"].get("x_mechanism") in mechanisms
                    and m["input"] not in busy), None)
        if url is not None:
            urls.append(url)
    if not urls:
        return []
    out = work / "evasion.jsonl"
    say(f"demo: trying to get past the censor with re-framed requests ({EVASION_STRATEGIES}): {', '.join(urls)}")
    args = [sys.executable, "-m", "tamperscope", "run", "evasion", "--yes", "--no-progress", "--strategies",
            EVASION_STRATEGIES, "--timeout", "150", "-o", str(out)]
    for url in urls:
        args += ["-i", url]
    res = subprocess.run(manager.exec_argv(args), env=manager.client_env(), capture_output=True, text=True,
                         timeout=600)
    if res.returncode != 0 or not out.exists():
        say(f"demo: evasion failed: {(res.stderr.strip().splitlines() or ['no output'])[-1]}")
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def evasion_summary(results: list[dict[str, Any]]) -> str:
    """What each re-framed request did, and what that says about the censor's DPI."""
    if not results:
        return "\n  evasion: not tried (no URL blocked over HTTP or TLS)"
    lines = ["", "  evasion (tamperscope run evasion: the same request re-framed, to the same address):"]
    for m in results:
        tk = m["test_keys"]
        x = tk.get("x_evasion") or {}
        tried = ", ".join(f"{a['strategy']} {a['outcome']}" for a in x.get("attempts", []))
        waits = x.get("residual_waits") or []
        lines.append(f"  {m['input']:34} {tk.get('x_mechanism')}: {tried}"
                     + (f" (waited {', '.join(f'{w:g}' for w in waits)} s for the censor's residual hold)"
                        if waits else ""))
        for said in (tk.get("x_equipment") or {}).get("evaded_by", []):
            lines.append(f"  {'':34} the box {said.split(': ', 1)[1]}")
        for said in (tk.get("x_equipment") or {}).get("coped_with", []):
            lines.append(f"  {'':34} the box {said.split(': ', 1)[1]}")
    return "\n".join(lines)


def rules_example(measurements: list[dict[str, Any]], work: Path, say: Callable[[str], None]) -> dict[str, Any] | None:
    """`tamperscope run blocking_rules` on the host of the first URL whose DNS answer was injected: DNS holds
    no residual blocking, so it takes seconds, where a TLS or HTTP rule costs the censor's hold per caught
    name."""
    from urllib.parse import urlsplit

    url = next((m["input"] for m in measurements if m["test_keys"].get("x_mechanism") == "dns.injection"), None)
    host = urlsplit(url).hostname if url else None
    if not host:
        return None
    out = work / "rules.jsonl"
    say(f"demo: reading the censor's DNS rule for {host} (names made from it: its subdomains, prefixed, suffixed)")
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "run", "blocking_rules", "--yes",
                                            "--no-progress", "-i", host, "-o", str(out)]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=300)
    if res.returncode != 0 or not out.exists():
        say(f"demo: blocking_rules failed: {(res.stderr.strip().splitlines() or ['no output'])[-1]}")
        return None
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return lines[0] if lines else None


def rules_summary(m: dict[str, Any] | None) -> str:
    """What each layer's rule for the name matches."""
    if m is None:
        return "\n  blocking rules: not read (no DNS injection seen)"
    tk = m["test_keys"]
    lines = ["", f"  blocking rules (tamperscope run blocking_rules -i {m['input']}: names made from it, "
                 "shown to the censor):"]
    for layer, r in (tk.get("x_rules") or {}).items():
        lines.append(f"  {layer:8} {r.get('rule', '?'):22} {r.get('says', '')}")
    return "\n".join(lines)


# OONI's instant-messaging tests, as its "Instant Messaging" card runs them: (nettest, the app, its services'
# flags with their words), from the model's table
APPS = tuple((test, app, tuple((flag, words) for flag, _, words in services))
             for test, (app, services) in MODEL_APPS.items())


def apps_example(say: Callable[[str], None], work: Path) -> list[tuple[dict[str, Any] | None, list[dict[str, Any]]]]:
    """OONI's instant-messaging tests, one after another from the lab's client: each measurement (None when the
    run failed) with the ground-truth lines the censor logged while it ran."""
    say("demo: measuring the messaging apps as OONI does (tamperscope run telegram, whatsapp, facebook_messenger, "
        "signal, one by one: what `tamperscope run im` runs)")
    return [run_once(name, say, work) for name, _, _ in APPS]


def run_once(name: str, say: Callable[[str], None], work: Path, *inputs: str, options: tuple[str, ...] = (),
             output: str | None = None) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """`tamperscope run NAME` (with ``inputs``, if any, and ``options``) in the lab's client, into ``work/OUTPUT``
    (NAME.jsonl by default): its first measurement (None when the run failed), with the ground-truth lines the
    censor logged while it ran."""
    out = work / (output or f"{name}.jsonl")
    before = len(manager.PATHS.log.read_text().splitlines())
    given = [arg for i in inputs for arg in ("-i", i)]
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "run", name, *given, *options,
                                            "--yes", "--no-progress", "-o", str(out)]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=300)
    truth = [json.loads(line) for line in manager.PATHS.log.read_text().splitlines()[before:] if line.strip()]
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []
    if res.returncode != 0 or not lines:
        say(f"demo: {name} failed: {(res.stderr.strip().splitlines() or ['no output'])[-1]}")
    return lines[0] if res.returncode == 0 and lines else None, truth


def freeze_example(measurements: list[dict[str, Any]], say: Callable[[str], None],
                   work: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]] | None:
    """When web_connectivity found a page frozen (``tcp.freeze``): `tamperscope run tcp_freeze` on it (one
    connection asked for 64 KiB, then the same bytes over several), with what the censor did meanwhile; None when
    no page froze."""
    url = next((m["input"] for m in measurements if m["test_keys"].get("x_mechanism") == "tcp.freeze"), None)
    if url is None:
        return None
    say(f"demo: checking that {url} froze by the connection, and getting past it (tamperscope run tcp_freeze)")
    return run_once("tcp_freeze", say, work, url)


def freeze_summary(result: tuple[dict[str, Any] | None, list[dict[str, Any]]] | None) -> str:
    """tcp_freeze's two steps and its verdict in a few lines, against the censor's freezes while it ran."""
    if result is None:
        return ""
    m, truth = result
    frozen = [t for t in truth if t.get("action") == "freeze"]
    head = ("  the freeze (tamperscope run tcp_freeze: one connection asked for 64 KiB, then the same bytes over "
            "several):")
    if m is None:
        return f"\n{head}\n    not measured; {censor_did(truth)}"
    tk = m["test_keys"]
    x = tk.get("x_freeze") or {}
    single, split = x.get("single") or {}, x.get("split") or {}
    mech, conf, status = tk.get("x_mechanism") or "none", tk.get("x_confidence"), tk.get("x_status")
    if single.get("frozen"):
        silence = single.get("silence_s")
        said = (f"one connection carried {single.get('received', 0):,} bytes (TLS included), then nothing"
                + (f" for {silence:.1f} s" if isinstance(silence, (int, float)) else ""))
        if split:
            whole = split.get("failure") is None and split.get("completed") == split.get("connections")
            said += (f";\n    over {split.get('connections')} new connections "
                     f"({'the same request again' if split.get('mode') == 'repeat' else '4 KiB ranges'}), "
                     + ("every one came whole: the limit is per connection, and splitting gets past it" if whole
                        else f"{split.get('completed')} came whole, then {split.get('failure')}"))
    else:
        said = f"it did not freeze ({single.get('failure') or 'the connection carried 64 KiB'})"
    kb = sorted({k for t in frozen if isinstance(k := t.get("after_kb"), int)})
    did = (f"the censor's rule {frozen[0].get('rule')} froze {len(frozen)} connection{'s' * (len(frozen) != 1)}"
           f" after {'/'.join(map(str, kb))} KiB") if frozen else censor_did(truth)
    ok = status != "failure" and (mech == "tcp.freeze") == bool(frozen)
    control = ((tk.get("control") or {}).get("http_request") or {})
    outside = (f"\n    from outside, the control helper fetched the page ({control.get('body_length'):,} bytes)"
               if control.get("failure") is None and isinstance(control.get("body_length"), int)
               and control.get("body_length", -1) >= 0 else "")
    return (f"\n{head}\n    {m['input']}: {said}\n    {mech} ({conf}); {did}: {'agrees' if ok else 'DISAGREES'} "
            f"with the lab's ground truth{outside}")


MIDDLEBOX_TESTS = (("http_header_field_manipulation", "headers"), ("http_invalid_request_line", "request lines"))


def middlebox_example(say: Callable[[str], None],
                      work: Path) -> list[tuple[dict[str, Any] | None, list[dict[str, Any]]]]:
    """OONI's two middlebox tests against the lab's echo backend: does something on the path rewrite HTTP (a
    transparent proxy), with what the censor did meanwhile."""
    say(f"demo: looking for a proxy that rewrites HTTP (tamperscope run http_header_field_manipulation, "
        f"http_invalid_request_line; the echo backend {A.ECHO} sends back what reached it)")
    return [run_once(name, say, work) for name, _ in MIDDLEBOX_TESTS]


def _printable(value: object, limit: int = 40) -> str:
    """A value a server sent back, safe for a terminal: printable ASCII only, cut at ``limit``."""
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in str(value))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def middlebox_summary(results: list[tuple[dict[str, Any] | None, list[dict[str, Any]]]]) -> str:
    """What each middlebox test found, against the proxy's relaying in the ground truth (here the proxy is what is
    looked for: a rewriting proxy does not block, it tampers)."""
    lines = ["", "  rewriting proxies (OONI's http_header_field_manipulation and http_invalid_request_line, "
                 "against an echo backend):"]
    for (name, what), (m, truth) in zip(MIDDLEBOX_TESTS, results):
        relayed = len(truth) - len(blocking(truth))
        did = (f"the censor's transparent proxy relayed it ({relayed} time{'s' * (relayed != 1)})" if relayed
               else "no proxy relayed it")
        if m is None:
            lines.append(f"    {what:14} not measured; {did}")
            continue
        tk = m["test_keys"]
        status = tk.get("x_status")
        tampering = tk.get("tampering")
        how = []
        if isinstance(tampering, dict):
            added = tampering.get("header_name_diff")
            if isinstance(added, list) and added:
                how.append("headers added or removed: " + ", ".join(_printable(h) for h in added[:6]))
            if tampering.get("header_name_capitalization") is True:
                how.append("header names re-cased")
            if tampering.get("request_line_capitalization") is True:
                how.append("request line re-cased")
        said = ("tampered with (middlebox)" + (f": {'; '.join(how)}" if how else "") if status == "anomaly" else
                "came back as sent" if status == "ok" else "no verdict")
        ok = status != "failure" and (status == "anomaly") == bool(relayed)
        lines.append(f"    {what:14} {said}; {did}: {'agrees' if ok else 'DISAGREES'} with the lab's ground truth")
    return "\n".join(lines)


def tor_example(say: Callable[[str], None], work: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """`tamperscope run tor`, and where the first directory authority's OR port that failed is blocked
    (`tamperscope locate`: by silence on the path, or with the SYN itself), kept as the measurement's
    ``located``."""
    say(f"demo: checking whether Tor's directory authorities can be reached (tamperscope run tor; "
        f"{A.TOR_DIRAUTHS[0][1]}-{A.TOR_DIRAUTHS[-1][1].rsplit('.', 1)[1]} stand in for them)")
    m, truth = run_once("tor", say, work)
    failed = [t["target_address"] for t in (m or {}).get("test_keys", {}).get("targets", {}).values()
              if t.get("target_protocol") == "or_port_dirauth" and t.get("failure")]
    if m is not None and failed:
        url = f"https://{failed[0]}/"
        say(f"demo: locating where Tor's OR ports are blocked (tamperscope locate {url})")
        m = with_located(m, url)
    return m, truth


def with_located(m: dict[str, Any], url: str, *options: str) -> dict[str, Any]:
    """``m`` with `tamperscope locate URL OPTIONS --json`'s result as its ``located`` (unchanged if locate failed)."""
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "locate", url, *options, "--yes",
                                            "--json", "--wait", "0.3"]), env=manager.client_env(),
                         capture_output=True, text=True, timeout=300)
    return {**m, "located": {"url": url, **json.loads(res.stdout)}} if res.returncode == 0 else m


def riseupvpn_example(say: Callable[[str], None], work: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """`tamperscope run riseupvpn`, and, when an OpenVPN gateway connected and its first exchange failed, where
    OpenVPN is blocked (`tamperscope locate --layer openvpn`), kept as the measurement's ``located``. The trigger goes
    to another port of the gateway when it has one (its obfs4 port): the censor may hold the port just measured for
    a while (residual blocking), and DPI that knows OpenVPN knows it at any port."""
    say(f"demo: checking whether RiseupVPN can be used (tamperscope run riseupvpn; the farm stands in for its API, "
        f"and {A.RISEUP_GATEWAY} for its gateway)")
    m, truth = run_once("riseupvpn", say, work)
    gateways = (m or {}).get("test_keys", {}).get("x_gateways") or []
    cut = [g for g in gateways if g.get("transport_type") == "openvpn" and g.get("protocol") != "udp"
           and g.get("failure") and (g.get("summary") or {}).get("connect", {}).get("failure") is None]
    if m is not None and cut:
        other = next((g for g in gateways if g.get("ip") == cut[0]["ip"] and g.get("port") != cut[0]["port"]), cut[0])
        url = f"https://{other['ip']}:{other['port']}/"
        say(f"demo: locating where OpenVPN is blocked (tamperscope locate {url} --layer openvpn)")
        m = with_located(m, url, "--layer", "openvpn")
    return m, truth


def located_line(loc: dict[str, Any] | None, how: str = "") -> str:
    """A ``located`` result (`tamperscope locate --json`) in one line of the summary."""
    if not loc:
        return ""
    scope = {"address": "every packet to the address", "port": "this port only",
             "protocol": "this protocol only"}.get(str(loc.get("scope")), str(loc.get("scope")))
    said = f"tamperscope locate {loc['url']}{how}"
    return (f"\n    located ({said}, layer {loc.get('layer')}): hop {loc['hop']}, after router {loc.get('router')} "
            f"({loc.get('placement')}, {scope})" if loc.get("hop") else f"\n    located ({said}): no hop found")


RELAYING = {"proxy"}  # ground-truth actions that pass the traffic on: a transparent proxy re-sends what it reads


def blocking(truth: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ground-truth lines of actions that block or tamper (not the transparent proxy's relaying)."""
    return [t for t in truth if t.get("action") not in RELAYING]


def censor_did(truth: list[dict[str, Any]]) -> str:
    """What the lab's censor did while a nettest ran, from its ground-truth lines, in words."""
    acts = blocking(truth)
    relayed = len(truth) - len(acts)
    proxy = f"its transparent proxy relayed it ({relayed} time{'s' * (relayed != 1)})" if relayed else ""
    acted = sorted({str(t.get("rule")) for t in acts})
    if not acted:
        return f"the censor did nothing to it but pass it on: {proxy}" if proxy else "the censor did nothing to it"
    rules = f"rule {acted[0]}" if len(acted) == 1 else f"rules {', '.join(acted[:-1])} and {acted[-1]}"
    return f"the censor's {rules} acted on it ({len(acts)} time{'s' * (len(acts) != 1)})" + \
        (f", and {proxy}" if proxy else "")


def tor_summary(m: dict[str, Any] | None, truth: list[dict[str, Any]]) -> str:
    """Tor's OR ports and directories reached, and the verdict, against what the lab's censor did meanwhile."""
    did = censor_did(truth)
    head = ("  Tor (OONI's tor test: its directory authorities' OR ports and directories, and a bridge, from the "
            "lab's client):")
    if m is None:
        return f"\n{head}\n    not measured; {did}"
    tk = m["test_keys"]
    status, mech = tk.get("x_status"), tk.get("x_mechanism") or "none"
    counts = (f"OR ports reached {tk.get('or_port_dirauth_accessible')}/{tk.get('or_port_dirauth_total')}, "
              f"directories serving a consensus {tk.get('dir_port_accessible')}/{tk.get('dir_port_total')}"
              + (f", obfs4 bridges {tk.get('obfs4_accessible')}/{tk['obfs4_total']}" if tk.get("obfs4_total") else ""))
    said = f"blocked ({mech})" if status == "anomaly" else "reachable" if status == "ok" else "no verdict"
    ok = status != "failure" and (status == "anomaly") == bool(blocking(truth))
    out = f"\n{head}\n    {counts}: {said}; {did}: {'agrees' if ok else 'DISAGREES'} with the lab's ground truth"
    return out + located_line(m.get("located"))


VANILLA_TOR_TIMEOUT = 20  # seconds for tor to bootstrap in the demo, once every directory of the lab's network
# serves all its relays (`await_tor_network`): tor then gets to 100% in 3-7 s unless it is blocked, through the
# bridge too. A blocked bootstrap costs the whole wait (tests/lab/test_vanilla_tor waits as long).
TOR_NETWORK_WAIT = 120  # seconds at most for that; a new network's relays took 30-65 s after lab up to serve them


def await_tor_network(say: Callable[[str], None]) -> None:
    """Wait until every directory of the lab's Tor network serves a consensus listing every relay, and their
    microdescriptors (`lab.tornet.consensus_relays` says why a client started before that stalls). Without a
    censor the demo read such a stall as blocked (with a short list and `--profile none` this step comes a few
    seconds after lab up)."""
    if tornet.consensus_relays(manager.PATHS.tornet) >= tornet.RELAY_COUNT:
        return
    say(f"demo: waiting until every directory of the lab's new Tor network serves its {tornet.RELAY_COUNT} relays "
        f"(at most {TOR_NETWORK_WAIT} s)")
    started = time.monotonic()
    if tornet.wait_for_consensus(manager.PATHS.tornet, TOR_NETWORK_WAIT):
        say(f"demo: the Tor network serves them all after {time.monotonic() - started:.0f} s")
    else:
        say(f"demo: after {TOR_NETWORK_WAIT} s the Tor network's directories serve "
            f"{tornet.consensus_relays(manager.PATHS.tornet)} of its {tornet.RELAY_COUNT} relays; measuring anyway")


Run = tuple[dict[str, Any] | None, list[dict[str, Any]]]


def vanilla_tor_example(say: Callable[[str], None], work: Path) -> tuple[Run, Run | None]:
    """`tamperscope run vanilla_tor` against the lab's own Tor network, and, when that did not bootstrap, again
    through the network's obfs4 bridge (``--tor-bridges``): whether a bridge gets past what blocks Tor."""
    await_tor_network(say)
    say(f"demo: checking whether tor itself bootstraps (tamperscope run vanilla_tor; the lab's own Tor network, "
        f"{A.TOR_NETWORK[0][1]}-{A.TOR_NETWORK[-1][1].rsplit('.', 1)[1]}; at most {VANILLA_TOR_TIMEOUT} s)")
    plain = run_once("vanilla_tor", say, work, options=("--timeout", str(VANILLA_TOR_TIMEOUT)))
    if plain[0] is None or plain[0]["test_keys"].get("success") is not False or not manager.PATHS.tor_bridges.is_file():
        return plain, None
    say(f"demo: trying again through the lab's obfs4 bridge (tamperscope run vanilla_tor --tor-bridges "
        f"{manager.PATHS.tor_bridges})")
    return plain, run_once("vanilla_tor", say, work, output="vanilla_tor-bridge.jsonl",
                           options=("--timeout", str(VANILLA_TOR_TIMEOUT), "--tor-bridges",
                                    str(manager.PATHS.tor_bridges)))


def _booted(tk: dict[str, Any]) -> str:
    return (f"bootstrapped in {tk.get('bootstrap_time')} s" if tk.get("success") is True else
            f"stopped at {tk.get('tor_progress')}% ({tk.get('tor_progress_tag')}: {tk.get('tor_progress_summary')})")


def vanilla_tor_summary(plain: Run, bridged: Run | None = None) -> str:
    """How far tor's bootstrap got, and the verdict, against what the lab's censor did meanwhile; then, if it was
    tried, how far it got through the bridge."""
    m, truth = plain
    did = censor_did(truth)
    head = "  Tor's bootstrap (OONI's vanilla_tor test: Debian's tor against the lab's own Tor network):"
    if m is None:
        return f"\n{head}\n    not measured; {did}"
    tk = m["test_keys"]
    status, mech = tk.get("x_status"), tk.get("x_mechanism") or "none"
    said = f"blocked ({mech})" if status == "anomaly" else "reachable" if status == "ok" else "no verdict"
    ok = status != "failure" and (status == "anomaly") == bool(blocking(truth))
    out = f"\n{head}\n    {_booted(tk)}: {said}; {did}: {'agrees' if ok else 'DISAGREES'} with the lab's ground truth"
    if bridged is not None:
        b, bruth = bridged
        if b is None:
            out += f"\n    through the lab's obfs4 bridge: not measured; {censor_did(bruth)}"
        else:
            works = b["test_keys"].get("success") is True
            out += (f"\n    through the lab's obfs4 bridge: {_booted(b['test_keys'])}: "
                    + ("Tor works from here through a bridge the censor does not know" if works else
                       "the bridge does not get past it either") + f"; {censor_did(bruth)}")
    return out


def riseupvpn_summary(m: dict[str, Any] | None, truth: list[dict[str, Any]]) -> str:
    """RiseupVPN's API and its gateways' transports, and the verdict, against what the lab's censor did meanwhile."""
    did = censor_did(truth)
    head = "  RiseupVPN (OONI's riseupvpn test: its API, then its gateways by OpenVPN's and obfs4's first exchange):"
    if m is None:
        return f"\n{head}\n    not measured; {did}"
    tk = m["test_keys"]
    status, mech = tk.get("x_status"), tk.get("x_mechanism") or "none"
    gateways = tk.get("x_gateways") or []
    parts = [f"API {tk.get('api_status')}"]
    for transport in ("openvpn", "obfs4"):
        tried = [g for g in gateways if g.get("transport_type") == transport and g.get("protocol") != "udp"]
        if tried:
            reached = sum(1 for g in tried if g.get("failure") is None)
            connected = sum(1 for g in tried if (g.get("summary") or {}).get("connect", {}).get("failure") is None)
            parts.append(f"{'OpenVPN' if transport == 'openvpn' else 'obfs4'} gateways {reached}/{len(tried)}"
                         + (f" (connected {connected}/{len(tried)})" if connected != reached else ""))
        udp = [g for g in gateways if g.get("transport_type") == transport and g.get("protocol") == "udp"]
        if udp:
            parts.append(f"OpenVPN over UDP {sum(1 for g in udp if g.get('failure') is None)}/{len(udp)}")
    said = f"blocked ({mech})" if status == "anomaly" else "usable" if status == "ok" else "no verdict"
    ok = status != "failure" and (status == "anomaly") == bool(blocking(truth))
    splits = [g["split"] for g in gateways if isinstance(g.get("split"), dict)]
    split = ""
    if splits:
        got = sum(1 for x in splits if x.get("connect") is None and x.get("handshake") is None)
        held = sum(1 for x in splits if x.get("connect") is not None)
        split = (f"\n    OpenVPN's first packet split in two TCP segments: through at {got}/{len(splits)}"
                 + (": the DPI reads one segment at a time" if got else "")
                 + (f"; {held} could not connect again (the censor held the gateway after the reset)" if held else ""))
    return (f"\n{head}\n    {', '.join(parts)}: {said}; {did}: {'agrees' if ok else 'DISAGREES'} with the lab's "
            "ground truth" + split + located_line(m.get("located"), " --layer openvpn"))


def wireguard_example(say: Callable[[str], None], work: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """`tamperscope run wireguard` with the lab's configuration, and, when its plain handshake failed where the
    junk-first one got through (DPI), where (`tamperscope locate --layer wireguard`), kept as ``located``."""
    say(f"demo: checking whether a WireGuard server answers (tamperscope run wireguard; Debian's wireguard-go at "
        f"{A.WIREGUARD_SERVER}:{A.WIREGUARD_PORT}, the lab's configuration)")
    m, truth = run_once("wireguard", say, work)
    tk = (m or {}).get("test_keys", {})
    junk = tk.get("x_junk_first")
    if m is not None and tk.get("failure") and isinstance(junk, dict) and junk.get("failure") is None:
        url = f"https://{tk['x_address']}/"
        say(f"demo: locating where WireGuard is dropped (tamperscope locate {url} --layer wireguard)")
        m = with_located(m, url, "--layer", "wireguard")
    return m, truth


def wireguard_summary(m: dict[str, Any] | None, truth: list[dict[str, Any]]) -> str:
    """The WireGuard handshake, plain and from a flow begun by junk, and the verdict, against what the lab's censor
    did meanwhile."""
    did = censor_did(truth)
    head = "  WireGuard (its own handshake, then from a UDP flow begun by junk if that failed):"
    if m is None:
        return f"\n{head}\n    not measured; {did}"
    tk = m["test_keys"]
    status, mech = tk.get("x_status"), tk.get("x_mechanism") or "none"
    plain, junk = tk.get("x_handshake") or {}, tk.get("x_junk_first")
    parts = [f"handshake {'answered' if tk.get('failure') is None else tk.get('failure')}"
             + (f" ({plain.get('initiations')} initiations)" if tk.get("failure") else "")]
    if isinstance(junk, dict):
        parts.append("junk first: " + ("answered" if junk.get("failure") is None else str(junk.get("failure"))))
    said = f"blocked ({mech})" if status == "anomaly" else "reachable" if status == "ok" else "no verdict"
    if status == "anomaly" and isinstance(junk, dict) and junk.get("failure") is None:
        said += ": DPI judged the flow by its first datagram"
    ok = status != "failure" and (status == "anomaly") == bool(blocking(truth))
    return (f"\n{head}\n    {', '.join(parts)}: {said}; {did}: {'agrees' if ok else 'DISAGREES'} with the lab's "
            "ground truth" + located_line(m.get("located"), " --layer wireguard"))


def apps_summary(results: list[tuple[dict[str, Any] | None, list[dict[str, Any]]]]) -> str:
    """Per app: reachable or blocked (how, which of its services), against what the lab's censor did meanwhile."""
    lines = ["", "  messaging apps (OONI's instant-messaging tests, from the lab's client):"]
    agree = 0
    for (name, app, keys), (m, truth) in zip(APPS, results):
        did = censor_did(truth)
        if m is None:
            lines.append(f"    {app:19} not measured; {did}")
            continue
        tk = m["test_keys"]
        status, mech = tk.get("x_status"), tk.get("x_mechanism") or "none"
        hit = [what for key, what in keys if blocked(tk.get(key))]
        said = (f"blocked ({mech}): {'; '.join(hit)}" if status == "anomaly" else "reachable" if status == "ok"
                else "no verdict")
        ok = status != "failure" and (status == "anomaly") == bool(blocking(truth))
        agree += ok
        lines.append(f"    {app:19} {said}; {did}: {'agrees' if ok else 'DISAGREES'} with the lab's ground truth")
    if any(m is not None and m["test_keys"].get("x_mechanism") == "dns.poison" for m, _ in results):
        lines.append("    (dns.poison: the resolver's answer was a lie; these tests, as OONI's, ask no address "
                     "where no DNS server runs, so an injector on the path is not told from the resolver's own list)")
    lines.append(f"  apps agreeing with the lab's ground truth: {agree}/{len(APPS)}")
    return "\n".join(lines)


ECH_NAME = "cloudflare-ech.com"  # Cloudflare's public name for ECH: the outer SNI of every ECH hello to its sites
ECH_SITE = "crypto.cloudflare.com"  # a site on Cloudflare that publishes an ECH config (in the lab too)


def ech_rules(profile: object) -> list[Any]:
    """The profile's tls rules that read ECH (``ech = true``)."""
    return [r for r in getattr(profile, "rules", ()) if getattr(r, "ech", False)]


def ech_example(profile: object, work: Path, say: Callable[[str], None]) -> tuple[str, dict[str, Any] | None]:
    """`tamperscope run echcheck` on a site on Cloudflare, which publishes an ECH config whose outer name is
    Cloudflare's (or on the name an ECH rule of the profile names, when it is another): is TLS with Encrypted
    Client Hello blocked on this network?"""
    rules = ech_rules(profile)
    name = rules[0].domains[0] if rules and rules[0].domains and rules[0].domains[0] != ECH_NAME else ECH_SITE
    out = work / "echcheck.jsonl"
    say(f"demo: checking whether TLS with Encrypted Client Hello is blocked (echcheck -i {name})")
    res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "run", "echcheck", "--yes",
                                            "--no-progress", "-i", f"https://{name}/", "-o", str(out)]),
                         env=manager.client_env(), capture_output=True, text=True, timeout=300)
    if res.returncode != 0 or not out.exists():
        say(f"demo: echcheck failed: {(res.stderr.strip().splitlines() or ['no output'])[-1]}")
        return name, None
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    m = lines[0] if lines else None
    if m is not None and m["test_keys"].get("x_status") == "anomaly":
        say(f"demo: locating the ECH block for {name} (tamperscope locate --layer ech)")
        res = subprocess.run(manager.exec_argv([sys.executable, "-m", "tamperscope", "locate", f"https://{name}/",
                                                "--layer", "ech", "--yes", "--json", "--wait", "0.3",
                                                "--spread", *A.FARM[:3]]),
                             env=manager.client_env(), capture_output=True, text=True, timeout=300)
        if res.returncode == 0:
            m = {**m, "located": json.loads(res.stdout)}
    return name, m


def ech_summary(name: str, m: dict[str, Any] | None, profile: object) -> str:
    """What echcheck found, against what the profile's censor does to ECH."""
    rules = ech_rules(profile)
    if m is None:
        truth = (f"the censor's rule {rules[0].id} blocks ECH to {', '.join(rules[0].domains)} ({rules[0].action})"
                 if rules else "the censor has no rule against ECH")
        return f"\n  ECH (tamperscope run echcheck -i {name}): not measured; {truth}"
    tk = m["test_keys"]
    target = tk.get("target") or {}
    outer = target.get("outer_server_name") or name  # what the censor reads: the config's public name
    sealed = target.get("echconfig") not in (None, "GREASE") and outer != name
    hello = (f"the hello for {name}, sealed with its published ECH config inside one naming {outer},"
             if sealed else "the hello carrying Encrypted Client Hello")
    mech, status = tk.get("x_mechanism") or "none", tk.get("x_status")
    if status == "anomaly":
        plain = "a plain hello naming the site" if sealed else "the same hello without it"
        said = f"blocked ({mech}): {hello} failed ({target.get('failure')}) where {plain} went through"
    elif status == "ok":
        said = f"not blocked: {hello} got the server's ServerHello"
    else:
        said = "no verdict: the plain handshake failed too"
    firing = [r for r in rules if r.matches_name(outer)]
    truth = (f"the censor's rule {firing[0].id} blocks ECH to {outer} ({firing[0].action})" if firing
             else f"the censor has no rule against ECH to {outer}" if rules else "the censor has no rule against ECH")
    agree = (status == "anomaly") == bool(firing) and status != "failure"
    loc = m.get("located") or {}
    where = (f"\n  located (tamperscope locate --layer ech): hop {loc['hop']}, after router {loc.get('router')} "
             f"({loc.get('placement')}, scope {loc.get('scope')})" if loc.get("hop") is not None else
             "\n  located (tamperscope locate --layer ech): no hop found" if loc else "")
    return (f"\n  ECH (tamperscope run echcheck -i {name}): {said};\n  {truth}: "
            f"{'agrees' if agree else 'DISAGREES'} with the lab's ground truth{where}")


def bracket(inside: dict[str, dict[str, Any]], outside: dict[str, Any] | None) -> str:
    """The same censor located from both sides: between the routers each side sees last before it."""
    mine = inside.get("http.rst")
    if outside is not None and outside.get("hop") is None:
        return (f"\n  located from outside (tamperscope locate --server {A.ISP_WEB}, CenTrace's setting): nothing "
                f"located ({outside.get('reason')}): the censor did not act on a request from outside")
    if outside is None or mine is None or mine.get("hop") is None:
        return "\n  located from outside: not done (no http.rst, or no run completed)"
    return (f"\n  located from outside (tamperscope locate --server {A.ISP_WEB}, CenTrace's setting): "
            f"hop {outside['hop']}, after router {outside.get('router')} ({outside.get('placement')});\n"
            f"  from inside: hop {mine['hop']}, after router {mine.get('router')}: the censor sits between "
            f"{mine.get('router')} and {outside.get('router')}")


def outside_summary(remote: list[dict[str, Any]], measurements: list[dict[str, Any]],
                    truth: list[dict[str, Any]]) -> str:
    """The outside view against the inside one: which DNS tampering both sides see."""
    if not remote:
        return "\n  from outside: not measured (see above)"
    seen_outside = {m["input"]: m["test_keys"].get("x_mechanism") or "none" for m in remote}
    named_inside = {_host(m["input"]): str(m["test_keys"].get("x_mechanism", "")) for m in measurements
                    if str(m["test_keys"].get("x_mechanism", "")).startswith("dns.")}
    inside = set(named_inside)
    outside = {d for d, mech in seen_outside.items() if mech.startswith("dns.")}
    # the two sides may name what they saw differently (an injection the probe sees race its resolver's answer
    # is, through the ISP's resolver that took the forged answer, a poisoned one): said, not hidden in the count
    both = sorted(inside & outside)
    names_in = Counter(named_inside[d] for d in both)
    names_out = Counter(seen_outside[d] for d in both)
    named = ("" if names_in == names_out else
             f" (named {', '.join(f'{k} {v}' for k, v in sorted(names_in.items()))} inside, "
             f"{', '.join(f'{k} {v}' for k, v in sorted(names_out.items()))} outside)")
    failed = sum(m["test_keys"].get("x_status") == "failure" for m in remote)
    mechs = Counter(mech for mech in seen_outside.values() if mech != "none")
    dns_actions = [e for e in truth if e.get("layer") == "dns"]
    lines = ["", f"  from outside (tamperscope remote dns through the ISP resolver {A.ISP_RESOLVER}, "
                 f"as Censored Planet measures): {len(remote)} domains",
             f"  DNS tampering seen from outside: {len(outside)} domains"
             + (f" ({', '.join(f'{k} {v}' for k, v in sorted(mechs.items()))})" if mechs else "")
             + f"; failures {failed}",
             f"  the inside probe's DNS findings seen again from outside: {len(inside & outside)}/{len(inside)}{named}"
             + (f"; seen only from outside: {', '.join(sorted(outside - inside)[:5])}" if outside - inside else ""),
             f"  censor DNS actions logged while measuring from outside: {len(dns_actions)}"]
    return "\n".join(lines)


def _fold_ip_ids(groups: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Keys alike but for an IP-ID seen once each are one box whose IP-ID varies (``ipid*``), as the report
    folds them (`aggregates.signatures`): QA, the demo's table gave the GFW's injector a row per URL. A key seen
    twice or more keeps its row: a fixed IP-ID is part of the signature."""
    singles: dict[str, list[str]] = {}
    for key, g in groups.items():
        if g["n"] == 1:
            singles.setdefault(re.sub(r"/ipid[0-9]+", "/ipid*", key), []).append(key)
    out = {k: g for k, g in groups.items() if not any(k in keys for keys in singles.values() if len(keys) > 1)}
    for base, keys in singles.items():
        if len(keys) > 1:
            folded = out.setdefault(base, {"n": 0, "mechs": Counter(), "sig": groups[keys[0]]["sig"]})
            for k in keys:
                folded["n"] += groups[k]["n"]
                folded["mechs"].update(groups[k]["mechs"])
    return out


def equipment(measurements: list[dict[str, Any]], located: dict[str, dict[str, Any]]) -> str:
    """Which equipment, where, doing what: signature groups and located hops."""
    groups: dict[str, dict[str, Any]] = {}
    for m in measurements:
        tk = m["test_keys"]
        sig = tk.get("x_signature")
        if not sig:
            continue
        g = groups.setdefault(sig["key"], {"n": 0, "mechs": Counter(), "sig": sig})
        g["n"] += 1
        g["mechs"][tk.get("x_mechanism")] += 1
    lines = ["", "  where and by what equipment (tamperscope locate, one URL per mechanism):",
             f"  {'mechanism':15} {'hop':>3}  {'after router':14} {'placement':10} signature"]
    for mech, loc in located.items():
        lines.append(f"  {mech:15} {str(loc.get('hop') or '-'):>3}  {str(loc.get('router') or '-'):14} "
                     f"{str(loc.get('placement') or '-'):10} {loc.get('signature')}")
    seen = {m["test_keys"].get("x_mechanism") for m in measurements}
    lines += [f"  {mech:15} not located: {why}" for mech, why in UNLOCATABLE.items() if mech in seen]
    groups = _fold_ip_ids(groups)
    lines += ["", "  equipment signatures in the measurements (forged packets, --capture):",
              f"  {'signature':44} {'URLs':>5}  mechanisms"]
    for key, g in sorted(groups.items(), key=lambda kv: -kv[1]["n"]):
        lines.append(f"  {key:44} {g['n']:5d}  {', '.join(f'{k} {v}' for k, v in g['mechs'].items())}")
    tls = [m["test_keys"].get("x_equipment") for m in measurements if m["test_keys"].get("x_equipment")]
    if tls:
        lines.append(f"  TLS interception by: {', '.join(sorted({str(e.get('name')) for e in tls}))}")
    return "\n".join(lines)


def _with_hop(path: Path, m: dict[str, Any] | None, work: Path) -> Path:
    """``path``, the file `run_once` wrote, or when its first measurement ``m`` was located (``m["located"]``), a
    copy whose first line carries the hop (`with_hops`), the other lines as they were."""
    if m is None or not (m.get("located") or {}).get("hop"):
        return path
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    copy = work / f"{path.stem}-located.jsonl"
    copy.write_text(json.dumps(with_hops([m], {})[0]) + "\n" + "".join(lines[1:]), encoding="utf-8")
    return copy


def analysis(measurements: list[dict[str, Any]], out: Path, work: Path, say: Callable[[str], None],
             categories: Path | None = None, located: dict[str, dict[str, Any]] | None = None,
             placed: dict[str, dict[str, Any]] | None = None, repeats: list[dict[str, Any]] | None = None) -> str:
    """`tamperscope analyze` over what the probe wrote, into a store of its own, and `tamperscope report --html`:
    the analysis pipeline re-derives each verdict from the raw records, and says whether it reaches the probe's.
    The URLs `tamperscope locate` placed carry their hop (``test_keys.x_hop``, `with_hops`: the measurements then go
    to the analysis from ``measurements-located.jsonl``), and so do the tools' measurements it placed (``placed``,
    by test name, each with its ``located``: from ``NAME-located.jsonl``), so the report says where on the path, as
    the explorer does. ``repeats``: the URLs found blocked measured a second time (--recheck), after
    ``measurements`` in the probe's file: two measurements alike confirm an anomaly."""
    db, verdicts, html = work / "analysis.duckdb", work / "verdicts.jsonl", work / "report.html"
    measurements = [*measurements, *(repeats or ())]  # in the file's order
    hopped = with_hops(measurements, located or {})
    if any("x_hop" in m["test_keys"] for m in hopped):
        out = work / "measurements-located.jsonl"
        with out.open("w", encoding="utf-8") as w:
            w.writelines(json.dumps(m) + "\n" for m in hopped)
    ruled = work / "rules.jsonl"  # rules_example's measurement, if it ran: the report shows its rules too
    ech, ech_verdicts = work / "echcheck.jsonl", work / "echcheck-verdicts.jsonl"  # ech_example's, likewise
    frozen, frozen_verdicts = work / "tcp_freeze.jsonl", work / "tcp_freeze-verdicts.jsonl"  # freeze_example's
    boxes = [path for name, _ in MIDDLEBOX_TESTS if (path := work / f"{name}.jsonl").is_file()]
    box_verdicts = work / "middlebox-verdicts.jsonl"
    apps = [_with_hop(path, (placed or {}).get(name), work)
            for name in (*(n for n, _, _ in APPS), "tor", "vanilla_tor", "vanilla_tor-bridge", "riseupvpn",
                         "wireguard")  # and the tools'
            if (path := work / f"{name}.jsonl").is_file()]
    app_verdicts = work / "apps-verdicts.jsonl"
    say("demo: re-deriving the verdicts with tamperscope analyze, and writing the HTML report")
    listed = ["--test-list", str(categories)] if categories is not None else []
    for argv in (["analyze", str(out), "--db", str(db), "--jsonl", str(verdicts), "--quiet", *listed],
                 *([["analyze", str(ruled), "--db", str(db), "--quiet"]] if ruled.is_file() else []),
                 *([["analyze", str(ech), "--db", str(db), "--jsonl", str(ech_verdicts), "--quiet"]]
                   if ech.is_file() else []),
                 *([["analyze", str(frozen), "--db", str(db), "--jsonl", str(frozen_verdicts), "--quiet"]]
                   if frozen.is_file() else []),
                 *([["analyze", *map(str, boxes), "--db", str(db), "--jsonl", str(box_verdicts), "--quiet"]]
                   if boxes else []),
                 *([["analyze", *map(str, apps), "--db", str(db), "--jsonl", str(app_verdicts), "--quiet"]]
                   if apps else []),
                 ["report", "--db", str(db), "--html", str(html)]):
        res = subprocess.run([sys.executable, "-m", "tamperscope", *argv], capture_output=True, text=True, timeout=600)
        if res.returncode:
            why = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
            return f"\n  tamperscope {argv[0]} failed: {why}"
    rows = []
    with verdicts.open("rb") as f:
        for line in f:
            rows.append(json.loads(line))
    # both files are in the probe's order, the analysis's without any record it refused: walk them together
    same, differ, i = 0, [], 0
    for row in rows:
        while i < len(measurements) and measurements[i]["input"] != row.get("input"):
            i += 1
        if i == len(measurements):
            break
        probe, mine = measurements[i]["test_keys"].get("x_mechanism") or "none", row.get("x_mechanism") or "none"
        if probe == mine:
            same += 1
        else:
            differ.append(f"{row['input']} (probe {probe}, analysis {mine})")
        i += 1
    # by URL: a URL measured twice (--recheck) is one anomaly, confirmed when its two measurements agree
    outcome: dict[str, str] = {}
    rank = {"confirmed": 3, "anomaly": 2, "failure": 1}
    for row in rows:
        label, url = str(row.get("x_confidence")), str(row.get("input"))
        if rank.get(label, 0) > rank.get(outcome.get(url, ""), 0):
            outcome[url] = label
    labels = Counter(outcome.values())
    lines = ["", "  analysis: tamperscope analyze, every verdict re-derived from the raw records",
             f"  {len(rows)} measurements" + (f" ({len(repeats)} of them second measurements)" if repeats else "")
             + f"; the probe's mechanism reached again for {same}/{len(measurements)}; "
             f"{labels['confirmed'] + labels['anomaly']} URLs with an anomaly ({labels['confirmed']} confirmed by a "
             f"blockpage fingerprint or a repeat), {labels['failure']} failures"]
    lines += [f"  differs: {d}" for d in differ[:5]]
    if ruled.is_file():
        from tamperscope.analysis import aggregates
        from tamperscope.analysis import store as st

        with st.Store(db, create=False) as store:
            found = aggregates.blocking_rules(store, blocked_only=False)
        lines.append("  blocking rules, judged again from the records: " + (", ".join(
            f"{r['domain']} {r['layer']} {r['rule']}" for r in found) or "none"))
    for label, path, key in (("ECH", ech_verdicts, "input"), ("the middlebox tests", box_verdicts, "test_name"),
                             ("the freeze", frozen_verdicts, "input")):
        if path.is_file():  # the --jsonl of that analyze run: one line per measurement, its verdict
            judged = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            lines.append(f"  {label}, judged again from the records: " + (", ".join(
                f"{r.get(key)} {r.get('x_mechanism') or 'none'}" for r in judged) or "none"))
    if apps and app_verdicts.is_file():
        names = {**{name: app for name, app, _ in APPS}, **TOOLS}
        judged = [json.loads(line) for line in app_verdicts.read_text().splitlines() if line.strip()]
        # by report: vanilla_tor runs twice (the second through a bridge), each run its own report
        probe_said = {m.get("report_id"): ((m.get("test_keys") or {}).get("x_mechanism") or "none",
                                           bool((m.get("test_keys") or {}).get("x_bridges")))
                      for path in apps for m in map(json.loads, path.read_text().splitlines()[:1])}

        def judged_line(r: dict[str, Any]) -> str:
            said, bridged = probe_said.get(r.get("report_id"), (None, False))
            mine = r.get("x_mechanism") or "none"
            name = names.get(str(r.get("test_name")), r.get("test_name"))
            return (f"{name}{' through a bridge' if bridged else ''} {mine}"
                    f"{'' if said == mine else f' (the probe said {said})'}")

        lines.append("  the messaging apps, Tor, RiseupVPN and WireGuard, judged again from the records: "
                     + (", ".join(map(judged_line, judged)) or "none"))
    if categories is not None:
        from tamperscope.analysis import store as st
        from tamperscope.analysis.report import categories_in_words

        with st.Store(db, create=False) as store:
            kinds = [c for c in categories_in_words(store, None) if c["blocked_domain_count"]]
        lines.append("  blocked sites by category (Citizen Lab's, from the list): " + (", ".join(
            f"{c['category']} {c['blocked_domain_count']}/{c['domain_count']}" for c in kinds[:6]) or "none")
            + (f", and {len(kinds) - 6} more (tamperscope report --db {db})" if len(kinds) > 6 else ""))
        # (QA: the line stopped at six with nothing to say there were more)
    from tamperscope.analysis import hops
    from tamperscope.analysis import store as st

    with st.Store(db, create=False) as store:
        where = hops.located(store)
    lines.append("  where on the path, from the records (the hops located): " + ("; ".join(
        f"{h['label']}{f', {p}' if (p := h['placement']) else ''}: {h['mechanisms']}" for h in where) or "none"))
    lines += [f"  store: {db}", f"  HTML report: {html}"]
    return "\n".join(lines)


def summary(measurements: list[dict[str, Any]], profile: Profile, truth: list[dict[str, Any]], seconds: float,
            out: Path) -> str:
    by_mech: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    agree = 0
    rules: dict[str, set[str]] = {}
    for m in measurements:
        tk = m["test_keys"]
        mech = tk.get("x_mechanism") or "none"
        by_mech[mech] += 1
        examples.setdefault(mech, [])
        if len(examples[mech]) < 3:
            examples[mech].append(m["input"])
        exp = expect_url(profile, m["input"])
        agree += exp.mechanism == mech
        if exp.rule:
            rules.setdefault(mech, set()).add(exp.rule)
    lines = ["", f"tamperscope demo — profile {getattr(profile, 'name', '?')}: {len(measurements)} URLs in {seconds:.1f} s",
             "", f"  {'mechanism':15} {'URLs':>5}  {'censor rule(s)':24} examples",
             f"  {'-' * 15} {'-' * 5}  {'-' * 24} {'-' * 40}"]
    for mech, n in sorted(by_mech.items(), key=lambda kv: (kv[0] == "none", -kv[1])):
        lines.append(f"  {mech:15} {n:5d}  {','.join(sorted(rules.get(mech, []))) or '-':24} {', '.join(examples[mech])}")
    blocked = sum(n for k, n in by_mech.items() if k != "none")
    lines += ["", f"  blocked or tampered: {blocked} of {len(measurements)};  "
                  f"agreement with the lab's ground truth: {agree}/{len(measurements)}",
              http3(measurements),
              f"  censor actions logged by the lab: {len(truth)};  measurements: {out}"]
    return "\n".join(lines)


def http3(measurements: list[dict[str, Any]]) -> str:
    """One line on HTTP/3: how many https URLs were tried over QUIC (their sites advertise it), and what came of it."""
    https = [m for m in measurements if str(m.get("input", "")).startswith("https://")]
    tried = [m for m in https if m["test_keys"].get("quic_handshakes")]
    own = [q for m in tried for q in m["test_keys"]["quic_handshakes"]
           if isinstance(q, dict) and "x_innocent_sni" not in (q.get("tags") or ())]
    done = sum(1 for q in own if q.get("failure") is None)
    dropped = sum(1 for m in https if m["test_keys"].get("x_mechanism") == "quic.drop")
    around = sum(1 for m in tried if str(m["test_keys"].get("x_mechanism")).startswith(("tls.", "tcp."))
                 and any(isinstance(q, dict) and q.get("failure") is None for q in m["test_keys"]["quic_handshakes"]))
    line = (f"  HTTP/3: tried over QUIC for {len(tried)} of {len(https)} https URLs (those whose sites advertise it); "
            f"handshakes {len(own)}, completed {done}; quic.drop {dropped}")
    if around:
        line += f"; QUIC got through for {around} whose TLS was blocked"
    return line
