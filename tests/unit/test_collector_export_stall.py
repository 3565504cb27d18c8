"""Streamed exports against readers that stop reading: four clients (four addresses, forwarded by the trusted
proxy on 127.0.0.1) that opened exports and then read nothing held every export slot for as long as they kept
their sockets, and everyone else got 503. Each chunk must now be taken within a grace and a pace: a stalled
export is dropped and its slot released. Real sockets: uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tamperscope.collector import api, samples
from tamperscope.collector.app import create_app
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import uvicorn_server


def _measurement(n: int) -> dict[str, Any]:
    m = samples.measurement(url=f"https://stall{n}.example/", start=f"2026-05-20 00:{n // 60:02d}:{n % 60:02d}")
    m["test_keys"]["requests"][0]["response"]["body"] = f"<p>page {n}</p>" + "x" * 100_000
    return m


def _stalled_export(port: int, address: str) -> socket.socket:
    """A client that asks for the raw export, reads its head, and then nothing."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET /api/v1/export/raw.jsonl HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {address}\r\n\r\n".encode())
    assert s.recv(12) == b"HTTP/1.1 200"
    return s


@pytest.mark.wallclock  # waits out the grace (shortened to 1 s here)
def test_readers_that_stop_reading_lose_their_exports_and_free_the_slots(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "SEND_GRACE", 1.0)
    monkeypatch.setattr(api, "SEND_PACE", 10**12)  # a piece has 1 s, not 65

    async def main() -> list[int]:
        app = create_app(Settings(db_path=tmp_path / "c.duckdb", announce=False, submit_rate=0, read_rate=0))
        async with uvicorn_server(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            bulk = b"\n".join(orjson.dumps(_measurement(n)) for n in range(300))  # ~30 MB to export
            assert (await client.post("/api/v1/submit", content=bulk)).json()["stored"] == 300
            await app.state.collector.ingestor.settled()
            port = int(url.rsplit(":", 1)[1])
            stalled = [await asyncio.to_thread(_stalled_export, port, f"198.51.100.{i}") for i in range(1, 5)]
            try:
                victim = {"X-Forwarded-For": "203.0.113.99"}
                codes = [(await client.get("/api/v1/export/measurements.csv", headers=victim)).status_code]
                await asyncio.sleep(3)  # past the grace: the four exports are dropped
                answer = await client.get("/api/v1/export/measurements.csv", headers=victim)
                codes.append(answer.status_code)
                assert answer.text.count("\n") == 301, answer.text[:300]  # the whole export, its header and rows
                # a stalled reader's connection was closed: what it reads ends
                stalled[0].settimeout(5)
                got = b""
                while chunk := await asyncio.to_thread(stalled[0].recv, 1 << 16):
                    got += chunk
                assert 0 < len(got) < 30_000_000
                return codes
            finally:
                for s in stalled:
                    s.close()

    assert asyncio.run(asyncio.wait_for(main(), 120)) == [503, 200]


def _hung_up_export(port: int, address: str, path: str) -> None:
    """A client that asks for an export, reads the start of its answer, and hangs up."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {address}\r\n\r\n".encode())
        assert s.recv(12) == b"HTTP/1.1 200"


def test_readers_that_hang_up_free_their_slots_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Four clients that opened exports and closed their sockets held every slot until the garbage collector
    # closed their streams, minutes later: everyone else got 503 (QA). The grace for stalled readers is made
    # long here, so that only the hang-up can free them.
    monkeypatch.setattr(api, "SEND_GRACE", 600.0)

    async def main() -> list[int]:
        app = create_app(Settings(db_path=tmp_path / "c.duckdb", announce=False, submit_rate=0, read_rate=0))
        async with uvicorn_server(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            bulk = b"\n".join(orjson.dumps(_measurement(n)) for n in range(300))
            assert (await client.post("/api/v1/submit", content=bulk)).json()["stored"] == 300
            await app.state.collector.ingestor.settled()
            port = int(url.rsplit(":", 1)[1])
            slots = app.state.export_slots
            for i in range(1, 5):
                await asyncio.to_thread(_hung_up_export, port, f"198.51.100.{i}", "/api/v1/export/raw.jsonl")
            for _ in range(100):  # the server sees each hang-up at its next write
                if not slots.in_use:
                    break
                await asyncio.sleep(0.05)
            codes = []
            for address in ("203.0.113.99", "198.51.100.1"):  # another client, and one that hung up
                answer = await client.get("/api/v1/export/measurements.csv", headers={"X-Forwarded-For": address})
                codes.append(answer.status_code)
                assert answer.status_code != 200 or answer.text.count("\n") == 301
            return [slots.in_use, *codes]

    assert asyncio.run(asyncio.wait_for(main(), 120)) == [0, 200, 200]
