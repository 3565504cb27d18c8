"""A repeated group whose iterations can divide the same text many ways backtracks exponentially:
``^(a?){30}a{30}$`` and ``^(aa?){30}b`` never return on 40 a's, yet `backtracking_risk` passed them (neither
nests an unbounded repeat), so a lab profile could hang its censor on a crafted name."""

from __future__ import annotations

from pathlib import Path

import pytest

from tamperscope.lab import manager
from tamperscope.lab.manager import LabError
from tamperscope.wire.patterns import backtracking_risk

EXPONENTIAL = ["^(a?){30}a{30}$", "^(aa?){30}b", "(aa?)*b", "^(a{1,2}){20}b"]
FINE = ["^(ab?){30}b", "^(a?){8}a{8}$", "(www\\.)?facebook\\.com", "^([a-z]+\\.)?vk\\.com$",
        "^(xn--)?[a-z0-9]{1,20}(\\.[a-z]{2,3}){1,3}$", "(\\.|^)instagram\\.com$", "^(?:[0-9]{1,3}\\.){3}[0-9]{1,3}$"]


@pytest.mark.parametrize("regex", EXPONENTIAL)
def test_iterations_that_divide_a_text_many_ways_are_a_risk(regex: str) -> None:
    assert backtracking_risk(regex) is not None


@pytest.mark.parametrize("regex", FINE)
def test_groups_whose_iterations_cannot_share_text_are_not(regex: str) -> None:
    assert backtracking_risk(regex) is None


def test_a_profile_with_such_a_regex_is_refused_in_one_line(tmp_path: Path) -> None:
    p = tmp_path / "splits.toml"
    p.write_text("[[rule]]\nid = 'r'\nlayer = 'http'\naction = 'rst'\nregex = '^(aa?){30}b'\n")
    with pytest.raises(LabError) as e:
        manager.resolve_profile(str(p))
    assert e.value.exit_code == 2 and "\n" not in str(e.value)
    assert "may backtrack exponentially" in str(e.value) and "divide the same text" in str(e.value)


def test_every_shipped_profile_still_loads() -> None:
    shipped = sorted((Path(manager.__file__).parent / "profiles").glob("*.toml"))
    assert len(shipped) >= 5
    for profile in shipped:
        manager.resolve_profile(str(profile))
