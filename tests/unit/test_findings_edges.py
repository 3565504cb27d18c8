"""Edges of the findings directory (`tamperscope serve --findings DIR`), from a mutation-testing pass: each test
breaks if the check it names were dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from tamperscope.collector.findings import FindingError, Findings, parse


def _finding(published: str = "2026-05-04", evidence: str = 'probe_cc = "RU"') -> str:
    return f'+++\ntitle = "A finding"\npublished = {published}\n[evidence]\n{evidence}\n+++\nThe text.\n'


def test_a_published_time_is_refused_a_date_is_wanted() -> None:
    """A datetime beside another file's date would make sorting the findings raise TypeError."""
    with pytest.raises(FindingError, match="published must be a date"):
        parse("x", _finding("2026-05-04T10:00:00"), "x.md")
    assert str(parse("x", _finding(), "x.md").published) == "2026-05-04"


def test_an_empty_window_of_evidence_is_refused() -> None:
    """since == until selects nothing: the finding could show no measurement."""
    with pytest.raises(FindingError, match="since must come before until"):
        parse("x", _finding(evidence='probe_cc = "RU"\nsince = 2026-05-01\nuntil = 2026-05-01'), "x.md")
    assert parse("x", _finding(evidence='probe_cc = "RU"\nsince = 2026-05-01\nuntil = 2026-05-02'), "x.md")


def test_a_file_saved_with_a_byte_order_mark_is_read() -> None:
    """A finding saved by a Windows editor starts with U+FEFF: it must not be refused as lacking its '+++'."""
    assert parse("x", "\ufeff" + _finding(), "x.md").title == "A finding"


def test_a_list_item_holding_a_comma_is_refused() -> None:
    """["RU,BY"] would read as two countries where the list says one value."""
    with pytest.raises(FindingError, match="a list of values"):
        parse("x", _finding(evidence='probe_cc = ["RU,BY"]'), "x.md")
    assert parse("x", _finding(evidence='probe_cc = ["RU", "BY"]'), "x.md").evidence["probe_cc"] == "RU,BY"


def test_hidden_files_are_not_findings(tmp_path: Path) -> None:
    """An editor's hidden file (.x.md) has no valid id: read, it would stop the server at start."""
    (tmp_path / "real.md").write_text(_finding())
    (tmp_path / ".real.md").write_text("not a finding")
    (tmp_path / ".#real.md").write_text("an editor's lock file")
    box = Findings(tmp_path, warn=lambda line: pytest.fail(line))
    assert box.check() == 1
    assert [f.id for f in box.all()] == ["real"]
