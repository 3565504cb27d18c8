"""Per-client rate limits: a token bucket per (client address, kind of request).

Each client address gets ``burst`` tokens, refilled at ``rate`` per second; a
request costs one token (a bulk submission costs one per measurement: one bigger
than the burst passes once the bucket is full, and leaves the bucket owing the
rest, which the client's next requests wait for). When the bucket is empty the
request is answered 429 with a ``Retry-After`` header saying when one token will
be there. ``rate <= 0``
disables the limit. Buckets of clients not seen for a while are forgotten, so
memory stays bounded however many addresses appear (`max_clients`).

The clock is injected (``now``), so tests need no sleeping.

`Slots` bounds what a bucket cannot: how many long requests (streamed exports)
run at once, per client address and in all.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets keyed by client; thread-safe."""

    def __init__(self, rate: float, burst: float, *, now: Callable[[], float] = time.monotonic,
                 max_clients: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.now = now
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, cost: float = 1.0) -> float:
        """0.0 if allowed (tokens taken), else the seconds to wait before retrying."""
        if not self.enabled:
            return 0.0
        return self._take(key, min(max(cost, 1.0), self.burst))  # bigger than the burst: passes once full

    def take_rest(self, key: str, count: float) -> float:
        """As `take`, for the ``count`` further items of a request whose first token `take` has taken (a bulk
        submission's other lines). A request bigger than the burst passes once the bucket was full, and what it
        costs beyond the burst is owed: the bucket goes below zero, and the client's next requests wait until
        the rate has paid it back. So ``rate`` bounds what a client sends over time, however it sends it (a
        5,000-line bulk every 20 s was 256 measurements/s against a rate of 20)."""
        if not self.enabled:
            return 0.0
        count = max(count, 0.0)
        cost = min(count, self.burst - 1.0)
        return self._take(key, cost, owed=count - cost) if count > 0 else 0.0

    def _take(self, key: str, cost: float, owed: float = 0.0) -> float:
        t = self.now()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = _Bucket(self.burst, t)
                self._buckets[key] = bucket
                if len(self._buckets) > self.max_clients:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                bucket.tokens = min(self.burst, bucket.tokens + (t - bucket.stamp) * self.rate)
                bucket.stamp = t
            if bucket.tokens >= cost:
                bucket.tokens -= cost + owed
                return 0.0
            return (cost - bucket.tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        """The Retry-After header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait)))


class Slot:
    """One held slot; `release` is idempotent (a stream's end and its garbage collection may both call it)."""

    def __init__(self, owner: Slots, key: str) -> None:
        self._owner = owner
        self._key: str | None = key

    def release(self) -> None:
        key, self._key = self._key, None
        if key is not None:
            self._owner._release(key)


class Slots:
    """At most ``per_client`` held slots per key and ``total`` in all; thread-safe."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        with self._lock:
            return sum(self._held.values())

    def acquire(self, key: str) -> Slot | None:
        """A slot, or None when this client, or everyone together, holds as many as allowed."""
        with self._lock:
            mine = self._held.get(key, 0)
            if mine >= self.per_client or sum(self._held.values()) >= self.total:
                return None
            self._held[key] = mine + 1
        return Slot(self, key)

    def _release(self, key: str) -> None:
        with self._lock:
            left = self._held.get(key, 0) - 1
            if left > 0:
                self._held[key] = left
            else:
                self._held.pop(key, None)


__all__ = ["RateLimiter", "Slot", "Slots"]
