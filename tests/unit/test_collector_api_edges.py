"""Edges of the collector's guards found by mutation testing: the rate limiter's buckets and export slots, the raw
log's segments and tombstones, the admin token's checks, and the admin deletion's transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tamperscope.analysis.aggregates import Filters
from tamperscope.collector import admin, samples
from tamperscope.collector.admin import TokenError, check_token, usable_token
from tamperscope.collector.api import EXPORT_FIELDS, _json_chunks, report_filename
from tamperscope.collector.config import Settings
from tamperscope.collector.ratelimit import RateLimiter, Slots
from tamperscope.collector.rawlog import Position, RawLog
from tamperscope.collector.testing import SyncClient, running_app

TOKEN = "edge-admin-token-0123456789"
DAY1 = dt.datetime(2026, 5, 1, 12, tzinfo=dt.timezone.utc)


def _frozen() -> float:
    return 1000.0


# --------------------------------------------------------------------------- rate limits


def test_a_burst_below_one_still_limits() -> None:
    """A burst of 0 is raised to one token: else a request would cost nothing and the limit would be gone."""
    limiter = RateLimiter(rate=1.0, burst=0.0, now=_frozen)
    assert limiter.take("198.51.100.1") == 0.0
    assert limiter.take("198.51.100.1") > 0.0


def test_a_request_claiming_to_cost_nothing_still_takes_a_token() -> None:
    """A cost below one is raised to one: else a caller's cost of 0 would make requests free."""
    limiter = RateLimiter(rate=1.0, burst=2.0, now=_frozen)
    assert limiter.take("k", 0.0) == 0.0 and limiter.take("k", 0.0) == 0.0
    assert limiter.take("k", 0.0) == 1.0


def test_the_client_forgotten_is_the_least_recently_seen() -> None:
    """A client that keeps asking stays remembered (its empty bucket too) when new addresses push one out."""
    limiter = RateLimiter(rate=1.0, burst=1.0, now=_frozen, max_clients=2)
    assert limiter.take("busy") == 0.0
    assert limiter.take("idle") == 0.0
    assert limiter.take("busy") > 0.0  # seen again: now the most recent
    assert limiter.take("new") == 0.0  # pushes out "idle", not "busy"
    assert limiter.take("busy") > 0.0  # still owing: a fresh bucket would let it through


def test_releasing_one_of_two_slots_frees_only_that_one() -> None:
    """A client holding two slots that ends one still holds the other (in_use, and the per-client bound)."""
    slots = Slots(per_client=2, total=10)
    first, second = slots.acquire("a"), slots.acquire("a")
    assert first is not None and second is not None and slots.acquire("a") is None
    first.release()
    assert slots.in_use == 1
    third = slots.acquire("a")
    assert third is not None and slots.acquire("a") is None


def test_a_slot_released_twice_is_released_once() -> None:
    """Slot.release is idempotent: a stream's end and its finaliser both calling it must not free a second slot."""
    slots = Slots(per_client=2, total=10)
    first, second = slots.acquire("a"), slots.acquire("a")
    assert first is not None and second is not None
    first.release()
    first.release()
    assert slots.in_use == 1 and slots.acquire("a") is not None and slots.acquire("a") is None


# --------------------------------------------------------------------------- raw log


def test_a_clean_log_leaves_nothing_in_torn_at_start(tmp_path: Path) -> None:
    """Segments ending in a newline are not torn: no empty file is kept aside at every start."""
    log = RawLog(tmp_path / "c", now=lambda: DAY1)
    log.append([b'{"a":1}', b'{"b":2}'])
    log.close()
    again = RawLog(tmp_path / "c")
    assert again.torn_bytes == 0 and not (tmp_path / "c" / "torn").exists()
    again.close()


def test_a_new_utc_day_starts_a_new_segment(tmp_path: Path) -> None:
    """The open segment is changed when the day changes: else day two's lines would go into day one's file."""
    now = [DAY1]
    log = RawLog(tmp_path / "c", now=lambda: now[0])
    assert log.append([b'{"a":1}']) == Position("2026-05-01.jsonl", 8)
    now[0] = DAY1 + dt.timedelta(days=1)
    assert log.append([b'{"bb":2}']) == Position("2026-05-02.jsonl", 9)
    log.close()
    assert [p.name for p in log.segments_paths()] == ["2026-05-01.jsonl", "2026-05-02.jsonl"]
    assert (tmp_path / "c" / "incoming" / "2026-05-01.jsonl").read_bytes() == b'{"a":1}\n'
    assert log.end() == Position("2026-05-02.jsonl", 9)  # the last segment's end, not the first's


def test_reading_on_from_an_earlier_segment_reads_the_later_ones_whole(tmp_path: Path) -> None:
    """Positions are byte ends of lines in their segment; a later segment is read from its start."""
    now = [DAY1]
    log = RawLog(tmp_path / "c", now=lambda: now[0])
    log.append([b'{"a":1}', b'{"bb":2}'])
    now[0] = DAY1 + dt.timedelta(days=1)
    log.append([b'{"ccc":3}', b'{"d":4}'])
    log.close()
    assert list(log.read()) == [(Position("2026-05-01.jsonl", 8), b'{"a":1}'),
                                (Position("2026-05-01.jsonl", 17), b'{"bb":2}'),
                                (Position("2026-05-02.jsonl", 10), b'{"ccc":3}'),
                                (Position("2026-05-02.jsonl", 18), b'{"d":4}')]
    assert [line for _, line in log.read(Position("2026-05-01.jsonl", 8))] == [b'{"bb":2}', b'{"ccc":3}',
                                                                                b'{"d":4}']


def test_a_line_being_written_is_not_read(tmp_path: Path) -> None:
    """A last line without its newline is not acknowledged yet: a reader must not ingest it."""
    log = RawLog(tmp_path / "c", now=lambda: DAY1)
    log.append([b'{"a":1}'])
    with open(tmp_path / "c" / "incoming" / "2026-05-01.jsonl", "ab") as f:
        f.write(b'{"half":')
    assert [line for _, line in log.read()] == [b'{"a":1}']
    log.close()


def test_lines_longer_than_max_line_are_skipped_but_counted(tmp_path: Path) -> None:
    """``max_line`` keeps an oversized line out of what is read; the positions still move past it."""
    log = RawLog(tmp_path / "c", now=lambda: DAY1)
    log.append([b'{"a":1}', b'{"long":"' + b"x" * 100 + b'"}', b'{"b":2}'])
    log.close()
    read = list(log.read(max_line=20))
    assert [line for _, line in read] == [b'{"a":1}', b'{"b":2}']
    assert read[-1][0] == log.end()


def test_files_in_incoming_that_are_not_segments_are_ignored(tmp_path: Path) -> None:
    """Only ``*.jsonl`` files are segments: an editor's backup beside them is never replayed."""
    log = RawLog(tmp_path / "c", now=lambda: DAY1)
    log.append([b'{"a":1}'])
    log.close()
    (tmp_path / "c" / "incoming" / "2026-05-01.jsonl~").write_bytes(b'{"stray":1}\n')
    assert [p.name for p in log.segments_paths()] == ["2026-05-01.jsonl"]
    assert [line for _, line in log.read()] == [b'{"a":1}']


def test_tombstones_that_are_not_a_string_uid_are_ignored_at_start(tmp_path: Path) -> None:
    """A tombstone line naming no string uid (a list: unhashable) is skipped, never an error at start."""
    root = tmp_path / "c"
    root.mkdir()
    (root / "tombstones.jsonl").write_bytes(b'{"measurement_uid": ["x"]}\n{"measurement_uid": 7}\n[1]\n'
                                            b'{"measurement_uid": "kept"}\n')
    log = RawLog(root)
    assert log.deleted == frozenset({"kept"})
    log.close()


def test_an_unreadable_tombstone_line_does_not_hide_the_ones_after_it(tmp_path: Path) -> None:
    """Each tombstone line stands alone: one that is not JSON skips itself, not the deletions after it."""
    root = tmp_path / "c"
    root.mkdir()
    (root / "tombstones.jsonl").write_bytes(b'{"measurement_uid": "one"}\nnot json\n{"measurement_uid": "two"}\n')
    log = RawLog(root)
    assert log.deleted == frozenset({"one", "two"})
    log.close()


def test_a_tombstones_reason_is_kept_to_500_characters(tmp_path: Path) -> None:
    """The admin's reason (request body, up to 64 KiB) is cut, so the tombstones file stays small."""
    log = RawLog(tmp_path / "c")
    assert log.bury("u1", "r" * 5000)
    log.close()
    entry = orjson.loads(log.tombstone_path.read_bytes())
    assert entry["measurement_uid"] == "u1" and entry["reason"] == "r" * 500


# --------------------------------------------------------------------------- admin token


def test_the_bearer_scheme_is_case_insensitive() -> None:
    """RFC 9110: auth schemes are case-insensitive; a client sending "bearer" must not be refused."""
    assert check_token(TOKEN, f"bearer {TOKEN}") == 0 and check_token(TOKEN, f"BEARER {TOKEN}") == 0


def test_a_bearer_header_without_a_token_is_401() -> None:
    """"Bearer " alone presents no credentials (401), it is not a wrong token (403)."""
    assert check_token(TOKEN, "Bearer ") == 401
    assert check_token(TOKEN, "Bearer") == 401


def test_spaces_around_the_presented_token_are_ignored() -> None:
    """A token pasted with an extra space before or after it still matches."""
    assert check_token(TOKEN, f"Bearer  {TOKEN} ") == 0
    assert check_token(TOKEN, f"Bearer {TOKEN[:-1]}") == 403


def test_the_token_length_bound_is_exactly_sixteen() -> None:
    """16 characters are enough; 15 are refused (a short token is guessable)."""
    assert usable_token("a" * 16) == "a" * 16
    with pytest.raises(TokenError, match="at least 16"):
        usable_token("a" * 15)


@pytest.mark.parametrize("brk", ["\x0b", "\x85", "\u2028"])
def test_a_token_split_by_any_line_break_is_refused(brk: str) -> None:
    """str.splitlines breaks on these too: such a token could never be sent in one header line."""
    with pytest.raises(TokenError, match="one line"):
        usable_token("first-half-0123456789" + brk + "second-half-0123456789")


def test_a_blank_token_means_admin_disabled_not_an_error() -> None:
    """An empty or whitespace-only token (an empty file, TAMPERSCOPE_ADMIN_TOKEN="") disables admin actions."""
    assert usable_token("   \n") is None and usable_token("") is None and usable_token(None) is None


# --------------------------------------------------------------------------- admin deletion


def _count(c: Any, table: str, uid: str) -> int:
    return int(c.collector.reader.rows(f"SELECT count(*) AS n FROM {table} WHERE measurement_uid = ?", [uid])[0]["n"])


def test_an_admin_deletion_removes_the_measurements_observations_too(tmp_path: Path) -> None:
    """Observations hold the measurement's content (addresses, pages): a deletion that left them kept it public."""
    settings = Settings(db_path=tmp_path / "d.duckdb", announce=False, submit_rate=0, read_rate=0, admin_token=TOKEN)
    with running_app(settings) as c:
        uid = c.submit(samples.measurement("dns.poison"))
        c.get("/api/v1/health")  # settled
        assert _count(c, "observations", uid) > 0
        r = c.post(f"/api/v1/admin/delete/{uid}", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.json()["rows_removed"] is True
        c.get("/api/v1/health")
        assert _count(c, "observations", uid) == 0 and _count(c, "verdicts", uid) == 0


def test_an_admin_deletion_that_fails_midway_removes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows go in one transaction: a failure after some DELETEs is rolled back, leaving no half-deleted uid."""
    settings = Settings(db_path=tmp_path / "d.duckdb", announce=False, submit_rate=0, read_rate=0, admin_token=TOKEN)
    with running_app(settings) as c:
        uid = c.submit(samples.measurement("http.blockpage"))
        c.get("/api/v1/health")

        def broken(con: Any) -> None:
            raise RuntimeError("relabel failed")

        monkeypatch.setattr(admin, "relabel", broken)
        store = c.collector.store
        with pytest.raises(RuntimeError, match="relabel failed"):
            c.run(c.collector.ingestor.call, lambda: admin.delete(store, c.collector.rawlog, uid, "test"))

        def left() -> tuple[Any, ...]:
            return tuple(store.con.execute(f"SELECT count(*) FROM {t} WHERE measurement_uid = ?", [uid]).fetchone()[0]
                         for t in ("measurements", "verdicts", "observations"))

        counts = c.run(c.collector.ingestor.call, left)
        assert counts[0] == 1 and counts[1] == 1 and counts[2] > 0


# --------------------------------------------------------------------------- admin requests (hostile bodies)


@pytest.fixture(scope="module")
def admin_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    db = tmp_path_factory.mktemp("admin-edges") / "a.duckdb"
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0, admin_token=TOKEN)) as c:
        yield c


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("body", [
    [1, 2], {"measurement_uid": [1]}, {"measurement_uid": ["ok", None]}, {"filters": ["probe_cc"]},
    {"filters": {"probe_cc": 5}}, {"stale": "true"}, {"all": 1},
], ids=["a-list", "uid-numbers", "uid-null", "filters-list", "filter-number", "stale-string", "all-one"])
def test_admin_reanalyse_refuses_a_malformed_body_with_400(admin_app: SyncClient, body: object) -> None:
    """Hostile or sloppy bodies are a 400 naming the problem, never a 500 or a re-analysis nobody asked for."""
    r = admin_app.post("/api/v1/admin/reanalyse", headers=AUTH, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] in ("invalid_json", "invalid_parameter")


def test_admin_reanalyse_takes_one_uid_as_a_string(admin_app: SyncClient) -> None:
    """``measurement_uid`` may be one string, as a list of one."""
    uid = admin_app.submit(samples.measurement("dns.poison", url="https://one-uid.example/"))
    r = admin_app.post("/api/v1/admin/reanalyse", headers=AUTH, json={"measurement_uid": uid})
    assert r.status_code == 200 and r.json()["selected"] == 1 and r.json()["reanalysed"] == 1


@pytest.mark.parametrize("body", [b'{"why": "no reason key"}', b'{"reason": 5}', b'{"reason": null}', b"[1]"],
                         ids=["no-reason", "reason-number", "reason-null", "not-an-object"])
def test_an_admin_deletion_with_an_odd_body_uses_the_default_reason(admin_app: SyncClient, body: bytes) -> None:
    """A body without a string ``reason`` deletes all the same, with the default reason, never a 500."""
    uid = admin_app.submit(samples.measurement("ok", url=f"https://odd-{len(body)}-{body[2:6].hex()}.example/"))
    admin_app.get("/api/v1/health")
    r = admin_app.post(f"/api/v1/admin/delete/{uid}", headers=AUTH, content=body)
    assert r.status_code == 200 and r.json()["rows_removed"] is True
    reasons = [orjson.loads(line)["reason"] for line in admin_app.collector.rawlog.tombstone_path.read_bytes()
               .splitlines() if orjson.loads(line)["measurement_uid"] == uid]
    assert reasons == ["deleted by an administrator"]


def test_deleting_a_deleted_measurement_again_is_200_not_404(admin_app: SyncClient) -> None:
    """A repeated deletion (a retry after a lost answer) says it is deleted, with no rows removed this time."""
    uid = admin_app.submit(samples.measurement("http.blockpage", url="https://twice.example/"))
    admin_app.get("/api/v1/health")
    assert admin_app.post(f"/api/v1/admin/delete/{uid}", headers=AUTH).json()["rows_removed"] is True
    again = admin_app.post(f"/api/v1/admin/delete/{uid}", headers=AUTH)
    assert again.status_code == 200 and again.json() == {"measurement_uid": uid, "deleted": True,
                                                         "rows_removed": False}


# --------------------------------------------------------------------------- listings and downloads


def test_page_metadata_at_the_edges(admin_app: SyncClient) -> None:
    """A page ending exactly at the last measurement links to no further (empty) page; an empty listing is one page
    (OONI's shape), and page numbers count from 1."""
    empty = admin_app.get("/api/v1/measurements", params={"probe_cc": "ZZ"}).json()["metadata"]
    assert empty["count"] == 0 and empty["pages"] == 1 and empty["current_page"] == 1 and empty["next_url"] is None
    for n in range(2):
        admin_app.submit(samples.measurement("ok", url=f"https://page-{n}.example/"))
    count = admin_app.get("/api/v1/measurements", params={"limit": 1}).json()["metadata"]["count"]
    assert count >= 2
    last = admin_app.get("/api/v1/measurements", params={"limit": 1, "offset": count - 1}).json()["metadata"]
    assert last["next_url"] is None and last["current_page"] == count
    whole = admin_app.get("/api/v1/measurements", params={"limit": count}).json()["metadata"]
    assert whole["next_url"] is None and whole["pages"] == 1
    first = admin_app.get("/api/v1/measurements", params={"limit": count - 1}).json()["metadata"]
    assert first["next_url"] is not None and f"offset={count - 1}" in first["next_url"]


def test_a_reports_file_name_holds_only_safe_characters() -> None:
    """Query values go into Content-Disposition: quotes, slashes and spaces must not reach the header."""
    name = report_filename(Filters(probe_cc="RU", domain='a"b/../c d\\e', since="2026-05-01"))
    assert name == "tamperscope-report-RU-a_b_.._c_d_e-2026-05-01.html"


@pytest.mark.parametrize("uid", ["a%20b", "x%0Ay", "a" * 201], ids=["space", "newline", "too-long"])
def test_a_uid_outside_the_pattern_is_refused_before_any_lookup(admin_app: SyncClient, uid: str) -> None:
    """Uids are [A-Za-z0-9_.-]{1,200}: anything else is a 422 naming the pattern, on reads and on deletions."""
    r = admin_app.post(f"/api/v1/admin/delete/{uid}", headers=AUTH)
    assert r.status_code == 422 and r.json()["error"] == "invalid_parameter"
    assert admin_app.get(f"/api/v1/measurement/{uid}").status_code == 422


def test_a_json_export_of_several_batches_is_one_valid_array() -> None:
    """Batches after the first are joined with a comma (empty ones skipped): else a big export is not JSON."""
    rows = [{k: f"{k}-{n}" for k in EXPORT_FIELDS} for n in range(5)]
    body = b"".join(_json_chunks(iter([rows[:2], [], rows[2:3], rows[3:]])))
    assert orjson.loads(body) == rows
    assert orjson.loads(b"".join(_json_chunks(iter([[], []])))) == []


def test_a_deletion_after_a_torn_tombstone_line_survives_a_restart(tmp_path: Path) -> None:
    """A crash mid-bury leaves a line without its newline; the next start cuts it (kept in torn/), so the next
    deletion gets a line of its own instead of joining the fragment and vanishing at the start after."""
    root = tmp_path / "raw"
    log = RawLog(root)
    assert log.bury("a", "first")
    with open(log.tombstone_path, "ab") as f:
        f.write(b'{"measurement_uid": "b", "at')  # torn: never acknowledged
    log = RawLog(root)
    assert log.deleted == {"a"}
    assert log.bury("c", "after the crash")
    assert RawLog(root).deleted == {"a", "c"}
    kept = list((root / "torn").glob("tombstones-*.bin"))
    assert len(kept) == 1 and kept[0].read_bytes() == b'{"measurement_uid": "b", "at'


def test_an_admin_body_over_its_limit_is_413_not_invalid_json(admin_app: SyncClient) -> None:
    """A valid body over the limit was cut and parsed, and answered "invalid_json" (400); it is refused as too large,
    and nothing is deleted. At the limit it is read whole."""
    from tamperscope.collector.api import ADMIN_DELETE_BODY, ADMIN_REANALYSE_BODY

    uid = admin_app.submit(samples.measurement("ok", url="https://big-reason.example/"))
    admin_app.get("/api/v1/health")
    frame = len(orjson.dumps({"reason": ""}))
    big = orjson.dumps({"reason": "x" * (ADMIN_DELETE_BODY - frame + 1)})
    r = admin_app.post(f"/api/v1/admin/delete/{uid}", headers=AUTH, content=big)
    assert r.status_code == 413 and r.json()["error"] == "too_large", r.text
    assert not admin_app.collector.rawlog.is_deleted(uid)
    fits = orjson.dumps({"reason": "x" * (ADMIN_DELETE_BODY - frame)})
    assert len(fits) == ADMIN_DELETE_BODY
    r = admin_app.post(f"/api/v1/admin/delete/{uid}", headers=AUTH, content=fits)
    assert r.status_code == 200 and admin_app.collector.rawlog.is_deleted(uid), r.text
    huge = orjson.dumps({"measurement_uid": ["y" * 1000] * (ADMIN_REANALYSE_BODY // 1000)})
    r = admin_app.post("/api/v1/admin/reanalyse", headers=AUTH, content=huge)
    assert r.status_code == 413 and r.json()["error"] == "too_large", r.text


def test_deleting_one_of_two_alike_anomalies_leaves_the_other_unconfirmed(admin_app: SyncClient) -> None:
    """Two measurements of one URL on one network, the same reset: each confirms the other. Delete one, and the
    other is an anomaly again (the groups are recounted in the deletion's transaction)."""
    url = "http://relabel.example/"
    starts = ("2026-11-01T10:00:00", "2026-11-02T10:00:00")
    uids = [admin_app.submit(samples.measurement("http.rst", url=url, start=s)) for s in starts]
    admin_app.get("/api/v1/health")

    def outcomes() -> dict[str, str]:
        rows = admin_app.collector.reader.rows(
            "SELECT measurement_uid, outcome FROM verdicts WHERE input = ? ORDER BY measurement_uid", [url])
        return {r["measurement_uid"]: r["outcome"] for r in rows}

    assert outcomes() == {uid: "confirmed" for uid in uids}
    assert admin_app.post(f"/api/v1/admin/delete/{uids[0]}", headers=AUTH).status_code == 200
    assert outcomes() == {uids[1]: "anomaly"}


def test_an_admin_request_a_page_of_another_site_had_a_browser_send_is_refused_as_such(admin_app: SyncClient) -> None:
    """The bounded reader refuses what a browser sent for another site's page, and names an admin request (not "a
    submission"); nothing is deleted."""
    uid = admin_app.submit(samples.measurement("ok", url="https://cross-site-admin.example/"))
    admin_app.get("/api/v1/health")
    r = admin_app.post(f"/api/v1/admin/delete/{uid}", content=b"{}",
                       headers={**AUTH, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and r.json()["error"] == "cross_origin", r.text
    assert r.json()["detail"].startswith("an admin request that a web page of another site had a browser send")
    assert "administrators' tools send neither" in r.json()["detail"]
    assert not admin_app.collector.rawlog.is_deleted(uid)
