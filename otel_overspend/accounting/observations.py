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
bounded (steps beyond :data:`MAX_STEPS` become ``other``; requests beyond
:data:`MAX_OPEN_REQUESTS` are observed early).
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left

# Evaluated at import by the compiled build (mypyc), which reads the dataclasses' annotations.
from collections.abc import Mapping  # noqa: TC003
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from opentelemetry import trace as trace_api

from otel_overspend.base.labels import OTHER
from otel_overspend.steps import set_step_timer, validate_step_name
from otel_overspend.thresholds import STEP_TIME_BUCKETS

if TYPE_CHECKING:
    from collections.abc import Callable

    from otel_overspend.accounting.requests import CascadeCases

__all__ = (
    "MAX_OPEN_REQUESTS",
    "MAX_STEPS",
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
#: Distinct step labels kept; further steps are folded into ``other``.
MAX_STEPS: Final = 100
#: Requests whose step time is being merged at once; beyond it the oldest is observed early.
MAX_OPEN_REQUESTS: Final = 10_000
#: Quiet time after which a request's step time is observed.
SETTLE_SECONDS: Final = 2.0
#: A step-time vector: observations, added seconds, request seconds, then per-bucket counts.
COUNT, ADDED, REQUEST = 0, 1, 2
_N_TIME: Final = 3 + len(STEP_TIME_BUCKETS) + 1
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


class _Request:
    __slots__ = ("first", "last", "steps")

    def __init__(self, started: float, ended: float) -> None:
        self.first = started
        self.last = ended
        #: step -> [stretch start, stretch end, seconds of the stretches before it]
        self.steps: dict[str, list[float]] = {}


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
            step_times={step: (tuple(v[3:]), v[ADDED], v[REQUEST]) for step, v in sorted(times.items())},
            agreements={step: (v[CHECKS], v[AGREED]) for step, v in sorted(oracle.items())},
            cascades={step: (v[0], v[1], v[2], v[3]) for step, v in sorted(cascade.items())},
        )


def _add_time(
    target: dict[str, list[float]], step: str, added_s: float, request_s: float, bucket: int
) -> None:
    """Add one request's time of ``step`` (its histogram ``bucket``): the four numbers it
    changes, not the whole vector (once per step of every request)."""
    acc = target.get(step)
    if acc is None:
        acc = target[step] = [0.0] * _N_TIME
    acc[COUNT] += 1.0
    acc[ADDED] += added_s
    acc[REQUEST] += request_s
    acc[bucket] += 1.0


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
        self._open: dict[int, _Request] = {}
        self._times: dict[str, list[float]] = {}
        self._oracle: dict[str, list[float]] = {}
        self._last_checks: dict[str, float] = {}
        self._cascades: dict[str, list[float]] = {}
        for ring in self._rings:
            ring.__init__(ring.width, ring.n)  # type: ignore[misc]
        #: Steps folded into ``other`` (one per observation).
        self.overflowed = 0

    # -- recording -----------------------------------------------------------------------
    def step_done(self, step: str, trace_id: int, started: float, ended: float) -> None:
        """A ``step()`` block of ``trace_id`` (0: outside a span) ran from ``started`` to
        ``ended`` (seconds since the epoch)."""
        with self._lock:
            self.step_done_unlocked(step, trace_id, started, ended)

    def step_done_unlocked(self, step: str, trace_id: int, started: float, ended: float) -> None:
        """:meth:`step_done` for the one thread that uses this store (the offline report's
        replay, once per span with a step): a ``with`` on the lock costs more than the step."""
        # Comparisons rather than min() and max() calls, which cost several times more
        # (same results).
        if trace_id == 0:  # a request of its own, observed at once
            self._observe({step: [started, ended, 0.0]}, ended - started)
            return
        open_requests = self._open
        request = open_requests.get(trace_id)
        if request is None:
            if len(open_requests) >= MAX_OPEN_REQUESTS:
                self._finish(next(iter(open_requests)))
            request = open_requests[trace_id] = _Request(started, ended)
            request.steps[step] = [started, ended, 0.0]
        else:
            if started < request.first:  # noqa: PLR1730 - see above
                request.first = started
            if ended > request.last:  # noqa: PLR1730 - see above
                request.last = ended
            stretch = request.steps.get(step)
            if stretch is None:
                request.steps[step] = [started, ended, 0.0]
            elif started <= stretch[1]:  # overlaps the latest stretch: counted once
                if started < stretch[0]:  # noqa: PLR1730 - see above
                    stretch[0] = started
                if ended > stretch[1]:  # noqa: PLR1730 - see above
                    stretch[1] = ended
            else:
                stretch[2] += stretch[1] - stretch[0]
                stretch[0], stretch[1] = started, ended
        oldest = next(iter(open_requests))
        if open_requests[oldest].last < ended - self._settle:
            self._finish(oldest)

    def oracle_check(self, step: str, *, agreed: bool) -> None:
        now = self._clock()
        with self._lock:
            label = self._label(step, self._oracle)
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
            label = self._label(cases.step, self._cascades)
            _add(self._cascades, label, vector)
            for ring in self._rings:
                slot = ring.slot(now)
                if slot is not None:
                    _add(ring.cascade[slot], label, vector)

    def _label(self, step: str, seen: dict[str, list[float]]) -> str:
        if step in seen or len(seen) < MAX_STEPS:
            return step
        self.overflowed += 1
        return OTHER

    def _finish(self, trace_id: int) -> None:
        request = self._open.pop(trace_id)
        self._observe(request.steps, request.last - request.first)

    def _observe(self, steps: dict[str, list[float]], request_s: float) -> None:
        """One request's time of each of its ``steps`` (step -> its latest stretch's start and
        end, seconds of the stretches before it), in the windows by the end of the step's last
        block in it (on the clock of the blocks' times), as the ledger's are by the end of the
        step's spans: a request is observed once it has settled, seconds after, not timed then."""
        # Once per step of every request: max(0.0, x) as a comparison (the same result).
        if not request_s > 0.0:
            request_s = 0.0
        times = self._times
        for step, (start, end, before) in steps.items():
            added_s = before + end - start
            if not added_s > 0.0:
                added_s = 0.0
            label = step if step in times or len(times) < MAX_STEPS else self._label(step, times)
            bucket = 3 + bisect_left(STEP_TIME_BUCKETS, added_s)
            _add_time(times, label, added_s, request_s, bucket)
            if self._rings:  # the clocks are read for the windows alone
                at_s = self._clock() - max(0.0, self._perf() - end)
                for ring in self._rings:
                    slot = ring.slot(at_s)
                    if slot is not None:
                        _add_time(ring.times[slot], label, added_s, request_s, bucket)

    # -- reading -------------------------------------------------------------------------
    def settle(self, *, everything: bool = False) -> None:
        """Observe the requests quiet for the settle time (``everything``: all of them)."""
        with self._lock:
            before = self._perf() - self._settle
            for trace_id in [t for t, r in self._open.items() if everything or r.last < before]:
                self._finish(trace_id)

    def snapshot(self) -> ObservationSnapshot:
        self.settle()
        now = self._clock()
        with self._lock:
            return ObservationSnapshot(
                step_times={step: tuple(v) for step, v in sorted(self._times.items())},
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
