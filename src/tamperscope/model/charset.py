"""A page's bytes as text: UTF-8 when they are, else the charset its headers or its <meta> declare.

The verdict function (`model.consistency`), the fingerprint matcher (`wire.fingerprints`), the analysis's
unrecognised pages and the explorer all read a body through `decode_body`, so a page in KOI8-R or windows-1251
reads the same everywhere (a Russian ISP's blockpage matched its fingerprint in the matcher alone, not in the
verdicts, which decoded it as UTF-8 with replacement characters).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping, Sequence
from typing import TypeAlias

Headers: TypeAlias = Mapping[str, str] | Sequence[tuple[str, str]] | None

# One run of spaces after "=", and a second only after a quote: `\s*["']?\s*` split one run of spaces
# between two loops in every way there is, and "charset=" and 40,000 spaces took 20 s (a server says it).
_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*(?:["']\s*)?([A-Za-z0-9_.:-]{1,40})""", re.I)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*(?:["']\s*)?([A-Za-z0-9_.:-]{1,40})""", re.I)
_CHARSET_SNIFF = 4096  # bytes of body searched for <meta charset>


# Python text codecs that are no charset a page can be in: escape and transfer formats (a "charset=
# unicode_escape" body would be read as escape sequences, lone surrogates included), IDNA's, and ones that
# cannot decode at all. Browsers know none of them (the WHATWG Encoding Standard), so neither do we.
_NOT_CHARSETS = frozenset({"utf-7", "unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined",
                           "charmap"})


def _codec(label: str) -> str | None:
    """Python codec for a charset label ("windows-874" style labels map to cpNNN), or None.

    None too for a label a hostile server picks to break the decoding: a bytes-to-bytes codec
    (``base64``, ``zlib``: ``bytes.decode`` raises for them) or one of `_NOT_CHARSETS`.
    """
    label = label.strip().lower()
    if m := re.fullmatch(r"(?:windows|win|x-cp)-?(\d{3,4})", label):
        label = "cp" + m.group(1)
    try:
        info = codecs.lookup(label)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    return info.name


def _header_items(headers: Headers) -> list[tuple[str, str]]:
    if headers is None:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k), str(v)) for k, v in pairs]


def _declared_charset(body: bytes, headers: Headers) -> str | None:
    for name, value in _header_items(headers):
        if name.lower() == "content-type" and (m := _HEADER_CHARSET.search(value)):
            if codec := _codec(m.group(1)):
                return codec
    if meta := _META_CHARSET.search(body, 0, _CHARSET_SNIFF):
        return _codec(meta.group(1).decode("ascii", "replace"))
    return None


_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def decode_body(body: bytes | str, headers: Headers = None) -> str:
    """Body to text: UTF-16 after its byte-order mark (as browsers read one, whatever is declared), UTF-8 when
    valid, else the declared charset, else UTF-8 with U+FFFD.

    UTF-8 with replacement comes last because that is how the Censored Planet
    data (JSON strings) saw undecodable responses.
    """
    if isinstance(body, str):
        return body
    if body[:2] in _UTF16_BOMS:
        return body[2:].decode("utf-16-le" if body[:2] == codecs.BOM_UTF16_LE else "utf-16-be", errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":  # a capped body cut inside a character
            return body[: exc.start].decode("utf-8")
    codec = _declared_charset(body, headers)
    return body.decode(codec if codec else "utf-8", errors="replace")
