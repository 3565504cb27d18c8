"""The blockpage matcher the verdicts take: the shipped fingerprint database, as ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

from .base import BlockpageMatcher


@lru_cache(maxsize=1)
def _db() -> object:
    from ..wire.fingerprints import FingerprintDB

    return FingerprintDB.load()


def matcher() -> BlockpageMatcher:
    """Fingerprint ids matching a response; the database is compiled on first use only."""

    def match(body: str, headers: Mapping[str, str]) -> Sequence[str]:
        return [m.id for m in _db().match_response(body, headers)]  # type: ignore[attr-defined]

    return match


def warm() -> None:
    """Compile the database now (before a long run), not at the first page."""
    _db()
