"""web_connectivity's per-address limit holds its own connections, not the control: a censor that injects one
address for many names (a blockpage server, or a forged address nobody can reach) made them wait in twos for the
helper's timeouts (gfw-like's eight injected names took up to 16 s each in the lab; 5 s once the limit was moved)."""

from __future__ import annotations

import asyncio
import time

import orjson

from tamperscope.nettests import web_connectivity
from tamperscope.nettests.base import Context, IPLimiter, Timeouts

HELPER_DELAY = 3.0  # the helper's answer takes this long (it waits on an address it cannot reach); the three
# GETs must all come before it, which on a loaded machine (the low-priority pass) can take more than a second


async def _http_server(seen: list[float]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        seen.append(time.monotonic())
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _slow_helper(answered: list[float]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        await asyncio.sleep(HELPER_DELAY)
        body = orjson.dumps({"dns": {"failure": None, "addrs": []}, "tcp_connect": {}, "tls_handshake": {},
                             "http_request": {"body_length": 2, "failure": None, "title": "", "headers": {},
                                              "status_code": 200}, "ip_info": {}})
        answered.append(time.monotonic())
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_the_control_does_not_hold_the_address_for_the_next_measurement() -> None:
    gets: list[float] = []
    answers: list[float] = []

    async def main() -> list[dict[str, object]]:
        web, helper = await _http_server(gets), await _slow_helper(answers)
        port, hport = web.sockets[0].getsockname()[1], helper.sockets[0].getsockname()[1]
        ctx = Context(helper_url=f"http://127.0.0.1:{hport}/", limiter=IPLimiter(per_ip=1),
                      timeouts=Timeouts(connect=2, tls=2, http=2, control=5, measurement=10),
                      options={"quic": False, "network_events": False})
        async with web, helper:
            return list(await asyncio.gather(*(web_connectivity.run(f"http://127.0.0.1:{port}/{i}", ctx)
                                               for i in range(3))))

    results = asyncio.run(main())
    assert [tk["control_failure"] for tk in results] == [None] * 3
    assert [tk["http_experiment_failure"] for tk in results] == [None] * 3
    # one at a time at the address (per_ip 1), but none waited for another's control: every GET reached the
    # server before the first control answer came back
    assert len(gets) == 3 and len(answers) == 3
    assert max(gets) < min(answers), (gets, answers)
