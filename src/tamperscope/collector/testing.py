"""Helpers to run the collector in tests and benchmarks: in-process (ASGI) or on loopback (uvicorn).

* `asgi_client(settings)`: the app with its lifespan running and an
  ``httpx.AsyncClient`` talking to it in-process (no socket);
* `SyncClient` / `running_app(settings)`: the same from synchronous code
  (a pytest test, a hypothesis example), through an anyio blocking portal;
  `unlimited_app(db, measurements)` one without rate limits holding those measurements;
* `uvicorn_server(app)`: the app served on 127.0.0.1 on a free port in the
  current event loop, stopped on exit;
* `free_port()`.

httpx is a test dependency, imported only here.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from tamperscope.collector.app import create_app
from tamperscope.collector.config import Settings


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
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
