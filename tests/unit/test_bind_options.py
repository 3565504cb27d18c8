"""Where `tamperscope helper` and `tamperscope serve` listen, and with what: an empty --host is not
"every interface" by accident, a port is 1-65535, numbers are finite, files are read before starting,
and a failure to listen is said in one line with its real reason."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tamperscope.collector.server import ServeError, _url_host, listen
from tamperscope.helper import server as helper

TS = [sys.executable, "-m", "tamperscope"]
NETNS = os.geteuid() == 0 and bool(shutil.which("unshare")) and bool(shutil.which("ip"))
needs_netns = pytest.mark.skipif(not NETNS, reason="needs root, unshare and ip (a network namespace)")


def helper_args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    helper.add_arguments(p)
    return p.parse_args(list(argv))


@pytest.mark.parametrize("argv,needle", [
    (["--host", ""], "--host: empty address"),
    (["--host", "999.1.1.1"], "--host: bad IPv4 address"),
    (["--host", "a b"], "--host: bad host name"),
    (["--port", "99999"], "--port must be between 1 and 65535"),
    (["--port", "65536"], "--port must be between 1 and 65535"),
    (["--port", "0"], "--port must be between 1 and 65535"),
    (["--port", "-1"], "--port must be between 1 and 65535"),
    (["--resolver", "notip"], "--resolver must be an IP address"),
    (["--max-inflight", "0"], "--max-inflight must be between 1"),
    (["--timeout", "nan"], "--timeout must be more than 0"),
    (["--timeout", "inf"], "--timeout must be more than 0"),
    (["--timeout", "0"], "--timeout must be more than 0"),
    (["--ca-bundle", "/nonexistent/ca.pem"], "cannot read CA bundle"),
])
def test_helper_options_are_checked_before_starting(argv: list[str], needle: str) -> None:
    with pytest.raises(helper.BadOption) as e:
        helper.check_options(helper_args(*argv))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_helper_ca_bundle_must_hold_a_certificate(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(helper.BadOption, match="holds no certificate"):
        helper.check_options(helper_args("--ca-bundle", str(junk)))


def test_helper_addresses_are_normalised() -> None:
    for given, host in (("[::1]", "::1"), ("::1", "::1"), ("0.0.0.0", "0.0.0.0"), ("::", "::"),
                        ("localhost", "localhost")):
        args = helper_args("--host", given, "--resolver", "2001:DB8::53")
        helper.check_options(args)
        assert args.host == host and args.resolver == "2001:db8::53"


def test_helper_says_why_it_cannot_listen() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(helper.BadOption, match=f"cannot listen on 127.0.0.1:{port}: the port is in use"):
            asyncio.run(helper.serve_forever(helper_args("--port", str(port))))


def test_serve_says_why_it_cannot_listen() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}: the port is in use"):
            listen("127.0.0.1", port)
    with pytest.raises(ServeError, match="192.0.2.1 is not an address of this machine"):
        listen("192.0.2.1", port)
    socks = listen("127.0.0.1", port)  # free again
    try:
        assert [s.getsockname() for s in socks] == [("127.0.0.1", port)]
    finally:
        for s in socks:
            s.close()


def test_the_url_printed_for_every_interface() -> None:
    assert _url_host("0.0.0.0") == "127.0.0.1" and _url_host("::") == "[::1]" and _url_host("::1") == "[::1]"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMPERSCOPE_")}
    env["HOME"] = str(cwd)
    return subprocess.run([*TS, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


@pytest.mark.parametrize("argv,needle", [
    (["--host", ""], "--host: empty address"),
    (["--host", "999.1.1.1"], "--host: bad IPv4 address"),
    (["--port", "0"], "--port must be between 1 and 65535"),
    (["--rate", "nan"], "must be numbers"),
    (["--burst", "inf"], "must be numbers"),
    (["--read-rate", "nan"], "must be numbers"),
    (["--max-body-mib", "nan"], "must be numbers"),
    (["--public-url", "ftp://explorer.example.org"], "--public-url: "),
    (["--public-url", ""], "--public-url: empty URL"),
    (["--public-url", "https://explorer.example.org/explorer/"], "--public-url must be an origin"),
    (["--public-url", "https://explorer.example.org/?x=1"], "--public-url must be an origin"),
    (["--public-url", "https://explorer.example.org/#top"], "--public-url must be an origin"),
    (["--public-url", "https://me:secret@explorer.example.org"], "--public-url: "),
])
def test_serve_options_are_checked_before_starting(tmp_path: Path, argv: list[str], needle: str) -> None:
    res = _cli("serve", "--db", str(tmp_path / "s.duckdb"), *argv, cwd=tmp_path)
    assert res.returncode == 2 and needle in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "s.duckdb").exists()


@pytest.mark.parametrize("argv,needle", [
    (["--host", ""], "--host: empty address"),
    (["--port", "99999"], "--port must be between 1 and 65535"),
    (["--resolver", "notip"], "--resolver must be an IP address"),
    (["--asn-table", "/nonexistent"], "cannot read ASN table"),
    (["--asn-table", "/dev/zero"], "ASN table /dev/zero is larger than 256 MiB"),  # read to its bound, not forever
    (["--asn-table", sys.executable], "not UTF-8 text (byte "),  # a program: bytes, not text
])
def test_helper_command_refuses_in_one_line(tmp_path: Path, argv: list[str], needle: str) -> None:
    # as `tamperscope helper`, and as the lab starts it: `python -m tamperscope.helper.server`
    for res in (_cli("helper", *argv, cwd=tmp_path),
                subprocess.run([sys.executable, "-m", "tamperscope.helper.server", *argv], capture_output=True,
                               text=True, timeout=60)):
        assert res.returncode == 2 and needle in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def _in_netns(script: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMPERSCOPE_")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up; " + script], capture_output=True,
                          text=True, env=env, timeout=120)


@needs_netns
def test_a_name_that_does_not_resolve_is_said_so(tmp_path: Path) -> None:
    ts = " ".join(TS)
    res = _in_netns(f"{ts} helper --host nosuch.invalid; echo rc=$?; "
                    f"{ts} serve --db {tmp_path / 's.duckdb'} --host nosuch.invalid; echo rc=$?")
    lines = res.stderr.strip().splitlines()
    assert res.stdout.split() == ["rc=2", "rc=2"], res.stderr
    assert len(lines) == 2 and all("cannot listen on nosuch.invalid:8080: nosuch.invalid does not resolve" in ln
                                   for ln in lines), lines


@needs_netns
def test_every_interface_only_when_asked_and_said(tmp_path: Path) -> None:
    ts = " ".join(TS)
    err = tmp_path / "err"
    err.touch()  # before the loop reads it, which may be before either server has started
    res = _in_netns(f"{ts} helper --host :: --port 18941 2>>{err} & h=$!; "
                    f"{ts} serve --db {tmp_path / 's.duckdb'} --host 0.0.0.0 --port 18942 2>>{err} & s=$!; "
                    # until each has said where it listens: `serve` binds, then opens its store and says so, which
                    # on a loaded machine took more than the second once waited here after both sockets listened
                    f"for i in $(seq 400); do [ $(grep -c listening {err}) -ge 2 ] && break; sleep 0.25; done; "
                    f"ss -ltnH; kill $h $s; wait; cat {err} >&2")
    assert "listening on http://[::]:18941/ (every IPv6 interface)" in res.stderr, res.stderr
    assert "at http://127.0.0.1:18942/ (listening on 0.0.0.0:18942 (every IPv4 interface)" in res.stderr
    listening = {line.split()[3] for line in res.stdout.splitlines()}
    assert listening == {"[::]:18941", "0.0.0.0:18942"}, res.stdout
