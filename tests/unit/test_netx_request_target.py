"""The request target as a browser sends it: a URL with text beyond ASCII (or a space) in its path or query
was a local h11 error before anything was sent, recorded as a failed request, which reads as interference."""

from __future__ import annotations

import asyncio

import pytest

from tamperscope.netx import Trace, fetch
from tamperscope.netx.fetch import redirect_target
from tamperscope.netx.http import Target

try:
    from . import test_netx_servers as srv
except ImportError:
    import test_netx_servers as srv  # type: ignore[no-redef]

CASES = {  # URL path and query -> the request target on the wire
    "/é": "/%C3%A9",
    "/новости?q=ü": "/%D0%BD%D0%BE%D0%B2%D0%BE%D1%81%D1%82%D0%B8?q=%C3%BC",
    "/a b?c d": "/a%20b?c%20d",
    "/already%20escaped?x=%C3%A9": "/already%20escaped?x=%C3%A9",
    "/plain?a=1&b=[2]": "/plain?a=1&b=[2]",
}


@pytest.mark.parametrize("path", list(CASES))
def test_the_target_is_percent_encoded_utf8(path: str) -> None:
    assert Target.parse(f"http://a.example{path}").path == CASES[path]


@pytest.mark.parametrize("path", list(CASES))
def test_such_a_url_is_fetched_not_failed(path: str) -> None:
    seen: list[str] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, target, _, _ = await srv.read_head(reader)
        seen.append(target)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    async def main() -> None:
        async with srv.TCPServer(handler) as server:
            trace = Trace()
            result = await fetch(f"http://idn.test:{server.port}{path}", trace=trace,
                                 connector=srv.loopback_connector(), timeout=3)
        assert result.failure is None, result.failure
        assert result.final is not None and result.final.status == 200
        assert seen == [CASES[path]]

    srv.run(main())


def test_port_0_is_no_default_port() -> None:
    """``http://a:0/`` was requested on port 80; in a redirect it is now an invalid location."""
    with pytest.raises(ValueError):
        Target.parse("http://a.example:0/")
    following, failure = redirect_target("http://a.example/", "http://b.example:0/x")
    assert following is None and failure
