"""``report --jobs N``: the report's work split by trace over ``N`` processes.

The input is cut into parts: each file, and each file of plain JSON lines or of
length-prefixed records (protobuf, or zstd frames) into ranges of whole lines or records
(:func:`~otel_overspend.report.files.line_ranges`), a few parts per process so that they
share the work evenly. Then, in a pool of processes:

1. Each part is scanned for the trace ids it holds (a regular expression over the JSON
   text; in a protobuf record, the spans' trace ids read and the rest stepped over). A
   trace whose id is in two parts or more is *shared*: split across files, or across a cut
   in a file.
2. Each part is read, decoded and replayed through a recorder of its own, exactly as one
   process does it (:class:`~otel_overspend.report.run._Run`), except that the spans of
   the shared traces are handed back to the main process. Each part's figures come back
   as an :class:`~otel_overspend.report.aggregate.Aggregate`.
3. The main process replays the shared traces' spans, part after part in the order of the
   input, through its own recorder, and merges every aggregate.

So every trace is recorded whole, in one recorder, from its spans in the order of the
input, as one process records it; the sums are exact (see :mod:`otel_overspend.report.sums`),
so the report is the same as one process's, to the last digit, when no trace depends on
another. What does tie traces together, and so may differ with ``--jobs``:

- the bounds (``--max-held-spans``, ``--max-open-traces``, ``max_open_requests``, the
  recorder's and the label caps' tables) hold per process: more is held at once in all, and
  a bound reached by one process is not reached by another (``held_spans_peak`` is the
  largest of one process);
- a span more than ``--reorder-window`` behind the reading is judged against its part's
  reading, not the whole input's;
- one LLM call seen in two traces (two instrumentations that never nested: see
  :mod:`~otel_overspend.accounting.recorder`) is counted once only when both traces are
  recorded in one process: in one part, or both shared;
- requests open longer than the request time-out time out at the scrapes of their part's
  data clock.

Worker failures (an exception, a process killed) raise :class:`JobsError`, never hang.
"""

from __future__ import annotations

import contextlib
import gc
import mmap
import multiprocessing
import os
import re
import sys
import threading
from array import array
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from otel_overspend.report.aggregate import Aggregate, merge
from otel_overspend.report.files import (
    Problems,
    TraceFileError,
    is_json_record,
    line_ranges,
    read_framed_range,
    read_range,
    read_records,
)
from otel_overspend.report.otlp_json import decode_id
from otel_overspend.report.otlp_proto import WireError, trace_ids
from otel_overspend.report.run import Limits, _Run

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from otel_overspend.config.settings import Settings
    from otel_overspend.report.files import Record
    from otel_overspend.report.otlp_json import SpanRecord

__all__ = ("JobsError", "aggregate_in_jobs", "default_jobs")

#: Parts per process: enough for an even share (the last part a process takes ends its
#: work: with 4 parts a process, one process may have a fifth more than the other).
PARTS_PER_JOB: Final = 16
#: A file is cut into ranges of at least this many bytes.
MIN_PART_BYTES: Final = 4 << 20
#: Input smaller than this is read in one process: starting others would cost more.
MIN_INPUT_BYTES: Final = 2 * MIN_PART_BYTES
#: Trace ids are compared by their low 64 bits (two traces that share them are both taken
#: for shared: replayed in the main process, which is right, only slower).
_ID_MASK: Final = (1 << 64) - 1
_TRACE_ID: Final = re.compile(
    # Possessive (3.11 and later): a third faster, as nothing is tried again.
    rb'"traceId"\s*+:\s*+"([^"]*+)' if sys.version_info >= (3, 11) else rb'"traceId"\s*:\s*"([^"]*)'
)
#: Bytes of a range scanned at a time.
_SCAN_BYTES: Final = 8 << 20
_END_NS: Final = attrgetter("end_ns")


_T = TypeVar("_T")


class JobsError(RuntimeError):
    """A worker process failed: the message says which part and why."""


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class Part:
    """A file, or bytes ``start`` to ``end`` of one (``end`` ``None``: the whole file)."""

    index: int
    path: str
    start: int = 0
    end: int | None = None
    joined: bool = False
    #: Length-prefixed records, the first numbered ``first_record`` in the file.
    framed: bool = False
    first_record: int = 1


def plan_parts(files: Sequence[Path], jobs: int) -> list[Part]:
    """The parts of ``files``, in the order of the input."""
    sizes = [_size(path) for path in files]
    target = max(MIN_PART_BYTES, sum(sizes) // max(1, jobs * PARTS_PER_JOB))
    parts: list[Part] = []
    for path, size in zip(files, sizes, strict=True):
        cut = None
        if size >= 2 * target:
            try:
                cut = line_ranges(path, round(size / target))
            except OSError:
                cut = None  # reported when the file is read
        if cut is None or len(cut.ranges) < 2:  # one range: the whole file
            parts.append(Part(len(parts), str(path)))
            continue
        firsts = cut.first_records or (1,) * len(cut.ranges)
        parts += [
            Part(len(parts) + i, str(path), a, b, cut.joined, cut.framed, first)
            for i, ((a, b), first) in enumerate(zip(cut.ranges, firsts, strict=True))
        ]
    return parts


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _records(part: Part, position: Callable[[int], None] | None = None) -> Iterator[Record]:
    path = Path(part.path)
    if part.end is None:
        return read_records(path, position=position)
    return read_range(
        path, part.start, part.end, joined=part.joined, framed=part.framed, first=part.first_record
    )


# -- phase 1: which traces are in which parts ----------------------------------------------------
def scan(part: Part) -> array[int]:
    """The low 64 bits of every trace id in ``part`` (a superset: ids in links too)."""
    ids: set[bytes] = set()
    numbers: set[int] = set()
    if part.end is not None and not part.framed:
        _scan_range(part, ids)
    elif part.end is not None:
        _scan_records(part, ids, numbers)
    else:
        try:
            for record in _records(part):
                if record.is_json:
                    ids.update(_TRACE_ID.findall(record.data))
                    continue
                with contextlib.suppress(WireError):  # reported when the part is read
                    trace_ids(record.data, record.start, record.stop, numbers)
        except (TraceFileError, OSError):
            pass  # what was read stands; the error is reported when the part is read
    low = {n & _ID_MASK for n in numbers}
    low.update(n for n in map(_id_of, ids) if n is not None)
    return array("Q", low)


def _scan_range(part: Part, ids: set[bytes]) -> None:
    """The trace ids of a range of JSON lines, looked for in the file mapped into memory (a
    range is cut at line ends: no id runs over its ends)."""
    assert part.end is not None  # a range
    with Path(part.path).open("rb") as raw, mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        ids.update(_TRACE_ID.findall(mapped, part.start, part.end))


def _scan_records(part: Part, ids: set[bytes], numbers: set[int]) -> None:
    """The trace ids of a range of length-prefixed records, each looked for where it lies
    in a block of records read at once (none copied on its own)."""
    assert part.end is not None  # a range
    try:
        for block, start, stop, _ in read_framed_range(Path(part.path), part.start, part.end):
            if is_json_record(block, start, stop):
                ids.update(_TRACE_ID.findall(block, start, stop))
                continue
            try:  # noqa: SIM105 - once a record: cheaper than contextlib.suppress
                trace_ids(block, start, stop, numbers)
            except WireError:
                pass  # reported when the part is read
    except (TraceFileError, OSError):
        pass  # what was read stands; the error is reported when the part is read


def _newlines(path: str, end: int) -> int:
    """The lines in the first ``end`` bytes of ``path``: where a range starts (read only to
    say where a problem is)."""
    count, left = 0, end
    with Path(path).open("rb", buffering=0) as raw:
        while left > 0 and (block := raw.read(min(left, _SCAN_BYTES))):
            count += block.count(b"\n")
            left -= len(block)
    return count


def _id_of(raw: bytes) -> int | None:
    try:
        return decode_id(raw.decode("ascii", "replace"), 16) & _ID_MASK
    except ValueError:
        return None  # not an id: the decoder reports the span


# -- phase 2: each part replayed apart -------------------------------------------------------------
@dataclass(slots=True)
class PartResult:
    index: int
    aggregate: Aggregate
    #: The shared traces' spans, by record, and the process each process index stands for.
    shared: list[list[SpanRecord]]
    processes: dict[int, tuple[Any, ...]]
    #: The earliest and latest span end read in the part (``None``: no span).
    first_end_ns: int | None = None
    last_end_ns: int | None = None
    #: The first problems of each reason: (reason, where, detail, line in the part or ``None``).
    problems: list[tuple[str, str, str, int | None]] = field(default_factory=list)


class _Collected(Problems):
    """Problems kept, not printed: the main process prints them in the order of the input,
    numbering the lines of a range from the start of its file."""

    listed: list[tuple[str, str, str, int | None]]
    #: The line (of the part) of the record being read.
    line: int | None

    def add(self, reason: str, where: str, detail: str) -> None:
        count = self.counts.get(reason, 0) + 1
        self.counts[reason] = count
        if count <= self.shown:
            self.listed.append((reason, where, detail, self.line))


def _replay_part(
    part: Part, shared: frozenset[int], settings: Settings, limits: Limits, shown: int
) -> PartResult:
    collecting = gc.isenabled()
    gc.disable()
    try:
        problems = _Collected(shown=shown)
        problems.listed, problems.line = [], None
        run = _Run(settings, problems, limits)
        path = Path(part.path)
        run.files = 1 if part.start == 0 else 0
        diverted: list[list[SpanRecord]] = []
        first_end: int | None = None
        last_end: int | None = None
        read_to = [0]
        replayer_add = run.replayer.add
        name = str(path)
        try:
            for record in _records(part, position=lambda at: read_to.__setitem__(0, at)):
                run.records += 1
                problems.line = record.number
                spans = run.decode(record, name)
                if not spans:
                    continue
                run.spans += len(spans)
                low, high = min(map(_END_NS, spans)), max(map(_END_NS, spans))
                if first_end is None or low < first_end:
                    first_end = low
                if last_end is None or high > last_end:
                    last_end = high
                if shared:
                    mine = [s for s in spans if (s[0] >> 16) & _ID_MASK not in shared]
                    if len(mine) < len(spans):
                        diverted.append([s for s in spans if (s[0] >> 16) & _ID_MASK in shared])
                    spans = mine
                if spans:
                    replayer_add(spans)
        except TraceFileError as exc:
            problems.line = None
            problems.add(exc.reason, str(path), str(exc))
        except OSError as exc:
            problems.line = None
            problems.add("unreadable_file", str(path), exc.strerror or str(exc))
        run.bytes_read = (part.end - part.start) if part.end is not None else read_to[0]
        agg = run.aggregate()
        return PartResult(
            index=part.index,
            aggregate=agg,
            shared=diverted,
            processes=run.processes.identities(),
            first_end_ns=first_end,
            last_end_ns=last_end,
            problems=problems.listed,
        )
    finally:
        if collecting:
            gc.enable()


# -- the main process ---------------------------------------------------------------------------------
def _context() -> multiprocessing.context.BaseContext:
    """``fork`` (no import again, no pickling of the settings' code) when this process has
    no other thread to lose; else ``forkserver``."""
    method = "fork" if threading.active_count() == 1 else "forkserver"
    return multiprocessing.get_context(method)


def shared_ids(scanned: list[array[int]]) -> list[frozenset[int]]:
    """For each part, the ids it holds that another part holds too."""
    seen: set[int] = set()
    shared: set[int] = set()
    sets = [set(ids) for ids in scanned]
    for ids in sets:
        shared |= ids & seen
        seen |= ids
    return [frozenset(ids & shared) if shared else frozenset() for ids in sets]


def aggregate_in_jobs(
    files: Sequence[Path],
    *,
    settings: Settings,
    problems: Problems,
    progress: Callable[[int, int], None] | None,
    limits: Limits,
    jobs: int,
) -> Aggregate | None:
    """:func:`~otel_overspend.report.run.aggregate_files` in ``jobs`` processes (see the
    module docstring); ``None`` when the input is too small to share (under
    :data:`MIN_INPUT_BYTES`, or one part). Raises :class:`JobsError` when a worker fails."""
    if sum(map(_size, files)) < MIN_INPUT_BYTES:
        return None
    parts = plan_parts(files, jobs)
    if len(parts) < 2:
        return None
    with ProcessPoolExecutor(max_workers=min(jobs, len(parts)), mp_context=_context()) as pool:
        try:
            scans = [pool.submit(scan, part) for part in parts]
            shared = shared_ids(
                [_result(part, future, "scanning") for part, future in zip(parts, scans, strict=True)]
            )
            futures = [
                pool.submit(_replay_part, part, ids, settings, limits, problems.shown)
                for part, ids in zip(parts, shared, strict=True)
            ]
            results: list[PartResult] = []
            done_bytes = spans = 0
            for part, future in zip(parts, futures, strict=True):
                result = _result(part, future)
                results.append(result)
                done_bytes += result.aggregate.bytes_read
                spans += result.aggregate.spans + sum(map(len, result.shared))
                if progress is not None:
                    progress(done_bytes, spans)
        except BrokenProcessPool as exc:
            raise JobsError(f"a worker process ended abruptly ({exc})") from None
    behind = _behind(results, _window_ns(settings, limits))
    if behind is not None:
        part = parts[behind]
        where = part.path if part.end is None else f"{part.path} from byte {part.start:,}"
        print(
            f"otel-overspend report: --jobs: {where} goes back in time by more than the reorder window "
            "from what comes before it: read again in one process, whose report this is",
            file=sys.stderr,
        )
        return None
    return _combine(parts, results, settings=settings, problems=problems, limits=limits)


def _result(part: Part, future: Future[_T], doing: str = "reading") -> _T:
    try:
        return future.result()
    except BrokenProcessPool:
        raise
    except Exception as exc:
        where = part.path if part.end is None else f"{part.path} (bytes {part.start} to {part.end})"
        raise JobsError(f"the worker {doing} {where} failed: {type(exc).__name__}: {exc}") from exc


def _combine(
    parts: list[Part], results: list[PartResult], *, settings: Settings, problems: Problems, limits: Limits
) -> Aggregate:
    """The parts' problems printed in the order of the input, the shared traces replayed,
    every aggregate merged."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        main = _Run(settings, problems, limits)
        processes = main.processes
        add = main.replayer.add
        for result in results:
            counts = dict(result.aggregate.skipped)
            part = parts[result.index]
            for reason, where, detail, line in result.problems:
                shown = problems.counts.get(reason, 0) < problems.shown
                if shown and line is not None and part.start > 0 and not part.framed:
                    problems.add(reason, f"{part.path}:{line + _newlines(part.path, part.start)}", detail)
                else:
                    problems.add(reason, where, detail)
                counts[reason] -= 1
            for reason, n in counts.items():
                if n:
                    problems.counts[reason] = problems.counts.get(reason, 0) + n
            if result.shared:
                index = {
                    i: processes.index(identity) if identity else 0
                    for i, identity in result.processes.items()
                }
                index[0] = 0
                for spans in result.shared:
                    add([_rekeyed(span, index) for span in spans])
        main_agg = main.aggregate()
        main_agg.skipped = {}  # the parts counted them
        return merge([*(r.aggregate for r in results), main_agg])
    finally:
        if collecting:
            gc.enable()


def _window_ns(settings: Settings, limits: Limits) -> int:
    return int((settings.request_timeout_seconds if limits.window_s is None else limits.window_s) * 1e9)


def _behind(results: list[PartResult], window_ns: int) -> int | None:
    """The first part (its index) with a span that ended a reorder window or more before the
    latest span end of the parts before it, if any: one process, reading the whole input,
    closes traces by that reading, and would close that span's trace at once."""
    latest: int | None = None
    for result in results:
        if (
            result.first_end_ns is not None
            and latest is not None
            and result.first_end_ns <= latest - window_ns
        ):
            return result.index
        if result.last_end_ns is not None and (latest is None or result.last_end_ns > latest):
            latest = result.last_end_ns
    return None


def _rekeyed(span: SpanRecord, index: dict[int, int]) -> SpanRecord:
    key = span[0]
    process = key & 0xFFFF
    mapped = index.get(process, process)
    return span if mapped == process else span._replace(trace_key=(key >> 16 << 16) | mapped)
