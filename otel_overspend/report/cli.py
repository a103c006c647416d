"""``otel-overspend report PATH...``: the offline diagnosis of trace files, as a command.

Exit codes: 0 done; 1 the specialist-eligible fraction is above ``--fail-above`` (or there
was no priced spend to check); 2 the input is not what was asked for: a usage error (bad
option, missing path, invalid config, an aggregate of another format or version), no span
read from the files, or, with ``--strict``, input skipped as unreadable (the report is
printed first); 3 a ``--jobs`` worker process failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

from otel_overspend.calls.catalog import SPECIALIZE_TARGETS

if TYPE_CHECKING:
    from otel_overspend.config.settings import Settings
    from otel_overspend.report.aggregate import Aggregate
    from otel_overspend.report.run import Report

__all__ = ("add_arguments", "run")

_FORMATS: Final = ("table", "json", "csv", "markdown")
_PROG: Final = "otel-overspend report"


def _specialize(text: str) -> tuple[str, str]:
    from otel_overspend.steps import validate_step_name  # noqa: PLC0415

    step, sep, tier = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"use STEP=TIER (e.g. rerank=mini), got {text!r}")
    try:
        validate_step_name(step.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if tier.strip() not in SPECIALIZE_TARGETS:
        raise argparse.ArgumentTypeError(f"tier must be one of {', '.join(SPECIALIZE_TARGETS)}, got {tier!r}")
    return step.strip(), tier.strip()


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text!r}")
    return int(text)


def _window_s(text: str) -> float:
    """Seconds: a whole number, or a duration as Prometheus writes it (``90s``, ``5m``, ``1h``)."""
    from otel_overspend.base.durations import duration_ms  # noqa: PLC0415

    if text.isdigit():
        return float(text)
    try:
        return duration_ms(text) / 1_000
    except ValueError:
        raise argparse.ArgumentTypeError(f"use seconds or a duration such as 5m, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="trace files or directories: the collector file exporter's OTLP JSON lines (plain, gzip "
        "or zstd) or length-prefixed OTLP protobuf; rotated files are read oldest first",
    )
    parser.add_argument("--format", choices=_FORMATS, default="table", help="output format (default: table)")
    parser.add_argument(
        "--by", choices=("day", "week"), help="add a time series of the fraction and step shares"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="FILE",
        help="draw the fraction over time and the step shares: FILE.png (needs matplotlib) or FILE.html",
    )
    parser.add_argument(
        "--specialize",
        type=_specialize,
        action="append",
        default=[],
        metavar="STEP=TIER",
        help="what-if: run STEP at TIER in the counterfactual (repeatable; overrides the settings' map)",
    )
    parser.add_argument(
        "--fail-above",
        type=_fraction,
        metavar="FRACTION",
        help="exit 1 when the specialist-eligible fraction is above FRACTION (a CI gate, e.g. 0.3)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="settings from this TOML file, read in place of OVERSPEND_CONFIG's: OVERSPEND_* variables "
        "beat it",
    )
    parser.add_argument(
        "--progress",
        action="store_true",
        help="show progress on stderr (default: only when it is a terminal)",
    )
    parser.add_argument(
        "--show-problems",
        type=_positive_int,
        default=5,
        metavar="N",
        help="print the first N problems of each kind with their file and line (default: 5); "
        "the rest are counted",
    )
    parser.add_argument(
        "--max-held-spans",
        type=_positive_int,
        default=200_000,
        metavar="N",
        help="spans held while putting them in end order (default: 200000); beyond, the waiting "
        "spans are recorded at once, else the trace that ended first is closed early (counted)",
    )
    parser.add_argument(
        "--max-open-traces",
        type=_positive_int,
        default=50_000,
        metavar="N",
        help="traces held open at once (default: 50000); beyond, the trace that ended first is "
        "closed early (counted)",
    )
    parser.add_argument(
        "--reorder-window",
        type=_window_s,
        metavar="DURATION",
        help="how far the reading may be past a trace's last span end before the trace is closed: "
        "its spans may come this much out of order (default: the settings' request time-out, 300s)",
    )
    parser.add_argument(
        "--jobs",
        type=_positive_int,
        metavar="N",
        help="processes to read the files in, split by trace (default: this machine's cores; 1: this "
        "process only); the report is the same whatever N (see docs/offline-report.md)",
    )
    parser.add_argument(
        "--aggregate-out",
        type=Path,
        metavar="FILE",
        help="also write the aggregate the report is computed from (a versioned JSON document) to FILE, "
        "to merge it later with --from-aggregate",
    )
    parser.add_argument(
        "--from-aggregate",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="add the aggregates in these files (written by --aggregate-out, on this machine or others) "
        "to the report: with no PATH, the report is built from them alone (PATHs go before it)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 when anything was skipped as unreadable (a file, line, record or span)",
    )


def _settings(args: argparse.Namespace) -> Settings:
    """Settings as the processor reads them, with ``--config`` in place of ``OVERSPEND_CONFIG``:
    ``--specialize``, then ``OVERSPEND_*`` variables, then the file."""
    from otel_overspend.config.settings import Settings  # noqa: PLC0415 - loads pydantic

    if args.config is not None and not args.config.is_file():
        raise OSError(f"--config: no such file {str(args.config)!r}")
    settings = Settings.with_config_file(args.config)
    if args.specialize:
        specialize = {**settings.specialize, **dict(args.specialize)}
        settings = Settings.with_config_file(args.config, specialize=specialize)
    return settings


class _Progress:
    """Bytes and spans read so far, on stderr, at most a few times a second."""

    def __init__(self, total_bytes: int, stream: IO[str]) -> None:
        from otel_overspend.report.render import plural  # noqa: PLC0415

        self._plural = plural
        self._total = max(total_bytes, 1)
        self._stream = stream
        self._tty = stream.isatty()
        self._started = time.monotonic()
        self._last = float("-inf")
        self._every_s = 0.25 if self._tty else 2.0
        self._spans = 0

    def __call__(self, done_bytes: int, spans: int) -> None:
        self._spans = spans
        now = time.monotonic()
        if now - self._last < self._every_s:
            return
        self._last = now
        rate = spans / max(now - self._started, 1e-9)
        line = (
            f"reading: {100 * done_bytes / self._total:5.1f}% of {self._total / 1e6:,.1f} MB, "
            f"{self._plural(spans, 'span')}, {rate:,.0f} spans/s"
        )
        self._stream.write(f"\r{line}\x1b[K" if self._tty else f"{line}\n")
        self._stream.flush()

    def done(self) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self._spans / elapsed
        line = f"read {self._plural(self._spans, 'span')} in {elapsed:.1f} s ({rate:,.0f} spans/s)"
        self._stream.write(f"\r{line}\x1b[K\n" if self._tty else f"{line}\n")
        self._stream.flush()


def _usage_error(message: str) -> int:
    print(f"{_PROG}: {message}", file=sys.stderr)
    return 2


def _aggregate(args: argparse.Namespace, settings: Settings) -> tuple[Aggregate, list[Path]] | int:
    """The aggregate of the trace files and the aggregates named, and the files; or the exit code."""
    from otel_overspend.report.aggregate import AggregateError, merge, read_aggregate, settings_digest  # noqa: PLC0415
    from otel_overspend.report.files import Problems, find_files  # noqa: PLC0415
    from otel_overspend.report.jobs import JobsError, default_jobs  # noqa: PLC0415
    from otel_overspend.report.run import Limits, aggregate_files  # noqa: PLC0415

    try:
        aggregates = [read_aggregate(path) for path in args.from_aggregate]
    except AggregateError as exc:
        return _usage_error(f"--from-aggregate: {exc}")
    files: list[Path] = []
    if args.paths:
        try:
            files = list(find_files(args.paths))
        except FileNotFoundError as exc:
            return _usage_error(str(exc))
        if not files:
            return _usage_error("no files found under " + ", ".join(str(p) for p in args.paths))
        progress = None
        if args.progress or sys.stderr.isatty():
            progress = _Progress(sum(_size(f) for f in files), sys.stderr)
        try:
            read = aggregate_files(
                files,
                settings=settings,
                problems=Problems(stream=sys.stderr, shown=args.show_problems),
                progress=progress,
                limits=Limits(
                    max_spans=args.max_held_spans,
                    max_traces=args.max_open_traces,
                    window_s=args.reorder_window,
                ),
                jobs=args.jobs if args.jobs is not None else default_jobs(),
            )
        except JobsError as exc:
            print(f"{_PROG}: --jobs: {exc}", file=sys.stderr)
            return 3
        if progress is not None:
            progress.done()
        aggregates.insert(0, read)
    try:
        agg = merge(aggregates)
    except AggregateError as exc:
        return _usage_error(f"--from-aggregate: {exc}")
    if args.from_aggregate and agg.settings_digest and agg.settings_digest != settings_digest(settings):
        print(
            f"{_PROG}: note: the aggregates were counted under other settings (prices, tiers, steps or "
            "the what-if map) than these: their calls and dollars stand as counted",
            file=sys.stderr,
        )
    if args.aggregate_out is not None:
        try:
            agg.write(args.aggregate_out)
        except OSError as exc:
            return _usage_error(f"--aggregate-out {args.aggregate_out}: {exc.strerror or exc}")
    return agg, files


def run(args: argparse.Namespace) -> int:
    """Run the report for parsed ``args``; return the exit code."""
    from otel_overspend.config.settings import ConfigError, ConfigFileError  # noqa: PLC0415
    from otel_overspend.report.plot import PLOT_SUFFIXES, PlotError, write_plot  # noqa: PLC0415
    from otel_overspend.report.render import render  # noqa: PLC0415
    from otel_overspend.report.run import report_from_aggregate  # noqa: PLC0415

    if args.plot is not None and args.plot.suffix.lower() not in PLOT_SUFFIXES:
        return _usage_error(f"--plot {args.plot}: use a file ending in {', '.join(PLOT_SUFFIXES)}")
    try:
        settings = _settings(args)
    except (OSError, ConfigError) as exc:  # a message that names the setting, its value and the form
        kind = (
            "cannot read the settings" if isinstance(exc, (OSError, ConfigFileError)) else "invalid settings"
        )
        return _usage_error(f"{kind}: {exc}")
    if not args.paths and not args.from_aggregate:
        return _usage_error("give trace files (PATH ...), aggregates (--from-aggregate FILE ...) or both")
    read = _aggregate(args, settings)
    if isinstance(read, int):
        return read
    agg, files = read
    period = args.by if args.by is not None or args.plot is None else "day"
    report = report_from_aggregate(agg, settings=settings, period=period)
    if report.inputs.spans == 0:
        return _no_spans([*files, *args.from_aggregate], report)
    if args.by is None and args.plot is not None:
        plotted = report
        report = _without_periods(report)
    else:
        plotted = report
    sys.stdout.write(render(report, args.format))
    sys.stdout.flush()
    if args.plot is not None:
        try:
            write_plot(plotted, args.plot)
        except PlotError as exc:
            return _usage_error(str(exc))
        except OSError as exc:
            return _usage_error(f"--plot {args.plot}: {exc.strerror or exc}")
    if args.strict and report.inputs.skipped:
        return _usage_error(f"--strict: {_skipped_text(report)} (see above)")
    return _gate(report, args.fail_above)


#: What the report reads, for the message when it read no span.
_EXPECTED: Final = (
    "OpenTelemetry traces: OTLP/JSON (the collector's file exporter, one export a line; or Jaeger's or "
    "Tempo's trace API answers) or length-prefixed OTLP protobuf, plain, gzip or zstd"
)
_NAMED_FILES: Final = 5


def _no_spans(files: list[Path], report: Report) -> int:
    """No span read at all: an error that names the files and what was expected."""
    from otel_overspend.report.render import plural  # noqa: PLC0415

    named = ", ".join(str(f) for f in files[:_NAMED_FILES])
    if len(files) > _NAMED_FILES:
        named += f" and {plural(len(files) - _NAMED_FILES, 'more file')}"
    inputs, one = report.inputs, len(files) == 1
    if inputs.skipped:
        found = _skipped_text(report)
    elif inputs.records == 0:
        found = "it is empty" if one else "they are empty"
    else:
        found = f"{'it holds' if one else 'they hold'} {plural(inputs.records, 'record')} without spans"
    return _usage_error(f"no spans read from {named}: {found}; expected {_EXPECTED}")


def _skipped_text(report: Report) -> str:
    from otel_overspend.report.render import skipped_text  # noqa: PLC0415

    return skipped_text(report.inputs)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _without_periods(report: Report) -> Report:
    from dataclasses import replace  # noqa: PLC0415

    return replace(report, periods=(), period=None)


def _gate(report: Report, fail_above: float | None) -> int:
    if fail_above is None:
        return 0
    fraction = report.diagnosis.specialist_eligible_fraction
    if fraction is None:
        print(
            f"{_PROG}: --fail-above {fail_above:g}: no priced LLM spend in these traces, nothing to check",
            file=sys.stderr,
        )
        return 1
    if fraction > fail_above:
        print(
            f"{_PROG}: specialist-eligible fraction {fraction:.3f} is above {fail_above:g}",
            file=sys.stderr,
        )
        return 1
    return 0
