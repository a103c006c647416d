"""What a processor counted outside the ledger: drops by reason, label overflows, evictions
of open requests, and usage it had to infer; and every value each of those can take, so
that each is exported from 0 rather than appearing with the first event."""

from __future__ import annotations

from typing import Final

__all__ = ("DROP_REASONS", "EVICTION_REASONS", "INFERRED_USAGE", "OVERFLOW_LABELS", "Status")

#: Every ``reason`` of ``overspend_spans_dropped_total`` (docs/metrics.md says what each means).
DROP_REASONS: Final = (
    "invalid_tokens",
    "invalid_model",
    "invalid_provider",
    "invalid_span_cost",
    "duplicate_llm_span",
    "too_old",
    "invalid_baggage_step",
    "invalid_purpose",
    "litellm_usage_overwritten",
    "internal_error",
)
#: Every ``what`` of ``overspend_usage_inferred_total``.
INFERRED_USAGE: Final = ("net_input_inferred", "net_output_inferred")
#: Every ``label`` of ``overspend_label_overflow_total``: the capped labels, then the tables
#: of calls waiting for a step, of open spans' steps and of cascade steps (its cases).
OVERFLOW_LABELS: Final = ("step", "model", "provider", "step_wait", "span_steps", "cascade_steps")
#: Every ``reason`` of ``overspend_open_requests_evicted_total``.
EVICTION_REASONS: Final = ("capacity", "timeout")


class Status:
    """Counts that live outside the ledger: drops, label overflows, evictions, and what is
    open (requests, calls not counted yet)."""

    def __init__(
        self,
        *,
        dropped: dict[str, int],
        label_overflow: dict[str, int],
        requests_evicted: dict[str, int],
        usage_inferred: dict[str, int] | None = None,
        span_reading: str = "sdk_fields",
        open_requests: int = 0,
        undecided_calls: int = 0,
    ) -> None:
        self.dropped = dropped
        self.label_overflow = label_overflow
        self.requests_evicted = requests_evicted
        self.usage_inferred = usage_inferred or {}
        #: How the span hooks read spans: ``sdk_fields`` or ``public_api``.
        self.span_reading = span_reading
        #: Requests with a counted LLM call whose local root span has not ended.
        self.open_requests = open_requests
        #: LLM calls ended but not counted yet: waiting for an ancestor to name their step,
        #: or held a moment for a twin span from another instrumentation.
        self.undecided_calls = undecided_calls
