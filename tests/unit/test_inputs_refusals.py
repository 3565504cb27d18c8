"""What model.inputs refuses first, with its own words: an empty host, URL or listening address, a URL with no
host, a name that is not UTF-8. Each check was removable with the input tests passing (a mutation pass): without
it, a later step refuses the same input less clearly or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tamperscope.model.inputs import (
    BadInput,
    byte_size,
    check_host,
    check_utf8,
    listen_host,
    parse_url,
    read_bounded,
    read_url_list,
)


def test_a_name_that_is_not_utf8_is_refused_naming_its_byte() -> None:
    with pytest.raises(BadInput, match=r"^file caf\\xe9: not UTF-8 \(byte 0xe9\): give a path whose name is UTF-8$"):
        check_utf8("caf\udce9", "file")
    check_utf8("café", "file")  # UTF-8 however foreign


def test_an_empty_host_is_refused_as_empty() -> None:
    with pytest.raises(BadInput, match="^empty host$"):
        check_host("")


@pytest.mark.parametrize("value", ["", "  ", "[]"])
def test_an_empty_listening_address_is_refused_saying_what_to_write(value: str) -> None:
    """Empty never means every interface: the message says 127.0.0.1, 0.0.0.0 or ::."""
    with pytest.raises(BadInput, match="^empty address: say 127.0.0.1 for this machine only, 0.0.0.0"):
        listen_host(value)


@pytest.mark.parametrize("value", ["", "   ", None, 42])
def test_an_empty_url_is_refused_as_empty(value: object) -> None:
    with pytest.raises(BadInput, match="^empty URL$"):
        parse_url(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["http://:80/", "http:///x", "https://?q"])
def test_a_url_without_a_host_is_refused_as_such(url: str) -> None:
    with pytest.raises(BadInput, match=r"^malformed URL .*: no host$"):
        parse_url(url)


@pytest.mark.parametrize("text", ["", "\n\n", "# a comment only\n", "\ufeff"])
def test_a_url_list_with_no_line_is_refused_as_empty(text: str) -> None:
    """An empty list says so (it failed with a TypeError when the check before reading its first line was gone)."""
    with pytest.raises(BadInput, match="^mylist.txt: no URLs in it$"):
        read_url_list(text, "mylist.txt")


def test_a_plain_file_over_the_limit_is_not_said_to_be_compressed(tmp_path: Path) -> None:
    """Only a compressed file is "larger ... uncompressed"; a plain one is larger, as it is."""
    path = tmp_path / "list.txt"
    path.write_bytes(b"x" * 1025)
    with pytest.raises(BadInput) as e:
        read_bounded(path, 1024, "the list")
    assert str(e.value) == f"the list {path} is larger than {byte_size(1024)}: is it the right file?"
    path.write_bytes(b"x" * 1024)
    assert read_bounded(path, 1024, "the list") == "x" * 1024
