"""Shared parts of the middlebox nettests: talk to an echo backend over raw TCP.

The backend returns exactly the bytes it received (the lab's echo service, or
any TCP echo on port 80 given with --backend). Whatever sits on the path and
rewrites requests (a transparent proxy) shows up as a difference between what
was sent and what came back. Exchanges are traced like every other operation.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..netx import NetxError, Trace, tcp_connect
from .base import Context, NettestError

MAX_ECHO = 65536
ECHO_TIMEOUT = 3.0  # seconds an echo may take before the request counts as swallowed
QUIET = 0.3  # seconds of silence that end an echo once as many bytes as sent came back


@dataclass(frozen=True)
class Exchange:
    sent: str
    received: str | None
    failure: str | None


def backend_endpoint(ctx: Context, input: str | None) -> tuple[str, int]:
    """(ip, port) of the echo backend: --input, else --backend/TAMPERSCOPE_ECHO."""
    spec = input or ctx.backend
    if not spec:
        raise NettestError("needs an echo backend: --backend HOST[:PORT] (in the lab, TAMPERSCOPE_ECHO)")
    if "://" not in spec:
        spec = "tcp://" + spec
    parts = urlsplit(spec)
    try:
        port = parts.port or 80
    except ValueError:
        raise NettestError(f"bad backend {spec!r}") from None
    if not parts.hostname:
        raise NettestError(f"bad backend {spec!r}")
    return parts.hostname, port


async def echo_exchange(ip: str, port: int, payload: bytes, *, trace: Trace, timeout: float) -> Exchange:
    """Send `payload`, half-close, read everything back (until EOF, 64 KiB or `timeout`)."""
    sent = payload.decode("latin-1")
    try:
        stream = await tcp_connect(ip, port, trace=trace, timeout=timeout)
    except NetxError as e:
        return Exchange(sent, None, e.failure)
    got = bytearray()
    failure = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        await stream.write(payload)
        while len(got) < MAX_ECHO:
            # Everything came back (or more, from a rewriting proxy): wait only briefly for the rest.
            left = deadline - loop.time() if len(got) < len(payload) else min(QUIET, deadline - loop.time())
            if left <= 0:
                break
            try:
                async with asyncio.timeout(left):
                    data = await stream.read()
            except TimeoutError:
                if not got:
                    failure = "generic_timeout_error"  # connected, then silence: swallowed
                break
            if not data:
                break
            got += data
            if got == payload:
                break
    except NetxError as e:
        failure = e.failure
    except OSError as e:
        from ..netx import classify

        failure = classify(e, operation="read")
    finally:
        await stream.aclose()
    swallowed = failure == "generic_timeout_error"
    return Exchange(sent, bytes(got).decode("latin-1") if got or failure is None or swallowed else None, failure)


def verdict_keys(tampered: bool, reached: bool) -> dict[str, Any]:
    """The verdict keys of a middlebox nettest. Nothing back from the echo (`reached` false) means the
    helper could not be measured against: a failure, neither accessible nor not."""
    if not reached:
        return {"x_mechanism": "none", "blocking": None, "accessible": None, "x_confidence": 0.0,
                "x_status": "failure"}
    return {"x_mechanism": "middlebox" if tampered else "none", "blocking": False, "accessible": True,
            "x_confidence": 0.9 if tampered else 0.8, "x_status": "anomaly" if tampered else "ok"}
