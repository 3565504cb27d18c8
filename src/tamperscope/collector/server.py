"""Running the app under uvicorn: `serve()` for ``tamperscope serve`` (and the demo's ``--serve``).

One process, one worker: the store has a single writer (DuckDB), and the
writer batches submissions itself. uvicorn handles SIGINT/SIGTERM by finishing
the requests in flight; the lifespan then answers what is queued and closes
the store. The collector (store, raw log, catching up with it) is opened and
started before uvicorn: a start that fails for a reason the operator can act on
(a store it cannot read, a file where the raw log's directory goes, a full disk)
is a `StartupError`, one line, before anything is announced. A ``kill -9``
loses nothing that was acknowledged (see `rawlog`).

uvicorn (0.54, h11) times out only a connection idle between two requests: one
that connected and sent nothing, or sent its head or body a byte at a time, was
held forever, and nothing capped how many were open. `bounded_h11` adds those
bounds (`ConnectionLimits`) to uvicorn's own protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import duckdb

from tamperscope.analysis.store import Store, StoreError, error_line
from tamperscope.collector.admin import TOKEN_ENV, usable_token
from tamperscope.collector.app import create_app
from tamperscope.collector.config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    Collector,
    Settings,
    open_store,
)
from tamperscope.netx.listening import EVERY_INTERFACE, bind_failure, open_files, shown


class ServeError(Exception):
    """The server cannot start as asked (store in use, port taken, bad token)."""


class StartupError(ServeError):
    """The collector cannot start, said in one line (`str`) that names the file and the reason; `exit_code` 2
    when the files named cannot be used as asked, 1 when it is the machine's fault (a full disk, an I/O error)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# The machine's fault, not the operator's (as the CLI counts them): exit 1.
_MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG})


def startup_error(exc: OSError | duckdb.Error | StoreError, db_path: Path) -> StartupError:
    """`exc`, raised while the collector opened its store and raw log or caught up with the log, as the operator
    is told it. DuckDB gives no errno: its message is searched for the words of one, as a last resort. A store
    that could not be written while catching up (`StoreError`: a full disk) is the machine's fault."""
    if isinstance(exc, StoreError):
        return StartupError(str(exc), 1)
    if isinstance(exc, duckdb.Error):
        if any(os.strerror(code) in str(exc) for code in _MACHINE_ERRNOS):
            return StartupError(f"the store {db_path} cannot be used: {error_line(exc)}", 1)
        return StartupError(f"the store {db_path} cannot be read: {error_line(exc)}")
    code = 1 if exc.errno in _MACHINE_ERRNOS else 2
    if exc.filename is None:
        return StartupError(f"the collector cannot start: {error_line(exc)}", code)
    # "Not a directory" or "File exists" would not say which part of the path is in the way
    blocker = _in_the_way(Path(exc.filename)) if exc.errno in (errno.ENOTDIR, errno.EEXIST) else None
    if blocker is not None:
        return StartupError(f"cannot create {exc.filename}: {blocker} is not a directory", code)
    return StartupError(f"the collector cannot use {exc.filename}: {error_line(exc)}", code)


def _in_the_way(path: Path) -> Path | None:
    """The first of ``path`` and its parents that exists and is not a directory (a file where one must be)."""
    for part in (path, *path.parents):
        try:
            if os.path.lexists(part) and not part.is_dir():
                return part
        except OSError:
            return None
    return None


def _loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop uvicorn would make (`_loop`)."""
    if _loop() == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


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


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client may hold of the server: connections, and time to send a request."""

    connections: int = 1024  # open at once; beyond, an idle one is closed to make room, else the new one gets 503
    head: float = 20.0  # s from connecting, or from a request's first byte, to the end of its head; else 408
    body_period: float = 30.0  # s in which a body must bring `body_bytes` (unless the server paused reading); else 408
    body_bytes: int = 1024  # bytes; a body of 64 MiB may take long, one a byte at a time may not
    keep_alive: float = 30.0  # s a connection may wait between requests (uvicorn's own timeout)
    linger: float = 1.0  # s a refused or timed-out connection stays open: its client reads the 503 or 408, no reset


MAX_LINGERING = 64  # refused and timed-out connections that may linger at once: a flood must not hold descriptors
REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\n"
           b"connection: close\r\n\r\ntoo many connections\n")
TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 34\r\n"
             b"connection: close\r\n\r\nthe request did not arrive in time\n")


def bounded_h11(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with `limits`: a deadline for each request's head, a minimum pace for its body,
    a cap on open connections. Watched by one timer per connection, set when a request starts arriving and
    judged by h11's state when it fires, so that it never cuts a request that arrived in time."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    lingering: set[asyncio.Transport] = set()

    class BoundedH11(H11Protocol):
        _timer: asyncio.TimerHandle | None = None
        _received = 0  # bytes received on the connection
        _mark = 0  # _received when the timer was set
        _watched: Any = None  # the request cycle (None before the first) when the timer was set
        _ended = False  # answered for good (503 for the cap, 408 for time); what the client still sends is dropped

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.connections and not self._close_an_idle_one():
                self._refuse(transport)
                return
            self._watch(limits.head)  # a client that connects and sends nothing is timed too

        def _refuse(self, transport: asyncio.Transport) -> None:
            """503, then close (`_end`)."""
            self.connections.discard(self)
            self._end(transport, REFUSED)

        def _end(self, transport: asyncio.Transport, answer: bytes) -> None:
            """Send ``answer`` (or nothing), then close: at once if many connections linger already, else once the
            client has closed (the transport closes itself then) or after `limits.linger`, dropping what it still
            sends. Closing with the client's bytes unread resets the connection, and a reset can overtake the
            answer: a client still sending its request would read ECONNRESET instead of the 503 or 408."""
            self._ended = True
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                # the request is over for the app as if the client had gone (uvicorn's connection_lost): its
                # receive() says so and its send() writes nothing, nothing after this answer or after the EOF
                cycle.disconnected = True
                cycle.message_event.set()
            if answer:
                transport.write(answer)
            if len(lingering) >= MAX_LINGERING or not transport.can_write_eof():
                transport.close()
                return
            transport.write_eof()
            lingering.add(transport)
            self._timer = self.loop.call_later(limits.linger, transport.close)

        def data_received(self, data: bytes) -> None:
            if self._ended:
                return
            self._received += len(data)
            super().data_received(data)
            if self._timer is None and not self.transport.is_closing() and self._arriving():
                self._watch(limits.head)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            lingering.discard(self.transport)
            super().connection_lost(exc)

        def _arriving(self) -> bool:
            """Whether a request is on its way: part of a head, or a body still due."""
            state = self.conn.their_state
            return state is h11.SEND_BODY or state is h11.IDLE and bool(len(self.conn.trailing_data[0]))

        def _idle(self) -> bool:
            return self.timeout_keep_alive_task is not None or self.cycle is None and self._received == 0

        def _close_an_idle_one(self) -> bool:
            for other in self.connections:
                if other is not self and isinstance(other, BoundedH11) and other._idle():
                    other.timeout_keep_alive_handler()  # closes it as uvicorn's keep-alive timeout would
                    self.connections.discard(other)
                    return True
            return False

        def _watch(self, delay: float) -> None:
            self._mark, self._watched = self._received, self.cycle
            self._timer = self.loop.call_later(delay, self._check)

        def _check(self) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            state = self.conn.their_state
            if state is h11.SEND_BODY:
                if self.flow.read_paused or self._received - self._mark >= limits.body_bytes:
                    self._watch(limits.body_period)
                else:
                    self._time_out(answered=self.cycle is not None and self.cycle.response_started)
            elif state is h11.IDLE and (self.cycle is None or self._arriving()):
                if self.cycle is self._watched:
                    self._time_out(answered=False)  # still the head it was given `limits.head` for
                else:
                    self._watch(limits.head)  # a request came in since; this is the next one's head
            # else the request is in, or the connection waits between two (uvicorn's keep-alive timeout)

        def _time_out(self, answered: bool) -> None:
            # answered: the handler answered early (a 413, say), and a 408 after it would be garbage
            self._end(self.transport, b"" if answered else TIMED_OUT)

    return BoundedH11


def connection_limits() -> ConnectionLimits:
    """The default limits, with no more connections than half the open-file limit allows (raised first)."""
    soft = open_files()
    room = ConnectionLimits.connections if soft is None else max(16, soft // 2)
    return ConnectionLimits(connections=min(ConnectionLimits.connections, room))


def quiet_disconnects(app: Any) -> Any:
    """``app``, but a handler reading a body its client abandoned (or that `bounded_h11` cut) ends without
    the traceback uvicorn would log: there is no one left to answer."""
    from starlette.requests import ClientDisconnect

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        try:
            await app(scope, receive, send)
        except ClientDisconnect:
            pass

    return wrapped


def uvicorn_config(app: Any, host: str, port: int, limits: ConnectionLimits | None = None,
                   loop: str | None = None, trusted_proxies: Sequence[str] = Settings.trusted_proxies) -> Any:
    """How `serve` runs ``app`` under uvicorn (a ``uvicorn.Config``); ``loop="none"`` to serve in a running
    event loop (the tests). X-Forwarded-For is believed from ``trusted_proxies`` only."""
    import uvicorn

    limits = limits or connection_limits()
    return uvicorn.Config(
        quiet_disconnects(app), host=host, port=port, loop=loop or _loop(), http=bounded_h11(limits), lifespan="on",
        proxy_headers=True, forwarded_allow_ips=list(trusted_proxies),
        log_level="warning", access_log=False, server_header=False, date_header=True,
        timeout_keep_alive=int(limits.keep_alive), timeout_graceful_shutdown=10, backlog=2048,
        h11_max_incomplete_event_size=64 * 1024,
    )


def serve(settings: Settings, *, store: Store | None = None) -> int:
    """Serve until interrupted; returns an exit code. Raises `ServeError` (a `StartupError` for the store and the
    raw log) before anything is announced if it cannot start."""
    socks = listen(settings.host, settings.port)
    sigterm = _Sigterm()
    try:
        if store is None:
            try:
                store = open_store(settings)
            except StoreError as exc:
                raise ServeError(str(exc)) from None
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            try:
                runner.run(_serve(settings, store, socks, sigterm))
            except KeyboardInterrupt:  # Ctrl-C: the runner cancelled the serving task, which closed everything
                pass
            except asyncio.CancelledError:  # SIGTERM did, the same way (or Ctrl-C, where the runner ignores it)
                if not (sigterm.seen or sigterm.interrupted):
                    raise
    finally:
        for sock in socks:
            sock.close()
    if sigterm.seen:  # as uvicorn ends after a SIGTERM: killed by it, once everything is closed
        signal.raise_signal(signal.SIGTERM)
    return 0


class _Sigterm:
    """SIGTERM while `serve` runs: the first one cancels the serving task, as Ctrl-C does (a catch-up stops after
    the batch in hand, the collector is stopped, the store closed); later ones change nothing. While uvicorn
    serves, its own handler replaces this one and shuts down gracefully (`_serve`'s ``Server.handle_exit`` notes
    the signal), then gives this one back. Either way `serve` ends by the signal once everything is closed.

    Ctrl-C is the runner's, unless the process was started with SIGINT ignored (a job a script put in the
    background): then it is handled here the same way, as uvicorn handles it while serving.

    Plain `signal.signal` handlers, not the loop's: a loop's handler is also woken, through its wakeup fd, by a
    signal uvicorn's handler takes, and cancelled the task in the middle of uvicorn's graceful shutdown."""

    def __init__(self) -> None:
        self.seen = False          # SIGTERM
        self.interrupted = False   # SIGINT, when the runner does not handle it
        self._previous: dict[int, Any] = {}

    def watch(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any] | None) -> None:
        def cancel(sig: int, frame: FrameType | None) -> None:
            if not (self.seen or self.interrupted) and task is not None:
                task.cancel()
                loop.call_soon_threadsafe(lambda: None)  # wake the loop
            if sig == signal.SIGTERM:
                self.seen = True
            else:
                self.interrupted = True

        wanted = [signal.SIGTERM]
        if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL):  # not the runner's handler
            wanted.append(signal.SIGINT)
        for sig in wanted:
            try:
                self._previous[sig] = signal.signal(sig, cancel)
            except ValueError:  # not the main thread: its action stays
                pass

    def unwatch(self) -> None:
        while self._previous:
            sig, previous = self._previous.popitem()
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)


async def _serve(settings: Settings, store: Store, socks: list[socket.socket], sigterm: _Sigterm) -> None:
    """Start the collector, announce, and run uvicorn on ``socks`` until it stops."""
    import uvicorn

    loop = asyncio.get_running_loop()
    sigterm.watch(loop, asyncio.current_task())
    try:
        try:
            collector = Collector.open(settings, store)
        except (OSError, duckdb.Error) as exc:  # the store or the raw log: the operator can act on it
            with contextlib.suppress(Exception):
                store.close()
            raise startup_error(exc, Path(store.path)) from exc
        try:
            await collector.start()  # catches the store up with the raw log
        except BaseException as exc:  # interrupted (Ctrl-C, SIGTERM) or failed: what was read stays, all is closed
            with contextlib.suppress(Exception):
                await collector.stop()
            if isinstance(exc, (OSError, duckdb.Error, StoreError)):
                raise startup_error(exc, Path(store.path)) from exc
            raise

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                if sig == signal.SIGTERM:  # uvicorn shuts down gracefully, then gives `_Sigterm` its handler
                    sigterm.seen = True    # back and raises the signal again: noted already, nothing to cancel
                super().handle_exit(sig, frame)

        try:
            server = Server(uvicorn_config(create_app(settings, collector=collector), settings.host,
                                           settings.port, trusted_proxies=settings.trusted_proxies))
            if settings.announce:
                where = f"http://{_url_host(settings.host)}:{settings.port}/"
                bound = ", ".join(shown(s.getsockname()) for s in socks)
                every = EVERY_INTERFACE.get(settings.host, "")
                also = (f"listening on {bound}{every}; " if every or bound != shown((settings.host, settings.port))
                        else "")
                mode = ("explorer, API and collector" if settings.accept_submissions
                        else "explorer and API (read-only)")
                print(f"tamperscope: {mode} at {where} ({also}store {settings.db_path}; Ctrl-C to stop)",
                      file=sys.stderr, flush=True)
                _tell_older(store)
            try:
                await server.serve(sockets=socks)
            except SystemExit:  # uvicorn exits when the app cannot start; it has logged why
                raise ServeError(f"the server on {shown((settings.host, settings.port))} could not start") from None
            finally:
                if server.force_exit:  # a second Ctrl-C: uvicorn left the requests in flight and its lifespan to
                    # be cancelled as the loop closes, and would log a traceback for each; the operator asked
                    # for it, and the store is closed all the same (below)
                    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
            if not server.started:
                raise ServeError(f"the server on {shown((settings.host, settings.port))} did not start")
        finally:
            # The lifespan's shutdown stopped it already, unless uvicorn never ran it or was forced to quit
            # (a second Ctrl-C): then here, to the end even if cancelled meanwhile.
            await collector.stop()
    finally:
        sigterm.unwatch()


def _tell_older(store: Store) -> None:
    """A line at start when the store holds verdicts an older release's rules derived (after an upgrade): how
    to derive them again."""
    from tamperscope.analysis import reanalysis
    from tamperscope.analysis.verdicts import ANALYSIS_VERSION

    try:
        older, newer = reanalysis.older(store.cursor()), reanalysis.newer(store.cursor())
    except duckdb.Error:  # a count the operator can do without: never a reason not to serve
        return
    if older:
        print(f"tamperscope: note: the store holds {reanalysis.older_words(older)}: POST /api/v1/admin/reanalyse "
              '{"stale": true} (admin token) derives them again from the raw measurements', file=sys.stderr,
              flush=True)
    if newer:
        print(f"tamperscope: note: the store holds {reanalysis.older_words(newer, 'a newer')}, written by a later "
              f"tamperscope than this one (version {ANALYSIS_VERSION})", file=sys.stderr, flush=True)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def explorer_url(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    return f"http://{_url_host(host)}:{port}/"


def settings_from_env(db_path: Path, host: str, port: int, **kwargs: object) -> Settings:
    """Settings with the admin token taken from ``$TAMPERSCOPE_ADMIN_TOKEN`` when not given."""
    token = kwargs.pop("admin_token", None) or os.environ.get(TOKEN_ENV)
    admin_token = usable_token(token if isinstance(token, str) else None)
    return Settings(db_path=db_path, host=host, port=port, admin_token=admin_token, **kwargs)  # type: ignore[arg-type]


__all__ = ["ServeError", "StartupError", "explorer_url", "serve", "settings_from_env", "startup_error"]
