"""`analyze` reaches the verdict the probe wrote, for the nettests whose verdict the probe computes in the nettest
itself (QA: on the lab's middlebox and ru-like profiles, analyze said "http-failure", not accessible, at 0.8 where
the probe said not blocked and accessible at 0.9, for throttling and the two middlebox nettests)."""

from __future__ import annotations

from typing import Any

import pytest

from tamperscope.analysis.verdicts import verdict_for
from tamperscope.nettests import throttling
from tamperscope.nettests.base import Context
from tamperscope.nettests.middlebox import verdict_keys

KEYS = ("blocking", "accessible", "x_mechanism", "x_confidence", "x_status")


def _analysed(test_name: str, tk: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in verdict_for({"test_name": test_name, "test_keys": tk}).to_test_keys().items()
            if k in KEYS}


@pytest.mark.parametrize("test_name", ["http_header_field_manipulation", "http_invalid_request_line"])
@pytest.mark.parametrize("tampered", [True, False])
def test_the_middlebox_nettests(test_name: str, tampered: bool) -> None:
    tampering: Any = {"total": tampered, "header_field_name": tampered} if test_name.startswith("http_header") \
        else tampered
    probe = verdict_keys(tampered, reached=True)
    assert _analysed(test_name, {"tampering": tampering, "received": ["echo"]}) == {k: probe[k] for k in KEYS}


@pytest.mark.parametrize("throttled", [True, False])
def test_throttling(throttled: bool) -> None:
    m: dict[str, Any] = {"test_name": "throttling",
                         "test_keys": {"x_throttle": {"throttled": throttled, "cap_kbps": 150 if throttled else None}}}
    throttling.finish(m, Context())
    assert _analysed("throttling", {"x_throttle": m["test_keys"]["x_throttle"]}) == \
        {k: m["test_keys"][k] for k in KEYS}
