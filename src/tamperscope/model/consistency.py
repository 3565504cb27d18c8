"""A normalised view of one Web Connectivity measurement, and its comparisons with the control.

`model.verdict` decides *what happened*; this module prepares the ground for it:

* `observe()` turns the raw OONI-format ``test_keys`` (``queries``,
  ``x_dns_duplicate_responses``, ``tcp_connect``, ``tls_handshakes``, ``requests``,
  ``control``) into frozen records that remember where they came from (a
  JSON-pointer-ish ``pointer`` such as ``test_keys.queries[2]``), at which hop of
  the redirect chain they happened (``depth``) and whether they were on the path
  that fetched the page (``fetch_body``). OONI's probe writes ``depth=N`` and
  ``fetch_body=true|false`` tags; when they are missing (older data, other
  probes) both are inferred from transaction ids, host names and ports.
* `AddressJudge` says whether resolved addresses agree with the control: same
  address, same AS number (from ``control.ip_info`` or the answers' ``asn``), or,
  in Web Connectivity v0.5, a TLS handshake with the right SNI that verified.
  Bogons are never valid unless the control resolved the very same address.
* `http_diff()` is OONI's legacy body-length / status-code / headers / title
  comparison of the final response with the control's.

Everything here is pure: dictionaries in, frozen values out. Stored verdict
fields (``blocking``, ``accessible``, ``dns_consistency``, ``*_match``) are never read.

Speed matters (``analyze`` runs this over every measurement; bench/verdict.py times
it): the pure functions of one string (IP parsing, IDNA, URL splitting, endpoints; in
`model.webparts`) are memoised in bounded LRU caches, each record's tags are read once, and
the records' ``__init__`` fills the instance dict in one step (`model.frozen.quick_init`)
instead of one ``object.__setattr__`` per field, which is what frozen dataclasses otherwise cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeGuard

from tamperscope.model.charset import decode_body
from tamperscope.model.frozen import cached_property, quick_init
from tamperscope.model.webparts import (
    MEMO_SIZE,
    body_bytes,
    endpoint,
    header_pairs,
    idna_host,
    is_bogon,
    is_ip,
    join_url,
    page_title,
    parse_version,
    split_endpoint,
    url_host,
    url_parts,
    url_port,
    url_scheme,
)

# Engines that stand for "the resolver the user's browser would use".
SYSTEM_ENGINES = frozenset({"getaddrinfo", "system", "golang_net_resolver", "go", "android", "stdlib"})
# Encrypted transports: an on-path censor cannot forge their answers, so their failures
# say something about the DNS service, not about the measured site (ooni/probe#2274).
ENCRYPTED_ENGINES = frozenset({"doh", "dot", "doq", "doh3"})
# Failures that mean "the name has no address", as opposed to "the lookup broke".
NXDOMAIN_FAILURES = frozenset({"dns_nxdomain_error", "dns_name_error", "android_dns_cache_no_data"})
NO_ANSWER_FAILURES = frozenset({"dns_no_answer", "dns_no_answer_error"})

_DEPTH_TAG = "depth="
_FETCH_TAG = "fetch_body="
# Headers every server sends; they say nothing about whether two pages are the same.
COMMON_HEADERS = frozenset({
    "date", "content-type", "server", "cache-control", "vary", "set-cookie", "location",
    "expires", "x-powered-by", "content-encoding", "last-modified", "accept-ranges",
    "pragma", "x-frame-options", "etag", "x-content-type-options", "age", "via", "p3p",
    "x-xss-protection", "content-language", "cf-ray", "strict-transport-security", "link",
    "x-varnish",
})
BODY_PROPORTION_FACTOR = 0.7  # OONI: bodies "match" when the smaller is > 70% of the larger

# --------------------------------------------------------------------------- records


@quick_init
@dataclass(frozen=True)
class Query:
    """One DNS lookup (or one late/duplicate response to it)."""

    pointer: str              # e.g. "test_keys.queries[2]"
    engine: str               # "getaddrinfo", "udp", "doh", ...
    resolver: str             # resolver address, "" for the system resolver
    hostname: str
    query_type: str           # "A", "AAAA", "ANY"
    transaction_id: int | None
    failure: str | None
    addrs: tuple[str, ...]    # A/AAAA answers, in answer order
    depth: int                # hop of the redirect chain, 0 = the input URL
    late: bool                # True for x_dns_duplicate_responses entries

    @cached_property
    def key(self) -> tuple[str, str, str, str, int | None]:
        """Identifies "the same question": responses sharing it are duplicates."""
        return (self.engine, self.resolver, self.hostname, self.query_type, self.transaction_id)

    @property
    def encrypted(self) -> bool:
        return self.engine in ENCRYPTED_ENGINES


@quick_init
@dataclass(frozen=True)
class Connect:
    """One TCP connect attempt."""

    pointer: str
    ip: str
    port: int
    failure: str | None
    transaction_id: int | None
    depth: int
    fetch_body: bool          # on the path that fetched the page (vs. a connectivity check)

    @cached_property
    def endpoint(self) -> str:
        return endpoint(self.ip, self.port)


@quick_init
@dataclass(frozen=True)
class Handshake:
    """One TLS handshake."""

    pointer: str
    ip: str
    port: int
    server_name: str
    failure: str | None
    transaction_id: int | None
    depth: int
    fetch_body: bool
    verified: bool            # False when the probe skipped certificate verification

    @cached_property
    def endpoint(self) -> str:
        return endpoint(self.ip, self.port)


@quick_init
@dataclass(frozen=True)
class Exchange:
    """One HTTP round trip of the redirect chain."""

    pointer: str
    url: str
    failure: str | None
    status_code: int          # 0 when no response head was received
    body: bytes
    body_truncated: bool
    headers: tuple[tuple[str, str], ...]
    transaction_id: int | None
    depth: int
    ip: str | None            # peer address when recorded

    @property
    def scheme(self) -> str:
        return url_scheme(self.url)

    @property
    def host(self) -> str:
        return url_host(self.url)

    @property
    def port(self) -> int:
        return url_port(self.url)

    @property
    def location(self) -> str | None:
        for name, value in self.headers:
            if name.lower() == "location" and value:
                return join_url(self.url, value)
        return None

    @property
    def is_final(self) -> bool:
        """A successful response that ends the chain (not a redirect to follow)."""
        if self.failure is not None or self.status_code <= 0:
            return False
        return not (300 <= self.status_code < 400 and self.location)

    def text(self) -> str:
        return self._text

    def title(self) -> str:
        """The page's <title>, decoded as the body is (computed once)."""
        return self._title

    @cached_property
    def _text(self) -> str:  # decoded once: the fingerprint scan and the title both read it
        return decode_body(self.body, self.headers)  # in the charset it declares when it is no UTF-8

    @cached_property
    def _title(self) -> str:
        return page_title(self._text)

    def header_map(self) -> dict[str, str]:
        return {name: value for name, value in self.headers}


@quick_init
@dataclass(frozen=True)
class ControlHTTP:
    """What the control fetched for the input URL."""

    failure: str | None
    status_code: int
    body_length: int
    title: str
    headers: tuple[tuple[str, str], ...]


@quick_init
@dataclass(frozen=True)
class Control:
    """The test helper's view of the same URL (None fields: the control did not say)."""

    dns_failure: str | None
    dns_addrs: tuple[str, ...] | None          # None: no DNS section at all
    tcp: Mapping[str, str | None]              # "ip:port" -> failure (None = connected)
    tls: Mapping[str, tuple[str | None, str]]  # "ip:port" -> (failure, server_name)
    http: ControlHTTP | None
    asns: Mapping[str, int]                    # ip -> AS number (0 = unknown)

    @property
    def resolved(self) -> bool:
        return bool(self.dns_addrs)


@quick_init
@dataclass(frozen=True)
class Observations:
    """Everything the verdict needs, normalised."""

    version: tuple[int, int]                   # (0, 4) or (0, 5); (0, 5) when unknown
    url: str                                   # the URL the control was asked about
    host: str                                  # its host name, IDNA-encoded, lower case
    queries: tuple[Query, ...]
    late_responses: tuple[Query, ...]
    connects: tuple[Connect, ...]
    handshakes: tuple[Handshake, ...]
    exchanges: tuple[Exchange, ...]            # chronological: input URL first
    control: Control | None                    # None when missing or control_failure is set
    control_failure: str | None
    answer_asns: Mapping[str, int]             # ip -> AS number seen in any answer
    hop_hosts: tuple[str, ...]                 # host of each hop, index = depth

    @cached_property
    def max_depth(self) -> int:
        depths = [q.depth for q in self.queries]
        depths += [c.depth for c in self.connects]
        depths += [h.depth for h in self.handshakes]
        depths += [e.depth for e in self.exchanges]
        return max(depths, default=0)

    def asn(self, ip: str) -> int:
        if self.control is not None and self.control.asns.get(ip):
            return self.control.asns[ip]
        return self.answer_asns.get(ip, 0)


# --------------------------------------------------------------------------- helpers


def _is_map(value: Any) -> TypeGuard[Mapping[str, Any]]:
    # JSON gives plain dicts: skip the (slow) ABC check for them.
    return type(value) is dict or isinstance(value, Mapping)


_NO_TAGS: tuple[int | None, bool | None] = (None, None)


def _small_number(text: str) -> bool:
    """ASCII digits that `int` takes (not "²", not 5,000 digits: hostile tags must not raise)."""
    return 0 < len(text) <= 9 and text.isascii() and text.isdigit()


def _tags(record: Mapping[str, Any]) -> tuple[int | None, bool | None]:
    """(the first ``depth=N`` tag's N, the first ``fetch_body=`` tag's value), None when absent."""
    tags = record.get("tags")
    if not tags or not isinstance(tags, list):
        return _NO_TAGS
    try:
        return _parse_tags(tuple(tags))  # a handful of distinct tag lists in practice
    except TypeError:  # unhashable junk among the tags
        return _parse_tags.__wrapped__(tags)


@lru_cache(maxsize=1024)
def _parse_tags(tags: Sequence[Any]) -> tuple[int | None, bool | None]:
    depth: int | None = None
    fetch_body: bool | None = None
    for tag in tags:
        if not isinstance(tag, str):
            continue
        if depth is None and tag.startswith(_DEPTH_TAG) and _small_number(tag[6:]):
            depth = int(tag[6:])
        elif fetch_body is None and tag.startswith(_FETCH_TAG):
            fetch_body = tag[11:] == "true"
    return depth, fetch_body


def _tag_depth(record: Mapping[str, Any]) -> int | None:
    return _tags(record)[0]


def _int(value: Any, default: int = 0) -> int:
    return value if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)) else default


def _tx(record: Mapping[str, Any]) -> int | None:
    value = record.get("transaction_id")
    return value if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)) else None


def _str(value: Any) -> str:
    return value if type(value) is str or isinstance(value, str) else ""


def _failure(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _records(value: Any) -> list[tuple[int, Mapping[str, Any]]]:
    """The objects of a JSON list, each with its index in that list: the index its pointer names (an item that
    is no object is skipped, not renumbered, so ``test_keys.queries[2]`` is the third item whatever precedes it)."""
    if not isinstance(value, list):
        return []
    return [(i, v) for i, v in enumerate(value) if type(v) is dict or isinstance(v, Mapping)]


# --------------------------------------------------------------------------- observe


def observe(measurement: Mapping[str, Any]) -> Observations:
    """Normalise one measurement; tolerant of missing and malformed fields."""
    tk = measurement.get("test_keys")
    tk = tk if _is_map(tk) else {}
    request = tk.get("x_control_request")
    url = _str(request.get("http_request")) if _is_map(request) else ""
    url = url or _str(measurement.get("input"))
    host = url_host(url)

    exchanges = _exchanges(tk, url)
    hops = _hop_hosts(exchanges, host)
    answer_asns: dict[str, int] = {}  # filled by _query: queries first, then late responses
    queries = tuple([_query(f"test_keys.queries[{i}]", q, False, hops, answer_asns)
                     for i, q in _records(tk.get("queries"))])
    late = tuple([_query(f"test_keys.x_dns_duplicate_responses[{i}]", q, True, hops, answer_asns)
                  for i, q in _records(tk.get("x_dns_duplicate_responses"))])
    ip_host = _ip_hostnames(queries)
    tx_depth = {e.transaction_id: e.depth for e in exchanges if e.transaction_id is not None}
    locate = _Locator(hops, tx_depth, ip_host, exchanges, url)
    connects = tuple([_connect(i, c, locate) for i, c in _records(tk.get("tcp_connect"))])
    handshakes = tuple([_handshake(i, h, locate) for i, h in _records(tk.get("tls_handshakes"))])

    control_failure = _failure(tk.get("control_failure"))
    control = _control(tk.get("control")) if control_failure is None else None
    return Observations(
        version=parse_version(measurement.get("test_version")),
        url=url,
        host=host,
        queries=queries,
        late_responses=late,
        connects=connects,
        handshakes=handshakes,
        exchanges=exchanges,
        control=control,
        control_failure=control_failure,
        answer_asns=answer_asns,
        hop_hosts=hops,
    )


def request_order(raw: Sequence[Mapping[str, Any]], input_url: str,
                  tag_depths: Sequence[int | None] | None = None) -> list[int]:
    """The positions of ``raw`` (a measurement's requests, its objects only) oldest first: by the depths their
    tags give when each has one, else OONI's order (newest first) reversed, unless the list clearly starts at
    the input. The verdict and the explorer's page both read a redirect chain in this order."""
    depths = [_tag_depth(r) for r in raw] if tag_depths is None else tag_depths
    order = list(range(len(raw)))
    if raw and None not in depths:
        # OONI lists the newest first; with equal depths keep that order reversed.
        order.sort(key=lambda i: (depths[i] or 0, -i))
    elif len(raw) > 1 and not (_same_url(_request_url(raw[0]), input_url)
                               and not _same_url(_request_url(raw[-1]), input_url)):
        order.reverse()  # OONI order (newest first) unless the list clearly starts at the input
    return order


def _exchanges(tk: Mapping[str, Any], input_url: str) -> tuple[Exchange, ...]:
    indexed = _records(tk.get("requests"))
    raw = [item for _, item in indexed]
    tag_depths = [_tag_depth(r) for r in raw]
    order = request_order(raw, input_url, tag_depths)
    out = []
    for depth, index in enumerate(order):
        item = raw[index]
        response = item.get("response")
        response = response if _is_map(response) else {}
        tag_depth = tag_depths[index]
        address = _str(item.get("address"))
        out.append(Exchange(
            pointer=f"test_keys.requests[{indexed[index][0]}]",
            url=_request_url(item),
            failure=_failure(item.get("failure")),
            status_code=_int(response.get("code")),
            body=body_bytes(response.get("body")),
            body_truncated=response.get("body_is_truncated") is True,  # a string "false" is no flag
            headers=header_pairs(response),
            transaction_id=_tx(item),
            depth=tag_depth if tag_depth is not None else depth,
            ip=split_endpoint(address)[0] if address else None,
        ))
    return tuple(out)


@lru_cache(maxsize=MEMO_SIZE)
def _same_url(a: str, b: str) -> bool:
    """Equal up to case, IDNA, default ports and an empty path."""
    pa, pb = url_parts(a), url_parts(b)
    return (pa.scheme.lower(), url_host(a), url_port(a), pa.path or "/", pa.query) == \
        (pb.scheme.lower(), url_host(b), url_port(b), pb.path or "/", pb.query)


def _request_url(item: Mapping[str, Any]) -> str:
    request = item.get("request")
    return _str(request.get("url")) if _is_map(request) else ""


def _hop_hosts(exchanges: Sequence[Exchange], host: str) -> tuple[str, ...]:
    """Host of each hop; a trailing redirect whose target was never fetched adds a hop."""
    hops = [e.host for e in exchanges] or [host]
    pending = _pending_redirect(exchanges)
    if pending is not None:
        hops.append(url_host(pending))
    return tuple(hops)


def _pending_redirect(exchanges: Sequence[Exchange]) -> str | None:
    """The target of a last redirect that was never fetched (an earlier step failed)."""
    last = exchanges[-1] if exchanges else None
    if last is None or last.failure is not None or not 300 <= last.status_code < 400:
        return None
    return last.location


def _query(pointer: str, q: Mapping[str, Any], late: bool, hops: Sequence[str],
           answer_asns: dict[str, int]) -> Query:
    """One lookup; also records the AS number of each answer in ``answer_asns`` (first wins)."""
    get = q.get
    hostname = get("hostname")
    hostname = idna_host(hostname if isinstance(hostname, str) else "")
    tags = get("tags")
    depth = _tags(q)[0] if tags else None
    if depth is None:
        depth = hops.index(hostname) if hostname in hops else 0
    addrs = []
    answers = get("answers")
    for answer in answers if isinstance(answers, list) else ():
        if not (type(answer) is dict or isinstance(answer, Mapping)):
            continue
        kind = answer.get("answer_type")
        ipv4 = answer.get("ipv4")
        if kind == "A":
            if isinstance(ipv4, str) and is_ip(ipv4):
                addrs.append(ipv4)
        elif kind == "AAAA":
            ipv6 = answer.get("ipv6")
            if isinstance(ipv6, str) and is_ip(ipv6):
                addrs.append(ipv6)
        ip = ipv4 or answer.get("ipv6")
        if isinstance(ip, str) and ip not in answer_asns:
            asn = _int(answer.get("asn"))
            if asn > 0:
                answer_asns[ip] = asn
    engine, resolver, qtype, tx, failure = (
        get("engine"), get("resolver_address"), get("query_type"), get("transaction_id"), get("failure"))
    return Query(
        pointer,
        engine.lower() if isinstance(engine, str) else "",
        resolver if isinstance(resolver, str) else "",
        hostname,
        qtype.upper() if isinstance(qtype, str) else "",
        tx if type(tx) is int or (isinstance(tx, int) and not isinstance(tx, bool)) else None,
        failure if failure and isinstance(failure, str) else None,
        tuple(addrs),
        depth,
        late,
    )


def _ip_hostnames(queries: Iterable[Query]) -> dict[str, str]:
    out: dict[str, str] = {}
    for q in queries:
        for ip in q.addrs:
            out.setdefault(ip, q.hostname)
    return out


@quick_init
@dataclass(frozen=True)
class _Locator:
    """Infers depth and fetch_body for TCP/TLS records that carry no tags."""

    hops: Sequence[str]
    tx_depth: Mapping[int, int]
    ip_host: Mapping[str, str]
    exchanges: Sequence[Exchange]
    input_url: str

    def depth(self, tagged: int | None, tx: int | None, host: str, port: int) -> int:
        """The record's ``depth=`` tag (``tagged``), else its transaction's hop, else by host and port."""
        if tagged is not None:
            return tagged
        if tx is not None and tx in self.tx_depth:
            return self.tx_depth[tx]
        same_host = [d for d, h in enumerate(self.hops) if h == host]
        same_port = [d for d in same_host if self.hop_port(d) == port]
        return max(same_port or same_host or [0])

    def hop_port(self, depth: int) -> int:
        for e in self.exchanges:
            if e.depth == depth:
                return e.port
        pending = _pending_redirect(self.exchanges)
        if depth > 0 and pending is not None:
            return url_port(pending)
        return url_port(self.input_url) if self.input_url else 0

    def fetch_body(self, tagged: bool | None, depth: int, port: int) -> bool:
        """The record's ``fetch_body=`` tag (``tagged``), else whether the hop's URL has its port."""
        return tagged if tagged is not None else self.hop_port(depth) in (port, 0)


def _connect(index: int, c: Mapping[str, Any], locate: _Locator) -> Connect:
    status = c.get("status")
    status = status if _is_map(status) else {}
    ip, port = _str(c.get("ip")), _int(c.get("port"))
    tx = _tx(c)
    tag_depth, tag_fetch = _tags(c)
    depth = locate.depth(tag_depth, tx, locate.ip_host.get(ip, ip), port)
    return Connect(f"test_keys.tcp_connect[{index}]", ip, port, _failure(status.get("failure")), tx, depth,
                   locate.fetch_body(tag_fetch, depth, port))


def _handshake(index: int, h: Mapping[str, Any], locate: _Locator) -> Handshake:
    ip, port = split_endpoint(_str(h.get("address")))
    server_name = idna_host(_str(h.get("server_name")))
    tx = _tx(h)
    tag_depth, tag_fetch = _tags(h)
    depth = locate.depth(tag_depth, tx, server_name or locate.ip_host.get(ip, ip), port)
    return Handshake(f"test_keys.tls_handshakes[{index}]", ip, port, server_name, _failure(h.get("failure")), tx,
                     depth, locate.fetch_body(tag_fetch, depth, port), not h.get("no_tls_verify"))


def _control(raw: Any) -> Control | None:
    if not raw or not _is_map(raw):
        return None
    dns = raw.get("dns")
    dns_addrs: tuple[str, ...] | None = None
    dns_failure = None
    if _is_map(dns):
        dns_failure = _failure(dns.get("failure"))
        addrs = dns.get("addrs")
        dns_addrs = tuple([a for a in addrs if isinstance(a, str)]) if isinstance(addrs, list) else ()
    tcp = {
        _normal_endpoint(key): _control_outcome(value)
        for key, value in _mapping(raw.get("tcp_connect")).items() if _is_map(value)
    }
    tls = {
        _normal_endpoint(key): (_control_outcome(value), idna_host(_str(value.get("server_name"))))
        for key, value in _mapping(raw.get("tls_handshake")).items() if _is_map(value)
    }
    asns = {}
    for ip, info in _mapping(raw.get("ip_info")).items():
        if _is_map(info):
            asn = _int(info.get("asn"))
            if asn > 0:
                asns[str(ip)] = asn
    return Control(dns_failure, dns_addrs, tcp, tls, _control_http(raw.get("http_request")), asns)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if _is_map(value) else {}


def _control_outcome(value: Mapping[str, Any]) -> str | None:
    """None when the control succeeded, else its failure string."""
    if value.get("status") is True and not value.get("failure"):
        return None
    return _failure(value.get("failure")) or "unknown_failure"


def _normal_endpoint(key: str) -> str:
    return _normal_endpoint_of(key if type(key) is str else str(key))


@lru_cache(maxsize=MEMO_SIZE)
def _normal_endpoint_of(key: str) -> str:
    ip, port = split_endpoint(key)
    return endpoint(ip, port)


def _control_http(raw: Any) -> ControlHTTP | None:
    """The control's fetch, or None when there is none to compare with: missing, or a success without an HTTP
    status (``{}``, a status that is a string, null or 10**30: a broken or hostile helper), which compared as
    status 0 and body length 0 made any page a blockpage ("http-diff")."""
    if not _is_map(raw):
        return None
    failure = _failure(raw.get("failure"))
    status = _int(raw.get("status_code"))
    if failure is None and not 100 <= status <= 599:
        return None
    headers = raw.get("headers")
    return ControlHTTP(
        failure, status, _int(raw.get("body_length")),
        _str(raw.get("title")),
        tuple([(str(k), _str(v)) for k, v in headers.items()]) if _is_map(headers) else (),
    )


# --------------------------------------------------------------------------- DNS consistency


@quick_init
@dataclass(frozen=True)
class AddressJudge:
    """Decides whether resolved addresses agree with the control.

    ``use_tls`` switches on the v0.5 rule: an address with which the probe completed a
    verified TLS handshake for the looked-up name is legitimate even when the control
    resolved something else (geo-DNS, CDNs, anycast): OONI's commonest false positive.
    """

    obs: Observations
    use_tls: bool

    def tls_validated(self, ip: str, hostname: str) -> bool:
        return self.use_tls and any(
            h.ip == ip and h.failure is None and h.verified and h.server_name == hostname
            for h in self.obs.handshakes
        )

    def control_asns(self) -> frozenset[int]:
        control = self.obs.control
        addrs = control.dns_addrs or () if control is not None else ()
        return frozenset(a for a in (self.obs.asn(ip) for ip in addrs) if a > 0)

    @cached_property
    def _control_addrs(self) -> frozenset[str]:
        control = self.obs.control
        return frozenset(control.dns_addrs or ()) if control is not None else frozenset()

    @cached_property
    def _control_asns(self) -> frozenset[int]:
        return self.control_asns()

    def consistent(self, addrs: Sequence[str], hostname: str) -> bool | None:
        """True/False for a set of answers; None when there is nothing to compare with."""
        if not addrs:
            return None
        control = self.obs.control
        control_addrs = self._control_addrs
        if any(is_bogon(ip) and ip not in control_addrs for ip in addrs):
            return False
        if not control_addrs.isdisjoint(addrs):
            return True
        asns = self._control_asns
        if asns and any(self.obs.asn(ip) in asns for ip in addrs if not is_bogon(ip)):
            return True
        if any(self.tls_validated(ip, hostname) for ip in addrs):
            return True
        if control is None or control.dns_addrs is None:
            return None  # no control DNS to compare with, and TLS did not vouch either
        # The control resolved other addresses, or none at all (NXDOMAIN: "ghost" DNS).
        return False


# --------------------------------------------------------------------------- HTTP diff


@quick_init
@dataclass(frozen=True)
class HTTPDiff:
    """OONI's comparison of the final response with the control's (None = not applicable)."""

    body_proportion: float | None
    body_length_match: bool | None
    status_code_match: bool | None
    headers_match: bool | None
    title_match: bool | None

    @property
    def is_diff(self) -> bool:
        """OONI's rule: same status and at least one of body length, headers or title."""
        if self.status_code_match is not True:
            return True
        return not (self.body_length_match or self.headers_match or self.title_match)


def http_diff(response: Exchange, control: ControlHTTP, version: tuple[int, int]) -> HTTPDiff:
    proportion = _body_proportion(response, control)
    return HTTPDiff(
        body_proportion=proportion,
        body_length_match=None if proportion is None else proportion > BODY_PROPORTION_FACTOR,
        status_code_match=_status_match(response.status_code, control.status_code, version),
        headers_match=_headers_match(response, control, version),
        title_match=_title_match(response, control, version),
    )


def _body_proportion(response: Exchange, control: ControlHTTP) -> float | None:
    measured = len(response.body)
    if control.body_length <= 0 or response.body_truncated or measured <= 0:
        return None
    return min(measured, control.body_length) / max(measured, control.body_length)


def _status_match(measured: int, control: int, version: tuple[int, int]) -> bool | None:
    if measured <= 0 or control <= 0:
        return None
    if measured == control:
        return True
    # v0.4 (and Measurement Kit) skip when the control got a 5xx; v0.5 unless it got a 2xx.
    skip = control // 100 == 5 if version < (0, 5) else control // 100 != 2
    return None if skip else False


def _headers_match(response: Exchange, control: ControlHTTP, version: tuple[int, int]) -> bool | None:
    if version < (0, 5):
        if response.status_code <= 0 or control.status_code <= 0:
            return None
    elif not response.headers or not control.headers:
        return None
    ours = {name.lower() for name, _ in response.headers}
    theirs = {name.lower() for name, _ in control.headers}
    if ours == theirs:
        return True
    return bool((ours - COMMON_HEADERS) & (theirs - COMMON_HEADERS))


def _title_match(response: Exchange, control: ControlHTTP, version: tuple[int, int]) -> bool | None:
    if response.status_code <= 0 or response.body_truncated or control.status_code <= 0:
        return None
    measured = response._title
    if not measured or (version >= (0, 5) and not control.title):
        return None
    # Words of 5+ bytes, order ignored: all of them must appear in both titles.
    return title_words(measured) == title_words(control.title)


def title_words(title: str) -> set[str]:
    """The words OONI's title match compares: those of five bytes or more, lower-cased."""
    return {word.lower() for word in title.split(" ") if len(word.encode("utf-8")) >= 5}
