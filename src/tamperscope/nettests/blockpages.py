"""The blockpage matcher the verdicts take: the shipped fingerprint database, as ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

from .base import BlockpageMatcher


@lru_cache(maxsize=1)
def matcher() -> BlockpageMatcher:
    from ..wire.fingerprints import FingerprintDB

    db = FingerprintDB.load()

    def match(body: str, headers: Mapping[str, str]) -> Sequence[str]:
        return [m.id for m in db.match_response(body, headers)]

    return match
