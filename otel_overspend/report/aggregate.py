"""The report's aggregate: every figure a report is made of, before the diagnosis.

A run over trace files sums calls, requests and cascade cases by UTC hour (the last 24
hours of the data) and by UTC day (before them), and counts what it read, skipped and
dropped. That is the aggregate: the report is computed from it, and aggregates of separate
parts of the data (the processes of ``--jobs``, or runs on several machines) add up to the
aggregate of all the data (:func:`merge`). Written to a file, it is a JSON document of the format
:data:`FORMAT`, version :data:`VERSION`, described in ``docs/offline-report.md``; a file of
another format or version is refused (:class:`AggregateError`).

Dollars and shares are whole numbers of 2**-128 units (see :mod:`otel_overspend.report.sums`),
so a merge is exact whatever its order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from otel_overspend.report.sums import (
    CALL_FIELDS,
    CASCADE_FIELDS,
    EXACT_CALL_FIELDS,
    EXACT_CASCADE_FIELDS,
    EXACT_REQUEST_FIELDS,
    REQUEST_FIELDS,
    SCALE_BITS,
    CascadeSink,
    PeriodSink,
    SumsState,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from pathlib import Path

    from otel_overspend.accounting.ledger import Key
    from otel_overspend.config.settings import Settings
    from otel_overspend.report.sums import Stats

__all__ = ("FORMAT", "VERSION", "Aggregate", "AggregateError", "merge", "read_aggregate", "settings_digest")

FORMAT: Final = "otel-overspend-aggregate"
#: 2: cascade cases by hour and day, provisional cases apart (1: one total per step).
VERSION: Final = 2
#: Settings that do not change what is counted: left out of :func:`settings_digest`.
_NOT_COUNTING: Final = ("serve_metrics", "metrics_", "otlp_", "windows")
#: The counters an aggregate adds up, by the name the format gives them.
_COUNTS: Final = ("files", "bytes_read", "records", "spans", "traces")
_TALLIES: Final = (
    "skipped",
    "dropped",
    "incomplete_traces",
    "reorder",
    "requests_evicted",
    "label_overflow",
    "calls_without_usage",
    "usage_inferred",
)


class AggregateError(ValueError):
    """An aggregate file that cannot be read or merged: the message says which and why."""


def settings_digest(settings: Settings) -> str:
    """A digest of the settings that decide what is counted and how it is priced (prices,
    tiers, steps, the what-if map, the bounds): aggregates counted under other settings
    are not added together."""
    dumped = settings.model_dump(mode="json")
    kept = {k: v for k, v in dumped.items() if not k.startswith(_NOT_COUNTING)}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _add(into: dict[str, int], other: Mapping[str, int]) -> None:
    for key, n in other.items():
        into[key] = into.get(key, 0) + n


def _add_vectors(into: dict[str, list[float]], other: Mapping[str, list[float]]) -> None:
    for key, vector in other.items():
        mine = into.get(key)
        into[key] = list(vector) if mine is None else [a + b for a, b in zip(mine, vector, strict=True)]


@dataclass(slots=True)
class Aggregate:
    """The sums and counts of one part of the data (see the module docstring)."""

    sink: PeriodSink = field(default_factory=PeriodSink)
    settings_digest: str = ""
    first_start_ns: int | None = None
    last_end_ns: int | None = None
    files: int = 0
    bytes_read: int = 0
    records: int = 0
    spans: int = 0
    traces: int = 0
    #: The most spans one process held at once (the largest of the parts merged).
    held_spans_peak: int = 0
    #: Reason -> how many were skipped as unreadable (see ``files.PROBLEM_UNITS``).
    skipped: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    incomplete_traces: dict[str, int] = field(default_factory=dict)
    reorder: dict[str, int] = field(default_factory=dict)
    requests_evicted: dict[str, int] = field(default_factory=dict)
    label_overflow: dict[str, int] = field(default_factory=dict)
    calls_without_usage: dict[str, int] = field(default_factory=dict)
    usage_inferred: dict[str, int] = field(default_factory=dict)
    #: The reorder window the traces were closed by, in nanoseconds.
    window_ns: int = 0
    #: The latest span end of each trace counted in ``incomplete_traces["end_of_input"]``:
    #: with data that comes after, a trace that the data passes by the window is one closed
    #: by the window (``held_too_long``), as one run over all of it would have closed it.
    end_of_input_last_ns: list[int] = field(default_factory=list)
    #: The look-alike patterns' observations (see :mod:`otel_overspend.accounting.observations`):
    #: per step, the step time's histogram and sums; the oracle checks and agreements; the
    #: latest check's time (span time, seconds).
    step_times: dict[str, list[float]] = field(default_factory=dict)
    oracle_checks: dict[str, list[float]] = field(default_factory=dict)
    last_oracle_checks: dict[str, float] = field(default_factory=dict)
    #: Per cascade step, by hour and day: cases, escalated cases, cost, cost with every case
    #: at the expensive stage; the provisional cases apart (see :class:`CascadeSink`).
    cascades: CascadeSink = field(default_factory=CascadeSink)

    def absorb(self, other: Aggregate) -> None:
        """Add ``other`` (another part of the data) to this one."""
        if self.settings_digest and other.settings_digest and self.settings_digest != other.settings_digest:
            raise AggregateError(
                "the aggregates were counted under different settings (prices, tiers, steps or the "
                f"what-if map): {self.settings_digest[:19]}... and {other.settings_digest[:19]}..."
            )
        self.settings_digest = self.settings_digest or other.settings_digest
        self.sink.absorb(*other.sink.state())
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in _TALLIES:
            _add(getattr(self, name), getattr(other, name))
        self.held_spans_peak = max(self.held_spans_peak, other.held_spans_peak)
        self.window_ns = max(self.window_ns, other.window_ns)
        self.end_of_input_last_ns = [*self.end_of_input_last_ns, *other.end_of_input_last_ns]
        _add_vectors(self.step_times, other.step_times)
        _add_vectors(self.oracle_checks, other.oracle_checks)
        self.cascades.absorb(*other.cascades.state())
        for step, at_s in other.last_oracle_checks.items():
            self.last_oracle_checks[step] = max(at_s, self.last_oracle_checks.get(step, at_s))
        if other.first_start_ns is not None and (
            self.first_start_ns is None or other.first_start_ns < self.first_start_ns
        ):
            self.first_start_ns = other.first_start_ns
        if other.last_end_ns is not None and (
            self.last_end_ns is None or other.last_end_ns > self.last_end_ns
        ):
            self.last_end_ns = other.last_end_ns
        self._passed_by_window()

    def _passed_by_window(self) -> None:
        """Count the traces closed at the end of a part that the later data passes by the
        window as closed by the window (see :attr:`end_of_input_last_ns`)."""
        if self.last_end_ns is None:
            return
        cutoff = self.last_end_ns - self.window_ns
        kept = [ns for ns in self.end_of_input_last_ns if ns > cutoff]
        moved = len(self.end_of_input_last_ns) - len(kept)
        if not moved:
            return
        self.end_of_input_last_ns = kept
        tallies = self.incomplete_traces
        tallies["end_of_input"] -= moved
        if not tallies["end_of_input"]:
            del tallies["end_of_input"]
        tallies["held_too_long"] = tallies.get("held_too_long", 0) + moved

    # -- the file format ---------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        calls, requests = self.sink.state()
        cascades, provisional = self.cascades.state()
        return {
            "format": FORMAT,
            "version": VERSION,
            "settings_digest": self.settings_digest,
            "units": {
                "call_fields": list(CALL_FIELDS),
                "request_fields": list(REQUEST_FIELDS),
                "cascade_fields": list(CASCADE_FIELDS),
                "exact_fields_scale_bits": SCALE_BITS,
            },
            "inputs": {
                **{name: getattr(self, name) for name in _COUNTS},
                "held_spans_peak": self.held_spans_peak,
                **{name: dict(sorted(getattr(self, name).items())) for name in _TALLIES},
            },
            "reorder_window_ns": self.window_ns,
            "end_of_input_last_end_unix_nano": sorted(self.end_of_input_last_ns),
            "first_start_unix_nano": self.first_start_ns,
            "last_end_unix_nano": self.last_end_ns,
            "calls": _sums_json(calls, _series_json),
            "requests": _sums_json(requests, _vector_json),
            "observations": {
                "step_times": {step: self.step_times[step] for step in sorted(self.step_times)},
                "oracle_checks": {step: self.oracle_checks[step] for step in sorted(self.oracle_checks)},
                "last_oracle_check_s": dict(sorted(self.last_oracle_checks.items())),
                "cascades": _sums_json(cascades, _steps_json),
                "provisional_cascades": _sums_json(provisional, _steps_json),
            },
        }

    def write(self, path: Path) -> None:
        text = json.dumps(self.to_json(), separators=(",", ":"))
        path.write_text(text + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, doc: Any, where: str = "aggregate") -> Aggregate:
        """Raises :class:`AggregateError` for a document of another format or version, or
        one that does not hold what the format says."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise AggregateError(f'{where}: not an {FORMAT} document (no "format": "{FORMAT}")')
        version = doc.get("version")
        if version != VERSION:
            raise AggregateError(
                f"{where}: {FORMAT} version {version!r}; this otel-overspend reads version {VERSION} "
                "only: rebuild the aggregate with this version"
            )
        try:
            _check_units(doc["units"], where)
            inputs = doc["inputs"]
            agg = cls(
                settings_digest=str(doc.get("settings_digest") or ""),
                first_start_ns=_opt_int(doc["first_start_unix_nano"]),
                last_end_ns=_opt_int(doc["last_end_unix_nano"]),
                held_spans_peak=int(inputs["held_spans_peak"]),
                window_ns=int(doc["reorder_window_ns"]),
                end_of_input_last_ns=[int(ns) for ns in doc["end_of_input_last_end_unix_nano"]],
            )
            for name in _COUNTS:
                setattr(agg, name, int(inputs[name]))
            for name in _TALLIES:
                setattr(agg, name, {str(k): int(v) for k, v in inputs[name].items()})
            agg.sink.absorb(_sums_from(doc["calls"], _series_from), _sums_from(doc["requests"], _vector_from))
            observed = doc["observations"]
            agg.step_times = {str(k): [float(x) for x in v] for k, v in observed["step_times"].items()}
            agg.oracle_checks = {str(k): [float(x) for x in v] for k, v in observed["oracle_checks"].items()}
            agg.last_oracle_checks = {str(k): float(v) for k, v in observed["last_oracle_check_s"].items()}
            agg.cascades.absorb(
                _sums_from(observed["cascades"], _steps_from),
                _sums_from(observed["provisional_cascades"], _steps_from),
            )
        except AggregateError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise AggregateError(
                f"{where}: not a valid {FORMAT} version {VERSION} document: {exc!r}"
            ) from None
        return agg


def _check_units(units: Any, where: str) -> None:
    if (
        units["exact_fields_scale_bits"] != SCALE_BITS
        or list(units["call_fields"]) != list(CALL_FIELDS)
        or list(units["request_fields"]) != list(REQUEST_FIELDS)
        or list(units["cascade_fields"]) != list(CASCADE_FIELDS)
    ):
        raise AggregateError(f"{where}: its units are not those of version {VERSION}")


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _whole(value: Any, exact: bool) -> Any:
    """A sum as JSON writes it: a whole number as an int (dollars in units are ints already)."""
    if exact or type(value) is int:
        return value
    return int(value) if float(value).is_integer() else value


def _vector_json(stats: Stats, exact: frozenset[int] = EXACT_REQUEST_FIELDS) -> list[Any]:
    return [_whole(v, i in exact) for i, v in enumerate(stats)]


def _series_json(table: dict[Key, Stats]) -> list[dict[str, Any]]:
    return [
        {
            "step": key[0],
            "model": key[1],
            "tier": key[2],
            "provider": key[3],
            "stats": _vector_json(table[key], EXACT_CALL_FIELDS),
        }
        for key in sorted(table)
    ]


def _vector_from(
    raw: Any, exact: frozenset[int] = EXACT_REQUEST_FIELDS, n: int = len(REQUEST_FIELDS)
) -> Stats:
    if not isinstance(raw, list) or len(raw) != n:
        raise ValueError(f"expected {n} numbers, got {raw!r}")
    return [int(v) if i in exact and isinstance(v, int) else float(v) for i, v in enumerate(raw)]


def _series_from(raw: Any) -> dict[Key, Stats]:
    return {
        (str(s["step"]), str(s["model"]), str(s["tier"]), str(s["provider"])): _vector_from(
            s["stats"], EXACT_CALL_FIELDS, len(CALL_FIELDS)
        )
        for s in raw
    }


def _steps_json(table: dict[str, Stats]) -> dict[str, list[Any]]:
    return {step: _vector_json(table[step], EXACT_CASCADE_FIELDS) for step in sorted(table)}


def _steps_from(raw: Any) -> dict[str, Stats]:
    return {str(step): _vector_from(v, EXACT_CASCADE_FIELDS, len(CASCADE_FIELDS)) for step, v in raw.items()}


def _sums_json(state: SumsState[Any], table: Callable[[Any], Any]) -> dict[str, Any]:
    return {
        "newest_hour_start_s": state.newest_hour_s,
        "untimed": None if state.untimed is None else table(state.untimed),
        "days": {str(start): table(state.days[start]) for start in sorted(state.days)},
        "hours": {str(start): table(state.hours[start]) for start in sorted(state.hours)},
    }


def _sums_from(raw: Any, table: Callable[[Any], Any]) -> SumsState[Any]:
    return SumsState(
        days={int(start): table(t) for start, t in raw["days"].items()},
        hours={int(start): table(t) for start, t in raw["hours"].items()},
        untimed=None if raw["untimed"] is None else table(raw["untimed"]),
        newest_hour_s=_opt_int(raw["newest_hour_start_s"]),
    )


def read_aggregate(path: Path) -> Aggregate:
    """The aggregate in ``path``; raises :class:`AggregateError` (naming the file) if it cannot."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise AggregateError(f"{path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise AggregateError(f"{path}: not JSON: {exc}") from None
    return Aggregate.from_json(doc, str(path))


def merge(parts: Iterable[Aggregate]) -> Aggregate:
    """One aggregate of all ``parts``; raises :class:`AggregateError` if they were counted
    under different settings."""
    merged = Aggregate()
    for part in parts:
        merged.absorb(part)
    return merged
