"""Step time, request by request: the recording core of
:class:`~otel_overspend.accounting.observations.Observations` (see its module docstring).

Compiled in the wheel: the offline report tells it of every span with a step. It holds no
lock: :class:`~otel_overspend.accounting.observations.Observations` takes its own around it
where threads share it.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, Final, Protocol

from otel_overspend.base.labels import OTHER
from otel_overspend.thresholds import STEP_TIME_BUCKETS

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = (
    "ADDED",
    "BUCKETS",
    "COUNT",
    "MAX_OPEN_REQUESTS",
    "MAX_STEPS",
    "N_TIME",
    "REQUEST",
    "StepTime",
    "Window",
)

#: Distinct step labels kept; further steps are folded into ``other``.
MAX_STEPS: Final = 100
#: Requests whose step time is being merged at once; beyond it the oldest is observed early.
MAX_OPEN_REQUESTS: Final = 10_000
#: A step-time vector: observations, added seconds, request seconds, then per-bucket counts
#: (from :data:`BUCKETS`: one per bound of ``STEP_TIME_BUCKETS``, then one above them all).
COUNT: Final = 0
ADDED: Final = 1
REQUEST: Final = 2
BUCKETS: Final = 3
N_TIME: Final = BUCKETS + len(STEP_TIME_BUCKETS) + 1


class Window(Protocol):
    """A rolling window's buckets, as step time adds to them."""

    times: list[dict[str, list[float]]]

    def slot(self, t_s: float) -> int | None: ...


class _Request:
    __slots__ = ("first", "last", "steps")

    def __init__(self, started: float, ended: float) -> None:
        self.first = started
        self.last = ended
        #: step -> [stretch start, stretch end, seconds of the stretches before it]
        self.steps: dict[str, list[float]] = {}


def _add_time(
    target: dict[str, list[float]], step: str, added_s: float, request_s: float, bucket: int
) -> None:
    """Add one request's time of ``step`` (its histogram ``bucket``): the four numbers it
    changes, not the whole vector (once per step of every request)."""
    acc = target.get(step)
    if acc is None:
        acc = target[step] = [0.0] * N_TIME
    acc[COUNT] += 1.0
    acc[ADDED] += added_s
    acc[REQUEST] += request_s
    acc[bucket] += 1.0


class StepTime:
    """The open requests' step stretches, and the totals of the settled ones (:attr:`times`,
    step -> vector), also added to each of ``windows`` by the time on ``clock`` (a
    step's time observed ``perf() - end`` seconds ago)."""

    __slots__ = ("_clock", "_open", "_perf", "_settle_s", "_windows", "overflowed", "times")

    def __init__(
        self,
        windows: tuple[Window, ...],
        *,
        clock: Callable[[], float],
        perf_clock: Callable[[], float],
        settle_seconds: float,
    ) -> None:
        self._windows = windows
        self._clock = clock
        self._perf = perf_clock
        self._settle_s = settle_seconds
        self._open: dict[int, _Request] = {}
        #: step -> vector (see :data:`COUNT`), every settled request's.
        self.times: dict[str, list[float]] = {}
        #: Steps folded into ``other`` (one per observation).
        self.overflowed = 0

    def label(self, step: str, seen: dict[str, list[float]]) -> str:
        """``step``, or ``other`` once ``seen`` holds :data:`MAX_STEPS` others (counted)."""
        if step in seen or len(seen) < MAX_STEPS:
            return step
        self.overflowed += 1
        return OTHER

    def done(self, step: str, trace_id: int, started: float, ended: float) -> None:
        """A block of ``step`` in ``trace_id`` (0: outside a span, a request of its own) ran
        from ``started`` to ``ended`` (seconds)."""
        # Comparisons rather than min() and max() calls (the same results).
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
        if open_requests[oldest].last < ended - self._settle_s:
            self._finish(oldest)

    def settle(self, before: float, *, everything: bool = False) -> None:
        """Observe the requests whose last step ended before ``before`` (``everything``: all)."""
        for trace_id in [t for t, r in self._open.items() if everything or r.last < before]:
            self._finish(trace_id)

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
        times = self.times
        for step, (start, end, before) in steps.items():
            added_s = before + end - start
            if not added_s > 0.0:
                added_s = 0.0
            label = self.label(step, times)
            bucket = BUCKETS + bisect_left(STEP_TIME_BUCKETS, added_s)
            _add_time(times, label, added_s, request_s, bucket)
            if self._windows:  # the clocks are read for the windows alone
                at_s = self._clock() - max(0.0, self._perf() - end)
                for window in self._windows:
                    slot = window.slot(at_s)
                    if slot is not None:
                        _add_time(window.times[slot], label, added_s, request_s, bucket)
