"""The lab's ISP resolver forwards each query upstream on a socket of its own, held until the answer or the
timeout: a flood, or an upstream left silent by a `dns drop` rule, ran its process (the web farm's too) out of
descriptors. Past `MAX_UPSTREAM_QUERIES` in flight a query is answered SERVFAIL at once."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from tamperscope.lab import blockpages, dnsd
from tamperscope.model.profile import parse_profile

SILENT = "127.0.0.9"  # loopback: nothing answers on port 53 there, and nothing leaves the machine


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_a_flood_holds_a_bounded_number_of_sockets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dnsd, "MAX_UPSTREAM_QUERIES", 20)
    profile = parse_profile('name = "none"\n', source="none.toml", base=tmp_path, builtin_pages=blockpages.names())
    answer = dnsd.isp_answerer(profile, SILENT, lambda *a: None, timeout=1.0)
    peak = [0]

    async def main() -> list[dns.message.Message | None]:
        base = _fds()

        async def watch() -> None:
            while True:
                peak[0] = max(peak[0], _fds() - base)
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        queries = [dns.message.make_query(f"n{i}.example", "A") for i in range(100)]
        out = await asyncio.gather(*(answer(q, ("198.18.1.2", 5000 + i)) for i, q in enumerate(queries)))
        watcher.cancel()
        return list(out)

    answers = asyncio.run(asyncio.wait_for(main(), 20))
    assert all(a is not None and a.rcode() == dns.rcode.SERVFAIL for a in answers)
    assert peak[0] <= 20 + 2, peak[0]  # the bound, not one socket per query (100)
