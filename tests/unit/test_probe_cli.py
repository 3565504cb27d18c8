"""Bad input to `tamperscope run`: one line, exit 2, nothing half-written; consent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TS = [sys.executable, "-m", "tamperscope"]


def cli(*args: str, cwd: Path, env_extra: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMPERSCOPE_")}
    env["XDG_CONFIG_HOME"] = str(cwd / "config")
    env.update(env_extra or {})
    return subprocess.run([*TS, *args], capture_output=True, text=True, cwd=cwd, env=env, input=stdin, timeout=60)


@pytest.mark.parametrize("args,needle", [
    (["run", "no_such_test", "-i", "http://x.org/"], "unknown nettest 'no_such_test'"),
    (["run", "web_connectivity", "-i", "htp:/broken"], "not an http(s) URL"),
    (["run", "web_connectivity", "-i", "http://exa mple.com/"], "malformed URL"),
    (["run", "web_connectivity", "-i", "http://[::1/"], "malformed URL"),
    (["run", "web_connectivity", "--list", "missing.csv"], "cannot read list missing.csv"),
    (["run", "web_connectivity"], "needs --input or --list"),
    (["run", "web_connectivity", "-i", "http://x.org/", "--parallel", "0"], "--parallel"),
    (["run", "web_connectivity", "-i", "http://x.org/", "--resolver", "not-an-ip"], "--resolver must be an IP"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path: Path, args: list[str], needle: str) -> None:
    res = cli(*args, "-o", "out.jsonl", "--yes", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr and res.stderr.strip().count("\n") == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "out.jsonl").exists()
    assert not (tmp_path / "config").exists()  # no consent recorded either: nothing ran


def test_bad_list_entry_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("url,category_code\nhttp://ok.org/,NEWS\nftp://bad.org/,NEWS\n")
    res = cli("run", "web_connectivity", "--list", "l.csv", "-o", "out.jsonl", "--yes", cwd=tmp_path)
    assert res.returncode == 2 and "l.csv: entry 2" in res.stderr and not (tmp_path / "out.jsonl").exists()
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage")
    res = cli("run", "web_connectivity", "--list", "bin.csv", "-o", "out.jsonl", "--yes", cwd=tmp_path)
    assert res.returncode == 2 and "cannot read list" in res.stderr


def test_consent_needed_without_a_terminal(tmp_path: Path) -> None:
    res = cli("run", "web_connectivity", "-i", "http://127.0.0.1:9/", "-o", "out.jsonl", "--resolver", "127.0.0.1",
              cwd=tmp_path)
    assert res.returncode == 2 and "informed consent" in res.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_every_command_has_help(tmp_path: Path) -> None:
    for cmd in (["run"], ["helper"], ["lab"], ["lab", "up"], ["lab", "expect"], ["demo"]):
        res = cli(*cmd, "--help", cwd=tmp_path)
        assert res.returncode == 0 and len(res.stdout) > 200, cmd


@pytest.mark.parametrize("args,needle", [
    (["demo", "--serve-seconds", "5"], "go with --serve"),
    (["demo", "--db", "x.duckdb"], "go with --serve"),
    (["demo", "--serve", "--serve-seconds", "0"], "--serve-seconds must be more than 0"),
    (["demo", "--serve", "--port", "70000"], "--port must be between"),
    (["run", "web_connectivity", "-i", "http://x.org/", "--outbox", "o"], "--outbox goes with --submit"),
    (["run", "web_connectivity", "-i", "http://x.org/", "--submit", "http://127.0.0.1:1/?x=1"],
     "without a query or fragment"),
    (["run", "web_connectivity", "-i", "http://x.org/", "--submit", "http://127.0.0.1:1/#f"],
     "without a query or fragment"),
    (["run", "web_connectivity", "-i", "http://x.org/", "--submit", "http://127.0.0.1:1/?"],
     "without a query or fragment"),
    (["run", "web_connectivity", "-i", "http://x.org/", "--submit", "http://127.0.0.1:1/", "--submit-timeout", "0"],
     "--submit-timeout"),
])
def test_demo_and_submit_options_are_checked_first(tmp_path: Path, args: list[str], needle: str) -> None:
    res = cli(*args, "--yes" if args[0] == "run" else "--profile", *([] if args[0] == "run" else ["tm-like"]),
              cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not list(tmp_path.glob("*.jsonl"))


def test_demo_serve_refuses_a_taken_port_before_measuring(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = cli("demo", "--serve", "--port", str(port), cwd=tmp_path)
    assert res.returncode == 2 and f"port {port} on 127.0.0.1 is taken" in res.stderr


def test_a_collector_url_in_capitals_is_taken_as_written_in_lower_case() -> None:
    """HTTP://… passed the check, then every upload refused it ("must start with http://"): kept for ever."""
    from tamperscope.cli import build_parser
    from tamperscope.probe import command

    args = build_parser().parse_args(["run", "web_connectivity", "-i", "http://x.org/",
                                              "--submit", "HTTPS://Collector.example:8443/base"])
    assert command._submit_url(args) == "https://Collector.example:8443/base"
