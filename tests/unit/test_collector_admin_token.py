"""The admin token as an operator may give it: a binary file named by mistake, an environment holding bytes that
are not UTF-8, a token beyond ASCII. Each is a one-line usage error at start or a token that works, never a
traceback at start or a 500 on every admin request."""

from __future__ import annotations

from pathlib import Path

import pytest

from tamperscope.cli import main
from tamperscope.collector.admin import TokenError, check_token, usable_token
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import free_port, running_app


def test_a_token_file_that_is_not_text_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(b"\xff\xfe\x00binary, not a token\x89PNG\r\n")
    code = main(["serve", "--db", str(tmp_path / "t.duckdb"), "--port", str(free_port()),
                 "--admin-token-file", str(token_file), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "not UTF-8 text" in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_a_token_from_a_non_utf8_environment_is_refused_at_start() -> None:
    # os.environ hands such bytes over as lone surrogates (surrogateescape)
    with pytest.raises(TokenError, match="UTF-8"):
        usable_token(b"\xff-admin-token-of-the-lab".decode("utf-8", "surrogateescape"))


def test_a_token_of_several_lines_is_refused_at_start() -> None:
    with pytest.raises(TokenError, match="one line"):
        usable_token("first-admin-token-0123456789\nsecond-admin-token-0123456789")
    assert usable_token("  one-admin-token-0123456789\n") == "one-admin-token-0123456789"  # a file's last newline


def test_checking_against_such_a_token_answers_403_not_an_error() -> None:
    configured = b"\xff-admin-token-of-the-lab".decode("utf-8", "surrogateescape")
    assert check_token(configured, "Bearer something-else-entirely") == 403


def test_a_token_beyond_ascii_can_be_presented(tmp_path: Path) -> None:
    token = "pässwörd-für-die-admins-✓"
    assert usable_token(token) == token
    settings = Settings(db_path=tmp_path / "t.duckdb", announce=False, submit_rate=0, read_rate=0, admin_token=token)
    with running_app(settings) as c:
        # the header's bytes as a client sends them: UTF-8
        ok = c.post("/api/v1/admin/reanalyse", json={"stale": True},
                    headers=[(b"authorization", b"Bearer " + token.encode("utf-8"))])
        assert ok.status_code == 200, ok.text
        wrong = c.post("/api/v1/admin/reanalyse", json={"stale": True},
                       headers=[(b"authorization", b"Bearer " + token.encode("utf-8")[:-1])])
        assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"
