"""Hostile input to `tamperscope lab`: profiles and lists that are not what they claim, refused in one line.

Profiles are shared files that the lab loads as root and whose regexes the censor runs over hostile
traffic; lists may be anything a user points at. Each case here once hung, ate memory, printed a
traceback or was silently accepted. No lab is needed: the CLI runs as `lab expect`, or the parser is
called directly.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tamperscope.lab import blockpages, command, manager
from tamperscope.lab.manager import LabError
from tamperscope.model.profile import ProfileError, load_profile, parse_profile

# `lab` commands look for (and clean) stale lab namespaces: never beside another test
pytestmark = pytest.mark.serial

TS = [sys.executable, "-m", "tamperscope"]
RULE = "[[rule]]\nid = 'r'\nlayer = 'http'\naction = 'rst'\n"


def _limited() -> None:
    # a CLI that reads /dev/zero whole fails here with a MemoryError instead of filling the machine
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TS, *args], capture_output=True, text=True, timeout=30, cwd=cwd, preexec_fn=_limited)


def _one_line(res: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    err = res.stderr
    assert res.returncode == code, err[-2000:]
    assert err.startswith("tamperscope: ") and err.count("\n") == 1 and needle in err, err[-2000:]
    assert res.stdout == ""


def _write(tmp_path: Path, text: str) -> Path:
    urls = tmp_path / "urls.txt"
    urls.write_text(text)
    return urls


def _expect(tmp_path: Path, profile: str, list_text: str = "http://a.org/\n") -> subprocess.CompletedProcess[str]:
    return _cli("lab", "expect", "--profile", profile, "--list", str(_write(tmp_path, list_text)))


def _load(tmp_path: Path, text: str) -> ProfileError:
    p = tmp_path / "p.toml"
    p.write_text(text)
    with pytest.raises(ProfileError) as e:
        load_profile(p, blockpages.names())
    msg = str(e.value)
    assert msg.startswith(f"{p}: ") and "\n" not in msg, msg
    return e.value


# -- the profile file -------------------------------------------------------------------------------


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_a_fifo_profile_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    """`lab up` would read it once, and the censor and the servers would then wait for ever to read it again."""
    fifo = tmp_path / "p.toml"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    _one_line(_expect(tmp_path, str(fifo)), 2, f"{fifo}: is not a regular file")
    assert time.monotonic() - t0 < 20


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null"])
def test_a_device_profile_is_refused(tmp_path: Path, path: str) -> None:
    _one_line(_expect(tmp_path, path), 2, f"{path}: is not a regular file")


def test_a_directory_profile_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d.toml").mkdir()
    _one_line(_expect(tmp_path, str(tmp_path / "d.toml")), 2, f"{tmp_path / 'd.toml'}: is a directory, not a profile")


def test_a_huge_profile_is_refused_before_it_is_read_whole(tmp_path: Path) -> None:
    p = tmp_path / "huge.toml"
    with open(p, "wb") as f:
        f.truncate(200 << 20)  # sparse: 200 MiB of NULs that cost no disk
    _one_line(_expect(tmp_path, str(p)), 2, f"{p}: is larger than 4 MiB")


def test_binary_garbage_is_named_as_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "p.toml"
    p.write_bytes(b"name = 'x'\n\xff\xfe\x00garbage")
    _one_line(_expect(tmp_path, str(p)), 2, f"{p}: not UTF-8 text (byte 11 is 0xff)")


@pytest.mark.parametrize("spec,needle", [
    ("a" * 5000, "no built-in profile or file 'aaaa"),  # ENAMETOOLONG: was a traceback
    ("", "no built-in profile or file ''"),  # was taken for the current directory
])
def test_a_profile_name_that_is_no_file(tmp_path: Path, spec: str, needle: str) -> None:
    _one_line(_expect(tmp_path, spec), 2, needle)


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
@pytest.mark.parametrize("text", [
    "x = " + "[" * 100_000 + "]" * 100_000 + "\n",  # was a RecursionError traceback
    "x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n",
    "a" + ".a" * 20_000 + " = 1\n",  # tomllib: quadratic in the parts (50 000: 10 GB, 45 s)
    "[" + "a." * 20_000 + "a]\n",
    '"a"' + '."a"' * 20_000 + " = 1\n",
])
def test_deep_nesting_is_refused_before_tomllib_sees_it(tmp_path: Path, text: str) -> None:
    t0 = time.monotonic()
    err = _load(tmp_path, text)
    assert "nest more than 16 deep" in str(err)
    assert time.monotonic() - t0 < 2


def test_deep_nesting_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "deep.toml"
    p.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    _one_line(_expect(tmp_path, str(p)), 2, f"{p}: not a profile: arrays, tables or dotted keys nest more than 16 deep")


@pytest.mark.parametrize("text", [
    'description = "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t"\n',
    'description = """\nx.y.z.a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q = 1\n[[[[[[[[[[[[[[[[[[[[\n"""\n',
    "description = '''a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t'''\n",
    'description = """a\\"""b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s"""\n',
    "# [[[[[[[[[[[[[[[[[[ a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s\n",
    RULE + "regex = '" + "\\.a" * 20 + "'\n",
])
def test_dots_and_brackets_inside_strings_and_comments_do_not_count(tmp_path: Path, text: str) -> None:
    p = tmp_path / "p.toml"
    p.write_text(text)
    load_profile(p, blockpages.names())


# -- values -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("regex,needle", [
    ("(" * 2000 + ")" * 2000, "regex: invalid regular expression: nested too deeply"),  # was a RecursionError
    ("a{4294967296}", "regex: invalid regular expression: the repetition number is too large"),  # OverflowError
])
def test_a_regex_that_python_cannot_compile_is_one_line(tmp_path: Path, regex: str, needle: str) -> None:
    assert needle in str(_load(tmp_path, RULE + f"regex = '{regex}'\n"))


def _refused(p: Path, regex: str) -> str:
    """The one-line refusal (exit 2) of a profile whose one rule has ``regex``."""
    p.write_text(RULE + f"regex = '{regex}'\n")
    with pytest.raises(LabError) as e:
        manager.resolve_profile(str(p))
    msg = str(e.value)
    assert e.value.exit_code == 2 and "\n" not in msg
    return msg


@pytest.mark.parametrize("regex", ["(a+)+$", "(a|aa)+$", "^(\\\\w+\\\\s?)*$", ".*.*=.*"])
def test_a_regex_that_backtracks_exponentially_is_refused(tmp_path: Path, regex: str) -> None:
    """The censor runs it on every Host, SNI and DNS name: `(a+)+$` on a 40-letter name never returns."""
    p = tmp_path / "redos.toml"
    msg = _refused(p, regex)
    assert msg.startswith(f"{p}: rule[0] (r).regex: may backtrack exponentially on a crafted name"), msg


def test_a_redos_profile_on_the_command_line_does_not_hang(tmp_path: Path) -> None:
    p = tmp_path / "redos.toml"
    p.write_text(RULE + "regex = '(a+)+$'\n")
    _one_line(_expect(tmp_path, str(p), "http://" + "a" * 40 + "_x.org/\n"), 2, "regex: may backtrack exponentially")


@pytest.mark.parametrize("regex", [".*a.*a.*a.*a.*c", ".*a.*a.*c", "[a-z]+x[a-z]+y[a-z]+z"])
def test_a_regex_that_backtracks_polynomially_is_refused(tmp_path: Path, regex: str) -> None:
    """`.*a.*a.*a.*a.*c` passed: on a Host of 130 a's the censor searched for seconds per packet, and every
    connection of the lab timed out behind it (QA)."""
    p = tmp_path / "slow.toml"
    msg = _refused(p, regex)
    assert msg.startswith(f"{p}: rule[0] (r).regex: may backtrack for minutes on a crafted name ("), msg
    assert "unbounded quantifiers, like .*a.*a.*c); use two at most" in msg
    p.write_text(RULE + "regex = '.*x.*'\n")  # two: n**2 at most over a name of 253 characters
    assert manager.resolve_profile(str(p)).rules[0].regex == ".*x.*"


@pytest.mark.wallclock  # bounds a search's time
def test_a_regex_is_run_over_the_first_253_characters_of_a_name(tmp_path: Path) -> None:
    p = tmp_path / "two.toml"
    p.write_text(RULE + "regex = '.*a.*c'\n")
    rule = manager.resolve_profile(str(p)).rules[0]
    assert rule.matches_name("a" * 250 + "c") and not rule.matches_name("a" * 253 + "c")
    started = time.perf_counter()
    assert not rule.matches_name("a" * 5_000)  # 4 ms over the first 253; over all 5,000, about 30 s
    assert time.perf_counter() - started < 5


def test_safe_regexes_still_load() -> None:
    for name in ("tm-like", "gfw-like"):
        assert any(r.regex for r in manager.resolve_profile(name).rules)


@pytest.mark.parametrize("domain,needle", [
    ("*.x.org", "no wildcards; use suffix = true"),  # silently matched nothing
    ("*", "no wildcards"),
    ("-", "not a domain name: '-'"),
    ("a" * 64 + ".org", "not a domain name"),  # a label is at most 63 letters
    ("a..org", "not a domain name"),
    ("-x.org", "not a domain name"),
    ("8.8.8.8", "'8.8.8.8' is an address, not a domain name"),  # the censor never looks for it as an address
    ("198.19.0.10", "is an address"),
    ("::1", "not a domain name"),
])
def test_domains_that_are_not_domain_names(tmp_path: Path, domain: str, needle: str) -> None:
    for layer in ("http", "ip"):
        rule = f"[[rule]]\nid = 'r'\nlayer = '{layer}'\naction = 'rst'\ndomains = ['{domain}']\n"
        assert needle in str(_load(tmp_path, rule)), (layer, domain)


def test_valid_domains_still_load(tmp_path: Path) -> None:
    p = tmp_path / "p.toml"
    p.write_text(RULE + "domains = ['Example.ORG.', '_dmarc.x.org', 'xn--d1acpjx3f.xn--p1ai', 'a-b.c0m']\n")
    assert load_profile(p, blockpages.names()).rules[0].domains == ("example.org", "_dmarc.x.org",
                                                                    "xn--d1acpjx3f.xn--p1ai", "a-b.c0m")


@pytest.mark.parametrize("page", ["a\\u0000b", "a" * 5000])
def test_a_blockpage_path_the_os_refuses_is_one_line(tmp_path: Path, page: str) -> None:
    rule = "[[rule]]\nid = 'r'\nlayer = 'http'\naction = 'blockpage'\ndomains = ['x.org']\n"
    assert "blockpage: no built-in page or file" in str(_load(tmp_path, rule + f'blockpage = "{page}"\n'))


@pytest.mark.parametrize("value", ["a\\u0000b", "a\\u001bb", "a\\u007fb", "a\\rb"])
def test_proxy_header_values_hold_no_control_characters(tmp_path: Path, value: str) -> None:
    err = _load(tmp_path, f'[proxy]\nadd_headers = {{X-A = "{value}"}}\n')
    assert "proxy.add_headers.X-A: must not contain line breaks or control characters" in str(err)


def test_the_name_is_one_line(tmp_path: Path) -> None:
    """`lab up` and `lab status` print it inside their one line."""
    assert "name: must be one line" in str(_load(tmp_path, 'name = "a\\nb"\n'))


@pytest.mark.wallclock  # bounds wall-clock time: not among the low-priority tests (scripts/test.sh)
def test_many_regex_rules_are_compiled_once() -> None:
    """Past re's 512-pattern cache every name the censor saw recompiled every regex (10 000 rules, 1000 URLs:
    `lab expect` took minutes)."""
    rule = "[[rule]]\nid = 'r{0}'\nlayer = 'http'\naction = 'rst'\nregex = '^x{0}\\.'\n"
    text = "".join(rule.format(i) for i in range(1000))
    profile = parse_profile(text, source="many.toml", base=Path("."), builtin_pages=blockpages.names())
    t0 = time.monotonic()
    for n in range(300):
        assert profile.first_match("http", f"site{n}.org") is None
    assert time.monotonic() - t0 < 1.5


# -- the list ---------------------------------------------------------------------------------------


def test_a_list_from_dev_zero_is_bounded(tmp_path: Path) -> None:
    res = _cli("lab", "expect", "--profile", "none", "--list", "/dev/zero")
    _one_line(res, 2, "list /dev/zero is larger than 64 MiB")


@pytest.mark.parametrize("make,needle", [
    (lambda d: d / "missing.txt", "cannot read list {}: FileNotFoundError: No such file or directory"),
    (lambda d: (d / "dir").mkdir() or d / "dir", "cannot read list {}: IsADirectoryError"),
    (lambda d: (d / "l.txt").write_bytes(b"http://a.org/\n\xff\n") and d / "l.txt",
     "cannot read list {}: not UTF-8 text (byte 14 is 0xff, line 2)"),
])
def test_an_unreadable_list_is_one_line(tmp_path: Path, make, needle: str) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path)
    _one_line(_cli("lab", "expect", "--profile", "none", "--list", str(path)), 2, needle.format(path))


@pytest.mark.parametrize("text,needle", [
    ("http://a.org/\nhttp://b\0.org/\n", "entry 2 (line 2): malformed URL"),
    ("foo,bar\nhttp://a.org/\n", "entry 1 (line 1): not an http(s) URL: 'foo,bar'"),
    ("url\n\"http://a.org/\n", "line 2: not valid CSV"),
])
def test_a_malformed_list_names_the_entry(tmp_path: Path, text: str, needle: str) -> None:
    urls = _write(tmp_path, text)
    _one_line(_cli("lab", "expect", "--profile", "none", "--list", str(urls)), 2, f"{urls}: {needle}")


def test_a_list_may_still_come_from_a_pipe(fifo) -> None:  # type: ignore[no-untyped-def]
    """Bounded, not refused: `--list <(grep … list.csv)` works as it does for `tamperscope run`."""
    res = _cli("lab", "expect", "--profile", "tm-like", "--list", str(fifo(b"http://bbc.com/\n")))
    assert res.returncode == 0, res.stderr
    assert res.stdout == "url,blocking,mechanism\nhttp://bbc.com/,http-failure,http.rst\n"


# -- lab exec, and the lab's own state ----------------------------------------------------------------


def test_exec_refuses_a_program_it_cannot_run() -> None:
    """As env(1) does, 127 and 126, in one line: `ip netns exec` said it its own way, with exit 1."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    with pytest.raises(LabError) as e:
        command._check_program("no-such-program-ts", env)
    assert e.value.exit_code == 127 and str(e.value) == "lab exec: no program 'no-such-program-ts' on the PATH"
    with pytest.raises(LabError) as e:
        command._check_program("/etc/passwd", env)
    assert e.value.exit_code == 126 and str(e.value) == "lab exec: /etc/passwd is not an executable program"
    command._check_program("sh", env)
    command._check_program(sys.executable, env)


@pytest.mark.parametrize("text", ['"x"', "[1]", '{"status": "up", "pids": [1]}', '{"status": "up", "pids": {"c": "x"}}',
                                  '{"status": "up", "pids": {"c": true}}', '{"status": "up", "pids": {"c": 1}}'])
def test_a_damaged_state_file_reads_as_no_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(manager, "PATHS", manager.Paths(tmp_path))
    (tmp_path / "state.json").write_text(text)
    assert manager.read_state() is None
    assert manager.is_up() is False
    assert manager.status()["up"] is False


def test_a_reused_pid_is_not_taken_for_the_lab() -> None:
    """After a crash, a pid of the old lab may name someone's session leader: `down` killed its group."""
    with subprocess.Popen(["sleep", "30"], start_new_session=True) as other:
        try:
            assert not manager._ours(other.pid)
            assert not manager._ours(os.getpid())
        finally:
            other.kill()


# -- what `lab expect` predicts for unusual but valid URLs ----------------------------------------------


def test_an_ipv6_url_under_a_cidr_rule_is_predicted_not_raised(tmp_path: Path) -> None:
    p = tmp_path / "cidr.toml"
    p.write_text("[[rule]]\nid = 'c'\nlayer = 'ip'\naction = 'drop'\ncidrs = ['198.19.0.0/16']\n")
    res = _cli("lab", "expect", "--profile", str(p), "--list", str(_write(tmp_path, "http://[::1]/\nhttp://198.19.0.5/\n")))
    assert res.returncode == 0, res.stderr[-2000:]  # was an AddressValueError traceback
    assert res.stdout == "url,blocking,mechanism\nhttp://[::1]/,false,none\nhttp://198.19.0.5/,tcp_ip,tcp.drop\n"


def test_an_idn_url_is_matched_in_the_form_the_probe_sends() -> None:
    """The probe looks up, and sends as SNI and Host, the IDNA form: the censor sees xn--…, so must `expect`."""
    from tamperscope.lab.expect import expect_url

    p = parse_profile("[[rule]]\nid = 'c'\nlayer = 'dns'\naction = 'nxdomain'\ndomains = ['xn--d1acpjx3f.xn--p1ai']\n",
                      source="idn.toml", base=Path("."), builtin_pages=blockpages.names())
    for url in ("http://яндекс.рф/", "http://xn--d1acpjx3f.xn--p1ai/"):
        e = expect_url(p, url)
        assert (e.blocking, e.mechanism, e.rule) == ("dns", "dns.nxdomain", "c"), url
