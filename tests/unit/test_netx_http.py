"""Traced HTTP/1.1 and HTTP/2 over loopback: records, caps, redirects, hostile servers, fetch."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from tamperscope.model import failures as F
from tamperscope.netx import DirectConnector, HTTPError, Limits, Trace, fetch, round_trip, tcp_connect
from tamperscope.netx.http import Target

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]

LO = srv.LOOPBACK


async def to_loopback(host: str, **_: object) -> list[str]:
    """The connector's resolve hook: every name is this machine."""
    return [LO]


def loopback(ca: srv.TestCA | None = None) -> DirectConnector:
    return DirectConnector(resolve=to_loopback, ca_bundle=str(ca.pem) if ca else None)


def site(routes: dict[str, bytes]) -> srv.StreamHandler:
    """An HTTP/1.1 keep-alive server answering ``routes[path]`` (raw responses), else 404."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                _, target, _, _ = await srv.read_head(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(routes.get(target, srv.http_response(404, b"nope")))
            await writer.drain()

    return handle


def test_http11_round_trip_record_shape() -> None:
    async def main() -> None:
        page = srv.http_response(200, b"<html>hello</html>", [("X-Twice", "a"), ("X-Twice", "b")])
        async with srv.TCPServer(site({"/p?q=1": page})) as server, Trace() as trace:
            url = f"http://{LO}:{server.port}/p?q=1"
            async with await tcp_connect(LO, server.port, trace=trace) as conn:
                response = await round_trip(conn, url, tags=["depth=0"])
        assert response.status == 200 and response.body == b"<html>hello</html>"
        assert response.http_version == "HTTP/1.1" and response.header("x-twice") == "a"
        (rec,) = trace.requests
        assert rec is response.record and rec["failure"] is None
        assert rec["transaction_id"] == trace.tcp_connect[0]["transaction_id"]
        assert rec["network"] == "tcp" and rec["address"] == f"{LO}:{server.port}"
        assert "alpn" not in rec and rec["tags"] == ["depth=0"]
        req = rec["request"]
        assert req["url"] == url and req["method"] == "GET" and req["body"] == ""
        assert req["headers"]["Host"] == f"{LO}:{server.port}"
        assert req["headers_list"][0] == ["Host", f"{LO}:{server.port}"]
        assert req["tor"] == {"exit_ip": None, "exit_name": None, "is_tor": False}
        assert req["x_transport"] == "tcp" and req["body_is_truncated"] is False
        resp = rec["response"]
        assert resp["code"] == 200 and resp["body"] == "<html>hello</html>"
        assert resp["body_is_truncated"] is False
        assert resp["headers"]["X-Twice"] == "a"
        assert ["X-Twice", "a"] in resp["headers_list"] and ["X-Twice", "b"] in resp["headers_list"]

    srv.run(main())


def test_binary_body_is_base64() -> None:
    async def main() -> None:
        blob = bytes(range(256))
        async with srv.TCPServer(site({"/": srv.http_response(200, blob)})) as server, Trace() as trace:
            result = await fetch(f"http://bin.test:{server.port}/", trace=trace, connector=loopback())
        assert result.failure is None and result.final is not None and result.final.body == blob
        body = trace.requests[0]["response"]["body"]
        assert body["format"] == "base64" and base64.b64decode(body["data"]) == blob

    srv.run(main())


def test_large_body_is_truncated() -> None:
    async def main() -> None:
        big = srv.http_response(200, b"x" * (5 * 1024 * 1024))
        async with srv.TCPServer(site({"/": big})) as server, Trace() as trace:
            result = await fetch(f"http://big.test:{server.port}/", trace=trace, connector=loopback())
        assert result.failure is None and result.final is not None
        assert result.final.body_is_truncated and len(result.final.body) == 512 * 1024
        resp = trace.requests[0]["response"]
        assert resp["body_is_truncated"] is True and len(resp["body"]) == 512 * 1024

    srv.run(main())


def test_endless_headers_fail_within_deadline() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        while True:
            writer.write(b"X-Flood: " + b"a" * 100 + b"\r\n")
            await writer.drain()

    async def main() -> None:
        async with srv.TCPServer(endless) as server, Trace() as trace:
            loop = asyncio.get_running_loop()
            start = loop.time()
            result = await fetch(f"http://flood.test:{server.port}/", trace=trace,
                                 connector=loopback(), timeout=5)
            assert loop.time() - start < 3
        assert result.failure == F.HTTP_HEADERS_TOO_LARGE
        assert trace.requests[0]["failure"] == F.HTTP_HEADERS_TOO_LARGE

    srv.run(main())


def test_too_many_headers() -> None:
    async def main() -> None:
        page = srv.http_response(200, b"", [(f"X-{i}", "v") for i in range(150)])
        async with srv.TCPServer(site({"/": page})) as server, Trace() as trace:
            result = await fetch(f"http://many.test:{server.port}/", trace=trace,
                                 connector=loopback())
        assert result.failure == F.HTTP_TOO_MANY_HEADERS

    srv.run(main())


def test_silent_server_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async def main() -> None:
        async with srv.TCPServer(silent) as server, Trace() as trace:
            result = await fetch(f"http://silent.test:{server.port}/", trace=trace,
                                 connector=loopback(), timeout=0.5)
        assert result.failure == F.GENERIC_TIMEOUT_ERROR
        assert result.failed_operation == F.HTTP_ROUND_TRIP
        rec = trace.requests[0]
        assert rec["failure"] == F.GENERIC_TIMEOUT_ERROR and rec["response"]["code"] == 0

    srv.run(main())


@pytest.mark.parametrize(("behaviour", "failure"), [("rst", F.CONNECTION_RESET), ("fin", F.EOF_ERROR),
                                                    ("short", F.EOF_ERROR)])
def test_reset_and_eof_after_request(behaviour: str, failure: str) -> None:
    async def censor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await srv.read_head(reader)
        if behaviour == "rst":
            srv.reset(writer)
        elif behaviour == "short":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
            await writer.drain()
            writer.close()
        else:
            writer.close()

    async def main() -> None:
        async with srv.TCPServer(censor) as server, Trace() as trace:
            result = await fetch(f"http://blocked.test:{server.port}/", trace=trace,
                                 connector=loopback())
        assert result.failure == failure
        rec = trace.requests[0]
        assert rec["failure"] == failure
        if behaviour == "short":  # what arrived before the failure is kept as evidence
            assert rec["response"]["code"] == 200 and rec["response"]["body"] == "partial"

    srv.run(main())


def _chain(hops: int) -> dict[str, bytes]:
    routes = {f"/r/{i}": srv.http_response(302, b"", [("Location", f"/r/{i + 1}")])
              for i in range(hops)}
    routes[f"/r/{hops}"] = srv.http_response(200, b"final")
    return routes


def test_three_redirects_are_followed() -> None:
    async def main() -> None:
        async with srv.TCPServer(site(_chain(3))) as server, Trace() as trace:
            result = await fetch(f"http://redir.test:{server.port}/r/0", trace=trace,
                                 connector=loopback())
        assert result.failure is None and [r.status for r in result.responses] == [302, 302, 302, 200]
        assert result.final is not None and result.final.body == b"final"
        # newest first, as OONI: requests[0] is the final response
        assert [r["response"]["code"] for r in trace.requests] == [200, 302, 302, 302]
        assert trace.requests[0]["tags"] == ["depth=3"]
        assert len(trace.tcp_connect) == 4

    srv.run(main())


def test_eleven_redirects_fail_like_ooni() -> None:
    async def main() -> None:
        async with srv.TCPServer(site(_chain(20))) as server, Trace() as trace:
            result = await fetch(f"http://loop.test:{server.port}/r/0", trace=trace,
                                 connector=loopback())
        assert result.failure == F.HTTP_TOO_MANY_REDIRECTS
        assert result.failure == "unknown_failure: stopped after too many redirects"
        assert len(trace.requests) == 11
        assert trace.requests[0]["failure"] == F.HTTP_TOO_MANY_REDIRECTS
        assert trace.requests[0]["response"]["code"] == 302
        assert all(r["failure"] is None for r in trace.requests[1:])

    srv.run(main())


def test_broken_location() -> None:
    async def main() -> None:
        routes = {"/": srv.http_response(302, b"", [("Location", "http://")])}
        async with srv.TCPServer(site(routes)) as server, Trace() as trace:
            result = await fetch(f"http://broken.test:{server.port}/", trace=trace,
                                 connector=loopback())
        assert result.failure == F.HTTP_INVALID_REDIRECT_LOCATION_HOST
        assert trace.requests[0]["failure"] == F.HTTP_INVALID_REDIRECT_LOCATION_HOST

    srv.run(main())


def test_redirect_to_refused_port_ends_with_connect_failure() -> None:
    async def main() -> None:
        async with srv.TCPServer(site({})) as dead:
            dead_port = dead.port
        routes = {"/": srv.http_response(301, b"", [("Location", f"http://gone.test:{dead_port}/")])}
        async with srv.TCPServer(site(routes)) as server, Trace() as trace:
            result = await fetch(f"http://start.test:{server.port}/", trace=trace,
                                 connector=loopback())
        assert result.failure == F.CONNECTION_REFUSED and result.failed_operation == F.CONNECT
        assert len(result.responses) == 1 and trace.requests[0]["failure"] is None

    srv.run(main())


def test_https_http11_and_system_dns_path(tmp_path: Path) -> None:
    ca = srv.TestCA(tmp_path)

    async def main() -> None:
        ctx = ca.server_context("localhost", alpn=("http/1.1",))
        page = srv.http_response(200, b"secure")
        async with srv.TCPServer(site({"/": page}), ssl_context=ctx) as server, Trace() as trace:
            result = await fetch(f"https://localhost:{server.port}/", trace=trace,
                                 ca_bundle=str(ca.pem))
        assert result.failure is None  # an address that refuses (::1) is skipped for the next
        ok = [r for r in trace.requests if r["failure"] is None]
        assert ok and ok[0]["alpn"] == "http/1.1" and ok[0]["response"]["body"] == "secure"
        assert trace.queries[0]["engine"] == "system"
        assert trace.tls_handshakes[-1]["x_verified"] is True

    srv.run(main())


def test_https_h2(tmp_path: Path) -> None:
    ca = srv.TestCA(tmp_path)

    def respond(headers: dict[bytes, bytes]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if headers[b":path"] == b"/big":
            return 200, [(b"content-type", b"text/plain")], b"y" * (2 * 1024 * 1024)
        if headers[b":path"] == b"/go":
            return 301, [(b"location", b"/small")], b""
        return 200, [(b"content-type", b"text/plain"), (b"x-host", headers[b":authority"])], b"small"

    async def main() -> None:
        ctx = ca.server_context("h2.test", alpn=("h2",))
        async with srv.TCPServer(srv.h2_handler(respond), ssl_context=ctx) as server, Trace() as trace:
            base = f"https://h2.test:{server.port}"
            small = await fetch(base + "/go", trace=trace, connector=loopback(ca))
            big = await fetch(base + "/big", trace=trace, connector=loopback(ca))
        assert small.failure is None and small.final is not None
        assert [r.status for r in small.responses] == [301, 200]
        assert small.final.http_version == "HTTP/2" and small.final.body == b"small"
        assert small.final.header("x-host") == f"h2.test:{server.port}"
        assert big.failure is None and big.final is not None and big.final.body_is_truncated
        assert len(big.final.body) == 512 * 1024
        recs = [r for r in trace.requests if r["alpn"] == "h2"]
        assert len(recs) == 3 and recs[0]["response"]["body_is_truncated"] is True
        assert trace.tls_handshakes[0]["negotiated_protocol"] == "h2"

    srv.run(main())


def test_h2_flood_before_headers_fails(tmp_path: Path) -> None:
    ca = srv.TestCA(tmp_path)

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        writer.write(settings)
        ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"\x00" * 8
        while True:  # endless frames, never a response
            writer.write(ping * 512)
            await writer.drain()
            await asyncio.sleep(0)

    async def main() -> None:
        ctx = ca.server_context("h2.test", alpn=("h2",))
        async with srv.TCPServer(flood, ssl_context=ctx) as server, Trace() as trace:
            result = await fetch(f"https://h2.test:{server.port}/", trace=trace,
                                 connector=loopback(ca), timeout=5,
                                 limits=Limits(header_bytes=16 * 1024))
        assert result.failure in (F.HTTP_HEADERS_TOO_LARGE, F.HTTP_PROTOCOL_ERROR)

    srv.run(main())


def test_tls_failure_ends_fetch(tmp_path: Path) -> None:
    ca = srv.TestCA(tmp_path)

    async def main() -> None:
        ctx = ca.server_context("other.test")
        async with srv.TCPServer(site({}), ssl_context=ctx) as server, Trace() as trace:
            result = await fetch(f"https://asked.test:{server.port}/", trace=trace,
                                 connector=loopback(ca))
        assert result.failure == F.SSL_INVALID_HOSTNAME
        assert result.failed_operation == F.TLS_HANDSHAKE and trace.requests == []

    srv.run(main())


def test_round_trip_raises_http_error_with_record() -> None:
    async def main() -> None:
        async def rst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await srv.read_head(reader)
            srv.reset(writer)

        async with srv.TCPServer(rst) as server, Trace() as trace:
            async with await tcp_connect(LO, server.port, trace=trace) as conn:
                with pytest.raises(HTTPError) as info:
                    await round_trip(conn, f"http://{LO}:{server.port}/")
        assert info.value.failure == F.CONNECTION_RESET
        assert trace.requests[0]["failure"] == F.CONNECTION_RESET

    srv.run(main())


def test_target_parsing() -> None:
    t = Target.parse("https://Example.ORG:8443/a/b?x=1#frag")
    assert (t.scheme, t.host, t.port, t.authority, t.path) == (
        "https", "example.org", 8443, "example.org:8443", "/a/b?x=1")
    assert Target.parse("http://[::1]/").authority == "[::1]"
    assert Target.parse("http://bücher.example/").host == "xn--bcher-kva.example"
    for bad in ("ftp://x/", "http://", "http://x:99999/"):
        with pytest.raises(ValueError):
            Target.parse(bad)


def test_redirect_to_other_scheme_is_unknown_failure() -> None:
    async def main() -> None:
        routes = {"/": srv.http_response(302, b"", [("Location", "ftp://files.test/x")])}
        async with srv.TCPServer(site(routes)) as server, Trace() as trace:
            result = await fetch(f"http://s.test:{server.port}/", trace=trace, connector=loopback())
        assert result.failure == "unknown_failure: unsupported protocol scheme 'ftp'"
        assert trace.requests[0]["failure"] == result.failure

    srv.run(main())
