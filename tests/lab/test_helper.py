"""The control helper (`tamperscope helper`) speaks OONI's test-helper protocol: the lab's, and one we start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tamperscope.lab import addresses as A
from tamperscope.lab import manager

from .conftest import in_client, wait_listening

pytestmark = pytest.mark.lab

POST = '''
import json, socket, sys
def post(host, port, body, extra=b""):
    s = socket.create_connection((host, port), 30)
    s.sendall(b"POST / HTTP/1.1\\r\\nHost: h\\r\\nContent-Type: application/json\\r\\nConnection: close\\r\\n"
              + extra + b"Content-Length: %d\\r\\n\\r\\n" % len(body) + body)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, _, payload = data.partition(b"\\r\\n\\r\\n")
    return int(head.split()[1]), json.loads(payload)
def too_big(host, port):
    s = socket.create_connection((host, port), 30)
    s.sendall(b"POST / HTTP/1.1\\r\\nHost: h\\r\\nContent-Length: 2000000\\r\\n\\r\\n")
    return int(s.recv(65536).split()[1])
'''


def control(url: str, endpoints: list[str]) -> bytes:
    return json.dumps({"http_request": url, "tcp_connect": endpoints,
                       "http_request_headers": {"Accept": ["*/*"]}}).encode()


def test_lab_helper_answers_the_ooni_protocol(lab_factory) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory("tm-like")
    site = lab.addr("example.org")
    other = "198.19.1.250"  # an address the probe "resolved" and the helper did not
    body = control("https://example.org/", [f"{site}:443", f"{site}:9", f"{other}:443"])
    out = in_client(POST + f"print(json.dumps(post({A.HELPER!r}, {A.HELPER_PORT}, {body!r})))")
    status, resp = json.loads(out)
    assert status == 200
    # the helper sits outside the censor: its view is the uncensored one
    assert resp["dns"] == {"failure": None, "addrs": [site]}
    assert resp["tcp_connect"][f"{site}:443"] == {"status": True, "failure": None}
    assert resp["tcp_connect"][f"{site}:9"] == {"status": False, "failure": "connection_refused"}
    tls = resp["tls_handshake"][f"{site}:443"]
    assert tls["status"] is True and tls["server_name"] == "example.org" and tls["failure"] is None
    http = resp["http_request"]
    assert http["status_code"] == 200 and http["failure"] is None and http["body_length"] > 0 and http["title"]
    info = resp["ip_info"][site]
    assert info["asn"] > 0  # from the lab's iptoasn table
    # resolved by the probe (1) and by the helper (2), a bogon range (4: the lab lives in 198.18.0.0/15),
    # and valid for the domain over TLS (8)
    assert info["flags"] == 1 | 2 | 4 | 8
    assert resp["ip_info"][other]["flags"] & (1 | 2) == 1


def test_lab_helper_reaches_the_lab_and_nothing_internal_beyond_it(lab_factory) -> None:  # type: ignore[no-untyped-def]
    """The lab starts its helper with --allow-net 198.18.0.0/15: lab sites are measured, while the helper's own
    machine (its port on loopback, the address it listens on but through 127/8) and private addresses are not
    connected to for a client, directly or by a fetch."""
    lab = lab_factory("none")
    site = lab.addr("example.org")
    own = f"127.0.0.1:{A.HELPER_PORT}"
    body = control(f"http://127.0.0.1:{A.HELPER_PORT}/health", [f"{site}:80", own, "10.0.0.1:80", "[::1]:80"])
    out = in_client(POST + f"print(json.dumps(post({A.HELPER!r}, {A.HELPER_PORT}, {body!r})))")
    status, resp = json.loads(out)
    assert status == 200
    assert resp["tcp_connect"] == {f"{site}:80": {"status": True, "failure": None}}
    assert resp["http_request"]["failure"] == "dns_bogon_error" and resp["http_request"]["status_code"] == -1


def test_helper_refuses_above_max_inflight_and_bad_requests(lab_factory) -> None:  # type: ignore[no-untyped-def]
    lab_factory("none")
    port = 18282
    proc = subprocess.Popen(manager.exec_argv([sys.executable, "-m", "tamperscope", "helper", "--host", "127.0.0.1",
                                               "--port", str(port), "--max-inflight", "1", "--timeout", "4",
                                               "--allow-net", "127.0.0.0/8"]),  # its slow server is on loopback
                            env=manager.client_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_listening(port)
        fast = control("http://example.org/", [])
        # a server that accepts and never answers: the helper's fetch waits, so it stays busy
        code = POST + f'''
import threading, time
mute = socket.socket(); mute.bind(("127.0.0.1", 0)); mute.listen(8)
mp = mute.getsockname()[1]
slow = json.dumps({{"http_request": f"http://127.0.0.1:{{mp}}/", "tcp_connect": [],
                   "http_request_headers": {{}}}}).encode()
first = {{}}
t = threading.Thread(target=lambda: first.update(r=post("127.0.0.1", {port}, slow)))
t.start(); time.sleep(0.5)
busy = post("127.0.0.1", {port}, {fast!r})
t.join()
bad = post("127.0.0.1", {port}, b"not json")
big = too_big("127.0.0.1", {port})
print(json.dumps([first["r"][0], busy[0], bad[0], big]))
'''
        first, busy, bad, big = json.loads(in_client(code, timeout=120))
        assert busy == 503, "a second request while one is in flight must be refused (--max-inflight 1)"
        assert first == 200 and bad == 400 and big == 413
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
