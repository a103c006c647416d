"""Trace files on disk: finding them, opening them, cutting them into records.

The OpenTelemetry Collector's file exporter writes one OTLP ``ExportTraceServiceRequest``
per export. With its defaults (``format: json``, no compression) that is one JSON object a
line. With ``format: proto``, or with ``compression: zstd`` (never a default), each export
is written as a 4-byte big-endian length and that many bytes: a JSON document or a
protobuf message, each possibly a zstd frame of its own. With the collector's native
compression, or ``gzip`` applied by hand or by log rotation, the whole file is one
compressed stream. Everything is recognised by its first bytes, never by the file name.

With ``rotation``, the exporter renames a full file by putting a time before its
extension: ``traces-2026-12-04T10-00-00.000.json`` (lumberjack, older collectors) or
``traces-2026-12-04T10-00-00.000-size.json`` (timberjack, since collector-contrib's
PR #45900 of 2026; ``-time`` or another reason after the time; newer collectors rename
the lumberjack backups so). :func:`find_files` reads backups oldest first, then the
files still written.

The trace APIs answer one JSON document per request (Jaeger's ``/api/v3/traces``, Tempo's
``/api/traces`` and ``/api/v2/traces``): saved one a line, appended with no newline between
them, pretty-printed (``jq .``) or gathered in a JSON array (``jq -s``), each document is
a record of its own. A file whose first value is pretty-printed or an array is cut into
values by brackets (:func:`_json_documents`); otherwise it is cut into lines, the fast way,
and only a line holding an array, or several objects when the file's first line does, is
cut by brackets.

Reading is a stream: memory is bounded by the largest single record (or a block of
length-prefixed records read at once, 4 MB), whatever the size of the file. A problem (an
unreadable file, a truncated record) is reported through :class:`Problems` with the file
and line, and reading goes on with the next record.
"""

from __future__ import annotations

import glob
import gzip
import importlib
import io
import itertools
import os
import re
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from types import ModuleType

__all__ = (
    "PROBLEM_UNITS",
    "LineRanges",
    "Problems",
    "Record",
    "TraceFileError",
    "find_files",
    "framed_ranges",
    "is_json_record",
    "line_ranges",
    "read_framed_range",
    "read_range",
    "read_records",
)

GZIP_MAGIC: Final = b"\x1f\x8b"
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
#: A record longer than this is a corrupt length prefix, not an export.
MAX_RECORD_BYTES: Final = 1 << 30
#: Bytes read at a time from a file of JSON lines.
_CHUNK_BYTES: Final = 1 << 20
#: Bytes read at a time from a file of length-prefixed records.
_FRAMED_BLOCK_BYTES: Final = 4 << 20
_LENGTH_PREFIX: Final = struct.Struct(">I").unpack_from
#: Bytes read at a time to find where records start, for cutting a file into ranges.
_CUT_BLOCK_BYTES: Final = 64 << 10
#: A length-prefixed record where it lies: ``(block, start, stop, number)``, the record
#: being ``block[start:stop]``, numbered in its file from 1.
Located = tuple[bytes, int, int, int]
#: The timestamp the collector's rotation puts before a rotated file's extension, and the
#: reason timberjack puts after it (``size``, ``time``: lower case, digits, ``_`` and ``-``).
_ROTATED: Final = re.compile(
    r"-(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)(?:-[a-z0-9_-]{1,32})?(?:\.[^.]*)*$"
)
#: Bytes looked at to tell the layout of a file (its leading blanks, then its first value).
_HEAD_BYTES: Final = 256
#: The start of a file of values that are not one a line: an array, or a pretty-printed object.
_MULTILINE_START: Final = re.compile(rb"[ \t\r\n]*(?:\[|\{[ \t\r]*\n)")
#: A line holding an array (``jq -cs``): its items are records of their own.
_LINE_ARRAY: Final = re.compile(rb"[ \t\r]*\[")
#: A JSON string, an opening or closing bracket, or a lone quote: a string the buffer cuts short.
_TOKEN: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|([{\[])|([}\]])|(")', re.DOTALL)
_OPENER, _CLOSER, _CUT_STRING = 1, 2, 3
_BLANKS: Final = re.compile(rb"[ \t\r\n]*")
_BLANKS_AND_COMMAS: Final = re.compile(rb"[ \t\r\n,]*")
#: The end of text that is no object or array: its line's, or its array item's.
_LINE_END: Final = re.compile(rb"\n")
_ITEM_END: Final = re.compile(rb"[,\]\n]")
#: Text that is no object or array is cut into records of at most this many bytes.
_MAX_OTHER_BYTES: Final = 1 << 16
_OPENERS: Final = b"{["
_OPEN_BRACE: Final = ord("{")
_NEWLINE: Final = ord("\n")
_BLANKS_OR_BRACE: Final = b" \t\r\n{"
#: A path holding a glob pattern.
_GLOB_MAGIC: Final = re.compile(r"[*?[]")

#: Each problem reason and what it skipped.
PROBLEM_UNITS: Final = {
    "unreadable_file": "file",
    "truncated_file": "file",
    "truncated_line": "line",
    "invalid_json": "line",
    "not_trace_data": "line",
    "invalid_record": "record",
    "invalid_span": "span",
}


class TraceFileError(Exception):
    """A file that cannot be read any further (reported, then the next file is read)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(slots=True)
class Problems:
    """Bad input, counted by reason; the first ``shown`` of each reason are printed."""

    stream: IO[str] = field(default_factory=lambda: sys.stderr)
    shown: int = 5
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str, where: str, detail: str) -> None:
        count = self.counts.get(reason, 0) + 1
        self.counts[reason] = count
        if count <= self.shown:
            suffix = " (further ones are only counted)" if count == self.shown else ""
            print(f"{where}: {reason.replace('_', ' ')}: {detail}{suffix}", file=self.stream)

    def skipped(self) -> dict[str, dict[str, int]]:
        """unit ("line", "span", ...) -> reason -> count."""
        by_unit: dict[str, dict[str, int]] = {}
        for reason, count in sorted(self.counts.items()):
            by_unit.setdefault(PROBLEM_UNITS.get(reason, "record"), {})[reason] = count
        return by_unit


@dataclass(frozen=True, slots=True)
class Record:
    """One export: a JSON document (``is_json``) or a protobuf message, and where it was."""

    data: bytes
    is_json: bool
    #: 1-based line (JSON lines) or record (length-prefixed) number.
    number: int
    #: ``True`` for a JSON line that did not end with a newline (the file's last line).
    unterminated: bool = False
    #: Where a protobuf message lies in ``data``, a block of records read at once:
    #: ``data[start:stop]`` (``stop`` negative: to the end), not copied out of it.
    start: int = 0
    stop: int = -1

    def content(self) -> bytes:
        """The record's own bytes: copied out of its block if it lies in one."""
        if self.start == 0 and self.stop in {-1, len(self.data)}:
            return self.data
        return self.data[self.start : self.stop if self.stop >= 0 else None]


def _rotation_key(path: Path) -> tuple[Path, int, str, str]:
    """By directory; in one, rotated files (oldest timestamp first) before the others."""
    match = _ROTATED.search(path.name)
    rotated = (0, match.group(1), path.name) if match else (1, "", path.name)
    return (path.parent, *rotated)


def _walk(path: Path) -> Iterator[Path]:
    for root, _dirs, names in os.walk(path):
        if any(part.startswith(".") for part in Path(root).relative_to(path).parts):
            continue
        yield from (Path(root) / name for name in names if not name.startswith("."))


def find_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Every file named, matched by a glob pattern (for a shell that left it unexpanded) or
    under a directory named (recursively, hidden ones left out), each once however often it
    is named: by directory, rotated files in the order they were written, then the others
    by name. Raises :class:`FileNotFoundError` for a path that does not exist and a
    pattern that matches nothing."""
    found: dict[str, Path] = {}
    for path in paths:
        if path.is_dir():
            files: Iterable[Path] = _walk(path)
        elif path.exists():
            files = (path,)
        elif _GLOB_MAGIC.search(str(path)):
            # The pattern may be absolute, which Path.glob does not take.
            matches = [Path(match) for match in glob.glob(str(path), recursive=True)]  # noqa: PTH207
            if not matches:
                raise FileNotFoundError(f"no file matches {path}")
            files = [file for match in matches for file in (_walk(match) if match.is_dir() else (match,))]
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
        for file in files:
            found.setdefault(os.path.realpath(file), file)
    yield from sorted(found.values(), key=_rotation_key)


def _open_decompressed(raw: io.BufferedReader, head: bytes) -> io.BufferedIOBase:
    if head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head.startswith(ZSTD_MAGIC):
        zstd = _zstandard()
        reader = zstd.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return io.BufferedReader(reader, buffer_size=1 << 20)
    return raw


def _zstandard() -> ModuleType:
    try:
        # Optional (the 'report' extra): only zstd files need it.
        return importlib.import_module("zstandard")
    except ModuleNotFoundError:
        raise TraceFileError(
            "unreadable_file",
            "the file is zstd-compressed: install the 'zstandard' package "
            "(pip install 'otel-overspend[report]') or decompress it with 'zstd -d'",
        ) from None


def _corrupt_stream_errors() -> tuple[type[Exception], ...]:
    """What a cut or corrupt compressed stream raises (zstd's only once it is loaded)."""
    zstd = sys.modules.get("zstandard")
    return (EOFError, zlib.error, gzip.BadGzipFile) + ((zstd.ZstdError,) if zstd is not None else ())


def _json_lines(stream: io.BufferedIOBase, *, joined: bool | None = None) -> Iterator[Record]:
    """Lines cut out of large reads: a collector line is one export, often megabytes, that
    iterating the stream line by line would copy several times. ``read1`` returns what the
    stream has decoded so far, so the lines before a cut in a compressed stream are read."""
    number = 0
    #: The start of a line that goes on in the next read.
    pending: list[bytes] = []
    #: Whether objects may follow one another on a line (``curl >>`` with no newline between
    #: answers): looked for on every line only if the first object line (of the file: given
    #: when reading a part of it) has them.
    read = stream.read1
    while chunk := read(_CHUNK_BYTES):
        start = 0
        end = chunk.find(b"\n") + 1
        while end:
            if pending:
                pending.append(chunk[start:end])
                line = b"".join(pending)
                pending = []
            else:
                line = chunk[start:end]
            number += 1
            if line[0] == _OPEN_BRACE:
                if joined is None:
                    joined = b"}{" in line
                if joined and b"}{" in line:
                    yield from _json_documents(io.BytesIO(line), line=number, cut_short_is_truncation=False)
                else:  # an export, as the collector writes them
                    yield Record(line, is_json=True, number=number)
            elif _LINE_ARRAY.match(line):
                yield from _json_documents(io.BytesIO(line), line=number, cut_short_is_truncation=False)
            elif not line.isspace():
                yield Record(line, is_json=True, number=number)
            start = end
            end = chunk.find(b"\n", start) + 1
        if start < len(chunk):
            pending.append(chunk[start:])
    if pending:
        line = b"".join(pending)
        if _LINE_ARRAY.match(line) or (joined is not False and b"}{" in line):
            yield from _json_documents(io.BytesIO(line), line=number + 1)
        elif not line.isspace():
            yield Record(line, is_json=True, number=number + 1, unterminated=True)


class _Text:
    """A stream of JSON text in a buffer that keeps what is still needed, and the line of its start."""

    __slots__ = ("buf", "counted", "eof", "line", "read")

    def __init__(self, stream: io.BufferedIOBase, line: int) -> None:
        self.read = stream.read1
        self.buf = bytearray()
        self.line = line
        #: The newlines of ``buf[:counted]`` are counted in :attr:`line`.
        self.counted = 0
        self.eof = False

    def refill(self, keep: int) -> int:
        """Drop the bytes before ``keep`` and read on; return ``keep``, how far offsets move."""
        self.line += self.buf.count(b"\n", self.counted, keep)
        self.counted = 0
        del self.buf[:keep]
        chunk = self.read(_CHUNK_BYTES)
        if chunk:
            self.buf.extend(chunk)
        else:
            self.eof = True
        return keep

    def line_of(self, offset: int) -> int:
        """The line ``buf[offset]`` is on (offsets only grow between calls)."""
        self.line += self.buf.count(b"\n", self.counted, offset)
        self.counted = offset
        return self.line

    def value(self, start: int) -> tuple[int, int | None]:
        """The start (moved by reading on) and end of the object or array at ``start``, by
        counting brackets outside strings; the end is ``None`` if the text ends first."""
        depth, scan = 0, start
        while True:
            match = _TOKEN.search(self.buf, scan)
            if match is None or match.lastindex == _CUT_STRING:
                if self.eof:
                    return start, None
                scan = len(self.buf) if match is None else match.start()
                shift = self.refill(start)
                start, scan = start - shift, scan - shift
                continue
            if match.lastindex == _OPENER:
                depth += 1
            elif match.lastindex == _CLOSER:
                depth -= 1
                if depth == 0:
                    return start, match.end()
            scan = match.end()

    def other(self, start: int, stop: re.Pattern[bytes]) -> tuple[int, int]:
        """The start (moved by reading on) and end of text that is no object or array: up to
        ``stop`` or the end of the text, at most :data:`_MAX_OTHER_BYTES` (a binary file's)."""
        found = stop.search(self.buf, start)
        while found is None and not self.eof and len(self.buf) - start < _MAX_OTHER_BYTES:
            searched = len(self.buf) - start
            start -= self.refill(start)
            found = stop.search(self.buf, start + searched)
        return start, len(self.buf) if found is None else max(found.start(), start + 1)


def _json_documents(
    stream: io.BufferedIOBase, *, line: int = 1, cut_short_is_truncation: bool = True
) -> Iterator[Record]:
    """The values of a JSON text in any layout, each a record numbered by the line it starts
    on: every top-level object, and every item of a top-level array. Text that is neither
    is a record too, up to the end of its line (or item), for the decoder to report. The
    last value, cut short by the end of the text, is ``unterminated`` if
    ``cut_short_is_truncation``."""
    text = _Text(stream, line)
    buf = text.buf  # changed in place
    at, in_array = 0, False
    while True:
        blank = (_BLANKS_AND_COMMAS if in_array else _BLANKS).match(buf, at)
        at = blank.end() if blank else at
        if at == len(buf):
            if text.eof:
                return
            at -= text.refill(at)
            continue
        first = buf[at]
        if first == ord("]" if in_array else "["):
            in_array, at = not in_array, at + 1
            continue
        if first in _OPENERS:
            start, end = text.value(at)
            if end is None:
                data = bytes(buf[start:])
                yield Record(
                    data, is_json=True, number=text.line_of(start), unterminated=cut_short_is_truncation
                )
                return
        else:
            start, end = text.other(at, _ITEM_END if in_array else _LINE_END)
        yield Record(bytes(buf[start:end]), is_json=True, number=text.line_of(start))
        at = end


def _framed(stream: io.BufferedIOBase | _Range, first: int = 1) -> Iterator[Record]:
    """The length-prefixed records of ``stream``, numbered from ``first``."""
    for block, start, stop, number in framed_ranges(stream, first):
        if is_json_record(block, start, stop):
            data = block if start == 0 and stop == len(block) else block[start:stop]
            yield Record(data, is_json=True, number=number)
        else:  # read where it lies: a long record (prompts) costs no copy
            yield Record(block, is_json=False, number=number, start=start, stop=stop)


def framed_ranges(stream: io.BufferedIOBase | _Range, first: int = 1) -> Iterator[Located]:
    """Where each length-prefixed record of ``stream`` is, as ``(block, start, stop,
    number)``: the record is ``block[start:stop]``, numbered from ``first``; a zstd frame is
    decompressed into a block of its own.

    Records are read many at a time, in blocks of :data:`_FRAMED_BLOCK_BYTES` (a longer
    record whole), so that a short record costs no read, and no copy, of its own.
    """
    number = first - 1
    block, at = b"", 0
    while True:
        if len(block) - at < 4:
            block, at = block[at:] + _read_full(stream, _FRAMED_BLOCK_BYTES), 0
            if not block:
                return
            if len(block) < 4:
                raise TraceFileError("truncated_file", f"record {number + 1}: length prefix cut short")
        number += 1
        (size,) = _LENGTH_PREFIX(block, at)
        if size > MAX_RECORD_BYTES:
            raise TraceFileError("invalid_record", f"record {number}: implausible length {size}")
        start, stop = at + 4, at + 4 + size
        if stop > len(block):  # the record runs past the block: read its rest alone
            record = block[start:] + _read_full(stream, stop - len(block))
            if len(record) < size:
                raise TraceFileError(
                    "truncated_file", f"record {number}: {len(record)} of {size} bytes, file cut short"
                )
            block, start, stop = record, 0, size
        at = stop
        if block.startswith(ZSTD_MAGIC, start, stop):
            zstd = _zstandard()
            try:
                data = zstd.ZstdDecompressor().decompressobj().decompress(block[start:stop])
            except zstd.ZstdError as exc:
                raise TraceFileError("invalid_record", f"record {number}: zstd: {exc}") from None
            yield data, 0, len(data), number
        else:
            yield block, start, stop, number


def _read_full(stream: io.BufferedIOBase | _Range, size: int) -> bytes:
    """``size`` bytes of ``stream``, fewer only at its end (a decompressing stream may give
    fewer a call)."""
    data = stream.read(size)
    if 0 < len(data) < size:
        pieces, got = [data], len(data)
        while got < size and (more := stream.read(size - got)):
            pieces.append(more)
            got += len(more)
        data = b"".join(pieces)
    return data


def is_json_record(data: bytes, start: int = 0, stop: int = -1) -> bool:
    """A length-prefixed record (``data[start:stop]``, to its end if ``stop`` is negative)
    holds JSON, not protobuf. A ``TracesData`` starts with byte 0x0a, a newline, which JSON
    may start with too: a record that starts with a newline and then ``{`` is protobuf if it
    reads as a ``TracesData``, field after field."""
    if stop < 0:
        stop = len(data)
    if start >= stop:
        return False
    first = data[start]
    if first == _OPEN_BRACE:
        return True
    if first == _NEWLINE and start + 1 < stop and data[start + 1] not in _BLANKS_OR_BRACE:
        return False  # a TracesData's first length, as it almost always is
    if data[start : min(start + 64, stop)].lstrip()[:1] != b"{":
        return False
    if first != _NEWLINE:
        return True
    from otel_overspend.report.otlp_proto import is_traces_data  # noqa: PLC0415 - seldom needed

    return not is_traces_data(data, start, stop)


def _is_framed(head: bytes) -> bool:
    """Length-prefixed records start with a big-endian length: a control byte for any
    record under 512 MiB. Text (JSON lines, or garbage reported line by line) does not."""
    return bool(head) and head[0] < 0x20 and head[:1] not in (b"\t", b"\n", b"\r")


def read_records(path: Path, *, position: Callable[[int], None] | None = None) -> Iterator[Record]:
    """The records of one file, decompressed. ``position`` is told how many bytes of the
    file itself have been read (for a progress display) every few records.

    Raises :class:`TraceFileError` (or :class:`OSError`) when the file cannot be read on;
    the records yielded before it stand.
    """
    with path.open("rb") as raw:
        head = raw.peek(_HEAD_BYTES)[:_HEAD_BYTES] if isinstance(raw, io.BufferedReader) else b""
        try:
            stream = _open_decompressed(raw, head)
            if stream is not raw:
                peek = stream.peek if isinstance(stream, io.BufferedReader | gzip.GzipFile) else None
                inner = peek(_HEAD_BYTES)[:_HEAD_BYTES] if peek is not None else b""
            else:
                inner = head
            if _is_framed(inner):
                records = _framed(stream)
            elif _MULTILINE_START.match(inner):
                records = _json_documents(stream)
            else:
                records = _json_lines(stream)
            for count, record in enumerate(records):
                if position is not None and count % 256 == 0:
                    position(raw.tell())
                yield record
        except _corrupt_stream_errors() as exc:
            raise TraceFileError("truncated_file", f"compressed stream cut short or corrupt: {exc}") from None
        finally:
            if position is not None:
                position(raw.tell())


@dataclass(frozen=True, slots=True)
class LineRanges:
    """A file of JSON lines cut into byte ranges at line ends, and whether its first
    object line holds several objects (see :func:`_json_lines`); or a file of
    length-prefixed records (``framed``) cut at record starts, with the number of each
    range's first record."""

    ranges: tuple[tuple[int, int], ...]
    joined: bool
    framed: bool = False
    first_records: tuple[int, ...] = ()


def line_ranges(path: Path, parts: int) -> LineRanges | None:
    """``path`` cut into about ``parts`` ranges of whole lines or length-prefixed records,
    for reading them apart (:func:`read_range`); ``None`` when it cannot be cut: compressed
    as a whole, or of JSON values that are not one a line (it is then read whole, by
    :func:`read_records`)."""
    size = path.stat().st_size
    with path.open("rb") as raw:
        head = raw.read(_HEAD_BYTES)
        if head.startswith((GZIP_MAGIC, ZSTD_MAGIC)) or _MULTILINE_START.match(head):
            return None
        if _is_framed(head):
            return _record_ranges(raw, size, parts)
        raw.seek(0)
        joined = False
        for line in raw:
            if line[:1] == b"{":
                joined = b"}{" in line
                break
        cuts = [0]
        for i in range(1, parts):
            at = max(size * i // parts, cuts[-1])
            if at >= size:
                break
            raw.seek(at)
            if at > 0:
                raw.seek(at - 1)
                raw.readline()  # to the end of the line holding byte at - 1
            at = raw.tell()
            if cuts[-1] < at < size:
                cuts.append(at)
        cuts.append(size)
    return LineRanges(tuple(itertools.pairwise(cuts)), joined)


def _record_ranges(raw: IO[bytes], size: int, parts: int) -> LineRanges:
    """A file of length-prefixed records cut into about ``parts`` ranges at record starts,
    found by stepping from length to length: short records in blocks of the file read at
    once, long ones by a read of 4 bytes each. A length that runs past the end (or is implausible)
    ends the cutting: the rest is one range, whose reading reports it."""
    cuts, firsts = [0], [1]
    at, number, length = 0, 1, 0
    target = size // parts  # the next cut goes at the first record start from here
    fd = raw.fileno()  # read with no buffer: a buffered read after a seek reads 8 KB
    while len(cuts) < parts:
        # After a long record, only its successor's length: the next is likely long too.
        block = os.pread(fd, _CUT_BLOCK_BYTES if length < _CUT_BLOCK_BYTES // 16 else 4, at)
        last, limit, offset = len(block) - 4, min(target, size) - at, 0
        while offset <= last:  # the records whose length is in the block
            (length,) = _LENGTH_PREFIX(block, offset)
            if length > MAX_RECORD_BYTES:
                break
            offset += 4 + length
            number += 1
            if offset >= limit:
                break
        if last < 0 or length > MAX_RECORD_BYTES:
            break
        at += offset
        if at >= size:
            break
        if at >= target:
            cuts.append(at)
            firsts.append(number)
            target = size * len(cuts) // parts
    cuts.append(size)
    return LineRanges(tuple(itertools.pairwise(cuts)), joined=False, framed=True, first_records=tuple(firsts))


class _Range(io.RawIOBase):
    """Bytes ``start`` to ``end`` of an open file."""

    def __init__(self, raw: IO[bytes], start: int, end: int) -> None:
        raw.seek(start)
        self._raw = raw
        self._left = end - start

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        n: int = self._raw.readinto(memoryview(buffer)[: min(len(buffer), self._left)])  # type: ignore[attr-defined]
        self._left -= n
        return n

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left if ``size`` is negative), read straight
        into the bytes returned."""
        data: bytes = self._raw.read(self._left if size < 0 else min(size, self._left))
        self._left -= len(data)
        return data


def read_range(
    path: Path, start: int, end: int, *, joined: bool, framed: bool = False, first: int = 1
) -> Iterator[Record]:
    """The records in bytes ``start`` to ``end`` of a file cut by :func:`line_ranges`: its
    lines, numbered from 1 at ``start``, or (``framed``) its records, numbered from ``first``."""
    with path.open("rb", buffering=0) as raw:
        if framed:  # read in blocks of records: no buffer between
            yield from _framed(_Range(raw, start, end), first)
        else:
            stream = io.BufferedReader(_Range(raw, start, end), buffer_size=_CHUNK_BYTES)
            yield from _json_lines(stream, joined=None if start == 0 else joined)


def read_framed_range(path: Path, start: int, end: int, first: int = 1) -> Iterator[Located]:
    """Where each record in bytes ``start`` to ``end`` of a file of length-prefixed records
    is (:func:`framed_ranges`), for a pass that reads the records where they lie."""
    with path.open("rb", buffering=0) as raw:
        yield from framed_ranges(_Range(raw, start, end), first)
