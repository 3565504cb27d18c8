"""The collector's first refusals (collector/schema.py), each removable with the submission tests passing (a
mutation pass): an empty body, a measurement that is no object, a format other than json (a submission's or a
report's), and envelope fields of the wrong type. Without them the body goes further and fails later, with a 500
or a less exact word."""

from __future__ import annotations

from typing import Any

import pytest

from tamperscope.collector import samples
from tamperscope.collector.schema import (
    SubmissionError,
    check_measurement,
    check_report_open,
    check_submission,
    parse_json,
)


def _refused(call: Any, *args: Any) -> SubmissionError:
    with pytest.raises(SubmissionError) as info:
        call(*args)
    return info.value


@pytest.mark.parametrize("body", [b"", b"   \n\t "])
def test_an_empty_body_is_400_empty(body: bytes) -> None:
    e = _refused(parse_json, body, "the line")
    assert (e.status, e.body()["error"], e.body()["detail"]) == (400, "invalid_json", "the line is empty")


@pytest.mark.parametrize(("value", "kind"), [([], "an array"), ("text", "a string"), (5, "a number"), (None, "null")])
def test_a_measurement_that_is_no_object_is_422_naming_what_it_is(value: Any, kind: str) -> None:
    e = _refused(check_measurement, value)
    assert e.status == 422 and e.body()["detail"].startswith("the measurement must be a JSON object, not"), e.body()
    assert kind in e.body()["detail"]


@pytest.mark.parametrize("fmt", ["yaml", "JSON", None, 1])
def test_a_submission_in_another_format_is_400_unsupported_format(fmt: Any) -> None:
    e = _refused(check_submission, {"format": fmt, "content": samples.measurement("ok")})
    assert e.status == 400 and e.body()["error"] == "unsupported_format", e.body()


@pytest.mark.parametrize("name", ["annotations", "test_helpers"])
@pytest.mark.parametrize("value", [[], "x", 1])
def test_annotations_and_test_helpers_must_be_objects(name: str, value: Any) -> None:
    m = samples.measurement("ok")
    m[name] = value
    e = _refused(check_measurement, m)
    assert (e.status, e.body()["detail"]) == (422, f"{name} must be an object"), e.body()
    m[name] = {}
    check_measurement(m)


@pytest.mark.parametrize("fmt", ["yaml", None, 1])
def test_opening_a_report_in_another_format_is_400_unsupported_format(fmt: Any) -> None:
    e = _refused(check_report_open, {"format": fmt, "test_name": "web_connectivity"})
    assert e.status == 400 and e.body()["error"] == "unsupported_format", e.body()
    assert check_report_open({"test_name": "web_connectivity"})["test_name"] == "web_connectivity"  # json by default


@pytest.mark.parametrize("name", ["software_name", "test_version", "probe_network_name"])
def test_envelope_texts_must_be_strings(name: str) -> None:
    m = samples.measurement("ok")
    m[name] = 5
    e = _refused(check_measurement, m)
    assert (e.status, e.body()["detail"]) == (422, f"{name} must be a string"), e.body()
