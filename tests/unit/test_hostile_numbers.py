"""Numbers in hostile text that Python's int() refuses: past 4,300 digits it raises ValueError (CPython's limit on
converting decimal strings). A measurement's ``test_version`` and the control helper's ``discovered_h3_endpoint``
are written by others; neither may make a verdict or a nettest fail."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

from tamperscope.analysis.pipeline import analyse_batch
from tamperscope.analysis.reader import Line
from tamperscope.analysis.verdicts import verdict_for
from tamperscope.model.webparts import parse_version
from tamperscope.nettests.web_connectivity import _advertised_h3
from tamperscope.netx.trace import Trace

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
LONG = "9" * (sys.get_int_max_str_digits() + 1)  # one digit more than int() reads


def _sample(name: str) -> dict:
    return json.loads((SAMPLES / name / "measurement.json").read_text())


@pytest.mark.parametrize(("value", "version"), [
    ("0.4.3", (0, 4)),
    ("0.5.28", (0, 5)),
    ("1.0", (1, 0)),
    (LONG + ".4", (0, 5)),             # int() would raise
    ("0." + LONG, (0, 5)),
    ("0.1234567890", (0, 5)),          # a part of ten digits is no version
    ("\u0660.\u0664", (0, 5)),         # Arabic-Indic digits, which int() reads as 0 and 4
    ("\uff10.\uff14", (0, 5)),         # fullwidth digits
    ("", (0, 5)),
])
def test_a_version_is_ascii_digits_or_the_current_one(value: str, version: tuple[int, int]) -> None:
    """Only ASCII digits, nine at most per part, make a version; anything else is the current (0, 5)."""
    assert parse_version(value) == version


def test_a_huge_test_version_does_not_fail_the_verdict() -> None:
    """A measurement whose test_version is 4,301 digits gets the verdict of the current rules, not an error."""
    m = _sample("httpBlockingConnectionReset")
    hostile, current = copy.deepcopy(m), copy.deepcopy(m)
    hostile["test_version"], current["test_version"] = LONG + ".0.0", "0.5.99"
    assert verdict_for(hostile) == verdict_for(current)
    result = analyse_batch([Line("hostile.jsonl", 1, json.dumps(hostile).encode())])
    assert not result.errors and not result.rejections, (result.errors, result.rejections)
    assert result.verdicts.column("blocking").to_pylist() == [verdict_for(current).blocking]


def test_a_helper_naming_a_port_of_4301_digits_gives_no_http3_port() -> None:
    """The control helper's ``discovered_h3_endpoint`` is text from a server: a port int() refuses is no port (the
    QUIC step is skipped), and a good one is still read."""
    trace = Trace()
    tk = {"control": {"http_request": {"discovered_h3_endpoint": "example.org:" + LONG}}}
    assert _advertised_h3("example.org", trace, tk) is None
    tk["control"]["http_request"]["discovered_h3_endpoint"] = "example.org:" + "0" * 5 + "443"
    assert _advertised_h3("example.org", trace, tk) is None  # eight digits: no port, however it reads
    tk["control"]["http_request"]["discovered_h3_endpoint"] = "example.org:8443"
    assert _advertised_h3("example.org", trace, tk) == 8443
