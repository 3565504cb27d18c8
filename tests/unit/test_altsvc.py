"""Alt-Svc parsing: the UDP port of a site's own HTTP/3, from a hostile header, without raising."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tamperscope.model.altsvc import MAX_HEADER, h3_port


@pytest.mark.parametrize(
    ("value", "port"),
    [
        ('h3=":443"; ma=86400', 443),
        ('h3=":8443"', 8443),
        ('h3-29=":443", h3=":443"', 443),
        ('h2=":443", h3=":4433"; persist=1', 4433),
        ('h3=":99999", h3=":8443"', 8443),
        ('h3="other.example:443", h3=":443"', 443),
        ('h3=":65535"', 65535),
    ],
)
def test_same_host_h3(value: str, port: int) -> None:
    """The first well-formed ``h3`` alternative on the same host gives its port, skipping what comes before."""
    assert h3_port(value) == port


@pytest.mark.parametrize(
    "value",
    [
        'h2=":443"',
        'h3-29=":443"',
        'h3="other.example:443"',
        'h3="[2001:db8::1]:443"',
        "clear",
        "",
        "h3",
        'h3=:443',
        'h3="',
        'h3=":443',
        'h3=":0"',
        'h3=":99999"',
        'h3=":-443"',
        'h3=":+443"',
        'h3=": 443"',
        'h3=":\uff14\uff14\uff13"',  # fullwidth digits, which int() would accept
        'h3=":\u00b2"',  # a superscript two: str.isdigit() says yes
        'h3="a,b:443"',
    ],
)
def test_no_usable_h3(value: str) -> None:
    """Other protocols, other hosts, ``clear`` and malformed alternatives give ``None``."""
    assert h3_port(value) is None


@pytest.mark.parametrize("value", [None, b'h3=":443"', 443, ['h3=":443"'], 4.43])
def test_not_a_string(value: object) -> None:
    """Whatever is not a ``str`` (a header still in bytes, a number) gives ``None``."""
    assert h3_port(value) is None


def test_huge_header_is_refused() -> None:
    """A header over MAX_HEADER characters is not parsed at all, even when it holds a good entry."""
    good = 'h3=":443"'
    assert h3_port(good + ", " + "x" * (MAX_HEADER - len(good) - 2)) == 443
    assert h3_port(good + ", " + "x" * (MAX_HEADER - len(good) - 1)) is None
    assert h3_port('h3=":443", ' * 1000) is None


def test_quoted_authority_without_port_means_default() -> None:
    """``h3=":"``: the same host, no port given, means ``default_port``."""
    assert h3_port('h3=":"', default_port=4443) == 4443
    assert h3_port('h3=":"') == 443


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_never_raises(value: str) -> None:
    """Any text gives ``None`` or a valid UDP port."""
    port = h3_port(value)
    assert port is None or 0 < port < 65536
