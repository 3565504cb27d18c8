"""Ground truth before the fact: what a correct probe concludes for a URL under a profile.

`expect_url` walks the path a web_connectivity measurement takes (DNS, TCP,
TLS for https, HTTP for http, redirects as the web farm answers them) and
returns the first censor action on it, with OONI's `blocking` value and our
mechanism name. The censor, the lab's DNS and the web farm obey the same
profile and the same lab/farm.py, so the prediction is exact, not a guess.
"""

from __future__ import annotations

import csv
import io
import ipaddress
from dataclasses import dataclass

from ..model.inputs import BadInput
from ..model.inputs import parse_url as _parse
from ..model.inputs import read_url_list as _read
from ..model.profile import Profile, Rule
from . import farm

BLOCKING = {"dns": "dns", "tcp": "tcp_ip", "tls": "http-failure", "http": "http-failure"}


@dataclass(frozen=True)
class Expectation:
    url: str
    blocking: str  # OONI vocabulary: false, dns, tcp_ip, http-failure, http-diff
    mechanism: str
    rule: str | None  # the rule that decides, if any
    host: str | None = None  # the host (after redirects) where it happens


BadURL = BadInput


def parse_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an http(s) URL, or BadURL."""
    p = _parse(url)
    # the probe looks an IDN up, and sends it as SNI and Host, in its IDNA form (netx/http.py): so do we
    host = p.host if p.host.isascii() else p.host.encode("idna").decode("ascii")
    return p.scheme, host, p.port, p.path


def _ip_rule(profile: Profile, host: str, addr: str, port: int) -> Rule | None:
    for r in profile.rules_for("ip"):
        if not r.applies_to("egress") or (r.ports and port not in r.ports):
            continue
        if any(farm.address_for(d, profile) == addr for d in r.domains):
            return r
        if any(ipaddress.ip_address(addr) in ipaddress.IPv4Network(c) for c in r.cidrs):  # an IPv6 URL: never
            return r
    return None


def _named(profile: Profile, layer: str, host: str, port: int) -> Rule | None:
    for r in profile.rules_for(layer):
        if r.applies_to("egress") and r.matches_name(host) and r.on_port(port) and not r.ech \
                and r.asks(1):  # web_connectivity asks A
            return r
    return None


def _aaaa_dropped(profile: Profile, host: str) -> Rule | None:
    """A dns drop rule for ``host`` that reads AAAA queries (and not A ones: `_named` finds those)."""
    for r in profile.rules_for("dns"):
        if r.action == "drop" and r.applies_to("egress") and r.matches_name(host) and not r.ech and r.asks(28):
            return r
    return None


def expect_url(profile: Profile, url: str) -> Expectation:
    scheme, host, port, path = parse_url(url)
    throttled: Rule | None = None
    quic: Rule | None = None
    for hop in range(farm.MAX_REDIRECT_HOPS + 1):
        if farm.is_ip(host):
            addr = host
        else:
            r = _named(profile, "dns", host, 53)
            if r is not None and not (r.action == "nxdomain" and farm.is_nxdomain(host)):  # the control's answer too
                return Expectation(url, "dns", f"dns.{'injection' if r.action == 'inject' else r.action}", r.id, host)
            r = _aaaa_dropped(profile, host)
            if r is not None and not farm.is_nxdomain(host):
                # the system resolver asks AAAA beside A, and glibc fails the whole lookup when one goes unanswered
                # (the ISP resolver answers SERVFAIL once its upstream query timed out): the name does not resolve
                return Expectation(url, "dns", "dns.drop", r.id, host)
            if farm.is_nxdomain(host):
                return Expectation(url, "false", "none", None, host)
            addr = farm.address_for(host, profile)
        r = _ip_rule(profile, host, addr, port)
        freeze = r if r is not None and r.action == "freeze" else None
        if r is not None and freeze is None:
            # OONI calls a connect failure on a redirect hop http-failure, not tcp_ip
            return Expectation(url, "tcp_ip" if hop == 0 else "http-failure", f"tcp.{r.action}", r.id, host)
        if scheme == "https":
            r = _named(profile, "tls", host, port) if not farm.is_ip(host) else None
            if r is not None and r.action == "throttle":
                throttled = throttled or r
            elif r is not None:
                return Expectation(url, "http-failure", f"tls.{r.action}", r.id, host)
            if hop == 0 and port == 443 and farm.speaks_h3(host, profile):  # the probe tries HTTP/3 for its URL
                quic = _quic_rule(profile, host, addr)
        else:
            r = _named(profile, "http", host, port)
            if r is not None:
                if r.action == "blockpage":
                    return Expectation(url, "http-diff", "http.blockpage", r.id, host)
                return Expectation(url, "http-failure", f"http.{r.action}", r.id, host)
        loc = farm.redirect_for(scheme, host, path) if not farm.is_ip(host) else None
        if loc is None:
            if freeze is not None and freezes(freeze, scheme, host, path):
                return Expectation(url, "http-failure", "tcp.freeze", freeze.id, host)
            break
        scheme, host, port, path = parse_url(loc)
    if throttled is not None:
        return Expectation(url, "false", "throttle", throttled.id, host)
    if quic is not None:
        return Expectation(url, "false", "quic.drop", quic.id, host)
    return Expectation(url, "false", "none", None, host)


FREEZE_OVERHEAD = {"http": 160, "https": 2048}  # what the server sends beside the body (measured in the lab: a
# response head of 131 bytes; over https 1.9-2.1 KB more, the TLS 1.3 handshake, records and HTTP/2 frames)
FREEZE_MARGIN = {"http": 128, "https": 512}  # a page this close to the cap, beside its overhead, may go either way


def freezes(rule: Rule, scheme: str, host: str, path: str) -> bool:
    """Whether an ip freeze rule stops the farm's answer to ``path`` on ``host``: when the body and what the server
    sends with it (`FREEZE_OVERHEAD`) pass the rule's ``after_kb``. Within `FREEZE_MARGIN` of it, it may go either
    way (the lab's own profiles name no such page)."""
    size = len(farm.respond(scheme, host, path).body) + FREEZE_OVERHEAD.get(scheme, 0)
    return size > rule.after_kb * 1024


def _quic_rule(profile: Profile, host: str, addr: str) -> Rule | None:
    """The quic rule dropping HTTP/3 to `host` at `addr`: `drop` matches the address (UDP to its port 443),
    `sni-drop` the name in the QUIC Initial's ClientHello."""
    for r in profile.rules_for("quic"):
        if not r.applies_to("egress"):
            continue
        if r.action == "drop" and any(farm.address_for(d, profile) == addr for d in r.domains):
            return r
        if r.action == "sni-drop" and not farm.is_ip(host) and r.matches_name(host):
            return r
    return None


def read_url_list(text: str, source: str = "list") -> list[str]:
    """URLs from a Citizen Lab test-list CSV or one URL per line."""
    return [e.url for e in _read(text, source)]


def to_csv(rows: list[Expectation]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["url", "blocking", "mechanism"])
    for e in rows:
        w.writerow([e.url, e.blocking, e.mechanism])
    return out.getvalue()
