"""Administrative actions: delete a measurement, re-analyse measurements; and the token that guards them.

Both run on the ingestor's writer thread (`Ingestor.call`), between batches:

* `delete()` first appends a tombstone to the raw log's ``tombstones.jsonl``
  (fsync'd), then removes the measurement's rows (measurements, verdicts,
  observations) in one transaction and recomputes the confidence labels of its
  group. The raw log itself is never rewritten (append-only): the tombstone keeps
  the measurement out of the tables on every replay or rebuild, and a
  resubmission of it is answered 410.
* `reanalyse_after()` re-derives verdicts and observations from the stored raw
  bytes (after a verdict rule changed: see ``ANALYSIS_VERSION``), a page of the
  `selection` per call and transaction, so submissions keep flowing in between
  (`analysis.reanalysis`, which ``tamperscope analyze --reanalyse`` uses too).

The token: `TAMPERSCOPE_ADMIN_TOKEN` (or a file given to ``serve
--admin-token-file``). Without one, admin actions are disabled. Requests carry
``Authorization: Bearer <token>``; it is compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tamperscope.analysis import reanalysis
from tamperscope.analysis.aggregates import Filters
from tamperscope.analysis.confidence import relabel, touch
from tamperscope.analysis.store import Store
from tamperscope.collector.queries import Reader
from tamperscope.collector.rawlog import RawLog

REANALYSE_CHUNK = reanalysis.CHUNK
TOKEN_ENV = "TAMPERSCOPE_ADMIN_TOKEN"
MIN_TOKEN_LENGTH = 16


class TokenError(Exception):
    """The admin token is unusable (too short, unreadable)."""


def check_token(configured: str | None, header: str | None) -> int:
    """0 if allowed, else the HTTP status to answer (401 no credentials, 403 wrong or disabled)."""
    if not configured:
        return 403
    if not header:
        return 401
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return 401
    # Bytes against bytes: the header's as sent (HTTP servers decode header bytes as latin-1), the token's
    # as UTF-8, so a token beyond ASCII can be presented; surrogateescape keeps a token that came from
    # a non-UTF-8 environment (`usable_token` refuses those at start) from raising here.
    sent = given.strip().encode("latin-1", "replace")
    return 0 if hmac.compare_digest(sent, configured.encode("utf-8", "surrogateescape")) else 403


def usable_token(token: str | None) -> str | None:
    if token is None:
        return None
    token = token.strip()
    if not token:
        return None
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenError(f"the admin token must be at least {MIN_TOKEN_LENGTH} characters")
    if any(ch in token for ch in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
        # a request's Authorization header is one line: no request could ever present such a token
        raise TokenError("the admin token must be one line")
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:  # $TAMPERSCOPE_ADMIN_TOKEN holding bytes that are not UTF-8
        raise TokenError("the admin token must be UTF-8 text") from None
    return token


@dataclass(frozen=True)
class Deletion:
    measurement_uid: str
    existed: bool          # rows were removed (False: unknown, or already deleted)
    tombstoned: bool       # a new tombstone was written


def delete(store: Store, rawlog: RawLog, uid: str, reason: str) -> Deletion:
    """Tombstone first (durable), then remove the rows."""
    con = store.con
    store.flush()
    existed = con.execute("SELECT count(*) FROM measurements WHERE measurement_uid = ?", [uid]).fetchone() != (0,)
    if not existed and not rawlog.is_deleted(uid):
        return Deletion(uid, False, False)
    tombstoned = rawlog.bury(uid, reason)
    if existed:
        con.execute("BEGIN TRANSACTION")
        try:
            touch(con, [uid])
            for table in ("observations", "rules", "rules_backfill", "transport_backfill", "verdicts", "measurements"):
                con.execute(f"DELETE FROM {table} WHERE measurement_uid = ?", [uid])
            relabel(con)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return Deletion(uid, existed, tombstoned)


@dataclass(frozen=True)
class Selection:
    """What a re-analysis request names, as a condition on the verdicts (`reanalysis.page_after`)."""

    where: str
    params: tuple[Any, ...]
    stale_only: bool


def selection(*, uids: Sequence[str] = (), filters: Filters | None = None, stale_only: bool = False,
              everything: bool = False) -> Selection | None:
    """Explicit uids, or filters, or stale, or all (None: nothing named)."""
    if uids:
        return Selection("measurement_uid IN (SELECT unnest(?::VARCHAR[]))", (list(uids),), False)
    where, params = (filters or Filters()).where()
    if not stale_only and not everything and where == "TRUE":
        return None
    return Selection(where, tuple(params), stale_only)


def selected(store: Store, chosen: Selection) -> int:
    """How many stored verdicts ``chosen`` names."""
    return reanalysis.count(store.con, where=chosen.where, params=chosen.params, stale_only=chosen.stale_only)


def reanalyse_after(store: Store, reader: Reader, chosen: Selection, after: str) -> tuple[str | None, dict[str, int]]:
    """The next page of ``chosen`` after the uid ``after`` re-derived from its raw bytes (through the reader's
    frame cache), in one transaction: the page's last uid (None: there was none left) and its counts."""
    page = reanalysis.page_after(store.con, after, where=chosen.where, params=chosen.params,
                                 stale_only=chosen.stale_only, size=REANALYSE_CHUNK)
    if not page:
        return None, {}
    return page[-1], reanalysis.reanalyse(store, reader.raw_many, page).as_dict()


__all__ = ["Deletion", "MIN_TOKEN_LENGTH", "REANALYSE_CHUNK", "Selection", "TOKEN_ENV", "TokenError", "check_token",
           "delete", "reanalyse_after", "selected", "selection", "usable_token"]
