"""A charset label a hostile server picks must not break decoding, fingerprinting or the verdict.

``codecs.lookup`` knows labels that are no charset: bytes-to-bytes codecs (``base64``, ``hex``,
``zlib``: ``bytes.decode`` raises LookupError for them) and escape formats (``unicode_escape``
reads backslash escapes, lone surrogates included). A body that is not UTF-8 under such a label
is read as UTF-8 with replacement, as a browser reads a label it does not know.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import orjson
import pytest

from tamperscope.analysis.verdicts import default_matcher, verdict_for
from tamperscope.wire.fingerprints import decode_body

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "ooni-samples" / "generated"
HOSTILE = ["base64", "hex", "zlib", "rot13", "uu", "bz2", "utf-7", "unicode_escape", "raw_unicode_escape", "idna",
           "punycode", "undefined", "charmap"]
BODY = b"<html>Access denied \xff\xfe +2AA- \\ud800</html>"


@pytest.mark.parametrize("label", HOSTILE)
def test_a_label_that_is_no_charset_reads_as_utf8_with_replacement(label: str) -> None:
    for headers in ({"Content-Type": f"text/html; charset={label}"}, None):
        body = BODY if headers else b'<meta charset="' + label.encode() + b'">' + BODY
        text = decode_body(body, headers)
        assert text == body.decode("utf-8", "replace")
        assert not any("\ud800" <= ch <= "\udfff" for ch in text)


@pytest.mark.parametrize("label", ["cp1251", "windows-1251", "koi8-r", "shift_jis", "latin1"])
def test_real_charsets_still_decode(label: str) -> None:
    assert decode_body(b"\xcf\xf0\xe8", {"Content-Type": f"text/html; charset={label}"}) == \
        b"\xcf\xf0\xe8".decode(label, "replace")


@pytest.mark.parametrize("label", ["base64", "hex", "unicode_escape"])
def test_the_verdict_reads_a_blockpage_under_such_a_label(label: str) -> None:
    m = orjson.loads((SAMPLE / "httpDiffWithConsistentDNS" / "measurement.json").read_bytes())
    before = verdict_for(m, default_matcher())
    assert before.fingerprints  # the sample's blockpage is recognised as it was captured
    hostile = copy.deepcopy(m)
    response = hostile["test_keys"]["requests"][0]["response"]
    raw = response["body"].encode() + b"\xff"  # no longer UTF-8: the declared charset is consulted
    response["body"] = {"format": "base64", "data": base64.b64encode(raw).decode()}
    response["headers"] = {"Content-Type": f"text/html; charset={label}"}
    response["headers_list"] = [["Content-Type", f"text/html; charset={label}"]]
    after = verdict_for(hostile, default_matcher())
    assert after.status != "failure" and after.mechanism == before.mechanism
    assert after.fingerprints == before.fingerprints
