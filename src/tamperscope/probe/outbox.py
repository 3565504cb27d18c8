"""The probe's outbox: measurements wait on disk until a collector has acknowledged them.

Layout of an outbox directory::

    pending/<ns>-<hash>[@<tag>].json   one measurement each, written atomically and fsync'd; <tag> names
                                       the collector it was queued for (see collectors/)
    rejected/<name>.json        refused for good by the collector (a 4xx), or not a JSON object, kept
    rejected/<name>.reason      why (the collector's answer, one printable line)
    collectors/<tag>            the collector URL a tag stands for
    .lock                       held (flock) by the process that is uploading

`Outbox.add()` writes a measurement before anything is sent (temporary file,
fsync, rename, fsync of the directory), so a killed run keeps everything it
measured. `Outbox.flush()` uploads what is pending through OONI's collector
protocol (``POST /report`` → report id; ``POST /report/{id}`` with
``{"format": "json", "content": m}``; ``POST /report/{id}/close``), a few at a
time, and deletes an entry only after an HTTP 200 whose body carries a
``measurement_uid``. Only a 4xx whose body is a JSON object is the collector
refusing a measurement (it moves to ``rejected/``); everything else is retried
with capped exponential backoff and jitter (honouring ``Retry-After``) until
the flush's deadline: network errors, every 5xx, 408, 425, 429, a redirect
(never followed: the measurements go to the URL given, nowhere else), and a
4xx that is a captive portal's or a censor's page rather than the collector's
JSON. A ``report_id`` that is not a plain id (``[A-Za-z0-9][A-Za-z0-9_.-]*``,
at most 200 characters) is never put in a URL. Each request is bounded by
``request_timeout`` and the flush by its ``timeout``, answers by 1 MiB, and
text from the collector is cut to one printable line before it is shown.
What is left when the deadline passes stays pending: the next flush (in this
run or the next) resumes from there. Resending after a crash is harmless:
collectors identify a measurement by its content, and the content is sent
byte for byte as stored.

An outbox made with ``collector=URL`` tags what it adds with that collector; a
flush to another URL leaves those entries alone and counts them in
``FlushResult.elsewhere`` (untagged entries go to whichever collector flushes).
An entry that cannot be read is left in place, one that is not a JSON object is
set aside in ``rejected/`` (``FlushResult.unreadable`` and ``damaged``).

``pending/`` holds at most ``max_bytes`` (1 GiB unless told): a volunteer whose
collector is blocked for weeks must not find the disk full. An ``add()`` that
would go past it writes nothing, returns None and counts the measurement in
``Outbox.refused_full`` (the probe keeps every measurement in its output file
as well, so nothing is lost); nothing already pending is ever deleted to make
room. The size is summed once when the outbox is opened and at each flush, and
kept up to date by adds and deletions in between, so two runs adding to one
outbox at once may together go past the cap by what the other added meanwhile.

A collector whose TLS certificate does not verify (unknown authority, wrong
name, expired: a TLS interception box, or the wrong collector) stops the flush
at once instead of being retried until the deadline: waiting does not make a
certificate good. Everything stays pending and ``FlushResult.untrusted`` is
set, with ``last_error`` saying so in one line.

The HTTP goes through ``netx`` (the only code that opens sockets), untraced.

Usage::

    box = Outbox(Path("~/.local/share/tamperscope/outbox").expanduser(), collector="https://collector.example/")
    box.add(measurement)                       # sync, durable
    result = await box.flush("https://collector.example/", timeout=120)
    print(result.sent, result.remaining)
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import os
import random
import re
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from tamperscope.model import failures as F
from tamperscope.model.inputs import read_upto
from tamperscope.netx import Connection, DirectConnector, NetxError, Trace, round_trip
from tamperscope.netx.http import HTTPResponse, Limits

PENDING = "pending"
REJECTED = "rejected"
COLLECTORS = "collectors"
RETRYABLE = frozenset({408, 425, 429})  # and every 5xx
USER_AGENT = "tamperscope-outbox"
MAX_ANSWER = 1024 * 1024  # bytes of a collector's answer
MAX_SHOWN = 300  # characters of the collector's text in a message
REPORT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")  # the collector's (collector/schema.py)
DEFAULT_MAX_BYTES = 1 << 30  # bytes pending at most, unless told otherwise
MAX_KEYS_KNOWN = 1 << 18  # pending entries whose report key is remembered (~200 bytes each); more are read again
MAX_ENTRY = 64 << 20  # bytes of one pending entry: a measurement is bounded far below (a collector takes 5 MiB)
# the collector's certificate did not verify: retrying until the deadline changes nothing
CERTIFICATE_FAILURES = frozenset({F.SSL_UNKNOWN_AUTHORITY, F.SSL_INVALID_HOSTNAME, F.SSL_INVALID_CERTIFICATE})


class OutboxError(Exception):
    """The outbox cannot be used (unwritable directory, another process uploading)."""


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts: ``base * 2**attempt``, capped, with jitter (seconds)."""

    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.5          # each delay is drawn from [delay * (1 - jitter), delay]

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        d = min(self.cap, self.base * (2.0 ** min(attempt, 30)))
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
    remaining: int = 0               # still to send to this collector (deadline reached, collector unreachable)
    attempts: int = 0                # HTTP submissions tried
    uids: list[str] = field(default_factory=list)
    last_error: str | None = None    # one printable line
    damaged: int = 0                 # entries not a JSON object, set aside in rejected/
    unreadable: int = 0              # entries that cannot be read, moved or deleted: left in place
    damage: str | None = None        # the first of either, one line
    elsewhere: dict[str, int] = field(default_factory=dict)  # collector URL -> entries queued for it, not sent
    untrusted: bool = False          # the flush stopped at once: an unverified certificate, no collector at the URL

    @property
    def done(self) -> bool:
        return self.remaining == 0


Key = tuple[str, str, str, str, str, str]  # what a report groups by


@dataclass(frozen=True)
class _Entry:
    """A pending entry: where it is, its size, and its report's key. Its bytes are read when it is sent, one
    entry at a time: a flush never holds the whole outbox (up to its cap, 1 GiB by default) in memory."""

    path: Path
    size: int
    key: Key


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


class _Stop(Exception):
    """What no retry changes: the flush stops at once, and every measurement stays pending (one printable line)."""


class _Untrusted(_Stop):
    """The collector's certificate did not verify."""

    def __init__(self, url: str, failure: str) -> None:
        super().__init__(f"{url}: {failure}: the collector's certificate did not verify (TLS interception?)")


class _NoCollector(_Stop):
    """Opening a report answered 404 or 405: no collector at that URL (a wrong path), not a refusal of the
    measurements; setting them aside as refused would lose them to a typo."""

    def __init__(self, url: str, status: int, body: bytes) -> None:
        super().__init__(f"{url}/report: HTTP {status} ({_shown(body)}): no collector at this URL (a wrong path?); "
                         "nothing was set aside")


class _Refused(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


def _read_entry(path: Path) -> bytes:
    """A pending entry's bytes: a regular file of at most MAX_ENTRY bytes, never followed through a symlink (one to
    /dev/zero would be read without end) nor waited on (a FIFO would block the uploads, and the run, for ever)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = read_upto(f, MAX_ENTRY + 1)  # by its size: read(n) allocates n bytes first (64 MiB per entry)
    if len(data) > MAX_ENTRY:
        raise OSError(errno.EFBIG, f"more than {MAX_ENTRY} bytes, which no measurement is")
    return data


def one_line(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` as one printable line of at most ``limit`` characters: what a collector says can hold
    newlines, terminal escapes (C1 controls are legal in JSON strings) or bidi overrides."""
    flat = "".join(c if c.isprintable() else " " for c in text[: limit * 4])
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _shown(body: bytes) -> str:
    return one_line(body[:MAX_SHOWN * 4].decode("utf-8", "replace"))


def collector_key(url: str) -> str:
    """The collector a URL names, the way the outbox compares them: case of scheme and host and a trailing
    slash aside."""
    parts = urlsplit(url.strip())
    key = f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"
    return key + (f"?{parts.query}" if parts.query else "")


def _tag(url: str) -> str:
    return hashlib.sha256(collector_key(url).encode("utf-8")).hexdigest()[:12]


def _tag_of(path: Path) -> str:
    return path.stem.rpartition("@")[2] if "@" in path.stem else ""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Outbox:
    """A durable queue of measurements for a collector, in a directory."""

    def __init__(self, directory: str | os.PathLike[str], *, durable: bool = True,
                 collector: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        """``collector``: the URL what `add` stores is queued for (None: for whichever collector flushes).
        ``max_bytes``: the most ``pending/`` may hold (a positive number of bytes)."""
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive number of bytes, not {max_bytes!r}")
        self.root = Path(directory)
        self.max_bytes = max_bytes
        self.refused_full = 0  # measurements `add` did not store because the outbox was full
        self.durable = durable
        self.collector = collector
        self._suffix = f"@{_tag(collector)}" if collector else ""
        try:
            (self.root / PENDING).mkdir(parents=True, exist_ok=True)
            (self.root / REJECTED).mkdir(exist_ok=True)
            if collector:
                self._name_collector(collector)
        except OSError as exc:
            raise OutboxError(f"cannot use {self.root} as an outbox: {exc.strerror or exc}") from None
        self._seq = 0
        self._clean_temporaries()
        self._bytes = self._measure()  # what pending/ holds, in bytes
        self._keys: dict[str, tuple[int, Key]] = {}  # entry name -> its size and report key, once read
        self._interned: dict[Key, Key] = {}

    def _name_collector(self, url: str) -> None:
        """Write collectors/<tag> (the URL), once, so that entries queued for it can be said to be."""
        names = self.root / COLLECTORS
        names.mkdir(exist_ok=True)
        target = names / _tag(url)
        if target.is_file():
            return
        tmp = names / f".tmp-{os.getpid()}-{target.name}"
        tmp.write_text(collector_key(url) + "\n", encoding="utf-8")
        os.replace(tmp, target)

    def _collector_named(self, tag: str) -> str:
        try:
            return one_line((self.root / COLLECTORS / tag).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return f"an unnamed collector (tag {tag})"

    def _clean_temporaries(self) -> None:
        for p in (self.root / PENDING).glob(".tmp-*"):
            try:
                p.unlink()  # an add() interrupted before its rename: never counted as added
            except OSError:
                pass

    def _measure(self) -> int:
        """The bytes of the entries in pending/ (one pass over the directory, at open and at each flush)."""
        total = 0
        try:
            with os.scandir(self.root / PENDING) as found:
                for e in found:
                    if e.name.startswith(".") or not e.name.endswith(".json"):
                        continue
                    try:
                        if e.is_file(follow_symlinks=False):
                            total += e.stat(follow_symlinks=False).st_size
                    except OSError:
                        pass  # gone meanwhile, or unreadable: a flush says so
        except OSError:
            pass
        return total

    def _forget(self, size: int) -> None:
        """An entry of ``size`` bytes left pending/ (sent, or set aside)."""
        self._bytes = max(0, self._bytes - size)

    @property
    def pending_bytes(self) -> int:
        """What pending/ holds, in bytes, as this process knows it."""
        return self._bytes

    # ---- adding

    def add(self, measurement: Mapping[str, Any] | bytes) -> Path | None:
        """Store one measurement (a dict, or its JSON bytes) durably; returns its file. None when it would
        take the outbox past ``max_bytes``: nothing is written, and ``refused_full`` counts it."""
        data = measurement if isinstance(measurement, bytes) else orjson.dumps(measurement)
        data = data.strip()
        if not data.startswith(b"{"):
            raise ValueError("a measurement is a JSON object")
        if self._bytes + len(data) > self.max_bytes:
            self.refused_full += 1
            return None
        self._seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}-{hashlib.sha256(data).hexdigest()[:16]}"
        name += f"{self._suffix}.json"
        pending = self.root / PENDING
        tmp = pending / f".tmp-{name}"
        with open(tmp, "wb") as f:
            f.write(data)
            if self.durable:
                f.flush()
                os.fsync(f.fileno())
        final = pending / name
        os.replace(tmp, final)
        self._bytes += len(data)
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

    def waiting(self) -> int:
        """Entries a flush to this outbox's collector would send (those queued for it or for no collector in
        particular); every pending entry when the outbox was made for no collector."""
        return len(self._mine(_tag(self.collector))) if self.collector else len(self)

    # ---- uploading

    async def flush(self, collector_url: str, *, timeout: float = 300.0, parallel: int = 4,
                    backoff: Backoff = Backoff(), request_timeout: float = 30.0,
                    ca_bundle: str | None = None,
                    on_sent: Callable[[str, Path], None] | None = None) -> FlushResult:
        """Upload everything pending for ``collector_url``, until done or ``timeout`` seconds have passed."""
        if not collector_url.lower().startswith(("http://", "https://")):
            raise OutboxError(f"the collector URL must start with http:// or https://: {collector_url!r}")
        lock = self._lock()
        try:
            deadline = time.monotonic() + timeout
            result = FlushResult()
            self._bytes = self._measure()  # what other processes added or sent meanwhile
            client = _Client(collector_url, request_timeout=request_timeout, ca_bundle=ca_bundle)
            try:
                for key, entries in self._groups(_tag(collector_url), result).items():
                    await self._flush_group(client, key, entries, result, deadline, parallel, backoff, on_sent)
            except* _Stop as stopped:
                result.untrusted = True
                result.last_error = str(stopped.exceptions[0])
            finally:
                await client.aclose()
            result.remaining = max(0, len(self._mine(_tag(collector_url))) - result.unreadable)
            if result.untrusted:
                result.last_error = f"{result.last_error}; {result.remaining} measurement(s) stay in the outbox"
            return result
        finally:
            os.close(lock)

    def _lock(self) -> int:
        try:
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutboxError(f"cannot lock {self.root / '.lock'}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutboxError(f"another process is uploading from {self.root}") from None
        return fd

    def _mine(self, tag: str) -> list[Path]:
        """What is pending for the collector with this tag (and what was queued for no collector in particular)."""
        return [p for p in self.pending() if _tag_of(p) in ("", tag)]

    def _groups(self, tag: str, result: FlushResult) -> dict[tuple[str, ...], list[_Entry]]:
        """The entries to send to this collector, by report; the others are counted in ``result.elsewhere``."""
        groups: dict[tuple[str, ...], list[_Entry]] = {}
        pending = self.pending()
        names = {path.name for path in pending}
        self._keys = {name: known for name, known in self._keys.items() if name in names}  # sent or set aside: gone
        for path in pending:
            other = _tag_of(path)
            if other not in ("", tag):
                url = self._collector_named(other)
                result.elsewhere[url] = result.elsewhere.get(url, 0) + 1
                continue
            entry = self._load(path, result)
            if entry is not None:
                groups.setdefault(entry.key, []).append(entry)
        return groups

    def _load(self, path: Path, result: FlushResult) -> _Entry | None:
        known = self._keys.get(path.name)
        if known is not None:  # read by an earlier flush: an entry never changes once it is in pending/
            return _Entry(path, *known)
        try:
            data = _read_entry(path)
        except FileNotFoundError:
            return None
        except OSError as exc:  # a directory, a FIFO, a symlink, no permission, too big: not ours to move
            _damaged(result, f"cannot read {path}: {exc.strerror or exc}; left in place", kept=True)
            return None
        try:
            m = orjson.loads(data)
            if not isinstance(m, dict):
                raise ValueError("not an object")
        except (orjson.JSONDecodeError, ValueError) as exc:
            reason = f"unreadable entry: {one_line(str(exc))}"
            if self._set_aside(path, len(data), reason, result):
                _damaged(result, f"{path.name} is not a JSON object; set aside in {self.root / REJECTED}")
            return None

        def text(name: str, default: str) -> str:
            value = m.get(name)
            return value if isinstance(value, str) and value else default

        key = (text("test_name", "unknown"), text("probe_cc", "ZZ"), text("probe_asn", "AS0"),
               text("software_name", "tamperscope"), text("software_version", "0"), text("test_version", "0"))
        key = self._interned.setdefault(key, key)  # a few keys for many entries
        if len(self._keys) < MAX_KEYS_KNOWN and len(self._interned) < MAX_KEYS_KNOWN:
            self._keys[path.name] = (len(data), key)
        return _Entry(path, len(data), key)

    def _reject(self, entry: _Entry, reason: str, result: FlushResult) -> None:
        """Set the entry aside as refused by the collector."""
        if self._set_aside(entry.path, entry.size, reason, result):
            result.rejected += 1
            result.last_error = reason

    def _set_aside(self, path: Path, size: int, reason: str, result: FlushResult) -> bool:
        """Move the entry (``size`` bytes) to rejected/ with its reason; False when it is gone or cannot be
        moved (kept pending)."""
        target = self.root / REJECTED / path.name
        try:
            target.with_suffix(".reason").write_text(one_line(reason, 1000) + "\n", encoding="utf-8")
            os.replace(path, target)
        except FileNotFoundError:
            if not os.path.lexists(path):
                self._forget(size)  # another process sent it meanwhile
            return False
        except OSError as exc:
            _damaged(result, f"cannot move {path} to {target.parent}: {exc.strerror or exc}; left in place",
                     kept=True)
            return False
        self._forget(size)
        return True

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
            if exc.status in (404, 405):
                raise _NoCollector(client.base, exc.status, exc.body) from None
            # The collector will not take measurements with this envelope (e.g. a malformed probe_cc).
            reason = f"the collector refused to open a report for it: HTTP {exc.status}: {_shown(exc.body)}"
            for entry in entries:
                self._reject(entry, reason, result)
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
        """The new report's id; None when the deadline passed; raises `_Refused` on the collector's 4xx."""
        attempt = 0
        while time.monotonic() < deadline:
            try:
                status, body = await client.post("/report", report, deadline)
                if status == 200:
                    return _report_id(body)
                raise _Refused(status, body)
            except _Retry as exc:
                _note(result, exc)
                await self._pause(backoff.delay(attempt, exc.retry_after), deadline)
                attempt += 1
        return None

    async def _send(self, client: _Client, entry: _Entry, current: dict[str, str], report: bytes,
                    result: FlushResult, deadline: float, backoff: Backoff,
                    on_sent: Callable[[str, Path], None] | None) -> None:
        try:
            data = _read_entry(entry.path)
        except FileNotFoundError:  # another process sent it meanwhile
            return
        except OSError as exc:
            _damaged(result, f"cannot read {entry.path}: {exc.strerror or exc}; left in place", kept=True)
            return
        body = b'{"format":"json","content":' + data + b"}"
        del data
        attempt = 0
        reopened = False
        while time.monotonic() < deadline:
            result.attempts += 1
            try:
                status, answer = await client.post(f"/report/{current['id']}", body, deadline)
                if status == 200:
                    self._acknowledged(entry, answer, result, on_sent)
                    return
                if status == 404 and not reopened:
                    # The collector forgot the report (OONI's expire): open a new one and resend.
                    reopened = True
                    try:
                        new_id = await self._open_report(client, report, result, deadline, backoff)
                    except _Refused as exc:
                        self._reject(entry, f"HTTP {exc.status}: {_shown(exc.body)}", result)
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
            except _Refused as exc:
                self._reject(entry, f"HTTP {exc.status}: {_shown(exc.body)}", result)
                return

    def _acknowledged(self, entry: _Entry, answer: bytes, result: FlushResult,
                      on_sent: Callable[[str, Path], None] | None) -> None:
        """Count a 200 and delete the entry; raises `_Retry` when the 200 acknowledges nothing."""
        try:
            found = orjson.loads(answer)
        except orjson.JSONDecodeError:
            raise _Retry("HTTP 200 whose body is not JSON") from None
        uid = found.get("measurement_uid") if isinstance(found, dict) else None
        if not isinstance(uid, str) or not uid:
            raise _Retry("HTTP 200 without a measurement_uid")
        try:
            entry.path.unlink()
            self._forget(entry.size)
        except FileNotFoundError:
            self._forget(entry.size)  # another process sent it meanwhile
        except OSError as exc:  # acknowledged all the same: a later flush resends it, as a duplicate
            _damaged(result, f"cannot delete {entry.path} once sent: {exc.strerror or exc}", kept=True)
        if isinstance(found, dict) and found.get("duplicate") is True:
            result.duplicates += 1
        else:
            result.sent += 1
        result.uids.append(uid)
        if on_sent is not None:
            on_sent(uid, entry.path)

    @staticmethod
    async def _pause(seconds: float, deadline: float) -> None:
        await asyncio.sleep(max(0.0, min(seconds, deadline - time.monotonic())))


def _damaged(result: FlushResult, what: str, *, kept: bool = False) -> None:
    if kept:
        result.unreadable += 1
    else:
        result.damaged += 1
    result.damage = result.damage or one_line(what, 1000)


def _report_id(body: bytes) -> str:
    """The report id of a 200 to POST /report; raises `_Retry` when there is none fit for a URL."""
    try:
        found = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _Retry("POST /report: the answer is not JSON") from None
    report_id = found.get("report_id") if isinstance(found, dict) else None
    if not isinstance(report_id, str):
        raise _Retry("the collector answered POST /report without a report_id")
    if not REPORT_ID.fullmatch(report_id):
        shown = one_line(repr(report_id), 80)
        raise _Retry(f"the collector answered POST /report with a report_id that is not an id: {shown}")
    return report_id


class _Client:
    """POSTs JSON to one collector over netx, reusing keep-alive connections."""

    def __init__(self, base_url: str, *, request_timeout: float, ca_bundle: str | None) -> None:
        self.base = base_url.rstrip("/")
        self.request_timeout = request_timeout
        self.connector = DirectConnector(ca_bundle=ca_bundle, alpn=("http/1.1",))
        self.idle: list[Connection] = []

    async def post(self, path: str, body: bytes, deadline: float) -> tuple[int, bytes]:
        """(status, body) of a 200 or of the collector's 4xx (a JSON object); raises `_Retry` for anything else.

        One request takes at most ``request_timeout`` and never goes past ``deadline``, counting the
        connection, a kept-alive connection that went stale, and the fresh one that replaces it."""
        url = self.base + path
        now = time.monotonic()
        if deadline - now <= 0:
            raise _Retry("deadline reached", cut=True)
        stop = min(now + self.request_timeout, deadline)
        cut = deadline < now + self.request_timeout  # the flush's deadline, not ours, bounds this request
        resp = None
        if self.idle:
            resp = await self._reused(self.idle.pop(), url, body, stop, cut)
        if resp is None:
            resp = await self._fresh(url, body, stop, cut)
        return _answer(url, resp)

    async def _reused(self, conn: Connection, url: str, body: bytes, stop: float,
                      cut: bool) -> HTTPResponse | None:
        """The response over a kept-alive connection; None when it had gone stale and there is time for another."""
        try:
            return await self._exchange(conn, url, body, stop)
        except NetxError as exc:
            await conn.aclose()
            if time.monotonic() >= stop:
                raise _Retry(f"{url}: {exc.failure}", cut=cut and "timeout" in exc.failure) from None
            return None

    async def _fresh(self, url: str, body: bytes, stop: float, cut: bool) -> HTTPResponse:
        conn: Connection | None = None
        try:
            conn = await self.connector(url, trace=Trace(record_io=False), timeout=_left(stop))
            return await self._exchange(conn, url, body, stop)
        except NetxError as exc:
            if conn is not None:
                await conn.aclose()
            if exc.failure in CERTIFICATE_FAILURES:
                raise _Untrusted(url, exc.failure) from None
            raise _Retry(f"{url}: {exc.failure}", cut=cut and "timeout" in exc.failure) from None

    async def _exchange(self, conn: Connection, url: str, body: bytes, stop: float) -> HTTPResponse:
        headers = (("Content-Type", "application/json"), ("Accept", "application/json"),
                   ("User-Agent", USER_AGENT))
        try:
            resp = await round_trip(conn, url, method="POST", body=body, headers=headers, record=False,
                                    timeout=_left(stop), limits=Limits(body=MAX_ANSWER))
        except NetxError:
            raise  # the caller closes the connection
        except BaseException:
            await conn.aclose()  # cancelled
            raise
        # a truncated answer leaves the rest of its body unread on the connection: never reuse it
        if resp.body_is_truncated or (resp.header("Connection") or "").lower() == "close" or len(self.idle) >= 16:
            await conn.aclose()
        else:
            self.idle.append(conn)
        return resp

    async def aclose(self) -> None:
        while self.idle:
            await self.idle.pop().aclose()


def _left(stop: float) -> float:
    return max(0.0, stop - time.monotonic())


def _answer(url: str, resp: HTTPResponse) -> tuple[int, bytes]:
    """What the collector said, or `_Retry` for what is not its answer (yet)."""
    status = resp.status
    if resp.body_is_truncated:
        raise _Retry(f"{url}: HTTP {status} with an answer over {MAX_ANSWER} bytes")
    if status in RETRYABLE or 500 <= status <= 599:
        raise _Retry(f"{url}: HTTP {status}", _retry_after(resp.header("Retry-After")))
    if 300 <= status <= 399:
        where = _shown((resp.header("Location") or "nowhere").encode("latin-1"))
        raise _Retry(f"{url}: HTTP {status}, a redirect to {where} (not followed)")
    if 400 <= status <= 499 and not _is_json_object(resp.body):
        raise _Retry(f"{url}: HTTP {status} that is not the collector's JSON (a captive portal or a filter?): "
                     f"{_shown(resp.body)}")
    if status == 200 or 400 <= status <= 499:
        return status, resp.body
    raise _Retry(f"{url}: unexpected HTTP {status}")


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(orjson.loads(body), dict)
    except orjson.JSONDecodeError:
        return False


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


__all__ = ["DEFAULT_MAX_BYTES", "Backoff", "FlushResult", "Outbox", "OutboxError", "collector_key", "one_line"]
