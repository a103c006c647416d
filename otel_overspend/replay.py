"""Replaying spans read from files through the live processor's :class:`Recorder`.

Exporters write a trace children first, in end order, and a child's step can come from
its parent, so spans are held per trace (and per process) until the trace's local root
arrives. The trace is then replayed: steps are decided top-down (a span's own
``overspend.step``, else its parent's step, else the step rules), and spans are recorded
bottom-up in end order, as the SDK ended them, so that the recorder counts a nested LLM
call once and closes the request with the root. When every span names its own step (the
processor's ``stamp_spans``) and the spans came in end order, that is their arrival
order and the replay takes a shortcut to the same result.

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

import math
from collections import OrderedDict
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from otel_overspend.ledger import accumulate_call, accumulate_request, new_request_stats
from otel_overspend.steps import BAGGAGE_KEY, is_step_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from otel_overspend.attribution import Call
    from otel_overspend.ledger import CallStats, Key, RequestSample
    from otel_overspend.otlp_json import SpanRecord
    from otel_overspend.recorder import Recorder
    from otel_overspend.requests import OpenRequests
    from otel_overspend.step_rules import StepRules

__all__ = ("DAY_S", "WEEK_S", "DataClock", "PeriodSink", "ReplayStats", "Replayer", "period_start_s")

DAY_S: Final = 86_400
WEEK_S: Final = 7 * DAY_S
#: 1970-01-01 was a Thursday: weeks start on Monday 00:00 UTC, four days later.
_WEEK_OFFSET_S: Final = 4 * DAY_S
#: Traces whose local root was replayed, remembered for children exported after it.
MAX_ROOTED_TRACES: Final = 20_000
_START_NS: Final = attrgetter("start_ns")
_S = TypeVar("_S")


def period_start_s(t_s: float, period_s: int) -> int:
    """Start of the UTC day or week (Monday) holding ``t_s``."""
    offset = _WEEK_OFFSET_S if period_s == WEEK_S else 0
    return int((t_s - offset) // period_s) * period_s + offset


class _Periods(Generic[_S]):
    """Sums by period start, with the period the last addition went to at hand as
    [``low``, ``high``) seconds: spans come in time order, mostly, so most additions need
    no period worked out."""

    __slots__ = ("_new", "_period_s", "by_start", "current", "high", "low")

    def __init__(self, period_s: int | None, new: Callable[[], _S]) -> None:
        self._period_s = period_s
        self._new = new
        self.by_start: dict[int, _S] = {}
        self.low = self.high = 0.0
        self.current = new()

    def at(self, end_time_s: float) -> _S:
        """The sums of the period holding ``end_time_s``, made current."""
        period_s = self._period_s
        if period_s is None:
            start, low, high = 0, -math.inf, math.inf
        elif not math.isfinite(end_time_s):
            start, low, high = 0, 0.0, 0.0  # no time: the first period's, never current
        else:
            start = period_start_s(end_time_s, period_s)
            low, high = float(start), float(start + period_s)
        found = self.by_start.get(start)
        if found is None:
            found = self.by_start[start] = self._new()
        self.low, self.high, self.current = low, high, found
        return found


class PeriodSink:
    """A :class:`~otel_overspend.recorder.Sink` summing calls and requests per period
    (one period for all when ``period_s`` is ``None``), with the ledger's own functions."""

    __slots__ = ("_calls", "_requests")

    def __init__(self, period_s: int | None) -> None:
        self._calls: _Periods[dict[Key, CallStats]] = _Periods(period_s, dict)
        self._requests: _Periods[list[float]] = _Periods(period_s, new_request_stats)

    def add_call(self, call: Call, end_time_s: float) -> bool:
        calls = self._calls
        accumulate_call(calls.current if calls.low <= end_time_s < calls.high else calls.at(end_time_s), call)
        return True

    def add_request(self, sample: RequestSample, end_time_s: float) -> None:
        requests = self._requests
        current = requests.current if requests.low <= end_time_s < requests.high else requests.at(end_time_s)
        accumulate_request(current, sample)

    def periods(self) -> list[tuple[int, dict[Key, tuple[float, ...]], tuple[float, ...]]]:
        """(period start in seconds, call stats by series, request stats), oldest first."""
        empty = tuple(new_request_stats())
        calls, requests = self._calls.by_start, self._requests.by_start
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
        calls: dict[Key, list[float]] = {}
        requests = new_request_stats()
        for _, period_calls, period_requests in self.periods():
            for key, stats in period_calls.items():
                acc = calls.setdefault(key, [0.0] * len(stats))
                for i, v in enumerate(stats):
                    acc[i] += v
            for i, v in enumerate(period_requests):
                requests[i] += v
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
    ) -> None:
        self._recorder = recorder
        self._rules = rules
        self._requests = requests
        self._max_spans = max_spans
        self._max_traces = max_traces
        self._timeout_ns = int(timeout_s * 1e9)
        #: trace key -> its spans held so far, oldest trace first.
        self._traces: OrderedDict[int, list[SpanRecord]] = OrderedDict()
        self._held = 0
        #: Traces whose local root was replayed (keys only: holding spans would cost more).
        self._rooted: OrderedDict[int, None] = OrderedDict()
        self._clock = clock
        self._next_expiry_ns = 0
        self.stats = ReplayStats()

    def add(self, spans: Iterable[SpanRecord]) -> None:
        traces = self._traces
        max_spans, max_traces = self._max_spans, self._max_traces
        watermark = self._clock.now_ns
        for span in spans:
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

    def _evict_oldest(self) -> None:
        while self._traces and (self._held > self._max_spans or len(self._traces) > self._max_traces):
            key, held = self._traces.popitem(last=False)
            self.stats.incomplete_capacity += 1
            self._replay(key, held, tops_are_roots=False)

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
            if own is None:
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
        self._held -= len(spans)
        stats = self.stats
        stats.traces += 1
        stats.spans += len(spans)
        steps = self._fast_steps(spans)
        if steps is None:
            by_span, depths = self._steps(spans)
            spans = sorted(spans, key=lambda s: (s.end_ns, -depths[s.span_id]))
            steps = [by_span[span.span_id] for span in spans]
        record = self._recorder.record
        tops = self._top_spans(trace_key, spans) if tops_are_roots else ()
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
