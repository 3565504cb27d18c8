"""A bounded load test on loopback against a real ``tamperscope serve`` process.

50 concurrent submitters × 200 measurements each, through OONI's report
protocol. Every acknowledged measurement must be there afterwards, with zero
5xx. Then the same load again, with the server killed (SIGKILL) in the middle
and restarted on the same store: nothing acknowledged before the kill is lost,
and the submitters finish their work against the new process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest

from tamperscope.collector import samples
from tamperscope.collector.rawlog import collector_dir_for
from tamperscope.collector.testing import free_port

SUBMITTERS = 50
EACH = 200
TOTAL = SUBMITTERS * EACH

pytestmark = pytest.mark.timeout(240)


class Server:
    """``tamperscope serve`` in a subprocess on 127.0.0.1."""

    def __init__(self, db: Path, port: int) -> None:
        self.db = db
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = db.with_suffix(f".{port}.log")

    def start(self) -> None:
        env = {**os.environ, "TAMPERSCOPE_ADMIN_TOKEN": ""}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tamperscope", "serve", "--db", str(self.db), "--port", str(self.port),
                 "--rate", "0", "--read-rate", "0"], stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("the server did not come up")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "load.duckdb", free_port())
    s.start()
    try:
        yield s
    finally:
        s.stop()


@dataclass
class Load:
    """What the submitters saw."""

    acked: dict[int, str] = field(default_factory=dict)     # measurement index -> uid
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    up: asyncio.Event = field(default_factory=asyncio.Event)


def bodies(seed: str) -> list[bytes]:
    return [b'{"format":"json","content":' + orjson.dumps(m) + b"}" for m in samples.corpus(TOTAL, seed=seed)]


class Connection:
    """A minimal HTTP/1.1 keep-alive client (httpx costs more CPU than the server on 2 cores)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            self.writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                              b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))
            head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 60)
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            return status, await asyncio.wait_for(self.reader.readexactly(length), 60)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            await self.close()
            raise ConnectionError(path) from None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


REPORT = orjson.dumps({"test_name": "web_connectivity", "probe_cc": "IT", "probe_asn": "AS30722", "format": "json"})


async def submitter(port: int, index: int, payloads: list[bytes], load: Load) -> None:
    conn = Connection(port)
    rid: str | None = None
    try:
        for i in range(index * EACH, (index + 1) * EACH):
            while i not in load.acked:
                await load.up.wait()
                try:
                    if rid is None:
                        status, body = await conn.post("/report", REPORT)
                        load.statuses[status] += 1
                        if status != 200:
                            continue
                        rid = orjson.loads(body)["report_id"]
                    status, body = await conn.post(f"/report/{rid}", payloads[i])
                    load.statuses[status] += 1
                    if status == 200:
                        load.acked[i] = orjson.loads(body)["measurement_uid"]
                    elif status >= 500:
                        await asyncio.sleep(0.05)
                except ConnectionError:
                    load.transport_errors += 1
                    await asyncio.sleep(0.05)
        if rid is not None:
            try:
                await conn.post(f"/report/{rid}/close", b"{}")
            except ConnectionError:
                pass
    finally:
        await conn.close()


async def run_load(port: int, payloads: list[bytes], load: Load) -> None:
    load.up.set()
    async with asyncio.TaskGroup() as tg:
        for n in range(SUBMITTERS):
            tg.create_task(submitter(port, n, payloads, load))


def stored_uids(url: str) -> set[str]:
    """The uids in the store's tables, once it has taken everything acknowledged."""
    deadline = time.monotonic() + 60
    while httpx.get(url + "/api/v1/health", timeout=10).json()["unsettled"] and time.monotonic() < deadline:
        time.sleep(0.05)
    r = httpx.get(url + "/api/v1/export/measurements.jsonl", timeout=120)
    assert r.status_code == 200
    return {orjson.loads(line)["measurement_uid"] for line in r.content.splitlines()}


def raw_log_lines(db: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in (collector_dir_for(db) / "incoming").glob("*.jsonl"))


def test_fifty_submitters_every_ack_stored_no_5xx(server: Server) -> None:
    payloads = bodies("load")
    load = Load()
    started = time.monotonic()
    asyncio.run(run_load(server.port, payloads, load))
    elapsed = time.monotonic() - started
    fives = sum(n for status, n in load.statuses.items() if status >= 500)
    print(f"\nload: {TOTAL} measurements from {SUBMITTERS} submitters in {elapsed:.1f} s "
          f"({TOTAL / elapsed:.0f}/s); statuses {dict(load.statuses)}; transport errors {load.transport_errors}")
    assert fives == 0 and load.transport_errors == 0
    assert len(load.acked) == TOTAL and len(set(load.acked.values())) == TOTAL
    assert stored_uids(server.url) == set(load.acked.values())
    assert raw_log_lines(server.db) == TOTAL  # one line each: no duplicates in the raw log
    health = httpx.get(server.url + "/api/v1/health").json()
    assert health["measurements"] == TOTAL and health["status"] == "ok"
    print(f"load: {health['commits']} fsync'd group commits (largest {health['largest_commit']}), "
          f"{health['transactions']} store transactions (largest {health['largest_transaction']})")


def test_kill_9_in_the_middle_loses_nothing_acknowledged(server: Server) -> None:
    payloads = bodies("crash")
    load = Load()
    report: dict[str, float] = {}

    async def chaos() -> None:
        while len(load.acked) < TOTAL // 3:
            await asyncio.sleep(0.01)
        load.up.clear()  # submitters pause at their next attempt; those in flight see the kill
        await asyncio.to_thread(server.kill)
        before = dict(load.acked)  # every 200 the dead process ever sent
        report["acked_before_kill"] = len(before)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(server.start)
        present = await asyncio.to_thread(stored_uids, server.url)
        missing = set(before.values()) - present
        report["missing"] = len(missing)
        load.up.set()

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run_load(server.port, payloads, load))
            tg.create_task(chaos())

    started = time.monotonic()
    asyncio.run(main())
    elapsed = time.monotonic() - started
    fives = sum(n for status, n in load.statuses.items() if status >= 500)
    print(f"\ncrash: killed after {report['acked_before_kill']:.0f} acknowledgements, missing after restart: "
          f"{report['missing']:.0f}; finished {len(load.acked)} in {elapsed:.1f} s; statuses {dict(load.statuses)}; "
          f"transport errors while down {load.transport_errors}")
    assert report["missing"] == 0
    assert fives == 0
    assert len(load.acked) == TOTAL
    assert stored_uids(server.url) == set(load.acked.values())
    lines = raw_log_lines(server.db)
    assert TOTAL <= lines <= TOTAL + SUBMITTERS  # at most the in-flight ones were written twice
