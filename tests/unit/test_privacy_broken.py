"""Our addresses with something a reader does not see inside them are scrubbed too: a page that lets a long IPv6
address wrap (``<wbr>``, a zero-width space, a soft hyphen), one that styles an address in parts
(``<span>198</span>.<span>18</span>…``), and their character references and JavaScript escapes. What surrounds
the address is kept; lookalikes are left alone, and a page full of tags between digits still costs linear time."""

from __future__ import annotations

import base64
import random
import re
import time

import pytest

from tamperscope.probe.privacy import SCRUBBED, Scrubber

V4 = "198.18.1.2"
V6 = "2001:db8:85a3::8a2e:370:7334"


def scrubber() -> Scrubber:
    return Scrubber((V4, V6), interfaces=False)


SPELLINGS = [
    "2001:db8:<wbr>85a3::<wbr>8a2e:<wbr>370:<wbr>7334", "2001:db8:<wbr/>85a3::8a2e:370:7334",
    "2001:db8:\u200b85a3::\u200b8a2e:370:7334", "2001:db8:&#8203;85a3::8a2e:370:7334",
    "2001:db8:&#x200B;85a3::8a2e:370:7334", "2001:db8:&ZeroWidthSpace;85a3::8a2e:370:7334",
    "2001:db8:&shy;85a3::8a2e:370:7334", "2001:db8:\u00ad85a3::8a2e:370:7334",
    "2001:db8:\u2060\ufeff85a3::8a2e:370:7334",
    "2001:db8:\\u200b85a3::8a2e:370:7334",  # in a script's string
    "<span>198</span>.<span>18</span>.<span>1</span>.<span>2</span>", "198.18.<b>1.2</b>", "<b>198.18</b>.1.2",
    "198.<span class=\"o\">18</span>.1.2", "198.18.1.&#173;2", "198<wbr>&#46;18&#46;1&#46;2",  # escapes too
]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_an_address_broken_by_what_a_reader_does_not_see_is_scrubbed(spelling: str) -> None:
    s = scrubber()
    for text in (f"Your IP address is {spelling}.", f"<p>{spelling}</p>", spelling):
        out = s.text(text)
        assert SCRUBBED in out, text
        # nothing of the address is left: neither its first group nor its last
        assert "2001" not in out and "7334" not in out and "198" not in out, (text, out)
        assert s.raw(text.encode()).decode() == out, text
    assert s.text(f"Your IP address is {spelling}.").startswith("Your IP address is ")
    assert s.text(f"<p>{spelling}</p>").startswith("<p>") and s.text(f"<p>{spelling}</p>").endswith("</p>")


def test_tags_around_the_address_stay_and_those_inside_go_with_it() -> None:
    s = scrubber()
    assert s.text("<span>198</span>.<span>18</span>.<span>1</span>.<span>2</span>") == f"<span>{SCRUBBED}</span>"
    assert s.text(f"<td>{V4}</td><td>5</td>") == f"<td>{SCRUBBED}</td><td>5</td>"
    assert s.text("IP: <b>2001:db8:<wbr>85a3::8a2e:370:7334</b> (IPv6)") == f"IP: <b>{SCRUBBED}</b> (IPv6)"
    assert s.text("<i>198.18.1.2</i>:5555") == f"<i>{SCRUBBED}</i>:5555"
    # a table's cell, a paragraph or a line break is seen between two things: the next cell's number is not glued on
    assert s.text("<td>198.18.<b>1.2</b></td><td>5</td>") == f"<td>{SCRUBBED}</b></td><td>5</td>"
    assert s.text("<p>2001:db8:<wbr>85a3::8a2e:370:7334</p><p>7</p>") == f"<p>{SCRUBBED}</p><p>7</p>"


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_whole_measurement_with_a_broken_address_is_found_and_scrubbed(spelling: str) -> None:
    s = scrubber()
    body = f"<html><body><p>Your address: {spelling}</p></body></html>"
    m = {"test_keys": {"requests": [{"response": {
        "body": body, "body_bytes": {"format": "base64", "data": base64.b64encode(body.encode()).decode()}}}]}}
    assert s.needed(m)
    out = s(m)["test_keys"]["requests"][0]["response"]
    assert SCRUBBED in out["body"] and "7334" not in out["body"] and "198" not in out["body"], out["body"]
    assert base64.b64decode(out["body_bytes"]["data"]).decode() == out["body"]


def test_a_latin1_soft_hyphen_in_bytes_is_a_break_too() -> None:
    s = scrubber()
    assert s.raw("198.18.\u00ad1.2 ok".encode("latin-1")) == f"{SCRUBBED} ok".encode()


@pytest.mark.parametrize("text", [
    "<td>198.18.1.</td><td>23</td>", "198.18.1.<b>3</b>", "2001:db8:<wbr>85a3::<wbr>8a2e:370:7335",
    "12</td><td>34", "<b>198</b>.<b>18</b>.<b>1</b>.<b>20</b>", "1&#8203;98.18.1.2&#8203;0", "v1.<b>2</b>.3",
    "198.18.1.<br>2001 was a year", "face<b>bead</b>", "198.18.1<!-- -->.23",
])
def test_broken_lookalikes_are_left_alone(text: str) -> None:
    s = scrubber()
    assert s.text(text) == text
    assert s.raw(text.encode()) == text.encode()
    assert not s.needed({"body": text})


@pytest.mark.wallclock
def test_pages_of_tags_between_digits_cost_linear_time() -> None:
    s = scrubber()
    size = 512 * 1024
    for junk in ("1<b>." * (size // 5), "1</td><td>2." * (size // 12), "1&#8203;." * (size // 9),
                 "1\u200b." * (size // 3), "a<b>a" * (size // 5), "1" + "<b>" * (size // 3) + "2",
                 "1" + "&shy;" * (size // 5) + ".", "1:<wbr>" * (size // 7), "198.18.1.<b>" * (size // 12)):
        t = time.perf_counter()
        s.text(junk)
        s.raw(junk.encode())
        s.needed({"body": junk})
        # idle, each takes well under a second; quadratic would be hours
        assert time.perf_counter() - t < 15, junk[:30]


NOISE = ("x", "y", "<b>", "</b>", "<wbr>", "&#8203;", "&shy;", "\u200b", "\u00ad", "\\u200b", "<p>", "</td><td>",
         "Привет", "\u00e9", "\u201c", "&amp;", '"', "'", " ", "\n", '<a href="/q?x=y">', "</a>", "<!-- z -->")
BREAKS = ("<b>", "</b>", "<wbr>", '<span class="x">', "</span>", "<!-- c -->", "&#8203;", "&#x200b;", "&shy;",
          "&#173;", "&ZeroWidthSpace;", "\u200b", "\u00ad", "\ufeff", "\u2060", "\\u200b", "<wbr/>", "<SPAN>")
# what a reader does not see, as the test writes it: taken out, what is left is what the reader reads
UNSEEN = re.compile(r"</?(?:b|wbr|span|SPAN|a)(?![a-z])[^<>]*>|<!--.*?-->|[\u00ad\u200b-\u200d\u2060\ufeff]"
                    r"|&(?:shy|ZeroWidthSpace);|&#(?:8203|173|x200b);|\\u200b")


def _broken_spelling(address: str, rng: random.Random) -> str:
    """`address` with breaks at random where a digit, a dot or a colon touches them (what `_broken` looks at)."""
    out = []
    for i, c in enumerate(address):
        out.append(c)
        after = address[i + 1:i + 2]
        if after and (c in "0123456789.:" or after in "0123456789.:") and rng.random() < 0.3:
            out.append("".join(rng.choice(BREAKS) for _ in range(rng.randrange(1, 3))))
    return "".join(out)


def test_seeded_pages_of_broken_addresses_in_whole_measurements() -> None:
    """A seeded random walk (1,500 pages): ours broken at random is never left for a reader to read, another
    address broken the same way is never touched, and the body and its base64 copy come out alike."""
    s = scrubber()
    rng = random.Random(20261206)
    others = ("198.18.1.3", "2001:db8:85a3::8a2e:370:7335")
    for _ in range(1500):
        mine = rng.random() < 0.5
        parts = []
        for _ in range(rng.randrange(1, 4)):
            parts.append("".join(rng.choice(NOISE) for _ in range(rng.randrange(0, 10))))
            address = rng.choice((V4, V6) if mine else others)
            parts.append(" " + _broken_spelling(address, rng) + rng.choice((" ", "<br>", "</p>", ". ", ", ")))
        page = "".join(parts)
        m = {"test_keys": {"requests": [{"response": {
            "body": page, "raw": {"format": "base64", "data": base64.b64encode(page.encode()).decode()}}}]}}
        response = s(m)["test_keys"]["requests"][0]["response"]
        body = response["body"]
        assert base64.b64decode(response["raw"]["data"]).decode() == body, page
        if mine:
            read = UNSEEN.sub("", body)
            assert V4 not in read and V6 not in read and SCRUBBED in body, (page, body)
        else:
            assert body == page, page
