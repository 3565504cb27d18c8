"""What the collector accepts: the checks on every submission, and their JSON Schema.

A submission is refused with a 4xx and a one-line reason (`SubmissionError`)
when it is not what OONI's collector protocol and data format say:

* the body is not JSON, not UTF-8, or not an object (400 ``invalid_json``);
* ``format`` is not ``"json"`` (400 ``unsupported_format``; OONI's old YAML is not taken);
* ``content`` is not a measurement: a required envelope field is missing or has
  the wrong type or shape (422 ``invalid_measurement``), e.g. ``probe_cc`` must be
  two capital letters, ``probe_asn`` ``"AS"`` and digits, ``test_name`` lowercase
  letters, digits and ``_``, ``measurement_start_time`` ``"YYYY-MM-DD HH:MM:SS"``
  (UTC; ISO 8601 with ``T``, a fraction and ``Z`` or an offset is taken too, no
  surrounding space; from 2000 to a day after the collector's clock), ``test_keys`` an object;
* it is too large (413 ``too_large``), see `Limits`;
* it holds an integer beyond 64 bits (422 ``invalid_measurement``): the stored
  measurement is the parsed JSON re-encoded, and such a number would change (`check_numbers`).

The same rules are written out as JSON Schema (`MEASUREMENT`, `SUBMISSION`,
`REPORT_OPEN`) for the OpenAPI description, so clients can check before sending.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tamperscope.analysis.pipeline import Invalid, envelope, json_kind

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Size limits, in bytes."""

    measurement: int = 5 * MiB     # one submission body (POST /report/{id}) and one bulk line
    bulk: int = 64 * MiB           # one bulk JSONL body
    bulk_lines: int = 20000        # measurements in one bulk body
    input: int = 8192              # the ``input`` field
    envelope: int = 1024           # each other string of the envelope (a network's name, report_id, software_name…)
    small: int = 64 * 1024         # POST /report and admin bodies


class SubmissionError(Exception):
    """A submission refused: HTTP ``status``, a stable ``error`` code, a one-line ``detail``; for a 429,
    ``retry_after``: the seconds until the request would pass (the ``Retry-After`` header)."""

    def __init__(self, status: int, error: str, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail}


CC = re.compile(r"[A-Z]{2}")
ASN = re.compile(r"AS[0-9]{1,10}")
MAX_ASN = 2**32 - 1  # AS numbers are 32 bits: AS9999999999 matches ASN, names no network, and was stored as AS0
TEST_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
REPORT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")  # as the outbox's (probe/outbox.py): no "." nor ".."
# A start this far after the collector's clock is a probe's wrong clock, not a measurement: kept, it would sit at
# the head of every listing and feed until that time came.
FUTURE = dt.timedelta(days=1)
START_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:?[0-9]{2})?")
_STRINGS = ("probe_network_name", "software_name", "software_version", "test_version", "data_format_version",
            "resolver_ip", "probe_ip", "test_start_time", "report_id")


def _invalid(detail: str) -> SubmissionError:
    return SubmissionError(422, "invalid_measurement", detail)


def parse_json(body: bytes, what: str = "the body") -> Any:
    """JSON bytes → value, or a 400 saying why not."""
    if not body.strip():
        raise SubmissionError(400, "invalid_json", f"{what} is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if not _is_utf8(body):  # orjson's own words for this ("surrogates not allowed") mislead
            raise SubmissionError(400, "invalid_json", f"{what} is not UTF-8 JSON{_not_utf8_hint(body)}") from None
        if str(exc).startswith("number is infinity"):  # an integer of over 300 digits, read as a float
            raise _invalid(f"{what} holds a number too large to be stored exactly (send it as a string)") from None
        first = str(exc).splitlines()[0] if str(exc) else "not JSON"
        raise SubmissionError(400, "invalid_json", f"{what} is not valid JSON: {first[:160]}") from None


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _not_utf8_hint(body: bytes) -> str:
    if body[:2] == b"\x1f\x8b":
        return ": it is gzip-compressed (Content-Encoding is not supported; send it uncompressed)"
    return " (other charsets, and Content-Encoding, are not supported)"


# orjson reads an integer outside [-2**63, 2**64) as a float, so 18446744073709551617 would be stored as
# 1.8446744073709552e+19: such a measurement is refused rather than changed. Only integers of 20 digits,
# or negative ones of 19, can be out of range, so most bodies are cleared by one search for a run of 19
# digits; the others are searched again with their strings emptied (digits in a string are text), for
# whole integers (not the digits of a fraction or an exponent) of that length.
_NINETEEN_DIGITS = re.compile(rb"[0-9]{19}")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_LONG_INTEGER = re.compile(rb"(?<![0-9.eE+-])(?:-?[0-9]{20,}|-[0-9]{19})(?![0-9.eE])")
INTEGERS = range(-2**63, 2**64)


def check_numbers(body: bytes, what: str = "the measurement") -> None:
    """Refuse (422) valid JSON holding an integer that cannot be stored exactly (see `INTEGERS`)."""
    if not _NINETEEN_DIGITS.search(body):
        return
    for found in _LONG_INTEGER.finditer(_JSON_STRING.sub(b'""', body)):
        if int(found.group()) not in INTEGERS:
            shown = found.group()[:30].decode("ascii") + ("…" if len(found.group()) > 30 else "")
            raise _invalid(f"{what} holds the integer {shown}, beyond 64 bits: it cannot be stored exactly "
                           "(send it as a string)")


def utc_now() -> dt.datetime:
    """Now, in UTC, naive: as `envelope` gives a measurement's start."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def check_measurement(m: Any, limits: Limits = Limits(), clock: Callable[[], dt.datetime] = utc_now) -> None:
    """Raise `SubmissionError` unless ``m`` is a measurement the collector stores (``clock``: now, UTC)."""
    if not isinstance(m, dict):
        raise _invalid(f"the measurement must be a JSON object, not {json_kind(m)}")
    try:
        env = envelope(m)
    except Invalid as exc:
        raise _invalid(exc.detail) from None
    if not CC.fullmatch(m["probe_cc"]):
        raise _invalid("probe_cc must be two capital letters (ISO 3166-1 alpha-2, ZZ if unknown)")
    if not _asn_ok(m["probe_asn"]):
        raise _invalid(f"probe_asn must be a string like \"AS1234\" (AS0 if unknown), at most AS{MAX_ASN}")
    if not TEST_NAME.fullmatch(env.test_name):
        raise _invalid("test_name must be lowercase letters, digits and _ (at most 64)")
    if not START_TIME.fullmatch(m["measurement_start_time"]):
        raise _invalid("measurement_start_time must look like \"2024-01-31 12:00:00\" (UTC)")
    if env.start.year < 2000:
        raise _invalid("measurement_start_time is not a plausible time")
    if env.start > clock() + FUTURE:
        raise _invalid(f"measurement_start_time is more than {FUTURE.days * 24} hours after the collector's clock "
                       "(is the probe's clock right?)")
    inp = m.get("input")
    if inp is not None and len(inp) > limits.input:
        raise _invalid(f"input is longer than {limits.input} characters")
    for name in _STRINGS:
        value = m.get(name)
        if value is not None and not isinstance(value, str):
            raise _invalid(f"{name} must be a string")
        if value is not None and len(value) > limits.envelope:  # a network's longest name is under 100
            raise _invalid(f"{name} is longer than {limits.envelope} characters")
    for name in ("annotations", "test_helpers"):
        value = m.get(name)
        if value is not None and not isinstance(value, dict):
            raise _invalid(f"{name} must be an object")
    runtime = m.get("test_runtime")
    if runtime is not None and (isinstance(runtime, bool) or not isinstance(runtime, (int, float))):
        raise _invalid("test_runtime must be a number (seconds)")


def check_submission(payload: Any, limits: Limits = Limits()) -> dict[str, Any]:
    """OONI's ``{"format": "json", "content": measurement}`` → the measurement, checked."""
    if not isinstance(payload, dict):
        raise SubmissionError(400, "invalid_json", f"the body must be a JSON object, not {json_kind(payload)}")
    fmt = payload.get("format")
    if fmt != "json":
        shown = fmt if isinstance(fmt, str) else json_kind(fmt)
        raise SubmissionError(400, "unsupported_format",
                              f"format must be \"json\" (got {str(shown)[:40]!r}); YAML reports are not accepted")
    if "content" not in payload:
        raise SubmissionError(400, "missing_content", "the body has no \"content\" (the measurement)")
    content: dict[str, Any] = payload["content"]  # a dict once check_measurement has passed it
    check_measurement(content, limits)
    return content


def check_report_open(payload: Any) -> dict[str, str]:
    """POST /report's body → the few fields the report id is made of."""
    if not isinstance(payload, dict):
        raise SubmissionError(400, "invalid_json", f"the body must be a JSON object, not {json_kind(payload)}")
    fmt = payload.get("format", "json")
    if fmt != "json":
        raise SubmissionError(400, "unsupported_format", "format must be \"json\"")
    out: dict[str, str] = {}
    for name, pattern, default in (("test_name", TEST_NAME, None), ("probe_cc", CC, "ZZ"), ("probe_asn", ASN, "AS0")):
        value = payload.get(name, default)
        if not isinstance(value, str) or not pattern.fullmatch(value) or (name == "probe_asn" and not _asn_ok(value)):
            raise SubmissionError(400, "invalid_report", f"{name} is missing or malformed")
        out[name] = value
    return out


def _asn_ok(value: Any) -> bool:
    return isinstance(value, str) and ASN.fullmatch(value) is not None and int(value[2:]) <= MAX_ASN


def check_report_id(report_id: str) -> None:
    if not REPORT_ID.fullmatch(report_id):
        raise SubmissionError(400, "invalid_report_id",
                              "report_id must be 1-200 characters of letters, digits, '_', '-' and '.', the first a "
                              "letter or digit")


# --------------------------------------------------------------------------- JSON Schema (OpenAPI)

MEASUREMENT: dict[str, Any] = {
    "title": "Measurement",
    "description": "An OONI-format measurement (data_format_version 0.2.0); tamperscope's additions are under "
                   "test_keys keys prefixed x_.",
    "type": "object",
    "required": ["test_name", "measurement_start_time", "probe_cc", "probe_asn", "test_keys"],
    "properties": {
        "test_name": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$", "example": "web_connectivity"},
        "test_version": {"type": "string", "maxLength": 1024},
        "measurement_start_time": {"type": "string", "example": "2024-01-31 12:00:00",
                                   "description": "UTC, YYYY-MM-DD HH:MM:SS"},
        "test_start_time": {"type": "string", "maxLength": 1024},
        "probe_cc": {"type": "string", "pattern": "^[A-Z]{2}$", "example": "IT"},
        "probe_asn": {"type": "string", "pattern": "^AS[0-9]{1,10}$", "example": "AS30722"},
        "probe_network_name": {"type": "string", "maxLength": 1024},
        "probe_ip": {"type": "string", "description": "always 127.0.0.1: the probe never sends its address, "
                     "and the collector stores any other value as 127.0.0.1"},
        "input": {"type": ["string", "null"], "maxLength": 8192},
        "report_id": {"type": "string", "maxLength": 1024},
        "software_name": {"type": "string", "maxLength": 1024},
        "software_version": {"type": "string", "maxLength": 1024},
        "data_format_version": {"type": "string", "maxLength": 1024, "example": "0.2.0"},
        "annotations": {"type": "object"},
        "test_helpers": {"type": "object"},
        "test_runtime": {"type": "number"},
        "test_keys": {"type": "object"},
    },
}

SUBMISSION: dict[str, Any] = {
    "title": "Submission",
    "type": "object",
    "required": ["format", "content"],
    "properties": {"format": {"type": "string", "enum": ["json"]}, "content": MEASUREMENT},
}

REPORT_OPEN: dict[str, Any] = {
    "title": "ReportOpen",
    "type": "object",
    "required": ["test_name"],
    "properties": {
        "test_name": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"},
        "probe_cc": {"type": "string", "pattern": "^[A-Z]{2}$"},
        "probe_asn": {"type": "string", "pattern": "^AS[0-9]{1,10}$"},
        "software_name": {"type": "string"},
        "software_version": {"type": "string"},
        "test_version": {"type": "string"},
        "data_format_version": {"type": "string"},
        "test_start_time": {"type": "string"},
        "format": {"type": "string", "enum": ["json"]},
    },
}

ERROR: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string", "description": "a stable code, e.g. invalid_measurement"},
                   "detail": {"type": "string", "description": "one line for people"}},
}


def json_body(schema: Mapping[str, Any], media: str = "application/json") -> dict[str, Any]:
    """An OpenAPI ``requestBody`` for handlers that read and check the body themselves."""
    return {"requestBody": {"required": True, "content": {media: {"schema": dict(schema)}}}}


__all__ = [
    "ERROR", "INTEGERS", "Limits", "MEASUREMENT", "MiB", "REPORT_OPEN", "SUBMISSION", "SubmissionError",
    "check_measurement", "check_numbers", "check_report_id", "check_report_open", "check_submission", "json_body",
    "parse_json",
]
