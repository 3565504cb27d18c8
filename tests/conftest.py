"""Shared test settings: lab tests need root, and in CI they must never be skipped.

Tests marked ``serial`` never run beside another test of their kind: everything outside tests/unit (the
lab, the browser, the end-to-end runs, which share one lab or bound their time), and the unit tests that
measure time or memory, hold global state or print what CI's log must show. `scripts/test.sh` runs three
streams at once: the serial tests one at a time; the ``wallclock`` ones (a unit test that asserts a wall-clock
bound, as "a hostile server is cut off within 2 s") one at a time; and at lower priority the rest on pytest-xdist,
then the browser tests and the end-to-end runs one at a time (they use no lab and bound no time but generous
ones). A unit test that bounds wall-clock time must be marked ``wallclock`` (or ``serial``): among the
low-priority tests, the lab's busy moments can starve it.
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
