"""Recording one finished span: the logic the live processor and the offline report share.

For each span, in end order: read its usage; if it is an LLM call, name its step, price
it, add it to the ledger and to its request; when a local root with an LLM span in or
below it ends, close its trace's request (a trace may hold other local roots, from one
caller's repeated calls, that made none).

The live processor records only the spans it queues (one that may be an LLM call, or one
with such a span below it); the report records every span. On any other span the recorder
leaves the counts as they were, so that both count alike: it closes no request and
releases no held call there.

One call, counted once: when LLM spans are nested (a framework span such as LangChain's
or LlamaIndex's over the client library's span, or two instrumentations wrapping the same
client), only the innermost is counted — it is closest to the wire and carries the
response model. A span learns that an LLM call was counted below it from its children,
which end first; the mark climbs through non-LLM spans to every ancestor. When the two
spans of one call are siblings instead (two client instrumentations that do not nest, such
as OpenLLMetry's and the anthropic SDK's own), the second to end is recognised within its
trace: the same ``gen_ai.response.id``, or — when a span has none — a span from another
instrumentation scope with the same token counts overlapping it in time. Skipped spans are
counted as ``overspend_spans_dropped_total{reason="duplicate_llm_span"}``.

A step decided late: an LLM call whose step is still undecided when it ends (no
``step()``, baggage or rule at its start; no explicit or framework step on its own final
attributes) waits for its ancestors to end, and takes the step of the nearest one whose
final attributes name one (its ``overspend.step``, the step it started in, a framework's
name for it, a rule). A call still undecided when its local root ends is held a moment
(:data:`HOLD_NS` of span time) in case the same call comes again from another
instrumentation in another trace (a framework span and a client span that were never
nested: no app span) with a step: then it is counted once, with that step; else it is
counted as ``unattributed``. Both waits are bounded; a call pushed out of one is counted
at once (as ``overspend_label_overflow_total{label="step_wait"}``, for a held call only
once another instrumentation has been seen: before, no twin can come).
"""

from __future__ import annotations

import heapq
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

from otel_overspend.accounting.purposes import REQUEST_PATH
from otel_overspend.accounting.requests import new_signature, same_call, twin_of
from otel_overspend.base.bounded import Recent, make_room
from otel_overspend.calls.conventions import (
    LITELLM_CALL_KEY,
    LITELLM_RAW_USAGE_KEYS,
    LITELLM_SCOPE,
    LLM_MARKER_KEYS,
    may_be_llm_call,
    read_usage,
)
from otel_overspend.steps import BAGGAGE_KEY, UNATTRIBUTED, is_step_name

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from otel_overspend.accounting.ledger import RequestSample
    from otel_overspend.accounting.requests import OpenRequests, Signature
    from otel_overspend.calls.attribution import Attributor, Call
    from otel_overspend.calls.conventions import Usage
    from otel_overspend.calls.step_rules import StepRules

__all__ = ("HOLD_NS", "MAX_MARKED_SPANS", "WAITING", "WITHOUT_USAGE", "Recorder", "Sink", "mark")

#: Spans with an LLM call counted below them that have not ended yet; oldest forgotten beyond.
MAX_MARKED_SPANS: Final = 100_000
_NS_PER_S: Final = 1e9
#: What :meth:`Recorder.count` answers for an LLM call whose span reports nothing billed:
#: counted as such (``overspend_llm_calls_without_usage_total``), neither a call nor a drop.
WITHOUT_USAGE: Final = "llm_call_without_usage"
#: What :meth:`Recorder.count` answers for an LLM call whose step waits for an ancestor's.
WAITING: Final = "llm_call_waiting_for_step"
#: LLM calls waiting for an ancestor to end, and calls held after their root ended, at most.
MAX_WAITING_CALLS: Final = 10_000
MAX_HELD_CALLS: Final = 1_000
_MAX_RECENT_PER_SIZE: Final = 16
_MAX_RECENT_SCOPES: Final = 64
#: How long (span time) a call undecided at its root is held for its twin from another trace.
HOLD_NS: Final = 2_000_000_000
#: Counted calls remembered (at least; at most twice as many) to recognise a held call's twin
#: counted first (offline, traces replay in any order).
MAX_RECENT_CALLS: Final = 4_096
#: The label ``overspend_label_overflow_total`` counts a call pushed out of a wait under.
STEP_WAIT: Final = "step_wait"


class _Waiting(NamedTuple):
    """An LLM call not counted yet: its step is not decided."""

    trace_id: int
    usage: Usage
    duration_ns: int
    end_ns: int
    sig: Signature


_no_marker_keys: Final = LLM_MARKER_KEYS.isdisjoint


def _queued_live(attrs: Mapping[str, Any] | None) -> bool:
    """Whether the live processor queues a span with these attributes and no span it queued
    below it (see :mod:`otel_overspend.hooks.processor`): whether it may be an LLM call."""
    return attrs is not None and not _no_marker_keys(attrs) and may_be_llm_call(attrs)


#: Builds a :class:`_Waiting` from one tuple in C (the generated ``__new__`` runs Python code).
_new_waiting: Final = partial(tuple.__new__, _Waiting)


#: The marks a span's children leave: an LLM call (or its drop) was counted below it...
STRONG: Final = None
#: ...or only an LLM call without usage was (a span above it with usage is then the one
#: that counts; one without usage is the same call again).
WEAK: Final = True
#: ...or only spans the live processor queues that are no LLM call (a failed call without
#: usage, a span above one): nothing to count, but this span is queued live too.
SEEN: Final = "seen"


def _ignore(*_: str) -> None:
    pass


class Sink(Protocol):
    """Where recorded calls and requests go: the live :class:`~otel_overspend.accounting.ledger.Ledger`,
    or the offline report's per-period aggregate."""

    def add_call(self, call: Call, end_time_s: float) -> bool: ...

    def add_request(self, sample: RequestSample, end_time_s: float) -> None: ...


class Recorder:
    __slots__ = (
        "_absorbed",
        "_attributor",
        "_drop",
        "_fail",
        "_held",
        "_held_by",
        "_held_due",
        "_held_n",
        "_held_scopes",
        "_ledger",
        "_litellm_writes",
        "_marked",
        "_note",
        "_overflow",
        "_recent",
        "_recent_ids",
        "_recent_scopes",
        "_requests",
        "_rules",
        "_unindexed",
        "_unindexed_traces",
        "_waiting",
        "_waiting_n",
        "_without_usage",
    )

    def __init__(
        self,
        *,
        attributor: Attributor,
        rules: StepRules,
        ledger: Sink,
        requests: OpenRequests,
        drop: Callable[[str], None],
        note: Callable[[str], None] = _ignore,
        without_usage: Callable[[str, str], None] = _ignore,
        overflow: Callable[[str], None] = _ignore,
        fail: Callable[[], None] | None = None,
    ) -> None:
        """``drop`` counts an LLM span not counted (or a bad part of one), by reason;
        ``note`` what reading usage had to infer, by what; ``without_usage`` an LLM call
        whose span reports nothing billed, by (capped) step and model."""
        self._attributor = attributor
        self._rules = rules
        self._ledger = ledger
        self._requests = requests
        self._drop = drop
        self._note = note
        self._without_usage = without_usage
        self._overflow = overflow
        #: Told (inside the ``except``) when counting a held call fails; ``None``: re-raise.
        self._fail = fail
        self._marked: dict[int, bool | str | None] = {}
        #: Span id -> how many calls LiteLLM wrote onto it (its raw-response children).
        self._litellm_writes: dict[int, int] = {}
        self._reset_waits()

    def _reset_waits(self) -> None:
        #: Parent span id -> calls waiting for it to end.
        self._waiting: dict[int, list[_Waiting]] = {}
        self._waiting_n = 0
        #: Trace id -> (its root's wall time, calls undecided when it ended, its request's
        #: purpose), oldest first.
        self._held: dict[int, tuple[int, list[_Waiting], str]] = {}
        self._held_n = 0
        #: A heap of (the end of a held trace's last call, the trace): the trace's release
        #: is due :data:`HOLD_NS` after. Held traces are not in end order when the report
        #: records one out of order (a trace closed early for room), or a held trace gets
        #: a later call: the earliest due is found here, not as the oldest held. An entry
        #: whose trace was released, or got a later call since, is dropped when it comes up.
        self._held_due: list[tuple[int, int]] = []
        #: The traces of the held calls by each call's response id and by its (input
        #: tokens, scope), in the order the calls were held; the held calls by scope. A call
        #: counted with a step looks for its held twin (:meth:`_unhold_twin`) among those
        #: that can be one, not among every held call. Built when a call with a step is
        #: first counted while calls are held (``None`` until then: an app that names no
        #: step holds every call and never looks), then kept with them.
        self._held_by: dict[object, list[int]] | None = None
        self._held_scopes: dict[str, int] = {}
        #: Recent counted calls: response id -> trace; (input tokens, scope) -> (trace,
        #: signature) of those without an id; the scopes seen among them.
        self._recent_ids: Recent[object, int] = Recent(MAX_RECENT_CALLS)
        self._recent: Recent[tuple[int, str], list[tuple[int, Signature]]] = Recent(MAX_RECENT_CALLS)
        #: Counted calls not yet in ``_recent``, newest last: it is read only once a second
        #: instrumentation is seen, so until then a call is only appended here (``None``:
        #: every call goes straight into ``_recent``).
        self._unindexed: deque[Signature] | None = deque(maxlen=MAX_RECENT_CALLS)
        self._unindexed_traces: deque[int] = deque(maxlen=MAX_RECENT_CALLS)  # their traces
        self._recent_scopes: set[str] = set()
        self._absorbed: dict[tuple[Signature, str], None] = {}

    def reset(self) -> None:
        self._marked = {}
        self._litellm_writes = {}
        self._reset_waits()

    def record(  # noqa: PLR0917 - once per span: positional arguments are cheaper
        self,
        trace_id: int,
        span_id: int,
        parent_id: int | None,
        name: str,
        attrs: Mapping[str, Any] | None,
        start_ns: int,
        end_ns: int,
        step: str | None,
        scope: str = "",
        failed: bool = False,
        purpose: str | None = None,
    ) -> Call | str | None:
        """Record one ended span, spans in end order; ``parent_id`` is ``None`` for a local root;
        ``failed`` for a span whose status is an error; ``purpose`` is a local root's request's
        (``accounting.purposes``; ``None``: a request's).

        Returns the counted call; for an LLM span that was not counted, the reason (a
        duplicate, malformed usage, too old); ``None`` for a span that is no LLM call.
        """
        if self._waiting:
            waiting = self._waiting.pop(span_id, None)
            if waiting is not None:
                self._decide(waiting, parent_id, name, attrs, step, end_ns - start_ns, purpose)
        if (
            parent_id is not None
            and scope == LITELLM_SCOPE
            and attrs
            and not LITELLM_RAW_USAGE_KEYS.isdisjoint(attrs)
        ):
            writes = self._litellm_writes
            if len(writes) >= MAX_MARKED_SPANS:
                make_room(writes, MAX_MARKED_SPANS)
            writes[parent_id] = writes.get(parent_id, 0) + 1
        marked = self._marked
        found = marked.pop(span_id, False)
        below = found is STRONG
        result = self.count(
            trace_id,
            parent_id,
            name,
            attrs,
            start_ns,
            end_ns,
            step,
            scope,
            below,
            found is WEAK,
            failed,
            purpose,
        )
        if parent_id is not None:  # mark(), inlined
            if below or (result is not None and result is not WITHOUT_USAGE):
                if len(marked) >= MAX_MARKED_SPANS:
                    make_room(marked, MAX_MARKED_SPANS)
                marked[parent_id] = STRONG
            elif found is WEAK or result is WITHOUT_USAGE:
                if len(marked) >= MAX_MARKED_SPANS:
                    make_room(marked, MAX_MARKED_SPANS)
                if marked.get(parent_id, False) is not STRONG:
                    marked[parent_id] = WEAK
            elif found is not False or _queued_live(attrs):
                if len(marked) >= MAX_MARKED_SPANS:
                    make_room(marked, MAX_MARKED_SPANS)
                marked.setdefault(parent_id, SEEN)
        if self._litellm_writes and attrs and LITELLM_CALL_KEY in attrs and scope != LITELLM_SCOPE:
            # LiteLLM wrote its calls' usage onto this span (the active one), each over the
            # one before: all but the last are lost, counted here (one raw-response child
            # per call tells how many). USE_OTEL_LITELLM_REQUEST_SPAN=true avoids it.
            for _ in range(self._litellm_writes.pop(span_id, 1) - 1):
                self._drop("litellm_usage_overwritten")
        # Held calls are released by the ends of the spans the live processor sees (the
        # report records every span), so that both release them at the same span; only
        # once one may be due (``flush``'s own test, first: it is the cheaper one).
        due = self._held_due
        if due and due[0][0] < end_ns - HOLD_NS and (found is not False or _queued_live(attrs)):
            self.flush(end_ns - HOLD_NS)
        return result

    def count(  # noqa: PLR0917 - once per LLM span: positional arguments are cheaper
        self,
        trace_id: int,
        parent_id: int | None,
        name: str,
        attrs: Mapping[str, Any] | None,
        start_ns: int,
        end_ns: int,
        step: str | None,
        scope: str,
        below: bool,
        weak: bool = False,
        failed: bool = False,
        purpose: str | None = None,
    ) -> Call | str | None:
        """:meth:`record` for a caller that keeps the marks itself: ``below`` tells whether an
        LLM span below this one was already seen (then this one is a duplicate), ``weak``
        whether only an LLM call without usage was (then this one counts if it has usage)."""
        usage = read_usage(attrs, scope) if attrs is not None else None
        result: Call | str | None = None
        if usage is not None:
            if isinstance(usage, str):
                result = usage
            elif not (
                usage.input_tokens or usage.output_tokens or usage.searches or usage.span_cost_usd is not None
            ):  # Usage.reported, inlined
                # A failed call billed nothing: no LLM span at all, over a call or not (as
                # read_usage reads it from the status a trace file puts in its attributes);
                # over a call, the same call again; with a weak mark, the call below was
                # counted as this one already.
                if failed:
                    pass
                elif below:
                    result = "duplicate_llm_span"
                elif not weak:
                    call = self._attributor.attribute(
                        usage, usage_step(usage, step, self._rules, name, attrs)
                    )
                    self._ledger.add_call(call._replace(billed=False), end_ns / _NS_PER_S)
                    self._without_usage(call.step, call.model)
                    result = WITHOUT_USAGE
            elif below:
                result = "duplicate_llm_span"
            else:
                for note in usage.notes:
                    if note == "invalid_span_cost":
                        self._drop(note)
                    else:
                        self._note(note)
                explicit = usage.step
                # The span's own step is the one decided already (the report, stamp_spans):
                # nothing to check again.
                decided: str | None = step
                if step is None or (explicit is not None and explicit != step):
                    decided = own_step(usage, step, self._rules, name, attrs)
                sig = new_signature(
                    (scope, usage.response_id, usage.input_tokens, usage.output_tokens, start_ns, end_ns)
                )
                if decided is not None:
                    result = self._settle(trace_id, usage, end_ns - start_ns, end_ns, sig, decided)
                else:
                    waiting = _new_waiting((trace_id, usage, end_ns - start_ns, end_ns, sig))
                    if parent_id is not None:
                        result = self._wait(parent_id, [waiting])
                    else:
                        self._hold(trace_id, end_ns - start_ns, [waiting], purpose)
                        result = WAITING
            if isinstance(result, str) and result is not WITHOUT_USAGE and result is not WAITING:
                self._drop(result)
        # A local root closes its trace's request when an LLM span was seen in or below
        # it (another local root of the trace may have one open); a held one on release.
        if parent_id is None and (below or weak or result is not None) and trace_id not in self._held:
            sample = self._requests.close(trace_id, end_ns - start_ns, purpose or REQUEST_PATH)
            if sample is not None:
                self._ledger.add_request(sample, end_ns / _NS_PER_S)
        return result

    # -- calls whose step is decided late ------------------------------------------------
    def _settle(  # noqa: PLR0917 - a _Waiting's fields, then the step: once per call
        self,
        trace_id: int,
        usage: Usage,
        duration_ns: int,
        end_ns: int,
        sig: Signature,
        step: str,
        held: bool = False,
    ) -> Call | str:
        """Count a call (a :class:`_Waiting`'s fields) with its step decided, unless it is a
        call counted already, in its trace or in another (spans of two instrumentations that
        were never nested); a ``held`` one's request has ended: the caller makes its sample."""
        requests = self._requests
        if requests.is_duplicate(trace_id, sig):  # sibling spans of one call
            return "duplicate_llm_span"
        if self._held and step != UNATTRIBUTED:
            held_by = self._held_by
            if held_by is None:
                held_by = self._index_held()
            held_scopes = self._held_scopes  # a twin of another instrumentation, or by its id
            if (
                len(held_scopes) > 1
                or sig.scope not in held_scopes
                or (sig.response_id is not None and sig.response_id in held_by)
            ):
                self._unhold_twin(trace_id, sig, held_by)  # the same call, held undecided in another trace
        # An id to match, or another instrumentation seen.
        if (sig.response_id is not None or _another_scope(self._recent_scopes, sig.scope)) and (
            self._counted_elsewhere(trace_id, sig)
        ):
            return "duplicate_llm_span"
        call = self._attributor.attribute(usage, step)
        if not self._ledger.add_call(call, end_ns / _NS_PER_S):
            return "too_old"
        if not held:
            requests.add(trace_id, call, duration_ns, sig, usage.cascade_stage)
        self._remember(trace_id, sig)
        return call

    def _settle_waiting(self, call: _Waiting, step: str, *, held: bool = False) -> Call | str:
        """:meth:`_settle` for a call that waited (its fields named: a star-call of the
        tuple costs the compiled build a generic call)."""
        return self._settle(call.trace_id, call.usage, call.duration_ns, call.end_ns, call.sig, step, held)

    def _wait(self, parent_id: int, calls: list[_Waiting]) -> str | None:
        """Let ``calls`` wait for ``parent_id`` to end; when the wait is full, count them
        at once, unattributed."""
        if self._waiting_n + len(calls) > MAX_WAITING_CALLS:
            for waiting in calls:
                self._overflow(STEP_WAIT)
                result = self._settle_waiting(waiting, UNATTRIBUTED)
                if isinstance(result, str):
                    self._drop(result)
            return None
        self._waiting_n += len(calls)
        found = self._waiting.get(parent_id)
        if found is None:
            self._waiting[parent_id] = calls  # the caller's list, handed over
        else:
            found.extend(calls)
        return WAITING

    def _decide(  # noqa: PLR0917 - the ended span's fields, as record() has them
        self,
        waiting: list[_Waiting],
        parent_id: int | None,
        name: str,
        attrs: Mapping[str, Any] | None,
        step: str | None,
        wall_ns: int,
        purpose: str | None,
    ) -> None:
        """An ancestor of ``waiting`` has ended: its step is theirs, else they wait on."""
        self._waiting_n -= len(waiting)
        decided = ancestor_step(self._rules, name, attrs, step)
        if decided is None:
            if parent_id is not None:
                self._wait(parent_id, waiting)
            else:
                self._hold(waiting[0].trace_id, wall_ns, waiting, purpose)
            return
        for call in waiting:
            result = self._settle_waiting(call, decided)
            if isinstance(result, str):
                self._drop(result)

    def _hold(self, trace_id: int, wall_ns: int, calls: list[_Waiting], purpose: str | None) -> None:
        """Hold calls undecided when their local root ended (see the module docstring)."""
        entry = self._held.get(trace_id)
        if entry is None:
            self._held[trace_id] = (wall_ns, list(calls), purpose or REQUEST_PATH)
        else:
            entry[1].extend(calls)
        self._held_n += len(calls)
        due = self._held_due
        heapq.heappush(due, (calls[-1].end_ns, trace_id))
        if len(due) > 2 * MAX_HELD_CALLS:  # mostly entries of traces released early: rebuilt
            due[:] = [(entry[1][-1].end_ns, held_id) for held_id, entry in self._held.items()]
            heapq.heapify(due)
        if self._held_by is not None:
            self._index_calls(self._held_by, trace_id, calls)
        while self._held_n > MAX_HELD_CALLS:
            oldest = next(iter(self._held))
            # Released early, a call loses only the step a twin from another instrumentation
            # would give it: an overflow once another has been seen, nothing before (an app
            # with one instrumentation and no step() above 500 calls a second).
            if _another_scope(self._recent_scopes, self._held[oldest][1][0].sig.scope):
                self._overflow(STEP_WAIT)
            self._release(oldest)

    def _release(self, trace_id: int) -> None:
        """Count a held trace's calls as unattributed and close its request."""
        wall_ns, calls, purpose = self._held.pop(trace_id)
        self._held_n -= len(calls)
        held_by = self._held_by
        if held_by is not None:
            for waiting in calls:
                self._forget_held(held_by, trace_id, waiting.sig)
        end_ns = 0
        counted: list[tuple[Call, int]] = []
        # The root kept the request open for these calls, if it had others.
        joined = self._requests.is_open(trace_id)
        # Two spans of one call, both held: the calls before each, by response id and by
        # input tokens (the only ones it can be: :func:`same_call`).
        earlier: dict[object, list[Signature]] | None = None
        if not joined and len(calls) > 1:
            first = calls[0].sig.scope  # one instrumentation's spans are one call only by ids
            if any(w.sig.response_id is not None or w.sig.scope != first for w in calls):
                earlier = {}
        for waiting in calls:
            if earlier is not None:
                sig = waiting.sig
                keys = (sig.input_tokens,) if sig.response_id is None else (sig.response_id, sig.input_tokens)
                twin = any(same_call(seen, sig) for key in keys for seen in earlier.get(key, ()))
                for key in keys:
                    earlier.setdefault(key, []).append(sig)
                if twin:
                    self._drop("duplicate_llm_span")
                    continue
            try:
                result = self._settle_waiting(waiting, UNATTRIBUTED, held=not joined)
            except Exception:
                if self._fail is None:
                    raise
                self._fail()
                continue
            if isinstance(result, str):
                self._drop(result)
            else:
                counted.append((result, waiting.duration_ns))
            end_ns = max(end_ns, waiting.end_ns)
        requests = self._requests
        if joined:
            sample = requests.close(trace_id, wall_ns, purpose)
        else:
            sample = requests.ended(counted, wall_ns, purpose)
        if sample is not None:
            self._ledger.add_request(sample, end_ns / _NS_PER_S)

    def _index_held(self) -> dict[object, list[int]]:
        """Build :attr:`_held_by` from the calls held now."""
        held_by: dict[object, list[int]] = {}
        self._held_by = held_by
        self._held_scopes = {}
        for trace_id, (_, calls, _) in self._held.items():
            self._index_calls(held_by, trace_id, calls)
        return held_by

    def _index_calls(self, held_by: dict[object, list[int]], trace_id: int, calls: list[_Waiting]) -> None:
        scopes = self._held_scopes
        for call in calls:
            sig = call.sig
            scopes[sig.scope] = scopes.get(sig.scope, 0) + 1
            for key in _held_keys(sig):
                if key is not None:
                    traces = held_by.get(key)
                    if traces is None:
                        held_by[key] = [trace_id]
                    else:
                        traces.append(trace_id)

    def _forget_held(self, held_by: dict[object, list[int]], trace_id: int, sig: Signature) -> None:
        """Take a held call of ``trace_id`` out of :attr:`_held_by`."""
        scopes = self._held_scopes
        left = scopes[sig.scope] - 1
        if left:
            scopes[sig.scope] = left
        else:
            del scopes[sig.scope]
        for key in _held_keys(sig):
            traces = held_by.get(key) if key is not None else None
            if traces is not None:
                traces.remove(trace_id)
                if not traces:
                    del held_by[key]

    def _unhold_twin(self, trace_id: int, sig: Signature, held_by: dict[object, list[int]]) -> None:
        """Forget a held call of another trace that is the call ``sig`` (counted now): by
        :func:`same_call`, one with its response id, or one of another instrumentation with
        its input tokens."""
        candidates: list[int] = []
        if sig.response_id is not None:
            candidates += held_by.get(sig.response_id, ())
        tokens, own = sig.input_tokens, sig.scope
        for scope in self._held_scopes:
            if scope != own:
                candidates += held_by.get((tokens, scope), ())
        if not candidates:
            return
        held = self._held
        for held_trace in dict.fromkeys(candidates):  # each trace once
            if held_trace == trace_id:
                continue
            calls = held[held_trace][1]
            for i, call in enumerate(calls):
                if same_call(call.sig, sig):
                    del calls[i]
                    self._forget_held(held_by, held_trace, call.sig)
                    self._held_n -= 1
                    self._drop("duplicate_llm_span")
                    if not calls:
                        del held[held_trace]
                    return

    def _remember(self, trace_id: int, sig: Signature, *, noted: bool = False) -> None:
        """Note a counted call: by its response id, and by (input tokens, scope) once a second
        instrumentation is seen (``noted``: a call noted already, indexed now)."""
        if not noted:
            scopes = self._recent_scopes
            if sig.scope not in scopes:
                if len(scopes) >= _MAX_RECENT_SCOPES:
                    scopes.clear()
                scopes.add(sig.scope)
            response_id = sig.response_id
            if response_id is not None:
                self._recent_ids.put(response_id, trace_id)
            unindexed = self._unindexed
            if unindexed is not None:
                unindexed.append(sig)
                self._unindexed_traces.append(trace_id)
                return
        recent = self._recent
        key = (sig.input_tokens, sig.scope)
        seen = recent.get(key)
        if seen is None:
            recent.put(key, [(trace_id, sig)])
        else:
            if len(seen) >= _MAX_RECENT_PER_SIZE:
                del seen[0]
            seen.append((trace_id, sig))

    def _counted_elsewhere(self, trace_id: int, sig: Signature) -> bool:
        """Whether a call counted in another trace is the call ``sig`` (see
        :func:`~otel_overspend.accounting.requests.same_call`): only another instrumentation's span,
        or one with the same response id, can be."""
        response_id = sig.response_id
        if response_id is not None:
            other = self._recent_ids.get(response_id)
            if other is not None:
                return other != trace_id
        scopes = self._recent_scopes
        if len(scopes) < 2 and (not scopes or sig.scope in scopes):
            return False  # no call of another instrumentation counted: nothing to match
        unindexed = self._unindexed
        if unindexed is not None:  # a second instrumentation: the calls before it, indexed
            self._unindexed = None
            for counted_trace, counted in zip(self._unindexed_traces, unindexed, strict=True):
                self._remember(counted_trace, counted, noted=True)
            self._unindexed_traces.clear()
        recent, tokens, own = self._recent, sig.input_tokens, sig.scope
        for scope in scopes:
            if scope != own:
                for other, old in recent.get((tokens, scope)) or ():
                    if other != trace_id and twin_of(old, sig, self._absorbed):
                        return True
        return False

    def expire(self, before_ns: int) -> None:
        """Count, unattributed, the calls that have waited for an ancestor since before
        ``before_ns`` (an ancestor that never ends: a long-lived span, a lost one)."""
        for parent_id, calls in list(self._waiting.items()):
            if calls[0].end_ns < before_ns:
                del self._waiting[parent_id]
                self._waiting_n -= len(calls)
                for call in calls:
                    self._overflow(STEP_WAIT)
                    result = self._settle_waiting(call, UNATTRIBUTED)
                    if isinstance(result, str):
                        self._drop(result)

    @property
    def undecided(self) -> int:
        """Calls ended but not counted yet: waiting for an ancestor, or held for a twin."""
        return self._waiting_n + self._held_n

    def flush(self, before_ns: int | None = None) -> None:
        """Count the held calls of each trace whose last one ended before ``before_ns``, in
        the order they ended (all: ``None``, in the order they were held)."""
        held = self._held
        due = self._held_due
        if before_ns is None:
            while held:
                self._release(next(iter(held)))
            due.clear()
            return
        while due and due[0][0] < before_ns:
            last_ns, trace_id = heapq.heappop(due)
            entry = held.get(trace_id)
            if entry is not None and entry[1][-1].end_ns == last_ns:  # else released, or held on
                self._release(trace_id)

    def peek(self, *, name: str, attrs: Mapping[str, Any] | None, step: str | None) -> Call | None:
        """The call a span would be counted as, without recording it (``None``: no LLM call)."""
        usage = read_usage(attrs) if attrs else None
        if usage is None or isinstance(usage, str) or not usage.reported:
            return None
        return self._attributor.attribute(
            usage, own_step(usage, step, self._rules, name, attrs) or UNATTRIBUTED
        )


def _another_scope(scopes: set[str], scope: str) -> bool:
    """Whether counted calls came from an instrumentation other than ``scope``: only then
    can a call have a twin span, from that other one."""
    return len(scopes) > 1 or (bool(scopes) and scope not in scopes)


def _held_keys(sig: Signature) -> tuple[object, tuple[int, str]]:
    """A held call's keys in :attr:`Recorder._held_by` (its response id may be ``None``)."""
    return sig.response_id, (sig.input_tokens, sig.scope)


def mark(marks: dict[int, bool | None], span_id: int, *, weak: bool = False) -> None:
    """Note that an LLM call was seen below ``span_id`` (``weak``: only one without usage;
    a weak mark never replaces a strong one). Bounded: the oldest marks go first."""
    if len(marks) >= MAX_MARKED_SPANS:
        make_room(marks, MAX_MARKED_SPANS)
    if weak:
        marks.setdefault(span_id, WEAK)
    else:
        marks[span_id] = STRONG


def own_step(
    usage: Usage, step: str | None, rules: StepRules, name: str, attrs: Mapping[str, Any] | None
) -> str | None:
    """An LLM span's step from itself: its own ``overspend.step`` attribute, else the step
    decided at its start, else a framework's name on its final attributes, else a rule on
    them; ``None`` when none names one (its ancestors may)."""
    explicit = usage.step
    if explicit is not None and is_step_name(explicit):
        return explicit
    if step is not None:
        return step
    return rules.at_end(name, attrs)


def usage_step(
    usage: Usage, step: str | None, rules: StepRules, name: str, attrs: Mapping[str, Any] | None
) -> str:
    """:func:`own_step`, else ``unattributed``."""
    return own_step(usage, step, rules, name, attrs) or UNATTRIBUTED


def ancestor_step(
    rules: StepRules, name: str, attrs: Mapping[str, Any] | None, step: str | None
) -> str | None:
    """The step an ended span gives the calls below it that had none: its own
    ``overspend.step`` attribute, else the step it started in, else a framework's name on
    its final attributes, else a rule on them."""
    explicit = attrs.get(BAGGAGE_KEY) if attrs else None
    if explicit is not None and is_step_name(explicit):
        return explicit
    if step is not None:
        return step
    return rules.at_end(name, attrs)
