"""stunreachability: can this network reach a STUN server (ooni/spec ts-025)?

Voice and video calls, WebRTC and Tor's Snowflake find their way through NAT with STUN servers, and
censors block them by address or by name. The input is ``stun://HOST[:PORT]`` (port 3478 by default),
or ``HOST[:PORT]``; without one, `DEFAULT_INPUTS`. A name is resolved first (its ``queries`` are
recorded, and a DNS failure is the measurement's failure; a name answered with an address no public server
has, 127.0.0.2 or a private network's, is ``dns_bogon_error`` and nothing is sent there); then one binding
request goes to the first address over UDP, retransmitted as RFC 5389 says until the connect timeout.

``test_keys``: OONI's ``endpoint`` (``host:port`` as given), ``failure`` (null when the server
answered), ``queries``, ``x_dns_duplicate_responses`` (the answers that came after the first: an injector
races the resolver) and ``network_events``; ours: ``x_address`` (the address asked, ``ip:port``),
``x_requests`` (how many were sent, retransmissions included) and ``x_ignored`` (datagrams that were
no answer). The address the server saw, which behind NAT is this probe's public one, is not recorded:
the probe learns it, and scrubs it from this and every later measurement.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..model import failures as F
from ..model.services import is_lie
from ..model.stunverdict import stun_verdict
from ..netx import Trace
from ..netx.stun import binding
from .base import Context, NettestError, first_address
from .control import learn_own_address

NAME = "stunreachability"
VERSION = "0.1.0"
NEEDS_INPUT = True
DEFAULT_PORT = 3478
# Measured when no input is given: public STUN servers that calls, WebRTC applications and Tor's Snowflake are
# commonly configured with (a censor blocking calls blocks these). Each is contacted once per run.
DEFAULT_INPUTS = (
    "stun://stun.l.google.com:19302",
    "stun://stun1.l.google.com:19302",
    "stun://stun.cloudflare.com:3478",
    "stun://stun.nextcloud.com:3478",
    "stun://global.stun.twilio.com:3478",
    "stun://stun.voip.blackberry.com:3478",
    "stun://stun.stunprotocol.org:3478",
    "stun://stun.ekiga.net:3478",
)


class Config:
    """No options: the resolver is the run's (``--resolver``, else the system's)."""


def endpoint_of(input: str) -> tuple[str, int]:
    """(host, port) of ``stun://host[:port]`` or ``host[:port]``; NettestError when it is neither."""
    spec = input.strip()
    if "://" in spec and not spec.lower().startswith("stun://"):
        raise NettestError(f"not a STUN endpoint (stun://HOST[:PORT]): {input!r}")
    try:
        parts = urlsplit(spec if "://" in spec else f"stun://{spec}")
        port = DEFAULT_PORT if parts.port is None else parts.port
        host = (parts.hostname or "").rstrip(".")
    except ValueError:
        raise NettestError(f"not a STUN endpoint (stun://HOST[:PORT]): {input!r}") from None
    if port == 0:  # was taken as "no port", and 3478 asked: port 0 names no server
        raise NettestError(f"not a STUN endpoint (stun://HOST[:PORT]): {input!r}: port 0")
    if not host or not host.isprintable() or parts.path not in ("", "/") or parts.query or parts.fragment \
            or parts.username or any(c.isspace() for c in host) or len(host) > 253 or ".." in host:
        raise NettestError(f"not a STUN endpoint (stun://HOST[:PORT]): {input!r}")
    return host, port


def check_input(input: str) -> None:
    endpoint_of(input)


async def run(input: str | None, ctx: Context) -> dict[str, Any]:
    if not input:
        raise NettestError("stunreachability needs an input: stun://HOST[:PORT]")
    host, port = endpoint_of(input)
    trace = Trace()
    t = ctx.timeouts
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    tk: dict[str, Any] = {"endpoint": shown, "failure": None, "x_address": None, "x_requests": 0, "x_ignored": 0}
    async with trace:
        ip, tk["failure"] = await first_address(host, ctx, trace)
        if ip is not None and ip != host and is_lie(ip):
            # the name answered with an address no public server has (127.0.0.2, a private network): a resolver's
            # or an injector's lie, and a binding request there would go to this machine or its LAN
            ip, tk["failure"] = None, F.DNS_BOGON_ERROR
        if ip is not None:
            result = await binding(ip, port, trace=trace, timeout=t.connect)
            tk.update(failure=result.failure, x_address=result.address, x_requests=result.sent,
                      x_ignored=result.ignored)
            if result.mapped is not None:
                learn_own_address(ctx, result.mapped[0])  # scrubbed by the engine; never recorded
    keys = trace.test_keys()
    tk["queries"] = keys["queries"]
    tk["x_dns_duplicate_responses"] = keys["x_dns_duplicate_responses"]  # an injector's race: the real answer too
    tk["network_events"] = keys["network_events"]
    return tk


def finish(measurement: dict[str, Any], ctx: Context) -> None:
    measurement["test_keys"].update(stun_verdict(measurement).to_test_keys())
