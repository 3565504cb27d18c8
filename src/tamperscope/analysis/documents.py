"""JSON documents, arrays, collector submissions and tar archives, read a measurement at a time.

A ``.json`` file (one value, an array read item by item, pretty-printed documents
one after another, or JSON lines), a ``.post`` collector submission, and tar
archives (OONI's postcans and legacy cans) whose members are any of those. Arrays
and documents are cut by `_Scanner`, which follows strings and brackets without
parsing, so no file is ever held whole; a damaged archive keeps what came before
the damage. reader.py chooses the reader by file name or by a stream's first bytes.
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import zlib
from collections.abc import Iterator
from functools import lru_cache
from typing import IO, Any, cast

import orjson

from tamperscope.analysis.framing import Lz4File, Replay, decompress_error, one_line, read_lines
from tamperscope.analysis.records import BOM, CHUNK, JSON_WS, TOO_DEEP, Line, Rejection, Unread
from tamperscope.analysis.scans import not_measurements

# --------------------------------------------------------------------------- JSON documents and arrays


def read_json(source: str, f: IO[bytes], max_bytes: int, *, stream: bool = False) -> Iterator[Line | Rejection]:
    """A ``.json`` file, a ``.json`` archive member, or a stream that starts like JSON: an array (item by
    item), pretty-printed documents (one by one), JSON lines, or (files only) one other JSON value.

    ``stream``: read anything that is not an array or pretty-printed documents as JSON lines, as streams always
    were, rather than as one value.
    """
    shape, f = _start(f, max_bytes)
    if shape == "lines" or (shape == "other" and stream):
        yield from read_lines(source, f, max_bytes)
    elif shape == "array":
        yield from _until_damage(source, _read_array(source, f, max_bytes))
    elif shape == "documents":
        yield from _until_damage(source, _read_documents(source, f, max_bytes))
    elif shape == "other":
        yield from _until_damage(source, _read_value(source, f, max_bytes))


def _start(f: IO[bytes], max_bytes: int) -> tuple[str, IO[bytes]]:
    """How to read a JSON input (a `_shape`), from its first bytes, and a stream that still starts with them
    (less a byte-order mark).

    Usually the bytes ``f`` has buffered are enough to say, and ``f`` itself is returned. Otherwise what is
    read ahead is bounded: up to the first `_DAMAGED_LINES` lines that are not blank, each cut at
    ``max_bytes``. Damage met while reading ahead (a truncated archive) is raised by the returned stream
    after the bytes before it, as it would have been without the look-ahead.
    """
    shape = _peeked_shape(f, max_bytes)
    if shape is not None:
        return shape, f
    read = getattr(f, "read1", None) or f.read
    head = b""
    error: BaseException | None = None
    try:
        while shape is None:
            chunk = read(CHUNK)
            head += chunk
            if not chunk or len(head) >= len(BOM) or not BOM.startswith(head):
                shape = _shape(head.removeprefix(BOM), not chunk, max_bytes)
    except (EOFError, OSError, tarfile.TarError, zlib.error) as exc:
        error = exc
        shape = _shape(head.removeprefix(BOM), True, max_bytes)
    assert shape is not None  # a complete head always has a shape
    skip = len(BOM) if head.startswith(BOM) else 0
    if error is None and f.seekable():  # a file: cheaper to read again than to wrap
        f.seek(skip)
        return shape, f
    return shape, io.BufferedReader(Replay(head[skip:], f, error), buffer_size=CHUNK)


def _peeked_shape(f: IO[bytes], max_bytes: int) -> str | None:
    """The `_shape` of ``f`` from the bytes it has buffered (`peek`), if they are enough to say; then only a
    byte-order mark is consumed, and ``f`` is read with no look-ahead layer on top."""
    peek = getattr(f, "peek", None)
    if peek is None:
        return None
    try:
        head = peek(CHUNK)
    except (EOFError, OSError, tarfile.TarError, zlib.error):
        return None  # the look-ahead reports it
    if len(head) < len(BOM) and BOM.startswith(head):
        return None
    shape = _shape(head.removeprefix(BOM), False, max_bytes)
    if shape is not None and head.startswith(BOM):
        f.read(len(BOM))
    return shape


def _shape(head: bytes, complete: bool, max_bytes: int) -> str | None:
    """What a JSON input whose first bytes are ``head`` (all of it if ``complete``) holds; None: read on.

    "array" (``[``); "documents": pretty-printed, a first line that is only ``{`` (what ``json.dumps(indent=)``,
    ``jq`` and Go write), or a start none of whose first `_DAMAGED_LINES` lines is a JSON object on its own
    and only one starts with ``{`` (another indenting style); "lines": JSON lines, one of whose first lines is
    a whole object, or several of which start with ``{`` (the first ones can be damaged); "other" (a string,
    a number, not JSON); "empty".
    """
    text = head.lstrip(JSON_WS)
    if not text:
        return "empty" if complete else None
    if text[:1] == b"[":
        return "array"
    if text[:1] != b"{":
        return "other"
    seen = opens = 0  # lines that are not blank; of those, lines that start with "{"
    pos = 0
    while True:
        cut = text.find(b"\n", pos)
        if cut < 0 and not complete and len(text) - pos <= max_bytes:
            return None
        line = (text[pos:] if cut < 0 else text[pos:cut]).strip(JSON_WS)
        if len(line) > max_bytes:
            return "lines"  # an oversized line: "too_large", and the lines after it are read
        if line:
            if line == b"{" and not seen:
                return "documents"
            if _is_object(line):
                return "lines"
            seen += 1
            opens += text[pos:pos + 1] == b"{"
            if seen == _DAMAGED_LINES:
                # In a pretty-printed measurement only its first line starts with "{" (nested objects are
                # indented): several such lines are JSON lines, all of them damaged so far.
                return "lines" if opens >= 2 else "documents"
        if cut < 0:
            return "lines"  # a single line, not JSON: one record, which the parser rejects
        pos = cut + 1


# Lines looked at before a "{" start is taken for pretty-printed documents: JSON lines whose first few
# are damaged are still JSON lines (their good lines are kept), and no line of an indented document is an
# object on its own (an array's are, but an array starts with "[").
_DAMAGED_LINES = 5


def _is_json(data: bytes) -> bool:
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def _is_object(data: bytes) -> bool:
    try:
        return isinstance(orjson.loads(data), dict)
    except orjson.JSONDecodeError:
        return False


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    """``f`` in pieces of up to `CHUNK` bytes. ``read1`` where there is one: ``read(n)`` drops the bytes it
    had when damage ends the read (a truncated archive member), ``read1`` returns them first."""
    read = getattr(f, "read1", None) or f.read
    while chunk := read(CHUNK):
        yield chunk


def _until_damage(source: str, records: Iterator[Line | Rejection]) -> Iterator[Line | Rejection]:
    """``records``, and the damage that ended them early (a truncated or corrupt compressed stream or archive)
    as one rejection, as `read_lines` reports it: the records before it are kept."""
    count = 0
    try:
        for record in records:
            count += 1
            yield record
    except EOFError:
        yield Rejection(source, count + 1, "truncated", f"the input ends early after {count} complete records")
    except (gzip.BadGzipFile, zlib.error) as exc:
        yield Rejection(source, count + 1, "damaged", one_line(exc))
    except OSError as exc:
        if not decompress_error(exc):
            raise  # a read error: "unreadable", for the whole file
        yield Rejection(source, count + 1, "damaged", one_line(exc))


# JSON framing without parsing: `_Scanner` needs to know only where strings and brackets are. One regular
# expression call skips a run of plain bytes, a whole string, or a whole bracketed value nested up to
# `_NESTING` deep, so a measurement costs a few calls, not one Python step per byte or per bracket.
_STRING = rb'"(?:[^"\\]++|\\[\s\S])*+"'
_PLAIN = rb'[^"\[\]{}]++'
_NESTING = 4


def _nested(depth: int) -> bytes:
    """A pattern for a whole bracketed value nested at most ``depth`` deep (brackets in strings are not counted;
    ``{`` closed by ``]`` is let through: the parser rejects it later)."""
    pattern = rb"[\[{](?:" + _PLAIN + b"|" + _STRING + rb")*+[\]}]"
    for _ in range(depth - 1):
        pattern = rb"[\[{](?:" + _PLAIN + b"|" + _STRING + b"|" + pattern + rb")*+[\]}]"
    return pattern


_INSIDE = re.compile(rb"(?:" + _PLAIN + b"|" + _STRING + b"|" + _nested(_NESTING) + rb")*+")
_ITEM = re.compile(rb'(?:[^"\[\]{},]++|' + _STRING + b"|" + _nested(_NESTING) + rb")*+")  # an array item's top level
_STRING_REST = re.compile(rb'(?:[^"\\]++|\\[\s\S])*+')
_SPACE = re.compile(rb"[ \t\r\n]*+")
_QUOTE, _BACKSLASH, _COMMA, _OPEN_BRACE, _CLOSE_BRACKET = b'"'[0], b"\\"[0], b","[0], b"{"[0], b"]"[0]


class _Scanner:
    """Where JSON values end, over a stream read in chunks, without parsing them: follows strings (a backslash
    can be a chunk's last byte) and bracket depth. Memory is the state below, whatever the value's size, so a
    value over the limit can be skipped without being held."""

    __slots__ = ("depth", "escaped", "in_string")

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped = False  # in a string, the previous chunk ended with a backslash

    @property
    def closed(self) -> bool:
        """Not inside a string or a bracket: a document that was started is complete."""
        return not self.depth and not self.in_string

    def scan(self, chunk: bytes, pos: int, items: bool, stop: int | None = None) -> int:
        """Scan ``chunk`` from ``pos`` up to ``stop`` (its end if None); return where the value being scanned
        ends, or ``stop``, which is to the scanner what the end of a chunk is.

        ``items``: the value is an array item, and ends before a comma or a closing bracket that is not its own
        (the array's). Otherwise it is a document that starts with a bracket at ``pos`` and ends after the
        bracket that closes it.
        """
        n = len(chunk) if stop is None else stop
        while pos < n:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                    pos += 1
                    continue
                pos = _STRING_REST.match(chunk, pos, n).end()  # type: ignore[union-attr] # (it matches "")
                if pos == n:
                    break
                if chunk[pos] == _BACKSLASH:  # the chunk's last byte: what it escapes is in the next chunk
                    self.escaped = True
                else:  # the closing quote
                    self.in_string = False
                pos += 1
                continue
            if self.depth or items:
                pos = (_INSIDE if self.depth else _ITEM).match(chunk, pos, n).end()  # type: ignore[union-attr]
                if pos == n:
                    break
            byte = chunk[pos]
            if byte == _QUOTE:
                self.in_string = True
            elif byte in b"[{":
                self.depth += 1
            elif byte in b"]}" and self.depth:
                self.depth -= 1
                if not self.depth and not items:
                    return pos + 1
            else:  # a comma or a closing bracket at the item's top level
                return pos
            pos += 1
        return n


class _Held:
    """The bytes of one array item or document: held while within the limit, only counted past it, so memory
    is bounded by the limit, not by the input. The whitespace around the value is not part of it."""

    __slots__ = ("checked", "limit", "parts", "size", "trimmed")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] | None = []  # None: over the limit
        self.size = 0  # bytes from the value's first one
        self.trimmed = False  # past the limit by trailing whitespace only (which was dropped)
        self.checked = 0  # `size` when `broken` last parsed the bytes held

    def add(self, piece: bytes) -> None:
        if not self.size:
            piece = piece.lstrip(JSON_WS)
        if not piece:
            return
        self.size += len(piece)
        if self.parts is None:
            return
        if self.trimmed:
            if piece.strip(JSON_WS):
                self.parts = None
            return
        self.parts.append(piece)
        if self.size > self.limit:
            data = b"".join(self.parts).rstrip(JSON_WS)
            self.parts, self.trimmed = (None, False) if len(data) > self.limit else ([data], True)

    @property
    def data(self) -> bytes | None:
        """The value's bytes; None when it is over the limit."""
        return None if self.parts is None else b"".join(self.parts).rstrip(JSON_WS)

    def broken(self, scanner: _Scanner) -> bool:
        """Whether the value held, met by a line that starts as a new value would, is over there.

        It is when it is complete (a comma is missing before the line), when the scanner is inside a string (a
        JSON string holds no line break), or when the bytes held are not the start of any valid JSON: orjson
        stops before their end (a mere prefix of valid JSON fails only at its end). They are parsed again only
        once they have doubled since the last time, so that a long value whose nested objects start lines at
        the items' column costs linear time; a value over the limit is not held and is not cut.
        """
        if scanner.in_string or not scanner.depth:
            return True
        if self.parts is None or self.size < 2 * self.checked:
            return False
        self.checked = self.size
        data = b"".join(self.parts).rstrip(JSON_WS)
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError as exc:  # pos counts characters, as in exc.doc ("" when not UTF-8)
            return not exc.doc or exc.pos < len(exc.doc)
        return True


_LINE_OPEN = re.compile(rb"\n([ \t]*+)\{")
_INDENT = re.compile(rb"[ \t]*+")


@lru_cache(maxsize=16)
def _line_open_at(column: int) -> re.Pattern[bytes]:
    return re.compile(rb"\n[ \t]{%d}\{" % column)


class _LineOpens:
    """Where the lines that start with ``{`` (after their indentation) are, in a stream read chunk after chunk:
    where a damaged array item or document is left behind and reading starts again (`_read_array`).
    ``only``: at that column alone (documents start at 0; an array's items where its first that did)."""

    __slots__ = ("indent", "only")

    def __init__(self, only: int | None = None) -> None:
        self.indent: int | None = 0  # the current line's indentation, while it has nothing else yet
        self.only = only

    def find(self, chunk: bytes) -> list[tuple[int, int]]:
        """The ``(position of the "{", its column)`` of each line of ``chunk`` that starts with one."""
        found = []
        if self.indent is not None:  # a line that started in an earlier chunk
            k = _INDENT.match(chunk).end()  # type: ignore[union-attr] # (it matches "")
            if k < len(chunk) and chunk[k] == _OPEN_BRACE:
                found.append((k, self.indent + k))
        if self.only is None:
            found += [(m.end() - 1, m.end(1) - m.start(1)) for m in _LINE_OPEN.finditer(chunk)]
        else:  # nested objects that start lines deeper (an indented array's) are not even looked at
            found = [(at, indent) for at, indent in found if indent == self.only]
            found += [(m.end() - 1, self.only) for m in _line_open_at(self.only).finditer(chunk)]
        cut = chunk.rfind(b"\n")
        blank = _INDENT.match(chunk, cut + 1).end() == len(chunk)  # type: ignore[union-attr]
        if cut >= 0:
            self.indent = len(chunk) - cut - 1 if blank else None
        elif self.indent is not None:
            self.indent = self.indent + len(chunk) if blank else None
        return found


_MISSING = "it does not close before a line that starts the next one"


def _read_array(source: str, f: IO[bytes], max_bytes: int) -> Iterator[Line | Rejection]:
    """A JSON array, item by item: each item is one record, with its number (from 1) as its line, and is bounded
    by ``max_bytes`` on its own, so an array of any size is read in the memory of one item.

    As the whole array was before: an object item is kept re-serialised (``orjson.dumps``); any other item is
    "wrong_type". An item that is not valid JSON is "corrupt_json" and the items around it are kept; an array
    cut short keeps its complete items.

    An item whose brackets or string do not close would take every item after it, to the end of the input.
    Where items start lines (one a line, or indented as ``json.dumps`` and ``jq`` write them), a line that
    starts with ``{`` at the items' column, met inside an item shown damaged (`_Held.broken`), starts the next
    item: the damaged one is one "corrupt_json" and the items after it are kept. A ``}`` that closes nothing
    is one "corrupt_json" and passed over; data after the array's ``]`` (a second array) is one "corrupt_json",
    and reading goes on at the next line that starts like an item.
    """
    scanner = _Scanner()
    held = _Held(max_bytes)
    opens = _LineOpens()  # its `only`: the items' column, once an item started a line (None: any line will do)
    number = 0
    stray = False  # a "}" that closed nothing was passed over, and no item has started since
    state = "before"  # the "[", then "items", then "after" the "]", then "skipping" data after it
    for chunk in _chunks(f):
        lines = opens.find(chunk)
        k = 0
        pos = 0
        if state == "before":
            pos = _SPACE.match(chunk).end()  # type: ignore[union-attr]
            if pos == len(chunk):
                continue
            pos, state = pos + 1, "items"  # the "[" (`_start` saw it)
        while True:
            while k < len(lines) and lines[k][0] <= pos:
                k += 1
            if state == "items":
                stop = lines[k][0] if k < len(lines) else len(chunk)
                end = scanner.scan(chunk, pos, items=True, stop=stop)
                held.add(chunk[pos:end])
                if end == stop < len(chunk):  # a line that starts with "{"
                    pos, indent = lines[k]
                    if not held.size:
                        opens.only = indent  # an item starts it: only that column counts now
                    elif (opens.only is None or indent == opens.only) and held.broken(scanner):
                        number += 1
                        yield _array_item(source, number, held, _MISSING)
                        held, scanner, opens.only = _Held(max_bytes), _Scanner(), indent
                    continue
                if end == len(chunk):
                    break
                closing = chunk[end] != _COMMA
                # "[]" has no items; nor has the comma after a stray "}"
                if held.size or not (stray or (closing and not number)):
                    number += 1
                    yield _array_item(source, number, held)
                held, pos, stray = _Held(max_bytes), end + 1, False
                if closing and chunk[end] != _CLOSE_BRACKET:  # not the array's end: passed over
                    yield Rejection(source, number, "corrupt_json", f"a '}}' after array item {number} closes nothing")
                    stray = True
                elif closing:
                    state = "after"
                continue
            if state == "after":
                if _SPACE.match(chunk, pos).end() == len(chunk):  # type: ignore[union-attr]
                    break
                yield Rejection(source, 0, "corrupt_json", f"data after the end of the JSON array ({number} items)")
                state = "skipping"
            while k < len(lines) and opens.only is not None and lines[k][1] != opens.only:
                k += 1
            if k == len(lines):
                break
            pos, state, scanner = lines[k][0], "items", _Scanner()
            k += 1
            opens.only = lines[k - 1][1]
    if state == "items":
        if held.size and scanner.closed and (held.data or b"").endswith(b"}"):
            number += 1  # an object complete before the cut
            yield _array_item(source, number, held)
        yield Rejection(source, number + 1, "corrupt_json", f"the JSON array ends early, after {number} items")


def _array_item(source: str, number: int, held: _Held, why: str = "") -> Line | Rejection:
    data = held.data
    if data is None:
        return Rejection(source, number, "too_large", f"{held.size} bytes in array item {number} (limit {held.limit})")
    try:
        item = orjson.loads(data)
    except orjson.JSONDecodeError:
        return Rejection(source, number, "corrupt_json",
                         f"array item {number} is not valid JSON{': ' if why else ''}{why}")
    if not isinstance(item, dict):
        return Rejection(source, number, "wrong_type", f"array item {number} is a {_json_type(item)}, not an object")
    try:
        return Line(source, number, orjson.dumps(item))
    except orjson.JSONEncodeError:  # parsed, but too deep to write back
        return Rejection(source, number, "invalid_value", TOO_DEEP)


def _read_documents(source: str, f: IO[bytes], max_bytes: int) -> Iterator[Line | Rejection]:
    """Pretty-printed JSON documents, usually one, each on the line it starts on and bounded by ``max_bytes``
    on its own: one over the limit is one "too_large", however many lines it has, and is skipped unheld.

    As in an array (`_read_array`), a document shown damaged when a line starts with ``{`` at column 0 ends
    there, one "corrupt_json", and the next starts; data between documents is one "corrupt_json", and reading
    goes on at the next such line.
    """
    scanner = _Scanner()
    held: _Held | None = None
    opens = _LineOpens(only=0)
    skipping = False  # data between documents, up to a line that starts with "{"
    line = first = 1  # the line the scan is on; the one the current document started on
    chunks = _chunks(f)
    chunk = next(chunks, b"")
    while chunk:
        following = next(chunks, b"")
        lines = [at for at, indent in opens.find(chunk) if not indent]  # (a line that began in the last chunk)
        k = 0
        pos = 0
        while pos < len(chunk):
            while k < len(lines) and lines[k] <= pos:
                k += 1
            if skipping:
                stop = lines[k] if k < len(lines) else len(chunk)
                line += chunk.count(b"\n", pos, stop)
                pos = stop
                if stop == len(chunk):
                    break
                skipping = False
            if held is None:
                end = _SPACE.match(chunk, pos).end()  # type: ignore[union-attr]
                line += chunk.count(b"\n", pos, end)
                pos = end
                if pos == len(chunk):
                    break
                if chunk[pos] != _OPEN_BRACE:
                    yield Rejection(source, line, "corrupt_json", "data after the end of a JSON document")
                    skipping = True
                    continue
                rest = chunk[pos:].rstrip(JSON_WS) if not following else b""  # (a copy of the chunk's rest)
                if rest and len(rest) <= max_bytes and _is_json(rest):
                    # The usual case, one document in one chunk: parsed whole (orjson is many times faster
                    # than the scanner), and read as the scanner would have.
                    yield Line(source, line, _one_line_json(rest))
                    return
                held, first = _Held(max_bytes), line
                while k < len(lines) and lines[k] <= pos:
                    k += 1
            stop = lines[k] if k < len(lines) else len(chunk)
            end = scanner.scan(chunk, pos, items=False, stop=stop)
            held.add(chunk[pos:end])
            line += chunk.count(b"\n", pos, end)
            pos = end
            if scanner.closed:
                yield _document(source, first, held)
                held = None
            elif end == stop < len(chunk) and held.broken(scanner):
                yield _document(source, first, held, f"{_MISSING} (line {line})")
                held, scanner = None, _Scanner()
        chunk = following
    if held is not None:  # the input ends inside a document
        too_large = held.parts is None
        yield _document(source, first, held) if too_large else \
            Rejection(source, first, "corrupt_json", "the JSON document ends early")


def _document(source: str, line: int, held: _Held, why: str = "") -> Line | Rejection:
    data = held.data
    if data is None:
        return Rejection(source, line, "too_large", f"{held.size} bytes in one JSON document (limit {held.limit})")
    if not _is_json(data):
        return Rejection(source, line, "corrupt_json", f"not a JSON document{': ' if why else ''}{why}")
    return Line(source, line, _one_line_json(data))


def _one_line_json(data: bytes) -> bytes:
    """JSON forbids raw line breaks inside strings: joining the lines changes only insignificant whitespace,
    and keeps the raw store one measurement per line."""
    return data.replace(b"\r\n", b" ").replace(b"\n", b" ").replace(b"\r", b" ")


def _read_value(source: str, f: IO[bytes], max_bytes: int) -> Iterator[Line | Rejection]:
    """A ``.json`` file that is neither an array nor an object: one record (the pipeline says "wrong_type"),
    or not JSON at all."""
    data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        yield Rejection(source, 0, "too_large", f"more than {max_bytes} bytes in one JSON document")
        return
    data = data.strip(JSON_WS)
    if not data:
        return
    if not _is_json(data):
        yield Rejection(source, 1, "corrupt_json", "not a JSON document")
        return
    yield Line(source, 1, _one_line_json(data))


def _json_type(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def read_post(source: str, f: IO[bytes], max_bytes: int) -> Iterator[Line | Rejection]:
    """An OONI collector submission: ``{"format": "json", "content": measurement}``."""
    data = f.read(max_bytes + 1).removeprefix(BOM)
    if len(data) > max_bytes:
        yield Rejection(source, 0, "too_large", f"submission larger than {max_bytes} bytes")
        return
    try:
        post = orjson.loads(data)
    except orjson.JSONDecodeError:
        yield Rejection(source, 1, "corrupt_json", "the submission is not valid JSON")
        return
    if not isinstance(post, dict):
        yield Rejection(source, 1, "wrong_type", f"the submission is a {_json_type(post)}, not an object")
        return
    fmt = post.get("format")
    if fmt != "json":
        yield Rejection(source, 1, "unsupported_format", f"submission format {str(fmt)[:20]!r}")
        return
    content = post.get("content")
    if not isinstance(content, dict):
        yield Rejection(source, 1, "wrong_type", f"content is a {_json_type(content)}, not an object")
        return
    try:
        data = orjson.dumps(content)
    except orjson.JSONEncodeError:  # parsed, but too deep to write back
        yield Rejection(source, 1, "invalid_value", TOO_DEEP)
        return
    yield Line(source, 1, data)


_TRUNCATED_TAR = "the archive ends early; members before the cut were kept"
_DAMAGE = frozenset({"truncated", "damaged", "unreadable"})  # what a member's reader says of a broken archive


class _Header(tarfile.TarInfo):
    """A tar header that tells its archive why reading headers stopped. In stream mode tarfile ends an archive
    cut inside (or right before) a header, or with a damaged one, as quietly as at its end-of-archive marker."""

    @classmethod
    def fromtarfile(cls, archive: tarfile.TarFile) -> _Header:
        try:
            return super().fromtarfile(archive)
        except tarfile.EOFHeaderError:  # type: ignore[attr-defined]  # in tarfile since 3.0, not in its stubs
            raise  # the end-of-archive marker
        except tarfile.HeaderError as exc:
            if isinstance(archive, _Archive):
                archive.damage = exc
            raise


class _Archive(tarfile.TarFile):
    """Read once, front to back: it keeps no list of the members it has read (tarfile does, even streaming,
    about 1 kB a member: a postcan of 100,000 members would hold 100 MB of headers)."""

    tarinfo = _Header
    damage: tarfile.HeaderError | None = None

    def next(self) -> tarfile.TarInfo | None:
        member = super().next()
        self.members.clear()  # type: ignore[attr-defined]  # TarFile's list, private in the stubs  # iteration asks next() for each member once the list is shorter than its count
        return member


class _Member(io.RawIOBase):
    """A tar member's data, read straight from the archive's stream. tarfile's own member file drops the bytes
    of a read that meets the end of a truncated archive; this one returns them, then raises EOFError, so the
    complete lines or items before the cut are kept."""

    def __init__(self, stream: IO[bytes], size: int) -> None:
        self._stream = stream
        self._left = size
        self._cut = False

    @property
    def cut(self) -> bool:
        """Whether the archive ended inside this member."""
        return self._cut

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._cut:
            raise EOFError(_TRUNCATED_TAR)
        view = memoryview(buffer).cast("B")
        data = self._stream.read(min(len(view), self._left))
        if len(data) < min(len(view), self._left):
            self._cut = True
            if not data:
                raise EOFError(_TRUNCATED_TAR)
        view[:len(data)] = data
        self._left -= len(data)
        return len(data)


def _member_file(archive: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes] | None:
    stream = archive.fileobj
    if stream is None or member.sparse is not None or stream.tell() != member.offset_data:  # pragma: no cover
        return archive.extractfile(member)  # (a sparse member; never in OONI's archives)
    return io.BufferedReader(_Member(stream, member.size), buffer_size=CHUNK)  # type: ignore[arg-type]


def _read_member(source: str, name: str, size: int, f: IO[bytes], max_bytes: int) -> Iterator[Line | Rejection]:
    """One archive member, read like a file of its name; a ``.jsonl`` member (or a ``.json`` one, which can be
    JSON lines) is bounded line by line or item by item, never as a whole."""
    if name.endswith(".post"):
        if size > max_bytes:
            yield Rejection(source, 0, "too_large", f"{size} bytes (limit {max_bytes})")
        else:
            yield from read_post(source, f, max_bytes)
    elif name.endswith(".json"):
        yield from read_json(source, f, max_bytes)
    elif name.endswith(".jsonl"):
        yield from read_lines(source, f, max_bytes)
    elif name.endswith(_GZIPPED):  # OONI's .jsonl.gz files, tarred: decompressed as they are read
        gz = cast(IO[bytes], gzip.GzipFile(fileobj=f, mode="rb"))  # a GzipFile reads as one
        yield from (read_json if name.endswith(".json.gz") else read_lines)(source, gz, max_bytes)
    else:
        yield Rejection(source, 0, "unsupported_format",
                        "archive member is not .post, .json, .jsonl, .json.gz or .jsonl.gz")


_GZIPPED = (".json.gz", ".jsonl.gz")


def _archive_cut(f: IO[bytes], name: str) -> bool:
    """Whether the damage a member's reader met is the archive's (cut inside the member) rather than the member's
    own: a gzipped member can be damaged in an archive that is whole, and the members after it are read."""
    if not name.endswith(_GZIPPED):
        return True  # the member's bytes are read as they are: only the archive can cut them
    member = getattr(f, "raw", None)
    return not isinstance(member, _Member) or member.cut


class _Gunzip(io.RawIOBase):
    """A gzip file inflated as it is read, at most as much as is asked at a time (a tar archive's stream). Cut
    short, it ends where the data does, as a tar file cut short ends: every byte before the cut is returned
    (GzipFile's buffer drops the last it inflated when it meets the end), and the archive reader says the cut.
    Damaged data raises zlib.error; members one after another are read as one, as gzip does."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "rb")
        self._z = zlib.decompressobj(31)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = len(buffer)
        while True:
            data = self._z.unconsumed_tail or self._f.read(CHUNK)
            if self._z.eof:  # a member ended: the next begins (NUL padding after the last is no member)
                rest = self._z.unused_data + data
                if not rest.strip(b"\0"):
                    return 0
                self._z = zlib.decompressobj(31)
                data = rest
            if not data:
                return 0  # cut short: what came before was returned
            out = self._z.decompress(data, want)
            if out:
                buffer[:len(out)] = out
                return len(out)

    def close(self) -> None:
        self._f.close()
        super().close()


def _gzipped(path: str) -> bool:
    """Whether the file begins as gzip does (a file that cannot be opened is left to tarfile to say so)."""
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def read_tar(path: str, max_bytes: int, fileobj: IO[bytes] | None = None) -> Iterator[Line | Rejection | Unread]:
    """A tar archive: a file (compressed as its name and magic say), or ``fileobj``, an already
    decompressed stream. Damage ends it with one rejection; what came before is kept. A member of a Censored
    Planet scan that holds no measurement is not read, and said (`Unread`)."""
    lz4 = Lz4File(path) if fileobj is None and path.lower().endswith(".lz4") else None
    gz = None
    if fileobj is None and lz4 is None and _gzipped(path):
        # tarfile's own gzip stream inflates each 10 KiB it reads whole (up to 10 MB of zeros) and copies what is
        # left at every read: skipping a 300 MiB member of zeros took a minute. `_Gunzip` inflates what is asked.
        gz = _Gunzip(path)
        fileobj = cast(IO[bytes], gz)
    damaged: tuple[type[BaseException], ...] = (tarfile.TarError, EOFError, zlib.error)
    try:
        if fileobj is not None:
            archive = _Archive.open(fileobj=fileobj, mode="r|")
        elif lz4 is None:
            archive = _Archive.open(path, "r|*")
        else:
            archive = _Archive.open(fileobj=lz4, mode="r|")  # type: ignore[call-overload]
    except damaged + ((OSError,) if lz4 is not None or fileobj is not None else ()) as exc:
        # (a file that cannot be opened stays "unreadable")
        if lz4 is not None:
            lz4.close()
        if gz is not None:
            gz.close()
        yield Rejection(path, 0, "damaged", f"not a readable tar archive: {one_line(exc)}")
        return
    with archive:
        try:
            for member in archive:
                if not member.isfile():
                    continue
                if not_measurements(f"{path}!{member.name}"):
                    yield Unread(f"{path}!{member.name}")
                    continue
                f = _member_file(archive, member)
                if f is None:  # pragma: no cover - a regular file always has one
                    continue
                name = member.name.lower()
                for record in _read_member(f"{path}!{member.name}", name, member.size, f, max_bytes):
                    yield record
                    if isinstance(record, Rejection) and record.reason in _DAMAGE and _archive_cut(f, name):
                        return  # the member's reader met the archive's damage: nothing after it can be read
            if isinstance(archive.damage, (tarfile.TruncatedHeaderError,  # type: ignore[attr-defined]  # no stubs
                                           tarfile.EmptyHeaderError)):  # type: ignore[attr-defined]
                yield Rejection(path, 0, "truncated", _TRUNCATED_TAR)
            elif archive.damage is not None:
                yield Rejection(path, 0, "damaged", f"damaged tar header: {one_line(archive.damage)}")
        except EOFError:
            yield Rejection(path, 0, "truncated", _TRUNCATED_TAR)
        except (tarfile.TarError, zlib.error, gzip.BadGzipFile) as exc:
            if "unexpected end of data" in str(exc):  # tarfile's words for an archive cut inside a member
                yield Rejection(path, 0, "truncated", _TRUNCATED_TAR)
            else:
                yield Rejection(path, 0, "damaged", one_line(exc))
        except OSError as exc:
            if (lz4 is None and fileobj is None) or not decompress_error(exc):
                raise
            yield Rejection(path, 0, "damaged", one_line(exc))
        finally:
            if lz4 is not None:
                lz4.close()
            if gz is not None:
                gz.close()
