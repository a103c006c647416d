"""Replaying spans read from files through the live processor's :class:`Recorder`.

Exporters write a trace children first, in end order, and a child's step can come from
its parent, so spans are held per trace (and per process) until the trace's local root
arrives. The trace is then replayed: steps are decided top-down (a span's own
``overspend.step``, else its parent's step, else the step rules), and spans are recorded
bottom-up in end order, as the SDK ended them, so that the recorder counts a nested LLM
call once and closes the request with the root. When every span names its own step (the
processor's ``stamp_spans``) and the spans came in end order, that is their arrival
order and the replay takes a shortcut to the same result.

With ``stamp_spans`` in the settings, the spans are taken to be stamped: a span without
``overspend.step`` started in no step, as the live processor saw it, and the recorder
decides its call's step as it does live (the span's framework name or rule on its final
attributes, else its ancestors', nearest first), rather than from its ancestors' rules
top-down (which a file without stamps needs).

The recorder sees spans in end order across traces too, as the live processor does: the
same call seen in two traces (two instrumentations that were never nested) is counted
where it ended first. A trace replayed when its root arrives waits, recorded span by span
in end order with the other replayed traces, until no trace still held has a span that
ended earlier (the oldest held trace's first span); what waits counts towards
``max_spans``, and when that is full it is recorded at once. Each batch of spans read is
put in end order first: an OTLP export groups a batch's spans by resource and scope.

Holding is bounded: a trace still waiting for its root when the buffer is full is replayed
as it is (its calls count; its root, when it comes, closes the request) and counted. A
trace whose root has not come when the data's clock has moved past the request time-out,
or when the input ends, is replayed too, and a span whose parent never came is taken for
a local root with a remote parent (exporters that predate OTLP's remote-parent flag leave
it unmarked). Traces whose root was replayed are remembered, so that a child exported
after its trace's root is not mistaken for one; it gets its own step or the rules', as
its parent is gone.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from otel_overspend.accounting.ledger import accumulate_call, accumulate_request, new_request_stats
from otel_overspend.steps import BAGGAGE_KEY, is_step_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from collections.abc import Set as AbstractSet

    from otel_overspend.accounting.ledger import CallStats, Key, RequestSample
    from otel_overspend.accounting.recorder import Recorder
    from otel_overspend.accounting.requests import OpenRequests
    from otel_overspend.calls.attribution import Call
    from otel_overspend.calls.step_rules import StepRules
    from otel_overspend.report.otlp_json import SpanRecord

__all__ = ("DAY_S", "WEEK_S", "DataClock", "PeriodSink", "ReplayStats", "Replayer", "period_start_s")

HOUR_S: Final = 3_600
DAY_S: Final = 86_400
#: The hours of the latest data summed apart from the days: the report's recommendation
#: reads them, so that a step moved to a specialist during the traces is not recommended.
RECENT_HOURS: Final = 24
WEEK_S: Final = 7 * DAY_S
#: 1970-01-01 was a Thursday: weeks start on Monday 00:00 UTC, four days later.
_WEEK_OFFSET_S: Final = 4 * DAY_S
#: Traces whose local root was replayed, remembered for children exported after it.
MAX_ROOTED_TRACES: Final = 20_000
_START_NS: Final = attrgetter("start_ns")
_END_NS: Final = attrgetter("end_ns")
_S = TypeVar("_S")


def period_start_s(t_s: float, period_s: int) -> int:
    """Start of the UTC day or week (Monday) holding ``t_s``."""
    offset = _WEEK_OFFSET_S if period_s == WEEK_S else 0
    return int((t_s - offset) // period_s) * period_s + offset


def _merge_calls(into: dict[Key, CallStats], other: dict[Key, CallStats]) -> None:
    for key, stats in other.items():
        acc = into.get(key)
        if acc is None:
            into[key] = stats.copy()
        else:
            for i, v in enumerate(stats):
                acc[i] += v


def _merge_requests(into: list[float], other: list[float]) -> None:
    for i, v in enumerate(other):
        into[i] += v


class _Sums(Generic[_S]):
    """Sums by UTC hour over the :data:`RECENT_HOURS` hours up to the newest span end seen,
    by UTC day before them: an hour is folded into its day once the newest hour is
    :data:`RECENT_HOURS` past it. The table the last addition went to is at hand as
    [``low``, ``high``) seconds: spans come in time order, mostly, so most additions need
    no hour worked out."""

    __slots__ = ("_merge", "_new", "current", "days", "high", "hours", "low", "newest_hour_s", "untimed")

    def __init__(self, new: Callable[[], _S], merge: Callable[[_S, _S], None]) -> None:
        self._new = new
        self._merge = merge
        self.hours: dict[int, _S] = {}
        self.days: dict[int, _S] = {}
        #: Spans without a finite end time.
        self.untimed: _S | None = None
        self.newest_hour_s: int | None = None
        self.low = self.high = 0.0
        self.current = new()

    def _table(self, tables: dict[int, _S], start: int) -> _S:
        found = tables.get(start)
        if found is None:
            found = tables[start] = self._new()
        return found

    def at(self, end_time_s: float) -> _S:
        """The sums ``end_time_s`` goes to (made current when it is one of the hours)."""
        if not math.isfinite(end_time_s):
            if self.untimed is None:
                self.untimed = self._new()
            return self.untimed
        hour = int(end_time_s // HOUR_S) * HOUR_S
        oldest = hour - (RECENT_HOURS - 1) * HOUR_S
        newest = self.newest_hour_s
        if newest is None or hour > newest:
            self.newest_hour_s = hour
            for start in [start for start in self.hours if start < oldest]:
                self._merge(self._table(self.days, period_start_s(start, DAY_S)), self.hours.pop(start))
        elif hour < newest - (RECENT_HOURS - 1) * HOUR_S:
            return self._table(self.days, period_start_s(end_time_s, DAY_S))  # older than the hours
        found = self._table(self.hours, hour)
        self.low, self.high, self.current = float(hour), float(hour + HOUR_S), found
        return found

    def tables(self) -> list[tuple[int | None, _S]]:
        """(start in seconds, or ``None`` for spans without a time; sums) of every table."""
        found: list[tuple[int | None, _S]] = [*self.days.items(), *self.hours.items()]
        return found if self.untimed is None else [(None, self.untimed), *found]


class PeriodSink:
    """A :class:`~otel_overspend.accounting.recorder.Sink` summing calls and requests by hour for the
    last day of the data and by day before it, with the ledger's own functions: what
    :meth:`periods`, :meth:`totals` and :meth:`recent` sum."""

    __slots__ = ("_calls", "_requests")

    def __init__(self) -> None:
        self._calls: _Sums[dict[Key, CallStats]] = _Sums(dict, _merge_calls)
        self._requests: _Sums[list[float]] = _Sums(new_request_stats, _merge_requests)

    def add_call(self, call: Call, end_time_s: float) -> bool:
        calls = self._calls
        accumulate_call(calls.current if calls.low <= end_time_s < calls.high else calls.at(end_time_s), call)
        return True

    def add_request(self, sample: RequestSample, end_time_s: float) -> None:
        requests = self._requests
        current = requests.current if requests.low <= end_time_s < requests.high else requests.at(end_time_s)
        accumulate_request(current, sample)

    def periods(
        self, period_s: int | None
    ) -> list[tuple[int, dict[Key, tuple[float, ...]], tuple[float, ...]]]:
        """(period start in seconds, call stats by series, request stats) for each UTC day
        or week (Monday) with data, oldest first; one period, starting at 0, when
        ``period_s`` is ``None``. Spans without a time are in period 0."""

        def start_of(start: int | None) -> int:
            return 0 if start is None or period_s is None else period_start_s(start, period_s)

        calls: dict[int, dict[Key, CallStats]] = {}
        requests: dict[int, list[float]] = {}
        for start, sums in self._calls.tables():
            _merge_calls(calls.setdefault(start_of(start), {}), sums)
        for start, stats in self._requests.tables():
            _merge_requests(requests.setdefault(start_of(start), new_request_stats()), stats)
        empty = tuple(new_request_stats())
        return [
            (
                period,
                {key: tuple(stats) for key, stats in calls.get(period, {}).items()},
                tuple(requests[period]) if period in requests else empty,
            )
            for period in sorted(calls.keys() | requests.keys())
        ]

    def totals(self) -> tuple[dict[Key, tuple[float, ...]], tuple[float, ...]]:
        """Call and request stats summed over every period."""
        ((_, calls, requests),) = self.periods(None) or [(0, {}, tuple(new_request_stats()))]
        return calls, requests

    @property
    def recent_start_s(self) -> int | None:
        """Start of the last :data:`RECENT_HOURS` UTC hours of the data (``None``: no span had
        a time)."""
        hours = [h for h in (self._calls.newest_hour_s, self._requests.newest_hour_s) if h is not None]
        # Each kept its own last RECENT_HOURS hours: from the later of the two, both have them.
        return max(hours) - (RECENT_HOURS - 1) * HOUR_S if hours else None

    def recent(self) -> tuple[dict[Key, tuple[float, ...]], tuple[float, ...]]:
        """Call and request stats of the last :data:`RECENT_HOURS` UTC hours of the data."""
        since = self.recent_start_s
        calls: dict[Key, CallStats] = {}
        requests = new_request_stats()
        if since is not None:
            for start, sums in self._calls.hours.items():
                if start >= since:
                    _merge_calls(calls, sums)
            for start, stats in self._requests.hours.items():
                if start >= since:
                    _merge_requests(requests, stats)
        return {key: tuple(stats) for key, stats in calls.items()}, tuple(requests)


class DataClock:
    """The data's clock: the latest span end replayed, in seconds. Open requests time out
    by it, so a week of traces read in a minute expires them as the week did."""

    __slots__ = ("now_ns",)

    def __init__(self) -> None:
        self.now_ns = 0

    def __call__(self) -> float:
        return self.now_ns / 1e9


@dataclass(slots=True)
class ReplayStats:
    spans: int = 0
    traces: int = 0
    #: Traces replayed without their local root: held too long, or the buffer was full.
    incomplete_timeout: int = 0
    incomplete_capacity: int = 0
    incomplete_end_of_input: int = 0
    first_start_ns: int | None = None
    last_end_ns: int | None = None


class Replayer:
    """Holds spans per trace and replays each trace through ``recorder``. See the module
    docstring. Feed it with :meth:`add`, then call :meth:`finish`."""

    def __init__(
        self,
        *,
        recorder: Recorder,
        rules: StepRules,
        requests: OpenRequests,
        clock: DataClock,
        max_spans: int = 200_000,
        max_traces: int = 50_000,
        timeout_s: float = 300.0,
        stamped: bool = False,
    ) -> None:
        """``stamped``: the spans carry the step each started in as ``overspend.step`` (the
        processor's ``stamp_spans``); see the module docstring."""
        self._recorder = recorder
        self._stamped = stamped
        self._rules = rules
        self._requests = requests
        self._max_spans = max_spans
        self._max_traces = max_traces
        self._timeout_ns = int(timeout_s * 1e9)
        #: trace key -> its spans held so far, oldest trace first.
        self._traces: OrderedDict[int, list[SpanRecord]] = OrderedDict()
        #: Spans held or waiting in :attr:`_ready`.
        self._held = 0
        #: Replayed traces waiting to be recorded, merged by end time: [end of the next
        #: span, sequence, trace key, spans in end order, their steps, local roots, next].
        self._ready: list[list[Any]] = []
        self._sequence = 0
        #: Traces whose local root was replayed (keys only: holding spans would cost more).
        self._rooted: OrderedDict[int, None] = OrderedDict()
        self._clock = clock
        self._next_expiry_ns = 0
        self.stats = ReplayStats()

    def add(self, spans: Iterable[SpanRecord]) -> None:
        traces = self._traces
        max_spans, max_traces = self._max_spans, self._max_traces
        watermark = self._clock.now_ns
        for span in sorted(spans, key=_END_NS):
            key, _, parent_id, remote_parent, _, _, _, end_ns, _ = span
            held = traces.get(key)
            if held is None:
                held = traces[key] = [span]
            else:
                held.append(span)
            self._held += 1
            if end_ns > watermark:  # noqa: PLR1730 - once per span: max() costs several times more
                watermark = end_ns
            if not parent_id or remote_parent:
                del traces[key]
                self._clock.now_ns = watermark  # the requests it opens open by the data's time
                self._replay(key, held, tops_are_roots=False)
            elif self._held > max_spans or len(traces) > max_traces:
                self._evict_oldest()
        self._clock.now_ns = watermark
        self._expire()

    def finish(self) -> None:
        """Replay every trace still held (the input has ended)."""
        while self._traces:
            key, held = self._traces.popitem(last=False)
            self.stats.incomplete_end_of_input += 1
            self._replay(key, held, tops_are_roots=True)
        self._release(math.inf)
        self._recorder.flush()  # the calls held for a twin from another trace

    def _evict_oldest(self) -> None:
        while self._held > self._max_spans or len(self._traces) > self._max_traces:
            if self._ready and self._held > self._max_spans:
                self._release(math.inf)  # out of order with the traces still held
            elif self._traces:
                key, held = self._traces.popitem(last=False)
                self.stats.incomplete_capacity += 1
                self._replay(key, held, tops_are_roots=False)
            else:
                return

    def _expire(self) -> None:
        now_ns = self._clock.now_ns
        cutoff = now_ns - self._timeout_ns
        traces = self._traces
        while traces:
            key = next(iter(traces))
            held = traces[key]
            if held[0].end_ns >= cutoff:
                break
            del traces[key]
            self.stats.incomplete_timeout += 1
            self._replay(key, held, tops_are_roots=True)
        if now_ns >= self._next_expiry_ns:
            self._requests.expire()
            self._next_expiry_ns = now_ns + self._timeout_ns // 4

    # -- steps ---------------------------------------------------------------------------------
    def _own_step(self, attrs: dict[str, Any]) -> str | None:
        """A span's own valid ``overspend.step`` attribute, if any."""
        own = attrs.get(BAGGAGE_KEY)
        return own if is_step_name(own) else None

    def _top_spans(self, trace_key: int, spans: list[SpanRecord]) -> set[int]:
        """Spans whose parent is not among ``spans``, unless the trace's root was replayed
        already (they are then children that ended after it)."""
        if trace_key in self._rooted:
            return set()
        ids = {span.span_id for span in spans}
        return {span.span_id for span in spans if span.parent_id and span.parent_id not in ids}

    def _steps(self, spans: list[SpanRecord]) -> tuple[dict[int, str | None], dict[int, int]]:
        """Each span's step, decided top-down, and its depth below the trace's top."""
        by_id = {span.span_id: span for span in spans}
        steps: dict[int, str | None] = {}
        depths: dict[int, int] = {}
        match = self._rules.match
        for span in spans:
            if span.span_id in steps:
                continue
            chain = [span]
            inherited: str | None = None
            depth = 0
            while True:
                top = chain[-1]
                parent = None if top.remote_parent else by_id.get(top.parent_id)
                if parent is None:
                    break
                if parent.span_id in steps:
                    inherited = steps[parent.span_id]
                    depth = depths[parent.span_id] + 1
                    break
                if len(chain) > len(spans):  # a cycle of parent ids: corrupt input
                    break
                chain.append(parent)
            for link in reversed(chain):
                own = self._own_step(link.attrs)
                if own is not None:
                    inherited = own
                elif inherited is None:
                    inherited = match(link.name, link.attrs)
                steps[link.span_id] = inherited
                depths[link.span_id] = depth
                depth += 1
        return steps, depths

    def _fast_steps(self, spans: list[SpanRecord]) -> list[str | None] | None:
        """Steps in arrival order when no span needs its parent's and the spans came in end
        order (so arrival order is record order); ``None`` when the full replay is needed."""
        steps: list[str | None] = []
        last_end = 0
        match = self._rules.match
        for _, _, parent_id, remote_parent, name, attrs, _, end_ns, _ in spans:
            if end_ns < last_end:
                return None
            last_end = end_ns
            own = attrs.get(BAGGAGE_KEY)
            if own is not None and not is_step_name(own):
                own = None
            if own is None and not self._stamped:
                if parent_id and not remote_parent:
                    return None
                own = match(name, attrs)
            steps.append(own)
        return steps

    # -- one trace ------------------------------------------------------------------------------
    def _replay(self, trace_key: int, spans: list[SpanRecord], *, tops_are_roots: bool) -> None:
        """Record one trace's spans. With ``tops_are_roots`` (its root never came: the data's
        clock passed the time-out, or the input ended) a span whose parent was never seen
        is taken for a local root whose parent lives in another process, as exporters that
        do not write the remote-parent flag leave it."""
        stats = self.stats
        stats.traces += 1
        stats.spans += len(spans)
        steps = self._fast_steps(spans)
        if steps is None:
            by_span, depths = self._steps(spans)
            spans = sorted(spans, key=lambda s: (s.end_ns, -depths[s.span_id]))
            steps = [self._own_step(span.attrs) if self._stamped else by_span[span.span_id] for span in spans]
        tops = self._top_spans(trace_key, spans) if tops_are_roots else frozenset()
        ready = self._ready
        traces = self._traces
        if not ready and (not traces or spans[-1].end_ns <= traces[next(iter(traces))][0].end_ns):
            # No span held or waiting ended earlier (the usual case): recorded at once.
            self._held -= len(spans)
            rooted = self._record(trace_key, spans, steps, tops)
        else:
            rooted = any(not s.parent_id or s.remote_parent or s.span_id in tops for s in spans)
            self._sequence += 1
            heapq.heappush(ready, [spans[0].end_ns, self._sequence, trace_key, spans, steps, tops, 0])
            self._release(traces[next(iter(traces))][0].end_ns if traces else math.inf)
        if rooted:
            self._rooted[trace_key] = None
            if len(self._rooted) > MAX_ROOTED_TRACES:
                self._rooted.popitem(last=False)
        first = min(map(_START_NS, spans))
        last = spans[-1].end_ns
        if stats.first_start_ns is None or first < stats.first_start_ns:
            stats.first_start_ns = first
        if stats.last_end_ns is None or last > stats.last_end_ns:
            stats.last_end_ns = last

    def _release(self, until_ns: float) -> None:
        """Record the spans of replayed traces that ended by ``until_ns``, in end order."""
        ready = self._ready
        record = self._recorder.record
        while ready and ready[0][0] <= until_ns:
            entry = ready[0]
            _, _, trace_key, spans, steps, tops, i = entry
            # This trace's spans up to the next one of another trace, in one go.
            n = len(ready)
            other = math.inf if n == 1 else ready[1][0] if n == 2 else min(ready[1][0], ready[2][0])
            stop = len(spans)
            first = i
            while True:
                _, span_id, parent_id, remote_parent, name, attrs, start_ns, end_ns, scope = spans[i]
                local_root = not parent_id or remote_parent or span_id in tops  # as in _record
                record(
                    trace_key,
                    span_id,
                    None if local_root else parent_id,
                    name,
                    attrs or None,
                    start_ns,
                    end_ns,
                    steps[i],
                    scope,
                )
                i += 1
                if i == stop or spans[i].end_ns > until_ns or spans[i].end_ns >= other:
                    break
            self._held -= i - first
            if i < stop:
                entry[0], entry[6] = spans[i].end_ns, i
                heapq.heapreplace(ready, entry)  # the same entry, sifted to its new place
            else:
                heapq.heappop(ready)

    def _record(
        self, trace_key: int, spans: list[SpanRecord], steps: list[str | None], tops: AbstractSet[int]
    ) -> bool:
        """Record ``spans``; whether one of them was a local root."""
        record = self._recorder.record
        rooted = False
        for (_, span_id, parent_id, remote_parent, name, attrs, start_ns, end_ns, scope), step in zip(
            spans, steps, strict=True
        ):
            # A local root closes its request: a span without a parent, with a remote one,
            # or (see above) one whose parent was never seen.
            local_root = not parent_id or remote_parent or span_id in tops
            if local_root:
                rooted = True
            record(
                trace_key,
                span_id,
                None if local_root else parent_id,
                name,
                attrs or None,
                start_ns,
                end_ns,
                step,
                scope,
            )
        return rooted
