"""Recording one finished span: the logic the live processor and the offline report share.

For each span, in end order: read its usage; if it is an LLM call, name its step, price
it, add it to the ledger and to its request; when a local root ends, close its request.

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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol

from otel_overspend.bounded import make_room
from otel_overspend.conventions import read_usage
from otel_overspend.requests import new_signature
from otel_overspend.steps import UNATTRIBUTED, is_step_name

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from otel_overspend.attribution import Attributor, Call
    from otel_overspend.conventions import Usage
    from otel_overspend.ledger import RequestSample
    from otel_overspend.requests import OpenRequests
    from otel_overspend.step_rules import StepRules

__all__ = ("MAX_MARKED_SPANS", "WITHOUT_USAGE", "Recorder", "Sink", "mark")

#: Spans with an LLM call counted below them that have not ended yet; oldest forgotten beyond.
MAX_MARKED_SPANS: Final = 100_000
_NS_PER_S: Final = 1e9
#: What :meth:`Recorder.count` answers for an LLM call whose span reports nothing billed:
#: counted as such (``overspend_llm_calls_without_usage_total``), neither a call nor a drop.
WITHOUT_USAGE: Final = "llm_call_without_usage"
#: The marks a span's children leave: an LLM call (or its drop) was counted below it...
STRONG: Final = None
#: ...or only an LLM call without usage was (a span above it with usage is then the one
#: that counts; one without usage is the same call again).
WEAK: Final = True


def _ignore(*_: str) -> None:
    pass


class Sink(Protocol):
    """Where recorded calls and requests go: the live :class:`~otel_overspend.ledger.Ledger`,
    or the offline report's per-period aggregate."""

    def add_call(self, call: Call, end_time_s: float) -> bool: ...

    def add_request(self, sample: RequestSample, end_time_s: float) -> None: ...


class Recorder:
    __slots__ = (
        "_attributor",
        "_drop",
        "_ledger",
        "_marked",
        "_note",
        "_requests",
        "_rules",
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
        self._marked: dict[int, bool | None] = {}

    def reset(self) -> None:
        self._marked = {}

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
        *,
        failed: bool = False,
    ) -> Call | str | None:
        """Record one ended span, spans in end order; ``parent_id`` is ``None`` for a local root;
        ``failed`` for a span whose status is an error.

        Returns the counted call; for an LLM span that was not counted, the reason (a
        duplicate, malformed usage, too old); ``None`` for a span that is no LLM call.
        """
        found = self._marked.pop(span_id, False)
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
            below=below,
            weak=found is WEAK,
            failed=failed,
        )
        if parent_id is not None:
            if below or (result is not None and result is not WITHOUT_USAGE):
                mark(self._marked, parent_id)
            elif found is WEAK or result is WITHOUT_USAGE:
                mark(self._marked, parent_id, weak=True)
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
        *,
        below: bool,
        weak: bool = False,
        failed: bool = False,
    ) -> Call | str | None:
        """:meth:`record` for a caller that keeps the marks itself: ``below`` tells whether an
        LLM span below this one was already seen (then this one is a duplicate), ``weak``
        whether only an LLM call without usage was (then this one counts if it has usage)."""
        usage = read_usage(attrs, scope) if attrs is not None else None
        result: Call | str | None = None
        if usage is not None:
            if isinstance(usage, str):
                result = usage
            elif below:
                result = "duplicate_llm_span"
            elif not usage.reported:
                # A failed call billed nothing; with a weak mark, the call below was
                # counted as this one already.
                if not (weak or failed):
                    call = self._attributor.attribute(
                        usage, usage_step(usage, step, self._rules, name, attrs)
                    )
                    self._ledger.add_call(call._replace(billed=False), end_ns / _NS_PER_S)
                    self._without_usage(call.step, call.model)
                    result = WITHOUT_USAGE
            else:
                for note in usage.notes:
                    if note == "invalid_span_cost":
                        self._drop(note)
                    else:
                        self._note(note)
                explicit = usage.step
                # The span's own step is the one decided already (the report, stamp_spans):
                # nothing to check again.
                if step is None or (explicit is not None and explicit != step):
                    step = usage_step(usage, step, self._rules, name, attrs)
                sig = new_signature(
                    (scope, usage.response_id, usage.input_tokens, usage.output_tokens, start_ns, end_ns)
                )
                requests = self._requests
                if requests.is_duplicate(trace_id, sig):  # sibling spans of one call
                    result = "duplicate_llm_span"
                else:
                    call = self._attributor.attribute(usage, step)
                    if self._ledger.add_call(call, end_ns / _NS_PER_S):
                        requests.add(trace_id, call, end_ns - start_ns, sig)
                        result = call
                    else:
                        result = "too_old"
            if isinstance(result, str) and result is not WITHOUT_USAGE:
                self._drop(result)
        if parent_id is None:
            sample = self._requests.close(trace_id, end_ns - start_ns)
            if sample is not None:
                self._ledger.add_request(sample, end_ns / _NS_PER_S)
        return result

    def peek(self, *, name: str, attrs: Mapping[str, Any] | None, step: str | None) -> Call | None:
        """The call a span would be counted as, without recording it (``None``: no LLM call)."""
        usage = read_usage(attrs) if attrs else None
        if usage is None or isinstance(usage, str) or not usage.reported:
            return None
        return self._attributor.attribute(usage, usage_step(usage, step, self._rules, name, attrs))


def mark(marks: dict[int, bool | None], span_id: int, *, weak: bool = False) -> None:
    """Note that an LLM call was seen below ``span_id`` (``weak``: only one without usage;
    a weak mark never replaces a strong one). Bounded: the oldest marks go first."""
    if len(marks) >= MAX_MARKED_SPANS:
        make_room(marks, MAX_MARKED_SPANS)
    if weak:
        marks.setdefault(span_id, WEAK)
    else:
        marks[span_id] = STRONG


def usage_step(
    usage: Usage, step: str | None, rules: StepRules, name: str, attrs: Mapping[str, Any] | None
) -> str:
    """An LLM span's step: its own ``overspend.step`` attribute, else the step decided at
    its start, else a rule on its final name and attributes, else ``unattributed``."""
    explicit = usage.step
    if explicit is not None and is_step_name(explicit):
        return explicit
    if step is not None:
        return step
    return rules.match(name, attrs) or UNATTRIBUTED
