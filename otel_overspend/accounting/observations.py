"""What the look-alike patterns need beyond the LLM calls: step time and oracle checks.

**Step time.** Each ``step()`` block (and each :func:`record_step_time`) tells
:meth:`Observations.step_done` its step, the trace it ran in and when it started and ended
(see :func:`otel_overspend.steps.set_step_timer`): nothing is done per span. Blocks of one
step in one request (a trace) are merged where they overlap, so parallel work is counted
once: each block is merged with the step's latest stretch when it starts before that
stretch ends (blocks end, and arrive, in end order). Once a request has had no step end
for :data:`SETTLE_SECONDS`, each of its steps' added time is observed: into a histogram
(the ``overspend_step_request_seconds`` counters) and into the windows, with the request's
time, the span from its first step's start to its last step's end. A block outside any
span is a request of its own.

**Oracle checks.** :func:`record_oracle_check` records one comparison of a step's student
(the specialist serving it) with its teacher: an agreement or not, per step, with the time
of the last check.

Both go to every :class:`Observations` installed (one per processor); the label maps are
bounded (steps beyond :data:`~otel_overspend.accounting.step_time.MAX_STEPS` become ``other``;
requests beyond :data:`~otel_overspend.accounting.step_time.MAX_OPEN_REQUESTS` are observed early).
"""

from __future__ import annotations

import threading
import time

# Evaluated at import by the compiled build (mypyc), which reads the dataclasses' annotations.
from collections.abc import Mapping  # noqa: TC003
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from opentelemetry import trace as trace_api

from otel_overspend.accounting.step_time import ADDED, BUCKETS, REQUEST, StepTime
from otel_overspend.steps import set_step_timer, validate_step_name

if TYPE_CHECKING:
    from collections.abc import Callable

    from otel_overspend.accounting.requests import CascadeCases

__all__ = (
    "ORACLE_AGREED_KEY",
    "SETTLE_SECONDS",
    "ObservationSnapshot",
    "ObservationView",
    "Observations",
    "install",
    "oracle_verdict",
    "record_oracle_check",
    "record_step_time",
    "uninstall",
)

#: The span attribute of a shadow call to a step's teacher: whether it agreed with the student.
ORACLE_AGREED_KEY: Final = "overspend.oracle.agreed"
#: Quiet time after which a request's step time is observed.
SETTLE_SECONDS: Final = 2.0
#: An oracle vector: checks, agreeing checks.
CHECKS, AGREED = 0, 1


@dataclass(frozen=True, slots=True)
class ObservationView:
    """Sums over one window."""

    seconds: int
    #: step -> (per-bucket counts, added seconds, request seconds)
    step_times: Mapping[str, tuple[tuple[float, ...], float, float]]
    #: step -> (checks, agreeing checks)
    agreements: Mapping[str, tuple[float, float]]
    #: step -> (cases, escalated cases, cost, every case at the expensive stage's cost)
    cascades: Mapping[str, tuple[float, float, float, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ObservationSnapshot:
    """Cumulative totals (the counters), last checks and each window's sums."""

    step_times: Mapping[str, tuple[float, ...]]
    agreements: Mapping[str, tuple[float, float]]
    #: step -> time of its last oracle check, seconds since the epoch
    last_checks: Mapping[str, float]
    windows: tuple[ObservationView, ...]
    #: step -> (cases, escalated cases, cost, every case at the expensive stage's cost)
    cascades: Mapping[str, tuple[float, float, float, float]] = field(default_factory=dict)


class _Ring:
    """One window's buckets of step-time and oracle vectors."""

    __slots__ = ("cascade", "epochs", "n", "oracle", "times", "width")

    def __init__(self, width: int, n: int) -> None:
        self.width = width
        self.n = n
        self.epochs = [-1] * n
        self.times: list[dict[str, list[float]]] = [{} for _ in range(n)]
        self.oracle: list[dict[str, list[float]]] = [{} for _ in range(n)]
        self.cascade: list[dict[str, list[float]]] = [{} for _ in range(n)]

    def slot(self, t_s: float) -> int | None:
        """The slot of the bucket holding ``t_s`` (cleared if it held an older one); ``None``
        for a time older than the window."""
        epoch = int(t_s // self.width)
        slot = epoch % self.n
        current = self.epochs[slot]
        if current > epoch:
            return None
        if current != epoch:
            self.epochs[slot] = epoch
            self.times[slot] = {}
            self.oracle[slot] = {}
            self.cascade[slot] = {}
        return slot

    def view(self, seconds: int, now_s: float) -> ObservationView:
        oldest = int(now_s // self.width) - self.n + 1
        times: dict[str, list[float]] = {}
        oracle: dict[str, list[float]] = {}
        cascade: dict[str, list[float]] = {}
        for slot, epoch in enumerate(self.epochs):
            if epoch < oldest:
                continue
            for into, bucket in (
                (times, self.times[slot]),
                (oracle, self.oracle[slot]),
                (cascade, self.cascade[slot]),
            ):
                for step, vector in bucket.items():
                    acc = into.get(step)
                    if acc is None:
                        into[step] = list(vector)
                    else:
                        for i, value in enumerate(vector):
                            acc[i] += value
        return ObservationView(
            seconds=seconds,
            step_times={
                step: (tuple(v[BUCKETS:]), v[ADDED], v[REQUEST]) for step, v in sorted(times.items())
            },
            agreements={step: (v[CHECKS], v[AGREED]) for step, v in sorted(oracle.items())},
            cascades={step: (v[0], v[1], v[2], v[3]) for step, v in sorted(cascade.items())},
        )


def _add(target: dict[str, list[float]], step: str, vector: list[float]) -> None:
    acc = target.get(step)
    if acc is None:
        target[step] = list(vector)
    else:
        for i, value in enumerate(vector):
            acc[i] += value


class Observations:
    """Thread-safe store of step time and oracle checks (see the module docstring)."""

    def __init__(
        self,
        *,
        window_seconds: tuple[int, ...] = (300, 3600, 86400, 604800),
        buckets_per_window: int = 60,
        clock: Callable[[], float] = time.time,
        perf_clock: Callable[[], float] = time.time,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        self._clock = clock
        self._perf = perf_clock
        self._settle = settle_seconds
        self._window_seconds = tuple(sorted(window_seconds))
        self._rings = tuple(
            _Ring(width, -(-w // width))  # as many buckets as cover w: more when w is short
            for w in self._window_seconds
            for width in (max(1, w // buckets_per_window),)
        )
        self.reset()

    def reset(self) -> None:
        """Forget everything (a forked child's parent keeps its own)."""
        self._lock = threading.Lock()
        self._oracle: dict[str, list[float]] = {}
        self._last_checks: dict[str, float] = {}
        self._cascades: dict[str, list[float]] = {}
        for ring in self._rings:
            ring.__init__(ring.width, ring.n)  # type: ignore[misc]
        self._core = StepTime(
            self._rings, clock=self._clock, perf_clock=self._perf, settle_seconds=self._settle
        )
        #: :meth:`step_done` for the one thread that uses this store (the offline report's
        #: replay, once per span with a step): a ``with`` on the lock costs more than the step.
        self.step_done_unlocked: Callable[[str, int, float, float], None] = self._core.done

    @property
    def overflowed(self) -> int:
        """Steps folded into ``other`` (one per observation)."""
        return self._core.overflowed

    # -- recording -----------------------------------------------------------------------
    def step_done(self, step: str, trace_id: int, started: float, ended: float) -> None:
        """A ``step()`` block of ``trace_id`` (0: outside a span) ran from ``started`` to
        ``ended`` (seconds since the epoch)."""
        with self._lock:
            self._core.done(step, trace_id, started, ended)

    def oracle_check(self, step: str, *, agreed: bool) -> None:
        now = self._clock()
        with self._lock:
            label = self._core.label(step, self._oracle)
            vector = [1.0, 1.0 if agreed else 0.0]
            _add(self._oracle, label, vector)
            for ring in self._rings:
                slot = ring.slot(now)
                if slot is not None:
                    _add(ring.oracle[slot], label, vector)
            self._last_checks[label] = max(now, self._last_checks.get(label, now))

    def cascade(self, cases: CascadeCases) -> None:
        """One request's cases of a cascade step (see :mod:`otel_overspend.accounting.requests`)."""
        now = self._clock()
        vector = [float(cases.cases), float(cases.escalated), cases.cost_usd, cases.expensive_cost_usd]
        with self._lock:
            label = self._core.label(cases.step, self._cascades)
            _add(self._cascades, label, vector)
            for ring in self._rings:
                slot = ring.slot(now)
                if slot is not None:
                    _add(ring.cascade[slot], label, vector)

    # -- reading -------------------------------------------------------------------------
    def settle(self, *, everything: bool = False) -> None:
        """Observe the requests quiet for the settle time (``everything``: all of them)."""
        with self._lock:
            self._core.settle(self._perf() - self._settle, everything=everything)

    def snapshot(self) -> ObservationSnapshot:
        self.settle()
        now = self._clock()
        with self._lock:
            return ObservationSnapshot(
                step_times={step: tuple(v) for step, v in sorted(self._core.times.items())},
                agreements={step: (v[CHECKS], v[AGREED]) for step, v in sorted(self._oracle.items())},
                last_checks=dict(sorted(self._last_checks.items())),
                windows=tuple(r.view(w, now) for r, w in zip(self._rings, self._window_seconds, strict=True)),
                cascades={step: (v[0], v[1], v[2], v[3]) for step, v in sorted(self._cascades.items())},
            )


# -- the stores the public functions and the step timer write to -------------------------------
_INSTALLED: list[tuple[Observations, ...]] = [()]


def _deliver(step: str, trace_id: int, started: float, ended: float) -> None:
    for observations in _INSTALLED[0]:
        observations.step_done(step, trace_id, started, ended)


def install(observations: Observations) -> None:
    """Send step time and oracle checks to ``observations`` too (a processor's)."""
    _INSTALLED[0] = (*_INSTALLED[0], observations)
    set_step_timer(_deliver)


def uninstall(observations: Observations) -> None:
    _INSTALLED[0] = tuple(o for o in _INSTALLED[0] if o is not observations)
    if not _INSTALLED[0]:
        set_step_timer(None)


def oracle_verdict(attrs: Mapping[str, object] | None) -> bool | None:
    """The verdict a shadow call's span carries in ``overspend.oracle.agreed`` (a bool, or
    ``"true"`` / ``"false"`` as some exporters write it); ``None`` without one."""
    value = attrs.get(ORACLE_AGREED_KEY) if attrs else None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    return None


def record_step_time(step: str, *, started_s: float, ended_s: float, trace_id: int | None = None) -> None:
    """Record work of ``step`` that ran from ``started_s`` to ``ended_s`` (seconds since the
    epoch) in the request of ``trace_id`` (default: the trace of the current span; 0: a request
    of its own), as a ``step()`` block would: for work no ``step()`` block wraps (a reranker
    service timed by its client, spans with explicit times). Mistakes raise ``ValueError``."""
    validate_step_name(step)
    if not ended_s >= started_s:
        raise ValueError(f"record_step_time: ended_s ({ended_s}) is before started_s ({started_s})")
    if trace_id is None:
        trace_id = trace_api.get_current_span().get_span_context().trace_id
    for observations in _INSTALLED[0]:
        observations.step_done(step, trace_id, started_s, ended_s)


def record_oracle_check(
    step: str,
    *,
    agreed: bool | None = None,
    student: float | str | None = None,
    teacher: float | str | None = None,
    tolerance: float = 0.1,
) -> bool:
    """Record one oracle check of ``step``'s student against its teacher; return whether they
    agreed.

    Give the verdict (``agreed=True``), or both answers: two scores agree when they differ by
    at most ``tolerance``, two labels when they are equal. Mistakes raise ``ValueError`` here,
    where the call is written.
    """
    validate_step_name(step)
    if agreed is None:
        if student is None or teacher is None:
            raise ValueError("record_oracle_check: give agreed=, or both student= and teacher=")
        if isinstance(student, str) or isinstance(teacher, str):
            agreed = student == teacher
        else:
            agreed = abs(float(student) - float(teacher)) <= tolerance
    for observations in _INSTALLED[0]:
        observations.oracle_check(step, agreed=bool(agreed))
    return bool(agreed)
