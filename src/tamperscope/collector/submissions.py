"""The collector endpoints: OONI's report protocol, and a bulk JSONL upload.

OONI-compatible (what OONI Probe and our ``tamperscope run --submit`` speak):

* ``POST /report`` with the report's metadata → ``{"report_id", "backend_version",
  "supported_formats"}``. Report ids are not state: any well-formed id is
  accepted later, so uploads resume across server restarts.
* ``POST /report/{report_id}`` with ``{"format": "json", "content": measurement}``
  → 200 ``{"measurement_uid", "duplicate", "verdict"}`` once the measurement is
  on disk and fsync'd (and analysed); 4xx with ``{"error", "detail"}`` otherwise.
* ``POST /report/{report_id}/close`` → ``{}``.

Ours: ``POST /api/v1/submit`` takes a JSONL body (``application/x-ndjson``), one
measurement (or one OONI submission object) per line, and answers per line.

What is stored (and its uid derived from) is the parsed measurement re-encoded
compactly (`serialise`), not the submitted bytes, with ``probe_ip`` set to
127.0.0.1 whatever was sent (`without_address`), and the address the submission
came from scrubbed wherever it appears, as the probe scrubs its own
(`probe.privacy.Scrubber`): a second line of defence for a probe behind NAT that
could not know its public address, which is the address a collector sees (or, from
a trusted proxy, the one it forwards). A number that re-encoding would change (an
integer beyond 64 bits) is refused instead (`schema.check_numbers`).
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import secrets
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tamperscope import __version__
from tamperscope.collector.config import Collector
from tamperscope.collector.ingestor import Receipt
from tamperscope.collector.ratelimit import RateLimiter
from tamperscope.collector.schema import (
    ERROR,
    REPORT_OPEN,
    SUBMISSION,
    SubmissionError,
    check_measurement,
    check_numbers,
    check_report_id,
    check_report_open,
    check_submission,
    json_body,
    parse_json,
)
from tamperscope.model.measurement import SCRUBBED_IP
from tamperscope.probe.privacy import Scrubber

T = TypeVar("T")

router = APIRouter(tags=["collector"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"schema": ERROR}}}
    for code, text in ((400, "not JSON, or not a submission"),
                       (403, "a read-only server, or a submission a web page of another site had a browser send"),
                       (410, "deleted by an administrator"),
                       (413, "too large"), (422, "not a valid measurement"), (429, "rate limited"),
                       (503, "busy, retry later"))
}


def collector_of(request: Request) -> Collector:
    collector: Collector = request.app.state.collector
    if not collector.settings.accept_submissions:
        raise SubmissionError(403, "read_only", "this server does not accept submissions")
    return collector


def _cross_site(request: Request) -> bool:
    """Whether a browser sent this request for a page of another site: a submission forged by any web page its
    visitors open (a form posted as text/plain, a fetch in no-cors mode), from as many addresses as it has
    visitors. Probes (OONI Probe, ours, curl) send neither header; a browser sends ``Origin`` with every POST
    and, today, ``Sec-Fetch-Site``. Same origin: the request's Host, or ``serve --public-url``'s."""
    site = request.headers.get("sec-fetch-site", "").strip().lower()
    if site and site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    ours = {request.headers.get("host", "").strip().lower()}
    public: str | None = request.app.state.collector.settings.public_url
    if public:
        ours.add(urlsplit(public).netloc.lower())
    try:
        theirs = urlsplit(origin.strip()).netloc.lower()
    except ValueError:
        return True
    return not theirs or theirs not in ours  # "null": a sandboxed page, a file, a redirect across sites


async def read_body(request: Request, limit: int, what: str = "a submission", senders: str = "probes") -> bytes:
    """The request body, refusing (403) one a web page of another site had a browser send, (413) more than
    ``limit`` bytes without reading them all, and (400) one declared compressed or in a charset other than
    UTF-8, which would be stored as if it were neither. ``what`` and ``senders`` name the request and those who
    send it, in the refusal."""
    if _cross_site(request):
        raise SubmissionError(403, "cross_origin", f"{what} that a web page of another site had a browser "
                              f"send is refused (its Origin or Sec-Fetch-Site says so); {senders} send neither")
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise SubmissionError(400, "invalid_json", f"Content-Encoding {encoding[:40]!r} is not supported; "
                              "send the body uncompressed")
    charset = _charset(request.headers.get("content-type", ""))
    if charset not in (None, "utf-8", "utf8", "us-ascii", "ascii"):
        raise SubmissionError(400, "invalid_json", f"the charset {charset[:40]!r} is not supported; send UTF-8")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise SubmissionError(400, "invalid_length", "Content-Length is not a number") from None
        if size > limit:
            raise SubmissionError(413, "too_large", f"the body is {size} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise SubmissionError(413, "too_large", f"the body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _charset(content_type: str) -> str | None:
    """The ``charset`` parameter of a Content-Type, lowercased and unquoted, or None."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def without_address(measurement: dict[str, Any], submitter: str | None = None) -> dict[str, Any]:
    """The measurement with ``probe_ip`` set to 127.0.0.1: a client that sent its address (OONI Probe
    and ours never do) has it dropped before anything is stored, logged or hashed into the uid, and scrubbed
    wherever else it appears (a page that echoed it, a resolver's answer); and with ``submitter``, the address
    the submission came from, scrubbed too."""
    given = measurement.get("probe_ip")
    given = given if isinstance(given, str) and given != SCRUBBED_IP else None
    if given is not None:
        measurement = {**measurement, "probe_ip": SCRUBBED_IP}  # same key order
    addresses = tuple(a for a in (submitter, given) if a)
    scrub = _scrubber(addresses) if addresses else None
    return scrub(measurement) if scrub is not None else measurement


@functools.lru_cache(maxsize=256)
def _scrubber(addresses: tuple[str, ...]) -> Scrubber | None:
    """A scrubber of a submitter's address and the one its probe sent (None when neither is an address, or
    only ones never scrubbed: loopback, unspecified)."""
    ips = []
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:  # "testclient", a Unix socket, a probe_ip that is no address
            continue
        plain = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
        if not (plain.is_loopback or plain.is_unspecified):  # ::ffff:127.0.0.1 is loopback too
            ips.append(str(ip))  # a mapped one's IPv4 address is scrubbed with it (`Scrubber`)
    return Scrubber(ips, interfaces=False) if ips else None


def submitter_of(request: Request) -> str | None:
    """The address the submission came from (from a trusted proxy, the one it forwards)."""
    return request.client.host if request.client else None


SERIALISE_DEPTH = 254  # orjson.dumps refuses deeper nesting ("Recursion limit reached")


def serialise(measurement: dict[str, Any], limit: int, submitter: str | None = None) -> bytes:
    """The line stored for an accepted measurement: re-encoded compactly, without the probe's address (and
    without the submitter's, when given)."""
    try:
        line = orjson.dumps(without_address(measurement, submitter))
    except (orjson.JSONEncodeError, TypeError) as exc:
        why = f"it is nested more than {SERIALISE_DEPTH} levels deep" if "Recursion" in str(exc) else str(exc)
        raise SubmissionError(422, "invalid_measurement", f"the measurement cannot be stored: {why}") from None
    if len(line) > limit:
        raise SubmissionError(413, "too_large", f"the measurement is {len(line)} bytes; the limit is {limit}")
    return line


def receipt_body(r: Receipt) -> dict[str, Any]:
    return {"measurement_uid": r.measurement_uid, "duplicate": r.status == "duplicate", "verdict": r.verdict}


def receipt_response(r: Receipt) -> Response:
    if r.status in ("stored", "duplicate"):
        return JSONResponse(receipt_body(r))
    if r.status == "deleted":
        return JSONResponse({"error": "deleted", "measurement_uid": r.measurement_uid,
                             "detail": "an administrator deleted this measurement; it is not stored again"},
                            status_code=410)
    return JSONResponse({"error": r.error or "invalid_measurement", "detail": r.detail or "refused"},
                        status_code=422)


def new_report_id(test_name: str, probe_cc: str, probe_asn: str, now: dt.datetime | None = None) -> str:
    """OONI's shape: ``20240131T120000Z_webconnectivity_IT_30722_n1_<random>``."""
    when = now or dt.datetime.now(dt.timezone.utc)
    tail = "".join(ch for ch in secrets.token_urlsafe(24) if ch.isalnum())[:16]
    return f"{when:%Y%m%dT%H%M%SZ}_{test_name.replace('_', '')}_{probe_cc}_{probe_asn[2:]}_n1_{tail}"


async def off_the_loop(work: Callable[[], T]) -> T:
    """``work()`` on a worker thread: parsing, checking and scrubbing a submission is CPU work (1.2 s for a 4.8 MB
    one full of the submitter's address's first octets), and on the event loop it stalled every other request
    for as long (10 such at once: a page took 6.2-6.5 s, 0.58 s without them). A thread takes the GIL in turns
    with the loop, which answers meanwhile."""
    return await anyio.to_thread.run_sync(work)


@router.post("/report", summary="Open a report (OONI collector protocol)",
             openapi_extra=json_body(REPORT_OPEN), responses={c: _ERRORS[c] for c in (400, 403, 413)})
async def open_report(request: Request) -> dict[str, Any]:
    collector = collector_of(request)
    payload = parse_json(await read_body(request, collector.settings.limits.small))
    meta = check_report_open(payload)
    report_id = new_report_id(meta["test_name"], meta["probe_cc"], meta["probe_asn"])
    return {"backend_version": __version__, "report_id": report_id, "supported_formats": ["json"]}


@router.post("/report/{report_id}", summary="Submit one measurement to a report (OONI collector protocol)",
             openapi_extra=json_body(SUBMISSION),
             responses={code: _ERRORS[code] for code in (400, 403, 410, 413, 422, 429, 503)})
async def submit_measurement(report_id: str, request: Request) -> Response:
    collector = collector_of(request)
    check_report_id(report_id)
    limits = collector.settings.limits
    body = await read_body(request, limits.measurement)
    submitter = submitter_of(request)

    def prepared() -> bytes:
        measurement = check_submission(parse_json(body), limits)
        check_numbers(body)
        return serialise(measurement, limits.measurement, submitter)

    line = await off_the_loop(prepared)
    (receipt,) = await collector.ingestor.submit([line])
    return receipt_response(receipt)


@router.post("/report/{report_id}/close", summary="Close a report (OONI collector protocol)")
async def close_report(report_id: str, request: Request) -> dict[str, Any]:
    collector_of(request)
    check_report_id(report_id)
    return {}


@router.post("/api/v1/submit", summary="Submit many measurements as JSON lines",
             openapi_extra=json_body({"type": "string", "description": "one measurement (or one "
                                      "{\"format\": \"json\", \"content\": ...} object) per line"},
                                     "application/x-ndjson"),
             responses={code: _ERRORS[code] for code in (400, 403, 413, 422, 429, 503)})
async def submit_bulk(request: Request) -> Response:
    collector = collector_of(request)
    limits = collector.settings.limits
    body = await read_body(request, limits.bulk)
    raw_lines = [(n + 1, line) for n, line in enumerate(body.split(b"\n")) if line.strip()]
    if not raw_lines:
        raise SubmissionError(400, "empty", "the body holds no measurement (one JSON object per line)")
    if len(raw_lines) > limits.bulk_lines:
        raise SubmissionError(413, "too_many", f"{len(raw_lines)} lines; at most {limits.bulk_lines} per request")
    submitter = submitter_of(request)
    client = submitter or "unknown"
    wait = collector.submit_limiter.take_rest(client, len(raw_lines) - 1)  # the middleware took the first
    if wait:
        raise SubmissionError(429, "rate_limited",
                              f"too many measurements; retry in {RateLimiter.retry_after(wait)} s", retry_after=wait)
    results: list[dict[str, Any] | None] = [None] * len(raw_lines)
    accepted: list[tuple[int, bytes]] = []

    def prepared() -> None:
        for i, (number, raw) in enumerate(raw_lines):
            try:
                if len(raw) > limits.measurement:
                    raise SubmissionError(413, "too_large",
                                          f"the line is {len(raw)} bytes; the limit is {limits.measurement}")
                value = parse_json(raw, "the line")
                if isinstance(value, dict) and "format" in value and ("content" in value or "test_name" not in value):
                    value = check_submission(value, limits)
                else:
                    check_measurement(value, limits)
                check_numbers(raw, "the line")
                accepted.append((i, serialise(value, limits.measurement, submitter)))
            except SubmissionError as exc:
                results[i] = {"line": number, **exc.body()}

    await off_the_loop(prepared)
    receipts = await collector.ingestor.submit([line for _, line in accepted]) if accepted else []
    for (i, _), r in zip(accepted, receipts, strict=True):
        number = raw_lines[i][0]
        if r.status in ("stored", "duplicate"):
            results[i] = {"line": number, **receipt_body(r)}
        elif r.status == "deleted":
            results[i] = {"line": number, "error": "deleted", "measurement_uid": r.measurement_uid,
                          "detail": "an administrator deleted this measurement"}
        else:
            results[i] = {"line": number, "error": r.error, "detail": r.detail}
    stored = sum(1 for r in receipts if r.status == "stored")
    duplicates = sum(1 for r in receipts if r.status == "duplicate")
    refused = len(raw_lines) - stored - duplicates
    summary = {"stored": stored, "duplicates": duplicates, "refused": refused, "results": results}
    return JSONResponse(summary, status_code=200 if stored + duplicates else 422)


__all__ = ["new_report_id", "read_body", "router", "serialise", "without_address"]
