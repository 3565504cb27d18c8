"""The app factory: collector, API and explorer in one FastAPI application.

`create_app(settings)` returns the ASGI app; its lifespan opens the store, the
raw log and the writer (`config.Collector`), catches the store up with the raw
log, and closes everything on shutdown (answering what is queued first).

Around every request, three pure-ASGI layers (no per-request tasks):

* `RateLimit`: a token bucket per client address (`ratelimit.RateLimiter`), one
  for submissions (``POST /report...``, ``POST /api/v1/submit``) and one for
  everything else but static files, where a read over the whole store costs more
  (`read_cost`); over the limit: 429 with ``Retry-After``;
* `InternalErrors`: an unhandled error becomes a plain 500 (no traceback);
* `explorer.headers.SecurityHeaders`, outermost: the Content-Security-Policy (no
  inline script, no third-party origin), ``nosniff``, no framing, no referrer.

Errors: `schema.SubmissionError` becomes ``{"error", "detail"}`` with its
status; a full writer queue is a 503 with ``Retry-After``; a request whose
queries run past `queries.QUERY_SECONDS` is interrupted and answered 503; bad query parameters
are 422 in the same shape. Anything unhandled is a plain 500 from `InternalErrors`,
which sits inside `SecurityHeaders` so the 500 carries the same headers. The
OpenAPI description is at ``/openapi.json`` (no Swagger UI: it would need
inline scripts and a CDN).

A start that fails for a reason the operator can act on (a store cut short, a
file where the raw log's directory goes, a full disk) is a `StartupError`: one
line, which `startup_failure` hands to whoever called ``serve``, and no traceback
from uvicorn (`QuietStartupFailure`). Any other error at start is a bug, and
uvicorn logs its traceback.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import duckdb
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tamperscope import __version__
from tamperscope.analysis.store import Store, error_line
from tamperscope.collector import api, submissions
from tamperscope.collector.config import Collector, Settings
from tamperscope.collector.ingestor import Busy
from tamperscope.collector.queries import QueryTimeout
from tamperscope.collector.ratelimit import RateLimiter, Slots
from tamperscope.collector.schema import SubmissionError
from tamperscope.explorer import routes as explorer_routes
from tamperscope.explorer.headers import SecurityHeaders

DESCRIPTION = """\
tamperscope's collector, API and explorer.

* Submit measurements with OONI's collector protocol (`POST /report`, `POST /report/{report_id}`,
  `POST /report/{report_id}/close`) or as JSON lines (`POST /api/v1/submit`). A 200 means the
  measurement is on disk, fsync'd, and analysed; resubmitting it is harmless.
* Query them with OONI's `/api/v1/measurements` parameters, fetch one with
  `/api/v1/measurement/{uid}`, aggregate with `/api/v1/aggregation/{name}`, export with
  `/api/v1/export/...`.
* Every explorer page (`/`, `/country/{cc}`, `/network/{asn}`, `/domain/{domain}`, `/m/{uid}`,
  `/search`) has a JSON twin: the same path with `.json` appended.
"""


# Tokens a read costs (`--read-rate` per second, `read_burst` at once): what reads the whole store costs
# more than a page of rows or one measurement, so a client's burst cannot be spent on it alone.
EXPORT_COST = 20.0        # /api/v1/export/...: a stream over everything that matches
AGGREGATE_COST = 5.0      # aggregations, the home, country, network and domain pages, search
_AGGREGATE_PREFIXES = ("/api/v1/aggregation/", "/api/v1/measurements", "/search", "/country/", "/network/",
                       "/domain/")


def read_cost(path: str) -> float:
    """The tokens one read of ``path`` takes from its client's bucket."""
    if path.startswith("/api/v1/export/"):
        return EXPORT_COST
    if path in ("/", "/index.json") or path.startswith(_AGGREGATE_PREFIXES):
        return AGGREGATE_COST
    return 1.0


def _submission(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    return scope.get("method") == "POST" and (path.startswith("/report") or path == "/api/v1/submit")


class RateLimit:
    """429 for a client over its bucket; static files are never limited."""

    def __init__(self, app: ASGIApp, submit: RateLimiter, read: RateLimiter) -> None:
        self.app = app
        self.submit = submit
        self.read = read

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith("/static/"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = client[0] if client else "unknown"
        submission = _submission(scope)
        limiter = self.submit if submission else self.read
        wait = limiter.take(key, 1.0 if submission else read_cost(scope.get("path", "")))
        if wait:
            body = orjson.dumps({"error": "rate_limited",
                                 "detail": f"too many requests from this address; retry in {wait:.1f} s"})
            await send({"type": "http.response.start", "status": 429, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"retry-after", RateLimiter.retry_after(wait).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


_INTERNAL_JSON = orjson.dumps({"error": "internal_error",
                               "detail": "the server failed on this request; the error is in its log"})
_INTERNAL_HTML = (b"<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Server error</title>"
                  b"<h1>Server error</h1><p>The server failed on this request; the error is in its log.</p></html>")


class InternalErrors:
    """An unhandled error answers a plain 500 from here, inside `SecurityHeaders`, so it carries the same
    headers as every other answer: Starlette's own 500 comes from its outermost layer, past all the
    middleware. No traceback is sent; the error is raised on, for the server to log (Starlette then sees
    the answer sent and sends nothing more). An error after the answer started can only cut it short."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            if not started:
                html = explorer_routes.wants_html(Request(scope))
                body, media = (_INTERNAL_HTML, b"text/html; charset=utf-8") if html else \
                    (_INTERNAL_JSON, b"application/json")
                await send({"type": "http.response.start", "status": 500, "headers": [
                    (b"content-type", media), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
            raise


class StartupError(Exception):
    """The collector cannot start, said in one line (`str`) that names the file and the reason; `exit_code` 2
    when the files named cannot be used as asked, 1 when it is the machine's fault (a full disk, an I/O error)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# The machine's fault, not the operator's (as the CLI counts them): exit 1.
_MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG})


def startup_error(exc: OSError | duckdb.Error, db_path: Path) -> StartupError:
    """`exc`, raised while the collector opened its store and raw log, as the operator is told it. DuckDB
    gives no errno: its message is searched for the words of one, as a last resort."""
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


# Why the app made for these settings could not start: uvicorn keeps the error to itself and exits.
_FAILURES: dict[Settings, StartupError] = {}


def startup_failure(settings: Settings) -> StartupError | None:
    """The `StartupError` that stopped the app made for ``settings`` from starting, if one did (said once)."""
    return _FAILURES.pop(settings, None)


class _StartupFailureSaid(logging.Filter):
    """Drops uvicorn's "Application startup failed. Exiting." after a `StartupError`, once: the caller of
    ``serve`` says why in one line, and uvicorn's line would be a second saying less."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Application startup failed"):
            logging.getLogger("uvicorn.error").removeFilter(self)
            return False
        return True


class QuietStartupFailure:
    """A lifespan that failed with a `StartupError` ends without the words uvicorn would log for it: the
    traceback Starlette sends with ``lifespan.startup.failed``, and uvicorn's own line after it. Any other
    error keeps its traceback: it is a bug."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def quiet(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and self.fastapi_app.state.startup_error is not None:
                logging.getLogger("uvicorn.error").addFilter(_StartupFailureSaid())
                message = {"type": "lifespan.startup.failed", "message": ""}
            await send(message)

        try:
            await self.app(scope, receive, quiet)
        except StartupError:
            pass  # uvicorn saw the startup fail, and exits; startup_failure says why


class _LateRateLimit:
    """Binds `RateLimit` to the collector's limiters once the lifespan has created them."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        collector: Collector | None = getattr(self.fastapi_app.state, "collector", None)
        if collector is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await RateLimit(self.app, collector.submit_limiter, collector.read_limiter)(scope, receive, send)


def create_app(settings: Settings, *, store: Store | None = None) -> FastAPI:
    """The whole server as an ASGI app. ``store``: an already opened store to use (else opened here)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            collector = Collector.open(settings, store)
            await collector.start()
        except (OSError, duckdb.Error) as exc:  # the store or the raw log: the operator can act on it
            failure = startup_error(exc, Path(store.path) if store is not None else settings.db_path)
            app.state.startup_error = _FAILURES[settings] = failure
            raise failure from exc
        app.state.collector = collector
        try:
            yield
        finally:
            await collector.stop()
            app.state.collector = None

    app = FastAPI(title="tamperscope", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.collector = None
    app.state.startup_error = None  # a `StartupError`, once the lifespan failed with one
    app.state.settings = settings
    app.state.export_slots = Slots(api.EXPORTS_PER_CLIENT, api.EXPORTS_TOTAL)

    @app.exception_handler(SubmissionError)
    async def submission_error(request: Request, exc: SubmissionError) -> JSONResponse:
        headers = {"Retry-After": RateLimiter.retry_after(exc.retry_after or 1.0)} if exc.status == 429 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @app.exception_handler(QueryTimeout)
    async def query_timeout(request: Request, exc: QueryTimeout) -> Any:
        if explorer_routes.wants_html(request):
            return explorer_routes.error_page(request, 503, str(exc))
        return JSONResponse({"error": "query_timeout", "detail": str(exc)}, status_code=503)

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy) -> JSONResponse:
        return JSONResponse({"error": "busy", "detail": str(exc)}, status_code=503, headers={"Retry-After": "2"})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Any:
        problems = []
        for e in exc.errors()[:5]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "path", "body"))
            problems.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
        if explorer_routes.wants_html(request):
            return explorer_routes.error_page(request, 422, "; ".join(problems))
        return JSONResponse({"error": "invalid_parameter", "detail": "; ".join(problems)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        if explorer_routes.wants_html(request):
            return explorer_routes.error_page(request, exc.status_code, detail)
        return JSONResponse({"error": "not_found" if exc.status_code == 404 else "http_error", "detail": detail},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    app.include_router(submissions.router)
    app.include_router(api.router)
    app.include_router(explorer_routes.router)
    app.add_middleware(QuietStartupFailure, fastapi_app=app)  # the lifespan only
    app.add_middleware(_LateRateLimit, fastapi_app=app)
    app.add_middleware(InternalErrors)
    app.add_middleware(SecurityHeaders)  # outermost: on every answer, the 500 of `InternalErrors` included
    return app


def announce(text: str) -> None:
    print(f"tamperscope: {text}", file=sys.stderr, flush=True)


__all__ = ["InternalErrors", "QuietStartupFailure", "RateLimit", "StartupError", "create_app", "read_cost",
           "startup_error", "startup_failure"]
