"""The span hooks and the counting behind them, with no way out for the counts.

:class:`~otel_overspend.processor.OverspendProcessor` adds the exporters; code that reads
the counts itself (a test, an embedding) can use :class:`CountingProcessor` alone.

``on_start`` decides the span's step (the innermost ``step()`` in context, else W3C
baggage, else the parent span's step, else a rule on the span's name and attributes) and
holds it: on the SDK's own spans through their fields (:mod:`otel_overspend.hooks.sdk`),
on any other span in a bounded table of open spans. ``on_end`` queues the record of a span
with an LLM call in or below it (its fields, read at its end: the span itself is not kept),
to be priced and recorded off the app's thread. Neither hook
ever raises into the app: failures are counted by reason and logged once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from otel_overspend.accounting import recorder as recorder_module
from otel_overspend.accounting.observations import ORACLE_AGREED_KEY, oracle_verdict
from otel_overspend.accounting.purposes import PURPOSE_KEY, resource_purpose, root_purpose
from otel_overspend.accounting.recorder import Recorder, mark
from otel_overspend.accounting.requests import OpenRequests
from otel_overspend.accounting.status import Status
from otel_overspend.base.forks import reset_in_forked_child
from otel_overspend.calls.attribution import Call as _CallType
from otel_overspend.calls.conventions import LLM_MARKER_KEYS, USAGE_KEYS, may_be_llm_call
from otel_overspend.config.components import Components
from otel_overspend.config.settings import Settings
from otel_overspend.hooks.baggage import baggage_value as _baggage_value
from otel_overspend.hooks.queue import SpanQueue
from otel_overspend.hooks.sdk import NOT_HELD, Ended, FastHooks, SdkSpans, ending, step_outside
from otel_overspend.hooks.sdk_probe import probe
from otel_overspend.steps import BAGGAGE_KEY, CURRENT_STEP, is_step_name

if TYPE_CHECKING:
    from collections.abc import Callable

    from opentelemetry import trace as trace_api
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Span

    from otel_overspend.accounting.ledger import Snapshot
    from otel_overspend.calls.attribution import Call
    from otel_overspend.thresholds import Band

__all__ = ("CountingProcessor",)

_log = logging.getLogger("otel_overspend")
_current_frame = CURRENT_STEP.get
_no_marker_keys = LLM_MARKER_KEYS.isdisjoint

#: Steps of open spans held in the table (spans the SDK's fields are not read on); beyond
#: it a span's step is not held, counted as the label overflow ``span_steps``.
MAX_OPEN_STEPS = 100_000
#: Attributions of ended LLM spans kept for an exporter wrapper; beyond it the oldest go.
MAX_ANNOTATIONS = 100_000
#: Resources whose purpose is remembered (a process has one per tracer provider).
MAX_RESOURCES = 16
_SERVER = SpanKind.SERVER


class CountingProcessor(SpanProcessor):
    """Decides each span's step at its start and counts each LLM call at its end.

    The counts are read through :meth:`snapshot` and :meth:`status`; nothing is exported.
    Ended LLM spans are counted by a background thread (see :mod:`otel_overspend.hooks.queue`).
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.time,
        sdk_fields: bool = True,
        count_in_background: bool = True,
    ) -> None:
        """``sdk_fields=False`` reads every span through the public API, as when the SDK
        installed does not keep the contract of :mod:`otel_overspend.hooks.sdk`.
        ``count_in_background=False`` starts no counting thread: ended LLM spans are
        counted when the counts are read (a scrape, :meth:`snapshot`, ``force_flush``)."""
        self.settings = settings if settings is not None else Settings()
        parts = Components.from_settings(self.settings, clock=clock)
        self._parts = parts
        self._rules = parts.rules
        self._ledger = parts.ledger
        self._clock = clock
        self._requests = OpenRequests(
            max_open=self.settings.max_open_requests,
            timeout_s=self.settings.request_timeout_seconds,
            clock=clock,
            reprice=parts.attributor.at_frontier_usd,
            eval_steps=self.settings.eval_steps,
        )
        self._eval_services = frozenset(self.settings.eval_services)
        #: id(resource) -> (the resource, the purpose it states): a process has one or two.
        self._resource_purposes: dict[int, tuple[object, str | None]] = {}
        #: Spans with an LLM call ended below them that have not ended yet.
        self._marks: dict[int, bool | None] = {}
        #: Told (step, agreed) of each counted LLM span carrying ``overspend.oracle.agreed``.
        self.on_oracle: Callable[[str, bool], None] | None = None
        self._annotations: dict[int, Call | str] | None = None
        self._recorder = Recorder(
            attributor=parts.attributor,
            rules=parts.rules,
            ledger=parts.ledger,
            requests=self._requests,
            drop=self._drop,
            note=self._note,
            overflow=self._count_overflow,
            fail=partial(self._fail, "count"),
        )
        self._queue: SpanQueue[Ended] = SpanQueue(self._count, background=count_in_background)
        self._items = self._queue.items  # read on every span: one attribute, not two
        self._dropped: dict[str, int] = {}
        self._inferred: dict[str, int] = {}
        self._overflowed: dict[str, int] = {}
        self._drop_lock = threading.Lock()
        self._logged: set[str] = set()
        #: Steps of open spans not read by their fields: span id -> step.
        self._steps: dict[int, str] = {}
        found = probe() if sdk_fields else "sdk_fields=False"
        self._sdk: SdkSpans | None = found if isinstance(found, SdkSpans) else None
        #: The step of a span started outside any step(): the baggage's, else its parent's
        #: (held on the parent or in the table, else its ``overspend.step`` attribute), else
        #: a rule's on the span's name and start attributes, else none (most spans of most apps).
        self._step_outside = step_outside(
            self._sdk, carried=self._carried_step, other_parent=self._parent_step, rules=self._rules
        )
        #: How spans are read: ``sdk_fields`` (the SDK's own spans by their fields, any
        #: other through the public API) or ``public_api`` (every span), and why.
        self.span_reading = ("sdk_fields", "") if self._sdk is not None else ("public_api", str(found))
        if self._sdk is not None:
            hooks = FastHooks(
                self._sdk,
                current_frame=_current_frame,
                outside=self._step_outside,
                start_other=self._start_other,
                end_other=self._end_other,
                marker_keys=LLM_MARKER_KEYS,
                no_usage_keys=USAGE_KEYS.isdisjoint,
                may_be_llm_call=may_be_llm_call,
                marks=self._marks,
                queue=self._queue,
                max_marks=recorder_module.MAX_MARKED_SPANS,  # read now: a test may lower it
                fail=self._fail,
                stamp=_stamp if self.settings.stamp_spans else None,
            )
            # Decided once here, not on every span.
            self.on_start = hooks.on_start  # type: ignore[method-assign]
            self.on_end = hooks.on_end  # type: ignore[method-assign]
        elif sdk_fields:
            _log.warning(
                "otel_overspend: reading spans through the public API (%s); each span costs "
                "a little more, and every count is the same",
                found,
            )
        # The SDK calls ``_on_ending`` on every processor as each span ends: the base
        # class's is a Python method that does nothing; this one does nothing for less.
        self._on_ending = ending  # type: ignore[method-assign]
        reset_in_forked_child(self, CountingProcessor._after_fork_in_child)

    @property
    def bands(self) -> dict[str, Band]:
        """The level bands in effect: ``thresholds.BANDS`` with the settings' overrides."""
        return self._parts.bands

    # -- span hooks (see FastHooks for the SDK's own spans) -----------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            self._start_other(span, parent_context)
        except Exception:
            self._fail("on_start")

    def on_end(self, span: ReadableSpan) -> None:
        try:
            self._end_other(span)
        except Exception:
            self._fail("on_end")

    def _start_other(self, span: Span, parent_context: Context | None) -> None:
        """``on_start`` through the public API: the step is held in the table of open spans
        (and, with ``stamp_spans``, written as the span's ``overspend.step`` attribute)."""
        frame = _current_frame()
        step = frame.name if frame is not None else self._step_outside(span, parent_context, None)
        if step is None:
            return
        steps = self._steps
        if len(steps) < MAX_OPEN_STEPS:
            steps[span.get_span_context().span_id] = step
        else:
            self._count_overflow("span_steps")
        if self.settings.stamp_spans:
            _stamp(span, step)

    def _end_other(self, span: ReadableSpan) -> None:
        """``on_end`` through the public API."""
        ctx = span.context
        if ctx is None:
            return
        attrs = span.attributes
        no_call = not attrs or _no_marker_keys(attrs) or not may_be_llm_call(attrs)
        if no_call and ctx.span_id not in self._marks:
            self._steps.pop(ctx.span_id, None)
            return
        record = self._ended_record(span)
        if record is None:
            return
        # The mark climbs to a local parent, which is then queued too when it ends.
        if record[2] is not None:
            mark(self._marks, record[2])
        items = self._items
        items.append(record)
        if len(items) >= self._queue.max_queued:
            self._queue.drain_chunk()  # the queue's thread is far behind: count a chunk here

    def _carried_step(self, context: Context) -> str | None:
        """The step W3C baggage carries in ``context``, if any (an invalid one is counted)."""
        raw = _baggage_value(BAGGAGE_KEY, context)
        return None if raw is None else self._valid_step(raw)

    def _parent_step(self, parent: object) -> str | None:
        """The step of a span's parent: held on it, or in the table, else written on it as
        its ``overspend.step`` attribute (``None`` for a remote parent)."""
        sdk = self._sdk
        if sdk is not None:
            if type(parent) is not sdk.live:
                # A proxy around the SDK's span (OpenInference's tracer makes the wrapt
                # ObjectProxy it returns current): the step is held on the span it wraps.
                wrapped = getattr(parent, "__wrapped__", None)
                if type(wrapped) is sdk.live:
                    parent = wrapped
            if type(parent) is sdk.live:
                held = sdk.parent_step(parent)  # type: ignore[arg-type]
                if held is not NOT_HELD:
                    return held  # type: ignore[return-value]
                return _written_step(parent)
        get_context = getattr(parent, "get_span_context", None)
        if self._steps and callable(get_context):
            held = self._steps.get(get_context().span_id)
            if held is not None:
                return held
        return _written_step(parent)

    def _valid_step(self, carried: object) -> str | None:
        """A step carried in baggage, if it is one (else counted as invalid)."""
        if is_step_name(carried):
            return carried
        self._drop("invalid_baggage_step")
        return None

    def step_of(self, span: ReadableSpan | trace_api.Span) -> str | None:
        """The step ``span`` started in, as this processor decided it (``None`` if none, or
        if the span started before this processor was added, or has been counted)."""
        ctx = span.context if isinstance(span, ReadableSpan) else span.get_span_context()
        return None if ctx is None else self._held_step(span, ctx.span_id, forget=False)

    def _held_step(self, span: object, span_id: int, *, forget: bool) -> str | None:
        """The step ``span`` started in: held on it, or in the table (``forget``: taken out)."""
        sdk = self._sdk
        if sdk is not None and (type(span) is sdk.ended or type(span) is sdk.live):
            return sdk.held_step(span)
        return self._steps.pop(span_id, None) if forget else self._steps.get(span_id)

    def _count(self, record: Ended) -> None:
        """Count one ended span with an LLM call in or below it, in the order they ended (in
        the queue's drain: never raises). The recorder decides, as the offline report's
        does, whether it is a call, a duplicate of one below it, or neither."""
        try:
            (
                trace_id,
                span_id,
                parent_id,
                name,
                attrs,
                start_ns,
                end_ns,
                step,
                scope,
                failed,
                resource,
                served,
            ) = record
            self._marks.pop(span_id, None)  # it only had this span queued
            if parent_id is None:  # a local root: it closes its request, made for a purpose
                purpose = self._purpose(resource, attrs, served)
                result = self._recorder.record(
                    trace_id, span_id, None, name, attrs, start_ns, end_ns, step, scope, failed, purpose
                )
            else:
                result = self._recorder.record(
                    trace_id, span_id, parent_id, name, attrs, start_ns, end_ns, step, scope, failed
                )
            if (
                self.on_oracle is not None
                and type(result) is _CallType
                and attrs
                and ORACLE_AGREED_KEY in attrs
            ):
                agreed = oracle_verdict(attrs)
                if agreed is not None:  # a shadow call to the step's teacher
                    self.on_oracle(result.step, agreed)
            if self._annotations is not None and result is not None:
                annotations = self._annotations
                if len(annotations) >= MAX_ANNOTATIONS:
                    annotations.pop(next(iter(annotations)), None)
                annotations[span_id] = result
        except Exception:
            self._fail("count")

    def _purpose(self, resource: object, attrs: Mapping[str, object] | None, served: bool) -> str:
        """The purpose of the request a local root closes (see ``accounting.purposes``);
        ``served``: the root is a server span or has a remote parent."""
        known = self._resource_purposes.get(id(resource))
        if known is None or known[0] is not resource:
            if len(self._resource_purposes) >= MAX_RESOURCES:
                self._resource_purposes.clear()
            declared = getattr(resource, "attributes", None)
            stated = resource_purpose(declared, self._eval_services, self._drop) if declared else None
            known = (resource, stated)
            self._resource_purposes[id(resource)] = known
        declared = attrs.get(PURPOSE_KEY) if attrs else None
        return root_purpose(declared, known[1], served, False, self._drop)  # noqa: FBT003 - served: server or remote

    def _ended_record(self, span: ReadableSpan) -> Ended | None:
        """The record of an ended span (``hooks.sdk.Ended``), read through the public API."""
        ctx = span.context
        if ctx is None:
            return None
        parent = span.parent
        end_ns = span.end_time or 0
        scope = span.instrumentation_scope
        status = span.status
        return (
            ctx.trace_id,
            ctx.span_id,
            None if parent is None or parent.is_remote else parent.span_id,  # a local root closes its request
            span.name,
            span.attributes,
            span.start_time or end_ns,
            end_ns,
            self._held_step(span, ctx.span_id, forget=True),
            "" if scope is None else scope.name,
            status is not None and status.status_code is StatusCode.ERROR,
            span.resource,
            span.kind is _SERVER or (parent is not None and parent.is_remote),
        )

    # -- attribution for exported spans (see otel_overspend.exporters.spans) -------------------------
    def keep_annotations(self) -> None:
        """Keep each ended LLM span's attribution until an exporter wrapper asks for it."""
        if self._annotations is None:
            self._annotations = {}

    def annotation(self, span: ReadableSpan) -> Call | None:
        """The attribution of an LLM span (``None`` if it was not counted, or is no LLM call)."""
        ctx = span.context
        if ctx is None:
            return None
        annotations = self._annotations
        found = None
        if annotations is not None:
            found = annotations.pop(ctx.span_id, None)
            if found is None and self._queue.items:
                self._queue.drain()
                found = annotations.pop(ctx.span_id, None)
        if found is None:
            # Exported before this processor saw it end (a processor registered earlier).
            if ctx.span_id in self._marks:
                return None
            return self._recorder.peek(
                name=span.name,
                attrs=span.attributes,
                step=self._held_step(span, ctx.span_id, forget=False),
            )
        return found if not isinstance(found, str) else None

    # -- failure accounting -------------------------------------------------------------------
    def _drop(self, reason: str) -> None:
        with self._drop_lock:
            self._dropped[reason] = self._dropped.get(reason, 0) + 1

    def _note(self, what: str) -> None:
        with self._drop_lock:
            self._inferred[what] = self._inferred.get(what, 0) + 1

    def _count_overflow(self, label: str) -> None:
        with self._drop_lock:
            self._overflowed[label] = self._overflowed.get(label, 0) + 1

    def _fail(self, hook: str) -> None:
        self._drop("internal_error")
        if hook not in self._logged:
            self._logged.add(hook)
            _log.exception("otel_overspend: %s failed; the span was not counted (logged once per hook)", hook)

    def _flush(self) -> None:
        """Count every ended span queued, and every call held for a twin from another trace
        (a scrape, a flush: what they see is never behind)."""
        self._queue.drain()
        self._queue.run_locked(self._recorder.flush)
        stale_ns = int((self._clock() - self.settings.request_timeout_seconds) * 1e9)
        self._queue.run_locked(partial(self._recorder.expire, stale_ns))

    # -- reading ---------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """A consistent copy of everything counted so far (expires stale open requests)."""
        self._flush()
        self._requests.expire()
        return self._ledger.snapshot()

    def status(self) -> tuple[Snapshot, Status]:
        """:meth:`snapshot`, with the counts kept outside the ledger (drops, overflows,
        evictions) and the sizes of what is open."""
        snap = self.snapshot()
        with self._drop_lock:
            dropped = dict(self._dropped)
            inferred = dict(self._inferred)
            overflowed = dict(self._overflowed)
        return snap, Status(
            dropped=dropped,
            usage_inferred=inferred,
            label_overflow={cap.name: cap.overflowed for cap in self._parts.caps}
            | overflowed
            | {"cascade_steps": self._requests.overflowed_cases},
            requests_evicted={
                "capacity": self._requests.evicted_capacity,
                "timeout": self._requests.evicted_timeout,
            },
            span_reading=self.span_reading[0],
            open_requests=len(self._requests),
            undecided_calls=self._recorder.undecided,
        )

    # -- lifecycle -----------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Count what is left and stop the background thread."""
        try:
            self._queue.stop()
            self._queue.run_locked(self._recorder.flush)
        except Exception:
            self._fail("shutdown")

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Count every ended span still queued."""
        del timeout_millis
        try:
            self._flush()
        except Exception:
            self._fail("force_flush")
            return False
        return True

    def _after_fork_in_child(self) -> None:
        # The child starts from zero: its parent keeps and reports its own counts. Locks are
        # new: another thread of the parent may have held one at the fork.
        try:
            self._ledger.reset()
            self._requests.reset()
            self._recorder.reset()
            self._marks.clear()  # the same dict: the hooks hold it
            self._steps.clear()
            for cap in self._parts.caps:
                cap.after_fork()
            self._parts.attributor.after_fork()
            if self._annotations is not None:
                self._annotations = {}
            self._drop_lock = threading.Lock()
            self._dropped = {}
            self._inferred = {}
            self._overflowed = {}
        except Exception:
            self._fail("after_fork")


def _stamp(span: Span, step: str) -> None:
    """Write the step as the span's ``overspend.step`` attribute (``stamp_spans``)."""
    set_attribute = getattr(span, "set_attribute", None)
    if callable(set_attribute):
        set_attribute(BAGGAGE_KEY, step)


def _written_step(parent: object) -> str | None:
    """The ``overspend.step`` attribute of a span this processor holds no step on (one not of
    the SDK's class, where ``_start_other`` wrote it, or another provider's), if it is a
    step name; ``None`` for a remote parent."""
    attrs = getattr(parent, "attributes", None)
    found = attrs.get(BAGGAGE_KEY) if isinstance(attrs, Mapping) else None
    return found if is_step_name(found) else None
