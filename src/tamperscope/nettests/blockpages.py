"""The blockpage matcher the verdicts take: the shipped fingerprint database, and fingerprints of one's own
(`use`: ``run --fingerprints FILE``), as ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from .base import BlockpageMatcher

_LOCAL: tuple[dict[str, Any], ...] = ()


@lru_cache(maxsize=1)
def _db() -> object:
    from ..wire.fingerprints import FingerprintDB

    return FingerprintDB.load_with(_LOCAL) if _LOCAL else FingerprintDB.load()


def use(entries: Sequence[Mapping[str, Any]]) -> None:
    """Match with these fingerprints of one's own too (`wire.fingerprints.local_entries`), from now on."""
    global _LOCAL
    _LOCAL = tuple(dict(e) for e in entries)
    _db.cache_clear()


class _Matcher:
    """Fingerprint ids matching a response (a `BlockpageMatcher`), and DNS answers (`dns`); the database is
    compiled on first use only."""

    def __call__(self, body: str, headers: Mapping[str, str]) -> Sequence[str]:
        return [m.id for m in _db().match_response(body, headers)]  # type: ignore[attr-defined]

    def dns(self, answers: Sequence[str], country: str) -> Sequence[str]:
        return list(dict.fromkeys(m.id for m in _db().match_dns(answers, country)))  # type: ignore[attr-defined]


def matcher() -> BlockpageMatcher:
    """Fingerprint ids matching a response; the database is compiled on first use only."""
    return _Matcher()


def warm() -> None:
    """Compile the database now (before a long run), not at the first page."""
    _db()
