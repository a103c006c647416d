"""The least a step-attributing span processor can do per span, in two designs.

Neither is usable: each only notes the step a span starts in and tells, as it ends,
whether it is an LLM call; nothing is priced, queued, bounded or checked. They are the
floors that ``bench_instructions.py floor`` counts ``OverspendProcessor`` against.

- :class:`TableFloor` is the design ``OverspendProcessor`` follows: the step is kept in a
  table by span id from ``on_start`` and taken out in ``on_end``, the two hooks every SDK
  since 1.0 calls.
- :class:`HeldFloor` keeps the step on the SDK's own span object and reads it back in
  ``_on_ending``, the one hook that still sees that object: a private hook the SDK calls
  only since 1.40 (``on_end`` gets a new ``ReadableSpan``), and an attribute of ours
  written onto the SDK's span.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from otel_overspend.conventions import LLM_MARKER_KEYS
from otel_overspend.steps import CURRENT_STEP

if TYPE_CHECKING:
    from opentelemetry.context import Context

__all__ = ("HELD_SUPPORTED", "HeldFloor", "TableFloor")

_current_frame = CURRENT_STEP.get
_no_usage_keys = LLM_MARKER_KEYS.isdisjoint
#: Whether this SDK calls ``_on_ending`` with the live span (1.40 and later).
HELD_SUPPORTED = "_on_ending" in vars(SpanProcessor)


class TableFloor(SpanProcessor):
    def __init__(self) -> None:
        self._steps: dict[int, str] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:  # noqa: ARG002
        frame = _current_frame()
        if frame is not None:
            self._steps[span._context[1]] = frame.name  # type: ignore[index]  # noqa: SLF001

    def on_end(self, span: ReadableSpan) -> None:
        step = self._steps.pop(span._context[1], None)  # type: ignore[index]  # noqa: SLF001
        if _no_usage_keys(span._attributes._dict) or step is None:  # type: ignore[union-attr]  # noqa: SLF001
            return


class HeldFloor(SpanProcessor):
    def __init__(self) -> None:
        self.on_end = id  # type: ignore[method-assign,assignment]  # a C call that does nothing

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:  # noqa: ARG002
        frame = _current_frame()
        span._floor_step = None if frame is None else frame.name  # type: ignore[attr-defined]  # noqa: SLF001

    def _on_ending(self, span: Span) -> None:
        step = span._floor_step  # type: ignore[attr-defined]  # noqa: SLF001
        if _no_usage_keys(span._attributes._dict) or step is None:  # type: ignore[union-attr]  # noqa: SLF001
            return
