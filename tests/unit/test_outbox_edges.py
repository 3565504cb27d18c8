"""Edges of the probe's outbox and of `probe.seen.Seen` the other tests left open: statuses on the border between
the collector's refusal and a retry, a 200 that acknowledges nothing, the report id's length bound, a report
forgotten twice, the backoff's cap on Retry-After, one_line's length, and keys that are not strings."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from tamperscope.probe.outbox import MAX_ANSWER, Backoff, FlushResult, Outbox, collector_key, one_line
from tamperscope.probe.seen import Seen
from tests.unit.test_outbox_hostile import FAST, collector, filled, http, run, server
from tests.unit.test_outbox_hostile import one_line as is_one_line

OK = http(200, b'{"measurement_uid": "u"}')


async def quick(box: Outbox, url: str, timeout: float = 1.5) -> FlushResult:
    """A short flush: a retried answer takes the whole deadline (1.5 s, so that a loopback answer on a loaded
    machine still comes within it)."""
    return await box.flush(url, timeout=timeout, request_timeout=timeout, backoff=FAST, parallel=1)


def test_a_405_to_opening_a_report_is_no_collector_and_sets_nothing_aside(tmp_path: Path) -> None:
    """A 405 to POST /report (a web server that takes no POST there) is no collector, not a refusal: taking it
    for one would set every measurement aside."""
    box = filled(tmp_path / "box", 2)
    opened = http(405, b'{"detail": "Method Not Allowed"}', ("Content-Type", "application/json"))

    async def go() -> None:
        async with server(collector(OK, opened=opened)) as (url, seen):
            result = await quick(box, url, timeout=3)
        assert result.untrusted and result.rejected == 0 and not box.rejected() and len(box) == 2
        assert "HTTP 405" in (result.last_error or "") and "no collector at this URL" in (result.last_error or "")
        assert is_one_line(result.last_error) and {p for _, p in seen} == {"/report"}

    run(go)


@pytest.mark.parametrize("status", [408, 425, 429])
def test_a_retryable_4xx_in_the_collectors_json_is_retried_not_a_refusal(tmp_path: Path, status: int) -> None:
    """408, 425 and 429 are "later", even with a JSON body: set aside as refused, a measurement is never sent."""
    box = filled(tmp_path / "box", 1)
    busy = http(status, b'{"error": "busy"}', ("Content-Type", "application/json"), ("Retry-After", "0"))

    async def go() -> None:
        async with server(collector(busy)) as (url, seen):
            result = await quick(box, url)
        assert result.rejected == 0 and result.sent == 0 and not box.rejected() and len(box) == 1
        assert result.remaining == 1 and f"HTTP {status}" in (result.last_error or "")
        assert [p for _, p in seen].count("/report/r1") >= 1

    run(go)


@pytest.mark.parametrize("status", [201, 202, 204])
def test_a_2xx_other_than_200_acknowledges_nothing_and_refuses_nothing(tmp_path: Path, status: int) -> None:
    """Only a 200 with a measurement_uid deletes an entry and only the collector's 4xx sets one aside: a 204 (a
    proxy's empty answer) must do neither."""
    box = filled(tmp_path / "box", 1)

    async def go() -> None:
        async with server(collector(http(status, b'{"measurement_uid": "u"}'))) as (url, _):
            result = await quick(box, url)
        assert result.rejected == 0 and result.sent == 0 and not box.rejected() and len(box) == 1
        assert f"HTTP {status}" in (result.last_error or "") and is_one_line(result.last_error)

    run(go)


@pytest.mark.parametrize("body", [b'{"measurement_uid": ""}', b'{"measurement_uid": null}', b"[]", b"{}"])
def test_a_200_without_a_measurement_uid_deletes_nothing(tmp_path: Path, body: bytes) -> None:
    """An empty measurement_uid acknowledges nothing: deleting the entry on it would lose a measurement."""
    box = filled(tmp_path / "box", 1)

    async def go() -> None:
        async with server(collector(http(200, body))) as (url, _):
            result = await quick(box, url)
        assert result.sent == 0 and result.duplicates == 0 and result.uids == [] and len(box) == 1
        assert "measurement_uid" in (result.last_error or "")

    run(go)


@pytest.mark.parametrize("flag, duplicates", [(True, 1), (False, 0), ("true", 0), (1, 0)])
def test_only_duplicate_true_counts_a_duplicate(tmp_path: Path, flag: object, duplicates: int) -> None:
    """The collector says a duplicate with JSON true; anything else is a new measurement, counted as sent."""
    box = filled(tmp_path / "box", 1)
    answer = http(200, orjson.dumps({"measurement_uid": "u1", "duplicate": flag}))

    async def go() -> None:
        async with server(collector(answer)) as (url, _):
            result = await quick(box, url, timeout=3)
        assert result.duplicates == duplicates and result.sent == 1 - duplicates and result.uids == ["u1"]
        assert len(box) == 0 and result.done

    run(go)


@pytest.mark.parametrize("length, taken", [(200, True), (201, False)])
def test_a_report_id_is_at_most_200_characters(tmp_path: Path, length: int, taken: bool) -> None:
    """The collector's ids are at most 200 characters (collector/schema.py): one longer never goes in a URL."""
    box = filled(tmp_path / "box", 1)
    report_id = "r" * length
    opened = http(200, b'{"report_id": "' + report_id.encode() + b'"}')

    async def go() -> None:
        async with server(collector(OK, opened=opened)) as (url, seen):
            result = await quick(box, url, timeout=3 if taken else 1.5)
        paths = {p for _, p in seen}
        if taken:
            assert result.sent == 1 and len(box) == 0 and f"/report/{report_id}" in paths
        else:
            assert paths == {"/report"} and result.sent == 0 and len(box) == 1
            assert "report_id" in (result.last_error or "")

    run(go)


def test_a_report_forgotten_again_after_reopening_is_not_reopened_for_ever(tmp_path: Path) -> None:
    """A 404 to an update reopens the report once; a second 404 (the collector's JSON) is its refusal. Reopening
    on every 404 would ask for new reports until the deadline and send nothing."""
    box = filled(tmp_path / "box", 1)
    gone = http(404, b'{"error": "no such report"}', ("Content-Type", "application/json"))

    async def go() -> None:
        async with server(collector(gone)) as (url, seen):
            result = await quick(box, url, timeout=3)
        paths = [p for _, p in seen]
        assert paths.count("/report") == 2 and paths.count("/report/r1") == 2
        assert result.rejected == 1 and len(box) == 0 and len(box.rejected()) == 1
        assert "HTTP 404" in box.rejected()[0].with_suffix(".reason").read_text(encoding="utf-8")

    run(go)


def test_an_entry_left_in_place_as_unreadable_is_not_counted_as_remaining(tmp_path: Path) -> None:
    """`remaining` is what is still to send: a FIFO in pending/ is never sent, so it must not keep a flush
    from being `done` (the run would poll for it until its deadline)."""
    box = filled(tmp_path / "box", 2)
    os.mkfifo(tmp_path / "box" / "pending" / "00-fifo.json")

    async def go() -> None:
        async with server(collector(OK)) as (url, _):
            result = await quick(box, url, timeout=3)
        assert result.sent == 2 and result.unreadable == 1 and result.remaining == 0 and result.done
        assert len(box) == 1 and (tmp_path / "box" / "pending" / "00-fifo.json").exists()

    run(go)


def test_another_process_s_add_in_progress_is_neither_counted_nor_sent_nor_set_aside(tmp_path: Path) -> None:
    """An add writes ``.tmp-<name>.json`` before its rename: a flush meanwhile that took the half-written file for
    an entry would set it aside as damaged, and the other process's rename would then fail and lose it."""
    box = filled(tmp_path / "box", 1)
    half = tmp_path / "box" / "pending" / ".tmp-00000000000000000001-1-000001-0123456789abcdef.json"
    half.write_bytes(b'{"test_name": "web_conn')  # written after this process opened the outbox

    async def go() -> None:
        async with server(collector(OK)) as (url, seen):
            result = await quick(box, url, timeout=3)
        assert result.sent == 1 and result.damaged == 0 and result.unreadable == 0 and result.done
        assert half.exists() and not box.rejected() and len(box) == 0 and box.pending() == []
        assert [p for _, p in seen].count("/report/r1") == 1

    run(go)


def test_a_4xx_answer_over_the_limit_is_retried_even_if_its_first_mib_reads_as_json(tmp_path: Path) -> None:
    """An answer cut at MAX_ANSWER is not the collector's whole word: a JSON object padded with whitespace past
    the limit reads as one once cut, and taken for a refusal it would set the measurement aside."""
    box = filled(tmp_path / "box", 1)
    padded = http(400, b'{"error": "invalid"}' + b" " * (MAX_ANSWER + 16), ("Content-Type", "application/json"))

    async def go() -> None:
        async with server(collector(padded)) as (url, _):
            result = await quick(box, url)
        assert result.rejected == 0 and not box.rejected() and len(box) == 1
        assert f"over {MAX_ANSWER} bytes" in (result.last_error or "")

    run(go)


def test_an_entry_of_exactly_max_entry_bytes_is_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MAX_ENTRY is the most an entry may hold, inclusive: one byte more is left in place, not one byte fewer."""
    from tamperscope.probe import outbox

    box = filled(tmp_path / "box", 1)
    size = box.pending()[0].stat().st_size
    monkeypatch.setattr(outbox, "MAX_ENTRY", size)

    async def go() -> None:
        async with server(collector(OK)) as (url, _):
            result = await quick(box, url, timeout=3)
        assert result.sent == 1 and result.unreadable == 0 and len(box) == 0

    run(go)


def test_a_flush_with_parallel_0_and_an_upper_case_scheme_still_sends(tmp_path: Path) -> None:
    """The public flush() takes "HTTP://" as http:// and runs at least one worker: parallel=0 sent nothing."""
    box = filled(tmp_path / "box", 2)

    async def go() -> None:
        async with server(collector(OK)) as (url, seen):
            result = await box.flush(url.replace("http://", "HTTP://"), timeout=3, backoff=FAST, parallel=0)
        assert result.sent == 2 and result.done and len(box) == 0
        assert [p for _, p in seen].count("/report/r1") == 2

    run(go)


def test_retry_after_is_honoured_but_never_past_the_cap() -> None:
    """A Retry-After of an hour from a hostile collector must not stall the flush past the backoff's cap."""
    b = Backoff(base=0.5, cap=30.0, jitter=0.5)
    assert b.delay(0, retry_after=3600) == 30.0
    assert b.delay(0, retry_after=float("inf")) == 30.0
    assert 10.0 <= b.delay(0, retry_after=10.0) <= 30.0
    assert all(0.25 <= b.delay(0) <= 0.5 for _ in range(50))  # jittered down, never up
    assert all(15.0 <= b.delay(attempt) <= 30.0 for attempt in (6, 30, 10_000))  # capped, no overflow


def test_one_line_never_goes_past_its_limit() -> None:
    """What a collector says is cut to the limit, the ellipsis included, and flattened to one printable line."""
    assert one_line("x" * 1000, 10) == "x" * 9 + "…"
    assert len(one_line("y" * 5000)) == 300
    assert one_line("a\r\n\tb\x1b[2J\u202ec", 50) == "a b [2J c"
    assert one_line("z" * 10, 10) == "z" * 10


def test_collector_key_ignores_case_of_scheme_and_host_and_a_trailing_slash() -> None:
    """Entries queued for a collector are matched by this key: a different spelling of it must not strand them."""
    assert collector_key(" HTTPS://Collector.Example:8443/api/ ") == collector_key("https://collector.example:8443/api")
    assert collector_key("https://c.example/Path") != collector_key("https://c.example/path")
    assert collector_key("https://c.example/?x=1") == "https://c.example?x=1"


@pytest.mark.parametrize("key", [None, 1, b"a", ("a",)])
def test_a_key_that_is_not_a_string_is_never_in_the_set(key: object) -> None:
    """``key in seen`` is False for what is not a string, as for a set of strings; never an error."""
    s = Seen(["a", "b"])
    assert key not in s and "a" in s


def test_a_key_never_added_is_not_held_when_every_key_was_added_twice() -> None:
    """A key not found must not borrow the "added more than once" mark of the set's last key (index -1)."""
    s = Seen(["a", "b", "c", "a", "b", "c"])
    assert s.holds(["a", "x", "c", "y"]) == b"\1\0\1\0"
    assert s.once(["x", "a"]) == b"\0\0" and s.missing(["x", "b", "y"]) == ["x", "y"]
    assert "x" not in s and len(s) == 3


def test_keys_differing_only_in_lone_surrogates_stay_different() -> None:
    """A JSON line can hold a lone surrogate: hashed with a replacement character, "\\ud800x", "\\udc00x" and "?x"
    would be one key, and a resume would skip inputs never measured."""
    s = Seen(["\ud800x", "a"])
    assert s.holds(["\ud800x", "\udc00x", "?x", "\ufffdx", "x"]) == b"\1\0\0\0\0"
    assert s.missing(["\udc00x", "\ud800x"]) == ["\udc00x"]
