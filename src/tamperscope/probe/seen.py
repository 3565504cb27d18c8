"""What an output holds already, in 16 bytes a key: the set a resume skips.

A resume reads the output and remembers each measurement's key (its input; for a remote nettest, its vantage
and domain) to skip what was measured. A Python set of those strings took 135 bytes a key: at TMC's scale (15.5M
domains through two vantages, an output of 23M lines) 3.0 GiB held and 3.9 GiB at the peak, on top of the list
itself (`python -m bench.resume --tmc`). `Seen` keeps a 128-bit digest of each key instead (BLAKE2b), sorted once
the output is read: 16 bytes a key, and for a moment at the sort 40 (there: 0.40 GiB held, 0.87 GiB at the peak).
Two different keys would share a digest with a chance of about 2^-128 per pair (for 15.5M keys looked up
against 15.5M, below 10^-24): as exact as the set, for what a resume decides.

Lookups come in batches (`holds`, `missing`): one key at a time through numpy would cost microseconds each.
numpy is imported only when an output holds something, so a first run never pays for it.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

_DIGEST = 16  # bytes: two 64-bit halves, sorted on the first, then the second
_PAIR = [("hi", "<u8"), ("lo", "<u8")]  # a digest as numpy reads it
_CHUNK = 1 << 18  # keys asked about at once: 262,144, about 30 MB while asked

K = TypeVar("K", str, str | None)


def _digest(key: str) -> bytes:
    """A key's 128 bits (a lone surrogate, which a JSON line can hold, is hashed as it is, never an error)."""
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=_DIGEST).digest()


def _digests(keys: Iterable[str]) -> bytearray:
    out = bytearray()
    for key in keys:
        out += _digest(key)
    return out


class Seen:
    """A multiset of keys (strings), filled by `add`, then `freeze`-d and asked: `holds`, `missing`, `once`,
    ``key in seen`` and ``len(seen)`` (distinct keys). Asking freezes it; adding after that is a bug."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._buf: bytearray | None = bytearray()
        self._hi: Any = None  # numpy uint64 arrays, sorted as pairs (hi, lo), each key once, once frozen; None
        self._lo: Any = None  # while empty
        self._more: Any = None  # a numpy bool a key: added more than once; None: every key was added once
        for key in keys:
            self.add(key)

    def add(self, key: str) -> None:
        if self._buf is None:
            raise RuntimeError("Seen.add after the set was asked: it is frozen")
        self._buf += _digest(key)

    def freeze(self) -> Seen:
        """Sort what was added, each key once (idempotent). The digests' buffer is released."""
        buf, self._buf = self._buf, None
        if not buf:
            return self
        import numpy as np

        pairs = np.frombuffer(buf, dtype=_PAIR)
        order = np.lexsort((pairs["lo"], pairs["hi"]))
        hi, lo = pairs["hi"][order], pairs["lo"][order]
        del order, pairs, buf
        same = (hi[1:] == hi[:-1]) & (lo[1:] == lo[:-1])
        if same.any():  # keys added more than once (rechecks): each kept once, and marked
            starts = np.flatnonzero(np.concatenate(([True], ~same)))
            self._more = np.diff(np.append(starts, len(hi))) > 1
            hi, lo = hi[starts], lo[starts]
        self._hi, self._lo = hi, lo
        return self

    def __len__(self) -> int:
        self.freeze()
        return 0 if self._hi is None else len(self._hi)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.holds([key]) == b"\x01"

    def holds(self, keys: Iterable[str]) -> bytes:
        """One byte per key, in order: 1 where the set holds it, else 0. ``keys`` may be a generator: it is read a
        chunk at a time, so that asking about 15.5M keys made on the fly never holds them all."""
        return self._mask(keys, lambda times: times > 0)

    def missing(self, keys: Sequence[K]) -> list[K]:
        """The keys (in order, repeats kept) the set does not hold; None (a nettest's lack of input) is never
        held."""
        if not len(self):
            return list(keys)
        held = iter(self.holds(k for k in keys if k is not None))
        return [k for k in keys if k is None or not next(held)]

    def once(self, keys: Iterable[str]) -> bytes:
        """One byte per key, in order: 1 where the key was added exactly once, else 0."""
        return self._mask(keys, lambda times: times == 1)

    def _mask(self, keys: Iterable[str], test: Callable[[Any], Any]) -> bytes:
        """``test`` of how many times each key was added (`_times`), one byte a key, asked a chunk at a time:
        asking about 15.5M keys costs a few MB more, not a gigabyte."""
        if not len(self):
            return bytes(sum(1 for _ in keys))
        out = bytearray()
        it = iter(keys)
        while chunk := list(itertools.islice(it, _CHUNK)):
            out += test(self._times(chunk)).astype("u1").tobytes()
        return bytes(out)

    def _times(self, keys: Sequence[str]) -> Any:
        """How many times each key was added: 0, 1 or 2 (for two or more); a numpy array, in order. The set is
        not empty. The digests are looked up in sorted order: numpy's binary search starts from where the last
        one ended, and the table's pages stay in the cache; in the order asked, a lookup in TMC's 23M took
        4.3 µs, sorted 0.3."""
        import numpy as np

        asked = np.frombuffer(_digests(keys), dtype=_PAIR)
        order = np.argsort(asked["hi"], kind="stable")
        qhi, qlo = asked["hi"][order], asked["lo"][order]
        hi, lo, last = self._hi, self._lo, len(self._hi) - 1
        at = np.minimum(np.searchsorted(hi, qhi, "left"), last)
        first = hi[at] == qhi
        found = np.where(first & (lo[at] == qlo), at, -1)
        # two different keys whose first 64 bits agree (about one pair in 2^64): the second halves say which
        for i in np.flatnonzero(first & (at < last) & (hi[np.minimum(at + 1, last)] == qhi)):
            right = int(np.searchsorted(hi, qhi[i], "right"))
            match = np.flatnonzero(lo[at[i]:right] == qlo[i])
            found[i] = at[i] + match[0] if len(match) else -1
        times = np.zeros(len(keys), dtype=np.int8)
        times[order] = (found >= 0).astype(np.int8) + ((found >= 0) & self._more[found] if self._more is not None
                                                       else 0)
        return times
