"""Edges of the collector's single writer: duplicates recognised while the store lags behind the raw log,
read-your-writes for what is acknowledged but not in the tables yet, and what is forgotten once it is."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tamperscope.collector import ingestor as ingestor_module
from tamperscope.collector import samples
from tamperscope.collector.config import Settings
from tamperscope.collector.ingestor import Ingestor, Receipt
from tamperscope.collector.testing import SyncClient, running_app


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    db = tmp_path_factory.mktemp("ingestor") / "i.duckdb"
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as c:
        yield c


def _line(host: str) -> bytes:
    return orjson.dumps(samples.measurement(url=f"https://{host}/", start="2026-05-21 10:00:00"))


def _raw_log(client: SyncClient) -> bytes:
    return b"".join(p.read_bytes() for p in client.collector.rawlog.segments_paths())


async def _with_the_store_held(ingestor: Ingestor, lines: list[bytes]) -> tuple[list[list[Receipt]], list[bytes | None],
                                                                                int]:
    """Submit each of ``lines`` on its own while the store thread is busy with a job (so nothing settles);
    the receipts, what `unsettled_raw` answers for each meanwhile, and how many were unsettled."""
    await ingestor.settled()  # nothing of an earlier test left unsettled
    started, gate = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        gate.wait(10)

    job = asyncio.ensure_future(ingestor.call(hold))
    try:
        assert await asyncio.to_thread(started.wait, 10)  # the store thread is in the job
        receipts = [await ingestor.submit([line]) for line in lines]
        raw = [ingestor.unsettled_raw(r[0].measurement_uid or "") for r in receipts]
        unsettled = ingestor.unsettled
    finally:
        gate.set()
        await job
    await ingestor.settled()
    return receipts, raw, unsettled


def test_a_resubmission_while_the_store_lags_is_a_duplicate_not_stored_twice(client: SyncClient) -> None:
    """Breaks if the journal forgot the keys or the unsettled lines it acknowledged: the raw log would hold it twice."""
    line = _line("lagging.example")
    ingestor = client.collector.ingestor
    receipts, raw, unsettled = client.run(_with_the_store_held, ingestor, [line, line])
    assert [r[0].status for r in receipts] == ["stored", "duplicate"]
    assert receipts[0][0].measurement_uid == receipts[1][0].measurement_uid
    assert raw == [line, line] and unsettled == 1  # read-your-writes while the tables lag
    assert _raw_log(client).count(line) == 1
    assert ingestor.unsettled == 0 and ingestor.unsettled_raw(receipts[0][0].measurement_uid or "") is None


def test_a_duplicate_keeps_the_verdict_of_the_first(client: SyncClient) -> None:
    """Breaks if a duplicate's receipt lost its verdict (the report endpoint answers it to the probe)."""
    line = _line("verdict-again.example")
    first, again = client.run(client.collector.ingestor.submit, [line, line])
    assert (first.status, again.status) == ("stored", "duplicate")
    assert again.verdict is not None and again.verdict == first.verdict


def test_a_resubmission_after_the_store_took_it_is_still_a_duplicate(client: SyncClient) -> None:
    """Breaks if a hit of the key set is not checked in the tables once the line is no longer unsettled."""
    line = _line("settled.example")
    ingestor = client.collector.ingestor
    (first,) = client.run(ingestor.submit, [line])
    client.run(ingestor.settled)
    assert ingestor.unsettled == 0
    (again,) = client.run(ingestor.submit, [line])
    assert (first.status, again.status) == ("stored", "duplicate")
    assert _raw_log(client).count(line) == 1


def test_after_a_store_error_the_checkpoint_stays_so_a_restart_replays_the_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Breaks if the checkpoint moved (while running, or at shutdown) past a batch the store failed to take:
    acknowledged, in the raw log, and never in the tables."""
    db = tmp_path / "s.duckdb"
    settings = Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)
    line, later = _line("store-error.example"), _line("store-later.example")
    with running_app(settings) as c:
        ingestor = c.collector.ingestor
        before = c.run(ingestor.call, ingestor.checkpoint)

        def broken(result: object) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(ingestor.store, "write", broken)
        (receipt,) = c.run(ingestor.submit, [line])
        c.run(ingestor.settled)
        monkeypatch.undo()
        assert receipt.status == "stored" and not ingestor.healthy and ingestor.stats.store_errors == 1
        (taken,) = c.run(ingestor.submit, [later])  # the store takes this one: it must not move the checkpoint
        c.run(ingestor.settled)
        assert taken.status == "stored" and c.run(ingestor.call, ingestor.checkpoint) == before
    with running_app(settings) as c:
        assert c.collector.ingestor.stats.replayed == 2
        listed = c.get("/api/v1/measurements", params={"domain": "store-error.example"}).json()
        assert [m["measurement_uid"] for m in listed["results"]] == [receipt.measurement_uid]


def test_a_line_that_breaks_the_analysis_is_refused_alone_not_with_its_group(
        client: SyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Breaks if one line that makes the analysis raise took the rest of its group commit down with it."""
    real = ingestor_module.analyse_batch

    def fragile(items: Any, matcher: Any = None, **kwargs: Any) -> Any:
        if any(b"//pill.example/" in item.data for item in items):
            raise RuntimeError("a record no check foresaw")
        return real(items, matcher, **kwargs)

    monkeypatch.setattr(ingestor_module, "analyse_batch", fragile)
    lines = [_line("neighbour-a.example"), _line("pill.example"), _line("neighbour-b.example")]
    receipts = client.run(client.collector.ingestor.submit, lines)
    assert [r.status for r in receipts] == ["stored", "rejected", "stored"]
    assert receipts[1].error == "invalid_measurement" and "RuntimeError: a record no check foresaw" in (
        receipts[1].detail or "")


def test_a_resubmission_after_a_restart_is_a_duplicate(tmp_path: Path) -> None:
    """Breaks if the key set were not loaded from the store at start: a probe's retry would be stored twice."""
    settings = Settings(db_path=tmp_path / "s.duckdb", announce=False, submit_rate=0, read_rate=0)
    line = _line("restarted.example")
    with running_app(settings) as c:
        (first,) = c.run(c.collector.ingestor.submit, [line])
    with running_app(settings) as c:
        (again,) = c.run(c.collector.ingestor.submit, [line])
        assert (first.status, again.status) == ("stored", "duplicate")
        assert again.measurement_uid == first.measurement_uid and _raw_log(c).count(line) == 1


def test_a_raw_log_that_cannot_be_written_fails_every_waiting_request(
        client: SyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Breaks if a request of a failed group commit were left waiting forever instead of told (500, retry)."""
    ingestor = client.collector.ingestor

    def full(lines: object) -> None:
        raise OSError(28, "No space left on device")

    async def submit(line: bytes) -> list[Receipt]:
        return await asyncio.wait_for(ingestor.submit([line]), 5)

    monkeypatch.setattr(ingestor.rawlog, "append", full)
    line = _line("disk-full.example")
    stored = ingestor.stats.stored
    with pytest.raises(OSError, match="No space left"):
        client.run(submit, line)
    monkeypatch.undo()
    assert _raw_log(client).count(line) == 0  # nothing acknowledged, nothing kept
    assert ingestor.stats.stored == stored  # nor counted as stored (QA: the counts said it was)
    assert [r.status for r in client.run(submit, line)] == ["stored"]  # and the writer goes on
    assert ingestor.stats.stored == stored + 1


def test_a_transaction_of_several_groups_checkpoints_the_last(tmp_path: Path) -> None:
    """Breaks if the checkpoint took the first group's end: a restart would read again what the tables hold."""
    settings = Settings(db_path=tmp_path / "s.duckdb", announce=False, submit_rate=0, read_rate=0)
    lines = [_line("group-one.example"), _line("group-two.example"), _line("group-three.example")]
    with running_app(settings) as c:
        receipts, _, unsettled = c.run(_with_the_store_held, c.collector.ingestor, lines)
        assert [r[0].status for r in receipts] == ["stored"] * 3 and unsettled == 3
    with running_app(settings) as c:
        assert c.collector.ingestor.stats.replayed == 0
        assert c.get("/api/v1/measurements").json()["metadata"]["count"] == 3
