"""Helpers to run the collector in tests and benchmarks: in-process (ASGI) or on loopback (uvicorn).

* `asgi_client(settings)`: the app with its lifespan running and an
  ``httpx.AsyncClient`` talking to it in-process (no socket);
* `SyncClient` / `running_app(settings)`: the same from synchronous code
  (a pytest test, a hypothesis example), through an anyio blocking portal;
  `unlimited_app(db, measurements)` one without rate limits holding those measurements;
* `uvicorn_server(app)`: the app served on 127.0.0.1 on a free port in the
  current event loop, stopped on exit;
* `free_port()`, and `closed_port()` / `closed_udp_port()`: ports that refuse, held so no test takes them.

httpx is a test dependency, imported only here.
"""

from __future__ import annotations

import asyncio
import atexit
import random
import socket
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from tamperscope.collector.app import create_app
from tamperscope.collector.config import Settings

_HELD: list[socket.socket] = []  # the sockets that keep `closed_port`'s ports closed, for the process's life


@atexit.register
def _release() -> None:
    """Closed at exit (not left to the collector, which warns of each unclosed socket)."""
    while _HELD:
        _HELD.pop().close()


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (where bind(0) and connect() pick theirs)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(*, udp: bool = False, host: str = "127.0.0.1") -> int:
    """A loopback TCP (or UDP) port free now, for a server started later (another process, uvicorn). It is picked
    at random below the kernel's ephemeral range, where no bind(0) or connect() lands: a port from bind(0),
    released, could be handed to the server or client of a test running beside this one before its own server bound
    it (QA: about one CI run in a thousand)."""
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    low = min(_ephemeral_low(), 32768)
    rng = random.SystemRandom()
    for _ in range(64 if low > 24000 else 0):  # (not under 20000: the lab tests' fixed ports are 18181 and 18190)
        port = rng.randrange(20000, low)
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A loopback TCP port that refuses every connection as long as this process runs: bound, never listening, and
    held, so that no other test's server can take it (QA: a port bound and released was, by chance, a neighbour's
    server's, and a connection meant to be refused timed out)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    _HELD.append(s)
    return int(s.getsockname()[1])


def closed_udp_port() -> int:
    """A loopback UDP port whose datagrams are answered by ICMP port unreachable as long as this process runs: held
    by a socket connected to another port (so nothing from elsewhere is delivered to it); it sends nothing."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.connect(("127.0.0.1", 9))
    _HELD.append(s)
    return int(s.getsockname()[1])


@asynccontextmanager
async def asgi_client(settings: Settings, app: Any = None) -> AsyncIterator[Any]:
    """An httpx.AsyncClient on the running app (lifespan entered); ``client.app`` is the app."""
    import httpx

    app = app or create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


class SyncClient:
    """Blocking calls into an `asgi_client` running on a portal's event loop."""

    def __init__(self, portal: Any, client: Any) -> None:
        self.portal = portal
        self.client = client
        self.app = client.app

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """One request; a GET first waits until every acknowledged submission is in the tables
        (the store follows the acknowledgements by one transaction), so tests read their writes."""
        async def call() -> Any:
            if method == "GET":
                await self.settle()
            return await self.client.request(method, url, **kwargs)
        return self.portal.call(call)

    async def settle(self) -> None:
        collector = self.app.state.collector
        if collector is not None:
            await collector.ingestor.settled()

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.request("POST", url, **kwargs)

    def run(self, fn: Any, *args: Any) -> Any:
        """Run a coroutine function on the app's loop (e.g. many concurrent requests)."""
        return self.portal.call(fn, *args)

    @property
    def collector(self) -> Any:
        return self.app.state.collector

    def submit(self, measurement: dict[str, Any]) -> str:
        """Submit one measurement through OONI's report protocol; its uid (RuntimeError if it is refused)."""
        r = self.post("/report/r1", json={"format": "json", "content": measurement})
        if r.status_code != 200:
            raise RuntimeError(f"refused, {r.status_code}: {r.text[:300]}")
        return str(r.json()["measurement_uid"])


@contextmanager
def running_app(settings: Settings) -> Iterator[SyncClient]:
    from anyio.from_thread import start_blocking_portal

    with start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(asgi_client(settings)) as client:
            yield SyncClient(portal, client)


@contextmanager
def unlimited_app(db: Path, measurements: Iterable[dict[str, Any]] = ()) -> Iterator[SyncClient]:
    """`running_app` on the store ``db`` with no rate limits, holding ``measurements`` (submitted one by one)."""
    with running_app(Settings(db_path=db, announce=False, submit_rate=0, read_rate=0)) as client:
        for m in measurements:
            client.submit(m)
        yield client


@asynccontextmanager
async def uvicorn_server(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 in this event loop, configured as `tamperscope serve` configures it (its
    connection limits included); yields its base URL."""
    import uvicorn

    from tamperscope.collector.server import uvicorn_config

    port = port or free_port()
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, loop="none"))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


__all__ = ["SyncClient", "asgi_client", "free_port", "running_app", "uvicorn_server"]
