"""Shared test settings: lab tests need root, and in CI they must never be skipped."""

from __future__ import annotations

import os

import pytest

REQUIRE_LAB = os.environ.get("TAMPERSCOPE_REQUIRE_LAB") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    lab_items = [item for item in items if "lab" in item.keywords]
    if lab_items and REQUIRE_LAB:
        raise pytest.UsageError("lab tests must run as root here (TAMPERSCOPE_REQUIRE_LAB=1): they may not be skipped")
    for item in lab_items:
        item.add_marker(pytest.mark.skip(reason="lab tests need root"))
