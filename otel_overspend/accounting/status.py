"""What a processor counted outside the ledger: drops by reason, label overflows, evictions
of open requests, and usage it had to infer."""

from __future__ import annotations

__all__ = ("Status",)


class Status:
    """Counts that live outside the ledger: drops, label overflows, evictions."""

    def __init__(
        self,
        *,
        dropped: dict[str, int],
        label_overflow: dict[str, int],
        requests_evicted: dict[str, int],
        usage_inferred: dict[str, int] | None = None,
        span_reading: str = "sdk_fields",
    ) -> None:
        self.dropped = dropped
        self.label_overflow = label_overflow
        self.requests_evicted = requests_evicted
        self.usage_inferred = usage_inferred or {}
        #: How the span hooks read spans: ``sdk_fields`` or ``public_api``.
        self.span_reading = span_reading
