"""Read events from files for `metronome-destination import`: JSONL or a JSON array, gzip or plain,
a path or `-` for standard input. Memory stays bounded: one line (or one array element) at a time.

`read_events` yields an `Item` per non-blank line or array element: its bytes, or why it cannot
be an event (too long). `parsed` parses one, wherever the work runs (backfill.py maps in several
processes). A file that is not JSON at all raises `NotJSON` before anything is yielded; a JSON
array broken part-way raises it where the break is.
"""
from __future__ import annotations

import gzip
import io
import json
import sys
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from destination.errors import first_line
from destination.payload import exact

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 16
# A line longer than this is read past, not into memory, and kept as a refusal of its first bytes.
KEPT_BYTES = 4096


class NotJSON(Exception):
    """The input cannot be read as events at all: the import stops (exit 2)."""


@dataclass(slots=True)
class Item:
    number: int  # the line (JSONL) or element (JSON array) number, from 1
    event: object = None
    raw: bytes = b""
    problem: tuple | None = None  # (code, message) when the line is not an event (set by `parsed`, or too long)

    def __reduce__(self):  # sent to a mapping process: a tuple pickles in half the time of slots' default
        return (Item, (self.number, self.event, self.raw, self.problem))


class Source:
    """An opened input: its binary stream, and how far into the underlying file it has read."""

    def __init__(self, name: str, stdin: BinaryIO | None = None):
        self.name = name
        if name == "-":
            self._file, self.size = stdin or sys.stdin.buffer, None
        else:
            try:
                self._file = open(name, "rb")  # noqa: SIM115 - closed by close()
            except OSError as exc:
                raise NotJSON(f"{name}: cannot open: {exc.strerror}") from None
            self.size = self._file.seek(0, io.SEEK_END) or None
            self._file.seek(0)
        buffered = self._file if hasattr(self._file, "peek") else io.BufferedReader(self._file, CHUNK)
        self.gzipped = buffered.peek(2)[:2] == GZIP_MAGIC  # by its bytes, whatever the file is called
        self.stream: BinaryIO = gzip.GzipFile(fileobj=buffered, mode="rb") if self.gzipped else buffered

    def consumed(self) -> int | None:
        """Bytes of the file read so far (compressed bytes for gzip), for progress; None for stdin."""
        return None if self.size is None else self._file.tell()

    def close(self) -> None:
        if self.name != "-":
            self._file.close()


def read_events(source: Source, max_event_bytes: int) -> Iterator[Item]:
    """Every event in the source, in order, with its number."""
    try:
        first, blank_lines = _first_byte(source.stream)
        if first == b"[":
            yield from _array_items(source.stream, max_event_bytes)
        elif first in (b"{", b""):
            yield from _lines(source.stream, first, blank_lines, max_event_bytes)
        else:
            raise NotJSON(f"{source.name}: not JSON: it starts with {first!r}, and events are JSON objects, one per "
                          "line (JSONL), or a JSON array")
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise NotJSON(f"{source.name}: not a whole gzip file ({exc or type(exc).__name__})") from None


def _first_byte(stream) -> tuple[bytes, int]:
    """The first byte that is not blank or a byte-order mark (consumed), and the lines before it."""
    newlines = 0
    while True:
        byte = stream.read(1)
        if byte not in (b" ", b"\t", b"\r", b"\n", b"\xef", b"\xbb", b"\xbf"):
            return byte, newlines
        newlines += byte == b"\n"


def _lines(stream, first: bytes, number: int, max_event_bytes: int) -> Iterator[Item]:
    limit = max_event_bytes + 2  # room for the newline and a byte more, to tell "too long" from "exactly the limit"
    pending = first
    while True:
        line = pending + stream.readline(limit)
        pending = b""
        if not line:
            return
        number += 1
        if len(line) >= limit and not line.endswith(b"\n"):
            yield Item(number, raw=line[:KEPT_BYTES], problem=("event_too_large", _skip_rest(stream, len(line), max_event_bytes)))
            continue
        line = line.strip()
        if line:
            yield Item(number, raw=line)


def _skip_rest(stream, read: int, max_event_bytes: int) -> str:
    while (more := stream.readline(CHUNK)) and not more.endswith(b"\n"):
        read += len(more)
    read += len(more)
    return f"the line is {read} bytes or more; an event may be {max_event_bytes}"


def parsed(item: Item) -> Item:
    """The item with its event parsed (exact numbers), or with why it is not JSON."""
    if item.problem is not None:
        return item
    try:
        item.event = exact.loads(item.raw)
    except ValueError as exc:
        item.raw = item.raw[:KEPT_BYTES]
        item.problem = ("malformed_json", f"not JSON: {first_line(exc)}")
    return item


def _array_items(stream, max_event_bytes: int) -> Iterator[Item]:
    """Elements of a top-level JSON array, one at a time: the standard library's raw_decode finds
    where each ends (it needs text, so the chunk is decoded), then the element's own bytes are
    parsed exactly. A broken array cannot be read past, so it stops the import where it breaks."""
    decoder = json.JSONDecoder()
    text, at, number, done = "", 0, 0, False
    reader = io.TextIOWrapper(stream, encoding="utf-8", errors="strict")
    while True:
        at = _skip_blank(text, at)
        if at < len(text) and text[at] in ",]" and (number or text[at] == "]"):
            if text[at] == "]":
                return
            at = _skip_blank(text, at + 1)
        try:
            _, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError as exc:
            if done:
                raise NotJSON(f"element {number + 1} of the JSON array: {exc.msg}") from None
            chunk = reader.read(CHUNK)
            done = not chunk
            text = text[at:] + chunk
            at = 0
            if len(text) > max_event_bytes * 4 + CHUNK:  # bounded memory: an element this long is no event
                raise NotJSON(f"element {number + 1} of the JSON array does not end within {len(text)} characters: "
                              "it is broken or far too large") from None
            continue
        number += 1
        yield Item(number, raw=text[at:end].encode())
        at = end


def _skip_blank(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at
