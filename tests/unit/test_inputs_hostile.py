"""Hostile and sloppy inputs: URLs and test lists (model/inputs.py, used by `run`, `locate` and the lab's
`expect`), and `tamperscope locate`'s URL, options and consent. Bad input is refused in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tamperscope.model.inputs import BadInput, check_host, listen_host, normal_url, parse_url, read_url_list

TS = [sys.executable, "-m", "tamperscope"]


@pytest.mark.parametrize("url,needle", [
    ("http://x:0/", "port 0"),
    ("http://%zz/", "bad host name"),
    ("http://-/", "bad host name"),
    ("http://a-.com/", "bad host name"),
    ("http://.com/", "bad host name"),
    ("http://a..com/", "bad host name"),
    ("http://1.2.3.4.5/", "bad IPv4 address"),
    ("http://999.1.1.1/", "bad IPv4 address"),
    ("http://1.2.3/", "bad IPv4 address"),
    ("http://[fe80::1%25eth0]/", "bad host name"),
    ("http://" + "a" * 64 + ".com/", "bad host name"),
    ("http://user:pw@x.com/", "user name or password"),
    ("http://user@x.com/", "user name or password"),
    ("http://x.com/a\x7fb", "control characters"),
    ("http://x.com:65536/", "malformed URL"),
])
def test_broken_urls_are_refused_in_one_line(url: str, needle: str) -> None:
    with pytest.raises(BadInput) as e:
        parse_url(url)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_credentials_are_not_repeated_in_a_way_that_hides_the_reason() -> None:
    with pytest.raises(BadInput, match="would be published"):
        normal_url("https://alice:secret@example.com/")


@pytest.mark.parametrize("url,normal", [
    ("http://x.com/\n", "http://x.com/"),
    ("  http://x.com/ \t", "http://x.com/"),
    ("http://a.com", "http://a.com/"),
    ("http://a.com?q=1", "http://a.com/?q=1"),
    ("https://a.com:8443#top", "https://a.com:8443/#top"),
    ("http://a.com/b", "http://a.com/b"),
    ("http://1.2.3.4", "http://1.2.3.4/"),
    ("http://[::1]:8080", "http://[::1]:8080/"),
    ("http://яндекс.рф", "http://яндекс.рф/"),
    ("http://xn--d1acpjx3f.xn--p1ai/", "http://xn--d1acpjx3f.xn--p1ai/"),
    ("http://_dmarc.example.com/", "http://_dmarc.example.com/"),
])
def test_the_recorded_form_of_a_url(url: str, normal: str) -> None:
    assert normal_url(url) == normal


def test_hosts_and_listening_addresses() -> None:
    assert check_host("1.2.3.4") == "1.2.3.4"
    assert check_host("2001:DB8:0::1") == "2001:db8::1"
    assert check_host("Example.COM.") == "example.com"
    assert listen_host("[::1]") == "::1" and listen_host("::") == "::" and listen_host("localhost") == "localhost"
    for bad in ("", " ", "[]", "999.1.1.1", "a b", "-x"):
        with pytest.raises(BadInput):
            listen_host(bad)


def test_a_citizen_lab_header_in_capitals_and_a_byte_order_mark() -> None:
    for text in ("URL,CATEGORY_CODE\nhttp://a.com/,NEWS\n", "\ufeffurl,category_code\nhttp://a.com/,NEWS\n",
                 '\ufeff"Url","Category_Code"\r\n"http://a.com/","NEWS"\r\n'):
        entries = read_url_list(text, "l.csv")
        assert [(e.url, e.category_code) for e in entries] == [("http://a.com/", "NEWS")], text
    assert [e.url for e in read_url_list("\ufeffhttp://a.com/\n")] == ["http://a.com/"]


@pytest.mark.parametrize("text,needle", [
    ('url,category_code\nhttp://b.com/,X\n"http://a.com/,NEWS\n', "l.csv: line 3: not valid CSV: a quote opened here"),
    ('url,category_code\n# note\n\n"http://a.com/,NEWS\nhttp://c.com/,X\n', "l.csv: line 4: not valid CSV"),
    ('url,category_code\n"http://a.com/"x,NEWS\n', "l.csv: line 2: not valid CSV"),
    ("url,category_code\nhttp://a.com/,X\n,NEWS\n", "l.csv: line 3: no url"),
    ("url,category_code\nhttp://ok.org/,NEWS\n\nftp://bad.org/,NEWS\n", "l.csv: entry 2 (line 4): not an http(s) URL"),
    ("url,category_code\n", "l.csv: no URLs in it"),
])
def test_broken_lists_name_the_line(text: str, needle: str) -> None:
    with pytest.raises(BadInput) as e:
        read_url_list(text, "l.csv")
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_url_with_and_without_its_slash_is_one_input() -> None:
    text = "url,category_code\nhttp://a.com,NEWS\nhttp://a.com/,GMB\n http://a.com/ ,X\nhttp://b.com/x,\n"
    entries = read_url_list(text)
    assert [(e.url, e.category_code) for e in entries] == [("http://a.com/", "NEWS"), ("http://b.com/x", None)]
    assert [e.url for e in read_url_list("http://a.com\nhttp://a.com/\n")] == ["http://a.com/"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMPERSCOPE_")}
    env.update(HOME=str(cwd), XDG_CONFIG_HOME=str(cwd / "config"))
    return subprocess.run([*TS, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


@pytest.mark.parametrize("url", ["http://x:0/", "http://%zz/", "http://1.2.3.4.5/", "http://.com/",
                                 "http://user:pw@x.com/"])
def test_run_refuses_them_before_anything(tmp_path: Path, url: str) -> None:
    res = _cli("run", "web_connectivity", "-i", url, "-o", "out.jsonl", "--yes", cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "config").exists()


# -- locate: root, in an empty network namespace of its own ------------------------------------------

NETNS = os.geteuid() == 0 and bool(shutil.which("unshare")) and bool(shutil.which("ip"))
needs_netns = pytest.mark.skipif(not NETNS, reason="needs root, unshare and ip (a network namespace)")


def _locate(tmp_path: Path, *args: str, web: int | None = None, prefix: str = "") -> subprocess.CompletedProcess[str]:
    """`tamperscope locate ARGS` in a fresh network namespace with only loopback (no route anywhere), and
    with a web server on 127.0.0.1:`web` if asked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMPERSCOPE_")}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHONPATH=os.pathsep.join(sys.path))
    argv = " ".join(f"'{a}'" for a in [*TS, "locate", *args])
    # until the web server listens (its backlog takes the connection from then on), not a fixed second
    server = (f"{sys.executable} -m http.server -b 127.0.0.1 {web} >/dev/null 2>&1 & web=$!; "
              f"for i in $(seq 400); do ss -ltnH | grep -q ':{web} ' && break; sleep 0.25; done;" if web
              else "web=;")
    script = f"ip link set lo up; {server} {prefix} {argv} < /dev/null; rc=$?; [ -n \"$web\" ] && kill $web; exit $rc"
    return subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, env=env,
                          timeout=120)


@needs_netns
def test_locate_asks_for_consent_before_contacting_anything(tmp_path: Path) -> None:
    res = _locate(tmp_path, "http://a.com/")
    assert res.returncode == 2 and "informed consent" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "config").exists()


@needs_netns
@pytest.mark.parametrize("args,needle", [
    (["http://[::1]/"], "IPv4 only"),
    (["http://1.2.3.4/", "--layer", "dns"], "--layer dns needs a host name"),
    (["http://x:0/"], "port 0"),
    (["http://a.com/", "--resolver", "notip"], "--resolver must be an IPv4 address"),
    (["http://a.com/", "--spread", "1.2.3.4", "x"], "--spread must be an IPv4 address"),
    (["http://a.com/", "--wait", "nan"], "--wait must be"),
    (["http://a.com/", "--control", "bad host"], "--control"),
])
def test_locate_refuses_bad_options_in_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    res = _locate(tmp_path, *args, "--yes")
    assert res.returncode == 2 and needle in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


@needs_netns
@pytest.mark.parametrize("url", ["http://a.com/", "http://1.2.3.4/"])
def test_locate_without_a_route_says_so_in_one_line(tmp_path: Path, url: str) -> None:
    res = _locate(tmp_path, url, "--layer", "dns" if url == "http://a.com/" else "auto", "--yes")
    assert res.returncode == 1 and "Network is unreachable" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert "cannot resolve" not in res.stderr  # an address is not sent to DNS


@needs_netns
@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv")
def test_locate_without_raw_sockets_says_so_in_one_line(tmp_path: Path) -> None:
    res = _locate(tmp_path, "http://1.2.3.4/", "--yes", prefix="setpriv --bounding-set=-all --inh-caps=-all")
    assert res.returncode == 2 and "CAP_NET_RAW" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@needs_netns
def test_locate_uses_an_ip_literal_as_the_server(tmp_path: Path) -> None:
    res = _locate(tmp_path, "http://127.0.0.1:18931", "--yes", "--json", "--runs", "1", "--max-ttl", "2",
                  "--wait", "0.1", web=18931)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["address"] == "127.0.0.1" and out["url"] == "http://127.0.0.1:18931/"
    assert not (tmp_path / "config" / "tamperscope" / "consent.json").exists()  # --yes is for this run only
