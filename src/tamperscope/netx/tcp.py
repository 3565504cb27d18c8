"""Traced TCP connect: one ``tcp_connect`` record (and a ``connect`` network event) per attempt.

``connect`` dials one ``ip:port`` (never a name: which address to use is the
caller's decision, so DNS manipulation stays visible) under its own timeout.
It returns a :class:`~tamperscope.netx.stream.TCPStream` or raises
:class:`~tamperscope.netx.classify.NetxError` whose ``failure`` is the one
already written in the record (``connection_refused``, ``generic_timeout_error``,
``host_unreachable``, ...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tamperscope.model import failures as F
from tamperscope.netx.classify import NetxError, classify
from tamperscope.netx.stream import TCPStream
from tamperscope.netx.trace import Trace, endpoint

DEFAULT_CONNECT_TIMEOUT = 10.0


async def connect(ip: str, port: int, *, trace: Trace, timeout: float = DEFAULT_CONNECT_TIMEOUT,
                  tags: Sequence[str] = (), transaction_id: int | None = None) -> TCPStream:
    """Connect to ``ip:port`` within ``timeout`` seconds, recording the attempt in ``trace``.

    The returned stream carries ``transaction_id`` (fresh unless given), which the
    TLS handshake and HTTP requests over it reuse, as OONI does.
    """
    tid = trace.next_transaction_id() if transaction_id is None else transaction_id
    address = endpoint(ip, port)
    t0 = trace.now()
    try:
        async with asyncio.timeout(timeout):
            stream = await TCPStream.open(ip, port, transaction_id=tid, trace=trace, address=address)
    except BaseException as exc:
        failure = classify(exc, operation=F.CONNECT)
        _record(trace, ip, port, address, t0, failure, tid, tags)
        if isinstance(exc, Exception):
            raise NetxError(failure, operation=F.CONNECT, endpoint=address) from exc
        raise
    _record(trace, ip, port, address, t0, None, tid, tags)
    return stream


def _record(trace: Trace, ip: str, port: int, address: str, t0: float, failure: str | None,
            tid: int, tags: Sequence[str]) -> None:
    trace.add_tcp_connect(ip, port, t0=t0, failure=failure, transaction_id=tid, tags=tags)
    if trace.record_io:
        trace.add_network_event(F.CONNECT, t0=t0, transaction_id=tid, address=address,
                                proto="tcp", failure=failure)
