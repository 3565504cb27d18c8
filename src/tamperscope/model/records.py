"""Reading a measurement's own records back: grouped by transaction, and the first failure of a group.

Records are hostile input: anything not a mapping, or whose ``transaction_id`` is not an integer (a bool is
not one), is left out, and at most ``limit`` records of a key are read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

RECORD_KEYS = ("queries", "tcp_connect", "tls_handshakes", "requests")


def transaction_of(record: Any) -> int | None:
    tid = record.get("transaction_id") if isinstance(record, Mapping) else None
    return tid if isinstance(tid, int) and not isinstance(tid, bool) else None


def by_transaction(tk: Mapping[str, Any], key: str, limit: int = 8192) -> dict[int, list[Mapping[str, Any]]]:
    """The records under ``test_keys[key]``, grouped by their transaction_id, in order."""
    out: dict[int, list[Mapping[str, Any]]] = {}
    items = tk.get(key)
    for r in items[:limit] if isinstance(items, list) else ():
        tid = transaction_of(r)
        if tid is not None:
            out.setdefault(tid, []).append(r)
    return out


def failure_of(records: Sequence[Mapping[str, Any]]) -> str | None:
    """The first failure among ``records`` (a tcp_connect record keeps it in ``status``)."""
    for r in records:
        f = r.get("failure")
        if f is None and isinstance(r.get("status"), Mapping):
            f = r["status"].get("failure")
        if f is not None:
            return f if isinstance(f, str) else str(f)
    return None
