"""Edges of the throttling rule (model.throttle.judge) that the other tests leave open, found by mutation testing:
what a round's fetch record may be before it is no rate."""

from __future__ import annotations

from typing import Any

import pytest

from tamperscope.model.throttle import judge


@pytest.mark.parametrize("fetch", ["fast", [138.0, 30000], 138.0, ("kbps", 138.0), b"kbps"])
def test_a_fetch_that_is_no_mapping_gives_no_rate_and_raises_nothing(fetch: Any) -> None:
    """A target or control that is a non-empty string, list, number or bytes is no fetch (an AttributeError if it
    were read as one only because it is truthy)."""
    good = {"kbps": 138.0, "bytes": 30000}
    assert judge([{"target": fetch, "control": good, "same_resource": True}]) is None
    assert judge([{"target": good, "control": fetch, "same_resource": True}]) is None
