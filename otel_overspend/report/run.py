"""The offline diagnosis: trace files in, the live processor's figures out.

Spans are read as a stream (:mod:`otel_overspend.report.files`), decoded
(:mod:`otel_overspend.report.otlp_json`, :mod:`otel_overspend.report.otlp_proto`), replayed through the
live processor's :class:`~otel_overspend.accounting.recorder.Recorder` with the attribution built
by :meth:`Components.from_settings` (:mod:`otel_overspend.report.replay`), summed per period with
the ledger's functions, and every figure comes from :func:`otel_overspend.accounting.signals.diagnose`.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from otel_overspend.accounting.observations import Observations
from otel_overspend.accounting.patterns import classify, figures
from otel_overspend.accounting.purposes import PURPOSE_KEY, resource_purpose, root_purpose
from otel_overspend.accounting.recorder import Recorder
from otel_overspend.accounting.requests import CascadeCases, OpenRequests
from otel_overspend.accounting.signals import diagnose
from otel_overspend.accounting.step_time import ADDED, BUCKETS, REQUEST
from otel_overspend.config.components import Components
from otel_overspend.report.aggregate import Aggregate, settings_digest
from otel_overspend.report.files import Problems, TraceFileError, read_records
from otel_overspend.report.otlp_json import SERVER, SPAN_KIND_KEY, Processes, attribute_keys, line_decoder
from otel_overspend.report.replay import DAY_S, WEEK_S, DataClock, PeriodSink, Replayer
from otel_overspend.report.sums import CascadeSink
from otel_overspend.thresholds import ALERTS, STEP_TIME_BUCKETS

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from otel_overspend.accounting.patterns import PatternFigures, Verdict
    from otel_overspend.accounting.signals import Diagnosis
    from otel_overspend.config.settings import Settings
    from otel_overspend.report.files import Record
    from otel_overspend.report.otlp_json import SpanRecord
    from otel_overspend.thresholds import Band

__all__ = (
    "PERIODS",
    "Advice",
    "InputSummary",
    "Limits",
    "PeriodDiagnosis",
    "Report",
    "aggregate_files",
    "build_report",
    "report_from_aggregate",
)

PERIODS: Final = {"day": DAY_S, "week": WEEK_S}
#: The fraction at which the shipped alert fires first: the report draws and states the same
#: line, so a report and the alerts never disagree on when to worry.
ALARM_FRACTION: Final = ALERTS["OverspendSpecialistEligibleFractionHigh"][0].value
#: Traces covering less than this are not scaled to a week: the figure would be noise.
MIN_WEEKLY_SCALE_S: Final = 3_600.0
#: The process index in a trace key (see ``otlp_json.SpanRecord``).
_PROCESS_MASK: Final = 0xFFFF


@dataclass(frozen=True, slots=True)
class Limits:
    """How much the replay holds while it puts spans in end order (see
    :mod:`otel_overspend.report.replay`): at most ``max_spans`` spans and ``max_traces`` open
    traces; a trace is closed once the reading is ``window_s`` past its latest span end
    (``None``: the settings' ``request_timeout_seconds``, which a request open longer
    would not survive live either)."""

    max_spans: int = 200_000
    max_traces: int = 50_000
    window_s: float | None = None


@dataclass(frozen=True, slots=True)
class PeriodDiagnosis:
    start_s: int
    end_s: int
    diagnosis: Diagnosis


@dataclass(frozen=True, slots=True)
class InputSummary:
    files: int = 0
    bytes_read: int = 0
    records: int = 0
    spans: int = 0
    traces: int = 0
    #: unit ("file", "line", "record", "span") -> reason -> how many were skipped.
    skipped: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    #: LLM spans read but not counted, by reason (as ``overspend_spans_dropped_total``).
    dropped: Mapping[str, int] = field(default_factory=dict)
    #: Traces replayed without their local root (their calls count, no request closes).
    incomplete_traces: Mapping[str, int] = field(default_factory=dict)
    #: Putting spans in end order: traces closed early to stay within the :class:`Limits`
    #: (``closed_early``), spans that came too late for their place (``out_of_order``).
    reorder: Mapping[str, int] = field(default_factory=dict)
    #: The most spans held at once while putting them in end order.
    held_spans_peak: int = 0
    requests_evicted: Mapping[str, int] = field(default_factory=dict)
    label_overflow: Mapping[str, int] = field(default_factory=dict)
    #: LLM calls whose span reported no usage and no cost, by "step model" (as
    #: ``overspend_llm_calls_without_usage_total``).
    calls_without_usage: Mapping[str, int] = field(default_factory=dict)
    #: Calls whose usage was read by the last-resort rule (as ``overspend_usage_inferred_total``).
    usage_inferred: Mapping[str, int] = field(default_factory=dict)


def week_scale(covered_s: float | None) -> float | None:
    """What multiplies a figure over ``covered_s`` seconds of traces to a figure per week
    (``None`` under :data:`MIN_WEEKLY_SCALE_S`: the figure would be noise)."""
    return WEEK_S / covered_s if covered_s is not None and covered_s >= MIN_WEEKLY_SCALE_S else None


@dataclass(frozen=True, slots=True)
class Advice:
    """What the recommendation reads: the last day of the traces when they cover more, so
    that a step moved to a specialist during them is not recommended again; else all."""

    diagnosis: Diagnosis
    #: Seconds of traces it covers.
    covered_s: float | None
    #: From the last :data:`~otel_overspend.report.replay.RECENT_HOURS` UTC hours of the traces.
    last_day: bool

    @property
    def savings_usd_per_week(self) -> float | None:
        """The next step's savings scaled to a week (``None`` under :data:`MIN_WEEKLY_SCALE_S`)."""
        savings, scale = self.diagnosis.next_step_savings_usd, week_scale(self.covered_s)
        return None if savings is None or scale is None else savings * scale


@dataclass(frozen=True, slots=True)
class Report:
    diagnosis: Diagnosis
    #: Test 3 per step: the projected reduction of that step's own spend.
    step_reductions: Mapping[str, float | None]
    periods: tuple[PeriodDiagnosis, ...]
    period: str | None
    first_s: float | None
    last_s: float | None
    inputs: InputSummary
    unattributed: str
    #: The health bands of the settings, by signal.
    bands: Mapping[str, Band]
    alarm_fraction: float = ALARM_FRACTION
    #: The last :data:`~otel_overspend.report.replay.RECENT_HOURS` UTC hours, when the traces
    #: cover more and it has priced spend, from ``recent_start_s`` on.
    recent: Diagnosis | None = None
    recent_start_s: float | None = None
    #: The look-alike patterns' figures and the probable pattern (over the last day when the
    #: traces cover more, against all of them as the baseline; else over all of them): a
    #: cascade's last day is the last 24 UTC hours of its requests' ends on the data's clock.
    pattern_figures: PatternFigures | None = None
    pattern: Verdict | None = None

    @property
    def fraction_band(self) -> Band:
        return self.bands["specialist_eligible_fraction"]

    @property
    def covered_s(self) -> float | None:
        """Seconds from the first span's start to the last span's end."""
        if self.first_s is None or self.last_s is None:
            return None
        return self.last_s - self.first_s

    @property
    def week_scale(self) -> float | None:
        """What multiplies a figure over the traces read to a figure per week."""
        return week_scale(self.covered_s)

    @property
    def advice(self) -> Advice:
        if self.recent is not None and self.recent_start_s is not None and self.last_s is not None:
            return Advice(self.recent, self.last_s - self.recent_start_s, last_day=True)
        return Advice(self.diagnosis, self.covered_s, last_day=False)

    @property
    def next_step_savings_usd_per_week(self) -> float | None:
        """The recommended step's savings a week (see :attr:`advice`)."""
        return self.advice.savings_usd_per_week


class _Run:
    """One report's state: the shared attribution, the sink, the replay and the tallies."""

    def __init__(self, settings: Settings, problems: Problems, limits: Limits) -> None:
        self.settings = settings
        self.problems = problems
        self.parts = parts = Components.from_settings(settings)
        self.sink = PeriodSink()
        self.dropped: dict[str, int] = {}
        self.inferred: dict[str, int] = {}
        self.without_usage: dict[str, int] = {}
        self.overflowed: dict[str, int] = {}
        self.clock = DataClock()
        self.requests = OpenRequests(
            max_open=settings.max_open_requests,
            timeout_s=settings.request_timeout_seconds,
            clock=self.clock,
            reprice=parts.attributor.at_frontier_usd,
            eval_steps=settings.eval_steps,
        )
        recorder = Recorder(
            attributor=parts.attributor,
            rules=parts.rules,
            ledger=self.sink,
            requests=self.requests,
            drop=self.drop,
            note=self.note,
            without_usage=self.count_without_usage,
            overflow=self.count_overflow,
        )
        #: Step time from the spans with a step, as the live processor has it from step(). The
        #: report reads the totals over all of the traces: no rolling window is kept.
        self.observations = Observations(window_seconds=(), clock=self.clock, perf_clock=self.clock)
        #: Cascade cases by the data's clock when their request closed (its latest span end).
        self.cascades = CascadeSink()
        self.requests.on_cascade = self.cascade
        self.requests.on_provisional = self.provisional_cascade
        self.replayer = Replayer(
            step_span=self.observations.step_done_unlocked,
            oracle=self.oracle_span,
            purpose=self.root_purpose,
            recorder=recorder,
            rules=parts.rules,
            requests=self.requests,
            clock=self.clock,
            max_spans=limits.max_spans,
            max_traces=limits.max_traces,
            window_s=settings.request_timeout_seconds if limits.window_s is None else limits.window_s,
            stamped=settings.stamp_spans,
        )
        self.keys = attribute_keys(settings)
        self.processes = Processes()
        #: Process index -> the purpose its resource states.
        self.process_purposes: dict[int, str | None] = {}
        self.eval_services = frozenset(settings.eval_services)
        self.decode_json = line_decoder(self.keys, self.processes)
        self.files = self.records = self.spans = self.bytes_read = 0

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def root_purpose(self, trace_key: int, attrs: Mapping[str, Any] | None, remote_parent: bool) -> str:
        """The purpose of the request a local root closes, as the live processor decides it."""
        process = trace_key & _PROCESS_MASK
        known = self.process_purposes
        if process in known:
            of_resource = known[process]
        else:
            attributes = self.processes.resource_attributes(process)
            of_resource = known[process] = resource_purpose(attributes, self.eval_services, self.drop)
        if not attrs:
            return root_purpose(None, of_resource, server=False, remote_parent=remote_parent)
        return root_purpose(
            attrs.get(PURPOSE_KEY),
            of_resource,
            server=attrs.get(SPAN_KIND_KEY) == SERVER,
            remote_parent=remote_parent,
            invalid=self.drop,
        )

    def cascade(self, cases: CascadeCases) -> None:
        self.cascades.add(cases, self.clock())

    def provisional_cascade(self, cases: CascadeCases) -> None:
        self.cascades.add(cases, self.clock(), provisional=True)

    def oracle_span(self, step: str, agreed: bool) -> None:
        self.observations.oracle_check(step, agreed=agreed)

    def count_overflow(self, label: str) -> None:
        self.overflowed[label] = self.overflowed.get(label, 0) + 1

    def note(self, what: str) -> None:
        self.inferred[what] = self.inferred.get(what, 0) + 1

    def count_without_usage(self, step: str, model: str) -> None:
        key = f"{step} {model or 'unknown'}"
        self.without_usage[key] = self.without_usage.get(key, 0) + 1

    def read_file(self, path: Path, progress: Callable[[int, int], None] | None) -> None:
        self.files += 1
        base = self.bytes_read

        def position(offset: int) -> None:
            self.bytes_read = base + offset
            if progress is not None:
                progress(self.bytes_read, self.spans)

        name = str(path)
        try:
            for record in read_records(path, position=position):
                self.records += 1
                decoded = self.decode(record, name)
                if decoded:
                    self.spans += len(decoded)
                    self.replayer.add(decoded)
        except TraceFileError as exc:
            self.problems.add(exc.reason, str(path), str(exc))
        except OSError as exc:
            self.problems.add("unreadable_file", str(path), exc.strerror or str(exc))

    def decode(self, record: Record, path: str) -> list[SpanRecord] | None:
        """The spans of one record of the file at ``path``, with what is wrong with it reported
        at its line (or record) there."""
        problems = self.problems

        def where() -> str:  # only for a problem: most records have none
            return f"{path}:{record.number}" if record.is_json else f"{path}: record {record.number}"

        def bad_span(detail: str) -> None:
            problems.add("invalid_span", where(), detail)

        if not record.is_json:
            from otel_overspend.report.otlp_proto import decode_proto  # noqa: PLC0415 - protobuf files only

            try:
                return decode_proto(
                    record.data, self.keys, self.processes, bad_span, start=record.start, end=record.stop
                )
            except Exception as exc:  # DecodeError, or a message of another type
                problems.add("invalid_record", where(), f"not an OTLP protobuf TracesData: {exc}")
                return None
        try:
            spans = self.decode_json(record.data, bad_span)
        except ValueError as exc:
            if record.unterminated:
                problems.add(
                    "truncated_line", where(), "the last line is cut short (no newline, not valid JSON)"
                )
            else:
                problems.add("invalid_json", where(), str(exc))
            return None
        if spans is None:
            problems.add("not_trace_data", where(), f"no resourceSpans in {record.data[:40]!r}")
        return spans

    def aggregate(self) -> Aggregate:
        """Finish the replay; the sums and counts of this run."""
        self.replayer.finish()
        self.observations.settle(everything=True)
        observed = self.observations.snapshot()
        stats, requests = self.replayer.stats, self.requests
        return Aggregate(
            sink=self.sink,
            settings_digest=settings_digest(self.settings),
            first_start_ns=stats.first_start_ns,
            last_end_ns=stats.last_end_ns,
            files=self.files,
            bytes_read=self.bytes_read,
            records=self.records,
            spans=stats.spans,
            traces=stats.traces,
            held_spans_peak=stats.held_peak,
            skipped=dict(self.problems.counts),
            dropped=dict(self.dropped),
            incomplete_traces=_nonzero(
                held_too_long=stats.incomplete_timeout,
                buffer_full=stats.incomplete_capacity,
                end_of_input=stats.incomplete_end_of_input,
            ),
            reorder=_nonzero(closed_early=stats.closed_early, out_of_order=stats.out_of_order),
            requests_evicted=_nonzero(capacity=requests.evicted_capacity, timeout=requests.evicted_timeout),
            label_overflow=_nonzero(
                **{cap.name: cap.overflowed for cap in self.parts.caps},
                **self.overflowed,
                cascade_steps=requests.overflowed_cases,
            ),
            calls_without_usage=dict(self.without_usage),
            usage_inferred=dict(self.inferred),
            window_ns=self.replayer.window_ns,
            end_of_input_last_ns=list(stats.end_of_input_last_ns),
            step_times={step: list(v) for step, v in observed.step_times.items()},
            oracle_checks={step: list(v) for step, v in observed.agreements.items()},
            last_oracle_checks=dict(observed.last_checks),
            cascades=self.cascades,
        )


def report_from_aggregate(
    agg: Aggregate, *, settings: Settings, period: str | None = None, bands: Mapping[str, Band] | None = None
) -> Report:
    """The report on the data ``agg`` sums, diagnosed with ``settings`` (``bands``: theirs,
    when already built). ``period`` ("day" or "week") adds a time series."""
    if bands is None:
        bands = Components.from_settings(settings).bands
    unattributed, sink = settings.unattributed, agg.sink
    calls, request_stats = sink.totals()
    total = diagnose(calls, request_stats, unattributed=unattributed, bands=bands)
    reductions = {
        line.step: diagnose(
            {key: stats for key, stats in calls.items() if key[0] == line.step},
            request_stats,
            unattributed=unattributed,
            bands=bands,
        ).projected_reduction
        for line in total.steps
    }
    width = PERIODS[period] if period is not None else 0
    periods = tuple(
        PeriodDiagnosis(start, start + width, diagnose(c, r, unattributed=unattributed, bands=bands))
        for start, c, r in (sink.periods(width) if period is not None else ())
    )
    recent, since = None, sink.recent_start_s
    if since is not None and agg.first_start_ns is not None and agg.first_start_ns / 1e9 < since:
        last_day = diagnose(*sink.recent(), unattributed=unattributed, bands=bands)
        recent = last_day if last_day.cost_usd > 0 else None
    current = sink.recent()[0] if recent is not None else calls
    cascades = agg.cascades.totals()
    pattern_figures = figures(
        recent if recent is not None else total,
        current,
        cascades=agg.cascades.last_day() if recent is not None else cascades,
        baseline_cascades=cascades,
        step_times={step: (tuple(v[BUCKETS:]), v[ADDED], v[REQUEST]) for step, v in agg.step_times.items()},
        step_time_bounds=STEP_TIME_BUCKETS,
        agreements={step: (v[0], v[1]) for step, v in agg.oracle_checks.items()},
        last_checks=agg.last_oracle_checks,
        now_s=0.0 if agg.last_end_ns is None else agg.last_end_ns / 1e9,
        specialist_steps=settings.specialist_steps,
    )
    return Report(
        pattern_figures=pattern_figures,
        pattern=classify(pattern_figures, settings.pattern_thresholds) if pattern_figures.has_data else None,
        diagnosis=total,
        step_reductions=reductions,
        periods=periods,
        period=period,
        first_s=None if agg.first_start_ns is None else agg.first_start_ns / 1e9,
        last_s=None if agg.last_end_ns is None else agg.last_end_ns / 1e9,
        inputs=_summary(agg),
        unattributed=unattributed,
        bands=bands,
        recent=recent,
        recent_start_s=None if recent is None or since is None else float(since),
    )


def _summary(agg: Aggregate) -> InputSummary:
    return InputSummary(
        files=agg.files,
        bytes_read=agg.bytes_read,
        records=agg.records,
        spans=agg.spans,
        traces=agg.traces,
        skipped=Problems(counts=dict(agg.skipped)).skipped(),
        dropped=dict(sorted(agg.dropped.items())),
        incomplete_traces=_ordered(agg.incomplete_traces, ("held_too_long", "buffer_full", "end_of_input")),
        reorder=_ordered(agg.reorder, ("closed_early", "out_of_order")),
        held_spans_peak=agg.held_spans_peak,
        requests_evicted=_ordered(agg.requests_evicted, ("capacity", "timeout")),
        label_overflow=_nonzero(**dict(sorted(agg.label_overflow.items()))),
        calls_without_usage=dict(sorted(agg.calls_without_usage.items())),
        usage_inferred=dict(sorted(agg.usage_inferred.items())),
    )


def _ordered(counts: Mapping[str, int], order: tuple[str, ...]) -> dict[str, int]:
    """The non-zero ``counts``, those named in ``order`` first, in that order."""
    first = {name: counts[name] for name in order if counts.get(name)}
    return {**first, **{name: n for name, n in sorted(counts.items()) if n and name not in first}}


def _nonzero(**counts: int) -> dict[str, int]:
    return {name: n for name, n in counts.items() if n}


def aggregate_files(
    files: Sequence[Path],
    *,
    settings: Settings,
    problems: Problems | None = None,
    progress: Callable[[int, int], None] | None = None,
    limits: Limits = Limits(),
    jobs: int = 1,
) -> Aggregate:
    """Read ``files`` and sum them (see :mod:`otel_overspend.report.aggregate`), in ``jobs``
    processes (see :mod:`otel_overspend.report.jobs`; 1: in this one). ``progress`` is told
    (bytes of the files read so far, spans decoded so far) now and then.

    The cyclic garbage collector is paused meanwhile: decoding allocates millions of
    short-lived containers that reference counting frees, and the collector's passes over
    them would otherwise take most of the time.
    """
    problems = problems if problems is not None else Problems()
    if jobs > 1:
        from otel_overspend.report.jobs import aggregate_in_jobs  # noqa: PLC0415

        shared = aggregate_in_jobs(
            files, settings=settings, problems=problems, progress=progress, limits=limits, jobs=jobs
        )
        if shared is not None:
            return shared
    collecting = gc.isenabled()
    gc.disable()
    try:
        run = _Run(settings, problems, limits)
        for path in files:
            run.read_file(path, progress)
        return run.aggregate()
    finally:
        if collecting:
            gc.enable()


def build_report(
    files: Sequence[Path],
    *,
    settings: Settings,
    period: str | None = None,
    problems: Problems | None = None,
    progress: Callable[[int, int], None] | None = None,
    limits: Limits = Limits(),
    jobs: int = 1,
) -> Report:
    """Read ``files`` and diagnose them (see :func:`aggregate_files`). ``period`` ("day" or
    "week") adds a time series."""
    agg = aggregate_files(
        files, settings=settings, problems=problems, progress=progress, limits=limits, jobs=jobs
    )
    return report_from_aggregate(agg, settings=settings, period=period)
