"""Open requests: per trace, the LLM calls made under this process's local root span.

A request opens at its first LLM call and closes when its local root span ends. The
table is bounded: when full, the oldest request is evicted; a request open longer than
the time-out is evicted too. Both are counted.

**Cascades.** Within one request and one step, a call at specialist or mini tier followed
by a frontier call is one *escalated case* of a cheap-then-expensive cascade; a cheap call
no frontier call follows is one case *resolved cheap*. A call whose span carries ``overspend.cascade.stage``
(``"cheap"`` or ``"expensive"``, see :func:`otel_overspend.steps.mark_cascade_stage`) is that
stage whatever its tier, and makes its step a cascade step. Otherwise a step becomes one the
first time one of its requests escalates (at most :data:`MAX_CASCADE_STEPS` steps). Each closed
request tells ``on_cascade`` its cases in each cascade step (step, cases, escalated cases,
priced cases' cost, what those cases would cost had each run at the expensive stage): an
escalated case's expensive stage is its frontier call, a case resolved cheap is its cheap
call's units repriced at frontier tier.

**Provisional cases.** So that the counts do not depend on the order requests close in, the
cases of a step not yet known as a cascade (all resolved cheap: none escalated) are
*provisional*: they are told ``on_provisional``. By default they are held, summed per step (at
most :data:`MAX_CASCADE_STEPS` steps), and told ``on_cascade`` when the step becomes a cascade
step, just before the cases of the request that made it one: a step learned late misses none
of its earlier requests. The report sets ``on_provisional`` instead and keeps them by time, so that a step
known in any part of its input (``--jobs``, several aggregates) counts every part's cases.
Beyond :data:`MAX_CASCADE_STEPS` steps known (or held), a further step's cases are not
followed: they are counted in ``overflowed_cases`` (exported as the label overflow
``cascade_steps``).

Calls are added and requests closed by one thread at a time (the processor counts under
its queue's lock; the report is single-threaded), so that path takes no lock; only the
eviction counters, which :meth:`OpenRequests.expire` also updates from a scrape, do.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from otel_overspend.accounting.ledger import RequestSample
from otel_overspend.accounting.purposes import REQUEST_PATH
from otel_overspend.base.bounded import make_room
from otel_overspend.calls.catalog import FRONTIER, MINI, SPECIALIST
from otel_overspend.steps import CASCADE_STAGES, GENERATE

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from otel_overspend.calls.attribution import Call

__all__ = ("MAX_CASCADE_STEPS", "CascadeCases", "OpenRequests", "Signature", "new_signature", "same_call")


#: Steps known as cascades (an escalation seen); further steps are not followed as cascades.
MAX_CASCADE_STEPS: Final = 100
EXPENSIVE_STAGE: Final = CASCADE_STAGES[1]
#: The tiers of a cascade's cheap stage (without a marked stage).
_CHEAP_TIERS: Final = frozenset({SPECIALIST, MINI})


class CascadeCases(NamedTuple):
    """One request's cases of one cascade step."""

    step: str
    cases: int
    escalated: int
    #: Spend of the priced cases (both stages of an escalated case).
    cost_usd: float
    #: What the priced cases would cost, each run at the expensive stage.
    expensive_cost_usd: float


#: The most recent calls of a trace kept for recognising a second span of the same call.
MAX_RECENT_CALLS: Final = 16


class Signature(NamedTuple):
    """What tells two LLM spans of one trace apart."""

    scope: str
    #: Any attribute value (usually a string); ``Any``, not ``object``: mypyc resolves the
    #: annotations of a compiled named tuple by name, and ``object`` is not one it finds.
    response_id: Any
    input_tokens: int
    output_tokens: int
    start_ns: int
    end_ns: int


#: Builds a :class:`Signature` from one tuple in C (the generated ``__new__`` runs Python code).
new_signature: Final = partial(tuple.__new__, Signature)


def same_call(seen: Signature, sig: Signature) -> bool:
    """Whether two LLM spans are one call.

    Two spans are one call when both carry a response id and the ids are equal; otherwise
    when they come from different instrumentations (scopes), have the same input tokens,
    output tokens within one (one instrumentation's streaming count is off by one) and
    overlap in time. Parallel calls from one instrumentation are never merged, however alike.
    """
    if sig.response_id is not None and seen.response_id is not None:
        return bool(seen.response_id == sig.response_id)
    return (
        seen.scope != sig.scope
        and seen.input_tokens == sig.input_tokens
        and abs(seen.output_tokens - sig.output_tokens) <= 1
        and seen.start_ns <= sig.end_ns
        and sig.start_ns <= seen.end_ns
    )


#: Counted calls remembered as having taken a twin (see :func:`twin_of`); beyond it the oldest go.
MAX_ABSORBED: Final = 10_000


def twin_of(seen: Signature, sig: Signature, absorbed: dict[tuple[Signature, str], None]) -> bool:
    """Whether ``sig`` is the counted call ``seen`` again (:func:`same_call`), where a call
    known only by its likeness takes at most one twin from each other instrumentation: two
    alike parallel calls of one instrumentation beside one span of another are two calls.
    ``absorbed`` remembers the twins taken."""
    if sig.response_id is not None and seen.response_id is not None:
        return bool(seen.response_id == sig.response_id)
    if not same_call(seen, sig):
        return False
    key = (seen, sig.scope)
    if key in absorbed:
        return False
    if len(absorbed) >= MAX_ABSORBED:
        make_room(absorbed, MAX_ABSORBED)
    absorbed[key] = None
    return True


#: Builds a :class:`~otel_overspend.accounting.ledger.RequestSample` from one tuple in C.
_new_sample: Final = partial(tuple.__new__, RequestSample)


class _Open:
    """The running sums of one open request."""

    __slots__ = (
        "absorbed",
        "cascade",
        "cost",
        "eval_cost",
        "frontier_calls",
        "generate_cost",
        "ids",
        "llm_time_ns",
        "opened_s",
        "recent",
        "scopes",
        "tokens",
    )

    def __init__(self, opened_s: float) -> None:
        self.opened_s = opened_s
        self.frontier_calls = 0
        self.tokens = 0
        self.cost = 0.0
        #: The priced spend of its calls in the eval steps (within ``cost``).
        self.eval_cost = 0.0
        self.generate_cost = 0.0
        self.llm_time_ns = 0
        self.recent: list[Signature] = []
        #: The response ids among ``recent``, and the instrumentations (scopes) of ``recent``
        #: since the request opened: most calls are told apart without a look at ``recent``.
        self.ids: dict[object, None] = {}
        self.scopes: set[str] = set()
        #: Calls of ``recent`` that took a twin, with the twin's instrumentation.
        self.absorbed: dict[tuple[Signature, str], None] = {}
        #: step -> [escalated, cost, expensive cost, priced escalations, cheap calls not followed
        #: by a frontier call...]; ``None`` until a cheap or frontier call.
        self.cascade: dict[str, list[Any]] | None = None


def _follow_cascade(entry: _Open, call: Call, expensive: bool, marked: bool) -> None:
    """Pair an expensive call with the step's oldest cheap call not yet escalated."""
    steps = entry.cascade
    if steps is None:
        steps = entry.cascade = {}
    state = steps.get(call.step)
    if state is None:
        state = steps[call.step] = [0, 0.0, 0.0, marked]
    elif marked:
        state[_MARKED] = True
    if not expensive:
        state.append(call)
        return
    if state is None or len(state) <= _PENDING:
        return  # no cheap call before it: no case of a cascade
    cheap: Call = state.pop(_PENDING)
    state[_ESCALATED] += 1
    if cheap.cost_usd is not None and call.cost_usd is not None:
        state[_COST] += cheap.cost_usd + call.cost_usd
        state[_EXPENSIVE] += call.cost_usd


#: Indices into a step's cascade state (escalated cases, their cost, their expensive cost,
#: whether a call was marked with its stage); the cheap calls not escalated follow.
_ESCALATED, _COST, _EXPENSIVE, _MARKED, _PENDING = 0, 1, 2, 3, 4


def _add_to(  # noqa: PLR0917 - once per call: positional arguments are cheaper
    entry: _Open,
    call: Call,
    duration_ns: int,
    sig: Signature | None,
    stage: object,
    eval_steps: frozenset[str],
) -> None:
    tier = call.tier
    if tier == FRONTIER:
        entry.frontier_calls += 1
    if stage is not None and stage in CASCADE_STAGES:
        _follow_cascade(entry, call, stage == EXPENSIVE_STAGE, True)  # noqa: FBT003 - positional: once per call
    elif tier == FRONTIER:
        # Only a frontier call after a cheap one of its step is a case: with no cheap call
        # of the step yet (most calls of most apps), there is nothing to follow.
        if entry.cascade is not None and call.step in entry.cascade:
            _follow_cascade(entry, call, True, False)  # noqa: FBT003 - positional: once per call
    elif tier in _CHEAP_TIERS:
        _follow_cascade(entry, call, False, False)  # noqa: FBT003 - positional: once per call
    entry.tokens += call.input_tokens + call.output_tokens
    cost = call.cost_usd
    if cost is not None:
        entry.cost += cost
        if call.step == GENERATE:
            entry.generate_cost += cost
        elif call.step in eval_steps:
            entry.eval_cost += cost
    if duration_ns > 0:
        entry.llm_time_ns += duration_ns
    if sig is not None:
        recent = entry.recent
        if len(recent) >= MAX_RECENT_CALLS:
            gone = recent.pop(0).response_id
            if gone is not None:
                entry.ids.pop(gone, None)
        recent.append(sig)
        if sig.response_id is not None:
            entry.ids[sig.response_id] = None
        entry.scopes.add(sig.scope)


def _sample(entry: _Open, wall_ns: int, purpose: str) -> RequestSample:
    cost = entry.cost
    eval_cost = entry.eval_cost
    return _new_sample(
        (
            entry.frontier_calls,
            entry.tokens,
            entry.generate_cost / cost if cost > 0 else None,
            min(1.0, entry.llm_time_ns / wall_ns) if wall_ns > 0 else None,
            purpose,
            cost - eval_cost if eval_cost else cost,
            eval_cost,
        )
    )


def _cases(
    entry: _Open, known: dict[str, None], reprice: Callable[[Call], float | None]
) -> list[CascadeCases]:
    """The cascade cases of a closing request, in the steps known as cascades (a step
    escalating here, or with a marked stage, becomes one) and, provisional, in the steps not
    known yet that may still become one (those left out of ``known``)."""
    found: list[CascadeCases] = []
    for step, state in (entry.cascade or {}).items():
        escalated = state[_ESCALATED]
        if step not in known:
            if (escalated or state[_MARKED]) and len(known) < MAX_CASCADE_STEPS:
                known[step] = None
            elif len(state) == _PENDING and not escalated:
                continue  # frontier calls alone: no case
        cost, expensive = state[_COST], state[_EXPENSIVE]
        for cheap in state[_PENDING:]:  # resolved cheap
            at_frontier = None if cheap.cost_usd is None else reprice(cheap)
            if at_frontier is not None:
                cost += cheap.cost_usd
                expensive += at_frontier
        found.append(CascadeCases(step, escalated + len(state) - _PENDING, escalated, cost, expensive))
    return found


def _no_price(_: Call) -> float | None:
    return None


def _ignore_cases(_: CascadeCases) -> None:
    return None


#: Indices into a held step's sums of provisional cases (cases, cost, expensive cost).
_CASES, _HELD_COST, _HELD_EXPENSIVE = 0, 1, 2


class OpenRequests:
    __slots__ = (
        "_cascade_steps",
        "_clock",
        "_eval_steps",
        "_held",
        "_lock",
        "_open",
        "evicted_capacity",
        "evicted_timeout",
        "max_open",
        "on_cascade",
        "on_provisional",
        "overflowed_cases",
        "reprice",
        "timeout_s",
    )

    def __init__(
        self,
        *,
        max_open: int,
        timeout_s: float,
        clock: Callable[[], float],
        reprice: Callable[[Call], float | None] = _no_price,
        on_cascade: Callable[[CascadeCases], None] = _ignore_cases,
        on_provisional: Callable[[CascadeCases], None] | None = None,
        eval_steps: Collection[str] = (),
    ) -> None:
        """``reprice`` gives what a call's units cost at frontier tier (``None``: unknown);
        ``on_cascade`` is told each closed request's cases of each cascade step;
        ``on_provisional`` its provisional cases (``None``: held, see the module docstring);
        the spend of calls in ``eval_steps`` is evaluation spend (see ``accounting.purposes``)."""
        self._eval_steps = frozenset(eval_steps)
        self.reprice = reprice
        self.on_cascade = on_cascade
        self.on_provisional = on_provisional
        self._cascade_steps: dict[str, None] = {}
        #: step -> [cases, cost, expensive cost] of the provisional cases held.
        self._held: dict[str, list[float]] = {}
        #: Cases of the steps beyond MAX_CASCADE_STEPS, not followed.
        self.overflowed_cases = 0
        self.max_open = max_open
        self.timeout_s = timeout_s
        self._clock = clock
        self._open: dict[int, _Open] = {}
        self._lock = threading.Lock()
        self.evicted_capacity = 0
        self.evicted_timeout = 0

    def is_duplicate(self, trace_id: int, sig: Signature) -> bool:
        """Whether a call of this trace already counted is the same call as ``sig`` (see
        :func:`same_call`)."""
        entry = self._open.get(trace_id)
        if entry is None:
            return False
        scope, response_id = sig.scope, sig.response_id
        if response_id is not None and response_id in entry.ids:
            return True  # the same id: the same call, whatever made the spans
        scopes = entry.scopes
        if len(scopes) == 1 and scope in scopes:
            return False  # one instrumentation's spans are one call only by their ids
        for seen in entry.recent:
            # One instrumentation's spans are one call only by their ids: most are skipped here.
            if (
                seen.scope != scope or (response_id is not None and seen.response_id is not None)
            ) and twin_of(seen, sig, entry.absorbed):
                return True
        return False

    def add(
        self, trace_id: int, call: Call, duration_ns: int, sig: Signature | None = None, stage: object = None
    ) -> None:
        """Add a counted call; ``stage`` is its span's ``overspend.cascade.stage``, if any."""
        table = self._open
        entry = table.get(trace_id)
        if entry is None:
            if len(table) >= self.max_open:
                evicted = make_room(table, self.max_open)
                with self._lock:
                    self.evicted_capacity += evicted
            # Open since its first call ended (counting may come later: see background).
            opened_s = self._clock() if sig is None else min(self._clock(), sig.end_ns / 1e9)
            entry = table[trace_id] = _Open(opened_s)
        _add_to(entry, call, duration_ns, sig, stage, self._eval_steps)

    def is_open(self, trace_id: int) -> bool:
        return trace_id in self._open

    def close(self, trace_id: int, wall_ns: int, purpose: str = REQUEST_PATH) -> RequestSample | None:
        """End the request of ``trace_id``, made for ``purpose``; ``None`` if it made no LLM call."""
        entry = self._open.pop(trace_id, None)
        if entry is None:
            return None
        if entry.cascade is not None:
            self._tell(entry)
        return _sample(entry, wall_ns, purpose)

    def _tell(self, entry: _Open) -> None:
        known, held = self._cascade_steps, self._held
        for cases in _cases(entry, known, self.reprice):
            step = cases.step
            if step not in known:
                if cases.escalated or len(known) >= MAX_CASCADE_STEPS:
                    self.overflowed_cases += cases.cases  # it can no longer become one
                elif self.on_provisional is not None:
                    self.on_provisional(cases)
                else:
                    self._hold(cases)
                continue
            if held:
                earlier = held.pop(step, None)
                if earlier is not None:  # the step is a cascade from this request on
                    n, cost, expensive = earlier
                    self.on_cascade(CascadeCases(step, int(n), 0, cost, expensive))
            self.on_cascade(cases)

    def _hold(self, cases: CascadeCases) -> None:
        """Add provisional cases to their step's sums (see the module docstring)."""
        sums = self._held.get(cases.step)
        if sums is None:
            if len(self._held) >= MAX_CASCADE_STEPS:
                self.overflowed_cases += cases.cases
                return
            sums = self._held[cases.step] = [0.0, 0.0, 0.0]
        sums[_CASES] += cases.cases
        sums[_HELD_COST] += cases.cost_usd
        sums[_HELD_EXPENSIVE] += cases.expensive_cost_usd

    def ended(
        self, calls: list[tuple[Call, int]], wall_ns: int, purpose: str = REQUEST_PATH
    ) -> RequestSample | None:
        """The request of calls counted after their local root ended (never in the table)."""
        if not calls:
            return None
        entry = _Open(0.0)
        for call, duration_ns in calls:
            _add_to(entry, call, duration_ns, None, None, self._eval_steps)
        if entry.cascade is not None:
            self._tell(entry)
        return _sample(entry, wall_ns, purpose)

    def expire(self) -> None:
        deadline = self._clock() - self.timeout_s
        table = self._open
        # list() copies the items in one step, so requests opening meanwhile do no harm.
        stale = [tid for tid, entry in list(table.items()) if entry.opened_s < deadline]
        evicted = sum(1 for tid in stale if table.pop(tid, None) is not None)
        with self._lock:
            self.evicted_timeout += evicted

    def __len__(self) -> int:
        return len(self._open)

    def reset(self) -> None:
        """Forget every open request and eviction (used in a forked child)."""
        self._lock = threading.Lock()
        self._open = {}
        self._cascade_steps = {}
        self._held = {}
        self.overflowed_cases = 0
        self.evicted_capacity = 0
        self.evicted_timeout = 0
