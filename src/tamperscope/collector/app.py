"""The app factory: collector, API and explorer in one FastAPI application.

`create_app(settings)` returns the ASGI app; its lifespan opens the store, the
raw log and the writer (`config.Collector`), catches the store up with the raw
log, and closes everything on shutdown (answering what is queued first).

Around every request, five pure-ASGI layers (no per-request tasks):

* `RateLimit`: a token bucket per client address (`ratelimit.RateLimiter`), one
  for submissions (``POST /report...``, ``POST /api/v1/submit``) and one for
  everything else but static files, where a read over the whole store costs more
  (`read_cost`); over the limit: 429 with ``Retry-After``;
* `InternalErrors`: an unhandled error becomes a plain 500 (no traceback);
* `Head`: ``HEAD`` is answered wherever ``GET`` is, with the same status and headers and no body;
* `Utf8Target`, innermost: a path or query that is not UTF-8 once its %-escapes are undone is a 400;
* `explorer.headers.SecurityHeaders`, outermost: the Content-Security-Policy (no
  inline script, no third-party origin), ``nosniff``, no framing, no referrer.

Errors: `schema.SubmissionError` becomes ``{"error", "detail"}`` with its
status; a full writer queue is a 503 with ``Retry-After``; a request whose
queries run past `queries.QUERY_SECONDS` is interrupted and answered 503; bad query parameters
are 422 in the same shape. Anything unhandled is a plain 500 from `InternalErrors`,
which sits inside `SecurityHeaders` so the 500 carries the same headers. The
OpenAPI description is at ``/openapi.json`` (no Swagger UI: it would need
inline scripts and a CDN).

The lifespan opens and starts the collector, unless `serve` opened and started it
before uvicorn (so that a store or raw log it cannot use is one line, not a
traceback), and stops it on shutdown either way.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tamperscope import __version__
from tamperscope.analysis.store import Store
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
  `/search`, `/chart`) has a JSON twin: the same path with `.json` appended.
"""


# Tokens a read costs (`--read-rate` per second, `read_burst` at once): what reads the whole store costs
# more than a page of rows or one measurement, so a client's burst cannot be spent on it alone.
EXPORT_COST = 20.0        # /api/v1/export/...: a stream over everything that matches
AGGREGATE_COST = 5.0      # aggregations, the home, country, network and domain pages, search, feeds
_AGGREGATE_PREFIXES = ("/api/v1/aggregation", "/api/v1/measurements", "/search", "/chart", "/feed.atom",
                       "/changes.atom", "/new-blockpages", "/country/", "/network/", "/domain/")


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
                                 "detail": "too many requests from this address; retry in "
                                           f"{RateLimiter.retry_after(wait)} s"})
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


class Head:
    """``HEAD`` wherever ``GET`` works (RFC 9110 §9.3.2): the request runs as a ``GET`` and its answer goes out with
    the same status and headers (``Content-Length`` included) but no body. A streamed answer (an export) is stopped
    after its first chunk, as a client that hangs up stops it; the exports, told by `api.HEAD_SCOPE_KEY`, read
    nothing from the store at all and free their slot at once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return
        answered = asyncio.Event()
        asked = False

        async def hang_up() -> Message:
            # the (empty) request first; then, once the answer's head is out, the client "leaves": Starlette's
            # streamed answers listen for that (an ASGI spec before 2.4, set below) and stop
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await answered.wait()
            return {"type": "http.disconnect"}

        async def head_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if answered.is_set():
                    return
                answered.set()
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        asgi = {**scope.get("asgi", {}), "spec_version": "2.3"}
        await self.app({**scope, "method": "GET", "asgi": asgi, api.HEAD_SCOPE_KEY: True}, hang_up, head_only)


def _not_utf8(scope: Scope) -> str | None:
    """What of the request's target is not UTF-8 once its %-escapes are undone (its path or its query), if any.
    Starlette would read such bytes as U+FFFD and a search for them would answer nothing, as if it had matched
    nothing; the client is told instead."""
    raw_path = scope.get("raw_path")
    if isinstance(raw_path, bytes) and not _utf8(raw_path):
        return "the path"
    query = scope.get("query_string")
    if isinstance(query, bytes) and query and not _utf8(query.replace(b"+", b" ")):
        return "the query string"
    return None


def _utf8(target: bytes) -> bool:
    try:
        unquote_to_bytes(target).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class Utf8Target:
    """A request whose path or query is not UTF-8 (``?input=%ff``) is answered 400, in the API's shape or as the
    explorer's error page, rather than searched for as U+FFFD."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        which = _not_utf8(scope) if scope["type"] == "http" else None
        if which is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        detail = f"{which} is not UTF-8 once its %-escapes are decoded"
        answer = explorer_routes.error_page(request, 400, detail) if explorer_routes.wants_html(request) else \
            JSONResponse({"error": "invalid_parameter", "detail": detail}, status_code=400)
        await answer(scope, receive, send)


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


def create_app(settings: Settings, *, store: Store | None = None, collector: Collector | None = None) -> FastAPI:
    """The whole server as an ASGI app. ``store``: an already opened store to use (else opened here);
    ``collector``: an already started collector (`serve` starts it before uvicorn), stopped on shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        running = collector or Collector.open(settings, store)
        if collector is None:
            await running.start()
        app.state.collector = running
        try:
            yield
        finally:
            await running.stop()
            app.state.collector = None

    app = FastAPI(title="tamperscope", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.collector = None
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
    app.add_middleware(Utf8Target)  # inside `Head`, whose HEAD answers carry no body
    app.add_middleware(Head)  # innermost of the rest: the routes see a HEAD as the GET it is answered as
    app.add_middleware(_LateRateLimit, fastapi_app=app)
    app.add_middleware(InternalErrors)
    app.add_middleware(SecurityHeaders)  # outermost: on every answer, the 500 of `InternalErrors` included
    return app


def announce(text: str) -> None:
    print(f"tamperscope: {text}", file=sys.stderr, flush=True)


__all__ = ["Head", "InternalErrors", "RateLimit", "Utf8Target", "create_app", "read_cost"]
