"""A site's ECH config, as a browser gets it: the ``ech`` parameter of its DNS HTTPS record (RFC 9460).

echcheck seals its target with it, and remote_web's ``echo_ech`` payload too. Asked over DNS-over-HTTPS when
the run has a DoH server (an on-path censor cannot strip it there), else of the public resolver over UDP; with
both, of both, so that a record stripped on its way over plain DNS shows.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any

from ..netx import NetxError, Resolver, Trace, lookup
from ..wire.ech import ECHConfig, ECHError, parse_config_list
from .base import Context


def config_resolver(ctx: Context) -> Resolver | None:
    """Where the HTTPS record is asked: the run's DoH server, else its public resolver (the system resolver may
    be the censor's); None: neither, and the target goes as GREASE."""
    doh = ctx.options.get("doh")
    if isinstance(doh, str) and doh:
        return Resolver("doh", doh, ca_bundle=ctx.ca_bundle)
    return ctx.udp_resolver


async def https_record(host: str, resolver: Resolver, tag: str, trace: Trace, ctx: Context
                        ) -> tuple[str, str | None]:
    """(the ``ech`` parameter of ``host``'s HTTPS record, base64, or ""; the lookup's failure)."""
    try:
        res = await lookup(host, "HTTPS", resolver=resolver, trace=trace, timeout=ctx.timeouts.dns, tags=(tag,))
    except NetxError as exc:  # recorded in queries
        return "", exc.failure
    published = next((a["x_ech"] for a in (res.record or {}).get("answers") or () if a.get("x_ech")), "")
    return published, res.failure


def usable_config(published: str) -> tuple[ECHConfig | None, str | None]:
    """(the first config of a published ECHConfigList, base64 as the HTTPS record gives it, that this client
    can use; why none, when there is none)."""
    try:
        configs = parse_config_list(base64.b64decode(published, validate=True))
    except (ECHError, binascii.Error, ValueError) as exc:
        return None, f"the published ECHConfigList does not parse: {exc}"
    usable = next((c for c in configs if c.usable() and sendable_name(c.public_name)), None)
    if usable is None:
        return None, (f"none of the {len(configs)} published ECH configs uses X25519 and a suite we have, "
                      "with a public name a ClientHello can carry")
    return usable, None


def sendable_name(name: str) -> bool:
    """Whether a config's public name can be the outer hello's SNI: the TLS library encodes it as IDNA, which
    refuses an empty label or one over 63 bytes ("a..b", ".a"). The config list's parser lets such names
    through, and the hello sealed for one raised out of echcheck and remote_web: no measurement was written."""
    try:
        name.encode("idna")
    except UnicodeError:
        return False
    return True


async def ech_config(host: str, trace: Trace, ctx: Context
                     ) -> tuple[str, ECHConfig | None, str | None, dict[str, Any] | None]:
    """(the ECHConfigList the site publishes, in base64, or ""; a config of it this client can use; why a
    published list cannot be used; what a plain DNS lookup lost of it). With both a DoH server and a public
    resolver, the HTTPS record is asked of both: a config that comes over DoH but not over plain DNS was
    stripped on its way (or that resolver serves no HTTPS records), a way to block ECH without touching TLS."""
    resolver = config_resolver(ctx)
    if resolver is None:
        return "", None, None, None
    compare = ctx.udp_resolver if resolver.engine == "doh" else None
    async with asyncio.TaskGroup() as tg:
        main = tg.create_task(https_record(host, resolver, "ech_config", trace, ctx))
        plain = tg.create_task(https_record(host, compare, "ech_config_plain", trace, ctx)) if compare else None
    published, _ = main.result()
    stripped = None
    if published and plain is not None and compare is not None and not plain.result()[0]:
        stripped = {"resolver": f"{compare.address}:{compare.port or 53}", "failure": plain.result()[1]}
    if not published:
        return "", None, None, None
    usable, why = usable_config(published)
    return published, usable, why, stripped
