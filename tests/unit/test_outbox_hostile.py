"""The probe's outbox against a hostile or broken collector, on real sockets on 127.0.0.1: redirects, captive
portals and blockpages, report ids that are not ids, text that is not one line, a connection that goes
silent, damaged outbox entries, and measurements queued for another collector."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest

from tamperscope.collector import samples
from tamperscope.probe.outbox import Backoff, FlushResult, Outbox, OutboxError

FAST = Backoff(base=0.01, cap=0.05)
Answer = Callable[[str, str], Awaitable[bytes | None]]  # (method, path) -> the raw response, None: go silent


def http(status: int, body: bytes = b"", *headers: tuple[str, str]) -> bytes:
    head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
    return (head + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode("utf-8") + body


def collector(update: bytes, opened: bytes = http(200, b'{"report_id": "r1"}')) -> Answer:
    """A collector that opens reports with ``opened`` and answers every update with ``update``."""
    async def answer(method: str, path: str) -> bytes | None:
        if path == "/report":
            return opened
        return http(200, b"{}") if path.endswith("/close") else update
    return answer


async def _request(reader: asyncio.StreamReader) -> tuple[str, str]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    method, path, _ = head[0].split(" ", 2)
    length = next((int(h.split(":", 1)[1]) for h in head[1:] if h.lower().startswith("content-length:")), 0)
    await reader.readexactly(length)
    return method, path


@asynccontextmanager
async def server(answer: Answer) -> AsyncIterator[tuple[str, list[tuple[str, str]]]]:
    """A raw HTTP/1.1 server on 127.0.0.1 (keep-alive); yields its URL and the requests it received."""
    seen: list[tuple[str, str]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _request(reader)
                seen.append(request)
                data = await answer(*request)
                if data is None:
                    await asyncio.sleep(3600)
                writer.write(data or b"")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}", seen
    finally:
        srv.close()


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 10))


def filled(directory: Path, n: int = 3, collector: str | None = None) -> Outbox:
    box = Outbox(directory, durable=False, collector=collector) if collector else Outbox(directory, durable=False)
    for m in samples.corpus(n, seed=str(directory)):
        box.add(m)
    return box


async def flush(box: Outbox, url: str, timeout: float = 2.0) -> FlushResult:
    """A flush against a server that answers (the test of a silent one sets its own bounds). A flush retries a
    5xx or a page that is not the collector's until its deadline, so the deadline is also how long such a test
    takes: 2 s, not 0.5, because in the parallel pass, under load, a loopback request once took longer than
    0.5 s and the flush reported a timeout instead of the server's answer."""
    return await box.flush(url, timeout=timeout, request_timeout=timeout, backoff=FAST, parallel=2)


def one_line(text: str | None) -> bool:
    return bool(text) and all(c.isprintable() for c in text or "") and len(text or "") <= 400


def test_a_redirect_is_not_followed_and_sets_nothing_aside(tmp_path: Path) -> None:
    """A 3xx (a captive portal's login page, or a collector pointing at 169.254.169.254) is not the collector's
    answer: nothing is sent to where it points, and nothing is set aside as refused."""
    async def go() -> None:
        async with server(collector(b"")) as (elsewhere, hits):
            for where in ("open", "update"):
                box = filled(tmp_path / where)
                moved = http(302, b"", ("Location", elsewhere + "/steal"))
                answer = collector(moved) if where == "update" else collector(b"", opened=moved)
                async with server(answer) as (url, _):
                    result = await flush(box, url)
                assert result.rejected == 0 and len(box) == 3 and not box.rejected(), where
                assert "HTTP 302" in (result.last_error or "") and "not followed" in (result.last_error or "")
            assert hits == []

    run(go)


@pytest.mark.parametrize("where, status, body", [
    ("open", 403, b"<html><h1>Access denied</h1> by order of the ministry</html>"),
    ("update", 404, b"<html>Not found</html>"),
    ("update", 401, b"please log in to the hotel wifi"),
    ("open", 511, b'{"error": "network authentication required"}'),
    ("update", 501, b'{"error": "not implemented"}'),
])
def test_a_blockpage_or_captive_portal_is_not_a_refusal(tmp_path: Path, where: str, status: int,
                                                        body: bytes) -> None:
    """A 4xx that is not the collector's JSON (a blockpage, a portal) and any 5xx keep the measurements pending."""
    box = filled(tmp_path / "box")
    page = http(status, body, ("Content-Type", "text/html"))

    async def go() -> None:
        answer = collector(page) if where == "update" else collector(b"", opened=page)
        async with server(answer) as (url, seen):
            result = await flush(box, url)
        assert result.rejected == 0 and len(box) == 3 and not box.rejected()
        assert f"HTTP {status}" in (result.last_error or "") and one_line(result.last_error)

    run(go)


@pytest.mark.parametrize("report_id", ["a?b#c", "../../admin", "x/../../y", "..", "a\x00b", "a\r\nX-Evil: 1",
                                       "r" * 5000])
def test_a_report_id_that_is_not_an_id_never_reaches_a_url(tmp_path: Path, report_id: object) -> None:
    box = filled(tmp_path / "box")

    async def go() -> None:
        opened = http(200, orjson.dumps({"report_id": report_id}))
        async with server(collector(http(200, b'{"measurement_uid": "u"}'), opened=opened)) as (url, seen):
            result = await flush(box, url)
        assert {path for _, path in seen} == {"/report"}
        assert len(box) == 3 and result.sent == 0 and one_line(result.last_error)
        assert "report_id" in (result.last_error or "")

    run(go)


def test_what_the_collector_says_is_kept_to_one_printable_line(tmp_path: Path) -> None:
    """JSON strings may hold raw C1 controls (U+009B is a terminal's CSI) and bidi overrides: the reason shown
    (and kept beside the refused measurement) is one printable line."""
    box = filled(tmp_path / "box", 1)
    detail = "\u009b2J\u009b31m you were hacked \u202etxt.exe\u2028second line" + "!" * 2000
    refusal = http(400, orjson.dumps({"error": "invalid", "detail": detail}))

    async def go() -> None:
        async with server(collector(refusal)) as (url, _):
            result = await flush(box, url)
        assert result.rejected == 1 and one_line(result.last_error) and "you were hacked" in (result.last_error or "")
        reason = box.rejected()[0].with_suffix(".reason").read_text(encoding="utf-8")
        assert reason.endswith("\n") and one_line(reason[:-1])

    run(go)


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_the_deadline_holds_when_a_kept_alive_connection_goes_silent(tmp_path: Path) -> None:
    """The report opens on a connection that then goes silent; a fresh one is silent too. One request is
    bounded by request_timeout, and the flush by its timeout, reused connection or not."""
    box = filled(tmp_path / "box", 1)
    answers = [http(200, b'{"report_id": "r1"}')]

    async def answer(method: str, path: str) -> bytes | None:
        return answers.pop(0) if answers else None

    async def go() -> None:
        async with server(answer) as (url, seen):
            t0 = time.monotonic()
            result = await box.flush(url, timeout=1.0, request_timeout=1.0, backoff=FAST, parallel=1)
            took = time.monotonic() - t0
        assert took < 1.5, took
        assert len(box) == 1 and "timeout" in (result.last_error or "")

    run(go)


def test_damaged_entries_are_said_kept_and_do_not_stop_the_others(tmp_path: Path) -> None:
    box = filled(tmp_path / "box", 2)
    pending = tmp_path / "box" / "pending"
    (pending / "00-a-directory.json").mkdir()
    os.symlink("00-loop.json", pending / "00-loop.json")
    (pending / "00-truncated.json").write_bytes(b'{"test_name": "web_conn')
    ok = http(200, b'{"measurement_uid": "u"}')

    async def go() -> None:
        async with server(collector(ok)) as (url, _):
            result = await flush(box, url)
        assert result.sent == 2 and result.rejected == 0 and result.damaged == 1 and result.unreadable == 2
        assert one_line(result.damage) and "00-" in (result.damage or "")
        assert (pending / "00-a-directory.json").is_dir() and (pending / "00-loop.json").is_symlink()
        assert [p.name for p in box.rejected()] == ["00-truncated.json"]  # unreadable for good: set aside

    run(go)


def test_an_unusable_lock_file_is_an_outbox_error(tmp_path: Path) -> None:
    box = filled(tmp_path / "box", 1)
    (tmp_path / "box" / ".lock").mkdir()
    with pytest.raises(OutboxError, match="lock"):
        asyncio.run(box.flush("http://127.0.0.1:9", timeout=0.2))


def test_measurements_wait_for_the_collector_they_were_queued_for(tmp_path: Path) -> None:
    """An outbox filled for collector A and flushed to collector B sends B nothing, and says so."""
    ok = http(200, b'{"measurement_uid": "u"}')

    async def go() -> None:
        async with server(collector(ok)) as (a, seen_a), server(collector(ok)) as (b, seen_b):
            box = filled(tmp_path / "box", 2, collector=a + "/")
            result = await flush(box, b)
            assert seen_b == [] and result.sent == 0 and result.remaining == 0
            assert result.elsewhere == {a: 2} and len(box) == 2
            result = await flush(Outbox(tmp_path / "box"), a)  # a later run with --submit A sends them
            assert result.sent == 2 and len(box) == 0 and [p for _, p in seen_a].count("/report/r1") == 2

    run(go)


def test_waiting_counts_only_what_goes_to_this_outbox_s_collector(tmp_path: Path) -> None:
    """`tamperscope run --submit B` says how many measurements wait for B, and polls only when some do: the
    entries queued for A are not B's (they would never be sent to B)."""
    filled(tmp_path / "box", 2, collector="https://a.example/")
    for_b = Outbox(tmp_path / "box", durable=False, collector="https://b.example/")
    assert len(for_b) == 2 and for_b.waiting() == 0
    for m in samples.corpus(1, seed="b"):
        for_b.add(m)
    assert for_b.waiting() == 1 and len(for_b) == 3
    assert Outbox(tmp_path / "box", durable=False, collector="HTTPS://A.example").waiting() == 2
    assert Outbox(tmp_path / "box", durable=False).waiting() == 3  # made for no collector: everything


def test_an_entry_that_is_a_fifo_a_device_or_huge_is_left_in_place_and_the_rest_sent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A FIFO in pending/ blocked the uploads (and the run) for ever; a symlink to /dev/zero was read until memory
    ran out. Neither is an entry the outbox wrote: said, left in place, and the others are sent."""
    from tamperscope.probe import outbox

    box = filled(tmp_path / "box", 2)
    pending = tmp_path / "box" / "pending"
    os.mkfifo(pending / "00-fifo.json")
    os.symlink("/dev/zero", pending / "00-zero.json")
    monkeypatch.setattr(outbox, "MAX_ENTRY", 1 << 20)  # the samples are far smaller
    (pending / "00-huge.json").write_bytes(b'{"x": "' + b"a" * (1 << 20) + b'"}')
    ok = http(200, b'{"measurement_uid": "u"}')

    async def go() -> None:
        async with server(collector(ok)) as (url, _):
            result = await flush(box, url, timeout=3)
        assert result.sent == 2 and result.rejected == 0 and result.unreadable == 3
        assert one_line(result.damage)
        assert (pending / "00-fifo.json").exists() and (pending / "00-zero.json").is_symlink()
        assert (pending / "00-huge.json").stat().st_size > 1 << 20 and box.rejected() == []

    run(go)


@pytest.mark.parametrize("path", ["/api/v1", "/no/such/path"])
def test_a_wrong_path_to_a_real_collector_sets_nothing_aside(tmp_path: Path, path: str) -> None:
    """`--submit http://host:port/api/v1`: opening a report there is a 404 from `tamperscope serve` itself (its
    JSON), which set every measurement aside as refused for good; it is no collector, and they stay pending until
    the right URL takes them."""
    from tamperscope.collector.app import create_app
    from tamperscope.collector.config import Settings
    from tamperscope.collector.testing import uvicorn_server

    box = filled(tmp_path / "box", 3)

    async def go() -> None:
        app = create_app(Settings(db_path=tmp_path / "c.duckdb", announce=False, submit_rate=0, read_rate=0))
        async with uvicorn_server(app) as url:
            wrong = await box.flush(url + path, timeout=3, request_timeout=3, backoff=FAST)
            assert wrong.sent == 0 and wrong.rejected == 0 and not box.rejected() and len(box) == 3
            assert "HTTP 404" in (wrong.last_error or "")
            if path.startswith("/api/"):  # the API's JSON 404: said at once (elsewhere the explorer's page, retried)
                assert wrong.untrusted and "no collector at this URL" in (wrong.last_error or "")
                assert one_line(wrong.last_error)
            right = await box.flush(url, timeout=10, request_timeout=5, backoff=FAST)
        assert right.sent == 3 and len(box) == 0

    asyncio.run(asyncio.wait_for(go(), 30))


def _flush_peak(directory: Path, entries: int, reads: list[Path]) -> int:
    """The traced memory peak of two flushes of ``entries`` measurements of 1 MiB each, to a collector that is
    gone (its port refuses), every entry read listed in ``reads``."""
    import tracemalloc

    from tamperscope.probe import outbox

    box = Outbox(directory, durable=False)
    for i, m in enumerate(samples.corpus(entries, seed=str(directory))):
        m["test_keys"]["x_padding"] = f"{i:04d}" + "p" * (1 << 20)
        box.add(m)
    real_read = outbox._read_entry
    peak = 0

    def counting(path: Path) -> bytes:
        reads.append(path)
        return real_read(path)

    async def go() -> None:
        nonlocal peak
        async with server(collector(http(503, b'{"error": "busy"}'))) as (url, _):
            pass  # a collector that was here: its port now refuses (no server's buffers in this process's peak)
        tracemalloc.start()
        try:
            for _ in range(2):
                result = await box.flush(url, timeout=1.0, request_timeout=1.0, backoff=FAST, parallel=2)
                assert result.sent == 0 and result.remaining == entries
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    outbox._read_entry = counting  # type: ignore[assignment]
    try:
        run(go)
    finally:
        outbox._read_entry = real_read  # type: ignore[assignment]
    assert len(box) == entries
    return peak


def test_a_flush_holds_a_few_entries_at_a_time_not_the_whole_outbox(tmp_path: Path) -> None:
    """Every flush loaded every pending entry into memory at once: 750 MB pending made the probe 825 MB, read again
    on every upload cycle (about every 2 s while measuring) when the collector was down; and each read allocated
    64 MiB first. Now an entry's bytes are read when it is sent, and its report key is read once per outbox."""
    few, many = _flush_peak(tmp_path / "few", 6, []), _flush_peak(tmp_path / "many", 30, reads := [])
    assert many - few < 4 << 20, (few, many)  # 24 MiB more pending, not 24 MiB more held
    assert len(set(reads)) == 30 and len(reads) - 30 <= 2 * 2  # keys read once; then only what was sent (2 x 2)
