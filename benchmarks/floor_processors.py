"""The least a step-attributing span processor can do per span, in two designs.

Neither is usable: each only notes the step a span starts in and tells, as it ends,
whether it is an LLM call; nothing is priced, queued, bounded or checked. They are the
floors that ``bench_instructions.py floor`` counts ``OverspendProcessor`` against.

- :class:`AttributesFloor` is the design ``OverspendProcessor`` follows: the step is held
  on the span's ``BoundedAttributes`` object in ``on_start``, which the ``ReadableSpan``
  handed to ``on_end`` shares; a span with no LLM call never reads it back.
- :class:`TableFloor` keeps the step in a table by span id from ``on_start`` and takes it
  out in ``on_end`` (the design before it): a dict write, a pop and two hashes of the id
  a span.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from otel_overspend.calls.conventions import LLM_MARKER_KEYS
from otel_overspend.steps import CURRENT_STEP

if TYPE_CHECKING:
    from opentelemetry.context import Context

__all__ = ("AttributesFloor", "TableFloor")

_current_frame = CURRENT_STEP.get
_no_usage_keys = LLM_MARKER_KEYS.isdisjoint


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


class AttributesFloor(SpanProcessor):
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:  # noqa: ARG002
        frame = _current_frame()
        span._attributes._floor_step = None if frame is None else frame.name  # type: ignore[union-attr]  # noqa: SLF001

    def on_end(self, span: ReadableSpan) -> None:
        if _no_usage_keys(span._attributes._dict):  # type: ignore[union-attr]  # noqa: SLF001
            return
