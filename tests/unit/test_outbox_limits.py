"""The outbox's limits, on real sockets on 127.0.0.1: a cap on what pending/ holds (measurements past it are
not queued, they stay in the run's output file; the run says so in one line), and a collector whose TLS
certificate does not verify stops a flush at once instead of being retried until its deadline."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tamperscope import nettests
from tamperscope.collector import samples
from tamperscope.collector.testing import closed_port
from tamperscope.model import failures as F
from tamperscope.probe import command
from tamperscope.probe.outbox import CERTIFICATE_FAILURES, DEFAULT_MAX_BYTES, Outbox

try:
    from . import test_netx_servers as srv
    from . import test_outbox as real
    from . import test_outbox_hostile as hostile
    from . import test_probe_cli as probe_cli
    from . import test_probe_hostile_input as offline
except ImportError:  # run as a top-level module
    import test_netx_servers as srv  # type: ignore[no-redef]
    import test_outbox as real  # type: ignore[no-redef]
    import test_outbox_hostile as hostile  # type: ignore[no-redef]
    import test_probe_cli as probe_cli  # type: ignore[no-redef]
    import test_probe_hostile_input as offline  # type: ignore[no-redef]

probe = offline.probe  # the offline `tamperscope run` fixture (fake nettests, names resolved only for loopback)
Probe = offline.Probe
FAST = hostile.FAST
OK = hostile.http(200, b'{"measurement_uid": "u"}')


def sizes(ms: list[dict[str, Any]]) -> list[int]:
    """What each measurement takes in pending/ (stored as its JSON, byte for byte)."""
    return [len(orjson.dumps(m)) for m in ms]


def on_disk(box: Outbox) -> int:
    return sum(p.stat().st_size for p in box.pending())


# ---- the cap


def test_the_cap_refuses_the_measurement_that_would_cross_it(tmp_path: Path) -> None:
    ms = list(samples.corpus(4, seed="cap"))
    n = sizes(ms)
    box = Outbox(tmp_path / "box", durable=False, max_bytes=sum(n[:3]) + n[3] - 1)
    assert box.max_bytes == sum(n[:3]) + n[3] - 1 and box.pending_bytes == 0 and box.refused_full == 0
    assert all(box.add(m) is not None for m in ms[:3])
    assert box.pending_bytes == sum(n[:3]) == on_disk(box)
    assert box.add(ms[3]) is None  # one byte too many: not written, counted, no exception
    assert box.refused_full == 1 and len(box) == 3 and box.pending_bytes == sum(n[:3]) == on_disk(box)
    assert not list((tmp_path / "box" / "pending").glob(".tmp-*"))
    small = {"test_name": "dnscheck", "input": "a.com"}  # one that fits in what is left is still queued
    assert box.add(small) is not None and len(box) == 4
    assert box.pending_bytes == sum(n[:3]) + len(orjson.dumps(small)) == on_disk(box)
    assert box.add(orjson.dumps(ms[3])) is None and box.refused_full == 2  # as bytes, likewise


def test_a_measurement_that_fills_the_cap_exactly_is_queued(tmp_path: Path) -> None:
    ms = list(samples.corpus(2, seed="exact"))
    box = Outbox(tmp_path / "box", durable=False, max_bytes=sum(sizes(ms)))
    assert all(box.add(m) is not None for m in ms) and box.refused_full == 0
    assert box.pending_bytes == box.max_bytes and box.add({"x": 1}) is None


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "1G", None])
def test_the_cap_is_a_positive_number_of_bytes(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        Outbox(tmp_path / "box", max_bytes=bad)
    assert Outbox(tmp_path / "box").max_bytes == DEFAULT_MAX_BYTES == 1 << 30


def test_sizes_stay_right_after_a_flush_deletes_entries(tmp_path: Path) -> None:
    """Sent entries leave the count (adds fit again), and so do entries set aside as refused."""
    ms = list(samples.corpus(6, seed="flush-cap"))
    n = sizes(ms)
    box = Outbox(tmp_path / "box", durable=False, max_bytes=sum(n[:4]))
    for m in ms:
        box.add(m)
    assert len(box) == 4 and box.refused_full == 2 and box.pending_bytes == sum(n[:4])

    async def go() -> None:
        async with real.collector(tmp_path / "c.duckdb") as (url, flaky):
            result = await box.flush(url, timeout=30, backoff=FAST)
            assert result.done and result.sent == 4 and await real.settled(flaky) == 4
            assert len(box) == 0 and box.pending_bytes == 0
            assert all(box.add(m) is not None for m in ms[:4]) and box.refused_full == 2  # room again
            assert box.pending_bytes == sum(n[:4]) == on_disk(box) and box.add(ms[4]) is None
        refusal = hostile.http(400, b'{"error": "invalid", "detail": "probe_cc"}')
        async with hostile.server(hostile.collector(refusal)) as (url, _):
            result = await box.flush(url, timeout=5, backoff=FAST)
        assert result.rejected == 4 and len(box) == 0 and box.pending_bytes == 0

    real.run(go)


def test_a_reopened_outbox_computes_the_pending_size_from_disk(tmp_path: Path) -> None:
    ms = list(samples.corpus(4, seed="reopen"))
    first = Outbox(tmp_path / "box", durable=False)
    for m in ms:
        first.add(m)
    pending = tmp_path / "box" / "pending"
    (pending / "00-a-directory.json").mkdir()  # damaged entries a flush reports: not measurements
    (pending / ".tmp-interrupted.json").write_bytes(b'{"half' * 100)  # an add() killed before its rename
    (pending / "notes.txt").write_bytes(b"x" * 1000)
    before = sorted(p.name for p in pending.iterdir())
    box = Outbox(tmp_path / "box", durable=False, max_bytes=sum(sizes(ms)) + 10)
    assert box.pending_bytes == sum(sizes(ms)) == sum(p.stat().st_size for p in pending.glob("0*-*.json")
                                                      if p.is_file())
    assert box.add({"test_name": "too big", "input": "x" * 20}) is None and box.refused_full == 1
    # a cap below what is already pending refuses every add and deletes nothing
    low = Outbox(tmp_path / "box", durable=False, max_bytes=100)
    assert low.add({"x": 1}) is None and low.pending_bytes == sum(sizes(ms)) and low.refused_full == 1
    assert sorted(p.name for p in pending.iterdir()) == [n for n in before if not n.startswith(".tmp-")]


def test_a_flush_counts_what_another_process_added(tmp_path: Path) -> None:
    """Two outboxes on one directory (two runs): a flush recounts, so the cap holds what the other added."""
    ms = list(samples.corpus(3, seed="two"))
    n = sizes(ms)
    mine = Outbox(tmp_path / "box", durable=False, max_bytes=sum(n))
    other = Outbox(tmp_path / "box", durable=False)
    other.add(ms[0])
    other.add(ms[1])

    async def go() -> None:
        async with hostile.server(hostile.collector(OK, opened=hostile.http(503))) as (url, _):
            result = await mine.flush(url, timeout=0.3, request_timeout=0.3, backoff=FAST)
        assert result.remaining == 2 and mine.pending_bytes == n[0] + n[1] == on_disk(mine)

    hostile.run(go)
    assert mine.add(ms[2]) is not None and mine.add({"x": 1}) is None


# ---- --outbox-max


@pytest.mark.parametrize("given, size", [
    ("1048576", 1048576), ("500M", 500 << 20), ("2G", 2 << 30), ("2g", 2 << 30), ("512K", 512 << 10),
    ("1.5G", 3 << 29), ("100MB", 100 << 20), ("2GiB", 2 << 30), ("1T", 1 << 40), (" 3 M ", 3 << 20), ("7B", 7),
])
def test_outbox_max_sizes(given: str, size: int) -> None:
    assert command._outbox_max(given) == size


@pytest.mark.parametrize("given", ["0", "0M", "-1", "-5G", "abc", "", "1.5.5G", "10X", "5 GB GB", "nan", "inf",
                                   "1e9", "0x10", "2000T", "99999999999999999999", "0.0000001K", "½G", "１G"])
def test_bad_outbox_max_is_one_line_exit_2(probe: Probe, given: str) -> None:
    res = probe.main("dnscheck", "--yes", "-i", "a.com", "-o", "out.jsonl", "--submit", "http://127.0.0.1:9/",
                     "--outbox", "box", f"--outbox-max={given}")
    assert res.code == 2 and "--outbox-max must be a size such as 500M" in res.line and repr(given) in res.line
    assert probe.measured == [] and not (probe.dir / "out.jsonl").exists() and not (probe.dir / "box").exists()
    assert not probe.consent_file.exists()


def test_outbox_max_goes_with_submit(tmp_path: Path) -> None:
    """Through the real command line, as the other probe CLI checks are."""
    res = probe_cli.cli("run", "dnscheck", "-i", "a.com", "--outbox-max", "1G", "-o", "out.jsonl", "--yes",
                        cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "--outbox-max goes with --submit URL" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.stderr and not (tmp_path / "out.jsonl").exists()
    res = probe_cli.cli("run", "dnscheck", "-i", "a.com", "--submit", "http://127.0.0.1:9/", "--outbox-max", "lots",
                        "-o", "out.jsonl", "--yes", cwd=tmp_path)
    assert res.returncode == 2 and "--outbox-max must be" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_a_full_outbox_is_said_once_and_the_output_keeps_everything(probe: Probe,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`tamperscope run --submit` with a small --outbox-max and a collector that is down: the measurements that
    do not fit are not queued, the output file holds every one, and the run says so once while measuring (it
    lasts past the uploader's first look) and once at the end."""
    names = [f"site{i}.example" for i in range(25)]
    res = _to_a_collector_that_is_down(probe, monkeypatch, names, 0.15)
    written = offline.lines(probe.dir / "out.jsonl")
    assert sorted(m["input"] for m in written) == sorted(names)
    box = Outbox(probe.dir / "box", durable=False)
    queued = [orjson.loads(p.read_bytes())["input"] for p in box.pending()]
    assert 0 < len(queued) < len(names) and box.pending_bytes <= 3 << 10
    during = [line for line in res.err.splitlines() if "is full (" in line]
    end = [line for line in res.err.splitlines() if "not queued for submission because" in line]
    assert len(during) == 1 and len(end) == 1, res.err
    assert during[0].startswith("tamperscope: the outbox box is full (") and "cap 3.0 KiB)" in during[0]
    assert during[0].endswith("they remain in out.jsonl")
    assert end[0].startswith(f"tamperscope: {len(names) - len(queued)} measurement(s) not queued")
    assert "the outbox box was full (cap 3.0 KiB" in end[0] and end[0].endswith("they remain in out.jsonl")
    assert "connection_refused" in res.err  # the collector is down: what was queued waits for the next run


def test_the_outbox_filling_while_the_collector_is_down_is_said_while_measuring(probe: Probe,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The uploader's look at the outbox came before each of its uploads, and an upload to a collector that is down
    retries for up to 30 s: an outbox that filled after the first look was said only at the end (in CI, under
    load, the test above saw so). The watch is on its own now."""
    # 0.5 s each: the outbox fills after the fifth or sixth, past the uploader's first look (2 s)
    res = _to_a_collector_that_is_down(probe, monkeypatch, [f"late{i}.example" for i in range(10)], 0.5)
    during = [line for line in res.err.splitlines() if "is full (" in line]
    assert len(during) == 1 and during[0].startswith("tamperscope: the outbox box is full ("), res.err
    assert res.err.index(during[0]) < res.err.index("tamperscope: submitted 0 measurement(s)"), res.err


def _to_a_collector_that_is_down(probe: Probe, monkeypatch: pytest.MonkeyPatch, names: list[str],
                                 seconds: float) -> Any:
    """`tamperscope run dnscheck` on ``names``, one at a time, each taking ``seconds`` at least, submitted through
    an outbox capped at 3 KiB (about five measurements) to a collector that is down; the run's result."""
    fake = nettests.load("dnscheck").run

    async def slow(input: str | None, ctx: Any) -> Any:
        await asyncio.sleep(seconds)
        return await fake(input, ctx)

    monkeypatch.setattr(nettests.load("dnscheck"), "run", slow)
    res = probe.main("dnscheck", "--yes", "--no-progress", "-p", "1", "-o", "out.jsonl", "--outbox", "box",
                     "--outbox-max", "3K", "--submit", f"http://127.0.0.1:{closed_port()}/", "--submit-timeout", "0.5",
                     *[a for n in names for a in ("-i", n)])
    assert res.code == 0 and "Traceback" not in res.err, res.err
    return res


# ---- a collector whose certificate does not verify


def issue_ip(ca: Any, ip: str, *, expired: bool = False) -> ssl.SSLContext:
    """A server context with a leaf for an IP address signed by ``ca`` (a `TestCA`, which issues DNS names
    only): the collector's URL is https://127.0.0.1:PORT, so nothing is resolved."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = (now - datetime.timedelta(days=10), now - datetime.timedelta(days=2)) if expired else \
        (now - datetime.timedelta(days=1), now + datetime.timedelta(days=7))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
            .issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
            .sign(ca.key, hashes.SHA256()))
    chain, keyfile = ca.directory / f"ip-{expired}.pem", ca.directory / f"ip-{expired}.key"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                      + ca.cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain, keyfile)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def _collector(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A collector that takes everything (the same answers as test_outbox_hostile's), over TLS."""
    answer = hostile.collector(OK)
    while True:
        data = await answer(*await hostile._request(reader))
        writer.write(data or b"")
        await writer.drain()


@asynccontextmanager
async def tls_collector(ctx: ssl.SSLContext) -> AsyncIterator[str]:
    async with srv.TCPServer(_collector, ssl_context=ctx) as server:
        yield f"https://127.0.0.1:{server.port}"


def certificates(tmp_path: Path) -> dict[str, tuple[ssl.SSLContext, str | None]]:
    """Failure -> (the server's context, the CA bundle the probe trusts)."""
    ca = srv.TestCA(tmp_path)
    return {
        F.SSL_UNKNOWN_AUTHORITY: (issue_ip(ca, "127.0.0.1"), None),  # a private CA, the system's trust store
        F.SSL_INVALID_HOSTNAME: (ca.server_context("collector.example"), str(ca.pem)),
        F.SSL_INVALID_CERTIFICATE: (issue_ip(ca, "127.0.0.1", expired=True), str(ca.pem)),
        "trusted": (issue_ip(ca, "127.0.0.1"), str(ca.pem)),
    }


@pytest.mark.serial  # measures time
@pytest.mark.parametrize("failure", sorted(CERTIFICATE_FAILURES))
def test_a_certificate_that_does_not_verify_stops_the_flush_at_once(tmp_path: Path, failure: str) -> None:
    box = hostile.filled(tmp_path / "box", 3)
    contexts = certificates(tmp_path)
    ctx, bundle = contexts[failure]

    async def go() -> None:
        async with tls_collector(ctx) as url:
            t0 = time.monotonic()
            result = await box.flush(url, timeout=30, request_timeout=30, ca_bundle=bundle)
            took = time.monotonic() - t0
        assert took < 5, took
        assert result.untrusted and len(box) == 3 and result.remaining == 3 and result.sent == 0
        assert result.rejected == 0 and not box.rejected() and box.pending_bytes == on_disk(box)
        error = result.last_error or ""
        assert error.startswith(f"{url}/report: {failure}: the collector's certificate did not verify")
        assert error.endswith("; 3 measurement(s) stay in the outbox") and hostile.one_line(error)
        ctx2, bundle2 = contexts["trusted"]  # the same server with a certificate the probe trusts takes them
        async with tls_collector(ctx2) as url:
            result = await box.flush(url, timeout=30, ca_bundle=bundle2)
        assert result.sent == 3 and len(box) == 0 and not result.untrusted and box.pending_bytes == 0

    real.run(go)


async def _plain_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(hostile.http(400, b"this is plain HTTP"))
    await writer.drain()


@pytest.mark.serial  # measures time
@pytest.mark.parametrize("what", ["connection refused", "not TLS"])
def test_other_network_errors_are_retried_until_the_deadline(tmp_path: Path, what: str) -> None:
    box = hostile.filled(tmp_path / "box", 3)

    async def go() -> None:
        if what == "connection refused":
            failure = F.CONNECTION_REFUSED
            t0 = time.monotonic()
            result = await box.flush(f"http://127.0.0.1:{closed_port()}", timeout=1.5, backoff=FAST)
        else:  # an https URL answered in plain HTTP: a failed handshake, not a certificate
            failure = F.SSL_FAILED_HANDSHAKE
            async with srv.TCPServer(_plain_http) as server:
                t0 = time.monotonic()
                result = await box.flush(f"https://127.0.0.1:{server.port}", timeout=1.5, backoff=FAST)
        took = time.monotonic() - t0
        assert took >= 1.4, (took, result.last_error)
        assert not result.untrusted and result.remaining == 3 and len(box) == 3
        assert failure in (result.last_error or "") and "certificate" not in (result.last_error or "")

    real.run(go)


@contextmanager
def tls_collector_thread(ctx: ssl.SSLContext) -> Iterator[str]:
    """`tls_collector` in a thread of its own, for a `tamperscope run` that runs its own event loop."""
    ready = threading.Event()
    stop: list[Any] = []
    url: list[str] = []

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        stop.append(lambda: loop.call_soon_threadsafe(done.set_result, None))
        async with tls_collector(ctx) as u:
            url.append(u)
            ready.set()
            await done

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield url[0]
    finally:
        stop[0]()
        thread.join(10)
        assert not thread.is_alive()


@pytest.mark.serial  # measures time
def test_the_run_says_the_collectors_certificate_did_not_verify(probe: Probe, tmp_path: Path) -> None:
    ctx, _ = certificates(tmp_path)[F.SSL_UNKNOWN_AUTHORITY]
    with tls_collector_thread(ctx) as url:
        t0 = time.monotonic()
        res = probe.main("dnscheck", "--yes", "--no-progress", "-o", "out.jsonl", "--outbox", "box",
                         "--submit", url + "/", "--submit-timeout", "30", "-i", "a.example", "-i", "b.example")
        took = time.monotonic() - t0
    assert res.code == 0 and took < 10, (took, res.err)
    said = [line for line in res.err.splitlines() if line.startswith("tamperscope: submitted")]
    assert len(said) == 1, res.err
    assert (f"stopped at once: {url}/report: ssl_unknown_authority: the collector's certificate did not verify "
            "(TLS interception?); 2 measurement(s) stay in the outbox") in said[0]
    assert len(Outbox(probe.dir / "box")) == 2 and len(offline.lines(probe.dir / "out.jsonl")) == 2
