"""The lab's web farm makes a certificate for whatever SNI a client sends: a client sending random names must
not grow the farm's memory (one SSLContext per name) or its disk (one PEM file per name) for ever."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from tamperscope.lab import ca
from tamperscope.lab.ca import Issuer, create_ca


@pytest.fixture
def issuer(tmp_path: Path) -> Issuer:
    create_ca(tmp_path, "lab-ca", "tamperscope lab CA", "tamperscope lab")
    return Issuer(tmp_path, "lab-ca", tmp_path / "certs")


def test_random_snis_leave_no_file_and_a_bounded_cache(issuer: Issuer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ca, "MAX_CONTEXTS", 8)
    for i in range(30):
        assert isinstance(issuer.context(f"random-{i}.example"), ssl.SSLContext)
    assert len(issuer._contexts) <= 8
    assert list(issuer.cache_dir.iterdir()) == []  # nothing left behind, not even the scratch file
    again = issuer.context("random-29.example")
    assert again is issuer.context("random-29.example")  # kept while under the bound


def test_a_context_presents_the_names_certificate(issuer: Issuer, tmp_path: Path) -> None:
    """What the farm serves is unchanged: a handshake naming the SNI gets a certificate for it, from the CA."""
    import socket
    import threading

    server_ctx = issuer.sni_context("default.example")
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "lab-ca.pem"))
    a, b = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as s:
                s.recv(1)
        except (OSError, ssl.SSLError) as e:
            errors.append(e)

    t = threading.Thread(target=serve)
    t.start()
    with client_ctx.wrap_socket(b, server_hostname="news.example") as c:
        cert = c.getpeercert()
        c.send(b"x")
    t.join(5)
    assert not errors
    assert ("DNS", "news.example") in cert["subjectAltName"]
    assert [p.name for p in issuer.cache_dir.iterdir()] != []  # the default certificate's file stays
