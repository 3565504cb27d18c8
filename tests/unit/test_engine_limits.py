"""The engine's per-server limit: at most 2 measurements in flight towards one address, no deadlock."""

from __future__ import annotations

import asyncio
from collections import Counter

from tamperscope.nettests.base import IPLimiter


def test_at_most_two_per_address_and_others_unaffected() -> None:
    async def main() -> tuple[int, int, int]:
        limiter = IPLimiter()
        now: Counter[str] = Counter()
        peak: Counter[str] = Counter()

        async def one(ips: list[str]) -> None:
            async with limiter.hold(ips):
                for ip in set(ips):
                    now[ip] += 1
                    peak[ip] = max(peak[ip], now[ip])
                await asyncio.sleep(0.01)
                for ip in set(ips):
                    now[ip] -= 1

        jobs = [one(["198.19.1.1"]) for _ in range(10)] + [one([f"198.19.2.{i}"]) for i in range(10)]
        # overlapping address sets in opposite orders: sorted acquisition cannot deadlock
        jobs += [one(["198.19.3.1", "198.19.3.2"]), one(["198.19.3.2", "198.19.3.1"])] * 5
        async with asyncio.timeout(10):
            await asyncio.gather(*jobs)
        return peak["198.19.1.1"], max(peak[f"198.19.2.{i}"] for i in range(10)), peak["198.19.3.1"]

    busy, others, pair = asyncio.run(main())
    assert busy == 2 and pair == 2
    assert others == 1  # each other address had one job: never held back by the busy one
