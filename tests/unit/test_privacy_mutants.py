"""Behaviour of the scrubber that a mutation-testing pass found unpinned: each test here fails when one small change
to `tamperscope.probe.privacy` lets an address through (or scrubs what must stay), and passes on the code as it is."""

from __future__ import annotations

import base64
import gzip
import ipaddress
import re
import zlib

import orjson

from tamperscope.probe.privacy import SCRUBBED, Scrubber

S = SCRUBBED


def test_an_address_learnt_with_a_zone_or_brackets_is_learnt_without_them() -> None:
    """An address given with its zone ("fe80::1%eth0", as the kernel names a scoped source address) or in brackets
    ("[2001:db8::7]", as a URL writes it) is learnt as the bare address: scrubbed wherever it is written plainly. A
    zone never makes loopback one of ours: "::1%lo" leaves ::1 alone."""
    s = Scrubber(["[2001:db8::7]", "198.51.100.1%eth0", "::1%lo", "fe80::1%eth0"], interfaces=False)
    assert sorted(s.addresses) == ["198.51.100.1", "2001:db8::7", "fe80::1"]
    assert s.text("a 2001:db8::7 b 198.51.100.1 c fe80::1 d ::1") == f"a {S} b {S} c {S} d ::1"


def test_a_seven_character_address_in_a_token_is_scrubbed() -> None:
    """The shortest IPv4 spellings (seven characters, "9.9.9.9") are looked for in base64 tokens too: a JWT-like
    payload naming it is decoded, scrubbed and written again."""
    s = Scrubber(["9.9.9.9"], interfaces=False)
    token = base64.urlsafe_b64encode(orjson.dumps({"ip": "9.9.9.9"})).decode().rstrip("=")
    out = s.text(f"/blocked?t={token}")
    got = out.removeprefix("/blocked?t=")
    assert base64.urlsafe_b64decode(got + "=" * (-len(got) % 4)) == orjson.dumps({"ip": S})


def test_a_client_naming_field_ending_a_sentence_or_missing_its_bracket_loses_its_address() -> None:
    """In a client-naming field every address goes, whoever's: one that ends a sentence keeps the full stop after
    the mark, and one opened by a bracket that never closes ("[203.0.113.9") is still an address."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    assert s.text("X-Forwarded-For: 203.0.113.9.") == f"X-Forwarded-For: {S}."
    assert s.text("X-Forwarded-For: [203.0.113.9") == f"X-Forwarded-For: {S}"
    assert s.raw(b"X-Real-IP: [2001:db8:cafe::17\r\n") == f"X-Real-IP: {S}\r\n".encode()


def test_our_address_as_one_decimal_number_in_a_dns_label_is_scrubbed() -> None:
    """Our IPv4 address as one decimal number is found after a dot that has no digit before it (a hostname's label,
    "ip.3323068674.example"): only a decimal point between digits makes it part of another number."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    assert s.text("ip.3323068674.example.net") == f"ip.{S}.example.net"
    assert s.raw(b"host ip.3323068674.example") == f"host ip.{S}.example".encode()
    assert s.text("v1.3323068674") == "v1.3323068674"  # a decimal point between digits: another number



def test_a_raw_deflate_body_said_deflate_only_in_headers_list_is_inflated_and_scrubbed() -> None:
    """Raw deflate has no header of its own to be known by: a Content-Encoding said only in headers_list (its value,
    not its name) is what makes the body be inflated, scrubbed and compressed again."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = c.compress(b"your ip is 198.18.1.2") + c.flush()
    r = {"body": {"format": "base64", "data": base64.b64encode(body).decode()},
         "headers_list": [["Content-Encoding", "deflate"]]}
    out = s(r)
    assert zlib.decompress(base64.b64decode(out["body"]["data"]), -15) == f"your ip is {S}".encode()


def test_a_tuple_is_walked_as_a_list() -> None:
    """A tuple in a measurement (written as a JSON array) is walked like a list: the address in it goes."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    assert s({"a": ("x 198.18.1.2", "y")}) == {"a": [f"x {S}", "y"]}


def test_an_object_with_format_and_data_and_more_keys_keeps_its_other_keys() -> None:
    """Only an object of exactly "format" and "data" is a base64 blob; one with more keys is walked key by key, its
    other keys kept, and the address in its data (base64 text) scrubbed all the same."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    data = base64.b64encode(b"client 198.18.1.2 seen").decode()
    out = s({"format": "base64", "data": data, "note": "kept"})
    assert out["note"] == "kept" and out["format"] == "base64"
    assert base64.b64decode(out["data"]) == f"client {S} seen".encode()


def test_a_control_character_before_a_short_first_group_does_not_hide_the_address() -> None:
    """A control character is written in the JSON searched first as an escape ending in a hex digit ("\\u0001"),
    which glues onto an address whose first group is short ("64:ff9b::c612:102", ours translated by NAT64): the
    walk still looks at the string itself, where nothing is glued."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    assert s({"h": "\x0164:ff9b::c612:102"}) == {"h": f"\x01{S}"}



def test_an_address_written_with_backslash_x_escapes_is_found_in_the_json() -> None:
    """``198\\x2e18\\x2e1\\x2e2`` in a string is ``198\\\\x2e18…`` in its JSON: the quick search undoes the doubled
    backslash before looking for escapes, so the walk happens and scrubs it (IPv4 and IPv6)."""
    s = Scrubber(["198.18.1.2", "2001:db8::2"], interfaces=False)
    assert s({"b": "ip 198\\x2e18\\x2e1\\x2e2 end"}) == {"b": f"ip {S} end"}
    assert s({"b": "ip 2001\\x3adb8\\x3a\\x3a2 end"}) == {"b": f"ip {S} end"}


def test_our_address_glued_to_the_next_der_tag_in_a_certificate_is_overwritten() -> None:
    """A base64 blob that begins as a DER SEQUENCE with a long length ("0\\x82") is a certificate: our address in it
    is found whatever digits touch it (the next field's tag "1" after a string) and overwritten in place."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    cert = b"0\x82\x01\x0a\x13\x0a198.18.1.21\x02\x01"
    out = s({"peer_certificates": [{"format": "base64", "data": base64.b64encode(cert).decode()}]})
    assert base64.b64decode(out["peer_certificates"][0]["data"]) == b"0\x82\x01\x0a\x13\x0axxxxxxxxxx1\x02\x01"


def test_our_address_overwritten_in_a_certificate_whatever_digits_touch_it_dashed_reversed() -> None:
    """In a binary structure our address is overwritten even where the digits before it make another address's
    octet: "12-1-18-198" holds ours reversed with dashes ("2-1-18-198"), and with underscores."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    head = b"0\x82\x01\x0a\x0c\x0bh"
    assert s.fixed(head + b"12-1-18-198") == head + b"1" + b"x" * 10
    assert s.fixed(head + b"12_1_18_198") == head + b"1" + b"x" * 10



def test_our_ipv4_address_in_an_ipv4_compatible_ipv6_address_is_scrubbed() -> None:
    """An IPv4-compatible IPv6 address (::a.b.c.d, the deprecated form: ``::198.18.1.2``, ``::c612:102``) that holds
    our IPv4 address is ours, in either spelling."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    assert s.text("a ::198.18.1.2 b ::c612:102 c") == f"a {S} b {S} c"



def test_a_ptr_name_with_labels_before_it_or_in_capitals_is_scrubbed() -> None:
    """Under in-addr.arpa the last four labels before the suffix are our address reversed, whatever labels come
    before them; and the suffix is matched in any case ("IN-ADDR.ARPA")."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    assert s.text("q x.1.18.2.1.18.198.in-addr.arpa") == f"q x.1.18.{S}.in-addr.arpa"
    assert s.text("2.1.18.198.IN-ADDR.ARPA") == f"{S}.IN-ADDR.ARPA"


def test_an_address_both_escaped_and_broken_by_tags_is_scrubbed() -> None:
    """Escaped characters and inline tags in one address are undone together, from either side: escapes with a tag
    between them ("198&#46;18&#46;<b>1</b>&#46;2"), and an escape far from a long tag that breaks the address."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    assert s.text("198&#46;18&#46;<b>1</b>&#46;2 z") == f"{S} z"
    long_tag = '<span class="' + "x" * 80 + '">'
    assert s.text(f"198&#46;18.1{long_tag}.2</span> z") == f"{S}</span> z"


def test_a_break_with_an_address_digit_on_one_side_only_is_looked_at() -> None:
    """A break inside an address is looked at when a digit, dot or colon touches it on one side only
    ("2001:db<wbr>8::2": a hex letter before it, a digit after)."""
    s = Scrubber(["2001:db8::2"], interfaces=False)
    assert s.text("a 2001:db<wbr>8::2 b") == f"a {S} b"


def test_a_client_naming_field_written_with_an_equals_sign_loses_its_address() -> None:
    """A client-naming field written "name=value" (a cookie, a query string) loses every address in its value,
    whoever's, as "name: value" does."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    assert s.text("cookie X-Forwarded-For=203.0.113.9; a=b") == f"cookie X-Forwarded-For={S}; a=b"


def test_a_raw_deflate_body_said_x_deflate_is_inflated_and_scrubbed() -> None:
    """A body said "x-deflate" (the "x-" form servers use for gzip, applied to deflate) is raw deflate with nothing
    of its own to be known by: the quick search still sends it to be inflated, scrubbed and compressed again."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = c.compress(b"your ip is 198.18.1.2") + c.flush()
    out = s({"body": {"format": "base64", "data": base64.b64encode(body).decode()},
             "headers": {"Content-Encoding": "x-deflate"}})
    assert zlib.decompress(base64.b64decode(out["body"]["data"]), -15) == f"your ip is {S}".encode()



def _decoded_everywhere(text: str) -> list[bytes]:
    """`text` and everything its runs of base64 characters decode to, over and over (what a reader could recover)."""
    out, todo = [], [text.encode()]
    while todo:
        v = todo.pop()
        out.append(v)
        for m in re.finditer(rb"[A-Za-z0-9+/]{8,}={0,2}", v):
            try:
                todo.append(base64.b64decode(m.group(0), validate=True))
            except ValueError:
                continue
    return out


def test_tokens_inside_tokens_past_the_nesting_limit_are_not_kept() -> None:
    """Tokens inside tokens are followed `MAX_NESTING` deep; one deeper that may name us is replaced by the mark,
    not kept: nothing decoded from the result, at any depth, holds our address."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    level = b"end"
    for _ in range(6):
        level = b"ip 198.18.1.2 t " + base64.b64encode(level)
    out = s({"q": level.decode()})["q"]
    assert out.startswith(f"ip {S} t ")
    assert not any(b"198.18.1.2" in v for v in _decoded_everywhere(out))



def test_our_address_reversed_with_more_labels_after_it_is_scrubbed() -> None:
    """Reversed with dashes or underscores, our address is found where more numbers follow it in the same run
    ("ip-2-1-18-198-5", "id_2_1_18_198_77"), as it is written forwards."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    assert s.text("ip-2-1-18-198-5.example") == f"ip-{S}-5.example"
    assert s.text("id_2_1_18_198_77") == f"id_{S}_77"
    assert s.text("h-198-18-1-2-5.example") == f"h-{S}-5.example"


def test_two_groups_glued_before_or_after_our_ipv6_address_do_not_hide_it() -> None:
    """Up to two colon-separated groups glued before ("ad:dc:2001:db8::2") or after ("2001:db8::2:1:2") our IPv6
    address are cut off to find it; what is cut off stays, less the port that goes with it."""
    s = Scrubber(["2001:db8::2"], interfaces=False)
    assert s.text("x ad:dc:2001:db8::2 y") == f"x ad:dc:{S} y"
    assert s.text("x 2001:db8::2:1:2 y") == f"x {S}:2 y"
    assert s.text("x ad:dc:2001:db8::2:1:2 y") == f"x ad:dc:{S}:2 y"


def _lines(data: bytes, breaks: list[str]) -> str:
    """``data`` in base64 cut into lines of 16 characters, each ended by the next of ``breaks``."""
    b64 = base64.b64encode(data).decode()
    return "".join(b64[i:i + 16] + br for i, br in zip(range(0, len(b64), 16), breaks))


def test_base64_over_lines_with_mixed_line_breaks_keeps_each_break_as_it_was() -> None:
    """A block of base64 whose lines end in different breaks ("\\n", then "\\r\\n") is no single stream: scrubbed,
    each line keeps its length and its own break."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    text = b"hello there, your address is 198.18.1.2 and more padding text here"
    breaks = ["\n", "\r\n"] * 10
    out = s.text("<pre>\n" + _lines(text, breaks) + "</pre>")
    assert out == "<pre>\n" + _lines(text.replace(b"198.18.1.2", S.encode()), breaks) + "</pre>"


def test_our_address_in_utf16_inside_a_certificate_is_overwritten_in_place() -> None:
    """A certificate may hold text in UTF-16 (a BMPString is big-endian UTF-16): our address written so in one is
    overwritten in place with ``x`` in the same encoding, so that the certificate keeps its length."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    for codec in ("utf-16-be", "utf-16-le"):
        head = b"0\x82\x01\x0a\x1e\x14"
        cert = head + "198.18.1.2".encode(codec) + b"\x02\x01"
        out = s({"peer_certificates": [{"format": "base64", "data": base64.b64encode(cert).decode()}]})
        got = base64.b64decode(out["peer_certificates"][0]["data"])
        assert got == head + ("x" * 10).encode(codec) + b"\x02\x01", codec


def test_escapes_near_each_other_are_searched_as_one_stretch() -> None:
    """Escapes that lie within an address's length of each other are searched as one stretch: an address whose
    escapes are spread between tags, each tag too long for one escape's window to reach past, is still found whole."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    tag = "<span title='" + "a" * 30 + "'>"
    assert s.text(f"x 1{tag}98&#46;18{tag}&#46;1{tag}&#46;2 y") == f"x {S} y"


def test_a_clean_empty_compressed_body_keeps_its_bytes() -> None:
    """A compressed body that inflates, whole, to nothing is kept byte for byte: its compressed bytes are not searched
    as they are, where they may look like our packed address by chance (here gzip's timestamp)."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    data = gzip.compress(b"", mtime=0x020112C6)  # the timestamp, little-endian: 198.18.1.2 packed
    out = s({"body": {"format": "base64", "data": base64.b64encode(data).decode()},
             "headers": {"Content-Encoding": "gzip"}})
    assert base64.b64decode(out["body"]["data"]) == data


def test_a_certificate_remembered_clean_is_looked_at_again_once_its_packed_address_is_learnt() -> None:
    """A certificate found clean is remembered as clean only until an address is learnt: one whose IP SAN holds the
    newly learnt address packed (no text for the quick search to see) is then overwritten."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    cert = b"0\x82\x01\x0a\x87\x04" + ipaddress.IPv4Address("198.18.9.9").packed + b"\x02\x01"
    m = {"peer_certificates": [{"format": "base64", "data": base64.b64encode(cert).decode()}]}
    assert s(m) is m  # clean, and remembered so
    s.learn(["198.18.9.9"])
    got = base64.b64decode(s(m)["peer_certificates"][0]["data"])
    assert got == b"0\x82\x01\x0a\x87\x04" + bytes(4) + b"\x02\x01"


# -- three leaks the pass found (fixed in privacy.py) --------------------------------------------------------------

def _body(data: bytes, encoding: str) -> dict[str, object]:
    return {"body": {"format": "base64", "data": base64.b64encode(data).decode()},
            "headers": {"Content-Encoding": encoding}}


def _inflated(out: dict[str, object]) -> bytes:
    """Everything a reader could inflate out of a stored body, stream after stream, and what follows the last."""
    body = out["body"]
    assert isinstance(body, dict)
    data, parts = base64.b64decode(body["data"]), []
    while data:
        d = zlib.decompressobj(47 if data[:2] == b"\x1f\x8b" or data[:1] == b"x" else -15)
        try:
            parts.append(d.decompress(data))
        except zlib.error:
            parts.append(data)
            break
        data = d.unused_data
    return b"".join(parts)


def test_a_second_compressed_stream_after_a_clean_one_is_inflated_and_scrubbed() -> None:
    """A body of two compressed streams (zlib after zlib, gzip's members, either after the other) whose first is
    clean: the second was kept as it came, and our address could be inflated back out of the stored body."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    leak = b"your ip is 198.18.1.2"
    for data, said in ((zlib.compress(b"clean ") + zlib.compress(leak), "deflate"),
                       (gzip.compress(b"clean ") + zlib.compress(leak), "gzip"),
                       (zlib.compress(b"clean ") + gzip.compress(leak), "deflate"),
                       (gzip.compress(b"clean ") + gzip.compress(leak), "gzip")):
        out = s(_body(data, said))
        assert _inflated(out) == f"clean your ip is {S}".encode(), said
    clean = zlib.compress(b"clean ") + zlib.compress(b"nothing of ours")
    assert s(_body(clean, "deflate"))["body"]["data"] == base64.b64encode(clean).decode()  # kept as it came


def test_base64_inside_base64_is_followed_as_deep_as_the_nesting_limit() -> None:
    """A token of JSON encoded three or four times over (base64 of base64 of …) was never looked into: the quick
    search had needles for two layers. Every layer up to `MAX_NESTING` is decoded and our address scrubbed."""
    from tamperscope.probe.privacy import MAX_NESTING

    s = Scrubber(["198.18.1.2"], interfaces=False)
    for depth in range(1, MAX_NESTING + 1):
        token = orjson.dumps({"ip": "198.18.1.2", "n": depth})
        for _ in range(depth):
            token = base64.b64encode(token)
        m = {"url": "http://blocked.example/?t=" + token.decode() + "&x=1"}
        assert s.needed(m), depth
        out = s(m)["url"]
        assert out.startswith("http://blocked.example/?t=") and out.endswith("&x=1"), depth
        assert not any(b"198.18.1.2" in v for v in _decoded_everywhere(out)), depth
        inner = out.removeprefix("http://blocked.example/?t=").removesuffix("&x=1").encode()
        for _ in range(depth):
            inner = base64.b64decode(inner)
        assert orjson.loads(inner) == {"ip": S, "n": depth}  # the rest written again as it was


def test_an_escape_next_to_a_tag_longer_than_the_escapes_window_does_not_hide_the_address() -> None:
    """An escaped dot just after a long inline tag ("198.18<span class='…'>&#46;1.2"), or just before one: the
    escapes' search looked 64 characters around the escape, inside the tag, and the breaks' search began only where
    an address character followed the tag. Found now in text, in bytes and in a measurement."""
    s = Scrubber(["198.18.1.2"], interfaces=False)
    tag = "<span class='" + "a" * 70 + "'>"
    for t in ("198.18" + tag + "&#46;1.2", "198&#46;" + tag + "18.1.2", "198.18" + tag + "%2E1.2",
              "198.18" + tag + "\\u002e1.2", "198.18" + tag + "&period;1.2"):
        assert "198" not in s.text(t) and s.text(t).endswith(S), t
        assert b"198" not in s.raw(t.encode()), t
        assert s({"body": t}) == {"body": S}, t
    kept = "1&nbsp;<b>2</b> 198.18.1.3 &#46;<i>x</i> " + tag + "&#46;5"  # not ours: left as it is
    assert s.text(kept) == kept and s({"body": kept}) == {"body": kept}
