"""The probe's outbox against the real collector on loopback: durable adds, uploads, retries with
backoff, refusals set aside, a collector that is down, and a flush killed with SIGKILL that resumes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from tamperscope.collector import samples
from tamperscope.collector.app import create_app
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import free_port, uvicorn_server
from tamperscope.probe.outbox import Backoff, Outbox, OutboxError

FAST = Backoff(base=0.01, cap=0.05)


class Flaky:
    """ASGI wrapper: answers the first submissions with the given statuses, optionally slows the rest."""

    def __init__(self, app: Any, fail: list[int] | None = None, delay: float = 0.0) -> None:
        self.app = app
        self.fail = list(fail or [])
        self.delay = delay
        self.submissions = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/report/") and not path.endswith("/close"):
            self.submissions += 1
            if self.fail:
                status = self.fail.pop(0)
                body = orjson.dumps({"error": "flaky", "detail": "try again"})
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"application/json"), (b"retry-after", b"0")]})
                await send({"type": "http.response.body", "body": body})
                return
            if self.delay:
                await asyncio.sleep(self.delay)
        await self.app(scope, receive, send)


@asynccontextmanager
async def collector(db: Path, *, fail: list[int] | None = None, delay: float = 0.0,
                    port: int | None = None) -> AsyncIterator[tuple[str, Flaky]]:
    app = create_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0))
    flaky = Flaky(app, fail, delay)
    async with uvicorn_server(flaky, port) as url:
        flaky.app_state = app.state  # type: ignore[attr-defined]
        yield url, flaky


async def settled(flaky: Flaky) -> int:
    await flaky.app_state.collector.ingestor.settled()  # type: ignore[attr-defined]
    return stored(flaky)


def stored(flaky: Flaky) -> int:
    row = flaky.app_state.collector.reader.cursor().execute("SELECT count(*) FROM measurements").fetchone()  # type: ignore[attr-defined]
    return int(row[0])


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 60))


def fill(box: Outbox, n: int, seed: str) -> list[dict[str, Any]]:
    ms = list(samples.corpus(n, seed=seed))
    for m in ms:
        box.add(m)
    return ms


def test_add_is_durable_and_atomic(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "box")
    (tmp_path / "box" / "pending" / ".tmp-interrupted.json").write_bytes(b'{"half')
    box = Outbox(tmp_path / "box")  # an add() killed before its rename leaves nothing behind
    m = samples.measurement("ok")
    path = box.add(m)
    assert path.parent.name == "pending" and orjson.loads(path.read_bytes()) == m
    assert box.add(orjson.dumps(m)) != path and len(box) == 2
    assert not list((tmp_path / "box" / "pending").glob(".tmp-*"))
    with pytest.raises(ValueError):
        box.add(b"[1, 2]")


def test_flush_uploads_everything_and_empties_the_outbox(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "box")
    fill(box, 40, "flush")

    async def go() -> None:
        async with collector(tmp_path / "c.duckdb") as (url, flaky):
            sent_to: list[str] = []
            result = await box.flush(url, timeout=30, on_sent=lambda uid, path: sent_to.append(uid))
            assert result.done and result.sent == 40 and result.rejected == 0 and len(result.uids) == 40
            assert await settled(flaky) == 40 and len(box) == 0 and sorted(sent_to) == sorted(result.uids)
            again = fill(box, 3, "flush")[:3]  # the same content again: acknowledged as duplicates
            assert again
            result = await box.flush(url + "/", timeout=30)
            assert result.duplicates == 3 and result.sent == 0 and await settled(flaky) == 40 and len(box) == 0

    run(go)


def test_retries_5xx_and_429_with_backoff(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "box")
    fill(box, 10, "retry")

    async def go() -> None:
        async with collector(tmp_path / "c.duckdb", fail=[503, 429, 500, 502, 503, 504]) as (url, flaky):
            result = await box.flush(url, timeout=30, backoff=FAST, parallel=2)
            assert result.done and result.sent == 10
            assert result.attempts == 16 and flaky.submissions == 16
            assert await settled(flaky) == 10

    run(go)


def test_refused_measurements_are_set_aside_with_the_reason(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "box")
    fill(box, 4, "refused")
    bad = samples.measurement("ok", start="2026-05-01 00:00:01")
    bad["probe_cc"] = "italy"
    box.add(bad)
    odd = samples.measurement("ok", start="2026-05-01 00:00:02")
    odd["test_runtime"] = "slow"
    box.add(odd)

    async def go() -> None:
        async with collector(tmp_path / "c.duckdb") as (url, flaky):
            result = await box.flush(url, timeout=30, backoff=FAST)
            assert result.sent == 4 and result.rejected == 2 and result.done
            reasons = {orjson.loads(p.read_bytes())["measurement_start_time"]: p.with_suffix(".reason").read_text()
                       for p in box.rejected()}
            assert "HTTP 400" in reasons[bad["measurement_start_time"]] and "probe_cc" in reasons[bad["measurement_start_time"]]
            assert "HTTP 422" in reasons[odd["measurement_start_time"]] and "test_runtime" in reasons[odd["measurement_start_time"]]

    run(go)


def test_collector_down_keeps_everything_until_it_is_back(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "box")
    fill(box, 8, "down")
    port = free_port()

    async def go() -> None:
        result = await box.flush(f"http://127.0.0.1:{port}", timeout=1.0, backoff=FAST)
        assert result.remaining == 8 and result.sent == 0 and "connection_refused" in (result.last_error or "")
        async with collector(tmp_path / "c.duckdb", port=port) as (url, flaky):
            result = await box.flush(url, timeout=30, backoff=FAST)
            assert result.done and result.sent == 8 and await settled(flaky) == 8

    run(go)


def test_a_forgotten_report_is_reopened(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "box")
    fill(box, 2, "reopen")

    async def go() -> None:
        async with collector(tmp_path / "c.duckdb", fail=[404]) as (url, flaky):
            result = await box.flush(url, timeout=30, backoff=FAST, parallel=1)
            assert result.done and result.sent == 2 and result.rejected == 0

    run(go)


def test_one_flush_at_a_time(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "box")
    lock = box._lock()
    try:
        with pytest.raises(OutboxError, match="another process"):
            asyncio.run(box.flush("http://127.0.0.1:9", timeout=1))
    finally:
        os.close(lock)
    with pytest.raises(OutboxError, match="http"):
        asyncio.run(box.flush("ftp://x", timeout=1))


FLUSHER = """
import asyncio, sys
from tamperscope.probe.outbox import Outbox
asyncio.run(Outbox(sys.argv[1]).flush(sys.argv[2], timeout=60, parallel=1))
"""


def test_a_killed_flush_resumes_and_loses_nothing(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "box")
    ms = fill(box, 30, "killed")

    async def go() -> None:
        async with collector(tmp_path / "c.duckdb", delay=0.05) as (url, flaky):
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", FLUSHER, str(tmp_path / "box"), url)
            try:
                for _ in range(400):
                    if stored(flaky) >= 8:
                        break
                    await asyncio.sleep(0.02)
                assert await settled(flaky) >= 8
            finally:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
            assert proc.returncode == -signal.SIGKILL
            left = len(box)
            assert 0 < left < 30, left
            result = await box.flush(url, timeout=30, backoff=FAST)  # the next run resumes
            assert result.done and result.sent + result.duplicates == left
            assert await settled(flaky) == 30
            uids = {r[0] for r in flaky.app_state.collector.reader.cursor().execute(  # type: ignore[attr-defined]
                "SELECT input FROM measurements").fetchall()}
            assert len(uids) == len({m["input"] for m in ms})

    run(go)


def test_an_attempt_cut_by_the_deadline_does_not_hide_the_collectors_error() -> None:
    from tamperscope.probe.outbox import FlushResult, _note, _Retry

    result = FlushResult()
    _note(result, _Retry("http://c/report: connection_refused"))
    _note(result, _Retry("http://c/report: generic_timeout_error", cut=True))  # the flush's time ran out
    assert result.last_error == "http://c/report: connection_refused"
    _note(result, _Retry("http://c/report: HTTP 503"))  # a real answer replaces it
    assert result.last_error == "http://c/report: HTTP 503"
    alone = FlushResult()
    _note(alone, _Retry("http://c/report: generic_timeout_error", cut=True))  # nothing better known
    assert alone.last_error == "http://c/report: generic_timeout_error"
