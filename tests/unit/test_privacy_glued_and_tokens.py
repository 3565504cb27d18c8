"""The probe's address with other digits touching it, written with underscores, and inside a base64 token.

Left alone in earlier notes: ``ip=198.18.1.2198.18.1.2`` (an address glued to the next), ``client_198_18_1_2`` and a
JWT whose payload says ``{"ip": "198.18.1.2"}`` (a blockpage's redirect, a captive portal's cookie) were written as
they came. Someone else's address written the same way stays: ``198.18.1.23`` is not ours with a 3 after it.
"""

from __future__ import annotations

import base64

import orjson
import pytest

from tamperscope.probe.privacy import SCRUBBED, Scrubber

try:
    from .test_privacy_label_and_port import through_a_rewriting_proxy
except ImportError:
    from test_privacy_label_and_port import through_a_rewriting_proxy  # type: ignore[no-redef]

ME4, ME6 = "198.18.1.2", "2001:db8:85a3::8a2e:370:7334"
S = SCRUBBED

GLUED = [
    ("ip=198.18.1.2198.18.1.2 end", f"ip={S} end"),  # two of ours glued: one span
    ("v=5198.18.1.2;", f"v=5{S};"),
    ("t=198.18.1.21700000000", f"t={S}1700000000"),  # an address, then a timestamp
    ("1198.18.1.2198", f"1{S}198"),
    ("id 0198.18.1.2", f"id 0{S}"),
    ("ip-5198-18-1-2.example", f"ip-5{S}.example"),  # dashed, reversed or not
    ("ip-2-1-18-1985.example", f"ip-{S}5.example"),
    ("client_198_18_1_2 seen", f"client_{S} seen"),  # underscores, either order
    ("ip_2_1_18_198_x", f"ip_{S}_x"),
    ("k_198_18_1_2198", f"k_{S}198"),
    # three that earlier tests had as lookalikes, left alone: "1198" is no octet, so the string is nobody's address,
    # and our address is in it with a digit before it (now scrubbed; "1198.18.1.23" there instead)
    ("1198.18.1.2", f"1{S}"), ("1198-18-1-2", f"1{S}"), ("1198&#46;18&#46;1&#46;2", f"1{S}"),
]
# someone else's addresses, however written: nothing of them is ours
OTHERS = ["a 198.18.1.23 b", "198.18.1.219", "x 98.18.1.2 y", "2198.18.1.23", "a_198_18_1_23", "ip-198-18-1-25",
          "version 1.198.18.1", "test_keys_198"]


def _all_ways(s: Scrubber, text: str) -> tuple[str, bytes, str, bytes]:
    """``text`` scrubbed as a string, as bytes, in a measurement, and as a base64 body in one."""
    body = {"format": "base64", "data": base64.b64encode(text.encode()).decode()}
    out = s({"test_keys": {"x": text, "body": body}})["test_keys"]
    return s.text(text), s.raw(text.encode()), out["x"], base64.b64decode(out["body"]["data"])


@pytest.mark.parametrize(("text", "want"), GLUED)
def test_our_address_with_digits_touching_it_or_underscores_is_scrubbed(text: str, want: str) -> None:
    s = Scrubber([ME4, ME6], interfaces=False)
    assert _all_ways(s, text) == (want, want.encode(), want, want.encode())


@pytest.mark.parametrize("text", OTHERS)
def test_other_addresses_written_the_same_ways_are_left_alone(text: str) -> None:
    s = Scrubber([ME4, ME6], interfaces=False)
    assert _all_ways(s, text) == (text, text.encode(), text, text.encode())
    m = {"x": text}
    assert s(m) is m  # nothing to walk: the quick search found nothing


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _jwt(payload: dict[str, str]) -> str:
    return ".".join([_b64url(b'{"alg":"HS256","typ":"JWT"}'), _b64url(orjson.dumps(payload)), _b64url(b"\xfb\xff" * 16)])


def _decoded(token: str, url: bool = True) -> bytes:
    token = token.rstrip("=")
    return base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_" if url else None)


@pytest.mark.parametrize("me", [ME4, ME6, "2001:DB8:85A3::8A2E:370:7334"])
def test_a_jwt_naming_us_has_its_payload_scrubbed_and_its_other_parts_kept(me: str) -> None:
    s = Scrubber([ME4, ME6], interfaces=False)
    token = _jwt({"sub": "visitor", "ip": me, "exp": "1700000000"})
    url = f"https://block.example/denied?t={token}&c=adult"
    for out in (s.text(url), s.raw(url.encode()).decode(), s({"test_keys": {"location": url}})["test_keys"]["location"]):
        head, _, rest = out.partition("?t=")
        got, _, tail = rest.partition("&")
        assert head == "https://block.example/denied" and tail == "c=adult"
        header, payload, signature = got.split(".")
        assert (header, signature) == (token.split(".")[0], token.split(".")[2])  # untouched, unpadded as written
        assert "=" not in payload
        assert orjson.loads(_decoded(payload)) == {"sub": "visitor", "ip": S, "exp": "1700000000"}


@pytest.mark.parametrize("before", ["", "x", "ab", "abc", "t="])
def test_a_padded_standard_token_is_written_again_the_same_way(before: str) -> None:
    """The run's first characters may not be the data's (``xQ2xp…``): each start is tried, those kept."""
    s = Scrubber([ME4], interfaces=False)
    token = base64.b64encode(f"client {ME4}:52282 via proxy/1.1".encode()).decode()
    assert token.endswith("=") or len(token) % 4 == 0
    text = f"cookie {before}{token} end"
    out = s.text(text)
    assert out.startswith(f"cookie {before}") and out.endswith(" end")
    written = out[len(f"cookie {before}"):-len(" end")]
    assert len(written) % 4 == 0  # padded as it was
    assert _decoded(written, url=False) == f"client {S} via proxy/1.1".encode()  # the port (ours) with it


def test_a_token_of_someone_elses_address_is_left_as_it_came() -> None:
    s = Scrubber([ME4, ME6], interfaces=False)
    for other in ("198.18.1.23", "198.18.1.3", "2001:db8:85a3::8a2e:370:7335"):
        text = "t=" + _jwt({"ip": other})
        m = {"x": text}
        assert s.text(text) == text and s.raw(text.encode()) == text.encode() and s(m) is m


def test_a_token_inside_a_base64_body_is_scrubbed_too() -> None:
    s = Scrubber([ME4], interfaces=False)
    page = f'<a href="/continue?t={_jwt({"ip": ME4})}">continue</a>'.encode()
    out = s({"test_keys": {"body": {"format": "base64", "data": base64.b64encode(page).decode()}}})
    inner = base64.b64decode(out["test_keys"]["body"]["data"]).decode()
    payload = inner.split("?t=")[1].split(".")[1]
    assert orjson.loads(_decoded(payload))["ip"] == S


def test_a_rewriting_proxy_sending_our_address_in_a_token_and_glued_is_scrubbed_in_the_written_measurement() -> None:
    token = _jwt({"client": ME4})
    added = f"X-Trace: {token}\r\nX-Seen: ip={ME4}{ME4}\r\nX-Id: src_198_18_1_2\r\n".encode()
    m = through_a_rewriting_proxy(added, Scrubber([ME4], interfaces=False))
    line = orjson.dumps(m)
    assert ME4.encode() not in line and b"198_18_1_2" not in line
    assert token.split(".")[1].encode() not in line  # the payload that named us
    assert f"X-Seen: ip={S}\\r\\n".encode() in line and f"X-Id: src_{S}\\r\\n".encode() in line


def test_a_flood_of_tokens_naming_us_is_scrubbed_all_the_same() -> None:
    """Past MAX_TOKENS decoded in one string, a token naming us is replaced whole: no decoding for ever, nothing
    of ours left."""
    from tamperscope.probe import privacy

    s = Scrubber([ME4], interfaces=False)
    n = privacy.MAX_TOKENS + 50
    tokens = [base64.b64encode(f"{i:06d} {ME4}".encode()).decode() for i in range(n)]
    out = s.text(" ".join(tokens)).split(" ")
    assert len(out) == n
    assert [_decoded(t, url=False) for t in out[:privacy.MAX_TOKENS]] == [
        f"{i:06d} {S}".encode() for i in range(privacy.MAX_TOKENS)]
    assert out[privacy.MAX_TOKENS:] == [S] * 50


# --------------------------------------------------------------------------- a QA pass on the above


def _json_token(payload: dict[str, str]) -> str:
    return _b64url(orjson.dumps(payload))


def test_a_token_in_a_urls_path_changes_alone() -> None:
    """The run of base64 characters went on through the path after the token ('/next/page'), which was decoded and
    encoded again at another offset: the URL's rest was garbled. And a '_' in another segment made the whole run
    URL-safe, the URL's own slashes with it."""
    s = Scrubber([ME4, ME6], interfaces=False)
    token = _json_token({"ip": f"::ffff:{ME4}"})
    out = s.text(f"https://x.example/t/{token}/next/page?x=1")
    head, _, tail = out.partition("/t/")
    assert head == "https://x.example" and tail.endswith("/next/page?x=1"), out
    assert orjson.loads(_decoded(tail.split("/")[0])) == {"ip": S}
    standard = base64.b64encode(orjson.dumps({"ip": ME4, "n": ">>>"})).decode()  # a '+' of its own, padded
    out = s.text(f"https://x.example/user_profile/{standard} end")
    assert out.startswith("https://x.example/user_profile/") and out.endswith(" end"), out
    written = out.split("/")[-1].removesuffix(" end")
    assert orjson.loads(_decoded(written, url=False)) == {"ip": S, "n": ">>>"}


def test_an_unpadded_token_is_written_again_url_safe_whatever_its_characters() -> None:
    """A JWT payload that happened to hold neither '-' nor '_' was written again in the standard alphabet, '+' and
    '/' in it, which base64url decoders refuse."""
    s = Scrubber([ME4, ME6], interfaces=False)
    payload = {"ip": f"[{ME6}]:4433", "n": ">\u00ff~\u00ff~\u00ff"}
    token = _json_token(payload)
    assert "-" not in token and "_" not in token
    out = s.text(f"eyJhbGciOiJIUzI1NiJ9.{token}.c2ln").split(".")[1]
    assert "+" not in out and "/" not in out and "=" not in out, out
    assert orjson.loads(_decoded(out)) == {**payload, "ip": S}


@pytest.mark.parametrize("spelling", ["2001:0db8:85a3:0000:0000:8a2e:0370:7334", "::ffff:c612:102"])
def test_a_token_with_the_address_written_out_or_mapped_in_hex_is_scrubbed(spelling: str) -> None:
    s = Scrubber([ME4, ME6], interfaces=False)
    assert orjson.loads(_decoded(s.text(_json_token({"ip": spelling})))) == {"ip": S}


@pytest.mark.wallclock
def test_our_address_glued_to_itself_over_and_over_is_scrubbed_at_c_speed() -> None:
    """512 KiB of the address glued to itself took 2-3 s (a window at a time); past MAX_GLUED windows the rest of
    the run is found plainly. Bounded loosely: the point is not seconds per window."""
    import time

    s = Scrubber([ME4, ME6], interfaces=False)
    for page in (ME4 * 52428, "5198.18.1.29" * 43690, "2_1_18_1989" * 47662):
        started = time.perf_counter()
        out = s({"test_keys": {"x": page}})["test_keys"]["x"]
        assert time.perf_counter() - started < 1.5
        assert ME4 not in out and "2_1_18_198" not in out
