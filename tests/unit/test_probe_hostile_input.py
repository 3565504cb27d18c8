"""`tamperscope run` with hostile input, from an audit: one line and exit 2 for a mistake, nothing the user
had is lost, consent before any contact, an error for one input never stops the others.

Offline: the nettests' `run` is replaced by a fake (no socket), the probe's own addresses are not looked up,
and `socket.getaddrinfo` records every call (a name resolved before consent is a failure). The cases that
could hang or eat memory if a fix were reverted run in a subprocess, with a timeout and a memory limit.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from tamperscope import cli, nettests
from tamperscope.nettests.base import NettestError
from tamperscope.probe import command, privacy

NAMES = nettests.names()


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def line(self) -> str:
        """stderr, which must be one line without a traceback."""
        assert "Traceback" not in self.err and len(self.err.strip().splitlines()) == 1, self.err
        return self.err.strip()


class Probe:
    """`tamperscope run` in this process, offline: fake nettests, every name resolution recorded."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
        self.dir = tmp_path / "work"
        self.dir.mkdir()
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.capfd = capfd
        self.mp = monkeypatch
        self.events: list[str] = []  # "resolve <what>", "consent", "measure <input>", in order
        self.raises: dict[str, Exception] = {}  # input -> what the fake nettest raises for it
        for k in list(os.environ):
            if k.startswith("TAMPERSCOPE_") or k == "XDG_CONFIG_HOME":
                monkeypatch.delenv(k)
        monkeypatch.setenv("HOME", str(self.home))
        monkeypatch.chdir(self.dir)
        real_getaddrinfo = socket.getaddrinfo

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            self.events.append(f"resolve {host}")
            if host in (None, "localhost", "127.0.0.1", "::1"):
                return real_getaddrinfo(host, *args, **kwargs)
            raise socket.gaierror(socket.EAI_NONAME, "offline test")

        def local_addresses(peers: Any) -> set[str]:
            self.events.append(f"resolve {sorted(peers)}")  # it connects UDP sockets to the helper's name
            return set()

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(privacy, "local_addresses", local_addresses)
        monkeypatch.setattr(command, "_matcher", lambda: None)
        monkeypatch.setattr(command, "_tune_gc", lambda: None)
        monkeypatch.setattr(command, "_system_resolver", lambda: "192.0.2.53")
        for name in NAMES:
            mod = nettests.load(name)
            monkeypatch.setattr(mod, "run", self._fake_run)
            monkeypatch.setattr(mod, "finish", lambda m, ctx: None)

    async def _fake_run(self, input: str | None, ctx: Any) -> dict[str, Any]:
        self.events.append(f"measure {input}")
        await asyncio.sleep(0.001)
        if input in self.raises:
            raise self.raises[input]
        return {"x_fake": True}

    @property
    def measured(self) -> list[str]:
        return [e.split(" ", 1)[1] for e in self.events if e.startswith("measure ")]

    @property
    def consent_file(self) -> Path:
        return self.home / ".config" / "tamperscope" / "consent.json"

    def main(self, *argv: str, stdin: io.StringIO | None = None) -> Result:
        self.capfd.readouterr()
        self.mp.setattr(sys, "stdin", stdin if stdin is not None else io.StringIO(""))
        code = cli.main(["run", *argv])
        out, err = self.capfd.readouterr()
        return Result(code, out, err)


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Probe:
    return Probe(tmp_path, monkeypatch, capfd)


def measurement(test_name: str, input: str) -> bytes:
    return orjson.dumps({"test_name": test_name, "input": input, "test_keys": {}})


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


# ---- 1. the output: never truncated nor appended to unless it holds measurements only


@pytest.mark.parametrize("content", [
    b"notes\nlast line",              # the user's notes: "last line" was cut
    b"x" * 3000,                      # no newline at all: was cut to 0 bytes
    b"http://a.com/\nhttp://b.com/",  # a URL list
    b'{"not": "a measurement"}\n',    # JSON, but no test_name
    b'[1, 2]\n',
])
def test_an_output_that_is_not_measurements_is_refused_untouched(probe: Probe, content: bytes) -> None:
    out = probe.dir / "n.txt"
    out.write_bytes(content)
    res = probe.main("web_connectivity", "--yes", "-i", "http://a.com/", "-o", str(out))
    assert res.code == 2 and str(out) in res.line and "not a JSON measurement" in res.line
    assert out.read_bytes() == content
    assert probe.measured == [] and not probe.consent_file.exists()


def test_output_naming_the_list_is_refused_and_the_list_kept(probe: Probe) -> None:
    lst = probe.dir / "l.txt"
    lst.write_bytes(b"http://a.com/\nhttp://b.com/")  # the last URL had no newline: it was cut
    res = probe.main("web_connectivity", "--yes", "-l", str(lst), "-o", str(lst))
    assert res.code == 2 and "is also a --list" in res.line
    assert lst.read_bytes() == b"http://a.com/\nhttp://b.com/" and probe.measured == []


def test_a_complete_last_measurement_without_newline_is_kept_and_skipped(probe: Probe) -> None:
    out = probe.dir / "m.jsonl"
    before = measurement("dnscheck", "a.com") + b"\n" + measurement("dnscheck", "b.com")  # no final newline
    out.write_bytes(before)
    res = probe.main("dnscheck", "--yes", "--no-progress", "-i", "a.com", "-i", "b.com", "-i", "c.com", "-o", str(out))
    assert res.code == 0, res.err
    assert out.read_bytes().startswith(before + b"\n")
    assert [m["input"] for m in lines(out)] == ["a.com", "b.com", "c.com"]
    assert probe.measured == ["c.com"] and "(2 already in" in res.err


def test_a_torn_last_measurement_is_cut_and_measured_again(probe: Probe) -> None:
    out = probe.dir / "m.jsonl"
    kept = measurement("dnscheck", "a.com") + b"\n"
    out.write_bytes(kept + b'{"test_name": "dnscheck", "inp')  # what a kill in mid-write leaves
    res = probe.main("dnscheck", "--yes", "--no-progress", "-i", "a.com", "-i", "b.com", "-o", str(out))
    assert res.code == 0, res.err
    assert out.read_bytes().startswith(kept) and [m["input"] for m in lines(out)] == ["a.com", "b.com"]
    assert probe.measured == ["b.com"]


def test_resume_reads_the_output_line_by_line(tmp_path: Path) -> None:
    """A 200 MiB output: the resume's memory must not grow with it (it read it whole, then split it: 2.2x)."""
    script = (
        "import resource, sys\n"
        "from tamperscope import cli\n"
        "from tamperscope.probe import command, privacy\n"
        "privacy.local_addresses = lambda peers: set()\n"
        "command._matcher = lambda: None\n"
        "command._system_resolver = lambda: '192.0.2.53'\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "code = cli.main(['run', 'dnscheck', '--yes', '--no-progress', '-i', 'a.com', '-o', sys.argv[1]])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(code, (after - before) // 1024)\n"
    )
    out = tmp_path / "big.jsonl"
    pad = "x" * (1 << 20)
    with open(out, "wb") as f:
        for i in range(199):
            f.write(orjson.dumps({"test_name": "web_connectivity", "input": f"http://{i}.example/", "pad": pad}) + b"\n")
        f.write(measurement("dnscheck", "a.com") + b"\n")  # nothing left to measure: only the resume runs
    try:
        res = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=120,
                             env=_clean_env(tmp_path), cwd=tmp_path)
    finally:
        out.unlink()  # pytest keeps the last runs' temporary directories
    code, grew_mib = map(int, res.stdout.split())
    assert code == 0, res.stderr
    assert grew_mib < 64, f"the resume took {grew_mib} MiB for a 200 MiB output"


# ---- 2. inputs checked before anything runs; an error while running stops nothing


@pytest.mark.parametrize("args,needle", [
    (["dnscheck", "-i", "a..b"], "not a domain name: 'a..b'"),
    (["dnscheck", "-i", ""], "not a domain name: ''"),
    (["throttling", "-i", "ftp://x/"], "not an http(s) URL"),
    (["tls_mitm", "-i", "https://x:99999/"], "'https://x:99999/'"),
    (["tls_mitm", "-i", "https://[::1/"], "'https://[::1/'"),
    (["http_invalid_request_line"], "needs an echo backend"),
    (["http_invalid_request_line", "--backend", "[::1"], "--backend must be"),
    (["http_header_field_manipulation", "--backend", "1.2.3.4:99999"], "--backend must be"),
    (["http_invalid_request_line", "-i", "1.2.3.4:99999"], "bad backend '1.2.3.4:99999'"),
    (["web_connectivity", "-i", "http://x.example/" + "a" * 9000], "a URL of 9,017 characters"),
])
def test_bad_input_is_one_line_before_anything_runs(probe: Probe, args: list[str], needle: str) -> None:
    res = probe.main(*args, "--yes", "-o", "out.jsonl")
    assert res.code == 2 and needle in res.line
    assert probe.measured == [] and not (probe.dir / "out.jsonl").exists() and not probe.consent_file.exists()


def test_a_bad_line_in_a_long_list_is_named_and_nothing_runs(probe: Probe) -> None:
    names = [f"site{i}.example" for i in range(400)]
    names[200] = "bad..name"
    (probe.dir / "l.txt").write_text("\n".join(names) + "\n")
    res = probe.main("dnscheck", "--yes", "-l", "l.txt", "-o", "out.jsonl")
    assert res.code == 2 and "l.txt: line 201: not a domain name: 'bad..name'" in res.line
    assert probe.measured == [] and not (probe.dir / "out.jsonl").exists()


def test_a_url_longer_than_a_collector_takes_in_a_list_is_named_and_nothing_runs(probe: Probe) -> None:
    # a 50 MiB URL was measured: its line passed 64 MiB, and the output could no longer be resumed nor analysed
    urls = [f"http://site{i}.example/" for i in range(10)]
    urls[4] = "http://x.example/" + "a" * (50 << 20)
    (probe.dir / "l.txt").write_text("\n".join(urls) + "\n")
    res = probe.main("web_connectivity", "--yes", "-l", "l.txt", "-o", "out.jsonl")
    assert res.code == 2 and "l.txt: entry 5 (line 5): a URL of 52,428,817 characters" in res.line, res.err[:300]
    assert len(res.line) < 300 and probe.measured == [] and not (probe.dir / "out.jsonl").exists()
    urls[4] = "http://x.example/" + "a" * (8192 - 17)  # at the limit: taken
    (probe.dir / "l.txt").write_text("\n".join(urls) + "\n")
    assert probe.main("web_connectivity", "--yes", "--no-progress", "-l", "l.txt", "-o", "out.jsonl").code == 0


def test_an_input_failing_while_measuring_stops_nothing_and_is_tried_again(probe: Probe) -> None:
    names = [f"site{i}.example" for i in range(30)]
    probe.raises = {"site7.example": NettestError("cannot run as asked"), "site20.example": KeyError("oops")}
    args = ["dnscheck", "--yes", "--no-progress", "-p", "4", "-o", "out.jsonl"] + [a for n in names for a in ("-i", n)]
    res = probe.main(*args)
    assert res.code == 1 and "Traceback" not in res.err, res.err
    assert "not measured: 'site7.example': cannot run as asked" in res.err
    assert "not measured: 'site20.example': internal error (KeyError" in res.err
    assert "2 input(s) could not be measured" in res.err
    written = [m["input"] for m in lines(probe.dir / "out.jsonl")]
    assert sorted(written) == sorted(set(names) - {"site7.example", "site20.example"})
    # the failures were not recorded as done: the same command measures exactly them again
    probe.events.clear()
    probe.raises = {}
    res = probe.main(*args)
    assert res.code == 0, res.err
    assert sorted(probe.measured) == ["site20.example", "site7.example"]
    assert sorted(m["input"] for m in lines(probe.dir / "out.jsonl")) == sorted(names)


# ---- 3. a CA bundle that holds no certificate


@pytest.mark.parametrize("nettest,target", [("web_connectivity", "https://a.com/"), ("tls_mitm", "a.com")])
def test_a_garbage_ca_bundle_is_refused_at_start(probe: Probe, nettest: str, target: str) -> None:
    (probe.dir / "garbage.pem").write_text("garbage")
    res = probe.main(nettest, "--yes", "-i", target, "--ca-bundle", "garbage.pem", "-o", "out.jsonl")
    assert res.code == 2 and "CA bundle garbage.pem holds no usable certificate" in res.line
    assert probe.measured == [] and not (probe.dir / "out.jsonl").exists()


# ---- 4. consent before any contact, a DNS lookup included


class _Terminal(io.StringIO):
    def __init__(self, answer: str, events: list[str]) -> None:
        super().__init__(answer)
        self.events = events

    def isatty(self) -> bool:
        return True

    def readline(self, *args: Any) -> str:
        self.events.append("consent")
        return super().readline(*args)


HELPER = "https://th.example.org/"


def test_without_consent_nothing_is_resolved(probe: Probe) -> None:
    res = probe.main("web_connectivity", "-i", "http://a.com/", "--helper", HELPER, "-o", "out.jsonl")
    assert res.code == 2 and "needs your informed consent" in res.line
    assert probe.events == []  # the helper's name was resolved before the question
    assert not (probe.dir / "out.jsonl").exists() and not probe.consent_file.exists()


def test_consent_is_asked_first_and_names_what_will_be_contacted(probe: Probe) -> None:
    res = probe.main("web_connectivity", "-i", "http://a.com/", "--helper", HELPER, "-o", "out.jsonl",
                     stdin=_Terminal("no\n", probe.events))
    assert res.code == 2 and "consent not given" in res.err
    assert probe.events == ["consent"]
    assert "This run would contact:" in res.err and HELPER in res.err and "http://a.com/" in res.err
    res = probe.main("web_connectivity", "--no-progress", "-i", "http://a.com/", "--helper", HELPER,
                     "-o", "out.jsonl", stdin=_Terminal("yes\n", probe.events))
    assert res.code == 0, res.err
    assert probe.events[1] == "consent" and probe.events[2].startswith("resolve")  # resolved after, not before
    assert probe.consent_file.exists() and probe.measured == ["http://a.com/"]


# ---- 5. more tracebacks


@pytest.mark.parametrize("args,needle", [
    (["--timeout", "nan"], "--timeout must be more than 0"),
    (["--timeout", "inf"], "--timeout must be more than 0"),
    (["--helper", "https://[::1/"], "--helper must be an http(s) URL"),
    (["--submit", "http://[::1/"], "--submit must be a collector's http(s) URL"),
])
def test_malformed_values_are_one_line(probe: Probe, args: list[str], needle: str) -> None:
    res = probe.main("web_connectivity", "--yes", "-i", "http://a.com/", "-o", "out.jsonl", *args)
    assert res.code == 2 and needle in res.line
    assert probe.measured == [] and not (probe.dir / "out.jsonl").exists()


def test_dev_null_as_output(probe: Probe) -> None:
    res = probe.main("dnscheck", "--yes", "--no-progress", "-i", "a.com", "-o", "/dev/null")
    assert res.code == 0 and "Traceback" not in res.err, res.err  # os.fsync(/dev/null) raised EINVAL
    assert probe.measured == ["a.com"]


def test_capture_without_cap_net_raw_is_refused_first(probe: Probe, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(command, "_has_cap_net_raw", lambda: False)
    res = probe.main("dnscheck", "--yes", "-i", "a.com", "--capture", "-o", "out.jsonl")
    assert res.code == 2 and "--capture needs the CAP_NET_RAW capability" in res.line
    assert not (probe.dir / "out.jsonl").exists() and not probe.consent_file.exists() and probe.measured == []


def test_yes_in_an_unrecordable_home_runs_and_says_nothing_of_recording(probe: Probe,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """--yes is consent for its run only: nothing is written, so nothing can fail to be (the prompt's own
    unrecordable consent is test_consent_record.py's)."""
    home = probe.dir / "home-is-a-file"
    home.write_text("")
    monkeypatch.setenv("HOME", str(home))  # ~/.config cannot be made
    res = probe.main("dnscheck", "--yes", "--no-progress", "-i", "a.com", "-o", "out.jsonl")
    assert res.code == 0 and "Traceback" not in res.err, res.err
    assert "could not be recorded" not in res.err and home.read_text() == ""
    assert [m["input"] for m in lines(probe.dir / "out.jsonl")] == ["a.com"]


# ---- 6. outputs and files that never end


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMPERSCOPE_") and k != "XDG_CONFIG_HOME"}
    env["HOME"] = str(tmp_path / "home")
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


# The CLI with fake nettests, in a process of its own: a reverted fix hangs or reads without end there,
# under a timeout and a 4 GiB address-space limit, instead of in the test run.
DRIVER = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from tamperscope import cli, nettests
from tamperscope.probe import command, privacy
privacy.local_addresses = lambda peers: set()
command._matcher = lambda: None
command._system_resolver = lambda: "192.0.2.53"
async def run(input, ctx):
    return {"x_fake": True}
for name in nettests.names():
    mod = nettests.load(name)
    mod.run = run
    mod.finish = lambda m, ctx: None
sys.exit(cli.main(["run", *sys.argv[1:]]))
"""


def driver(tmp_path: Path, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-c", DRIVER, *args], capture_output=True, text=True,
                          timeout=60, env=_clean_env(tmp_path), cwd=tmp_path)


def test_dev_stdout_into_a_pipe_does_not_hang(tmp_path: Path) -> None:
    res = driver(tmp_path, "dnscheck", "--yes", "--no-progress", "-i", "a.com", "-o", "/dev/stdout")
    assert res.returncode == 0, res.stderr
    assert [orjson.loads(x)["input"] for x in res.stdout.splitlines()] == ["a.com"]


def test_dev_full_is_one_line_exit_1(tmp_path: Path) -> None:
    res = driver(tmp_path, "dnscheck", "--yes", "--no-progress", "-i", "a.com", "-o", "/dev/full")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines()[-1] == "tamperscope: cannot write /dev/full: No space left on device"


@pytest.mark.parametrize("args,needle", [
    (["-l", "/dev/zero"], "list /dev/zero is larger than 64 MiB"),
    (["-i", "a.com", "--asn-table", "/dev/zero"], "ASN table /dev/zero is larger than 256 MiB"),
])
def test_endless_files_are_read_with_a_bound(tmp_path: Path, args: list[str], needle: str) -> None:
    res = driver(tmp_path, "dnscheck", "--yes", "-o", "out.jsonl", *args)
    assert res.returncode == 2 and needle in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_capture_as_root_without_the_capability(tmp_path: Path) -> None:
    res = driver(tmp_path, "dnscheck", "--yes", "-i", "a.com", "--capture", "-o", "out.jsonl",
                 prefix=("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"))
    assert res.returncode == 2 and "CAP_NET_RAW" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "out.jsonl").exists()


# ---- 7. settings checked at start, so no failure is recorded as done


@pytest.mark.parametrize("args,needle", [
    (["--timeout", "-10"], "--timeout must be more than 0"),
    (["--timeout", "0"], "--timeout must be more than 0"),
    (["--helper", "http://x:99999/"], "--helper must be an http(s) URL"),
    (["--helper", "http://"], "--helper must be an http(s) URL"),
    (["--helper", "http://a b/"], "--helper must be an http(s) URL"),
    (["--doh", "notaurl"], "--doh must be"),
    (["--silent-resolver", "notip"], "--silent-resolver must be an IP address"),
    (["--backend", "http://a b/"], "--backend must be"),
    (["--submit", "http://a b/"], "--submit must be"),
    (["--submit", "http://x:abc/"], "--submit must be"),
    (["--resolver", ""], "--resolver must be an IP address, not ''"),
    # a query sent nowhere was published as the resolver's NXDOMAIN
    (["--resolver", "fe80::1%nosuchif0"], "names an interface this machine does not have ('nosuchif0')"),
    (["--resolver", "2001:db8::1%lo"], "a zone (%lo) goes only with a link-local address"),
    (["--resolver", "0.0.0.0"], "it is no host's (unspecified)"),
    (["--resolver", "::"], "it is no host's (unspecified)"),
    (["--resolver", "224.0.0.1"], "it is a multicast group's"),
    (["--silent-resolver", "ff02::1"], "it is a multicast group's"),
    (["--resolver", "255.255.255.255"], "it is the broadcast address"),
])
def test_bad_settings_are_refused_at_start(probe: Probe, args: list[str], needle: str) -> None:
    res = probe.main("dnscheck", "--yes", "-i", "a.com", "-o", "out.jsonl", *args)
    assert res.code == 2 and needle in res.line
    assert probe.measured == [] and not (probe.dir / "out.jsonl").exists() and not probe.consent_file.exists()


def test_bad_settings_from_the_environment_are_named(probe: Probe, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAMPERSCOPE_HELPER", "http://a b/")
    res = probe.main("web_connectivity", "--yes", "-i", "http://a.com/", "-o", "out.jsonl")
    assert res.code == 2 and "$TAMPERSCOPE_HELPER must be an http(s) URL" in res.line


# ---- 8. metadata


@pytest.mark.parametrize("args,needle", [
    (["--cc", "AUT"], "--cc must be a two-letter country code"),  # was recorded as AU: Australia
    (["--cc", "12"], "--cc must be"),
    (["--cc", "I"], "--cc must be"),
    (["--cc", "Ü"], "--cc must be"),
    (["--cc", "X Y"], "--cc must be"),
    (["--asn=-5"], "--asn must be an AS number"),
    (["--asn", "99999999999999"], "--asn must be an AS number"),
    (["--asn", "4294967296"], "--asn must be an AS number"),
    (["--asn", "0"], "--asn must be an AS number"),
])
def test_bad_metadata_is_refused(probe: Probe, args: list[str], needle: str) -> None:
    res = probe.main("dnscheck", "--yes", "-i", "a.com", "-o", "out.jsonl", *args)
    assert res.code == 2 and needle in res.line and probe.measured == []


@pytest.mark.parametrize("cc,asn,want_cc,want_asn", [
    ("at", "AS1234", "AT", 1234), ("BR", "1234", "BR", 1234), ("de", "as4294967295", "DE", 4294967295),
])
def test_good_metadata_is_recorded(probe: Probe, cc: str, asn: str, want_cc: str, want_asn: int) -> None:
    res = probe.main("dnscheck", "--yes", "--no-progress", "-i", "a.com", "-o", "out.jsonl", "--cc", cc, "--asn", asn)
    assert res.code == 0, res.err
    m = lines(probe.dir / "out.jsonl")[0]
    assert m["probe_cc"] == want_cc and m["probe_asn"] == f"AS{want_asn}"
    assert f"_{want_cc}_{want_asn}_" in m["report_id"]


# ---- 9. `-o -`, and --capture checked before anything is made


def test_dash_output_is_standard_output(probe: Probe) -> None:
    res = probe.main("dnscheck", "--yes", "--no-progress", "--summary", "-i", "a.com", "-i", "b.com", "-o", "-")
    assert res.code == 0, res.err
    assert sorted(orjson.loads(x)["input"] for x in res.out.splitlines()) == ["a.com", "b.com"]  # JSON lines only
    assert "mechanism" in res.err  # the summary table goes to stderr then
    assert not (probe.dir / "-").exists()


def test_capture_without_root_is_refused_before_output_and_consent(probe: Probe,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    res = probe.main("dnscheck", "--yes", "-i", "a.com", "--capture", "-o", "out.jsonl")
    assert res.code == 2 and "--capture needs root" in res.line
    assert not (probe.dir / "out.jsonl").exists() and not probe.consent_file.exists()


@pytest.mark.parametrize("content", [
    b'{"my": "notes", "todo": [1,2',       # the user's JSON, one line without a newline: was cut and replaced
    b'{"x":"' + b"a" * 100_000,             # a long one
    b'\n\n{"test_name": "dnscheck", "inp',  # blank lines are no measurement
])
def test_one_unparsable_line_with_no_measurement_before_it_is_refused_untouched(probe: Probe, content: bytes) -> None:
    out = probe.dir / "notes.json"
    out.write_bytes(content)
    res = probe.main("dnscheck", "--yes", "-i", "a.com", "-o", str(out))
    assert res.code == 2 and str(out) in res.line and "not a JSON measurement" in res.line, res.err
    assert out.read_bytes() == content
    assert probe.measured == []


@pytest.mark.parametrize("torn", [b"{", b'{"annotations":{"engi', b'{"annotations":{"engine_name":"tamperscope","pl'])
def test_a_first_measurement_torn_as_the_probe_writes_it_is_cut(probe: Probe, torn: bytes) -> None:
    out = probe.dir / "m.jsonl"
    out.write_bytes(torn)  # a kill in the middle of the first write
    res = probe.main("dnscheck", "--yes", "--no-progress", "-i", "a.com", "-o", str(out))
    assert res.code == 0, res.err
    assert [m["input"] for m in lines(out)] == ["a.com"] and probe.measured == ["a.com"]


def test_an_output_another_run_is_writing_is_refused_untouched(probe: Probe) -> None:
    """QA: two runs on one output, half a second apart, measured 62 of 66 inputs twice (the second's within the
    censor's hold, read as IP blocking). The run writing it holds a lock; another refuses, in one line, and
    measures nothing."""
    import fcntl

    out = probe.dir / "out.jsonl"
    out.write_bytes(measurement("dnscheck", "a.com") + b"\n")
    before = out.read_bytes()
    with open(out, "ab") as first:  # the other run
        fcntl.flock(first.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        res = probe.main("dnscheck", "--yes", "--no-progress", "-i", "b.com", "-o", str(out))
    assert res.code == 2 and "is being written by another run" in res.err and res.err.count("\n") == 1, res.err
    assert out.read_bytes() == before and probe.measured == []
    # once that run is over, the same command goes on where it left off
    res = probe.main("dnscheck", "--yes", "--no-progress", "-i", "b.com", "-o", str(out))
    assert res.code == 0, res.err
    assert [m["input"] for m in lines(out)] == ["a.com", "b.com"]


def test_an_interrupted_run_says_what_is_kept_and_how_to_go_on(probe: Probe) -> None:
    """QA: Ctrl-C said only "interrupted". A run's measurements are written as they are made: it says they are
    kept and that the same command measures the rest, which it does."""
    out = probe.dir / "out.jsonl"
    probe.raises["b.com"] = KeyboardInterrupt()
    res = probe.main("dnscheck", "--yes", "--no-progress", "--parallel", "1", "-i", "a.com", "-i", "b.com",
                     "-o", str(out))
    assert res.code == 130, res.err
    assert res.err.endswith("tamperscope: interrupted: the measurements written are kept, and the same command "
                            "measures the rest\n"), res.err
    assert [m["input"] for m in lines(out)] == ["a.com"]
    del probe.raises["b.com"]
    assert probe.main("dnscheck", "--yes", "--no-progress", "-i", "a.com", "-i", "b.com", "-o", str(out)).code == 0
    assert [m["input"] for m in lines(out)] == ["a.com", "b.com"]
