"""Our addresses written with escaped characters, in hex, or nibble-reversed under ip6.arpa are scrubbed too: a
page that prints "your IP" as HTML character references (as pages hiding text from scrapers do), a script holding
it in a JavaScript string (``\\u002e``), a redirect that %-escapes its dots, a log line or header that writes it as
eight hex digits, a PTR name. Lookalikes are left alone, and a page full of escapes still costs linear time."""

from __future__ import annotations

import base64
import time

import pytest

from tamperscope.probe.privacy import SCRUBBED, Scrubber

V4 = "198.18.1.2"  # c6120102
V6 = "2001:db8::2"
PTR6 = ".".join(reversed("20010db8000000000000000000000002")) + ".ip6.arpa"


def scrubber() -> Scrubber:
    return Scrubber((V4, V6), interfaces=False)


SPELLINGS = [
    "198&#46;18&#46;1&#46;2", "198&#046;18&#x2e;1&#X2E;2", "198&period;18&period;1&period;2",
    "&#49;&#57;&#56;&#46;&#49;&#56;&#46;&#49;&#46;&#50;",  # every character
    "198&#x0002e;18&#46;1&#46;2",
    "198\\u002e18\\u002e1\\u002e2", "198\\u002E18\\x2e1\\x2E2",  # JavaScript or JSON source
    "198%2E18%2e1%2E2", "%31%39%38.18.1.2",
    "2001&#58;db8&#58;&#58;2", "2001&colon;db8&colon;&colon;2", "2001\\u003adb8\\u003a\\u003a2",
    "c6120102", "C6120102", "0xc6120102", "0XC6120102", "0xC6120102",
]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_an_escaped_or_hex_spelling_is_scrubbed(spelling: str) -> None:
    s = scrubber()
    for text, want in ((f"Your IP address is {spelling}.", f"Your IP address is {SCRUBBED}."),
                       (f"<b>{spelling}</b>", f"<b>{SCRUBBED}</b>"), (spelling, SCRUBBED)):
        assert s.text(text) == want, text
        assert s.raw(text.encode()) == want.encode(), text


@pytest.mark.parametrize("spelling", SPELLINGS[:12])
def test_a_whole_measurement_is_found_to_need_scrubbing(spelling: str) -> None:
    # the quick search runs over the measurement's JSON, where a backslash in a string is written twice
    s = scrubber()
    body = f"<script>var ip = '{spelling}';</script>"
    m = {"test_keys": {"requests": [{"response": {
        "body": body, "headers": {"X-Note": spelling},
        "raw": {"format": "base64", "data": base64.b64encode(body.encode()).decode()}}}]}}
    out = s(m)["test_keys"]["requests"][0]["response"]
    assert out["body"] == f"<script>var ip = '{SCRUBBED}';</script>"
    assert out["headers"]["X-Note"] == SCRUBBED
    assert base64.b64decode(out["raw"]["data"]).decode() == out["body"]


def test_a_ptr_name_under_ip6_arpa_is_scrubbed() -> None:
    s = scrubber()
    assert s.text(f"PTR {PTR6}.") == f"PTR {SCRUBBED}.ip6.arpa."
    assert s.raw(PTR6.upper().encode()) == f"{SCRUBBED}.IP6.ARPA".encode()
    other = ".".join(reversed("20010db8000000000000000000000003")) + ".ip6.arpa"
    assert s.text(other) == other


@pytest.mark.parametrize("text", [
    "198&#46;18&#46;1&#46;3", "198&#1000;18&#46;1&#46;2", "198&#x2e18&#46;1&#46;2", "1198&#46;18&#46;1&#46;23",
    "198%2E18%2E1%2E20", "198\\u002e18\\u002e1\\u002e20", "&amp;198.18.1.20",
    "dc6120102", "c61201020", "0xc61201021", "sha=3fc6120102e1", "c6120103",
    "%20%3A%2F%3D&amp;&#169;&#8212;",
])
def test_escaped_lookalikes_are_left_alone(text: str) -> None:
    s = scrubber()
    assert s.text(text) == text
    assert s.raw(text.encode()) == text.encode()


def test_a_decimal_looking_hex_form_is_not_taken_for_a_number() -> None:
    # 18.52.86.120 is 0x12345678: its bare hex digits read as a decimal number, which is left alone
    s = Scrubber(("18.52.86.120",), interfaces=False)
    assert s.text("order 12345678 shipped") == "order 12345678 shipped"
    assert s.text("addr 0x12345678") == f"addr {SCRUBBED}"


@pytest.mark.wallclock
def test_pages_of_escapes_cost_linear_time() -> None:
    s = scrubber()
    size = 512 * 1024
    for junk in ("1&#46;18&#46;" * (size // 12), "&#46;" * (size // 5), "%2E1" * (size // 4),
                 "\\u002e1" * (size // 7), "&#x2e;&#49;" * (size // 11), "a%20b%3A" * (size // 8),
                 "c6120102c" * (size // 9), "0.1." * (size // 4) + "ip6.arpa"):
        t = time.perf_counter()
        s.text(junk)
        s.raw(junk.encode())
        # idle, each takes 0.0-0.9 s for text and raw together; quadratic would be hours
        assert time.perf_counter() - t < 15, junk[:30]
