"""Helpers to run the collector in tests and benchmarks: in-process (ASGI) or on loopback (uvicorn).

* `asgi_client(settings)`: the app with its lifespan running and an
  ``httpx.AsyncClient`` talking to it in-process (no socket);
* `SyncClient` / `running_app(settings)`: the same from synchronous code
  (a pytest test, a hypothesis example), through an anyio blocking portal;
* `uvicorn_server(app)`: the app served on 127.0.0.1 on a free port in the
  current event loop, stopped on exit;
* `free_port()`.

httpx is a test dependency, imported only here.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
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


@contextmanager
def running_app(settings: Settings) -> Iterator[SyncClient]:
    from anyio.from_thread import start_blocking_portal

    with start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(asgi_client(settings)) as client:
            yield SyncClient(portal, client)


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
