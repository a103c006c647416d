"""``OverspendProcessor``: the one line an instrumented app adds.

It is the counting processor of :mod:`otel_overspend.hooks.processor` with its ways out
attached, as a metric reader is attached to a meter provider: the Prometheus collector
registered in a registry, the ``/metrics`` endpoint, and OTLP metrics when asked for. Each
exporter reads the processor's snapshot; :meth:`OverspendProcessor.shutdown` undoes what the
constructor registered.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
import weakref
from functools import partial
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY

from otel_overspend.accounting import observations as _observations
from otel_overspend.accounting.gauges import GaugeRenderer
from otel_overspend.accounting.pattern_gauges import PatternRenderer
from otel_overspend.base.forks import reset_in_forked_child, serve_in_worker, worker_port
from otel_overspend.exporters.http import Endpoint, MetricsServer
from otel_overspend.exporters.otlp import OtelMetrics, default_meter_provider
from otel_overspend.exporters.prometheus import OverspendCollector, render_registry
from otel_overspend.hooks.processor import CountingProcessor

if TYPE_CHECKING:
    from collections.abc import Callable

    from opentelemetry.metrics import MeterProvider
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

    from otel_overspend.accounting.ledger import Snapshot
    from otel_overspend.accounting.patterns import PatternFigures, Verdict
    from otel_overspend.accounting.signals import Diagnosis
    from otel_overspend.config.settings import Settings

__all__ = ("OverspendProcessor",)


class OverspendProcessor(CountingProcessor):
    """Attributes every LLM span's tokens and dollars to a step, a model and a tier.

    With no arguments it reads :class:`~otel_overspend.config.settings.Settings` from
    ``OVERSPEND_*`` environment variables (and ``OVERSPEND_CONFIG``), registers its metrics
    in prometheus_client's default registry and serves them on ``127.0.0.1:9464``.
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        registry: CollectorRegistry | None = None,
        serve_metrics: bool | None = None,
        meter_provider: MeterProvider | None = None,
        clock: Callable[[], float] = time.time,
        sdk_fields: bool = True,
        count_in_background: bool = True,
    ) -> None:
        """The keyword arguments after ``clock`` are :class:`CountingProcessor`'s."""
        super().__init__(
            settings=settings, clock=clock, sdk_fields=sdk_fields, count_in_background=count_in_background
        )
        settings = self.settings
        self._gauges = GaugeRenderer(
            labels=settings.window_labels, unattributed=settings.unattributed, bands=self.bands
        )
        #: Step time and oracle checks (see :mod:`otel_overspend.accounting.observations`).
        self.observations = _observations.Observations(
            window_seconds=settings.window_seconds, clock=clock, perf_clock=clock
        )
        self._patterns = PatternRenderer(
            thresholds=settings.pattern_thresholds,
            specialist_steps=tuple(settings.specialist_steps),
            observe=self.observations.snapshot,
            clock=clock,
        )
        #: The Prometheus collector: the counters and the gauges, read from :meth:`status`.
        self.collector = OverspendCollector(snapshot=self.status, extra=self._families)
        self.registry = registry if registry is not None else REGISTRY
        self.metrics_server: MetricsServer | None = None
        self._server_lock = threading.Lock()
        self._shut_down = False
        self.otel_metrics: OtelMetrics | None = None
        self._own_meter_provider: SdkMeterProvider | None = None
        # A constructor that fails part way (a registry already taken, TLS files that do not
        # load) undoes what it had started, the counting thread included, before it raises.
        try:
            self._attach(meter_provider, serve_metrics)
        except BaseException:
            self.shutdown()
            raise
        reset_in_forked_child(self, OverspendProcessor._forget_inherited_server)
        reset_in_forked_child(self.observations, _observations.Observations.reset)
        serve_in_worker(self, OverspendProcessor._serve_in_worker)

    def _attach(self, meter_provider: MeterProvider | None, serve_metrics: bool | None) -> None:
        """What :meth:`shutdown` undoes: the step timer, the collector in the registry, OTLP
        metrics and the ``/metrics`` endpoint, as the settings ask."""
        settings = self.settings
        _observations.install(self.observations)
        self._requests.on_cascade = self.observations.cascade
        self.on_oracle = self._oracle_span
        try:
            self.registry.register(self.collector)
        except ValueError as exc:
            msg = (
                "otel_overspend metrics are already registered in this registry: create one "
                "OverspendProcessor per process (shut the other down first), or pass "
                "registry=CollectorRegistry()"
            )
            raise ValueError(msg) from exc
        if meter_provider is None and settings.otlp_metrics:
            # Made here, so shut down here: its last push goes out with shutdown(), or at
            # exit if nothing shut this processor down.
            meter_provider = self._own_meter_provider = default_meter_provider()
            atexit.register(_push_last_at_exit, weakref.ref(self))
        if meter_provider is not None:
            self.otel_metrics = OtelMetrics(
                meter_provider=meter_provider,
                snapshot=self.snapshot,
                window_labels=settings.window_labels,
                unattributed=settings.unattributed,
                bands=self.bands,
                families=self.collector.collect,
            )
        #: Whether this processor serves ``/metrics`` (in a forked child: once told where).
        self.serves_metrics = settings.serve_metrics if serve_metrics is None else serve_metrics
        if self.serves_metrics:
            self.start_metrics_server()

    def _push_last(self) -> None:
        """Shut down the meter provider this processor made, if any: its last push."""
        own, self._own_meter_provider = self._own_meter_provider, None
        if own is not None:
            own.shutdown()

    def _oracle_span(self, step: str, agreed: bool) -> None:
        self.observations.oracle_check(step, agreed=agreed)

    def _families(self, snap: Snapshot) -> list[Metric]:
        per_window = self._gauges.diagnoses(snap)
        return [*self._gauges.render(per_window), *self._patterns(snap, per_window)]

    def patterns(self) -> list[tuple[str, PatternFigures, Verdict]]:
        """(window label, figures, probable pattern) for each window, shortest first (see
        :mod:`otel_overspend.accounting.patterns`)."""
        snap = self.snapshot()
        return self._patterns.verdicts(snap, self._gauges.diagnoses(snap))

    def diagnoses(self) -> list[tuple[str, Diagnosis]]:
        """(window label, :class:`~otel_overspend.accounting.signals.Diagnosis`) for each
        window, shortest first."""
        return self._gauges.diagnoses(self.snapshot())

    def start_metrics_server(self, *, port: int | None = None) -> MetricsServer | None:
        """Serve ``/metrics`` on the configured endpoint, replacing the server this processor runs.

        ``port`` overrides the configured port and its range (a forked worker's own port: see
        :mod:`otel_overspend.integrations.gunicorn`). A busy port logs one warning and returns
        ``None``; a TLS file that cannot be loaded raises :class:`ValueError`.
        """
        endpoint = Endpoint.from_settings(self.settings, port=port)
        with self._server_lock:
            old, self.metrics_server = self.metrics_server, None
            if old is not None:
                old.stop()
            self.metrics_server = MetricsServer.start(
                endpoint,
                registry=self.registry,
                render=partial(render_registry, self.registry, self.collector),
            )
            return self.metrics_server

    def shutdown(self) -> None:
        """Count what is left, stop the background thread and the server, and take the
        metrics out of the registry (a new processor may then register there)."""
        super().shutdown()
        with self._server_lock:
            server, self.metrics_server = self.metrics_server, None
            self._shut_down = True
        metrics, self.otel_metrics = self.otel_metrics, None
        try:
            _observations.uninstall(self.observations)
            if server is not None:
                server.stop()
            self._push_last()  # while the instruments still read the counts
            if metrics is not None:
                metrics.close()  # an app's own meter provider reads nothing more from it
            with contextlib.suppress(KeyError):  # not registered, or unregistered by the app
                self.registry.unregister(self.collector)
        except Exception:
            self._fail("shutdown")

    def _forget_inherited_server(self) -> None:
        # The server's thread did not survive the fork and its port is the parent's: a
        # worker serves its own /metrics once told where (see serve_in_worker).
        try:
            self._server_lock = threading.Lock()
            server, self.metrics_server = self.metrics_server, None
            if server is not None:
                server.close_inherited()
        except Exception:
            self._fail("after_fork")

    def _serve_in_worker(self, slot: int) -> int | None:
        """In a forked worker with slot ``slot`` (1, 2, ...): serve ``/metrics`` on the
        configured port + ``slot`` (an ephemeral port when it is 0). Returns that port;
        ``None`` once shut down (a processor an app replaced takes no worker's port)."""
        with self._server_lock:
            if self._shut_down:
                return None
        port = worker_port(self.settings.metrics_port, slot)
        if self.serves_metrics:
            self.start_metrics_server(port=port)
        return port


def _push_last_at_exit(ref: weakref.ref[OverspendProcessor]) -> None:
    """At exit: the last push of a processor that no ``shutdown()`` reached (an app that
    never shuts its tracer provider down)."""
    processor = ref()
    if processor is not None:
        processor._push_last()  # noqa: SLF001 - its own class
