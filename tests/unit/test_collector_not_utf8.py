"""A request whose path or query is not UTF-8 once its %-escapes are undone is told so (400), in the API's JSON
or on the explorer's error page, instead of being searched for as U+FFFD and answered with nothing. Through the
ASGI client and through uvicorn on a real socket, where the bytes arrive as a client wrote them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tamperscope.collector import samples
from tamperscope.collector.app import create_app
from tamperscope.collector.config import Settings
from tamperscope.collector.testing import SyncClient, unlimited_app, uvicorn_server


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncClient]:
    with unlimited_app(tmp_path_factory.mktemp("utf8") / "u.duckdb", samples.corpus(5, seed="u")) as c:
        yield c


@pytest.mark.parametrize("target", ["/api/v1/measurements?input=%ff%fe", "/api/v1/measurements?input=http://a/%c3",
                                    "/search.json?input=%ed%a0%80", "/api/v1/aggregation?probe_cc=%ff"])
def test_a_query_that_is_not_utf8_is_a_400_in_the_api(client: SyncClient, target: str) -> None:
    r = client.get(target)
    assert r.status_code == 400, (target, r.status_code, r.text[:200])
    assert r.json() == {"error": "invalid_parameter",
                        "detail": "the query string is not UTF-8 once its %-escapes are decoded"}


@pytest.mark.parametrize("target", ["/search?input=%ff", "/domain/%ff.example", "/country/%fe", "/measurement/%80"])
def test_a_target_that_is_not_utf8_is_the_explorers_error_page(client: SyncClient, target: str) -> None:
    r = client.get(target)
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/html"), (target, r.status_code)
    assert "is not UTF-8 once its %-escapes are decoded" in r.text
    assert "content-security-policy" in r.headers  # inside the security headers, as every answer


def test_a_head_of_such_a_target_has_no_body(client: SyncClient) -> None:
    r = client.request("HEAD", "/search?input=%ff")
    assert r.status_code == 400 and r.content == b""


@pytest.mark.parametrize("target", ["/api/v1/measurements?input=%c3%a9", "/search?input=caf%C3%A9+x"])
def test_utf8_escapes_and_plus_are_still_read(client: SyncClient, target: str) -> None:
    assert client.get(target).status_code == 200


def test_through_uvicorn_on_a_socket(tmp_path: Path) -> None:
    async def main() -> list[bytes]:
        app = create_app(Settings(db_path=tmp_path / "s.duckdb", announce=False, submit_rate=0, read_rate=0))
        heads = []
        async with uvicorn_server(app) as url:
            port = int(url.rsplit(":", 1)[1])
            for target in (b"/api/v1/measurements?input=%ff", b"/api/v1/measurements?input=%c3%a9"):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                await writer.drain()
                heads.append((await reader.read()).split(b"\r\n", 1)[0])
                writer.close()
        return heads

    bad, good = asyncio.run(asyncio.wait_for(main(), 60))
    assert bad.startswith(b"HTTP/1.1 400") and good.startswith(b"HTTP/1.1 200"), (bad, good)
