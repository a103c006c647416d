"""The report's sums by period, kept exactly so that they can be split and merged.

Calls and requests are summed by UTC hour over the last :data:`RECENT_HOURS` hours of the
data and by UTC day before them (:class:`PeriodSink`). Counts and token totals are whole
numbers, exact in a float. Dollars and the per-request shares are not: a float sum depends
on the order of its terms, and the report split over processes (``--jobs``) or machines
(aggregates) adds the same terms in another order. So each dollar figure and share is kept
as a whole number of 2**-:data:`SCALE_BITS` units (every float above 2**-76 converts
exactly; a smaller one is truncated, the same way whatever the order) and summed as a
Python integer: any split, merged, gives the same integer, and the same float once
divided back (a correctly rounded division).

Cascade cases are summed the same way, by the time their request closed on the data's clock
(:class:`CascadeSink`): the look-alike patterns compare a cascade's last day with the whole
data, as the live gauges compare their shortest window with their longest.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from otel_overspend.accounting.ledger import (
    COST,
    COST_WITHOUT_COUNTERFACTUAL,
    GENERATE_SHARE_SUM,
    LLM_TIME_SHARE_SUM,
    PURPOSE_COST,
    SPECIALIZED,
    accumulate_call,
    accumulate_request,
    new_request_stats,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from otel_overspend.accounting.ledger import Key, RequestSample
    from otel_overspend.accounting.requests import CascadeCases
    from otel_overspend.calls.attribution import Call

__all__ = (
    "CALL_FIELDS",
    "CASCADE_FIELDS",
    "DAY_S",
    "EXACT_CALL_FIELDS",
    "EXACT_CASCADE_FIELDS",
    "EXACT_REQUEST_FIELDS",
    "HOUR_S",
    "RECENT_HOURS",
    "REQUEST_FIELDS",
    "SCALE_BITS",
    "WEEK_S",
    "CascadeSink",
    "PeriodSink",
    "SumsState",
    "period_start_s",
)

HOUR_S: Final = 3_600
DAY_S: Final = 86_400
#: The hours of the latest data summed apart from the days: the report's recommendation
#: reads them, so that a step moved to a specialist during the traces is not recommended.
RECENT_HOURS: Final = 24
WEEK_S: Final = 7 * DAY_S
#: 1970-01-01 was a Thursday: weeks start on Monday 00:00 UTC, four days later.
_WEEK_OFFSET_S: Final = 4 * DAY_S
#: Dollars and shares are summed in units of 2**-SCALE_BITS.
SCALE_BITS: Final = 128
_SCALE: Final = float(2**SCALE_BITS)
_DIVISOR: Final = 2**SCALE_BITS
_N_CALL: Final = 11
#: The fields of a call-stats and a request-stats vector, as the aggregate format names them.
CALL_FIELDS: Final = (
    "calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "reasoning_tokens",
    "cost_usd",
    "specialized_cost_usd",
    "unpriced_calls",
    "cache_write_tokens",
    "cost_without_counterfactual_usd",
    "calls_without_usage",
)
REQUEST_FIELDS: Final = (
    "requests",
    "frontier_calls",
    "heavy_requests",
    "tokens",
    "generate_share_sum",
    "generate_share_n",
    "llm_time_share_sum",
    "llm_time_share_n",
    "request_path_cost_usd",
    "eval_cost_usd",
    "batch_cost_usd",
)
#: A cascade step's sums (see :func:`otel_overspend.accounting.patterns.cascade_figures`).
CASCADE_FIELDS: Final = ("cases", "escalated", "cost_usd", "all_expensive_cost_usd")
#: The fields held in units of 2**-SCALE_BITS (the others are whole numbers).
EXACT_CALL_FIELDS: Final = frozenset((COST, SPECIALIZED, COST_WITHOUT_COUNTERFACTUAL))
EXACT_REQUEST_FIELDS: Final = frozenset((GENERATE_SHARE_SUM, LLM_TIME_SHARE_SUM, *PURPOSE_COST.values()))
EXACT_CASCADE_FIELDS: Final = frozenset((2, 3))
_S = TypeVar("_S")
#: A vector of sums: floats (whole numbers) and ints (units of 2**-SCALE_BITS).
Stats = list[Any]


def period_start_s(t_s: float, period_s: int) -> int:
    """Start of the UTC day or week (Monday) holding ``t_s``."""
    offset = _WEEK_OFFSET_S if period_s == WEEK_S else 0
    return int((t_s - offset) // period_s) * period_s + offset


def _units(value: float) -> int | float:
    """``value`` in units of 2**-SCALE_BITS (a float that has none, infinite or NaN, as it is)."""
    try:
        return int(value * _SCALE)
    except (OverflowError, ValueError):
        return value


def _new_call_stats() -> Stats:
    stats: Stats = [0.0] * _N_CALL
    stats[COST] = stats[SPECIALIZED] = stats[COST_WITHOUT_COUNTERFACTUAL] = 0
    return stats


def _new_request_stats() -> Stats:
    stats: Stats = new_request_stats()
    for i in EXACT_REQUEST_FIELDS:
        stats[i] = 0
    return stats


def add_call(target: dict[Key, Stats], call: Call) -> None:
    """:func:`~otel_overspend.accounting.ledger.accumulate_call`, with the dollars in units."""
    accumulate_call(target, call, _units, _new_call_stats)


def add_request(stats: Stats, sample: RequestSample) -> None:
    """:func:`~otel_overspend.accounting.ledger.accumulate_request`, with the shares in units."""
    accumulate_request(stats, sample, _units)


def _floats(stats: Stats, exact: frozenset[int]) -> tuple[float, ...]:
    return tuple(v / _DIVISOR if i in exact and type(v) is int else float(v) for i, v in enumerate(stats))


def call_floats(stats: Stats) -> tuple[float, ...]:
    """A call-stats vector as the ledger's floats."""
    return _floats(stats, EXACT_CALL_FIELDS)


def request_floats(stats: Stats) -> tuple[float, ...]:
    """A request-stats vector as the ledger's floats."""
    return _floats(stats, EXACT_REQUEST_FIELDS)


def merge_calls(into: dict[Key, Stats], other: dict[Key, Stats]) -> None:
    for key, stats in other.items():
        acc = into.get(key)
        if acc is None:
            into[key] = stats.copy()
        else:
            for i, v in enumerate(stats):
                acc[i] += v


def merge_requests(into: Stats, other: Stats) -> None:
    for i, v in enumerate(other):
        into[i] += v


class SumsState(Generic[_S]):
    """What one kind of sums holds, for the aggregate: the tables by UTC day and by UTC hour
    (both by their start in seconds), the sums of spans without a time, the newest hour."""

    __slots__ = ("days", "hours", "newest_hour_s", "untimed")

    def __init__(
        self, days: dict[int, _S], hours: dict[int, _S], untimed: _S | None, newest_hour_s: int | None
    ) -> None:
        self.days = days
        self.hours = hours
        self.untimed = untimed
        self.newest_hour_s = newest_hour_s


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

    def _fold_before(self, oldest: int) -> None:
        for start in sorted(start for start in self.hours if start < oldest):
            self._merge(self._table(self.days, period_start_s(start, DAY_S)), self.hours.pop(start))

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
            self._fold_before(oldest)
        elif hour < newest - (RECENT_HOURS - 1) * HOUR_S:
            return self._table(self.days, period_start_s(end_time_s, DAY_S))  # older than the hours
        found = self._table(self.hours, hour)
        self.low, self.high, self.current = float(hour), float(hour + HOUR_S), found
        return found

    def tables(self) -> list[tuple[int | None, _S]]:
        """(start in seconds, or ``None`` for spans without a time; sums) of every table."""
        found: list[tuple[int | None, _S]] = [*self.days.items(), *self.hours.items()]
        return found if self.untimed is None else [(None, self.untimed), *found]

    def state(self) -> SumsState[_S]:
        return SumsState(self.days, self.hours, self.untimed, self.newest_hour_s)

    def absorb(self, state: SumsState[_S]) -> None:
        """Add the sums of another part of the data: the same tables as one pass over both
        parts would have made (hours that are no longer among the newest go to their day)."""
        for start, sums in state.days.items():
            self._merge(self._table(self.days, start), sums)
        for start, sums in state.hours.items():
            self._merge(self._table(self.hours, start), sums)
        if state.untimed is not None:
            if self.untimed is None:
                self.untimed = self._new()
            self._merge(self.untimed, state.untimed)
        newest = [h for h in (self.newest_hour_s, state.newest_hour_s) if h is not None]
        if newest:
            self.newest_hour_s = max(newest)
            self._fold_before(self.newest_hour_s - (RECENT_HOURS - 1) * HOUR_S)
        self.low = self.high = 0.0  # the current table is looked up again


def _fields(state: SumsState[Any]) -> tuple[Any, ...]:
    return state.days, state.hours, state.untimed, state.newest_hour_s


def _sink_from(
    kind: type[PeriodSink | CascadeSink], first: tuple[Any, ...], second: tuple[Any, ...]
) -> PeriodSink | CascadeSink:
    """A sink unpickled (see ``__reduce__``): an empty one, given the pickled one's tables."""
    sink = kind()
    sink.absorb(SumsState(*first), SumsState(*second))
    return sink


class PeriodSink:
    """A :class:`~otel_overspend.accounting.recorder.Sink` summing calls and requests by hour for the
    last day of the data and by day before it, exactly (see the module docstring): what
    :meth:`periods`, :meth:`totals` and :meth:`recent` sum, as the ledger's floats, series
    in sorted order."""

    __slots__ = ("_calls", "_requests")

    def __init__(self) -> None:
        self._calls: _Sums[dict[Key, Stats]] = _Sums(dict, merge_calls)
        self._requests: _Sums[Stats] = _Sums(_new_request_stats, merge_requests)

    def add_call(self, call: Call, end_time_s: float) -> bool:
        calls = self._calls
        add_call(calls.current if calls.low <= end_time_s < calls.high else calls.at(end_time_s), call)
        return True

    def add_request(self, sample: RequestSample, end_time_s: float) -> None:
        requests = self._requests
        current = requests.current if requests.low <= end_time_s < requests.high else requests.at(end_time_s)
        add_request(current, sample)

    def state(self) -> tuple[SumsState[dict[Key, Stats]], SumsState[Stats]]:
        """The call and request tables (shared, not copied)."""
        return self._calls.state(), self._requests.state()

    def absorb(self, calls: SumsState[dict[Key, Stats]], requests: SumsState[Stats]) -> None:
        """Add the tables of another sink (see :meth:`state`)."""
        self._calls.absorb(calls)
        self._requests.absorb(requests)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its tables (``--jobs`` sends each part's to the main process): the
        # compiled build cannot rebuild its sums field by field.
        calls, requests = self.state()
        return _sink_from, (PeriodSink, _fields(calls), _fields(requests))

    def periods(
        self, period_s: int | None
    ) -> list[tuple[int, dict[Key, tuple[float, ...]], tuple[float, ...]]]:
        """(period start in seconds, call stats by series, request stats) for each UTC day
        or week (Monday) with data, oldest first; one period, starting at 0, when
        ``period_s`` is ``None``. Spans without a time are in period 0."""

        def start_of(start: int | None) -> int:
            return 0 if start is None or period_s is None else period_start_s(start, period_s)

        calls: dict[int, dict[Key, Stats]] = {}
        requests: dict[int, Stats] = {}
        for start, sums in self._calls.tables():
            merge_calls(calls.setdefault(start_of(start), {}), sums)
        for start, stats in self._requests.tables():
            merge_requests(requests.setdefault(start_of(start), _new_request_stats()), stats)
        empty = tuple(new_request_stats())
        return [
            (
                period,
                _call_table(calls.get(period, {})),
                request_floats(requests[period]) if period in requests else empty,
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
        calls: dict[Key, Stats] = {}
        requests = _new_request_stats()
        if since is not None:
            for start, sums in self._calls.hours.items():
                if start >= since:
                    merge_calls(calls, sums)
            for start, stats in self._requests.hours.items():
                if start >= since:
                    merge_requests(requests, stats)
        return _call_table(calls), request_floats(requests)


def _merge_steps(into: dict[str, Stats], other: dict[str, Stats]) -> None:
    for step, stats in other.items():
        acc = into.get(step)
        if acc is None:
            into[step] = stats.copy()
        else:
            for i, v in enumerate(stats):
                acc[i] += v


class CascadeSink:
    """Cascade cases (see :mod:`otel_overspend.accounting.requests`) summed per step by UTC
    hour over the last :data:`RECENT_HOURS` hours of the data and by UTC day before them, as
    the calls are: the cases of steps known as cascades, and apart from them the provisional
    cases of steps not known (yet). A step known in any part of the data (a process of
    ``--jobs``, an aggregate of another run) counts the provisional cases of every part, so
    the figures depend neither on where the data was cut nor on the order requests closed in."""

    __slots__ = ("_known", "_provisional")

    def __init__(self) -> None:
        self._known: _Sums[dict[str, Stats]] = _Sums(dict, _merge_steps)
        self._provisional: _Sums[dict[str, Stats]] = _Sums(dict, _merge_steps)

    def add(self, cases: CascadeCases, end_time_s: float, *, provisional: bool = False) -> None:
        """One request's cases of one step; the request closed at ``end_time_s``."""
        table = (self._provisional if provisional else self._known).at(end_time_s)
        sums = table.get(cases.step)
        if sums is None:
            sums = table[cases.step] = [0.0, 0.0, 0, 0]
        sums[0] += cases.cases
        sums[1] += cases.escalated
        sums[2] += _units(cases.cost_usd)
        sums[3] += _units(cases.expensive_cost_usd)

    def state(self) -> tuple[SumsState[dict[str, Stats]], SumsState[dict[str, Stats]]]:
        """The known and the provisional tables (shared, not copied)."""
        return self._known.state(), self._provisional.state()

    def absorb(self, known: SumsState[dict[str, Stats]], provisional: SumsState[dict[str, Stats]]) -> None:
        """Add the tables of another part of the data (see :meth:`state`)."""
        self._known.absorb(known)
        self._provisional.absorb(provisional)

    def __reduce__(self) -> tuple[Any, ...]:
        # As PeriodSink's.
        known, provisional = self.state()
        return _sink_from, (CascadeSink, _fields(known), _fields(provisional))

    def totals(self) -> dict[str, tuple[float, ...]]:
        """step -> (cases, escalated cases, cost, cost with every case at the expensive
        stage) over all the data, for each step known as a cascade."""
        return self._summed([t for _, t in self._known.tables()], [t for _, t in self._provisional.tables()])

    def last_day(self) -> dict[str, tuple[float, ...]]:
        """The same over the last :data:`RECENT_HOURS` UTC hours of the requests (the hour of
        the latest one and the 23 before it)."""
        newest = [h for h in (self._known.newest_hour_s, self._provisional.newest_hour_s) if h is not None]
        if not newest:
            return {}
        since = max(newest) - (RECENT_HOURS - 1) * HOUR_S
        return self._summed(
            [t for start, t in self._known.hours.items() if start >= since],
            [t for start, t in self._provisional.hours.items() if start >= since],
        )

    def _summed(
        self, known: list[dict[str, Stats]], provisional: list[dict[str, Stats]]
    ) -> dict[str, tuple[float, ...]]:
        steps = {step for _, table in self._known.tables() for step in table}
        out: dict[str, Stats] = {}
        for table in known:
            _merge_steps(out, table)
        for table in provisional:
            _merge_steps(out, {step: sums for step, sums in table.items() if step in steps})
        return {step: _floats(out[step], EXACT_CASCADE_FIELDS) for step in sorted(out)}


def _call_table(calls: dict[Key, Stats]) -> dict[Key, tuple[float, ...]]:
    """Series in sorted order: the diagnosis sums them in that order, whatever order they came in."""
    return {key: call_floats(calls[key]) for key in sorted(calls)}


def sum_tables(tables: Iterable[dict[Key, Stats]]) -> dict[Key, Stats]:
    out: dict[Key, Stats] = {}
    for table in tables:
        merge_calls(out, table)
    return out
