"""What the remote nettests share: the vantage they measure through, the domain, and where they may connect.

A remote nettest (remote_dns, remote_web) measures a domain through in-country infrastructure (a
resolver or a web server: the vantage) from outside. Its options come from the run context:

- ``vantage``: the vantage's IP address (required);
- ``control_domain``: an innocuous domain the vantage must answer before and after (default example.com);
- ``tries``: attempts for the domain, since remote vantages drop packets (remote_dns 3, remote_web 2);
- ``allow``: networks the measurer may connect to although they are not public addresses (the lab's
  198.18.0.0/15). Answers outside public space and these networks are never contacted: a censor's
  127.0.0.1 must not make the measurer talk to itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..model.inputs import BadInput, check_host
from ..model.signature import signature_from
from ..model.verdict import BlockpageMatcher, Verdict
from .base import Context, NettestError

DEFAULT_CONTROL_DOMAIN = "example.com"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def domain_name(input: str | None, nettest: str) -> str:
    """The input as the domain a query or a Host header carries; NettestError (one line) if it is none."""
    if not input:
        raise NettestError(f"{nettest} needs an input domain")
    name = input.strip()
    if not name.islower():  # most names of a long list are lower-case already: not copied
        name = name.lower()
    if "://" in name:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(name)
            name = (parts.hostname or "").lower()
            _ = parts.port  # a port out of range raises (QA: http://example.org:99999/ was taken)
        except ValueError:
            name = ""
    name = name.rstrip(".")
    try:
        if not name or ".." in name or (_address_like(name) and ipaddress_or_none(name) is not None):
            raise BadInput("")
        name = check_host(name)
    except BadInput:
        raise NettestError(f"not a domain name: {_shown(input)}") from None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise NettestError(f"not a domain name: {_shown(input)}") from None
        if ipaddress_or_none(name) is not None or name.rsplit(".", 1)[-1].isdigit():
            raise NettestError(f"not a domain name: {_shown(input)}")  # "１２７．０．０．１" is 127.0.0.1
    return name


def _address_like(name: str) -> bool:
    """Whether a name may be an IP address at all (IPv4's digits and dots, or IPv6's colons): the few that may are
    parsed, not the millions of names of a long list."""
    return ":" in name or name.replace(".", "").isdigit()


def _shown(value: str) -> str:
    """A hostile input as an error message names it: at most 100 characters of it."""
    return repr(value[:100]) + ("…" if len(value) > 100 else "")


def ipaddress_or_none(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def vantage_of(ctx: Context, nettest: str) -> str:
    vantage = ctx.options.get("vantage")
    addr = ipaddress_or_none(vantage) if isinstance(vantage, str) else None
    if addr is None or addr.is_unspecified or addr.is_multicast:
        raise NettestError(f"{nettest} needs a vantage: the IP address of an in-country server (--vantage)")
    return str(vantage)  # as given (already checked to be an address)


def tries_of(ctx: Context, default: int) -> int:
    tries = ctx.options.get("tries")
    return tries if isinstance(tries, int) and 1 <= tries <= 10 else default


def control_domain_of(ctx: Context) -> str:
    value = ctx.options.get("control_domain")
    return value if isinstance(value, str) and value else DEFAULT_CONTROL_DOMAIN


def contactable(ip: str, allow: Sequence[Network]) -> bool:
    """May the measurer connect to this address? Public unicast addresses, and the networks allowed;
    never loopback, unspecified, multicast or link-local, whatever is allowed."""
    addr = ipaddress_or_none(ip)
    if addr is None:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_loopback or addr.is_unspecified or addr.is_multicast or addr.is_link_local:
        return False
    if any(addr.version == net.version and addr in net for net in allow):
        return True
    return addr.is_global


def allowed_networks(ctx: Context) -> tuple[Network, ...]:
    value: Any = ctx.options.get("allow") or ()
    return tuple(n for n in value if isinstance(n, (ipaddress.IPv4Network, ipaddress.IPv6Network)))


def finish_with(verdict: Callable[[Mapping[str, Any], BlockpageMatcher | None], Verdict],
                measurement: dict[str, Any], ctx: Context) -> None:
    """A remote nettest's `finish`: its verdict's keys and, with --capture, the forged packets' signature
    (seen from outside)."""
    tk = measurement["test_keys"]
    tk.update(verdict(measurement, ctx.matcher).to_test_keys())
    sig = signature_from(measurement)
    if sig is not None:
        tk["x_signature"] = sig
