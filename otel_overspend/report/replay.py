"""Replaying spans read from files through the live processor's :class:`Recorder`.

The live processor sees a process's spans in the order they ended, children before their
parents, and so must the recorder. Files keep no such order: exporters write a trace
children first, trace backends sorted by start time (root first), files may interleave
traces or split one over several. So spans are held per trace (and per process) while
more of them may come, and each trace, once closed, is replayed: steps are decided
top-down (a span's own ``overspend.step``, else its parent's step, else the step rules),
and spans are recorded bottom-up in end order, as the SDK ended them, so that the
recorder counts a nested LLM call once and closes the request with the root. When every
span names its own step (the processor's ``stamp_spans``) and the spans came in end
order, that is their arrival order and the replay takes a shortcut to the same result.

With ``stamp_spans`` in the settings, the spans are taken to be stamped: a span without
``overspend.step`` started in no step, as the live processor saw it, and the recorder
decides its call's step as it does live (the span's framework name or rule on its final
attributes, else its ancestors', nearest first), rather than from its ancestors' rules
top-down (which a file without stamps needs).

When a trace closes: the reading position is the latest span end read so far. A trace is
closed once the reading is ``window_s`` past its latest span end (no span of it is taken
to come later than that), or when the input ends. The recorder sees spans in end order
across traces too, as the live processor does (the same call seen in two traces is
counted where it ended first): a closed trace waits, recorded span by span in end order
with the other closed traces, until no trace still open has a span that ended earlier and
the reading is ``window_s`` past it. A span that comes later than that is still replayed,
out of end order, and counted (``ReplayStats.out_of_order``). The data's clock is the latest
span end recorded: requests open and time out by it, and every quarter of the request
time-out of it the replay does what a scrape does live (it counts the calls held for a twin,
then times out the requests open too long), whatever pieces the traces were read in.

Memory is bounded: at most ``max_spans`` spans held (open or waiting) and ``max_traces``
traces open. Beyond, the waiting spans are recorded at once (in end order as far as the
open traces allow, then regardless) and, if that is not enough, the open trace whose
latest span ended first is closed early (``ReplayStats.closed_early``): one that has
ended long ago in any order of input. A trace closed early whose root has not come is
replayed as it is (its calls count; its root, when it comes, closes the request).

A trace closed by the window or the end of input without its root has a span whose
parent never came: it is taken for a local root with a remote parent (exporters that
predate OTLP's remote-parent flag leave it unmarked). Traces whose root was replayed are
remembered, so that a child that comes after its trace was closed is not mistaken for one;
it gets its own step or the rules', as its parent is gone.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final

from otel_overspend.accounting.observations import ORACLE_AGREED_KEY, oracle_verdict
from otel_overspend.accounting.recorder import HOLD_NS
from otel_overspend.calls.attribution import Call as CallType
from otel_overspend.report.sums import DAY_S, HOUR_S, RECENT_HOURS, WEEK_S, PeriodSink, period_start_s
from otel_overspend.steps import BAGGAGE_KEY, is_step_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from collections.abc import Set as AbstractSet

    from otel_overspend.accounting.recorder import Recorder
    from otel_overspend.accounting.requests import OpenRequests
    from otel_overspend.calls.step_rules import StepRules
    from otel_overspend.report.otlp_json import SpanRecord

__all__ = (
    "DAY_S",
    "HOUR_S",
    "RECENT_HOURS",
    "WEEK_S",
    "DataClock",
    "PeriodSink",
    "ReplayStats",
    "Replayer",
    "period_start_s",
)

#: Traces whose local root was replayed, remembered for children exported after it.
MAX_ROOTED_TRACES: Final = 20_000
#: Valid step names remembered, so that a span's own step is checked without a call.
_MAX_STEP_NAMES: Final = 1_024
_START_NS: Final = attrgetter("start_ns")
_END_NS: Final = attrgetter("end_ns")
#: A span end later than any (ends are whole nanoseconds, at most 2**64): "until the end".
#: Never a float: the compiled build would hold the ends compared with it as doubles, which
#: do not tell apart nanoseconds this far from 1970.
_NEVER: Final = 1 << 80


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
    #: Traces replayed (a trace closed early and completed later counts twice).
    traces: int = 0
    #: Traces replayed without their local root, by why they were closed: the reading moved
    #: the window past them, the buffer was full, the input ended.
    incomplete_timeout: int = 0
    incomplete_capacity: int = 0
    incomplete_end_of_input: int = 0
    #: Traces closed before the window passed them, to stay within the bounds.
    closed_early: int = 0
    #: Spans recorded after a span that ended later: they came too late to be put in end
    #: order (past the window, or past a trace closed early).
    out_of_order: int = 0
    #: The most spans held at once (open traces and closed ones waiting).
    held_peak: int = 0
    first_start_ns: int | None = None
    last_end_ns: int | None = None
    #: The latest span end of each trace counted in ``incomplete_end_of_input``: a part of
    #: the input read apart (``--jobs``) ends early, and a trace it closed so may have been
    #: closed by the window over the whole input (see :mod:`otel_overspend.report.jobs`).
    end_of_input_last_ns: list[int] = field(default_factory=list)


#: Stale heap entries allowed beyond twice the open traces before the heap is rebuilt.
_SLACK_ENTRIES: Final = 1_024
#: Why a trace was closed.
_WINDOW: Final = "window"
_CAPACITY: Final = "capacity"
_END_OF_INPUT: Final = "end_of_input"


class _Trace:
    """One trace's spans held while more of them may come."""

    __slots__ = ("first_ns", "key", "last_ns", "open", "spans")

    def __init__(self, key: int, span: SpanRecord, end_ns: int) -> None:
        self.key = key
        self.spans = [span]
        #: The earliest and latest span end held.
        self.first_ns = self.last_ns = end_ns
        self.open = True


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
        window_s: float = 300.0,
        stamped: bool = False,
        step_span: Callable[[str, int, float, float], None] | None = None,
        oracle: Callable[[str, bool], None] | None = None,
        purpose: Callable[[int, Mapping[str, Any] | None, bool], str] | None = None,
    ) -> None:
        """``stamped``: the spans carry the step each started in as ``overspend.step`` (the
        processor's ``stamp_spans``); see the module docstring. ``step_span(step, trace key,
        start_s, end_s)`` is told of every span with a step, in the order they are recorded
        (the step time of the look-alike patterns: ``Observations.step_done_unlocked``); ``oracle(step,
        agreed)`` of every counted LLM span carrying ``overspend.oracle.agreed``, as the live
        processor is; ``purpose(trace key, attributes, remote parent)`` gives the purpose of a
        local root's request."""
        if max_spans < 1 or max_traces < 1 or not window_s >= 0:
            raise ValueError(
                f"max_spans and max_traces must be positive and window_s not negative, got "
                f"{max_spans}, {max_traces}, {window_s}"
            )
        self._recorder = recorder
        self._stamped = stamped
        self._step_span = step_span
        self._oracle = oracle
        self._purpose = purpose
        self._rules = rules
        self._requests = requests
        self._max_spans = max_spans
        self._max_traces = max_traces
        self._window_ns = int(window_s * 1e9)
        #: trace key -> its spans held so far.
        self._traces: dict[int, _Trace] = {}
        #: Open traces by their latest span end, and by their earliest: [end, sequence,
        #: trace]. Entries are not updated: one whose trace was closed, or whose end has
        #: moved since, is dropped (or pushed again) when it comes to the top.
        self._by_last: list[tuple[int, int, _Trace]] = []
        self._by_first: list[tuple[int, int, _Trace]] = []
        #: Spans held in open traces or waiting in :attr:`_ready`.
        self._held = 0
        #: Closed traces waiting to be recorded, merged by end time: [end of the next
        #: span, sequence, trace key, spans in end order, their steps, local roots, next].
        self._ready: list[list[Any]] = []
        self._sequence = 0
        #: The latest span end read, and the latest recorded.
        self._reading_ns = 0
        self._recorded_ns = 0
        #: Traces whose local root was replayed (keys only: holding spans would cost more).
        self._rooted: OrderedDict[int, None] = OrderedDict()
        self._clock = clock
        #: Step names found valid (spans repeat a few): at most _MAX_STEP_NAMES.
        self._step_names: set[str] = set()
        self._scrape_every_ns = int(requests.timeout_s * 1e9) // 4
        self._next_scrape_ns = 0
        self.stats = ReplayStats()

    @property
    def window_ns(self) -> int:
        """How far the reading goes past a trace's latest span end before it is closed."""
        return self._window_ns

    def add(self, spans: Iterable[SpanRecord]) -> None:
        """Hold ``spans`` (one record's) with their traces; close and record what is due."""
        traces, by_last, by_first = self._traces, self._by_last, self._by_first
        max_spans, max_traces = self._max_spans, self._max_traces
        reading = self._reading_ns
        held = self._held
        push = heapq.heappush
        # In end order: what a trace's spans usually come in, so its replay needs no sort.
        for span in sorted(spans, key=_END_NS):
            key = span[0]
            end_ns = span[7]
            trace = traces.get(key)
            if trace is None:
                trace = traces[key] = _Trace(key, span, end_ns)
                self._sequence += 1
                push(by_last, (end_ns, self._sequence, trace))
                push(by_first, (end_ns, self._sequence, trace))
                if len(traces) > max_traces:
                    self._held = held
                    self._make_room()
                    held = self._held
            else:
                trace.spans.append(span)
                if end_ns > trace.last_ns:
                    trace.last_ns = end_ns  # its entry in _by_last is refreshed when at the top
                elif end_ns < trace.first_ns:
                    trace.first_ns = end_ns
                    self._sequence += 1
                    push(by_first, (end_ns, self._sequence, trace))
            if end_ns > reading:  # noqa: PLR1730 - once per span: max() costs several times more
                reading = end_ns
            held += 1
            if held > max_spans:
                self._held = held
                self._make_room()
                held = self._held
        self._held = held
        self._reading_ns = reading
        self.stats.held_peak = max(self.stats.held_peak, held)
        cutoff = reading - self._window_ns
        if by_last and by_last[0][0] <= cutoff:
            self._close_passed(cutoff)
        if len(by_first) > 2 * len(traces) + _SLACK_ENTRIES:
            self._rebuild_by_first()
        if self._ready:
            self._release(min(cutoff, self._open_first()))

    def finish(self) -> None:
        """Replay every trace still held (the input has ended)."""
        while (trace := self._pop_oldest()) is not None:
            self._close(trace, _END_OF_INPUT, _NEVER)
        self._release(_NEVER)
        self._recorder.flush()  # the calls held for a twin from another trace

    # -- closing traces --------------------------------------------------------------------------
    def _close_passed(self, cutoff_ns: int) -> None:
        """Close the open traces whose latest span ended by ``cutoff_ns``."""
        by_last = self._by_last
        while by_last and by_last[0][0] <= cutoff_ns:
            _, _, trace = heapq.heappop(by_last)
            if not trace.open:
                continue
            if trace.last_ns > cutoff_ns:  # it has grown since: its place is further on
                self._sequence += 1
                heapq.heappush(by_last, (trace.last_ns, self._sequence, trace))
                continue
            self._close(trace, _WINDOW, cutoff_ns)

    def _pop_oldest(self) -> _Trace | None:
        """The open trace whose latest span ended first, out of :attr:`_by_last`."""
        by_last = self._by_last
        while by_last:
            last_ns, _, trace = heapq.heappop(by_last)
            if not trace.open:
                continue
            if trace.last_ns != last_ns:
                self._sequence += 1
                heapq.heappush(by_last, (trace.last_ns, self._sequence, trace))
                continue
            return trace
        return None

    def _open_first(self) -> int:
        """The earliest span end held in an open trace (:data:`_NEVER`: none is open)."""
        by_first = self._by_first
        while by_first:
            first_ns, _, trace = by_first[0]
            if trace.open and trace.first_ns == first_ns:
                return first_ns
            heapq.heappop(by_first)
        return _NEVER

    def _rebuild_by_first(self) -> None:
        """Drop the stale entries of :attr:`_by_first` (closed traces, moved ends): an open
        trace that stays first for long would keep them all."""
        start = self._sequence
        self._by_first = [
            (trace.first_ns, start + i, trace) for i, trace in enumerate(self._traces.values(), 1)
        ]
        self._sequence = start + len(self._by_first)
        heapq.heapify(self._by_first)

    def _make_room(self) -> None:
        """Get back within the bounds: record the waiting spans (in end order as far as the
        open traces allow, then regardless), else close the oldest open trace early."""
        stats = self.stats
        stats.held_peak = max(stats.held_peak, min(self._held, self._max_spans))  # the bound, reached
        while self._held > self._max_spans or len(self._traces) > self._max_traces:
            if self._held > self._max_spans and self._ready:
                self._release(self._open_first())
                if self._held > self._max_spans:
                    self._release(_NEVER)  # out of order with the open traces' spans
                continue
            trace = self._pop_oldest()
            if trace is None:
                return
            stats.closed_early += 1
            self._close(trace, _CAPACITY, _NEVER)

    def _close(self, trace: _Trace, why: str, until_ns: int) -> None:
        """Replay a trace no span of which is expected any more (``why``), recording at once
        what ended by ``until_ns`` and before every span of the traces still open."""
        trace.open = False
        del self._traces[trace.key]
        spans, trace.spans = trace.spans, []  # its stale heap entries keep none alive
        self._replay(trace.key, spans, why, until_ns)

    def _scrape(self, now_ns: int) -> None:
        """What a scrape does live, every quarter of the request time-out of the spans' time:
        count the calls held for a twin (see :mod:`~otel_overspend.accounting.recorder`),
        then time out the requests open too long. With no request open there is nothing to
        time out, and a held call is counted alike at the next span the processor sees."""
        if len(self._requests):
            self._recorder.flush(now_ns - HOLD_NS)
            self._requests.expire()
        self._next_scrape_ns = now_ns + self._scrape_every_ns

    # -- steps ---------------------------------------------------------------------------------
    def _own_step(self, attrs: dict[str, Any]) -> str | None:
        """A span's own valid ``overspend.step`` attribute, if any."""
        own = attrs.get(BAGGAGE_KEY)
        return own if is_step_name(own) else None

    def _checked_step(self, own: object) -> str | None:
        """``own`` if it is a valid step name (then remembered as one), else ``None``."""
        if not is_step_name(own):
            return None
        if len(self._step_names) < _MAX_STEP_NAMES:
            self._step_names.add(own)
        return own

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
            for link in chain[::-1]:
                own = self._own_step(link.attrs)
                if own is not None:
                    inherited = own
                elif inherited is None:
                    inherited = match(link.name, link.attrs)
                steps[link.span_id] = inherited
                depths[link.span_id] = depth
                depth += 1
        return steps, depths

    def _steps_by_root(self, spans: list[SpanRecord], whole: dict[int, str | None]) -> list[str | None]:
        """The steps of ``spans`` (a trace's, in end order; ``whole``: decided over all of
        them) as the spans that ended by each local root decide them: a span's step comes
        from its ancestors among the spans that ended up to the root that closes its
        request (or, after the trace's last root, since that root). That is what was
        known when the root ended, as the processor sees spans end, and what a file in
        end order gives whatever the order of the file."""
        cuts = [i + 1 for i, span in enumerate(spans) if not span.parent_id or span.remote_parent]
        if not cuts or cuts == [len(spans)]:
            return [whole[span.span_id] for span in spans]
        if cuts[-1] != len(spans):
            cuts.append(len(spans))
        steps: list[str | None] = []
        start = 0
        for cut in cuts:
            part = spans[start:cut]
            by_span = self._steps(part)[0]
            steps += [by_span[span.span_id] for span in part]
            start = cut
        return steps

    def _fast_steps(self, spans: list[SpanRecord]) -> list[str | None] | None:
        """Steps in arrival order when no span needs its parent's and the spans came in end
        order (so arrival order is record order); ``None`` when the full replay is needed."""
        steps: list[str | None] = []
        last_end = 0
        match = self._rules.match
        known = self._step_names
        for _, _, parent_id, remote_parent, name, attrs, _, end_ns, _ in spans:
            if end_ns < last_end:
                return None
            last_end = end_ns
            own = attrs.get(BAGGAGE_KEY)
            if own is not None and (type(own) is not str or own not in known):
                own = self._checked_step(own)
            if own is None and not self._stamped:
                if parent_id and not remote_parent:
                    return None
                own = match(name, attrs)
            steps.append(own)
        return steps

    # -- one trace ------------------------------------------------------------------------------
    def _replay(self, trace_key: int, spans: list[SpanRecord], why: str, until_ns: int) -> None:
        """Record one trace's spans, at once if nothing waiting or open ended earlier and
        they ended by ``until_ns``, else when :meth:`_release` comes to them. A trace
        closed without a local root and not for room (``why``: its root will not come)
        takes a span whose parent was never seen for a local root whose parent lives in
        another process, as exporters that do not write the remote-parent flag leave it."""
        stats = self.stats
        stats.traces += 1
        stats.spans += len(spans)
        last = spans[-1]  # in end order, the root is usually last
        explicit = not last[2] or last[3] or any(not s[2] or s[3] for s in spans)  # no parent, a remote one
        if not explicit:
            if why == _WINDOW:
                stats.incomplete_timeout += 1
            elif why == _CAPACITY:
                stats.incomplete_capacity += 1
            else:
                stats.incomplete_end_of_input += 1
                stats.end_of_input_last_ns.append(max(map(_END_NS, spans)))
        steps = self._fast_steps(spans)
        if steps is None:
            by_span, depths = self._steps(spans)
            spans = sorted(spans, key=lambda s: (s.end_ns, -depths[s.span_id]))
            if self._stamped:
                steps = [self._own_step(span.attrs) for span in spans]
            else:
                steps = self._steps_by_root(spans, by_span)
        tops = self._top_spans(trace_key, spans) if not explicit and why != _CAPACITY else frozenset()
        last_end = spans[-1][7]
        if not self._ready and last_end <= until_ns and last_end <= self._open_first():
            self._record(trace_key, spans, steps, tops)  # the usual case
        else:
            self._sequence += 1
            heapq.heappush(self._ready, [spans[0].end_ns, self._sequence, trace_key, spans, steps, tops, 0])
        if explicit or tops:
            self._rooted[trace_key] = None
            if len(self._rooted) > MAX_ROOTED_TRACES:
                self._rooted.popitem(last=False)
        first = min(map(_START_NS, spans))
        end = spans[-1].end_ns
        if stats.first_start_ns is None or first < stats.first_start_ns:
            stats.first_start_ns = first
        if stats.last_end_ns is None or end > stats.last_end_ns:
            stats.last_end_ns = end

    def _release(self, until_ns: int) -> None:
        """Record the spans of closed traces that ended by ``until_ns``, in end order."""
        ready = self._ready
        while ready and ready[0][0] <= until_ns:
            entry = ready[0]
            _, _, trace_key, spans, steps, tops, first = entry
            # This trace's spans up to the next one of another trace, in one go.
            n = len(ready)
            other = _NEVER if n == 1 else ready[1][0] if n == 2 else min(ready[1][0], ready[2][0])
            stop = min(
                bisect_right(spans, until_ns, first + 1, key=_END_NS),
                bisect_left(spans, other, first + 1, key=_END_NS),
            )
            self._record(trace_key, spans, steps, tops, first, stop)
            if stop < len(spans):
                entry[0], entry[6] = spans[stop].end_ns, stop
                heapq.heapreplace(ready, entry)  # the same entry, sifted to its new place
            else:
                heapq.heappop(ready)

    def _record(  # noqa: PLR0917 - the ready entry's fields
        self,
        trace_key: int,
        spans: list[SpanRecord],
        steps: list[str | None],
        tops: AbstractSet[int],
        first: int = 0,
        stop: int | None = None,
    ) -> None:
        """Record ``spans[first:stop]``, a trace's in end order, now. The data's clock, by
        which requests open and time out, is the latest span end recorded."""
        if stop is None:
            stop = len(spans)
        self._held -= stop - first
        recorded = self._recorded_ns
        if spans[first][7] < recorded:
            self.stats.out_of_order += bisect_left(spans, recorded, first, stop, key=_END_NS) - first
        end_ns = spans[stop - 1][7]
        if end_ns > recorded:
            self._recorded_ns = end_ns
        # Ahead of the spans' ends meanwhile: a request opens at its first call's end (the
        # earlier of the two); a scrape takes the clock back to the span it falls on.
        clock = self._clock
        ahead_ns = max(clock.now_ns, end_ns)
        clock.now_ns = ahead_ns
        next_scrape_ns = self._next_scrape_ns
        record = self._recorder.record
        purpose = self._purpose
        step_span = self._step_span
        oracle = self._oracle
        for i in range(first, stop):
            _, span_id, parent_id, remote_parent, name, attrs, start_ns, end_ns, scope = spans[i]
            if end_ns >= next_scrape_ns:
                clock.now_ns = end_ns
                self._scrape(end_ns)
                clock.now_ns = ahead_ns
                next_scrape_ns = self._next_scrape_ns
            # A local root closes its request: a span without a parent, with a remote one,
            # or (see above) one whose parent was never seen.
            local_root = not parent_id or remote_parent or span_id in tops
            step = steps[i]
            if step is not None and step_span is not None:
                step_span(step, trace_key, start_ns / 1e9, end_ns / 1e9)
            if local_root:
                # A local root with a parent has a remote one, or one never seen: taken as
                # remote (the request came from elsewhere). A failed span's status is in its
                # attributes, where read_usage reads it.
                result = record(
                    trace_key,
                    span_id,
                    None,
                    name,
                    attrs or None,
                    start_ns,
                    end_ns,
                    step,
                    scope,
                    False,  # noqa: FBT003 - positional, as below
                    None if purpose is None else purpose(trace_key, attrs, parent_id != 0),
                )
            else:
                result = record(
                    trace_key, span_id, parent_id, name, attrs or None, start_ns, end_ns, step, scope
                )
            # Only a span carrying a verdict has one (most have none: no call to find out).
            if oracle is not None and ORACLE_AGREED_KEY in attrs and type(result) is CallType:
                agreed = oracle_verdict(attrs)
                if agreed is not None:
                    oracle(result.step, agreed)
