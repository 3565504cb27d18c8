"""The probe's outbox: measurements wait on disk until a collector has acknowledged them.

Layout of an outbox directory::

    pending/<ns>-<hash>.json    one measurement each, written atomically and fsync'd
    rejected/<name>.json        refused for good by the collector (a 4xx), kept
    rejected/<name>.reason      why (the collector's answer)
    .lock                       held (flock) by the process that is uploading

`Outbox.add()` writes a measurement before anything is sent (temporary file,
fsync, rename, fsync of the directory), so a killed run keeps everything it
measured. `Outbox.flush()` uploads what is pending through OONI's collector
protocol (``POST /report`` → report id; ``POST /report/{id}`` with
``{"format": "json", "content": m}``; ``POST /report/{id}/close``), a few at a
time, and deletes an entry only after an HTTP 200 whose body carries a
``measurement_uid``. Network errors, 408, 429 and 5xx are retried with capped
exponential backoff and jitter (honouring ``Retry-After``) until the flush's
deadline; other 4xx answers move the entry to ``rejected/``. What is left when
the deadline passes stays pending: the next flush (in this run or the next)
resumes from there. Resending after a crash is harmless: collectors identify
a measurement by its content, and the content is sent byte for byte as stored.

The HTTP goes through ``netx`` (the only code that opens sockets), untraced.

Usage::

    box = Outbox(Path("~/.local/share/tamperscope/outbox").expanduser())
    box.add(measurement)                       # sync, durable
    result = await box.flush("https://collector.example/", timeout=120)
    print(result.sent, result.remaining)
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tamperscope.netx import Connection, DirectConnector, NetxError, Trace, round_trip
from tamperscope.netx.http import Limits

PENDING = "pending"
REJECTED = "rejected"
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "tamperscope-outbox"


class OutboxError(Exception):
    """The outbox cannot be used (unwritable directory, another process uploading)."""


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts: ``base * 2**attempt``, capped, with jitter (seconds)."""

    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.5          # each delay is drawn from [delay * (1 - jitter), delay]

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        d = min(self.cap, self.base * (2 ** min(attempt, 30)))
        d *= 1 - self.jitter * random.random()
        if retry_after is not None:
            d = max(d, min(retry_after, self.cap))
        return d


@dataclass
class FlushResult:
    """What one flush did."""

    sent: int = 0                    # acknowledged as new
    duplicates: int = 0              # acknowledged, the collector had it already
    rejected: int = 0                # refused for good, moved to rejected/
    remaining: int = 0               # still pending (deadline reached, collector unreachable)
    attempts: int = 0                # HTTP submissions tried
    uids: list[str] = field(default_factory=list)
    last_error: str | None = None

    @property
    def done(self) -> bool:
        return self.remaining == 0


@dataclass(frozen=True)
class _Entry:
    path: Path
    data: bytes                      # the measurement's JSON, as stored
    key: tuple[str, str, str, str, str, str]  # what a report groups by


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None, *, cut: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.cut = cut  # the flush's own deadline ended the attempt: it says nothing about the collector


def _note(result: FlushResult, exc: _Retry) -> None:
    """Keep the most telling error: an attempt cut short by the deadline does not hide why the earlier ones
    failed (a collector that refused every connection reads "connection_refused", not "timeout")."""
    if not (exc.cut and result.last_error):
        result.last_error = exc.reason


class _Refused(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Outbox:
    """A durable queue of measurements for a collector, in a directory."""

    def __init__(self, directory: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.root = Path(directory)
        self.durable = durable
        try:
            (self.root / PENDING).mkdir(parents=True, exist_ok=True)
            (self.root / REJECTED).mkdir(exist_ok=True)
        except OSError as exc:
            raise OutboxError(f"cannot use {self.root} as an outbox: {exc.strerror or exc}") from None
        self._seq = 0
        self._clean_temporaries()

    def _clean_temporaries(self) -> None:
        for p in (self.root / PENDING).glob(".tmp-*"):
            try:
                p.unlink()  # an add() interrupted before its rename: never counted as added
            except OSError:
                pass

    # ---- adding

    def add(self, measurement: Mapping[str, Any] | bytes) -> Path:
        """Store one measurement (a dict, or its JSON bytes) durably; returns its file."""
        data = measurement if isinstance(measurement, bytes) else orjson.dumps(measurement)
        data = data.strip()
        if not data.startswith(b"{"):
            raise ValueError("a measurement is a JSON object")
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}-{hashlib.sha256(data).hexdigest()[:16]}.json"
        pending = self.root / PENDING
        tmp = pending / f".tmp-{name}"
        with open(tmp, "wb") as f:
            f.write(data)
            if self.durable:
                f.flush()
                os.fsync(f.fileno())
        final = pending / name
        os.replace(tmp, final)
        if self.durable:
            _fsync_dir(pending)
        return final

    def pending(self) -> list[Path]:
        """Entries waiting, oldest first."""
        return sorted(p for p in (self.root / PENDING).glob("*.json") if not p.name.startswith("."))

    def rejected(self) -> list[Path]:
        return sorted((self.root / REJECTED).glob("*.json"))

    def __len__(self) -> int:
        return len(self.pending())

    # ---- uploading

    async def flush(self, collector_url: str, *, timeout: float = 300.0, parallel: int = 4,
                    backoff: Backoff = Backoff(), request_timeout: float = 30.0,
                    ca_bundle: str | None = None,
                    on_sent: Callable[[str, Path], None] | None = None) -> FlushResult:
        """Upload everything pending, until done or ``timeout`` seconds have passed."""
        if not collector_url.startswith(("http://", "https://")):
            raise OutboxError(f"the collector URL must start with http:// or https://: {collector_url!r}")
        lock = self._lock()
        try:
            deadline = time.monotonic() + timeout
            result = FlushResult()
            client = _Client(collector_url, request_timeout=request_timeout, ca_bundle=ca_bundle)
            try:
                groups: dict[tuple[str, ...], list[_Entry]] = {}
                for path in self.pending():
                    entry = self._load(path, result)
                    if entry is not None:
                        groups.setdefault(entry.key, []).append(entry)
                for key, entries in groups.items():
                    await self._flush_group(client, key, entries, result, deadline, parallel, backoff, on_sent)
            finally:
                await client.aclose()
            result.remaining = len(self.pending())
            return result
        finally:
            os.close(lock)

    def _lock(self) -> int:
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutboxError(f"another process is uploading from {self.root}") from None
        return fd

    def _load(self, path: Path, result: FlushResult) -> _Entry | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            m = orjson.loads(data)
            if not isinstance(m, dict):
                raise ValueError("not an object")
        except (orjson.JSONDecodeError, ValueError) as exc:
            self._reject(path, f"unreadable entry: {exc}", result)
            return None

        def text(name: str, default: str) -> str:
            value = m.get(name)
            return value if isinstance(value, str) and value else default

        key = (text("test_name", "unknown"), text("probe_cc", "ZZ"), text("probe_asn", "AS0"),
               text("software_name", "tamperscope"), text("software_version", "0"), text("test_version", "0"))
        return _Entry(path, data, key)

    def _reject(self, path: Path, reason: str, result: FlushResult) -> None:
        target = self.root / REJECTED / path.name
        try:
            target.with_suffix(".reason").write_text(reason + "\n", encoding="utf-8")
            os.replace(path, target)
        except FileNotFoundError:
            return
        result.rejected += 1
        result.last_error = reason

    async def _flush_group(self, client: _Client, key: tuple[str, ...], entries: list[_Entry],
                           result: FlushResult, deadline: float, parallel: int, backoff: Backoff,
                           on_sent: Callable[[str, Path], None] | None) -> None:
        test_name, cc, asn, software, software_version, test_version = key
        report = orjson.dumps({"data_format_version": "0.2.0", "format": "json", "probe_asn": asn, "probe_cc": cc,
                               "software_name": software, "software_version": software_version,
                               "test_name": test_name, "test_version": test_version})
        try:
            report_id = await self._open_report(client, report, result, deadline, backoff)
        except _Refused as exc:
            # The collector will not take measurements with this envelope (e.g. a malformed probe_cc).
            reason = (f"the collector refused to open a report for it: HTTP {exc.status}: "
                      f"{exc.body[:500].decode('utf-8', 'replace')}")
            for entry in entries:
                self._reject(entry.path, reason, result)
            return
        if report_id is None:
            return
        current = {"id": report_id}
        queue: asyncio.Queue[_Entry] = asyncio.Queue()
        for e in entries:
            queue.put_nowait(e)

        async def worker() -> None:
            while time.monotonic() < deadline:
                try:
                    entry = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await self._send(client, entry, current, report, result, deadline, backoff, on_sent)

        async with asyncio.TaskGroup() as tg:
            for _ in range(max(1, min(parallel, len(entries)))):
                tg.create_task(worker())
        try:
            await client.post(f"/report/{current['id']}/close", b"{}", deadline)
        except (_Retry, _Refused):
            pass  # closing is a courtesy: the measurements are in

    async def _open_report(self, client: _Client, report: bytes, result: FlushResult, deadline: float,
                           backoff: Backoff) -> str | None:
        """The new report's id; None when the deadline passed; raises `_Refused` on a 4xx."""
        attempt = 0
        while time.monotonic() < deadline:
            try:
                status, body = await client.post("/report", report, deadline)
                if status == 200:
                    found = orjson.loads(body)
                    if isinstance(found, dict) and isinstance(found.get("report_id"), str):
                        return str(found["report_id"])
                    raise _Retry("the collector answered POST /report without a report_id")
                raise _Refused(status, body)
            except _Retry as exc:
                _note(result, exc)
                await self._pause(backoff.delay(attempt, exc.retry_after), deadline)
                attempt += 1
            except orjson.JSONDecodeError:
                result.last_error = "POST /report: the answer is not JSON"
                await self._pause(backoff.delay(attempt), deadline)
                attempt += 1
        return None

    async def _send(self, client: _Client, entry: _Entry, current: dict[str, str], report: bytes,
                    result: FlushResult, deadline: float, backoff: Backoff,
                    on_sent: Callable[[str, Path], None] | None) -> None:
        body = b'{"format":"json","content":' + entry.data + b"}"
        attempt = 0
        reopened = False
        while time.monotonic() < deadline:
            result.attempts += 1
            try:
                status, answer = await client.post(f"/report/{current['id']}", body, deadline)
                if status == 200:
                    found = orjson.loads(answer)
                    uid = found.get("measurement_uid") if isinstance(found, dict) else None
                    if not isinstance(uid, str) or not uid:
                        raise _Retry("HTTP 200 without a measurement_uid")
                    try:
                        entry.path.unlink()
                    except FileNotFoundError:
                        pass
                    if isinstance(found, dict) and found.get("duplicate") is True:
                        result.duplicates += 1
                    else:
                        result.sent += 1
                    result.uids.append(uid)
                    if on_sent is not None:
                        on_sent(uid, entry.path)
                    return
                if status == 404 and not reopened:
                    # The collector forgot the report (OONI's expire): open a new one and resend.
                    reopened = True
                    try:
                        new_id = await self._open_report(client, report, result, deadline, backoff)
                    except _Refused as exc:
                        self._reject(entry.path, f"HTTP {exc.status}: {exc.body[:500].decode('utf-8', 'replace')}",
                                     result)
                        return
                    if new_id is None:
                        return
                    current["id"] = new_id
                    continue
                raise _Refused(status, answer)
            except _Retry as exc:
                _note(result, exc)
                await self._pause(backoff.delay(attempt, exc.retry_after), deadline)
                attempt += 1
            except orjson.JSONDecodeError:
                result.last_error = "HTTP 200 whose body is not JSON"
                await self._pause(backoff.delay(attempt), deadline)
                attempt += 1
            except _Refused as exc:
                self._reject(entry.path, f"HTTP {exc.status}: {exc.body[:500].decode('utf-8', 'replace')}", result)
                return

    @staticmethod
    async def _pause(seconds: float, deadline: float) -> None:
        await asyncio.sleep(max(0.0, min(seconds, deadline - time.monotonic())))


class _Client:
    """POSTs JSON to one collector over netx, reusing keep-alive connections."""

    def __init__(self, base_url: str, *, request_timeout: float, ca_bundle: str | None) -> None:
        self.base = base_url.rstrip("/")
        self.request_timeout = request_timeout
        self.connector = DirectConnector(ca_bundle=ca_bundle, alpn=("http/1.1",))
        self.idle: list[Connection] = []

    async def post(self, path: str, body: bytes, deadline: float) -> tuple[int, bytes]:
        """(status, body); raises `_Retry` for what is worth retrying (network errors, 408/429/5xx)."""
        url = self.base + path
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Retry("deadline reached", cut=True)
        timeout = min(self.request_timeout, left)
        headers = (("Content-Type", "application/json"), ("Accept", "application/json"),
                   ("User-Agent", USER_AGENT))
        for reuse in (True, False):
            conn = self.idle.pop() if reuse and self.idle else None
            if reuse and conn is None:
                continue
            try:
                if conn is None:
                    conn = await self.connector(url, trace=Trace(record_io=False), timeout=timeout)
                resp = await round_trip(conn, url, method="POST", body=body, headers=headers, record=False,
                                        timeout=timeout, limits=Limits(body=1024 * 1024))
            except NetxError as exc:
                if conn is not None:
                    await conn.aclose()
                if reuse:
                    continue  # the server closed an idle connection: try a fresh one
                cut = timeout < self.request_timeout and "timeout" in exc.failure
                raise _Retry(f"{url}: {exc.failure}", cut=cut) from None
            except BaseException:
                if conn is not None:
                    await conn.aclose()
                raise
            if (resp.header("Connection") or "").lower() == "close" or len(self.idle) >= 16:
                await conn.aclose()
            else:
                self.idle.append(conn)
            if resp.status in RETRYABLE:
                raise _Retry(f"{url}: HTTP {resp.status}", _retry_after(resp.header("Retry-After")))
            return resp.status, resp.body
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        while self.idle:
            await self.idle.pop().aclose()


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


__all__ = ["Backoff", "FlushResult", "Outbox", "OutboxError"]
