"""Censor profiles: the documented TOML format the lab's censor obeys.

A profile is pure data. `load_profile` reads and validates a file (or a
built-in name resolved by the lab), rejecting unknown keys and bad values with
a `ProfileError` that names the file and the key. The format is documented in
docs/lab-profiles.md; a test keeps the two in step.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .inputs import BadInput, byte_size, check_host

LAYERS = ("dns", "ip", "http", "tls", "quic", "openvpn", "wireguard")
ACTIONS: dict[str, tuple[str, ...]] = {
    "dns": ("inject", "poison", "nxdomain", "drop"),
    "ip": ("drop", "rst", "freeze"),  # freeze: a TCP flow's server data stops after `after_kb` (Russia's TSPU)
    "http": ("rst", "drop", "blockpage"),
    "tls": ("rst", "drop", "throttle", "mitm"),
    "quic": ("drop", "sni-drop"),
    "openvpn": ("rst", "drop"),  # OpenVPN's first packet over TCP, at any address (DPI that knows the protocol)
    "wireguard": ("drop",),  # a UDP flow whose first datagram is WireGuard's handshake initiation, at any address
}
# Actions that need to hold back the original packet: impossible for an on-path tap.
IN_PATH_ONLY = {("dns", "drop"), ("ip", "drop"), ("ip", "freeze"), ("http", "drop"), ("tls", "drop"),
                ("tls", "throttle"),
                ("tls", "mitm"), ("quic", "drop"), ("quic", "sni-drop"), ("openvpn", "drop"),
                ("wireguard", "drop")}
# The rules that forge packets, whose header values `inject` sets; on any other rule it would set nothing.
FORGING = {("dns", "inject"), ("dns", "nxdomain"), ("ip", "rst"), ("http", "rst"), ("tls", "rst"),
           ("http", "blockpage"), ("openvpn", "rst")}
PAGED = {("http", "blockpage"), ("dns", "poison")}  # the rules that take a `blockpage`
DEFAULT_PORTS = {"http": (80,), "tls": (443,)}  # the ports a rule of the layer reads without ``ports``
FREEZE_KB = 16  # Russia's TSPU froze connections to foreign hosting after about 16-20 KB (2025)
MAX_FREEZE_KB = 1024
DIRECTIONS = ("egress", "ingress", "both")
PLACEMENTS = ("in-path", "on-path")
HEADER_CASES = ("keep", "lower", "upper", "title")
LAB_NET = ipaddress.ip_network("198.18.0.0/15")
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
MAX_BLOCKPAGE = 1 << 20  # bytes of a profile's own blockpage: the built-in ones are a few KiB
MAX_PROFILE = 4 << 20  # bytes of a profile: the built-in ones are 2 KiB, 10 000 rules fit in 1 MiB
MAX_NESTING = 16  # tables and arrays within one another, or parts of one dotted key: a profile needs 4

TOP_KEYS = {"name", "description", "network", "proxy", "rule"}
NETWORK_KEYS = {"delay_ms", "residual_s", "placement", "tls_reassembly"}
PROXY_KEYS = {"enabled", "header_case", "add_headers"}
RULE_KEYS = {"id", "layer", "action", "domains", "suffix", "regex", "cidrs", "ports", "answer",
             "blockpage", "rate_kbps", "after_kb", "direction", "inject", "ech", "qtypes"}
INJECT_KEYS = {"ip_id", "ttl", "window"}


class ProfileError(ValueError):
    """A profile is unreadable or invalid; the message names the file and the key."""


@dataclass(frozen=True)
class Inject:
    """Header values of every packet a rule forges (equipment signature)."""

    ip_id: int | None = None  # None: a fresh random IP-ID per packet
    ttl: int = 64
    window: int = 8192


@dataclass(frozen=True)
class Rule:
    id: str
    layer: str
    action: str
    domains: tuple[str, ...] = ()
    suffix: bool = False
    regex: str | None = None
    cidrs: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    answer: str | None = None
    blockpage: str | None = None  # built-in name or absolute path (resolved at load)
    rate_kbps: int | None = None
    direction: str = "egress"
    inject: Inject = field(default_factory=Inject)
    ech: bool = False  # tls rules: only ClientHellos that carry encrypted_client_hello (the SNI is the outer one)
    qtypes: tuple[int, ...] = ()  # dns rules: only queries of these types (codes; empty: every type)
    after_kb: int = FREEZE_KB  # ip freeze rules: KiB of a TCP flow's server data that pass before it freezes

    def matches_name(self, name: str | None) -> bool:
        """Whether a DNS name / Host / SNI falls under this rule."""
        if not name:
            return False
        name = name.lower().rstrip(".")
        for d in self.domains:
            if name == d or (self.suffix and name.endswith("." + d)):
                return True
        if self.regex is not None and _compiled(self.regex).search(name[:MAX_NAME]):
            return True
        return False

    @property
    def has_name_match(self) -> bool:
        return bool(self.domains) or self.regex is not None

    def on_port(self, port: int) -> bool:
        """Whether traffic to ``port`` falls under this rule: its ``ports``, else its layer's (`DEFAULT_PORTS`: an
        http rule reads port 80, a tls rule 443), else every port."""
        ports = self.ports or DEFAULT_PORTS.get(self.layer, ())
        return not ports or port in ports

    def asks(self, qtype: int) -> bool:
        """Whether a DNS query of type ``qtype`` (a code: 1 for A) falls under this rule."""
        return not self.qtypes or qtype in self.qtypes

    def applies_to(self, direction: str) -> bool:
        """Whether traffic initiated in `direction` ('egress'/'ingress') triggers the rule."""
        return self.direction == "both" or self.direction == direction


@dataclass(frozen=True)
class Network:
    delay_ms: float = 0.0  # one-way, added in each direction between ISP and internet
    residual_s: float = 0.0  # after a trigger, drop client<->server-endpoint packets this long
    placement: str = "in-path"
    # how much of a ClientHello the censor's DPI puts together before reading the SNI: "full" (TCP
    # segments and TLS records), "segments" (TCP segments, the first TLS record only), "none" (the
    # first segment's first record): what the evasion nettest's strategies tell apart
    tls_reassembly: str = "full"


TLS_REASSEMBLY = ("full", "segments", "none")


@dataclass(frozen=True)
class Proxy:
    enabled: bool = False
    header_case: str = "keep"
    add_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    network: Network
    proxy: Proxy
    rules: tuple[Rule, ...]
    source: str  # the file it came from

    def rules_for(self, layer: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.layer == layer)

    def first_match(self, layer: str, name: str | None, direction: str = "egress") -> Rule | None:
        for r in self.rules:
            if r.layer == layer and r.applies_to(direction) and r.matches_name(name):
                return r
        return None

    def named_in_rules(self, name: str) -> bool:
        """Whether any rule names `name` (the lab gives such names their own address)."""
        return any(r.matches_name(name) for r in self.rules)


# re's own cache holds 512 patterns: past that, a profile with more regex rules than that would
# recompile every one of them for every name the censor sees.
_compiled = functools.lru_cache(maxsize=None)(re.compile)
# A name is at most 253 characters; a Host header has no such limit. A regex is run over the first 253 of what
# traffic names, so that its work is bounded whatever a client sends (`lab.manager._check_regexes` refuses the
# regexes that would still be slow).
MAX_NAME = 253


def _fail(src: str, key: str, msg: str) -> ProfileError:
    # a key is the profile's own text: one with a line break (TOML's "a\nb" = 1) is quoted, so that the error stays
    # on one line (QA: it ran over two)
    return ProfileError(f"{src}: {key if key.isprintable() else repr(key)}: {msg}")


def _check_keys(src: str, where: str, table: dict[str, Any], allowed: set[str]) -> None:
    for k in table:
        if k not in allowed:
            raise _fail(src, f"{where}{k}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _typed(src: str, key: str, value: Any, typ: type | tuple[type, ...], what: str) -> Any:
    if isinstance(value, bool) and typ in (int, float, (int, float)):
        raise _fail(src, key, f"must be {what}, not {value!r}")
    if not isinstance(value, typ):
        raise _fail(src, key, f"must be {what}, not {value!r}")
    return value


def _domain(src: str, key: str, value: Any) -> str:
    d: str = _typed(src, key, value, str, "a domain name")
    d = d.strip().lower().rstrip(".")
    if "*" in d:  # names match exactly (or by suffix): "*.x.org" would silently match nothing
        raise _fail(src, key, f"not a domain name: {d!r}: no wildcards; use suffix = true for subdomains")
    if not d.isascii():  # names reach the censor as the DNS writes them
        try:
            hint = f": write it as the DNS does, {d.encode('idna').decode()!r}"
        except UnicodeError:
            hint = ""
        raise _fail(src, key, f"not a domain name: {d!r}{hint}")
    try:
        if check_host(d) != d or ":" in d:
            raise BadInput(d)
    except BadInput:
        raise _fail(src, key, f"not a domain name: {d!r}") from None
    if d.rsplit(".", 1)[-1].isdigit():  # an address: the censor would look for it as a name, never as one
        raise _fail(src, key, f"{d!r} is an address, not a domain name: an ip rule matches addresses with cidrs")
    return d


def _parse_network(src: str, t: Any) -> Network:
    _typed(src, "network", t, dict, "a table")
    _check_keys(src, "network.", t, NETWORK_KEYS)
    delay = float(_typed(src, "network.delay_ms", t.get("delay_ms", 0), (int, float), "a number of milliseconds"))
    residual = float(_typed(src, "network.residual_s", t.get("residual_s", 0), (int, float), "a number of seconds"))
    placement = _typed(src, "network.placement", t.get("placement", "in-path"), str, "a string")
    if not 0 <= delay <= 5000:
        raise _fail(src, "network.delay_ms", "must be between 0 and 5000")
    if not 0 <= residual <= 3600:
        raise _fail(src, "network.residual_s", "must be between 0 and 3600")
    if placement not in PLACEMENTS:
        raise _fail(src, "network.placement", f"must be one of {', '.join(PLACEMENTS)}")
    if placement == "on-path" and residual:
        raise _fail(src, "network.residual_s", "residual blocking drops the flows that follow a trigger: it needs "
                    "an in-path censor; placement is on-path")
    reassembly = _typed(src, "network.tls_reassembly", t.get("tls_reassembly", "full"), str, "a string")
    if reassembly not in TLS_REASSEMBLY:
        raise _fail(src, "network.tls_reassembly", f"must be one of {', '.join(TLS_REASSEMBLY)}")
    return Network(delay, residual, placement, reassembly)


def _parse_proxy(src: str, t: Any) -> Proxy:
    _typed(src, "proxy", t, dict, "a table")
    _check_keys(src, "proxy.", t, PROXY_KEYS)
    enabled = _typed(src, "proxy.enabled", t.get("enabled", False), bool, "true or false")
    case = _typed(src, "proxy.header_case", t.get("header_case", "keep"), str, "a string")
    if case not in HEADER_CASES:
        raise _fail(src, "proxy.header_case", f"must be one of {', '.join(HEADER_CASES)}")
    add = _typed(src, "proxy.add_headers", t.get("add_headers", {}), dict, "a table of Name = \"value\"")
    pairs = []
    for k, v in add.items():
        if not re.fullmatch(r"[A-Za-z0-9-]+", k):
            raise _fail(src, f"proxy.add_headers.{k}", "not a valid header name")
        _typed(src, f"proxy.add_headers.{k}", v, str, "a string")
        if any(c < " " and c != "\t" or c == "\x7f" for c in v):
            raise _fail(src, f"proxy.add_headers.{k}", "must not contain line breaks or control characters")
        pairs.append((k, v))
    return Proxy(enabled, case, tuple(pairs))


def _parse_inject(src: str, key: str, t: Any) -> Inject:
    _typed(src, key, t, dict, "a table {ip_id, ttl, window}")
    _check_keys(src, key + ".", t, INJECT_KEYS)
    ip_id = t.get("ip_id")
    if ip_id is not None:
        _typed(src, key + ".ip_id", ip_id, int, "an integer 0-65535")
        if not 0 <= ip_id <= 0xFFFF:
            raise _fail(src, key + ".ip_id", "must be 0-65535")
    ttl = _typed(src, key + ".ttl", t.get("ttl", 64), int, "an integer 1-255")
    if not 1 <= ttl <= 255:
        raise _fail(src, key + ".ttl", "must be 1-255")
    window = _typed(src, key + ".window", t.get("window", 8192), int, "an integer 0-65535")
    if not 0 <= window <= 0xFFFF:
        raise _fail(src, key + ".window", "must be 0-65535")
    return Inject(ip_id, ttl, window)


def _parse_rule(src: str, i: int, t: Any, base: Path, builtin_pages: set[str], placement: str) -> Rule:
    where = f"rule[{i}]"
    _typed(src, where, t, dict, "a table")
    _check_keys(src, where + ".", t, RULE_KEYS)
    for req in ("id", "layer", "action"):
        if req not in t:
            raise _fail(src, f"{where}.{req}", "is required")
    rid = _typed(src, f"{where}.id", t["id"], str, "a string")
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", rid):
        raise _fail(src, f"{where}.id", "use 1-64 letters, digits, _ . : -")
    where = f"rule[{i}] ({rid})"
    layer = _typed(src, f"{where}.layer", t["layer"], str, "a string")
    if layer not in LAYERS:
        raise _fail(src, f"{where}.layer", f"must be one of {', '.join(LAYERS)}")
    action = _typed(src, f"{where}.action", t["action"], str, "a string")
    if action not in ACTIONS[layer]:
        raise _fail(src, f"{where}.action", f"for layer {layer} must be one of {', '.join(ACTIONS[layer])}")
    if placement == "on-path" and (layer, action) in IN_PATH_ONLY:
        raise _fail(src, f"{where}.action", f"{layer} {action} needs an in-path censor; placement is on-path")
    domains = tuple(_domain(src, f"{where}.domains", d) for d in _typed(src, f"{where}.domains", t.get("domains", []), list, "a list of domain names"))
    suffix = _typed(src, f"{where}.suffix", t.get("suffix", False), bool, "true or false")
    regex = t.get("regex")
    if regex is not None:
        _typed(src, f"{where}.regex", regex, str, "a string")
        try:
            _compiled(regex)
        except (re.error, OverflowError, RecursionError) as e:  # a{99999999999}; ((((…)))) a thousand deep
            why = "nested too deeply" if isinstance(e, RecursionError) else e
            raise _fail(src, f"{where}.regex", f"invalid regular expression: {why}") from None
    cidrs = []
    for c in _typed(src, f"{where}.cidrs", t.get("cidrs", []), list, "a list of CIDRs"):
        try:
            net = ipaddress.ip_network(_typed(src, f"{where}.cidrs", c, str, "a CIDR string"), strict=False)
        except ValueError:
            raise _fail(src, f"{where}.cidrs", f"not a CIDR: {c!r}") from None
        if net.version != 4 or not net.subnet_of(LAB_NET):  # type: ignore[arg-type]
            raise _fail(src, f"{where}.cidrs", f"{c} is outside the lab's 198.18.0.0/15")
        cidrs.append(str(net))
    ports = []
    for p in _typed(src, f"{where}.ports", t.get("ports", []), list, "a list of port numbers"):
        _typed(src, f"{where}.ports", p, int, "a port number")
        if not 1 <= p <= 65535:
            raise _fail(src, f"{where}.ports", f"{p} is not a port number")
        ports.append(p)
    if layer == "ip" and not (domains or cidrs):
        raise _fail(src, where, "an ip rule needs domains or cidrs")
    if (layer == "ip" or (layer, action) == ("quic", "drop")) and regex is not None:
        raise _fail(src, f"{where}.regex", f"{layer} {action} rules match addresses: give domains, not a regex")
    if (layer == "ip" or (layer, action) == ("quic", "drop")) and suffix:
        raise _fail(src, f"{where}.suffix", f"{layer} {action} rules match the addresses of the domains named, not "
                    "their subdomains': no suffix")
    if regex is not None and "(?i" not in regex and any(c.isupper() for c in re.sub(r"\\.", "", regex)):
        # names reach the censor in lower case: a capital letter would never match (\S, \W, \D, \A are escapes)
        raise _fail(src, f"{where}.regex", f"names are matched in lower case: {regex!r} would never match")
    if layer == "quic" and not (domains or regex):
        raise _fail(src, where, "a quic rule needs domains" + (" or a regex" if action == "sni-drop" else ""))
    if layer != "ip" and cidrs:
        raise _fail(src, f"{where}.cidrs", "only ip rules match CIDRs")
    if layer in ("openvpn", "wireguard") and (domains or regex is not None):
        what = "OpenVPN's first packet" if layer == "openvpn" else "WireGuard's handshake initiation"
        raise _fail(src, where, f"an {layer} rule matches {what} at any address: no domains or regex "
                    "(ports narrows it)")
    if layer in ("dns", "http", "tls") and not (domains or regex):
        raise _fail(src, where, f"a {layer} rule needs domains or a regex")
    answer = t.get("answer")
    if answer is not None:
        _typed(src, f"{where}.answer", answer, str, "an IPv4 address")
        try:
            ip = ipaddress.IPv4Address(answer)
        except ValueError:
            raise _fail(src, f"{where}.answer", f"not an IPv4 address: {answer!r}") from None
        if not (ip in LOOPBACK or ip in LAB_NET or str(ip) == "0.0.0.0"):
            raise _fail(src, f"{where}.answer", f"{answer} is refused: use 127.0.0.0/8, 0.0.0.0 or a lab address")
    if layer == "dns" and action in ("inject", "poison") and answer is None:
        raise _fail(src, f"{where}.answer", f"dns {action} needs an answer address")
    if answer is not None and not (layer == "dns" and action in ("inject", "poison")):
        raise _fail(src, f"{where}.answer", "only dns inject/poison rules take an answer")
    blockpage = t.get("blockpage")
    if blockpage is not None:
        _typed(src, f"{where}.blockpage", blockpage, str, "a built-in name or a file path")
        if blockpage not in builtin_pages:
            try:
                p = (base / blockpage).resolve()
                is_file = p.is_file()
            except (OSError, ValueError):  # a name too long, a NUL byte
                is_file = False
            if not is_file:
                raise _fail(src, f"{where}.blockpage", f"no built-in page or file {blockpage!r} (built-in: {', '.join(sorted(builtin_pages))})")
            # The lab (root) serves this file to the probe, which may publish it: a profile shared by
            # someone else must not pick /etc/shadow through "../" or a link out of its own directory.
            if not p.is_relative_to(base.resolve()):
                raise _fail(src, f"{where}.blockpage", f"{blockpage!r} is outside the profile's directory "
                            f"{base.resolve()}: put the page beside the profile")
            if p.stat().st_size > MAX_BLOCKPAGE:
                raise _fail(src, f"{where}.blockpage", f"{blockpage!r} is larger than {MAX_BLOCKPAGE >> 10} KiB")
            blockpage = str(p)
    if layer == "http" and action == "blockpage" and blockpage is None:
        raise _fail(src, f"{where}.blockpage", "http blockpage needs a blockpage")
    rate = t.get("rate_kbps")
    if rate is not None:
        _typed(src, f"{where}.rate_kbps", rate, int, "an integer (kbit/s)")
        if not 8 <= rate <= 1_000_000:
            raise _fail(src, f"{where}.rate_kbps", "must be between 8 and 1000000")
    if action == "throttle" and rate is None:
        raise _fail(src, f"{where}.rate_kbps", "throttle needs rate_kbps")
    # a key the rule would not read is refused, as a misplaced answer or after_kb is (QA: these were taken in
    # silence, and a profile's author believed the censor honoured them)
    if blockpage is not None and (layer, action) not in PAGED:
        raise _fail(src, f"{where}.blockpage", "only http blockpage and dns poison rules take a blockpage")
    if rate is not None and (layer, action) != ("tls", "throttle"):
        raise _fail(src, f"{where}.rate_kbps", "only tls throttle rules take rate_kbps")
    if "inject" in t and (layer, action) not in FORGING:
        raise _fail(src, f"{where}.inject", "only rules that forge packets take inject (dns inject and nxdomain; "
                    "ip, http, tls and openvpn rst; http blockpage)")
    if ports and layer in ("dns", "quic"):
        raise _fail(src, f"{where}.ports", "dns and quic rules read no ports: a dns rule reads every query to port "
                    "53, a quic rule every datagram to port 443")
    if suffix and layer in ("openvpn", "wireguard"):
        raise _fail(src, f"{where}.suffix", f"an {layer} rule matches no names: no suffix")
    after_kb = t.get("after_kb", FREEZE_KB)
    _typed(src, f"{where}.after_kb", after_kb, int, "an integer (KiB)")
    if "after_kb" in t and (layer, action) != ("ip", "freeze"):
        raise _fail(src, f"{where}.after_kb", "only ip freeze rules take after_kb")
    if not 1 <= after_kb <= MAX_FREEZE_KB:
        raise _fail(src, f"{where}.after_kb", f"must be between 1 and {MAX_FREEZE_KB} (KiB)")
    direction = _typed(src, f"{where}.direction", t.get("direction", "egress"), str, "a string")
    if direction not in DIRECTIONS:
        raise _fail(src, f"{where}.direction", f"must be one of {', '.join(DIRECTIONS)}")
    inject = _parse_inject(src, f"{where}.inject", t["inject"]) if "inject" in t else Inject()
    ech = _typed(src, f"{where}.ech", t.get("ech", False), bool, "true or false")
    if ech and layer != "tls":
        raise _fail(src, f"{where}.ech", "only tls rules read a ClientHello's encrypted_client_hello")
    qtypes = _qtypes(src, f"{where}.qtypes", t["qtypes"]) if "qtypes" in t else ()
    if qtypes and layer != "dns":
        raise _fail(src, f"{where}.qtypes", "only dns rules read a query's type")
    if qtypes and action in ("inject", "poison") and QTYPES["A"] not in qtypes:
        raise _fail(src, f"{where}.qtypes", f"a dns {action} rule answers with an address: list A")
    return Rule(rid, layer, action, domains, suffix, regex, tuple(cidrs), tuple(ports), answer,
                blockpage, rate, direction, inject, ech, qtypes, after_kb)


QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "MX": 15, "TXT": 16, "AAAA": 28, "SVCB": 64, "HTTPS": 65, "ANY": 255}


def _qtypes(src: str, key: str, value: Any) -> tuple[int, ...]:
    """A dns rule's query types, by name (``["HTTPS"]``: the rule strips the records that carry ECH configs)."""
    if not isinstance(value, list) or not value:
        raise _fail(src, key, f"must be a non-empty list of query types ({', '.join(QTYPES)}), not {value!r}")
    out: list[int] = []
    for name in value:
        code = QTYPES.get(name.upper()) if isinstance(name, str) else None
        if code is None:
            raise _fail(src, key, f"{name!r} is not a query type this lab reads ({', '.join(QTYPES)})")
        out.append(code)
    return tuple(dict.fromkeys(out))


# What TOML nests with, outside strings and comments: strings ("…", '…', and the multi-line forms, which
# may end with up to two extra quotes) and comments are matched whole so that what they hold is not counted.
# A string left open runs to the end of its line (or of the text): tomllib stops there with its own error.
_TOML_TOKEN = re.compile(r'"""(?:\\.|[^\\])*?(?:"{3,5}|\Z)|\'\'\'.*?(?:\'{3,5}|\Z)|"(?:\\.|[^\\"\n])*"?|\'[^\'\n]*\'?'
                         r'|#[^\n]*|[][{}.=,\n]', re.S)


def _nesting(text: str) -> int:
    """How deep `text` nests arrays and tables, or dotted keys (``a.b.c``), whichever is deeper, counted up
    to MAX_NESTING + 1. tomllib recurses once per level (a RecursionError past ~1000) and spends time and
    memory quadratic in the parts of a dotted key (``a.a.a…`` 50 000 parts: 10 GB and 45 s), so a
    profile is measured before it is parsed."""
    deepest = depth = dots = 0
    for m in _TOML_TOKEN.finditer(text):
        c = m.group()
        if c in ("[", "{"):
            depth, dots = depth + 1, 0
        elif c in ("]", "}"):
            depth, dots = depth - 1, 0
        elif c == ".":
            dots += 1
        elif c in ("=", ",", "\n"):
            dots = 0
        deepest = max(deepest, depth, dots)
        if deepest > MAX_NESTING:
            break
    return deepest


def parse_profile(text: str, *, source: str, base: Path, builtin_pages: set[str]) -> Profile:
    """Validate a profile's TOML text. `base` resolves relative blockpage paths."""
    if _nesting(text) > MAX_NESTING:
        raise ProfileError(f"{source}: not a profile: arrays, tables or dotted keys nest more than "
                           f"{MAX_NESTING} deep")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{source}: not valid TOML: {e}") from None
    except RecursionError:
        raise ProfileError(f"{source}: not valid TOML: nested too deeply") from None
    _check_keys(source, "", data, TOP_KEYS)
    name = _typed(source, "name", data.get("name", Path(source).stem), str, "a string")
    if any(c < " " or c == "\x7f" for c in name):  # `lab up` and `lab status` print it in their one line
        raise _fail(source, "name", "must be one line, without control characters")
    desc = _typed(source, "description", data.get("description", ""), str, "a string")
    network = _parse_network(source, data.get("network", {}))
    proxy = _parse_proxy(source, data.get("proxy", {}))
    raw_rules = _typed(source, "rule", data.get("rule", []), list, "an array of [[rule]] tables")
    rules = tuple(_parse_rule(source, i, r, base, builtin_pages, network.placement) for i, r in enumerate(raw_rules))
    seen: set[str] = set()
    for r in rules:
        if r.id in seen:
            raise _fail(source, f"rule ({r.id}).id", "is not unique")
        seen.add(r.id)
    return Profile(name, desc, network, proxy, rules, source)


def load_profile(path: Path, builtin_pages: set[str]) -> Profile:
    """Read and validate the profile file at `path`: a regular file, at most MAX_PROFILE bytes of UTF-8.
    Not a FIFO or a device: reading one may never end, and the lab's servers read the file again."""
    try:
        # O_NONBLOCK: opening a FIFO nobody writes to would wait here for ever; a regular file ignores it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            mode = os.fstat(fd).st_mode
            data = b""
            if stat.S_ISREG(mode):
                with open(fd, "rb", closefd=False) as f:
                    data = f.read(MAX_PROFILE + 1)
        finally:
            os.close(fd)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
        raise ProfileError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    if stat.S_ISDIR(mode):
        raise ProfileError(f"{path}: is a directory, not a profile")
    if not stat.S_ISREG(mode):
        raise ProfileError(f"{path}: is not a regular file (a FIFO, a device?): give the profile as a file")
    if len(data) > MAX_PROFILE:
        raise ProfileError(f"{path}: is larger than {byte_size(MAX_PROFILE)}: not a profile")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProfileError(f"{path}: not UTF-8 text (byte {e.start} is {data[e.start]:#04x})") from None
    return parse_profile(text, source=str(path), base=path.parent, builtin_pages=builtin_pages)
