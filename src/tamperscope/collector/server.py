"""Running the app under uvicorn: `serve()` for ``tamperscope serve``, `serve_demo()` for the demo.

One process, one worker: the store has a single writer (DuckDB), and the
writer batches submissions itself. uvicorn handles SIGINT/SIGTERM by finishing
the requests in flight; the lifespan then answers what is queued and closes
the store. A ``kill -9`` loses nothing that was acknowledged (see `rawlog`).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from tamperscope.analysis.store import Store, StoreError
from tamperscope.collector.admin import TOKEN_ENV, usable_token
from tamperscope.collector.app import create_app
from tamperscope.collector.config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    Settings,
    open_store,
)
from tamperscope.netx.listening import EVERY_INTERFACE, bind_failure, shown


class ServeError(Exception):
    """The server cannot start as asked (store in use, port taken, bad token)."""


def _loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def listen(host: str, port: int, backlog: int = 2048) -> list[socket.socket]:
    """Listening sockets for every address `host` stands for (a name may stand for an IPv4 and an IPv6
    one), or `ServeError` saying why not in one line. Bound here, before anything is announced, rather
    than by uvicorn, which logs its own error and exits."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError(f"cannot listen on {where}: {host} does not resolve ({exc.strerror})") from None
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys((i[0], i[1], i[2], None, i[4]) for i in infos):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # "::" is IPv6, as the help says
            try:
                sock.bind(addr)
                sock.listen(backlog)
            except OSError as exc:
                raise ServeError(f"cannot listen on {shown(addr)}: {bind_failure(exc, str(addr[0]))}") from None
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def serve(settings: Settings, *, store: Store | None = None) -> int:
    """Serve until interrupted; returns an exit code. Raises `ServeError` before listening if it cannot."""
    import uvicorn

    socks = listen(settings.host, settings.port)
    try:
        if store is None:
            try:
                store = open_store(settings)
            except StoreError as exc:
                raise ServeError(str(exc)) from None
        app = create_app(settings, store=store)
        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, loop=_loop(), http="h11", lifespan="on",
            log_level="warning", access_log=False, server_header=False, date_header=True,
            timeout_keep_alive=30, timeout_graceful_shutdown=10, backlog=2048,
            h11_max_incomplete_event_size=64 * 1024,
        )
        server = uvicorn.Server(config)
        if settings.announce:
            where = f"http://{_url_host(settings.host)}:{settings.port}/"
            bound = ", ".join(shown(s.getsockname()) for s in socks)
            every = EVERY_INTERFACE.get(settings.host, "")
            also = f"listening on {bound}{every}; " if every or bound != shown((settings.host, settings.port)) else ""
            mode = "explorer, API and collector" if settings.accept_submissions else "explorer and API (read-only)"
            print(f"tamperscope: {mode} at {where} ({also}store {settings.db_path}; Ctrl-C to stop)",
                  file=sys.stderr, flush=True)
        try:
            server.run(sockets=socks)
        except KeyboardInterrupt:
            pass
        except SystemExit:  # uvicorn exits when the app cannot start; it has logged why
            raise ServeError(f"the server on {shown((settings.host, settings.port))} could not start") from None
        if not server.started:
            raise ServeError(f"the server on {shown((settings.host, settings.port))} did not start")
    finally:
        for sock in socks:
            sock.close()
    return 0


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def explorer_url(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    return f"http://{_url_host(host)}:{port}/"


def serve_demo(db_path: str | os.PathLike[str], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
               accept_submissions: bool = False) -> int:
    """Serve a store (e.g. the one ``tamperscope demo`` just analysed) until Ctrl-C.

    Prints ``tamperscope: explorer at http://HOST:PORT/ ...`` on stderr once
    listening. Read-only by default (no submissions), rate limits off, no admin.
    Raises `ServeError` if the store is in use or the port is taken.
    """
    settings = Settings(db_path=Path(db_path), host=host, port=port, submit_rate=0, read_rate=0,
                        accept_submissions=accept_submissions)
    return serve(settings)


def settings_from_env(db_path: Path, host: str, port: int, **kwargs: object) -> Settings:
    """Settings with the admin token taken from ``$TAMPERSCOPE_ADMIN_TOKEN`` when not given."""
    token = kwargs.pop("admin_token", None) or os.environ.get(TOKEN_ENV)
    return Settings(db_path=db_path, host=host, port=port, admin_token=usable_token(token if isinstance(token, str) else None),
                    **kwargs)  # type: ignore[arg-type]


__all__ = ["ServeError", "explorer_url", "serve", "serve_demo", "settings_from_env"]
