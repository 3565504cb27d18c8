"""The per-measurement trace: a monotonic zero, transaction ids, and OONI archival records.

One :class:`Trace` belongs to one measurement. Every netx operation appends a
plain ``dict`` in OONI's exact archival shape to one of its lists, with
``t0``/``t`` in float seconds since the trace's zero; a nettest copies the
lists into its ``test_keys`` unchanged. Records are built once and never
deep-copied: they are the evidence, and the cheapest representation of it.

List order follows OONI: chronological everywhere except ``requests``, which is
newest first (so ``requests[0]`` is the final response of a redirect chain,
as OONI's pipeline expects).

A trace also owns short background collectors (the UDP DNS listener that keeps
recording late and duplicate answers after the first one): ``await
trace.drain()``, or leave ``async with Trace() as trace:``, before reading the
lists. A collector may run while the measurement does, and stop early once the
trace drains (``on_drain``): what it waits for is then at most its own floor.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

Record = dict[str, Any]
BinaryData = dict[str, str]

TOR_INFO_OFF: dict[str, Any] = {"exit_ip": None, "exit_name": None, "is_tor": False}


def maybe_binary(data: bytes) -> str | BinaryData:
    """OONI's MaybeBinaryData: the text when ``data`` is UTF-8, else ``{"format": "base64", ...}``."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"format": "base64", "data": base64.b64encode(data).decode("ascii")}


def binary(data: bytes) -> BinaryData:
    """OONI's BinaryData, always base64 (certificates, raw DNS replies)."""
    return {"format": "base64", "data": base64.b64encode(data).decode("ascii")}


def headers_fields(pairs: Iterable[tuple[bytes, bytes]]) -> tuple[dict[str, Any], list[list[Any]]]:
    """OONI's ``headers`` (first value per name) and ``headers_list`` (every pair, in order)."""
    headers: dict[str, Any] = {}
    headers_list: list[list[Any]] = []
    for raw_name, raw_value in pairs:
        name = raw_name.decode("latin-1")
        value = maybe_binary(raw_value)
        headers_list.append([name, value])
        if name not in headers:
            headers[name] = value
    return headers, headers_list


def endpoint(ip: str, port: int) -> str:
    """``ip:port``, with brackets around IPv6 addresses."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class Trace:
    """Everything one measurement observed on the network, as OONI archival records."""

    __slots__ = (
        "zero", "record_io", "_clock", "_ids", "_tasks", "_on_drain", "draining",
        "queries", "x_dns_duplicate_responses", "tcp_connect", "tls_handshakes", "quic_handshakes",
        "requests", "network_events",
    )

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, record_io: bool = True,
                 first_transaction_id: int = 1) -> None:
        self._clock = clock  # monotonic seconds; injected in tests
        self.zero = clock()  # monotonic instant that t0/t are relative to
        self.record_io = record_io  # also record every read/write in network_events
        self._ids = itertools.count(first_transaction_id)
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_drain: list[Callable[[], None]] = []  # what collectors asked to be told when draining begins
        self.draining = False  # the measurement has otherwise ended: collectors wind down
        self.queries: list[Record] = []
        self.x_dns_duplicate_responses: list[Record] = []
        self.tcp_connect: list[Record] = []
        self.tls_handshakes: list[Record] = []
        self.quic_handshakes: list[Record] = []  # HTTP/3's handshakes (netx.quic), when a nettest makes any
        self.requests: list[Record] = []  # newest first, as in OONI
        self.network_events: list[Record] = []

    # --- time and ids -------------------------------------------------------------
    def now(self) -> float:
        """Seconds since the trace's zero."""
        return self._clock() - self.zero

    def next_transaction_id(self) -> int:
        """A fresh transaction id (shared by the records of one connection or lookup)."""
        return next(self._ids)

    # --- background collectors ---------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a short, self-bounded collector that appends records later."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        """How many background collectors are still running."""
        return len(self._tasks)

    def on_drain(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when draining begins (now, if it has): a collector that may run as long as the
        measurement does shortens its wait there."""
        if self.draining:
            callback()
        else:
            self._on_drain.append(callback)

    async def drain(self) -> None:
        """Wait until every background collector has finished (each bounds its own time); those that run
        while the measurement does are told it has ended (`on_drain`)."""
        self.draining = True
        callbacks, self._on_drain = self._on_drain, []
        for callback in callbacks:
            callback()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def cancel(self) -> None:
        """Stop every background collector now (they close their sockets)."""
        for task in self._tasks:
            task.cancel()

    async def __aenter__(self) -> Trace:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is not None:
            self.cancel()
        await self.drain()

    def test_keys(self) -> dict[str, list[Record]]:
        """The archival lists, keyed as in OONI's ``test_keys`` (the lists themselves, not copies)."""
        return {
            "queries": self.queries,
            "x_dns_duplicate_responses": self.x_dns_duplicate_responses,
            "tcp_connect": self.tcp_connect,
            "tls_handshakes": self.tls_handshakes,
            "requests": self.requests,
            "network_events": self.network_events,
            **({"quic_handshakes": self.quic_handshakes} if self.quic_handshakes else {}),
        }

    # --- record builders --------------------------------------------------------------------
    def add_network_event(self, operation: str, *, t0: float, transaction_id: int,
                          address: str | None = None, proto: str | None = None,
                          failure: str | None = None, num_bytes: int | None = None,
                          extra: Record | None = None) -> None:
        record: Record = {
            "address": address, "failure": failure, "num_bytes": num_bytes,
            "operation": operation, "proto": proto, "t0": t0, "t": self.now(),
            "tags": [], "transaction_id": transaction_id,
        }
        if extra:
            record.update(extra)
        self.network_events.append(record)

    def add_tcp_connect(self, ip: str, port: int, *, t0: float, failure: str | None,
                        transaction_id: int, tags: Sequence[str] = ()) -> Record:
        record: Record = {
            "ip": ip, "port": port,
            "status": {"failure": failure, "success": failure is None},
            "t0": t0, "t": self.now(), "tags": list(tags), "transaction_id": transaction_id,
        }
        self.tcp_connect.append(record)
        return record

    def add_request(self, record: Record) -> None:
        self.requests.insert(0, record)


def dns_record(*, engine: str, hostname: str, query_type: str, resolver_address: str,
               answers: list[Record] | None, failure: str | None, t0: float, t: float,
               transaction_id: int, rcode: int | None = None, raw_response: bytes | None = None,
               tags: Sequence[str] = ()) -> Record:
    """One entry of ``queries`` (or ``x_dns_duplicate_responses``)."""
    record: Record = {
        "answers": answers, "engine": engine, "failure": failure, "hostname": hostname,
        "query_type": query_type, "resolver_address": resolver_address,
        "resolver_hostname": None, "resolver_port": None,
        "t0": t0, "t": t, "tags": list(tags), "transaction_id": transaction_id,
    }
    if rcode:  # OONI omits a NOERROR rcode
        record["rcode"] = rcode
    if raw_response is not None:
        record["raw_response"] = base64.b64encode(raw_response).decode("ascii")
    return record


def empty_response() -> Record:
    """The ``response`` OONI writes when no response was received."""
    return {"body": "", "body_is_truncated": False, "code": 0, "headers": {}, "headers_list": []}
