"""The same counters and gauges through an OpenTelemetry ``MeterProvider`` (OTLP push).

Off by default (``OVERSPEND_OTLP_METRICS=true`` turns it on). With no provider given, an
OTLP exporter configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables pushes every
``OTEL_METRIC_EXPORT_INTERVAL`` milliseconds. Instruments are observable: their callbacks
read one ledger snapshot per collection, so the span path does no extra work.

Every family ``/metrics`` serves is pushed, with the same labels: the per-series counters
and the signals under their own names (``overspend.llm.calls``, ...), every other family
read from the Prometheus collector under its name with the first ``_`` made a ``.``
(``overspend_spans_dropped_total`` -> ``overspend.spans_dropped``). The API has no
asynchronous histogram: a histogram comes as three counters, ``<name>.bucket`` (with its
``le``), ``<name>.sum`` and ``<name>.count``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Final

from opentelemetry.metrics import CallbackOptions, Observation

from otel_overspend.accounting.gauges import SCALARS, diagnoses
from otel_overspend.accounting.ledger import CALLS, COST, COST_WITHOUT_COUNTERFACTUAL, SPECIALIZED, UNPRICED
from otel_overspend.base.forks import reset_in_forked_child
from otel_overspend.exporters.prometheus import TOKEN_KINDS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from opentelemetry.metrics import Meter, MeterProvider
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from prometheus_client.metrics_core import Metric

    from otel_overspend.accounting.ledger import Snapshot
    from otel_overspend.accounting.signals import Diagnosis
    from otel_overspend.thresholds import Band

__all__ = ("OtelMetrics", "default_meter_provider")

_SAME_COLLECTION_S: Final = 1.0
#: The collector's families pushed under names of their own (the rest are bridged).
OWN_NAMES: Final = frozenset(
    {
        "overspend_llm_calls",
        "overspend_llm_cost_usd",
        "overspend_llm_specialized_cost_usd",
        "overspend_llm_cost_without_counterfactual_usd",
        "overspend_unpriced_llm_calls",
        "overspend_llm_tokens",
        "overspend_step_cost_share",
        "overspend_signal_level",
        *(name for name, _, _ in SCALARS),
    }
)


def otlp_protocol() -> str:
    """The OTLP protocol for metrics, as the SDK's environment variables name it:
    ``OTEL_EXPORTER_OTLP_METRICS_PROTOCOL``, else ``OTEL_EXPORTER_OTLP_PROTOCOL``, else
    ``grpc``."""
    for variable in ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = os.environ.get(variable, "").strip().lower()
        if value:
            return value
    return "grpc"


def default_meter_provider() -> SdkMeterProvider:
    """A provider that pushes over OTLP, configured from ``OTEL_EXPORTER_OTLP_*``: over HTTP
    when the protocol is ``http/protobuf``, else over gRPC."""
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider  # noqa: PLC0415
    from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader  # noqa: PLC0415

    exporter: MetricExporter
    if otlp_protocol() == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: PLC0415
            OTLPMetricExporter as HttpExporter,
        )

        exporter = HttpExporter()
    else:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # noqa: PLC0415
            OTLPMetricExporter as GrpcExporter,
        )

        exporter = GrpcExporter()
    # Not at exit on its own: the processor that made it shuts it down, and the tracer
    # provider shuts the processor down at exit.
    return SdkMeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter)], shutdown_on_exit=False)


class OtelMetrics:
    """Registers observable instruments on ``meter_provider`` that read ``snapshot``."""

    def __init__(
        self,
        *,
        meter_provider: MeterProvider,
        snapshot: Callable[[], Snapshot],
        window_labels: Mapping[int, str],
        unattributed: str,
        bands: Mapping[str, Band],
        families: Callable[[], Iterable[Metric]] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._families = families
        self._cached_families: tuple[float, list[Metric]] | None = None
        self._labels = window_labels
        self._unattributed = unattributed
        self._bands = bands
        self._lock = threading.Lock()
        self._cached: tuple[float, Snapshot, list[tuple[str, Diagnosis]]] | None = None
        self._closed = False
        reset_in_forked_child(self, OtelMetrics._after_fork)
        meter = meter_provider.get_meter("otel_overspend")
        meter.create_observable_counter(
            "overspend.llm.calls", [self._open(self._series(CALLS))], unit="{call}", description="LLM calls"
        )
        meter.create_observable_counter(
            "overspend.llm.cost",
            [self._open(self._series(COST))],
            unit="USD",
            description="LLM spend (priced calls)",
        )
        meter.create_observable_counter(
            "overspend.llm.specialized_cost",
            [self._open(self._series(SPECIALIZED))],
            unit="USD",
            description="Spend with every step at its specialization-map tier",
        )
        meter.create_observable_counter(
            "overspend.llm.cost_without_counterfactual",
            [self._open(self._series(COST_WITHOUT_COUNTERFACTUAL))],
            unit="USD",
            description="Spend priced only by a cost on the span: no counterfactual",
        )
        meter.create_observable_counter(
            "overspend.llm.unpriced_calls",
            [self._open(self._series(UNPRICED))],
            unit="{call}",
            description="Unpriced calls",
        )
        meter.create_observable_counter(
            "overspend.llm.tokens",
            [self._open(self._tokens)],
            unit="{token}",
            description="LLM tokens by kind",
        )
        for name, doc, read in SCALARS:
            meter.create_observable_gauge(
                name.replace("_", ".", 1), [self._open(self._scalar(read))], description=doc
            )
        meter.create_observable_gauge(
            "overspend.step_cost_share",
            [self._open(self._step_shares)],
            description="Spend of each step / all spend",
        )
        meter.create_observable_gauge(
            "overspend.signal_level",
            [self._open(self._levels)],
            description="0 healthy, 1 suspect, 2 confirmed",
        )
        if families is not None:
            self._bridge(meter, families())

    def _bridge(self, meter: Meter, known: Iterable[Metric]) -> None:
        """Instruments for every collector family not pushed under a name of its own."""
        for family in known:
            if family.name in OWN_NAMES:
                continue
            name = family.name.replace("_", ".", 1)
            if family.type == "counter":
                meter.create_observable_counter(
                    name,
                    [self._open(self._family(family.name, f"{family.name}_total"))],
                    description=family.documentation,
                )
            elif family.type == "histogram":
                for part in ("bucket", "sum", "count"):
                    meter.create_observable_counter(
                        f"{name}.{part}",
                        [self._open(self._family(family.name, f"{family.name}_{part}"))],
                        description=f"{family.documentation} ({part})",
                    )
            else:
                meter.create_observable_gauge(
                    name,
                    [self._open(self._family(family.name, family.name))],
                    description=family.documentation,
                )

    def close(self) -> None:
        """Observe nothing more: the instruments stay on the meter provider (OpenTelemetry
        has no way to take them off), and report no series from then on."""
        self._closed = True

    def _open(
        self, observe: Callable[[CallbackOptions], Iterable[Observation]]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        """``observe`` until :meth:`close`, then nothing."""

        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return () if self._closed else observe(options)

        return callback

    def _collected(self) -> list[Metric]:
        # All callbacks of one collection share one collect().
        families = self._families
        if families is None:
            return []
        with self._lock:
            now = time.monotonic()
            if self._cached_families is None or now - self._cached_families[0] > _SAME_COLLECTION_S:
                self._cached_families = (now, list(families()))
            return self._cached_families[1]

    def _family(
        self, family_name: str, sample_name: str
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            del options
            for family in self._collected():
                if family.name == family_name:
                    for sample in family.samples:
                        if sample.name == sample_name:
                            yield Observation(sample.value, dict(sample.labels))

        return observe

    def _after_fork(self) -> None:
        # The parent's collecting thread may have held the lock; the cached snapshot holds
        # the parent's counts, which the child does not repeat.
        self._lock = threading.Lock()
        self._cached = None
        self._cached_families = None

    def _current(self) -> tuple[Snapshot, list[tuple[str, Diagnosis]]]:
        # All callbacks of one collection share one snapshot.
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > _SAME_COLLECTION_S:
                snap = self._snapshot()
                per_window = diagnoses(
                    snap, labels=self._labels, unattributed=self._unattributed, bands=self._bands
                )
                self._cached = (now, snap, per_window)
            return self._cached[1], self._cached[2]

    def _series(self, index: int) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            del options
            snap, _ = self._current()
            for (step, model, tier, provider), stats in snap.totals.items():
                attrs = {"step": step, "model": model, "tier": tier, "provider": provider}
                yield Observation(stats[index], attrs)

        return observe

    def _tokens(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        snap, _ = self._current()
        for (step, model, tier, provider), stats in snap.totals.items():
            for kind, index in TOKEN_KINDS:
                attrs = {"step": step, "model": model, "tier": tier, "provider": provider, "kind": kind}
                yield Observation(stats[index], attrs)

    def _scalar(
        self, read: Callable[[Diagnosis], float | None]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            del options
            _, per_window = self._current()
            for window, d in per_window:
                value = read(d)
                if value is not None:
                    yield Observation(value, {"window": window})

        return observe

    def _step_shares(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        _, per_window = self._current()
        for window, d in per_window:
            for step, share in d.step_shares.items():
                yield Observation(share, {"window": window, "step": step})

    def _levels(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        _, per_window = self._current()
        for window, d in per_window:
            for signal, level in d.levels.items():
                yield Observation(int(level), {"window": window, "signal": signal})
