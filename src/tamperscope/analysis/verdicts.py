"""Verdicts by test name: one function per nettest, so new nettests plug in.

`VERDICTS` maps an OONI ``test_name`` to a function ``(measurement, matcher) ->
Verdict`` (the model's `Verdict`, so every nettest speaks the same vocabulary of
mechanisms and statuses). ``web_connectivity`` re-derives everything from the raw
records with the probe's own verdict function, ignoring any stored
``blocking``/``accessible``; ``dnscheck`` uses the model's dnscheck verdict, and
``remote_dns``/``remote_web`` (remote measurement from outside) the model's remote verdicts; the
middlebox, throttling and interception nettests read the flags their test_keys
carry (OONI's ``tampering``, our ``x_throttle``, ``x_mitm``); OONI's instant-messaging
tests (``telegram``, ``whatsapp``, ``facebook_messenger``, ``signal``) and the legacy
``tcp_connect`` read their documented blocking flags and failure strings; the circumvention
tests (``tor``, ``vanilla_tor``, ``torsf``, ``psiphon``, ``riseupvpn``, ``stunreachability``)
and the legacy ``http_requests``, ``dns_consistency``, ``bridge_reachability``,
``meek_fronted_requests_test`` and ``http_host`` read theirs, deciding as OONI's fastpath does
where it scores them. A test name with no entry gets `generic_verdict`, which understands those
same flags and otherwise says "ok, nothing to judge".

To add a nettest: write ``def my_verdict(m, matcher) -> Verdict`` and
``register("my_nettest")(my_verdict)`` (or decorate it).

`Matcher` wraps the blockpage fingerprint database (`wire.fingerprints`) into
the callable the web_connectivity verdict wants, with a bounded memo: the same
response (body and headers) always gets the same answer, and blockpages,
error pages and redirects recur across thousands of measurements.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tamperscope.model.dnsverdict import dnscheck_verdict
from tamperscope.model.ech import echcheck_verdict
from tamperscope.model.evasion import attempts_from_records, evasion_verdict
from tamperscope.model.freezeverdict import tcp_freeze_verdict
from tamperscope.model.interception import interception
from tamperscope.model.portverdict import portfiltering_verdict
from tamperscope.model.remote import remote_dns_verdict, remote_web_verdict
from tamperscope.model.rules import rules_from_records, rules_verdict
from tamperscope.model.services import anomaly as _anomaly
from tamperscope.model.services import facebook_messenger_verdict, signal_verdict, telegram_verdict, whatsapp_verdict
from tamperscope.model.services import failed as _failure
from tamperscope.model.services import ok as _ok
from tamperscope.model.services import services as _services
from tamperscope.model.services import test_keys as _tk
from tamperscope.model.throttle import judge as judge_rounds
from tamperscope.model.verdict import BlockpageMatcher, Verdict, web_connectivity_verdict
from tamperscope.wire.fingerprints import LOCAL_ENV

VerdictFunction = Callable[[Mapping[str, Any], BlockpageMatcher | None], Verdict]

VERDICTS: dict[str, VerdictFunction] = {}

# Bumped whenever a verdict rule here or in the model changes meaning: rows
# carry it, so stale verdicts can be found and re-derived from the raw data.
# 2: telegram, whatsapp, facebook_messenger, signal, tcp_connect read their flags;
# 3: tor, vanilla_tor, torsf, psiphon, riseupvpn, stunreachability and the legacy http_requests,
#    dns_consistency, bridge_reachability, meek_fronted_requests_test, http_host get verdicts.
# 4: tls_mitm re-derived from its handshakes and the control's (our x_interception was not read: every one
#    of our tls_mitm measurements fell to the generic verdict); the middlebox tests are a failure when the
#    echo sent nothing back.
# 5: evasion (a new nettest) gets its verdict; it fell to the generic one before.
# 6: blocking_rules (a new nettest) gets its verdict.
# 7: blocking_rules: a lie of the resolver is dns.injection only when a query to a silent address was
#    answered too (the dns_path layer), else dns.poison; the dns_path layer is judged and kept. The
#    signature column holds our x_signature's key, not its whole JSON (one row per packet's destination).
# 8: echcheck (ours, a new nettest, and OONI's) gets its verdict from the control and target handshakes; it
#    fell to the generic one before. remote_web reads echo_tls (Quack's ClientHello) as TLS: tls.rst, tls.drop.
# 9: whatsapp: endpoints that failed to resolve (no connection failure beside them) name the DNS mechanism
#    of their lookups' failure, not tcp.drop.
# 10: facebook_messenger: DNS blocking names the mechanism of a failed lookup among the queries (dns.nxdomain,
#    dns.drop) rather than dns.poison for all. telegram's web client and whatsapp's three services: a failure
#    after a lookup of their names answered with a bogon (127.0.0.1, a private address) is dns.poison, not the
#    failure's own layer (a refused connection to 127.0.0.1 read as tls.rst); signal's backends likewise.
# 11: wireguard (ours, a new nettest) gets its verdict; stunreachability names a request never answered
#    udp.drop (a new mechanism) instead of none.
# 12: web_connectivity: a response that started and then went silent (not one byte for 2 s or more before the
#    timeout, after 4-64 KiB on its connection: network_events) is tcp.freeze (a new mechanism, Russia's
#    16-20 KB block), not throttle. tcp_freeze (ours, a new nettest) gets its verdict.
# 13: tcp_freeze reads its control (the helper's answer): a failure the helper got past is an anomaly at 0.7, one
#    it failed at too is a failure (down for everyone, not blocking); an unconfirmed freeze or a stall where the
#    helper fetched the page gains 0.15.
# 14: portfiltering (ours, a new nettest) gets its verdict: each port against the helper's connection to it.
# 15: portfiltering reads OONI's experimental one (ts-038: tcp_connect to its helper, no control): a port that
#    failed beside a connected one is suspect (0.6), where every such measurement was a failure.
# 16: an app's or a tool's test names no site: wireguard's input (one of its servers) no longer fills `domain`, so
#    the sites' lists and counts leave it out (it showed among "Most blocked sites"). The verdicts are unchanged.
# 17: the verdicts say how a circumvention tool got through (``transport``: obfs4, snowflake, a bridge; schema v8),
#    so Tor through a bridge is not counted as Tor. The verdicts are unchanged.
# 18: throttling is re-judged from its recorded rounds (`model.throttle.judge`, as the probe now judges them): a
#    target four times slower is throttled only when that costs at least 0.2 s over the resource. A fetch of a few
#    milliseconds is mostly jitter, and 7 ms against 2 ms was called a 33 Mbit/s throttle. Without usable rounds,
#    ``x_throttle.throttled`` is read as before.
# 19: fingerprints found in a cleartext page that is the control's (the same status, a body as long, the same title)
#    are the site's own text, not a blockpage (QA: reviews of filtering products, news quoting blockpages and pages
#    saying "blokeret" were confirmed blockpages named after vendors); a body not in UTF-8 is read in the charset
#    it declares (a KOI8-R blockpage lost its fingerprints); Citizen Lab's DNS fingerprints are matched in the
#    answers judged lies (a state's or an ISP's block address in its own country, a product's anywhere; not the
#    generic 0.0.0.0 and 127.0.0.1), and decide a lie without a control, as OONI's fastpath does. From a QA pass
#    against the lab's truth: an app's HTTPS check (telegram web, whatsapp, signal, riseupvpn's API) whose every
#    connection failed is tcp.*, not tls.*; a dnscheck timeout where the same server answered over another
#    cleartext transport is no dns.drop, and a name NXDOMAIN for the control and every transport is not blocked;
#    stunreachability's dns_bogon_error is dns.poison (dns.injection when raced); a tcp_freeze response stopped
#    dead under 4 KiB is tcp.freeze, no byte after the handshake http.drop; echcheck's config stripped from plain
#    DNS is dns.drop.
# 20: a web_connectivity step blocked where the run's censor had just acted on another measurement's connection to
#    the same address and port (``x_residual``: residual blocking, recorded by the probe) is a failure, not a block
#    of this URL.
# 21: throttling and the middlebox tests give what the probe writes (not blocked, accessible); remote_dns's ghost DNS
#    is dns.poison; remote_web's HTTP/3 dropped where TCP got through is quic.drop; tor cites the targets that failed
#    alike.
# 22: vanilla_tor reads tor's own warning at the percentage it stopped at: a relay that refused or reset the
#    connection is tcp.rst (tls.rst in the handshake).
# 23: dnscheck's lookups spell their server with its transport ("udp://198.19.0.8:53"), its queries and duplicate
#    responses without: they are compared without it, so a TCP timeout where the same server answered over UDP is no
#    dns.drop, and a lie raced by another answer from the same server is dns.injection (was dns.poison); an evasion
#    attempt's body matches the control's when more than 70% of its length, as web_connectivity's (70% was a match).
# 24: a test_version that is no ASCII version (digits int() refuses past 4,300 of them, which failed the verdict;
#    Arabic-Indic or fullwidth digits, read as a version) is the current one, as any unparsable version is.
ANALYSIS_VERSION = "24"


def register(test_name: str) -> Callable[[VerdictFunction], VerdictFunction]:
    def add(fn: VerdictFunction) -> VerdictFunction:
        VERDICTS[test_name] = fn
        return fn
    return add


def verdict_for(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None = None) -> Verdict:
    """The verdict of any measurement, by its test_name."""
    name = measurement.get("test_name")
    fn = VERDICTS.get(name, generic_verdict) if isinstance(name, str) else generic_verdict
    return fn(measurement, matcher)


@register("web_connectivity")
def web_connectivity(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    return web_connectivity_verdict(measurement, matcher)


@register("dnscheck")
def dnscheck(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    tk = _tk(measurement)
    if "x_lookups" not in tk and isinstance(tk.get("lookups"), Mapping):
        # OONI's own dnscheck carries no control and no verdict: all we can say is
        # whether the resolvers answered at all.
        if tk.get("bootstrap_failure"):
            return _failure(["test_keys.bootstrap_failure"])
        return Verdict(None, None, "none", 0.0, "ok", ("test_keys.lookups",))
    return dnscheck_verdict(measurement)


@register("remote_dns")
def remote_dns(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    return remote_dns_verdict(measurement, matcher)


@register("remote_web")
def remote_web(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    return remote_web_verdict(measurement, matcher)


def _tampering_flag(value: Any) -> bool | None:
    """OONI's ``tampering``: a bool, or an object whose ``total`` is the bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        total = value.get("total")
        if isinstance(total, bool):
            return total
        flags = [v for v in value.values() if isinstance(v, bool)]
        return any(flags) if flags else None
    return None


@register("http_invalid_request_line")
@register("http_header_field_manipulation")
def middlebox(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    tk = _tk(measurement)
    if _nothing_echoed(tk):  # the echo helper was never reached: nothing to compare
        return _failure(["test_keys.received"])
    tampering = _tampering_flag(tk.get("tampering"))
    if tampering is None:
        return _failure()
    if tampering:  # as the probe's nettest says it (`nettests.middlebox.verdict_keys`): the request was rewritten
        # on its way, and the site still came through (QA: analyze said "http-failure", not accessible, at 0.8)
        return Verdict(False, True, "middlebox", 0.9, "anomaly", ("test_keys.tampering",))
    return _ok(["test_keys.tampering"])


def _nothing_echoed(tk: Mapping[str, Any]) -> bool:
    """Whether ``received`` (what the echo sent back: one string, or one per request line; null for nothing)
    says that nothing came back. Measurements that do not record it say nothing either way."""
    if "received" not in tk:
        return False
    received = tk["received"]
    return received is None or isinstance(received, list) and bool(received) and all(r is None for r in received)


@register("tcp_freeze")
def tcp_freeze(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """Our tcp_freeze nettest's (OONI has none): the probe's own verdict function (`model.freezeverdict`)."""
    return tcp_freeze_verdict(measurement)


@register("portfiltering")
def portfiltering(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """Our portfiltering nettest's: the probe's own verdict function (`model.portverdict`). It reads OONI's
    experimental one (ts-038: ``tcp_connect`` only, no control) by the same rules."""
    return portfiltering_verdict(measurement)


@register("throttling")
def throttling(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """Re-judged from the recorded rounds (the probe's rule, `model.throttle`) when they give rates; else the
    ``x_throttle.throttled`` the measurement carries (one without rounds)."""
    tk = _tk(measurement)
    throttle = tk.get("x_throttle")
    judged = judge_rounds(tk.get("rounds"))
    evidence = ["test_keys.x_throttle"] if judged is None else ["test_keys.rounds", "test_keys.x_throttle"]
    if judged is not None:
        throttled = judged["throttled"]
    elif isinstance(throttle, Mapping) and isinstance(throttle.get("throttled"), bool):
        throttled = throttle["throttled"]
    else:
        return _failure()
    if throttled:  # slowed, not stopped: as the probe's nettest says it (`nettests.throttling.finish`; QA: analyze
        # said "http-failure", not accessible, at 0.8)
        given = throttle.get("confidence") if isinstance(throttle, Mapping) else None
        confidence = float(given) if isinstance(given, (int, float)) and 0 <= given <= 1 else 0.9
        return Verdict(False, True, "throttle", confidence, "anomaly", tuple(evidence))
    return _ok(evidence, 0.7)


@register("evasion")
def evasion(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """The probe's own function (model/evasion.py) over the attempts judged again from their raw records, with
    the whole fingerprint database: the plain request's outcome names the mechanism, and a re-framed request
    that got the site's answer from the same address makes it sure."""
    tk = _tk(measurement)
    x = tk.get("x_evasion")
    attempts = attempts_from_records(tk, matcher)
    keys = evasion_verdict({**tk, "x_evasion": {**(x if isinstance(x, Mapping) else {}), "attempts": attempts}})
    plain = [f for a in attempts if a.get("strategy") == "plain" for f in a["fingerprints"]]
    return Verdict(keys["blocking"], keys["accessible"], keys["x_mechanism"], keys["x_confidence"],
                   keys["x_status"], tuple(keys["x_evidence"]), tuple(dict.fromkeys(plain)))


@register("blocking_rules")
def blocking_rules(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """The probe's own function (model/rules.py) over every probe judged again from its records (the DNS
    answers, the handshakes, the responses with the whole fingerprint database), and each layer's rule
    concluded again from those judgements."""
    return blocking_rules_judged(measurement, matcher)[0]


def blocking_rules_judged(measurement: Mapping[str, Any],
                          matcher: BlockpageMatcher | None) -> tuple[Verdict, Mapping[str, Any]]:
    """`blocking_rules`'s verdict and the rule it read per layer (``x_rules``, judged again: what the store's
    ``rules`` table keeps), from one judging of the records."""
    tk = _tk(measurement)
    layers = rules_from_records(tk, matcher)
    keys = rules_verdict(tk, layers)
    fps = [f for data in layers.values() for p in data["probes"] if p.get("kind") == "exact"
           for f in p.get("fingerprints", [])]
    verdict = Verdict(keys["blocking"], keys["accessible"], keys["x_mechanism"], keys["x_confidence"],
                      keys["x_status"], tuple(keys["x_evidence"]), tuple(dict.fromkeys(fps)))
    return verdict, keys["x_rules"]


@register("echcheck")
def echcheck(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """The probe's own function (model/ech.py) over the control and target handshakes' records."""
    return echcheck_verdict(measurement, matcher)


@register("tls_mitm")
def tls_mitm(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """From the raw records where there are any, with the probe's own function: a certificate we were shown
    that the control's successful handshake to the same name does not vouch for. Else the flags."""
    tk = _tk(measurement)
    handshakes = tk.get("tls_handshakes")
    if isinstance(handshakes, list) and handshakes:
        x = interception(measurement)
        if x is not None and x["intercepted"]:
            return _anomaly("http-failure", "tls.mitm", 0.95, x["evidence"])
        if any(isinstance(h, Mapping) and "failure" in h and h["failure"] is None for h in handshakes):
            return _ok(["test_keys.tls_handshakes"])
    for key in ("x_mitm", "tampering"):
        value = tk.get(key)
        flag = value.get("intercepted") if isinstance(value, Mapping) and "intercepted" in value \
            else _tampering_flag(value)
        if isinstance(flag, bool):
            if flag:
                return _anomaly("http-failure", "tls.mitm", 0.9, [f"test_keys.{key}"])
            return _ok([f"test_keys.{key}"])
    if isinstance(handshakes, list):  # no handshake went through (or none began), none shows interception
        return _failure(["test_keys.tls_handshakes"])
    return generic_verdict(measurement, matcher)


# --------------------------------------------------------------------------- OONI's instant-messaging and legacy tests
#
# These carry their probe's own conclusions as flags (ooni/spec ts-008, ts-018, ts-019, ts-020,
# ts-029): there are no raw records rich enough to re-derive them, so the flags are read, and
# the failure strings beside them say how (a reset or a timeout, at which layer). The instant-messaging
# verdicts are the model's (`model.services`), which our telegram nettest writes too.


@register("telegram")
def telegram(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    return telegram_verdict(measurement)


@register("whatsapp")
def whatsapp(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    return whatsapp_verdict(measurement)


@register("facebook_messenger")
def facebook_messenger(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    return facebook_messenger_verdict(measurement)


@register("signal")
def signal(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    return signal_verdict(measurement)


@register("tcp_connect")
def tcp_connect(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """The legacy test (ts-008): one TCP connection to the input ``ip:port``."""
    connection = _tk(measurement).get("connection")
    if not isinstance(connection, str) or not connection:
        return _failure()
    return _services([("connection", connection != "success", "tcp", connection)])


def generic_verdict(measurement: Mapping[str, Any], matcher: BlockpageMatcher | None) -> Verdict:
    """Nettests without their own entry: the flags any of ours may carry, else "ok"."""
    tk = _tk(measurement)
    tampering = _tampering_flag(tk.get("tampering"))
    if tampering:
        return _anomaly("http-failure", "middlebox", 0.6, ["test_keys.tampering"])
    throttle = tk.get("x_throttle")
    if isinstance(throttle, Mapping) and throttle.get("throttled") is True:
        return _anomaly("http-failure", "throttle", 0.7, ["test_keys.x_throttle"])
    if tk.get("x_middlebox_tampering") is True:
        return _anomaly("http-failure", "middlebox", 0.6, ["test_keys.x_middlebox_tampering"])
    if tampering is False:
        return _ok(["test_keys.tampering"])
    return Verdict(None, None, "none", 0.0, "ok")


# --------------------------------------------------------------------------- fingerprints


class Matcher:
    """The fingerprint database as a `BlockpageMatcher`, memoised by response.

    Exact: the key is the whole (body, headers) pair, so a hit returns what
    the database would have returned. Bounded in entries and in the size of
    bodies it keeps, so memory does not grow with the corpus.
    """

    MAX_ENTRIES = 4096
    MAX_BODY = 64 * 1024  # bodies longer than this are matched every time, not kept

    def __init__(self, db: Any | None = None) -> None:
        if db is None:
            from tamperscope.wire.fingerprints import FingerprintDB

            db = FingerprintDB.load()
        self.db = db
        self._memo: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, ...]] = {}
        self.calls = 0
        self.hits = 0

    def __call__(self, body: str, headers: Mapping[str, str]) -> Sequence[str]:
        self.calls += 1
        key = (body, tuple(headers.items()))
        found = self._memo.get(key)
        if found is not None:
            self.hits += 1
            return found
        result = tuple(m.id for m in self.db.match_response(body, headers))
        if len(body) <= self.MAX_BODY:
            while len(self._memo) >= self.MAX_ENTRIES:
                del self._memo[next(iter(self._memo))]  # oldest first
            self._memo[key] = result
        return result

    def dns(self, answers: Sequence[str], country: str) -> Sequence[str]:
        """The DNS fingerprints among ``answers`` that may be known from ``country`` (`FingerprintDB.match_dns`)."""
        return tuple(dict.fromkeys(m.id for m in self.db.match_dns(answers, country)))

    @property
    def pattern_count(self) -> int:
        return int(getattr(self.db, "pattern_count", 0))


# Fingerprints of one's own (`analyze --fingerprints FILE`, `serve --fingerprints FILE`): the file is named in
# the environment, so that worker processes (spawned, or a Dask LocalCluster's) match with the same database.
FINGERPRINTS_ENV = LOCAL_ENV


@dataclass(frozen=True)
class LocalFingerprints:
    """A file of one's own blockpage fingerprints, read and checked (`wire.fingerprints.local_entries`)."""

    path: str
    entries: tuple[dict[str, Any], ...]
    digest: str  # of the entries: part of `analysis_version`, so a store knows which verdicts saw them


def read_fingerprints(path: str | os.PathLike[str]) -> LocalFingerprints:
    """Read and check a fingerprint file (Citizen Lab's http.csv columns); ValueError in one line if unusable."""
    from tamperscope.wire.fingerprints import read_local

    entries = tuple(read_local(path))
    digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()[:12]
    return LocalFingerprints(str(path), entries, digest)


def use_fingerprints(path: str | os.PathLike[str]) -> LocalFingerprints:
    """Check ``path`` and make it this process's fingerprints of its own, and its future workers'."""
    local = read_fingerprints(path)
    resolved = str(Path(path).resolve())
    os.environ[FINGERPRINTS_ENV] = resolved
    _LOCAL[resolved] = local
    return local


def use_fingerprints_given(given: str | os.PathLike[str] | None) -> LocalFingerprints | None:
    """The commands' ``--fingerprints FILE``, else `FINGERPRINTS_ENV`: checked and used (`use_fingerprints`), or
    None when neither names a file; ValueError in one line (naming the variable when it was the one)."""
    path = given or os.environ.get(FINGERPRINTS_ENV) or None
    if path is None:
        return None
    try:
        return use_fingerprints(path)
    except ValueError as exc:
        raise ValueError(str(exc) if given else f"${FINGERPRINTS_ENV}: {exc}") from None


_LOCAL: dict[str, LocalFingerprints] = {}


def local_fingerprints() -> LocalFingerprints | None:
    """The fingerprints of one's own this process matches with (read once per process), or None."""
    path = os.environ.get(FINGERPRINTS_ENV)
    if not path:
        return None
    found = _LOCAL.get(path)
    if found is None:
        found = _LOCAL[path] = read_fingerprints(path)
    return found


def analysis_version() -> str:
    """`ANALYSIS_VERSION`, and the fingerprints of one's own the verdicts saw (``24+local.<digest>``): a verdict
    from another database is stale to ``reanalyse``."""
    local = local_fingerprints()
    return ANALYSIS_VERSION if local is None else f"{ANALYSIS_VERSION}+local.{local.digest}"


_MATCHER: tuple[str, Matcher] | None = None


def default_matcher() -> Matcher:
    """One matcher per process (the database compiles once, in about a second; cached on disk after): the
    shipped fingerprints, and one's own when `FINGERPRINTS_ENV` names a file."""
    global _MATCHER
    local = local_fingerprints()
    key = local.digest if local is not None else ""
    if _MATCHER is None or _MATCHER[0] != key:
        from tamperscope.wire.fingerprints import FingerprintDB

        _MATCHER = (key, Matcher(FingerprintDB.load_with(local.entries) if local is not None else None))
    return _MATCHER[1]


# The verdicts of OONI's circumvention and legacy tests live in their own modules, which import
# this one's helpers and register themselves here.
from tamperscope.analysis import circumvention, legacy  # noqa: E402,F401

__all__ = [
    "ANALYSIS_VERSION", "FINGERPRINTS_ENV", "LocalFingerprints", "Matcher", "VERDICTS", "VerdictFunction",
    "analysis_version", "default_matcher", "generic_verdict", "local_fingerprints", "read_fingerprints",
    "register", "use_fingerprints", "use_fingerprints_given", "verdict_for",
]
