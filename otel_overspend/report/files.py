"""Trace files on disk: finding them, opening them, cutting them into records.

The OpenTelemetry Collector's file exporter writes one OTLP ``ExportTraceServiceRequest``
per export. With its defaults (``format: json``, no compression) that is one JSON object a
line. With ``format: proto``, or with ``compression: zstd`` (never a default), each export
is written as a 4-byte big-endian length and that many bytes: a JSON document or a
protobuf message, each possibly a zstd frame of its own. With the collector's native
compression, or ``gzip`` applied by hand or by log rotation, the whole file is one
compressed stream. Everything is recognised by its first bytes, never by the file name.

Reading is a stream: memory is bounded by the largest single record, whatever the size
of the file. A problem (an unreadable file, a truncated record) is reported through
:class:`Problems` with the file and line, and reading goes on with the next record.
"""

from __future__ import annotations

import gzip
import importlib
import io
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
    "Problems",
    "Record",
    "TraceFileError",
    "find_files",
    "read_records",
)

GZIP_MAGIC: Final = b"\x1f\x8b"
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
#: A record longer than this is a corrupt length prefix, not an export.
MAX_RECORD_BYTES: Final = 1 << 30
#: Bytes read at a time from a file of JSON lines.
_CHUNK_BYTES: Final = 1 << 20
#: The timestamp the collector's rotation puts before a rotated file's extension.
_ROTATED: Final = re.compile(r"-(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)(?:\.[^.]*)*$")

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


def _rotation_key(path: Path) -> tuple[int, str, str]:
    """Rotated files (oldest timestamp first) before the file the collector still writes."""
    match = _ROTATED.search(path.name)
    return (0, match.group(1), path.name) if match else (1, "", path.name)


def find_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Each file named, and the files under each directory named (recursively, hidden
    ones left out), rotated files in the order they were written. Raises
    :class:`FileNotFoundError` for a path that does not exist."""
    for path in paths:
        if path.is_dir():
            found = [
                Path(root) / name
                for root, _dirs, names in os.walk(path)
                for name in names
                if not name.startswith(".")
                and not any(part.startswith(".") for part in Path(root).relative_to(path).parts)
            ]
            by_dir: dict[Path, list[Path]] = {}
            for file in found:
                by_dir.setdefault(file.parent, []).append(file)
            for directory in sorted(by_dir):
                yield from sorted(by_dir[directory], key=_rotation_key)
        elif path.exists():
            yield path
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")


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


def _json_lines(stream: io.BufferedIOBase) -> Iterator[Record]:
    """Lines cut out of large reads: a collector line is one export, often megabytes, that
    iterating the stream line by line would copy several times. ``read1`` returns what the
    stream has decoded so far, so the lines before a cut in a compressed stream are read."""
    number = 0
    #: The start of a line that goes on in the next read.
    pending: list[bytes] = []
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
            if not line.isspace():
                yield Record(line, is_json=True, number=number)
            start = end
            end = chunk.find(b"\n", start) + 1
        if start < len(chunk):
            pending.append(chunk[start:])
    if pending:
        line = b"".join(pending)
        if not line.isspace():
            yield Record(line, is_json=True, number=number + 1, unterminated=True)


def _framed(stream: io.BufferedIOBase) -> Iterator[Record]:
    number = 0
    while True:
        prefix = stream.read(4)
        if not prefix:
            return
        number += 1
        if len(prefix) < 4:
            raise TraceFileError("truncated_file", f"record {number}: length prefix cut short")
        (size,) = struct.unpack(">I", prefix)
        if size > MAX_RECORD_BYTES:
            raise TraceFileError("invalid_record", f"record {number}: implausible length {size}")
        data = stream.read(size)
        if len(data) < size:
            raise TraceFileError(
                "truncated_file", f"record {number}: {len(data)} of {size} bytes, file cut short"
            )
        if data.startswith(ZSTD_MAGIC):
            zstd = _zstandard()
            try:
                data = zstd.ZstdDecompressor().decompressobj().decompress(data)
            except zstd.ZstdError as exc:
                raise TraceFileError("invalid_record", f"record {number}: zstd: {exc}") from None
        yield Record(data, is_json=data.lstrip()[:1] == b"{", number=number)


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
        head = raw.peek(4)[:4] if isinstance(raw, io.BufferedReader) else b""
        try:
            stream = _open_decompressed(raw, head)
            if stream is not raw:
                inner = stream.peek(4)[:4] if isinstance(stream, io.BufferedReader | gzip.GzipFile) else b""
            else:
                inner = head
            records = _framed(stream) if _is_framed(inner) else _json_lines(stream)
            for count, record in enumerate(records):
                if position is not None and count % 256 == 0:
                    position(raw.tell())
                yield record
        except _corrupt_stream_errors() as exc:
            raise TraceFileError("truncated_file", f"compressed stream cut short or corrupt: {exc}") from None
        finally:
            if position is not None:
                position(raw.tell())
