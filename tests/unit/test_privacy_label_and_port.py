"""The probe's IPv6 address glued to a label before it and a port after it ("from:2001:db8::2:443") is scrubbed.

The scrubber already took one or two groups off either end of a run of address characters (a label
before the address, "ip:2001:db8::2"; a port after it, "2001:db8::2:8000"), never off both: a proxy or
a server writing "peer:ADDR:PORT" published the address. Here a rewriting proxy on 127.0.0.1 answers the
middlebox nettest's echo with such a header, and the measurement goes through the engine's own path.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
import pytest

from tamperscope.model.measurement import ProbeInfo
from tamperscope.nettests import http_header_field_manipulation
from tamperscope.nettests.base import Context, Timeouts
from tamperscope.probe.engine import Engine
from tamperscope.probe.privacy import SCRUBBED, Scrubber

ME = "2001:db8:85a3::8a2e:370:7334"
SPELLINGS = [ME, "2001:DB8:85A3:0:0:8A2E:370:7334", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"]
# the port after our address is ours too (our socket's): it goes with the address
GLUED = [("from:{a}:443", "from:{a}"), ("peer:{a}:54321", "peer:{a}"), ("a:{a}:b", "a:{a}:b"),
         ("remote_addr:{a}:51234:", "remote_addr:{a}:"), ("ip:{a}:1:2", "ip:{a}:2")]


@pytest.mark.parametrize("form", GLUED)
@pytest.mark.parametrize("spelling", SPELLINGS, ids=["short", "upper", "padded"])
def test_a_label_before_and_a_port_after_do_not_hide_the_address(form: tuple[str, str], spelling: str) -> None:
    s = Scrubber([ME], interfaces=False)
    text = "client " + form[0].format(a=spelling) + " seen"
    want = "client " + form[1].format(a=SCRUBBED) + " seen"
    assert s.text(text) == want
    assert s.raw(text.encode()) == want.encode()
    out = s({"test_keys": {"x": text, "b": {"format": "base64", "data": base64.b64encode(text.encode()).decode()}}})
    assert out["test_keys"]["x"] == want and base64.b64decode(out["test_keys"]["b"]["data"]) == want.encode()


@pytest.mark.parametrize("text", ["from:2001:db8:85a3::8a2e:370:7335:443", "a:2001:db8:85a3::8a2e:370:733:b",
                                  "at 12:30:45:01 GMT", "de:ad:be:ef:00:02:03"])
def test_other_addresses_glued_the_same_way_are_left_alone(text: str) -> None:
    s = Scrubber([ME], interfaces=False)
    m = {"x": text}
    assert s.text(text) == text and s(m) is m


def through_a_rewriting_proxy(added: bytes, scrubber: Scrubber) -> dict[str, Any]:
    """An http_header_field_manipulation measurement, through the engine, of an echo on 127.0.0.1 that a
    rewriting proxy answers with the request plus the header lines ``added``."""
    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        writer.write(head[:-2] + added + b"\r\n")  # the request, with a header naming the client
        await writer.drain()
        writer.close()

    async def main() -> dict[str, Any]:
        server = await asyncio.start_server(proxy, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ctx = Context(timeouts=Timeouts(connect=1, measurement=5))
        engine = Engine(http_header_field_manipulation, ctx, ProbeInfo(), scrubber)
        async with server:
            return await engine.measure(f"127.0.0.1:{port}")

    return asyncio.run(asyncio.wait_for(main(), 10))


def test_a_rewriting_proxy_naming_the_client_in_the_echo_is_scrubbed_in_the_written_measurement() -> None:
    m = through_a_rewriting_proxy(f"X-Client: peer:{ME}:54321\r\n".encode(), Scrubber([ME], interfaces=False))
    line = orjson.dumps(m)
    assert b"8a2e:370:7334" not in line
    assert f"X-Client: peer:{SCRUBBED}\\r\\n".encode() in line  # the port (ours) with it
    assert m["test_keys"]["tampering"]["total"] is True and m["test_keys"]["x_mechanism"] == "middlebox"
