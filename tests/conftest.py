"""Shared test settings: lab tests need root, and in CI they must never be skipped.

Tests marked ``serial`` never run beside another test: everything outside tests/unit (the lab, the
browser, the end-to-end runs, which share one lab or bound their time), and the unit tests that measure
time or memory, hold global state or print what CI's log must show. `scripts/test.sh` runs the rest
on two processes (pytest-xdist), then the serial ones alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REQUIRE_LAB = os.environ.get("TAMPERSCOPE_REQUIRE_LAB") == "1"


UNIT = Path(__file__).parent / "unit"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if UNIT not in item.path.parents:
            item.add_marker(pytest.mark.serial)
    if os.geteuid() == 0:
        return
    lab_items = [item for item in items if "lab" in item.keywords]
    if lab_items and REQUIRE_LAB:
        raise pytest.UsageError("lab tests must run as root here (TAMPERSCOPE_REQUIRE_LAB=1): they may not be skipped")
    for item in lab_items:
        item.add_marker(pytest.mark.skip(reason="lab tests need root"))
