"""Scrubbing the probe's own addresses out of a measurement, as OONI does.

The probe never records its user's IP address. Servers and middleboxes echo
it back (X-Forwarded-For, blockpages that print "your IP is …", certificates),
so before a measurement is written every string in it, including base64
bodies and certificates, has each known address of the probe replaced by
`[scrubbed]`. `probe_ip` itself is always 127.0.0.1.

The known addresses are the source addresses the kernel picks towards the
resolvers and the helper, and every address of this machine's interfaces
(both families, looked at again every `REFRESH` seconds: IPv6 privacy
addresses change). Text is searched for anything shaped like an address,
which is parsed and compared by value, so every spelling is found:
`2001:DB8::2`, `2001:0db8:0000:0000:0000:0000:0000:0002`, `::ffff:198.18.1.2`,
`198.018.001.002`, and in a URL `2001%3Adb8%3A%3A2`. An IPv4 address is also found written with
dashes or underscores in either order, as hostnames and identifiers embed it (`198-18-1-2.dsl.example`,
`ip-2-1-18-198.example`, `client_198_18_1_2`), with other digits touching it where they and it cannot be
one address (`5198.18.1.2`, `198.18.1.2198.18.1.2`; not `198.18.1.23`: `Scrubber._glued`),
reversed under `in-addr.arpa`, as one decimal number (`3323068674`: ifconfig.co's ``ip_decimal``, not
inside a longer number or word) or eight hex digits (``c6120102``, ``0xC6120102``), in a UTF-16 body (its
usual spelling), inside an IPv6 address that embeds it (6to4 `2002:c612:102::1`, NAT64
`64:ff9b::c612:102`); an IPv6 address nibble-reversed under ``ip6.arpa``; either written with escaped
characters (``198&#46;18&#46;1&#46;2``, ``198\\u002e18…``, ``198%2E18%2E1%2E2``: `_escaped`) or broken by
what a reader does not see (inline tags, zero-width and soft-hyphen characters, their references and escapes:
``2001:db8:<wbr>85a3::2``, ``<span>198</span>.<span>18</span>.1.2``: `_broken`); inside a token written in
base64 (a JWT's payload, ``?t=eyJpcCI6…``: `Scrubber._tokens`, decoded, scrubbed and encoded again as it was
written; a token inside a token; base64 broken over lines, `Scrubber._wrapped`; gzip in base64, ``H4sI…``); as a
JSON number; as packed bytes in a text body, where they are no printable text; and in a body the server
compressed (`Content-Encoding: gzip` or `deflate`, which the probe never asks for, or gzip's or zlib's first bytes
whatever the headers say; `_compression`): such a body is inflated,
and written again compressed the same way when something had to be scrubbed (cut where inflating stops, as
`body_is_truncated`, past `MAX_INFLATE`). The port after one of our addresses goes with it
(`[scrubbed]`, not `[scrubbed]:52282`): it is our socket's, and with the time it can name a user behind
a carrier-grade NAT.

Headers that exist to name a client (X-Forwarded-For, Forwarded, X-Real-IP, … `CLIENT_HEADERS`) have
every address in them scrubbed, whoever's: behind NAT or a proxy, the address a site or a middlebox saw
may be one the probe cannot know (no `--stun`, no helper, or a helper reached through the proxy). They
are found as header fields, as `[name, value]` pairs, and as "Name: value" lines in any text (a request
echoed back, a page listing the headers it got).

Binary structures, certificates (`peer_certificates`) and DNS messages (`raw_response`, a bare base64
string in OONI's format, as `x_ech` is), are overwritten in place instead, so they still parse: the
characters of an address with ``x``, its packed bytes with zeros. In them an address is found even when
other digits touch it (DER puts the tag of the next field, ``0`` or ``1``, right after a string).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
import string
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

SCRUBBED = "[scrubbed]"
# A {"format": "base64", "data": …} object in orjson's compact output, in either key order.
_BASE64_DATA = re.compile(rb'"format":"base64","data":"([^"]*)"|"data":"([^"]*)","format":"base64"')
# Keys whose value is a bare base64 string of a binary structure (OONI's DNS raw_response; an ECH config),
# and those holding a list of base64 structures (certificates): overwritten in place, never resized.
_BARE_BASE64 = frozenset({"raw_response", "x_ech"})
_BARE_DATA = re.compile(rb'"(?:raw_response|x_ech)":"([^"]*)"')
_STRUCTURES = frozenset({"peer_certificates"})
_DER_LONG = (b"\x81", b"\x82", b"\x83")  # a DER SEQUENCE's long length: how a certificate begins, after "0"
# A response whose body the server compressed (in headers or headers_list, either key case)
_COMPRESSED = re.compile(rb'(?i)"content-encoding"[:,]"(?:x-)?(?:gzip|deflate)"')
MAX_INFLATE = 16 << 20  # bytes of a compressed body inflated to be searched; past it the body is cut
CLIENT_HEADERS = ("x-forwarded-for", "forwarded", "x-forwarded", "forwarded-for", "x-real-ip", "x-client-ip",
                  "x-client-addr", "x-client-address", "client-ip", "true-client-ip", "cf-connecting-ip",
                  "fastly-client-ip", "x-cluster-client-ip", "x-originating-ip", "x-remote-addr", "x-remote-ip",
                  "remote-addr", "x-proxyuser-ip", "x-appengine-user-ip", "x-azure-clientip",
                  "x-envoy-external-address")
_CLIENT_KEY = frozenset(CLIENT_HEADERS)
_CLIENT_NAMES = "(?:" + "|".join(re.escape(h) for h in sorted(CLIENT_HEADERS, key=len, reverse=True)) + ")"


def _both(pattern: str) -> dict[bool, re.Pattern[Any]]:
    """A pattern compiled for text (True) and for bytes (False)."""
    return {True: re.compile(pattern), False: re.compile(pattern.encode())}


# what every client-naming header's name holds, looked for in lower-cased text: `in` at C speed (a
# case-insensitive pattern of the names took 1.7 ms on a 17 KB measurement, ten times the rest of the search)
_CLIENT_HINTS = ("forwarded", "-ip", "clientip", "client-ad", "remote-addr", "external-address")
_CLIENT_HINTS_B = tuple(h.encode() for h in _CLIENT_HINTS)
assert all(any(h in name for h in _CLIENT_HINTS) for name in CLIENT_HEADERS)


def _client_seen(s: Any) -> bool:
    """Whether text or bytes may hold a client-naming header's name (a quick test before the pattern's)."""
    low = s.lower()
    return any(h in low for h in (_CLIENT_HINTS if isinstance(s, str) else _CLIENT_HINTS_B))


# "Name: value" (a header line, a page listing headers, JSON): the value runs to the end of the line or quote
_CLIENT_FIELD = _both(r"(?i)(?<![\w-])" + _CLIENT_NAMES + r"[\"']?[ \t]*[:=][ \t]*[\"']?([^\r\n\"'<>]*)")
_ADDRESS_RUN = _both(r"[0-9A-Fa-f:.\[\]]+")  # may be an address, with brackets and a port: "[2001:db8::2]:4711"
_PORT = _both(r":[0-9]{1,5}(?![0-9])")
KEEP = {"127.0.0.1", "0.0.0.0", "::1", "::", ""}
_KEEP = frozenset(ipaddress.ip_address(a) for a in KEEP if a)
REFRESH = 30.0  # seconds between looks at the interfaces' addresses

# Candidates are found from an anchor that starts with a literal character, which the regex
# engine skips to at C speed (a character-class pattern is ~30 times slower on a measurement's
# JSON): two colons with only hex digits and dots between them for IPv6 (also ::ffff:a.b.c.d);
# for IPv4 the middle of one of our addresses, ".18.1." for 198.18.1.2 (zero padding allowed).
# Each anchor is widened to its whole run of address characters, which is parsed and compared by
# value, so every spelling of an address is found.
_HEX = "0123456789abcdefABCDEF"
_V6_ANCHOR, _V6_TAIL, _V4_TAIL = r":[0-9A-Fa-f.]*+:", r"[0-9A-Fa-f:.]*+", r"[0-9.]*+"
_TEXT = (re.compile(_V6_ANCHOR), re.compile(_V6_TAIL), _HEX + ".", re.compile(_V4_TAIL), "0123456789")
_BYTES = (re.compile(_V6_ANCHOR.encode()), re.compile(_V6_TAIL.encode()), (_HEX + ".").encode(),
          re.compile(_V4_TAIL.encode()), b"0123456789")
# In a URL (a blockpage's redirect: "?ip=2001%3Adb8%3A%3A2") an IPv6 address's colons are percent-encoded:
# a second pass, only over text holding "%3", finds runs with the colons spelled either way.
_COLON = r"(?::|%3[Aa])"
_PCT_ANCHOR, _PCT_TAIL = _COLON + r"[0-9A-Fa-f.]*+" + _COLON, r"(?:[0-9A-Fa-f:.]|%3[Aa])*+"
_PCT_TEXT = (re.compile(_PCT_ANCHOR), re.compile(_PCT_TAIL))
_PCT_BYTES = (re.compile(_PCT_ANCHOR.encode()), re.compile(_PCT_TAIL.encode()))
_ENCODED_COLON = re.compile(r"%3[Aa]")
# An IPv4 address with dashes, as in hostnames: runs of digits and dashes; and a reversed one under in-addr.arpa.
_DASHED: dict[bool, tuple[re.Pattern[Any], Any]] = {True: (re.compile(r"[0-9-]*+"), "0123456789"),
                                                    False: (re.compile(rb"[0-9-]*+"), b"0123456789")}
# and with underscores, as identifiers and tokens embed it ("client_198_18_1_2", "ip_2_1_18_198")
_UNDERSCORED: dict[bool, tuple[re.Pattern[Any], Any]] = {True: (re.compile(r"[0-9_]*+"), "0123456789"),
                                                         False: (re.compile(rb"[0-9_]*+"), b"0123456789")}
# (any case, but a case-insensitive pattern has no literal to skip to: ten times slower than this)
_ARPA_SEEN: dict[bool, re.Pattern[Any]] = {True: re.compile(r"-[aA][dD][dD][rR]\.[aA][rR][pP][aA]"),
                                           False: re.compile(rb"-[aA][dD][dD][rR]\.[aA][rR][pP][aA]")}
# A nibble-reversed IPv6 address under ip6.arpa (a PTR name): 32 hex digits, each followed by a dot.
_IP6_ARPA_SEEN: dict[bool, re.Pattern[Any]] = {True: re.compile(r"\.[iI][pP]6\.[aA][rR][pP][aA]"),
                                               False: re.compile(rb"\.[iI][pP]6\.[aA][rR][pP][aA]")}
_IP6_ARPA: dict[bool, re.Pattern[Any]] = {True: re.compile(r"((?:[0-9a-fA-F]\.){32})(?=[iI][pP]6\.[aA][rR][pP][aA])"),
                                          False: re.compile(rb"((?:[0-9a-fA-F]\.){32})(?=[iI][pP]6\.[aA][rR][pP][aA])")}
# An address's characters written as escapes, as a page hides them from scrapers or a script embeds them:
# HTML character references (``198&#46;18&#46;1&#46;2``, ``&#x2e;``, ``&period;``, ``&colon;``), JavaScript and
# JSON escapes (``\u002e``, ``\x2e``) and %-escapes of a dot or a digit (``198%2E18%2E1%2E2``). Only characters
# an address is written with are undone; the text is searched again with them undone, the spans found mapped back.
# (only escapes of those characters are matched: "%20", "%3D" and "&amp;" are passed over at C speed; a "%3A" is
# `_PCT_TEXT`'s, as URLs hold many). Three patterns, each led by its literal, which the regex engine skips to.
_HEX_CODE = r"(2[eE]|3[0-9aA]|4[1-6]|6[1-6])"  # . 0-9 : A-F a-f
_ENTITY = (r"&(?:#(?:[xX]0*+" + _HEX_CODE + r"(?![0-9a-fA-F])|0*+(46|4[89]|5[0-8]|6[5-9]|70|9[7-9]|10[0-2])(?![0-9]));?"
           r"|(period|colon);)")
_SCRIPT = r"\\(?:u00|x)" + _HEX_CODE
_PERCENT = r"%(2[eE]|3[0-9]|4[1-6]|6[1-6])"
_ESCAPE = f"{_ENTITY}|{_SCRIPT}|{_PERCENT}"
_ESCAPED: dict[bool, re.Pattern[Any]] = {True: re.compile(_ESCAPE), False: re.compile(_ESCAPE.encode())}
# each pattern, and what text must hold for it to find anything (`in` is much faster than an alternation)
_ESCAPE_KINDS: dict[bool, list[tuple[tuple[Any, ...], re.Pattern[Any]]]] = {
    True: [(("&#", "&period;", "&colon;"), re.compile(_ENTITY)), (("\\u00", "\\x"), re.compile(_SCRIPT)),
           (("%",), re.compile(_PERCENT))],
    False: [((b"&#", b"&period;", b"&colon;"), re.compile(_ENTITY.encode())),
            ((b"\\u00", b"\\x"), re.compile(_SCRIPT.encode())), ((b"%",), re.compile(_PERCENT.encode()))]}
_NAMED = {"period": ".", "colon": ":"}
# the characters an address and its escapes are written with, to widen a stretch of escapes to their edges
_EDGE_CHARS = string.ascii_letters + string.digits + ".:&#;%\\"
_ESCAPE_EDGE: dict[bool, frozenset[Any]] = {True: frozenset(_EDGE_CHARS),
                                            False: frozenset(bytes([c]) for c in _EDGE_CHARS.encode())}
# What a page puts inside an address that a reader does not see, so that a long one may wrap or be styled in
# parts: inline tags and comments (``2001:db8:<wbr>85a3::2``, ``<b>198</b>.<b>18</b>.1.2``), invisible characters
# (a zero-width space, joiner or non-joiner, a word joiner, a soft hyphen, a BOM), their character references
# (``&#8203;``, ``&ZeroWidthSpace;``, ``&shy;``) and their JavaScript escapes (``\u200b``). Each kind is found from
# its literal first character, and only where an address character comes just before it (`_BREAK_SEEDS`): a page's
# other tags are passed over at C speed. Such a stretch is searched again with the breaks taken out
# (`Scrubber._broken`).
_ADDRESS_CLASS = r"[0-9A-Fa-f.:]"
_INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
# only the tags of inline elements, and comments: a paragraph, a table's cell or a line break is seen between two
# addresses ("198.18.1.2</td><td>5" is not 198.18.1.25)
_INLINE = ("a|abbr|b|bdi|bdo|big|cite|code|data|del|dfn|em|font|i|ins|kbd|mark|nobr|q|s|samp|small|span|strike|"
           "strong|sub|sup|time|tt|u|var|wbr")
_TAG = rf"<(?:/?(?i:{_INLINE})(?![A-Za-z0-9-])[^<>]{{0,200}}>|!--(?:[^-]|-(?!->)){{0,200}}-->)"
_BREAK_ENTITY = (r"&(?:(?:shy|ZeroWidthSpace|zwnj|zwj|NoBreak);|#(?:0*+(?:173|820[345]|8288|65279)(?![0-9])"
                 r"|[xX]0*+(?:[aA][dD]|200[bBcCdD]|2060|[fF][eE][fF][fF])(?![0-9a-fA-F]));?)")
_BREAK_SCRIPT = r"\\u(?:00[aA][dD]|200[bBcCdD]|2060|[fF][eE][fF][fF])"
_BREAK_TEXT = f"{_TAG}|[{_INVISIBLE}]|{_BREAK_ENTITY}|{_BREAK_SCRIPT}"
# in bytes: the invisible characters in UTF-8, and a soft hyphen alone (Latin-1), which no UTF-8 text puts after
# an ASCII character
_INVISIBLE_UTF8 = b"|".join(re.escape(c.encode()) for c in _INVISIBLE) + rb"|\xad"
_BREAK_BYTES = _TAG.encode() + b"|" + _INVISIBLE_UTF8 + b"|" + _BREAK_ENTITY.encode() + b"|" + _BREAK_SCRIPT.encode()
_BREAKS: dict[bool, re.Pattern[Any]] = {True: re.compile(_BREAK_TEXT), False: re.compile(_BREAK_BYTES)}
# the first break of a stretch: after an address character, its kind's literal first (the engine skips to it),
# then any further breaks, then an address character again; or an escape of one on either side (`_ESCAPE`: a
# character reference ends with ";"), which the stretch's search undoes (a helper's mutation pass: an escaped dot
# after a tag longer than the escapes' window, "198.18<span class='…'>&#46;1.2", was found by neither search)
_BEFORE_BREAKS = "[0-9A-Fa-f.:;]"
_ESCAPE_START = r"&#|&period;|&colon;|\\u00|\\x|%[2-6]"
_AFTER_BREAKS = f"(?:{_BREAK_TEXT})*(?={_ADDRESS_CLASS}|{_ESCAPE_START})"
_AFTER_BREAKS_B = b"(?:" + _BREAK_BYTES + b")*(?=" + _ADDRESS_CLASS.encode() + b"|" + _ESCAPE_START.encode() + b")"


def _seeds(text: bool) -> list[tuple[tuple[Any, ...], re.Pattern[Any]]]:
    """Each kind of break as it may begin a stretch: what text must hold for it to be there (an `in` test), and a
    pattern that finds it after an address character, with any breaks after it, before an address character."""
    out: list[tuple[tuple[Any, ...], re.Pattern[Any]]] = []
    # (the hint a single character: `in` one is a memchr; "\\u" took 1.7 ms on the 160 blockpages, "\\" none)
    for hint, first, rest in (("<", "<", _TAG[1:]), ("&", "&", _BREAK_ENTITY[1:]), ("\\", r"\\", _BREAK_SCRIPT[2:])):
        pattern = f"{first}(?<={_BEFORE_BREAKS}{first}){rest}"
        if text:
            out.append(((hint,), re.compile(pattern + _AFTER_BREAKS)))
        else:
            out.append(((hint.encode(),), re.compile(pattern.encode() + _AFTER_BREAKS_B)))
    # the invisible characters: patterns led by their first character (in UTF-8, their first byte), which the engine
    # skips to (a class first would be tried at every position of a page), each tried only where that character is
    # (`in` a single character or byte is a memchr)
    if text:
        out += [((char,), re.compile(f"{char}(?<={_BEFORE_BREAKS}{char}){_AFTER_BREAKS}")) for char in _INVISIBLE]
    else:  # U+200B-U+200D, U+2060; U+FEFF; U+00AD; and a soft hyphen in Latin-1
        for head, tail in ((b"\xe2", b"(?:\x80[\x8b-\x8d]|\x81\xa0)"), (b"\xef", b"\xbb\xbf"), (b"\xc2", b"\xad"),
                           (b"\xad", b"")):
            out.append(((head,), re.compile(head + b"(?<=" + _BEFORE_BREAKS.encode() + head + b")" + tail
                                            + _AFTER_BREAKS_B)))
    return out


_BREAK_SEEDS = {True: _seeds(True), False: _seeds(False)}
# a stretch of breaks is looked at only when a digit, a dot or a colon touches it on one side at least: not "the<b>a"
_SURE: dict[bool, frozenset[Any]] = {True: frozenset("0123456789.:"),
                                     False: frozenset(bytes([c]) for c in b"0123456789.:")}
_ADDRESS_EDGE: dict[bool, frozenset[Any]] = {True: frozenset(_HEX + ".:"),
                                             False: frozenset(bytes([c]) for c in (_HEX + ".:").encode())}
# whether a "%3" is there at all: the regex engine finds a literal three times faster than `in` on 35 KB
_PCT_SEEN: dict[bool, re.Pattern[Any]] = {False: re.compile(rb"%3"), True: re.compile(r"%3")}
# The longest spelling of one IPv6 address is 45 characters; in a longer run of address
# characters only its ends are tried.
_MAX_RUN = 64
MAX_GLUED = 32  # windows of one run tried for an address with digits glued to it (`Scrubber._glued`); then found
# plainly (`Scrubber._spelled`): 512 KiB of our address glued to itself took 2-3 s, against 0.2 s unglued
_NAT64 = 0x0064FF9B << 64  # 64:ff9b::/96 (RFC 6052), shifted as an address's top 96 bits are
_GLUING_ESCAPE = re.compile(rb"\\[buf]")  # JSON escapes that end in a hex digit: \u0001, \b, \f

# An address inside base64 text that is no {"format": "base64"} blob: a token's JSON (a JWT's payload, a blockpage's
# "?t=eyJpcCI6…" parameter). Each spelling of ours is looked for as the base64 characters that spell it whatever bytes
# come before and after it (`_b64_needles`); the run of base64 characters around one is decoded, scrubbed as bytes,
# and encoded again as it was written (alphabet, padding).
_B64_RUN: dict[bool, re.Pattern[Any]] = {True: re.compile(r"[A-Za-z0-9+/_-]{8,}+={0,2}"),
                                          False: re.compile(rb"[A-Za-z0-9+/_-]{8,}+={0,2}")}
# Runs decoded in one string; past that, a run that holds a needle is replaced whole by SCRUBBED (a page of tens of
# thousands of tokens naming us is hostile: decoding each took 3 s of a 512 KiB page, bench/scrub section 3)
MAX_TOKENS = 256
_GZIP_B64: dict[bool, Any] = {True: "H4sI", False: b"H4sI"}  # gzip's magic and method (1f 8b 08) in base64, at a token's start
# What gzip tokens may inflate to, each and together in one scrub: a token is a cookie or a parameter, kilobytes; one
# past these is not kept (QA: ten tokens of 16 MiB each took two minutes to search, on a 435 KB page)
MAX_TOKEN_INFLATE = 1 << 20
TOKEN_INFLATE_BUDGET = 4 << 20
MAX_NESTING = 4  # tokens inside tokens followed this deep; deeper, the token is not kept (QA: 259 deep raised)
# A line break inside base64, as text has it or escaped (a JSON string's "\n"), with the spaces or tabs an indented
# or padded block puts beside it (XML, YAML, a line's trailing space) and blank lines (QA: these leaked)
_NEWLINE = r"(?:[ \t]|\\t)*+(?:(?:\r|\\r)*+(?:\n|\\n))++(?:[ \t]|\\t)*+"
# base64 broken over lines of 8 characters or more; a block begins after no base64 character, and no repeat gives
# back what it took: one pass over a long run
_WRAPPED: dict[bool, re.Pattern[Any]] = {
    True: re.compile(r"(?<![A-Za-z0-9+/])(?:[A-Za-z0-9+/]{8,}+" + _NEWLINE + r")++[A-Za-z0-9+/]*+={0,2}"),
    False: re.compile((r"(?<![A-Za-z0-9+/])(?:[A-Za-z0-9+/]{8,}+" + _NEWLINE + r")++[A-Za-z0-9+/]*+={0,2}").encode())}
_LINE_BREAK = re.compile("(" + _NEWLINE + ")")
_URL_SAFE = str.maketrans("+/", "-_")


def _spliced(s: Any, found: Sequence[tuple[int, int, str]]) -> Any:
    """``s`` (text or bytes) with each span ``(start, end)`` of ``found`` replaced by its text (in order, apart);
    ``s`` itself when there is none."""
    if not found:
        return s
    text = isinstance(s, str)
    out, at = [], 0
    for start, end, new in found:
        out += [s[at:start], new if text else new.encode("ascii")]
        at = end
    out.append(s[at:])
    return ("" if text else b"").join(out)


def _flat(s: Any, text: bool) -> Any:
    """``s`` without its line breaks and blank space (as they are or escaped, ``\\n`` in JSON), where it has a
    line break; ``s`` itself when it has none. Only looked in for needles: a needle cut by a break (`_NEWLINE`) is
    whole here, and blank space elsewhere gone joins nothing a needle could be by chance."""
    if ("\n" not in s and "\\n" not in s) if text else (b"\n" not in s and b"\\n" not in s):
        return s
    for gap in (_GAPS_TEXT if text else _GAPS_BYTES):
        s = s.replace(gap, s[:0])
    return s


_GAPS_TEXT = ("\\r", "\\n", "\\t", "\r", "\n", "\t", " ")
_GAPS_BYTES = tuple(g.encode() for g in _GAPS_TEXT)


def _b64_needles(spellings: Iterable[str]) -> list[str]:
    """For each spelling, the base64 characters that encode it whatever bytes come before and after it: one run of
    them for each of the three alignments of its first byte, in the standard and the URL-safe alphabets."""
    out: set[str] = set()
    for spelling in spellings:
        if len(spelling) < 7:
            continue  # ("1::"): a few base64 characters would turn up in any long run of them
        raw = spelling.encode()
        for r in range(3):
            encoded = base64.b64encode(b"\0" * r + raw + b"\0\0").decode("ascii")
            needle = encoded[-(-8 * r // 6):8 * (r + len(raw)) // 6]  # the characters of its bits alone
            out |= {needle, needle.translate(_URL_SAFE)}
    return sorted(out)


def _b64_decode(chunk: str, url: bool) -> bytes | None:
    """``chunk`` (no padding) decoded, or None where it is no base64."""
    try:
        return base64.b64decode(chunk + "=" * (-len(chunk) % 4), altchars=b"-_" if url else None, validate=True)
    except (binascii.Error, ValueError):
        return None


SIOCGIFCONF = 0x8912


def local_addresses(peers: Iterable[str]) -> set[str]:
    """The source addresses the kernel would use towards `peers` (no packet is sent)."""
    out: set[str] = set()
    for peer in peers:
        try:
            fam = socket.AF_INET6 if ":" in peer else socket.AF_INET
            with socket.socket(fam, socket.SOCK_DGRAM) as s:
                s.connect((peer, 9))
                out.add(s.getsockname()[0])
        except OSError:
            continue
    return {a for a in out if a not in KEEP}


def interface_addresses() -> set[str]:
    """Every address of this machine's interfaces, IPv4 and IPv6, loopback and link-local included
    (Linux: /proc/net/if_inet6 and the SIOCGIFCONF ioctl; no packet is sent, no program is run)."""
    out: set[str] = set()
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as f:
            for line in f:
                try:
                    out.add(str(ipaddress.IPv6Address(int(line.split()[0], 16))))
                except (IndexError, ValueError):
                    continue
    except OSError:
        pass  # no IPv6 here
    return out | _ipv4_interface_addresses()


def _ipv4_interface_addresses() -> set[str]:
    try:
        import array
        import fcntl
    except ImportError:
        return set()
    word = struct.calcsize("L")
    # struct ifreq: the name, then a union whose largest member is struct ifmap (or a sockaddr)
    ifreq = 16 + max(16, -(-struct.calcsize("LLHBBB") // word) * word)
    n = 64
    while True:
        buf = array.array("B", bytes(ifreq * n))
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                got = fcntl.ioctl(s.fileno(), SIOCGIFCONF, struct.pack("iL", len(buf), buf.buffer_info()[0]))
        except OSError:
            return set()
        used = struct.unpack("iL", got)[0]
        if used < len(buf) or n >= 65536:
            break
        n *= 4  # it may not all have fit
    data = buf.tobytes()[:used]
    return {socket.inet_ntoa(data[i + 20:i + 24]) for i in range(0, used - ifreq + 1, ifreq)}


def _runs(s: Any, anchor: re.Pattern[Any], tail: re.Pattern[Any], head: Any, back: int) -> Iterable[tuple[int, int]]:
    """(start, end) of each run of address characters holding an anchor: the anchor widened to the left
    over at most `back` characters of `head`, and to the right to the end of the run."""
    end = 0
    for m in anchor.finditer(s):
        at = m.start()
        if at >= end:
            before = s[max(at - back, 0):at]
            run = tail.match(s, at)  # the tail's class holds every anchor character, so it always matches
            end = run.end() if run is not None else at + 1
            yield at - len(before) + len(before.rstrip(head)), end


def _decode_colons(run: str) -> tuple[str, list[int]]:
    """`run` with each ``%3A`` turned into ``:``, and where in `run` each character of the result (and its
    end) sits."""
    out: list[str] = []
    at: list[int] = []
    i = 0
    for m in _ENCODED_COLON.finditer(run):
        out.append(run[i:m.start()])
        at.extend(range(i, m.start()))
        out.append(":")
        at.append(m.start())
        i = m.end()
    out.append(run[i:])
    at.extend(range(i, len(run) + 1))
    return "".join(out), at


def _unescaped(s: Any) -> tuple[Any, list[int]] | None:
    """``s`` (text or bytes) with the escapes of an address's characters undone (`_ESCAPE`), and where in ``s``
    each character of the result (and its end) sits; None when there are none."""
    text = isinstance(s, str)
    out: list[Any] = []
    at: list[int] = []
    i = 0
    for m in _ESCAPED[text].finditer(s):
        hexa, deci, named, js, pct = m.groups()
        if named is not None:
            char = _NAMED.get(named if text else named.decode("ascii"), "")
        else:
            code = int(deci, 10) if deci is not None else int(hexa or js or pct, 16)
            char = chr(code)
        out.append(s[i:m.start()])
        at.extend(range(i, m.start()))
        out.append(char if text else char.encode("ascii"))
        at.append(m.start())
        i = m.end()
    if not at:
        return None
    out.append(s[i:])
    at.extend(range(i, len(s) + 1))
    return ("" if text else b"").join(out), at


def _windows(s: Any, spans: Iterable[tuple[int, int]], edge: frozenset[Any]) -> list[tuple[int, int]]:
    """Where in ``s`` to search again around `spans` (escapes, breaks): the spans that lie within an address's length
    of each other as one stretch, widened by that length on either side, then on to the edges of the characters of
    `edge` there (at most as far again)."""
    stretches: list[list[int]] = []
    for a, b in sorted(spans):
        if stretches and a - stretches[-1][1] <= _MAX_RUN:
            stretches[-1][1] = max(b, stretches[-1][1])
        else:
            stretches.append([a, b])
    out = []
    for a, b in stretches:
        lo, hi = max(0, a - _MAX_RUN), min(len(s), b + _MAX_RUN)
        floor, ceiling = max(0, lo - _MAX_RUN), min(len(s), hi + _MAX_RUN)
        while floor < lo and s[lo - 1:lo] in edge:
            lo -= 1
        while hi < ceiling and s[hi:hi + 1] in edge:
            hi += 1
        out.append((lo, hi))
    return out


def _quad(parts: list[str]) -> int:
    """The value of four dotted decimal octets (zero padding allowed), or -1."""
    try:
        return int.from_bytes(bytes(map(int, parts)), "big") if all(len(p) <= 3 for p in parts) else -1
    except ValueError:  # empty, or above 255
        return -1


def _octet(part: str) -> bool:
    """Whether a run's part can be an octet by itself: one to three digits, at most 255."""
    return 0 < len(part) <= 3 and int(part) <= 255


def _v6_value(s: str) -> int | None:
    """The value of an IPv6 address written as RFC 4291 allows (any case, zero padding, ``::``, a dotted
    IPv4 tail), or None. For runs of ``[0-9A-Fa-f:.]`` only, where it is several times faster than
    `ipaddress` (a hostile page may hold many such runs)."""
    try:
        if "." in s:
            head, _, dotted = s.rpartition(":")
            v4 = _quad(dotted.split("."))
            if v4 < 0 or dotted.count(".") != 3:
                return None
            s = f"{head}:{v4 >> 16:x}:{v4 & 0xFFFF:x}"
        if "::" in s:
            left, right, *more = s.split("::")
            head_groups = left.split(":") if left else []
            tail_groups = right.split(":") if right else []
            if more or len(head_groups) + len(tail_groups) > 7:
                return None
            groups = head_groups + ["0"] * (8 - len(head_groups) - len(tail_groups)) + tail_groups
        else:
            groups = s.split(":")
            if len(groups) != 8:
                return None
        value = 0
        for g in groups:
            if not 0 < len(g) <= 4:
                return None
            value = value << 16 | int(g, 16)
        return value
    except ValueError:  # a dot where a group should be
        return None


def _last(token: str) -> str:
    """The last group of an address as compared before parsing: no zero padding, lower case."""
    return token if "." in token else token.lstrip("0").lower()


def address_in(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The one address ``text`` spells, perhaps in brackets and with a port ("[2001:db8::2]:443",
    "198.18.1.2:80"), or None."""
    core = text
    if core.startswith("["):
        core = core[1:core.find("]")] if "]" in core else core[1:]
    elif core.count(":") == 1:  # an IPv4 address and its port
        core = core.partition(":")[0]
    if "." not in core and core.count(":") < 2:
        return None  # "cafe", "12": no address
    try:
        return ipaddress.ip_address(core)
    except ValueError:
        return None


def _is_address(run: str) -> bool:
    """Whether a run of address characters (a sentence's full stop after it allowed) is one address to scrub."""
    ip = address_in(run.rstrip("."))
    return ip is not None and ip not in _KEEP


def _any_address(value: Any, text: bool) -> Any:
    """`value` (str or bytes) with every address in it, whoever's, replaced by SCRUBBED (its brackets and port too)."""
    mark = SCRUBBED if text else SCRUBBED.encode()

    def one(m: re.Match[Any]) -> Any:
        run = m.group(0)
        shown = run if text else run.decode("ascii")
        if not _is_address(shown):
            return run
        return mark + run[len(shown.rstrip(".")):]  # a sentence's full stop stays (shown: run, as text)

    return _ADDRESS_RUN[text].sub(one, value)


def _client_fields(s: Any, text: bool) -> Any:
    """`s` (str or bytes) with every address in the value of a client-naming field ("X-Forwarded-For: …") scrubbed."""
    if not _client_seen(s):
        return s

    def field(m: re.Match[Any]) -> Any:
        whole, value = m.group(0), m.group(1)
        return whole[:len(whole) - len(value)] + _any_address(value, text)

    return _CLIENT_FIELD[text].sub(field, s)


def _numbers(s: Any, decimals: Sequence[Any]) -> list[tuple[int, int]]:
    """Where in ``s`` (text, or bytes) one of ``decimals`` is a number of its own: no letter or digit just before
    or after it, nor a decimal point with a digit beyond (``3323068674``, also ending a sentence; not
    ``33230686741``, ``3323068674.5`` or ``0.3323068674``)."""
    found = []
    dot = "." if isinstance(s, str) else b"."
    for decimal in decimals:
        at = s.find(decimal)
        while at >= 0:
            end = at + len(decimal)
            before, after = s[max(0, at - 2):at], s[end:end + 2]
            if not (before[-1:].isalnum() or before[-1:] == dot and before[:1].isdigit()
                    or after[:1].isalnum() or after[:1] == dot and after[1:].isdigit()):
                found.append((at, end))
            at = s.find(decimal, end)
    return found


def _inflate(data: bytes, encoding: str) -> tuple[bytes, bool, int]:
    """A compressed body inflated: (content, whether it was read to its end, the wbits it was read with).
    Stops at MAX_INFLATE bytes of content, or where the data stops making sense (then not to its end)."""
    if "gzip" in encoding:
        wbits = 31
    else:  # "deflate" is zlib's format (RFC 9110), but some servers send raw deflate
        wbits = 15 if _zlib_header(data) else -15
    out: list[bytes] = []
    size = 0
    rest = data
    member = wbits
    while rest:
        d = zlib.decompressobj(member)
        try:
            chunk = d.decompress(rest, MAX_INFLATE - size + 1)
        except zlib.error:
            return b"".join(out), False, wbits
        out.append(chunk)
        size += len(chunk)
        if size > MAX_INFLATE or d.unconsumed_tail:
            return b"".join(out)[:MAX_INFLATE], False, wbits
        if not d.eof:
            return b"".join(out), False, wbits  # cut short (a truncated body)
        rest = d.unused_data
        # after a stream, another, each known by its own first bytes: gzip may hold several members, and a second
        # stream of either kind after a clean one could hold an address (a helper's mutation pass: zlib after
        # zlib was kept unread). Other bytes after it were not read by inflating it: the body is not whole, and
        # they are searched as they are (QA: they could carry an address in plain text past a clean stream)
        member = 31 if rest[:2] == b"\x1f\x8b" else 15 if _zlib_header(rest) else 0
        if rest and not member:
            return b"".join(out), False, wbits
    return b"".join(out), True, wbits


def _zlib_header(data: bytes) -> bool:
    """Whether ``data`` begins as zlib data does (RFC 1950: deflate, and a header check a multiple of 31)."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def _compression(data: bytes, encoding: str) -> str | None:
    """How ``data`` is compressed, if it may be: by its own first bytes (gzip's magic, a zlib header), or by what
    the server said (``encoding``: every Content-Encoding it sent), which a server may leave out or get wrong."""
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    if _zlib_header(data) or "deflate" in encoding:
        return "deflate"
    return "gzip" if "gzip" in encoding else None


def _deflate(content: bytes, wbits: int) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return c.compress(content) + c.flush()


MAX_CLEAN_BLOBS = 1024  # blobs remembered as clean...
MAX_CLEAN_BLOB = 8192  # ...each at most this long in base64 (a certificate, not a page): 8 MiB at most


class Scrubber:
    """Replaces the given addresses (and, unless `interfaces` is false, every address of this machine's
    interfaces) with `SCRUBBED` in a measurement, in whatever spelling they appear."""

    def __init__(self, addresses: Iterable[str], *, interfaces: bool = True) -> None:
        self._v4: set[int] = set()
        self._v6: set[int] = set()
        self.addresses: list[str] = []
        self._last: frozenset[str] = frozenset()
        self._packed: list[bytes] = []
        self._packed_text: list[str] = []
        self._packed_json: list[bytes] = []
        self._state = threading.local()  # one scrub's nesting depth and what its gzip tokens may still inflate to
        self._v4_anchor: tuple[re.Pattern[str], re.Pattern[bytes]] | None = None
        # dashes, either order: "198-18-1-2.dsl.example", "ip-2-1-18-198.example"; and ".1.18." for in-addr.arpa
        self._dash_anchor: tuple[re.Pattern[str], re.Pattern[bytes]] | None = None
        self._underscore_anchor: tuple[re.Pattern[str], re.Pattern[bytes]] | None = None  # the same with "_"
        self._arpa_anchor: tuple[re.Pattern[str], re.Pattern[bytes]] | None = None
        self._middles: frozenset[tuple[str, str]] = frozenset()  # the middle octets of each, in either order
        self._wide: list[tuple[bytes, bytes]] = []  # UTF-16 spellings, and what replaces them
        self._wide_fixed: list[tuple[bytes, bytes]] = []  # the same, replaced in place (as long)
        self._forms: list[bytes] = []  # plain spellings, found in a binary structure whatever touches them
        # each IPv4 address as one decimal number ("ip_decimal": 3323068674, as ifconfig.co's JSON says it), in
        # text and in bytes
        self._decimals: tuple[list[bytes], list[str]] = ([], [])
        self._b64: tuple[list[str], list[bytes]] = ([], [])  # each address's spellings in base64 (`_b64_needles`)
        self._plain: list[bytes] = []  # those spellings as they are: what a run decoded must hold to be scrubbed
        self._seen6: dict[str, tuple[int, int] | None] = {}  # runs already looked at (times recur)
        # base64 blobs already decoded and found clean: certificates recur (a site's chain over TLS and QUIC, the
        # same CAs in every measurement), bodies rarely; bounded, and forgotten when an address is learnt
        self._clean_blobs: set[bytes] = set()
        self._interfaces = interfaces
        self._next_look = 0.0
        self._learn(addresses)
        if interfaces:
            self._look()

    def _look(self) -> None:
        self._next_look = time.monotonic() + REFRESH
        self._learn(interface_addresses())

    def learn(self, addresses: Iterable[str]) -> None:
        """Scrub ``addresses`` too from now on (this probe's public address, once the control helper said it)."""
        self._learn(addresses)

    def _learn(self, addresses: Iterable[str]) -> None:
        new = set()
        for a in addresses:
            try:
                ip = ipaddress.ip_address(a.split("%", 1)[0].strip("[]"))
            except (ValueError, AttributeError):
                continue
            if ip not in _KEEP and int(ip) not in (self._v4 if ip.version == 4 else self._v6):
                new.add(ip)
            mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
            if mapped is not None and mapped not in _KEEP and int(mapped) not in self._v4:
                new.add(mapped)  # ::ffff:198.51.100.11, as a dual-stack proxy forwards it: the IPv4 address too
        if not new:
            return
        v4 = self._v4 | {int(ip) for ip in new if ip.version == 4}
        v6 = self._v6 | {int(ip) for ip in new if ip.version == 6}
        last = {format(v & 0xFFFF, "x") if v & 0xFFFF else "" for v in v4 | v6}
        last |= {str(ipaddress.IPv4Address(v & 0xFFFFFFFF)) for v in v4 | v6}
        packed = [ipaddress.IPv4Address(v).packed for v in sorted(v4)]
        packed += [ipaddress.IPv6Address(v).packed for v in sorted(v6)]
        packed += [ipaddress.IPv6Address((0xFFFF << 32) | v).packed for v in sorted(v4)]
        self._middles = frozenset(pair for v in v4 for pair in ((str((v >> 16) & 0xFF), str((v >> 8) & 0xFF)),
                                                                 (str((v >> 8) & 0xFF), str((v >> 16) & 0xFF))))
        self._v4_anchor = self._anchor(v4, ".", False)
        self._dash_anchor = self._anchor(v4, "-", True)
        self._underscore_anchor = self._anchor(v4, "_", True)
        self._arpa_anchor = self._anchor(v4, ".", True, forward=False)
        wide = [str(ipaddress.IPv4Address(v)) for v in v4] + [str(ipaddress.IPv6Address(v)) for v in v6]
        self._wide = [(a.encode(codec), SCRUBBED.encode(codec)) for a in sorted(wide, key=len, reverse=True)
                      for codec in ("utf-16-le", "utf-16-be")]
        self._wide_fixed = [(w, ("x" * len(w.decode(codec))).encode(codec)) for w, _ in self._wide
                            for codec in ("utf-16-le" if w[1:2] == b"\0" else "utf-16-be",)]
        forms = set(wide)
        for v in v4:
            octets = [str(v >> shift & 0xFF) for shift in (24, 16, 8, 0)]
            forms |= {sep.join(order) for sep in "-_" for order in (octets, octets[::-1])}
        self._forms = sorted((f.encode() for f in forms), key=len, reverse=True)
        # and as eight hex digits ("c6120102", "0xC6120102"), as some servers and logs write it
        numbers = [str(v) for v in sorted(v4)]
        numbers += [f"{x}{v:08{case}}" for v in sorted(v4) for x in ("", "0x", "0X") for case in "xX"
                    if x or not f"{v:08x}".isdigit()]  # not bare when it reads as a decimal number
        numbers = list(dict.fromkeys(numbers))
        self._decimals = ([n.encode() for n in numbers], numbers)
        # in tokens: the usual spellings, an IPv6 address's hex digits in either case and written out whole, and an
        # IPv4 address mapped in hex (``::ffff:c612:102``, as dual-stack servers write it); not every spelling the
        # text search finds: each costs six searches of every measurement's JSON (`needed`)
        spellings = wide + [w.upper() for w in wide if ":" in w]
        spellings += [ipaddress.IPv6Address(v).exploded for v in sorted(v6)]
        spellings += [f"::ffff:{v >> 16:x}:{v & 0xFFFF:x}" for v in sorted(v4)]
        spellings = list(dict.fromkeys(spellings))
        needles = _b64_needles(spellings)
        # and base64 inside base64 (a token whose JSON holds a token: QA), for the usual spellings: what encodes
        # the characters that encode them, layer on layer as deep as tokens are followed (MAX_NESTING; needles for
        # two layers only left a token three or four layers deep unsearched, a helper's mutation pass found). Three
        # times as many needles each layer deeper: the IPv4 addresses' dotted spellings only
        inner = _b64_needles(wide[:len(v4)])
        for _ in range(MAX_NESTING - 1):
            inner = _b64_needles(n for n in inner if "-" not in n and "_" not in n)
            needles += inner
        needles = sorted(set(needles))
        self._b64 = (needles, [n.encode("ascii") for n in needles])
        self._plain = [w.encode() for w in spellings]
        self._last, self._packed = frozenset(last), sorted(packed, key=len, reverse=True)  # a mapped form first
        # the packed bytes that a text body (every byte under 0x80) can hold as they are: 100.64.1.2 is "d@\x01\x02"
        # (QA: only binary bodies were searched for them); not those that read as text, which would be words
        # ("http" is 104.116.116.112)
        self._packed_text = [t for t in (p.decode("ascii") for p in self._packed if p.isascii())
                             if not t.isprintable() and any(c.isprintable() and not c.isspace() for c in t)]
        # (not one of blank space and control characters alone: 10.10.10.10 is four line feeds, QA)
        import orjson

        self._packed_json = [orjson.dumps(t)[1:-1] for t in self._packed_text]  # as `needed` sees them
        self._seen6 = {}
        self._clean_blobs = set()  # what was clean may hold a newly learnt address
        self._v4, self._v6 = v4, v6
        shown = [str(ipaddress.IPv4Address(v)) for v in v4] + [str(ipaddress.IPv6Address(v)) for v in v6]
        self.addresses = sorted(shown, key=len, reverse=True)

    @staticmethod
    def _anchor(v4: set[int], sep: str, reverse: bool, *, forward: bool = True
                ) -> tuple[re.Pattern[str], re.Pattern[bytes]] | None:
        """The middle two octets of each address between separators (".18.1." for 198.18.1.2; with
        `reverse` also ".1.18."): a literal first character, which the regex engine skips to at C speed."""
        if not v4:
            return None
        esc = re.escape(sep)
        middles = set()
        for v in v4:
            b, c = (v >> 16) & 0xFF, (v >> 8) & 0xFF
            if forward:
                middles.add(rf"0{{0,2}}{b}{esc}0{{0,2}}{c}")
            if reverse:
                middles.add(rf"0{{0,2}}{c}{esc}0{{0,2}}{b}")
        anchor = esc + "(?:" + "|".join(sorted(middles)) + ")" + esc
        return re.compile(anchor), re.compile(anchor.encode())

    # -- finding ------------------------------------------------------------------------------------

    def _mine6(self, s: str) -> bool:
        six_to_four = bool(self._v4) and s[:5].lower() == "2002:"  # its IPv4 address is in the middle
        if not six_to_four and _last(s.rpartition(":")[2]) not in self._last:
            return False  # the cheap test that turns away times, MAC addresses and the like
        colons = s.count(":")
        if not (colons <= 8 if "::" in s else colons == 7 or colons == 6 and "." in s):
            return False  # too many or too few groups for an address
        v = _v6_value(s)
        if v is None:
            return False
        if v in self._v6 or (v >> 32 in (0, 0xFFFF, _NAT64) and v & 0xFFFFFFFF in self._v4):
            return True  # ours, or ours mapped (::ffff:a.b.c.d) or translated (64:ff9b::a.b.c.d)
        return six_to_four and v >> 112 == 0x2002 and (v >> 80) & 0xFFFFFFFF in self._v4

    def _span6(self, run: str) -> tuple[int, int] | None:
        """Where in a run of address characters one of our IPv6 addresses (or a mapped IPv4 one) is spelled."""
        try:
            return self._seen6[run]
        except KeyError:
            pass
        if len(self._seen6) >= 4096:
            self._seen6.clear()
        span = self._seen6[run] = self._find6(run)
        return span

    def _find6(self, run: str) -> tuple[int, int] | None:
        a, b = len(run) - len(run.lstrip(".")), len(run.rstrip("."))
        if b - a <= _MAX_RUN and self._mine6(run[a:b]):
            return a, b
        # glued to other text by a colon: a label before it ("ip:2001:db8::2"), a port or a colon after it
        # ("2001:db8::2:8000", "2001:db8::2:"), or both ("from:2001:db8::2:443"); one or two groups off
        # either end, or off both
        starts, ends = [a], [b]
        i = a - 1
        for _ in range(2):
            i = run.find(":", i + 1, b)
            if i < 0 or i >= b - 1:
                break
            starts.append(i + 1)
        i = b
        for _ in range(2):
            i = run.rfind(":", a + 1, i)
            if i <= a:
                break
            ends.append(i)
        for lo, hi in sorted(((lo, hi) for lo in starts for hi in ends if (lo, hi) != (a, b)),
                             key=lambda span: (span[0] != a) + (span[1] != b)):  # one end cut before both
            if 0 < hi - lo <= _MAX_RUN and self._mine6(run[lo:hi]):
                return lo, hi
        return None

    def _spans4(self, run: str, sep: str = ".", reverse: bool = False) -> list[tuple[int, int]]:
        """Where in a run of digits and separators one of our IPv4 addresses is spelled (zero padding allowed;
        with `reverse` its octets in either order)."""
        run = run.rstrip(sep)
        parts = run.split(sep)
        v4 = self._v4
        if len(parts) == 4 and (_quad(parts) in v4 or (reverse and _quad(parts[::-1]) in v4)):
            return [(0, len(run))]  # the usual case: one address
        out = []
        at = [0]
        for p in parts:
            at.append(at[-1] + len(p) + 1)
        middles = self._middles
        bare = [p.lstrip("0") or p[:1] for p in parts]  # a window is parsed only if its middle is one of ours
        tried = 0
        for i in range(len(parts) - 3):
            if (bare[i + 1], bare[i + 2]) not in middles or not (bare[i] and bare[i + 3]):
                continue
            window = parts[i:i + 4]
            if _quad(window) in v4 or (reverse and _quad(window[::-1]) in v4):
                out.append((at[i], at[i + 4] - 1))
                continue
            tried += 1
            if tried > MAX_GLUED:  # a run of our address glued to itself, over and over (hostile): at C speed
                return out + self._spelled(run, sep, reverse, at[i])
            glued = self._glued(window, reverse)
            if glued is not None:
                out.append((at[i] + glued[0], at[i + 3] + glued[1]))
        return out

    def _spelled(self, run: str, sep: str, reverse: bool, start: int) -> list[tuple[int, int]]:
        """Where in ``run`` from ``start`` one of our IPv4 addresses is written plainly with ``sep`` (either order
        with `reverse`), whatever touches it: what `_glued` finds, found with ``str.find``."""
        out = []
        for v in self._v4:
            octets = [str(v >> shift & 0xFF) for shift in (24, 16, 8, 0)]
            for spelling in {sep.join(octets), *((sep.join(octets[::-1]),) if reverse else ())}:
                at = run.find(spelling, start)
                while at >= 0:
                    out.append((at, at + len(spelling)))
                    at = run.find(spelling, at + len(spelling))
        return out

    def _glued(self, window: list[str], reverse: bool) -> tuple[int, int] | None:
        """One of our addresses with other digits touching it (``ip=198.18.1.2198.18.1.2``, ``5198.18.1.2``):
        where an edge of ``window`` is no octet (over three digits, or over 255), the last digits of its first
        part and the first of its last that make our address with the middle. (Where the edge is an octet,
        ``198.18.1.23`` is someone else's address, not ours with a 3 after it.) Where it starts in the first
        part, and ends in the last; None when nowhere."""
        first, last = window[0], window[3]
        if _octet(first) and _octet(last):
            return None
        heads = [first] if _octet(first) else [first[-k:] for k in (1, 2, 3) if k < len(first)]
        tails = [last] if _octet(last) else [last[:k] for k in (1, 2, 3) if k < len(last)]
        for head in heads:
            if len(head) > 1 and head[0] == "0":
                continue  # an octet glued on is written plainly: no zero padding to guess at
            for tail in tails:
                quad = [head, window[1], window[2], tail]
                if _quad(quad) in self._v4 or (reverse and _quad(quad[::-1]) in self._v4):
                    return len(first) - len(head), len(tail)
        return None

    def _arpa(self, s: str | bytes, text: bool) -> list[tuple[int, int]]:
        """Our IPv4 addresses reversed under in-addr.arpa ("2.1.18.198.in-addr.arpa")."""
        found: list[tuple[int, int]] = []
        assert self._arpa_anchor is not None
        _, _, _, tail, head = _TEXT if text else _BYTES
        for lo, hi in _runs(s, self._arpa_anchor[0 if text else 1], tail, head, 4):
            after = s[hi:hi + 12]
            run = s[lo:hi]
            if isinstance(after, bytes):
                after, run = after.decode("latin-1"), run.decode("ascii")  # type: ignore[union-attr]
            if after.lower() != "in-addr.arpa":
                continue
            dotted = str(run).rstrip(".")
            parts = dotted.split(".")
            if len(parts) >= 4 and _quad(parts[-4:][::-1]) in self._v4:
                found.append((lo + len(dotted) - len(".".join(parts[-4:])), lo + len(dotted)))
        return found

    def _ip6_arpa(self, s: str | bytes, text: bool) -> list[tuple[int, int]]:
        """Our IPv6 addresses nibble-reversed under ip6.arpa ("2.0.0.0.…8.b.d.0.1.0.0.2.ip6.arpa")."""
        found = []
        for m in _IP6_ARPA[text].finditer(s):
            nibbles = m.group(1)
            digits = (nibbles if text else nibbles.decode("ascii"))[::-1].replace(".", "")
            if int(digits, 16) in self._v6:
                found.append((m.start(1), m.end(1) - 1))
        return found

    def _escaped(self, s: str | bytes, text: bool) -> list[tuple[int, int]]:
        """Our addresses spelled with escaped characters (`_ESCAPE`): each stretch of escapes, widened by the
        length of an address on either side (and to the edges of the address characters there), is searched
        with its escapes undone, and what is found mapped back. Only the stretches: a page's rare "%3A" does not
        cost a copy of the whole page."""
        found: list[tuple[int, int]] = []
        spans = [m.span() for hints, pattern in _ESCAPE_KINDS[text] if any(h in s for h in hints)
                 for m in pattern.finditer(s)]
        for lo, hi in _windows(s, spans, _ESCAPE_EDGE[text]):  # not from inside a number or a name
            undone = _unescaped(s[lo:hi])
            if undone is not None:
                plain, at = undone
                found += [(lo + at[x], lo + at[y]) for x, y in self._spans(plain, escaped=False, broken=True)]
        return found

    def _broken(self, s: str | bytes, text: bool, escaped: bool) -> list[tuple[int, int]]:
        """Our addresses with breaks a reader does not see inside them (`_BREAK_TEXT`: ``2001:db8:<wbr>85a3::2``,
        ``198.18.&#8203;1.2``): each stretch of breaks between address characters, widened by the length of an
        address on either side (and to the edges of the address characters there), is searched with every break in
        it taken out (and, with `escaped`, its escapes undone), and what is found mapped back, the breaks inside it
        with it."""
        sure = _SURE[text]
        seeds = [(a, b) for hints, pattern in _BREAK_SEEDS[text] if any(h in s for h in hints)
                 for a, b in (m.span() for m in pattern.finditer(s)) if s[a - 1:a] in sure or s[b:b + 1] in sure]
        found: list[tuple[int, int]] = []
        breaks = _BREAKS[text]
        for lo, hi in _windows(s, seeds, _ADDRESS_EDGE[text]):  # not from inside an address
            window = s[lo:hi]
            parts: list[Any] = []
            at: list[int] = []  # where in the window each character of `plain` sits
            i = 0
            for m in breaks.finditer(window):
                parts.append(window[i:m.start()])
                at.extend(range(i, m.start()))
                i = m.end()
            parts.append(window[i:])
            at.extend(range(i, len(window)))
            plain = ("" if text else b"").join(parts)
            found += [(lo + at[x], lo + at[y - 1] + 1) for x, y in self._found(plain, escaped, False) if y > x]
        return found

    def _spans(self, s: str | bytes, escaped: bool = True, broken: bool | None = None) -> list[tuple[int, int]]:
        """Every span of `s` that spells one of our addresses, sorted, overlapping ones merged, with the brackets
        around it and the port after it; with `escaped`, also where it is spelled with escaped characters
        (``198&#46;18&#46;1&#46;2``); with `broken` (by default as `escaped`), also where tags or invisible
        characters break it (``2001:db8:<wbr>85a3::2``)."""
        found = self._found(s, escaped, escaped if broken is None else broken)
        if not found:
            return found
        found.sort()
        merged: list[tuple[int, int]] = []
        text = isinstance(s, str)
        port = _PORT[text]
        bracket = ("[", "]") if text else (b"[", b"]")
        for a, b in found:
            if a > 0 and s[a - 1:a] == bracket[0] and s[b:b + 1] == bracket[1]:
                a, b = a - 1, b + 1  # "[2001:db8::2]:443": the brackets go, and the port after them
            m = port.match(s, b)
            if m is not None:
                b = m.end()  # our socket's port: with the time, it can name a user behind a carrier-grade NAT
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
            else:
                merged.append((a, b))
        return merged

    def _found(self, s: str | bytes, escaped: bool, broken: bool) -> list[tuple[int, int]]:
        """The spans of `s` that spell one of our addresses, unsorted and unmerged (`_spans`)."""
        text = isinstance(s, str)
        v6_anchor, v6_tail, v6_head, v4_tail, v4_head = _TEXT if text else _BYTES
        found: list[tuple[int, int]] = []
        if self._v4 or self._v6:
            for lo, hi in _runs(s, v6_anchor, v6_tail, v6_head, 4):  # a group has at most 4 digits
                piece = s[lo:hi]
                span = self._span6(piece if isinstance(piece, str) else piece.decode("ascii"))
                if span is not None:
                    found.append((lo + span[0], lo + span[1]))
            if _PCT_SEEN[text].search(s):
                anchor, tail = _PCT_TEXT if text else _PCT_BYTES
                for lo, hi in _runs(s, anchor, tail, v6_head, 4):
                    run = s[lo:hi] if text else s[lo:hi].decode("ascii")  # type: ignore[union-attr]
                    if "%" in run:
                        decoded, at = _decode_colons(run)  # type: ignore[arg-type]
                        span = self._span6(decoded)
                        if span is not None:
                            found.append((lo + at[span[0]], lo + at[span[1]]))
        if self._v4_anchor is not None:
            for lo, hi in _runs(s, self._v4_anchor[0 if text else 1], v4_tail, v4_head, 4):
                run = s[lo:hi] if text else s[lo:hi].decode("ascii")  # type: ignore[union-attr]
                found += [(lo + a, lo + b) for a, b in self._spans4(run)]  # type: ignore[arg-type]
            assert self._dash_anchor is not None and self._underscore_anchor is not None
            for sep, joined, (tail, head) in (("-", self._dash_anchor, _DASHED[text]),
                                              ("_", self._underscore_anchor, _UNDERSCORED[text])):
                for lo, hi in _runs(s, joined[0 if text else 1], tail, head, 4):
                    run = s[lo:hi] if text else s[lo:hi].decode("ascii")  # type: ignore[union-attr]
                    found += [(lo + a, lo + b) for a, b in self._spans4(run, sep, True)]  # type: ignore[arg-type]
            if _ARPA_SEEN[text].search(s):
                found += self._arpa(s, text)
        if self._v6 and _IP6_ARPA_SEEN[text].search(s):
            found += self._ip6_arpa(s, text)
        found += _numbers(s, self._decimals[text])
        if escaped:
            found += self._escaped(s, text)
        if broken:
            found += self._broken(s, text, escaped)
        return found

    # -- replacing ----------------------------------------------------------------------------------

    def _tokens(self, s: Any) -> Any:
        """``s`` (text or bytes) with each run of base64 characters that encodes one of our addresses decoded,
        scrubbed (`raw`) and encoded again as it was written; ``s`` itself when there is none."""
        text = isinstance(s, str)
        needles = self._b64[0] if text else self._b64[1]
        gz = _GZIP_B64[text]
        flat = _flat(s, text)  # a needle cut by a line break is whole here
        if not any(n in flat for n in needles) and gz not in flat:
            return s
        if flat is not s:
            s = self._wrapped(s, text)
        found: list[tuple[int, int, str]] = []
        decoded: dict[Any, str | None] = {}  # a token that recurs is decoded once
        for m in _B64_RUN[text].finditer(s):  # at C speed; only where a needle is (an address's 8 characters at least)
            token = m.group(0)
            if not any(n in token for n in needles) and gz not in token:
                continue
            if token in decoded:
                clean = decoded[token]
            elif len(decoded) < MAX_TOKENS or not any(n in token for n in needles):
                # (a gzip token is bounded by what it may inflate to, `TOKEN_INFLATE_BUDGET`, not by their number:
                # innocent ones past MAX_TOKENS were replaced, QA)
                clean = decoded[token] = self._clean_run(token if text else token.decode("ascii"))
            else:
                clean = SCRUBBED
            if clean is not None:
                found.append((m.start(), m.end(), clean))
        return _spliced(s, found)

    def _clean_run(self, run: str) -> str | None:
        """`_clean_token` for a run of base64 characters, which may be a URL's path (``t/eyJ…/next/page``): its
        segments between slashes first, each that holds a needle on its own, the others kept as they are; the run
        whole only when no segment encodes our address (a standard token has slashes of its own)."""
        if _GZIP_B64[True] in run:
            return self._clean_gzip(run)
        if "/" in run:
            parts = run.split("/")
            needles = self._b64[0]
            cleaned = [self._clean_token(p) if len(p) >= 8 and any(n in p for n in needles) else None for p in parts]
            if any(c is not None for c in cleaned):
                return "/".join(p if c is None else c for p, c in zip(parts, cleaned))
        return self._clean_token(run)

    def _wrapped(self, s: Any, text: bool) -> Any:
        """``s`` with each block of base64 broken over lines (MIME's 76 characters, PEM's 64; the line breaks
        written as they are or escaped, as in JSON) whose data holds our address scrubbed, and wrapped again as it
        was: a needle cut by a line break was not found (QA)."""
        found: list[tuple[int, int, str]] = []
        marks = [*self._b64[0], _GZIP_B64[True]]
        for m in _WRAPPED[text].finditer(s):
            block = m.group(0) if text else m.group(0).decode("ascii")
            parts = _LINE_BREAK.split(block)  # line, break, line, break, …, line (maybe empty)
            lines, breaks = parts[::2], parts[1::2]
            joined = "".join(lines)
            if not any(n in joined for n in marks):
                continue
            # MIME's and PEM's shape: full lines of one width (whole groups of four), then a shorter one; else the
            # lines may be separate values, joined only where a break cuts a needle (one a line holds whole is
            # the run's own, `_tokens`), lest they be re-cut across each other (QA)
            width, full = len(lines[0]), lines[:-1] if len(lines) > 1 and not lines[-1] else lines  # (a block that
            # ended with its break has an empty last line)
            stream = width >= 16 and width % 4 == 0 and all(len(line) == width for line in full[1:-1]) \
                and len(full[-1]) <= width and len(set(breaks)) == 1
            if not stream and sum(joined.count(n) for n in marks) <= sum(line.count(n) for line in lines
                                                                          for n in marks):
                continue
            clean = self._clean_run(joined)
            if clean is None:
                continue
            if stream:  # wrapped again at its width, with its break (and the block's last break, if it ended so)
                again = breaks[0].join(clean[i:i + width] for i in range(0, len(clean), width)) \
                    + (breaks[0] if not lines[-1] else "")
            else:  # each line as long as it was, its break as it was; the last takes the rest
                cut, i = [], 0
                for line in lines[:-1]:
                    cut.append(clean[i:i + len(line)])
                    i += len(line)
                cut.append(clean[i:])
                again = "".join(c + b for c, b in zip(cut, [*breaks, ""]))
            found.append((m.start(), m.end(), again))
        return _spliced(s, found)

    def _clean_gzip(self, run: str) -> str | None:
        """A run holding gzip data in base64 (``H4sI…``, its magic and method: a compressed token or cookie) with
        our addresses scrubbed from what each such token inflates to, compressed and encoded again as it was, and
        what follows a token in the run (a URL's path) kept; None when there is none of them. A token that would
        inflate past `MAX_TOKEN_INFLATE`, or past what the scrub has left of `TOKEN_INFLATE_BUDGET`, or that lies
        deeper than `MAX_NESTING` tokens, cannot be looked into: it is replaced by SCRUBBED."""
        state = self._state
        out: list[str] = []
        rest, changed = run, False
        while (at := rest.find(_GZIP_B64[True])) >= 0:
            head, body = rest[:at], rest[at:]
            if head:
                cleaned = self._clean_run(head) if len(head) >= 8 and any(n in head for n in self._b64[0]) else None
                out.append(head if cleaned is None else cleaned)
                changed |= cleaned is not None
            if getattr(state, "depth", 0) >= MAX_NESTING or getattr(state, "budget", TOKEN_INFLATE_BUDGET) <= 0:
                return "".join(out) + SCRUBBED
            stripped = body.rstrip("=")
            url = "-" in body or "_" in body
            chunk = stripped[:len(stripped) - (1 if len(stripped) % 4 == 1 else 0)]
            data = _b64_decode(chunk, url)
            d = zlib.decompressobj(31)
            limit = min(MAX_TOKEN_INFLATE, getattr(state, "budget", TOKEN_INFLATE_BUDGET))
            try:
                content = d.decompress(data, limit + 1) if data is not None else b""
            except zlib.error:
                content, data = b"", None
            if data is None or not content and not d.eof:  # no gzip after all: the characters as they are
                out.append(body[:4])
                rest = body[4:]
                continue
            state.budget = getattr(state, "budget", TOKEN_INFLATE_BUDGET) - len(content)
            if len(content) > limit or d.unconsumed_tail:
                return "".join(out) + SCRUBBED
            # where the token ends: the characters of the bytes the gzip member took (a URL's path goes on after)
            used = len(data) - len(d.unused_data) if d.eof else len(data)
            end = min(len(stripped), -(-used * 4 // 3)) if d.eof else len(body)
            token, rest = body[:end], body[end:]
            padded = bool(rest) and not rest.strip("=")
            if padded:
                token, rest = body, ""
            # a standard-alphabet token as long as whole groups of four may be padded or not: padded, as base64 is
            # written unless told otherwise (QA: one re-encoded unpadded no longer decoded)
            padded = padded or not url and len(token) % 4 == 0
            clean = self._raw_inside(content)
            if clean == content:
                out.append(token)
                continue
            encoded = base64.b64encode(_deflate(clean, 31), altchars=b"-_" if url else None).decode("ascii")
            out.append(encoded if padded else encoded.rstrip("="))
            changed = True
        if rest:
            cleaned = self._clean_run(rest) if len(rest) >= 8 and any(n in rest for n in self._b64[0]) else None
            out.append(rest if cleaned is None else cleaned)
            changed |= cleaned is not None
        return "".join(out) if changed else None

    def _raw_inside(self, data: bytes) -> bytes:
        """`raw` of what a token holds, one level deeper inside tokens (`MAX_NESTING`)."""
        state = self._state
        state.depth = getattr(state, "depth", 0) + 1
        try:
            return self.raw(data)
        finally:
            state.depth -= 1

    def _clean_token(self, token: str) -> str | None:
        """A run of base64 characters with our addresses scrubbed from what it encodes, written as it was (the same
        alphabet, padded or not, the characters before the data's first byte kept); None when it encodes none of
        them. Where the data begins is not known (``t=eyJ…`` is one run): each of four starts is tried."""
        body = token.rstrip("=")
        padded = len(body) != len(token)
        # the URL-safe alphabet where it shows, or where nothing says otherwise and there is no padding (a JWT's
        # parts are unpadded base64url; re-encoded in the standard alphabet, '+' and '/' would break them)
        url = "-" in body or "_" in body or not ("+" in body or "/" in body or padded)
        for k in range(4):
            chunk = body[k:]
            chunk = chunk[:len(chunk) - (1 if len(chunk) % 4 == 1 else 0)]  # one character alone holds no byte
            data = _b64_decode(chunk, url)
            if data is None or not (any(p in data for p in self._plain) or any(n in data for n in self._b64[1])):
                continue  # (the spelling a needle was found for is in the data decoded from the right start; or
                # the base64 of it, a token inside a token, which `raw` decodes in turn)
            if getattr(self._state, "depth", 0) >= MAX_NESTING:
                return SCRUBBED  # a token this deep inside tokens is not looked into, nor kept
            clean = self._raw_inside(data)
            if clean == data:
                continue
            encoded = base64.b64encode(clean, altchars=b"-_" if url else None).decode("ascii")
            return body[:k] + (encoded if padded else encoded.rstrip("=")) + body[k + len(chunk):]
        return None

    def text(self, s: str) -> str:
        s = self._tokens(s)
        for p in self._packed_text:
            if p in s:
                s = s.replace(p, SCRUBBED)
        if ":" not in s and "." not in s and "%" not in s and "-" not in s and "_" not in s and "&" not in s \
                and "\\" not in s and not any(d in s for d in self._decimals[1]):
            return s
        s = _client_fields(s, True)
        spans = self._spans(s)
        if not spans:
            return s
        out, at = [], 0
        for a, b in spans:
            out += [s[at:a], SCRUBBED]
            at = b
        out.append(s[at:])
        return "".join(out)

    def raw(self, b: bytes) -> bytes:
        b = self._tokens(b)
        if b"\0" in b:  # a UTF-16 page: its usual spellings
            for wide, scrubbed in self._wide:
                b = b.replace(wide, scrubbed)
        b = _client_fields(b, False)
        spans = self._spans(b)
        if spans:
            out, at = [], 0
            for x, y in spans:
                out += [b[at:x], SCRUBBED.encode()]
                at = y
            out.append(b[at:])
            b = b"".join(out)
        for p in self._packed:  # binary forms, as in a certificate's IP SAN
            b = b.replace(p, b"\0" * len(p))
        return b

    def fixed(self, b: bytes) -> bytes:
        """A binary structure (a certificate, a DNS message) with our addresses overwritten in place, so that it
        still parses: their characters with ``x``, their packed bytes with zeros. Found even when digits touch
        them (in DER the next field's tag, ``0`` or ``1``, follows a string)."""
        if b"\0" in b:
            for wide, same in self._wide_fixed:
                b = b.replace(wide, same)
        spans = self._spans(b)
        if spans:
            buf = bytearray(b)
            for x, y in spans:
                buf[x:y] = b"x" * (y - x)
            b = bytes(buf)
        for form in self._forms:
            b = b.replace(form, b"x" * len(form))
        for p in self._packed:
            b = b.replace(p, b"\0" * len(p))
        return b

    def _leaks(self, raw: bytes, structure: bool, bare: bool = False) -> bool:
        """Whether decoded bytes may hold an address to scrub (or a client-naming field). A ``bare`` structure (a
        DNS message's bare base64 string) is only overwritten in place by the walk (`fixed`): no tokens, header
        fields or inflating in it, so only what `fixed` looks for counts (QA: a DNS message whose random ID read
        as a zlib header, 0x18B4, was copied unchanged instead of left as it came)."""
        found = (any(p in raw for p in self._packed) or bool(self._spans(raw))
                 or (structure and any(f in raw for f in self._forms))
                 or (b"\0" in raw and any(wide in raw for wide, _ in self._wide)))
        if found or bare:
            return found
        return (_client_seen(raw) or self._tokens(raw) is not raw
                or _compression(raw, "") is not None)  # compressed, said so or not: inflated by the walk

    def needed(self, obj: Any) -> bool:
        """Whether `obj` may hold an address: one C-speed search of its JSON for anything shaped like an
        address, then of each base64 blob in it (bodies, certificates) decoded."""
        import orjson

        blob = orjson.dumps(obj)
        if b"\\" in blob and _GLUING_ESCAPE.search(blob):
            return True  # a JSON escape (\u0001, \b) glues hex digits to what follows: let the walk see the strings
        if any(p in blob for p in self._packed_json):
            return True  # our packed bytes in a text body (QA: the walk was not reached for them alone)
        if self._spans(blob) or _client_seen(blob) or _COMPRESSED.search(blob) or self._tokens(blob) is not blob \
                or b"\\\\" in blob and self._spans(blob.replace(b"\\\\", b"\\")):  # "\u002e" in a string
            return True  # (a compressed body is inflated by the walk: no cheaper way to look inside it)
        blobs: list[tuple[bytes, bool]] = []  # and whether each is a bare structure (a DNS message)
        if b'"base64"' in blob:
            blobs += [(m.group(1) or m.group(2), False) for m in _BASE64_DATA.finditer(blob)]
        if b'"raw_response"' in blob or b'"x_ech"' in blob:
            blobs += [(data, True) for data in _BARE_DATA.findall(blob)]
        for data, bare in blobs:
            key = b"!" + data if bare else data  # (clean as a bare structure is not clean as a body: fewer looks)
            if key in self._clean_blobs:
                continue
            try:
                raw = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                return True
            if self._leaks(raw, bare or raw[:1] == b"0" and raw[1:2] in _DER_LONG, bare):  # a certificate: DER
                return True
            if len(data) <= MAX_CLEAN_BLOB:
                if len(self._clean_blobs) >= MAX_CLEAN_BLOBS:
                    self._clean_blobs.clear()
                self._clean_blobs.add(key)
        return False

    def __call__(self, obj: Any) -> Any:
        """A scrubbed copy of a JSON-like value (the value itself when nothing needs scrubbing)."""
        if self._interfaces and time.monotonic() >= self._next_look:
            self._look()
        self._state.depth, self._state.budget = 0, TOKEN_INFLATE_BUDGET
        if not self.addresses or not self.needed(obj):
            return obj
        self._state.budget = TOKEN_INFLATE_BUDGET  # (the quick search may have inflated some: the walk does again)
        return self._walk(obj)

    def _walk(self, obj: Any, structure: bool = False) -> Any:
        if not self.addresses:
            return obj
        if isinstance(obj, str):
            return self.text(obj)
        if type(obj) is int and obj in self._v4:  # our IPv4 address as a JSON number (a helper's or a site's
            return SCRUBBED  # "ip_decimal": 3323068674, kept as the control answer came: QA)
        if isinstance(obj, (list, tuple)):  # a tuple is written as a JSON array too: it was passed over unread
            if len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], str) \
                    and obj[0].lower() in _CLIENT_KEY:  # a [name, value] pair of headers_list
                return [self.text(obj[0]), self.text(_any_address(obj[1], True))]
            return [self._walk(v, structure) for v in obj]
        if isinstance(obj, dict):
            if obj.get("format") == "base64" and isinstance(obj.get("data"), str) and len(obj) == 2:
                try:
                    raw = base64.b64decode(obj["data"], validate=True)
                except (binascii.Error, ValueError):
                    return {"format": "base64", "data": self.text(obj["data"])}
                scrubbed = self.fixed(raw) if structure else self.raw(raw)
                return {"format": "base64", "data": base64.b64encode(scrubbed).decode()}
            out: dict[Any, Any] = {}
            for k, v in obj.items():
                key = self.text(k) if isinstance(k, str) else k
                if not isinstance(k, str):
                    out[key] = self._walk(v)
                elif k in _BARE_BASE64 and isinstance(v, str):
                    out[key] = self._bare(v)
                elif k in _STRUCTURES:
                    out[key] = self._walk(v, True)
                elif k.lower() in _CLIENT_KEY and isinstance(v, str):
                    out[key] = self.text(_any_address(v, True))
                else:
                    out[key] = self._walk(v)
            self._compressed_body(obj, out)
            return out
        return obj

    def _bare(self, data: str) -> str:
        """A bare base64 string of a binary structure (a DNS message), scrubbed in place."""
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return self.text(data)
        return base64.b64encode(self.fixed(raw)).decode("ascii")

    def _compressed_body(self, obj: dict[Any, Any], out: dict[Any, Any]) -> None:
        """When ``obj`` is a response whose base64 body the server compressed: inflate it, scrub the content, and
        when something was scrubbed (or inflating stopped at MAX_INFLATE) write it compressed again the same way."""
        body, headers, pairs = obj.get("body"), obj.get("headers"), obj.get("headers_list")
        if not isinstance(body, dict) or body.get("format") != "base64" or not isinstance(body.get("data"), str):
            return
        # every Content-Encoding the server sent, from headers (its first) and headers_list (all); the body's own
        # first bytes count too: a body said "identity, gzip", "x-gzip, identity" or nothing was kept unread (QA)
        said = [str(v) for k, v in (headers.items() if isinstance(headers, dict) else ())
                if isinstance(k, str) and k.lower() == "content-encoding"]
        said += [str(p[1]) for p in pairs if isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)
                 and p[0].lower() == "content-encoding"] if isinstance(pairs, list) else []
        try:
            data = base64.b64decode(body["data"], validate=True)
        except (binascii.Error, ValueError):
            return
        kind = _compression(data, ", ".join(said).lower())
        if kind is None:
            return
        content, whole, wbits = _inflate(data, kind)
        if not content and not whole:
            return  # not compressed after all (QA: a plain body said gzip was then kept as it came, unscrubbed)
        scrubbed = self.raw(content)
        capped = len(content) >= MAX_INFLATE and not whole
        if scrubbed == content and not capped:
            if whole:  # every byte inflated, and nothing of ours in it: the bytes as they came (not searched as
                out["body"] = body  # text, where compressed bytes could look like a packed address by chance)
            # else the bytes past where inflating stopped were not inflated: they stay as the walk left them,
            # searched as they are (QA: plain text after a gzip member kept an address)
            return
        out["body"] = {"format": "base64", "data": base64.b64encode(_deflate(scrubbed, wbits)).decode("ascii")}
        if capped:
            out["body_is_truncated"] = True
