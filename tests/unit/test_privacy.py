"""The scrubber: the probe's own address never leaves in a measurement, in any encoding."""

from __future__ import annotations

import base64
import socket

from tamperscope.probe.privacy import SCRUBBED, Scrubber

ME = "198.18.1.2"


def b64(data: bytes) -> dict:
    return {"format": "base64", "data": base64.b64encode(data).decode()}


def test_plain_strings_and_keys_are_scrubbed() -> None:
    s = Scrubber([ME])
    m = {"test_keys": {"requests": [{"response": {"body": f"you are {ME}!", "headers": {"X-Real-IP": ME}}}],
                       ME: 1}}
    out = s(m)
    assert ME not in repr(out)
    assert out["test_keys"]["requests"][0]["response"]["body"] == f"you are {SCRUBBED}!"
    assert SCRUBBED in out["test_keys"]


def test_base64_bodies_and_packed_addresses_are_scrubbed() -> None:
    s = Scrubber([ME])
    m = {"body": b64(f"<p>{ME}</p>".encode()), "cert": [b64(b"\x30\x82" + socket.inet_aton(ME) + b"\x00")],
         "other": b64(b"nothing here")}
    out = s(m)
    assert base64.b64decode(out["body"]["data"]) == f"<p>{SCRUBBED}</p>".encode()
    assert socket.inet_aton(ME) not in base64.b64decode(out["cert"][0]["data"])
    assert base64.b64decode(out["other"]["data"]) == b"nothing here"


def test_data_before_format_is_found_too() -> None:
    s = Scrubber([ME])
    out = s({"x": {"data": base64.b64encode(ME.encode()).decode(), "format": "base64"}})
    assert ME.encode() not in base64.b64decode(out["x"]["data"])


def test_clean_measurements_are_returned_untouched() -> None:
    s = Scrubber([ME])
    m = {"test_keys": {"body": "198.18.1.20 is not me? it is: prefix match", "cert": b64(b"\x01\x02\x03"),
                       "n": [1, 2.5, None, True]}}
    m["test_keys"]["body"] = "198.18.10.2 and 98.18.1.2 are other hosts"
    assert s(m) is m  # nothing to scrub: no copy, no walk


def test_invalid_base64_is_walked_and_scrubbed_as_text() -> None:
    s = Scrubber([ME])
    out = s({"b": {"format": "base64", "data": f"!!{ME}!!"}})
    assert out["b"]["data"] == f"!!{SCRUBBED}!!"
