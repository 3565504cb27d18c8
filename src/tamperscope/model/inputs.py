"""Measurement inputs: URL validation and test lists (Citizen Lab CSV or one URL per line).

Pure functions, shared by the probe and the lab's `expect`. Malformed input
raises `BadInput` with a one-line message naming the source and the entry.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import SplitResult, urlsplit


class BadInput(ValueError):
    """A URL or list the user gave cannot be used; the message is one line."""


def not_utf8(value: str | os.PathLike[str]) -> str | None:
    """Why ``value`` (a path, URL or name the user gave) cannot be written as UTF-8 (``byte 0xff``), or None
    when it can. Bytes that are not UTF-8 in a command line or the environment reach Python as lone surrogates
    (``\\udcff``, PEP 383): a file may be named so, but no store, JSON document or HTTP request can hold one."""
    text = os.fspath(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        char = ord(text[e.start])
        return f"byte {char - 0xDC00:#04x}" if 0xDC80 <= char <= 0xDCFF else f"character U+{char:04X}"
    return None


def shown_bytes(value: str | os.PathLike[str]) -> str:
    """``value`` as its bytes were given, those that are not UTF-8 written ``\\xff``: what the user typed."""
    text = os.fspath(value)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no byte stands for (not from a command line)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_utf8(value: str | os.PathLike[str], what: str, advice: str = "give a path whose name is UTF-8") -> None:
    """BadInput, one line, when ``value`` cannot be written as UTF-8 (`not_utf8`): ``{what} {value}: not UTF-8
    (byte 0xff): {advice}`` (``what`` may be empty: argparse names the option). The one check for every path, URL
    and name that a store, a measurement or a request must hold, made where the command takes it, before anything
    is written."""
    why = not_utf8(value)
    if why is not None:
        raise BadInput(f"{what} {shown_bytes(value)}".lstrip() + f": not UTF-8 ({why}): {advice}")


def check_utf8_url(url: str, what: str = "malformed URL") -> None:
    """`check_utf8` for a URL or a measurement's input (a URL, a domain, host:port): in a URL, a byte that is
    not UTF-8 goes percent-encoded; a name is written in UTF-8 (or IDNA)."""
    why = not_utf8(url)
    if why is None:
        return
    if "://" not in url:
        check_utf8(url, what, "write the name in UTF-8")
    check_utf8(url, what, f"write such a byte percent-encoded (%{why[-2:].upper()})" if why.startswith("byte")
               else "write it percent-encoded")


@dataclass(frozen=True)
class URLParts:
    scheme: str
    host: str  # lower-cased, no trailing dot, IPv6 without brackets
    port: int
    path: str  # path and query, at least "/"


def unicode_host(host: str) -> str:
    """A host name with its IDNA labels (``xn--...``) decoded: the one form stores keep and readers read
    (``xn--d1acpjx3f.xn--p1ai`` is ``яндекс.рф``). A label that does not decode is kept as it is."""
    if "xn--" not in host:
        return host
    labels = []
    for label in host.split("."):
        if label.startswith("xn--"):
            try:
                label = label.encode("ascii").decode("idna")
            except (UnicodeError, ValueError):
                pass
        labels.append(label)
    return ".".join(labels)


def host_forms(host: str) -> tuple[str, ...]:
    """The spellings a store may hold for ``host``: as decoded by `unicode_host`, and in IDNA (ASCII)."""
    forms = [unicode_host(host)]
    try:
        ascii_form = forms[0].encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        ascii_form = host
    for form in (ascii_form, host):
        if form not in forms:
            forms.append(form)
    return tuple(forms)


_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")  # labels joined by dots: one match for the whole name


def check_host(host: str) -> str:
    """A host name or IP address as a URL or a listening socket may name it, or BadInput: an IPv6
    address (without brackets, written compressed), an IPv4 address (four decimal parts), or a DNS name
    whose labels are letters, digits, ``-`` and ``_`` (IDNA names too). A name that ends in a number
    must be an IPv4 address: ``1.2.3.4.5`` and ``999.1.1.1`` are neither."""
    if not host:
        raise BadInput("empty host")
    if "%" in host:
        raise BadInput(f"bad host name {host!r}")
    if ":" in host:
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise BadInput(f"bad IPv6 address {host!r}") from None
    name = host.lower().rstrip(".")
    if name and name.rsplit(".", 1)[-1].isdigit():
        try:
            return str(ipaddress.IPv4Address(name))
        except ValueError:
            raise BadInput(f"bad IPv4 address {host!r}") from None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise BadInput(f"bad host name {host!r}") from None
    if len(name) > 253 or not _NAME.fullmatch(name):
        raise BadInput(f"bad host name {host!r}")
    return host.lower().rstrip(".")


def byte_size(n: int) -> str:
    """A size limit in words: "64 MiB", "64 KiB" (a limit under a MiB was said as "0 MiB"), "1.5 MiB"."""
    if n >= 1 << 20:
        return f"{n >> 20} MiB" if n % (1 << 20) == 0 else f"{n / (1 << 20):.1f} MiB"
    return f"{n >> 10} KiB" if n % 1024 == 0 else f"{n:,} bytes"


def listen_host(value: str) -> str:
    """The address a server is told to listen on (``--host``), checked as `check_host` checks a URL's host;
    brackets around an IPv6 address are allowed. Empty is refused rather than taken to mean every
    interface: that has to be said, as ``0.0.0.0`` (IPv4) or ``::`` (IPv6)."""
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise BadInput("empty address: say 127.0.0.1 for this machine only, 0.0.0.0 for every IPv4 interface, "
                       ":: for every IPv6 one")
    name = value.strip().rpartition(":")[0]
    if value.count(":") == 1 or name.startswith("[") and name.endswith("]"):  # host:port, [v6]:port
        raise BadInput(f"{value.strip()[:100]!r} is not an address: give the host alone, and the port with --port")
    checked = check_host(host)
    try:
        ip = ipaddress.ip_address(checked)
    except ValueError:
        return checked  # a name, resolved when the server binds
    if ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):  # no server listens for TCP there
        raise BadInput(f"{checked!r} is {'a multicast group' if ip.is_multicast else 'the broadcast address'}: "
                       "a server listens on one of this machine's addresses, 0.0.0.0 or ::")
    return checked


_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
MAX_URL = 8192  # characters of a URL (OONI's and our collector's limit on a measurement's input)


def parse_url(url: str) -> URLParts:
    """Split an http(s) URL, or raise BadInput. Whitespace around it is ignored."""
    return _split_url(url)[0]


def _split_url(url: str) -> tuple[URLParts, SplitResult]:
    """`parse_url`'s parts, with urlsplit's."""
    if not isinstance(url, str) or not url.strip():
        raise BadInput("empty URL")
    url = url.strip()
    if len(url) > MAX_URL:  # its measurement would be refused by a collector, and a line past 64 MiB unreadable
        raise BadInput(f"a URL of {len(url):,} characters ({url[:40]!r}…): at most {MAX_URL:,}, as a collector "
                       "takes an input")
    check_utf8_url(url)  # from a command line: every measurement of it would fail
    if _CONTROL_OR_SPACE.search(url):
        raise BadInput(f"malformed URL {url!r}: control characters or spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise BadInput(f"malformed URL {url!r}: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise BadInput(f"not an http(s) URL: {url!r}")
    if "@" in parts.netloc:
        raise BadInput(f"URL {url!r} holds a user name or password: refused, because it would be published "
                       "with the measurement")
    if not parts.hostname:
        raise BadInput(f"malformed URL {url!r}: no host")
    if "[" in parts.netloc and ":" not in parts.hostname:  # urlsplit takes [v1.x] (RFC 3986's IPvFuture) as v1.x
        raise BadInput(f"malformed URL {url!r}: only an IPv6 address goes in brackets")
    if port == 0:
        raise BadInput(f"malformed URL {url!r}: port 0")
    try:
        host = check_host(parts.hostname)
    except BadInput as e:
        raise BadInput(f"malformed URL {url!r}: {e}") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return URLParts(parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path), parts


def normal_url(url: str) -> str:
    """``url`` as an input is recorded and compared (so that a list, a resumed run and a rerun agree):
    validated by `parse_url`, without surrounding whitespace, and with an empty path written ``/``
    (``http://a.com`` is ``http://a.com/``, ``http://a.com?q`` is ``http://a.com/?q``)."""
    _, parts = _split_url(url)
    url = url.strip()
    if parts.path:
        return url
    start = url.index("//") + 2
    end = min((i for i in (url.find("?", start), url.find("#", start)) if i >= 0), default=len(url))
    return url[:end] + "/" + url[end:]


@dataclass(frozen=True, slots=True)
class ListEntry:
    url: str
    category_code: str | None = None


MAX_LIST = 64 << 20  # bytes of a test list: Citizen Lab's global list is ~300 KB


def read_upto(f: BinaryIO, most: int) -> bytes:
    """At most `most` bytes of a file: a regular file in one read of its size, anything else (a device, a FIFO)
    64 KiB at a time. ``f.read(most)`` first took a buffer of `most` bytes (512 MiB for a list of a few kB)."""
    info = os.fstat(f.fileno())
    regular = stat.S_ISREG(info.st_mode)
    chunks: list[bytes] = []
    got, want = 0, info.st_size + 1 if regular else 1 << 16
    while got < most and (chunk := f.read(min(want, most - got))):
        chunks.append(chunk)
        got += len(chunk)
        if regular and len(chunk) < want:
            break  # its end (a file that grew while read is read on)
        want = 1 << 16
    return b"".join(chunks)


class Damaged(ValueError):
    """A compressed file that does not inflate: its words say why."""


def _gunzip(data: bytes, most: int) -> bytes:
    """At most `most` bytes of a gzip file's content, every member of it (``cat a.gz b.gz`` is one gzip file),
    inflated `most` bytes at most at a time: a bomb costs what it is allowed to give. Damaged when it is not
    gzip past its first member, or ends before its last member does."""
    out: list[bytes] = []
    got, rest = 0, data
    while rest.strip(b"\0") and got < most:  # NULs after the last member: padding some tools write
        inflater = zlib.decompressobj(wbits=31)
        pending = rest
        try:
            while pending and got < most and not inflater.eof:
                piece = inflater.decompress(pending, most - got)
                out.append(piece)
                got += len(piece)
                pending = inflater.unconsumed_tail
        except zlib.error as e:
            raise Damaged(f"damaged gzip ({e})") from None
        if got >= most:
            break
        if not inflater.eof:
            raise Damaged("truncated gzip (it ends before its content does)")
        rest = inflater.unused_data
    return b"".join(out)


def _unzip(data: bytes, most: int) -> bytes:
    """At most `most` bytes of the one file a zip archive holds (Tranco's top-1m.csv.zip); Damaged for an archive
    that holds none or several, is encrypted or damaged."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            files = [member for member in archive.infolist() if not member.is_dir()]
            if len(files) != 1:
                raise Damaged(f"a zip archive of {len(files)} files: give the one to read, unpacked or alone in "
                               "its archive")
            with archive.open(files[0]) as member:
                return member.read(most)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise Damaged(f"damaged zip archive ({e})") from None
    except (NotImplementedError, RuntimeError) as e:  # another compression method; a password
        raise Damaged(f"a zip archive it cannot read ({e})") from None


def inflated(data: bytes, most: int) -> bytes:
    """A file's bytes as they are, or at most `most` bytes of its content when it is compressed with gzip or is a zip
    archive of one file (by their first bytes, whatever the file's name); Damaged when that does not inflate."""
    if data[:2] == b"\x1f\x8b":
        return _gunzip(data, most)
    if data[:4] == b"PK\x03\x04":
        return _unzip(data, most)
    return data


def read_bounded(path: str | os.PathLike[str], limit: int, what: str) -> str:
    """A text file's content, reading at most `limit` bytes (a device like /dev/zero never ends); a file compressed
    with gzip (``ip2asn-v4.tsv.gz``), or a zip archive of one file (``top-1m.csv.zip``), is read inflated, at most
    `limit` bytes of it. BadInput, one line naming `what` and the file, when it is larger, unreadable, damaged or
    not UTF-8."""
    try:
        with open(path, "rb") as f:
            data = read_upto(f, limit + 1)
        if len(data) > limit:
            raise BadInput(f"{what} {path} is larger than {byte_size(limit)}: is it the right file?")
        if (data := inflated(data, limit + 1)) and len(data) > limit:
            raise BadInput(f"{what} {path} is larger than {byte_size(limit)} uncompressed: is it the right file?")
        return data.decode("utf-8")
    except Damaged as e:
        raise BadInput(f"cannot read {what} {path}: {e}") from None
    except UnicodeDecodeError as e:  # where, so that the one bad byte of a long list can be found
        line = e.object.count(b"\n", 0, e.start) + 1
        at = f"byte {e.start} is {e.object[e.start]:#04x}, line {line}"
        raise BadInput(f"cannot read {what} {path}: not UTF-8 text ({at})") from None
    except OSError as e:
        raise BadInput(f"cannot read {what} {path}: {e.__class__.__name__}: {e.strerror or e}") from None


_NEWLINE = re.compile(r"\r\n|\r|\n")
LINES_AT_ONCE = 1 << 20  # characters of a list split into lines at a time


def lines_of(text: str) -> list[str]:
    """The lines of a list as an editor numbers them: split at CR, LF or CRLF only. ``str.splitlines`` also
    splits at U+2028, U+0085, form feeds and more, which cut one entry in two and shifted every line number
    a message names after it."""
    return _NEWLINE.split(text)


def numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """(number, line) of each line as `lines_of` splits and numbers them, split `LINES_AT_ONCE` characters at a
    time: a list of millions of entries is not held a second time as a list of its lines."""
    n, start, size = 0, 0, len(text)
    while True:
        cut = text.find("\n", start + LINES_AT_ONCE) if size - start > LINES_AT_ONCE else -1
        lines = _NEWLINE.split(text[start:] if cut < 0 else text[start:cut + 1])
        if cut >= 0:
            lines.pop()  # what follows the part's last LF is the next part's first line
        for line in lines:
            n += 1
            yield n, line
        if cut < 0:
            return
        start = cut + 1


def _records(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line stripped) of each line of a list that is neither blank nor a ``#`` comment; a UTF-8
    byte-order mark (Windows' Notepad writes one) is not part of the first line."""
    for n, line in numbered_lines(text.removeprefix("\ufeff")):
        if (line := line.strip()) and line[0] != "#":
            yield n, line


def _rows(text: str, source: str) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, its cells) of each record of a list read as CSV: a quoted cell is unquoted
    (``"a.com","NEWS"``) and a record whose quoted cell holds a line break (Citizen Lab's ``notes``) is one
    record, numbered by the line it starts on. Without a quote anywhere a record is its line cut at commas,
    as the csv module cuts it, at a tenth of the cost. BadInput, naming the line, for a quote never closed."""
    if '"' not in text:
        for n, line in _records(text):
            yield n, line.split(",")
        return
    numbers: list[int] = []  # the lines the reader took for the record it is reading

    def lines() -> Iterator[str]:
        for n, line in _records(text):
            numbers.append(n)
            yield line

    reader = csv.reader(lines(), strict=True)
    while True:
        numbers.clear()
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            why = "a quote opened here is never closed" if "end of data" in str(e) else str(e)
            raise BadInput(f"{source}: line {numbers[0] if numbers else '?'}: not valid CSV: {why}") from None
        yield numbers[0], row


def _is_rank(cell: str) -> bool:
    return cell.strip().isdecimal() and cell.strip().isascii()


def _column(row: list[str], headers: tuple[str, ...], ranked: bool) -> tuple[int, bool]:
    """Which column of a list holds its entries, from its first record, and whether that record is a header:
    the first cell unless a header names another column (``rank,domain``), or unless `ranked` and the record
    is a rank and a name (``1,example.com``: Tranco, Umbrella and Alexa write their lists so)."""
    names = [cell.strip().lower() for cell in row]
    if names and names[0] in headers:
        return 0, True
    if (named := next((i for i, name in enumerate(names) if name in headers), None)) is not None:
        return named, True
    if ranked and len(row) > 1 and _is_rank(row[0]) and row[1].strip():
        return 1, False
    return 0, False


def column_entries(text: str, source: str = "list", headers: tuple[str, ...] = ("url",),
                   ranked: bool = False) -> Iterator[tuple[int, str]]:
    """(line number, value) of each entry of a one-per-line list, or of a CSV's column (a Citizen Lab test list),
    one at a time: the first column, or the one a header row names by one of `headers` (in any case), or with
    `ranked` the second of a list of ranks and names (Tranco's ``1,example.com``). A UTF-8 byte-order mark,
    blank lines, ``#`` comments, header rows and rows with an empty cell there are skipped; a quoted cell is
    unquoted, and a record whose quoted cell holds a line break is one entry, numbered by the line it starts on,
    as `categories_by_line` numbers it. BadInput, naming the line, for a quote never closed."""
    col: int | None = None
    for n, row in _rows(text, source):
        if col is None:
            col, header = _column(row, headers, ranked)
            if header:
                continue
        value = row[col].strip() if col < len(row) else ""
        if value and value.lower() not in headers:
            yield n, value


def first_column(text: str, source: str = "list", headers: tuple[str, ...] = ("url",),
                 ranked: bool = False) -> list[tuple[int, str]]:
    """`column_entries`, all at once."""
    return list(column_entries(text, source, headers, ranked))


def checked_entries(text: str, source: str = "list", headers: tuple[str, ...] = ("url",),
                    noun: tuple[str, str] = ("input", "inputs"), ranked: bool = False) -> Iterator[tuple[int, str]]:
    """`column_entries`, refusing (BadInput, naming the list and the line) a header row whose columns have other
    names (``urls,category_code``), whose first would be measured as an input, before its first entry; and, after
    the last, a list that held none, rather than let it read as no list at all (naming a row whose first cell is
    empty when nothing else is there). ``noun``: what an entry is, one and many ("domain", "domains")."""
    first: tuple[int, str] | None = None
    for n, value in column_entries(text, source, headers, ranked):
        if first is None:
            first = next(_records(text))
            if n == first[0] and "," in first[1] and value.replace("_", "").isalpha():
                article = "an" if noun[0][:1] in ("a", "e", "i", "o", "u") else "a"
                raise BadInput(f"{source}: line {n}: {value[:100]!r} is not {article} {noun[0]} (a list's header "
                               f"names its column of {noun[1]} {' or '.join(headers)})")
        yield n, value
    if first is None:
        empty = next((n for n, line in _records(text) if not line.split(",", 1)[0].strip().strip('"').strip()), None)
        if empty is not None:  # rows whose first cell is empty, which `column_entries` skips
            raise BadInput(f"{source}: line {empty}: no {noun[0]} (its first column is empty)")
        raise BadInput(f"{source}: no {noun[1]} in it")


def list_entries(text: str, source: str = "list", headers: tuple[str, ...] = ("url",),
                 noun: tuple[str, str] = ("input", "inputs"), ranked: bool = False) -> list[tuple[int, str]]:
    """`checked_entries`, all at once."""
    return list(checked_entries(text, source, headers, noun, ranked))


def categories_by_line(text: str, source: str = "list") -> dict[int, str]:
    """The Citizen Lab category (``category_code``, upper-cased) of each record of a test-list CSV, by the line
    its record starts on; empty for a list without that column (one entry per line, or another CSV)."""
    first = next(_records(text), None)
    if first is None or "," not in first[1]:
        return {}
    rows = _rows(text, source)
    header = [h.strip().lower() for h in next(rows)[1]]
    if "category_code" not in header:
        return {}
    col = header.index("category_code")
    return {line: code for line, row in rows if col < len(row) and (code := row[col].strip().upper())}


CATEGORY_CODE = re.compile(r"[A-Z0-9_]{2,12}")  # Citizen Lab's codes: NEWS, HUMR, CULTR...


class CategoryPick:
    """`--category`: which list entries to measure by their Citizen Lab category. `keep` takes one list's entries'
    codes and says which to keep, refusing a list without categories; `check`, after every list, refuses a code
    none of them holds (a typo, most often), naming the categories they hold with their counts."""

    def __init__(self, wanted: list[str]) -> None:
        self.wanted = list(dict.fromkeys(code.upper() for code in wanted))
        self.seen: dict[str, int] = {}
        self.lists = 0

    def keep(self, codes: list[str | None], source: str) -> list[bool]:
        self.lists += 1
        upper = [(c or "").upper() for c in codes]
        if not any(upper):
            raise BadInput(f"--category: {source} has no categories (a Citizen Lab test-list CSV has a category_code "
                           "column)")
        for c in upper:
            if c:
                self.seen[c] = self.seen.get(c, 0) + 1
        return [c in self.wanted for c in upper]

    def check(self) -> None:
        if missing := [code for code in self.wanted if code not in self.seen]:
            held = ", ".join(f"{c} {n:,}" for c, n in sorted(self.seen.items(), key=lambda kv: (-kv[1], kv[0])))
            lists = "the lists" if self.lists > 1 else "the list"
            raise BadInput(f"--category {','.join(missing)}: no entry of {lists} is of "
                           f"{'this category' if len(missing) == 1 else 'these categories'}; {lists} "
                           f"{'hold' if self.lists > 1 else 'holds'}: {held}")


def category_codes(value: str) -> list[str]:
    """``news,HUMR`` -> ["NEWS", "HUMR"]; ValueError for anything but a few capitals, digits or underscores."""
    codes = [part.strip().upper() for part in value.split(",") if part.strip()]
    for code in codes or [value]:
        if not CATEGORY_CODE.fullmatch(code):
            raise ValueError(f"{value[:100]!r} is not a list of category codes (NEWS,HUMR,…)")
    return codes


def _citizen_lab_rows(text: str, source: str) -> Iterator[tuple[int, str, str | None]]:
    """(line, url, category code or None) of each record of a test-list CSV after its header."""
    rows = _rows(text, source)
    header = [h.strip().lower() for h in next(rows)[1]]
    col = header.index("url") if "url" in header else 0
    cat = header.index("category_code") if "category_code" in header else None
    for line, row in rows:
        url = row[col].strip() if col < len(row) else ""
        if not url:
            raise BadInput(f"{source}: line {line}: no url")
        code = row[cat].strip() if cat is not None and cat < len(row) else ""
        yield line, url, code or None


def read_url_list(text: str, source: str = "list") -> list[ListEntry]:
    """Entries of a Citizen Lab test-list CSV (a header naming a column `url`, in any case) or of a
    one-URL-per-line file; blank lines and ``#`` comments are skipped, a UTF-8 byte-order mark too. URLs
    are written as `normal_url` writes them, each once (the first entry wins)."""
    first = next(_records(text), None)
    if first is None:
        raise BadInput(f"{source}: no URLs in it")
    found: Iterator[tuple[int, str, str | None]]  # (line, url, category_code)
    cells = [cell.strip().strip('"').strip().lower() for cell in first[1].split(",")]
    if cells[0] == "url" or ("://" not in first[1] and "url" in cells):  # a header naming the column of URLs
        found = _citizen_lab_rows(text, source)
    else:  # a whole line is one URL: a comma is one of a URL's characters
        found = ((n, line, None) for n, line in _records(text))
    entries: dict[str, ListEntry] = {}
    for i, (line, url, category) in enumerate(found, 1):
        try:
            url = normal_url(url)
        except BadInput as err:
            raise BadInput(f"{source}: entry {i} (line {line}): {err}") from None
        entries.setdefault(url, ListEntry(url, category))
    if not entries:
        raise BadInput(f"{source}: no URLs in it")
    return list(entries.values())
