"""The ledger: cumulative totals (the counters) and rolling windows (the gauges).

Hot path: :meth:`Ledger.add_call` appends the call to a queue, without a lock; every 64
calls, the thread that finds the queue full applies them under the lock (or leaves them to
a thread already doing so), each into the *pending* bucket of one short ``tick`` of time: a
dict lookup and a few float additions, whatever the number of windows. When time moves past
the pending tick the bucket is folded into the totals and into one ring of buckets per
window, whose running sums are kept up to date, so a snapshot costs time in the number of
series (and at most one batch of queued calls), never in the number of spans.

Windows are by span end time. A window of length W is kept as about ``buckets_per_window``
buckets of W/``buckets_per_window`` (whole seconds, at least one tick: more buckets for a
short window); it covers the last W, give or take one bucket.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from bisect import bisect_left
from collections import deque

# Evaluated at import by the compiled build (mypyc), which reads the dataclasses' annotations.
from collections.abc import Mapping, Sequence  # noqa: TC003
from dataclasses import dataclass, field
from operator import add as _add
from operator import sub as _sub
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeAlias

from otel_overspend.accounting.purposes import BATCH, EVAL, REQUEST_PATH

if TYPE_CHECKING:
    from collections.abc import Callable

    from otel_overspend.calls.attribution import Call

__all__ = (
    "FRONTIER_CALL_BUCKETS",
    "PURPOSE_COST",
    "TOKEN_BUCKETS",
    "CallStats",
    "Key",
    "Ledger",
    "RequestSample",
    "Snapshot",
    "WindowView",
    "accumulate_call",
    "accumulate_request",
    "new_request_stats",
)

Key = tuple[str, str, str, str]  # step, model, tier, provider

# Indices into a call-stats vector. COST_WITHOUT_COUNTERFACTUAL: the dollars of calls
# priced only by a cost on their span, whose specialized cost is unknown (in COST, not in
# SPECIALIZED). WITHOUT_USAGE: LLM calls whose span reported nothing billed (not in CALLS).
CALLS: Final = 0
INPUT: Final = 1
OUTPUT: Final = 2
CACHE_READ: Final = 3
REASONING: Final = 4
COST: Final = 5
SPECIALIZED: Final = 6
UNPRICED: Final = 7
CACHE_WRITE: Final = 8
COST_WITHOUT_COUNTERFACTUAL: Final = 9
WITHOUT_USAGE: Final = 10
_N_CALL: Final = 11
# Indices into a request-stats vector.
REQUESTS: Final = 0
FRONTIER_CALLS: Final = 1
HEAVY_REQUESTS: Final = 2
TOKENS: Final = 3
GENERATE_SHARE_SUM: Final = 4
GENERATE_SHARE_N: Final = 5
LLM_TIME_SHARE_SUM: Final = 6
LLM_TIME_SHARE_N: Final = 7
REQUEST_PATH_COST: Final = 8
EVAL_COST: Final = 9
BATCH_COST: Final = 10
_N_REQ: Final = 11
#: Purpose -> the index of its spend in a request-stats vector (see ``accounting.purposes``).
PURPOSE_COST: Final = {REQUEST_PATH: REQUEST_PATH_COST, EVAL: EVAL_COST, BATCH: BATCH_COST}
_HALF: Final = 0.5
#: Queued calls and requests that make a batch, and how far the queue may fall behind.
_BATCH: Final = 64
_MAX_QUEUED: Final = 65_536

#: A request with at least this many frontier calls counts as heavy: the whole count at which
#: the frontier-calls-per-request band turns confirmed.
HEAVY_FRONTIER_CALLS: Final = 3
# Typed as tuples of any length: the compiled build mis-reads a module constant that is a
# fixed-length tuple of floats (mypyc of mypy 2.4 raises NameError on its first use).
FRONTIER_CALL_BUCKETS: Final[tuple[float, ...]] = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)
TOKEN_BUCKETS: Final[tuple[float, ...]] = (
    1_000.0,
    2_500.0,
    5_000.0,
    10_000.0,
    15_000.0,
    25_000.0,
    50_000.0,
    100_000.0,
    250_000.0,
)

CallStats = list[float]
#: A series' sums: an array of doubles, never changed once stored (an update stores a new
#: one, added in C), so a snapshot copies the dict, not every series (the scrape's cost). A
#: tuple would hold eight float objects, each allocated wherever the heap had room when the
#: series was last updated, so in a process that has counted a million calls a scrape reads
#: them from all over the heap, markedly slower than in a young process (measured in
#: benchmarks/RESULTS.md); an array is one block of memory.
FrozenStats: TypeAlias = "array[float]"
_DOUBLES: Final = "d"


class RequestSample(NamedTuple):
    """One finished request: a local root span and its LLM descendants in this process."""

    frontier_calls: int
    tokens: int
    #: generate spend / spend within the request, when the request had priced spend.
    generate_share: float | None
    #: LLM-call time / wall time of the request, capped at 1.
    llm_time_share: float | None
    #: What the request's spend was for (``accounting.purposes``).
    purpose: str = REQUEST_PATH
    #: Priced spend of its calls outside the eval steps: spend for ``purpose``.
    purpose_cost_usd: float = 0.0
    #: Priced spend of its calls in the eval steps: evaluation spend, whatever the purpose.
    eval_step_cost_usd: float = 0.0


@dataclass(slots=True)
class WindowView:
    """Sums over one window: per-series call stats and request stats."""

    seconds: int
    calls: Mapping[Key, Sequence[float]]
    requests: tuple[float, ...]


@dataclass(slots=True)
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bucket, then +Inf
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        # The first bucket whose bound is at least the value (le), else +Inf: the last.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


@dataclass(slots=True)
class Snapshot:
    """A consistent copy of the ledger, taken under its lock."""

    totals: Mapping[Key, Sequence[float]]
    requests_total: int
    #: Purpose -> its spend since the start (``accounting.purposes``).
    purpose_cost_usd: Mapping[str, float]
    frontier_calls_hist: Histogram
    tokens_hist: Histogram
    windows: tuple[WindowView, ...]


def new_request_stats() -> list[float]:
    return [0.0] * _N_REQ


def accumulate_call(
    target: dict[Key, Any],
    call: Call,
    money: Callable[[float], Any] | None = None,
    new: Callable[[], list[Any]] | None = None,
) -> None:
    """Add one call to the stats of its series in ``target``. ``money`` turns dollars into
    what the vector sums (the offline report's exact units; ``None``: float dollars), and
    ``new`` makes a series' vector (``None``: zeros)."""
    key = call.key
    acc: list[Any] | None = target.get(key)
    if acc is None:
        acc = target[key] = [0.0] * _N_CALL if new is None else new()
    if not call.billed:
        acc[WITHOUT_USAGE] += 1.0
        return
    acc[CALLS] += 1.0
    acc[INPUT] += call.input_tokens
    acc[OUTPUT] += call.output_tokens
    acc[CACHE_READ] += call.cache_read_tokens
    acc[REASONING] += call.reasoning_tokens
    acc[CACHE_WRITE] += call.cache_write_tokens
    cost: Any = call.cost_usd
    if cost is None:
        acc[UNPRICED] += 1.0
    else:
        if money is not None:
            cost = money(cost)
        acc[COST] += cost
        specialized = call.specialized_cost_usd
        if specialized is None:
            acc[COST_WITHOUT_COUNTERFACTUAL] += cost
        else:
            acc[SPECIALIZED] += specialized if money is None else money(specialized)


def accumulate_request(
    stats: list[Any], sample: RequestSample, money: Callable[[float], Any] | None = None
) -> None:
    """Add one finished request to a request-stats vector (``money``: as for calls, for the
    two shares' sums)."""
    stats[REQUESTS] += 1.0
    stats[FRONTIER_CALLS] += sample.frontier_calls
    if sample.frontier_calls >= HEAVY_FRONTIER_CALLS:
        stats[HEAVY_REQUESTS] += 1.0
    stats[TOKENS] += sample.tokens
    if sample.generate_share is not None:
        stats[GENERATE_SHARE_SUM] += sample.generate_share if money is None else money(sample.generate_share)
        stats[GENERATE_SHARE_N] += 1.0
    if sample.llm_time_share is not None:
        stats[LLM_TIME_SHARE_SUM] += sample.llm_time_share if money is None else money(sample.llm_time_share)
        stats[LLM_TIME_SHARE_N] += 1.0
    cost = sample.purpose_cost_usd
    if cost:
        stats[PURPOSE_COST[sample.purpose]] += cost if money is None else money(cost)
    cost = sample.eval_step_cost_usd
    if cost:
        stats[EVAL_COST] += cost if money is None else money(cost)


class _Ring:
    """Buckets of one window, with the running sum of those still inside it."""

    __slots__ = ("calls", "epochs", "n", "req", "req_sum", "sums", "width")

    def __init__(self, width: int, n: int) -> None:
        self.width = width
        self.n = n
        self.epochs = [-1] * n
        self.calls: list[dict[Key, CallStats]] = [{} for _ in range(n)]
        self.req: list[list[float]] = [[0.0] * _N_REQ for _ in range(n)]
        self.sums: dict[Key, FrozenStats] = {}
        self.req_sum = [0.0] * _N_REQ

    def _slot(self, epoch: int) -> int | None:
        """The slot holding bucket ``epoch``, clearing a stale one; ``None`` if it is too old."""
        slot = epoch % self.n
        current = self.epochs[slot]
        if current == epoch:
            return slot
        if current > epoch:
            return None
        self._evict(slot)
        self.epochs[slot] = epoch
        return slot

    def _evict(self, slot: int) -> None:
        sums = self.sums
        for key, stats in self.calls[slot].items():
            acc = array(_DOUBLES, map(_sub, sums[key], stats))
            if acc[CALLS] < _HALF and acc[WITHOUT_USAGE] < _HALF:  # whole numbers, exact in a float
                del sums[key]
                continue
            if acc[CALLS] - acc[UNPRICED] < _HALF:  # no priced call left in the window
                # Dollars are not exact in a float: clear the residue of the subtraction.
                acc[COST] = acc[SPECIALIZED] = acc[COST_WITHOUT_COUNTERFACTUAL] = 0.0
            sums[key] = acc
        self.calls[slot] = {}
        req = self.req[slot]
        for i in range(_N_REQ):
            self.req_sum[i] -= req[i]
        self.req[slot] = [0.0] * _N_REQ

    def expire(self, now_s: float) -> None:
        oldest = int(now_s // self.width) - self.n + 1
        for slot, epoch in enumerate(self.epochs):
            if 0 <= epoch < oldest:
                self._evict(slot)
                self.epochs[slot] = -1

    def add_calls(self, t_s: float, calls: dict[Key, CallStats]) -> None:
        slot = self._slot(int(t_s // self.width))
        if slot is None:
            return
        bucket = self.calls[slot]
        sums = self.sums
        for key, stats in calls.items():
            acc = bucket.get(key)
            if acc is None:
                bucket[key] = stats.copy()
            else:
                for i in range(_N_CALL):
                    acc[i] += stats[i]
            summed = sums.get(key)
            sums[key] = array(_DOUBLES, stats if summed is None else map(_add, summed, stats))

    def add_request(self, t_s: float, stats: list[float]) -> None:
        slot = self._slot(int(t_s // self.width))
        if slot is None:
            return
        req = self.req[slot]
        for i in range(_N_REQ):
            req[i] += stats[i]
            self.req_sum[i] += stats[i]

    def view(self, seconds: int) -> WindowView:
        return WindowView(
            seconds=seconds,
            calls=self.sums.copy(),
            requests=tuple(self.req_sum),
        )


class Ledger:
    """Thread-safe store of call and request statistics. See the module docstring."""

    def __init__(
        self,
        *,
        window_seconds: tuple[int, ...] = (300, 3600, 86400, 604800),
        buckets_per_window: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not window_seconds or min(window_seconds) < 1:
            raise ValueError(f"windows must be positive, got {window_seconds}")
        self._clock = clock
        self._window_seconds = tuple(sorted(window_seconds))
        self._tick = max(1, self._window_seconds[0] // buckets_per_window)
        self._rings = tuple(
            _Ring(width, -(-w // width))  # as many buckets as cover w: more when w is short
            for w in self._window_seconds
            for width in (max(self._tick, (w // buckets_per_window) // self._tick * self._tick),)
        )
        self._horizon_s = self._window_seconds[-1]
        self._lock = threading.Lock()
        self._reset_state()

    def _reset_state(self) -> None:
        self._queue: deque[tuple[float, Call | None, RequestSample | None]] = deque()
        self._totals: dict[Key, FrozenStats] = {}
        self._pending: dict[Key, CallStats] = {}
        self._pending_req = new_request_stats()
        self._pending_epoch = -1
        self._requests_total = 0
        self._purpose_cost = dict.fromkeys(PURPOSE_COST, 0.0)
        self._frontier_hist = Histogram(FRONTIER_CALL_BUCKETS)
        self._tokens_hist = Histogram(TOKEN_BUCKETS)
        for ring in self._rings:
            ring.__init__(ring.width, ring.n)  # type: ignore[misc]

    def reset(self) -> None:
        """Forget everything (used in a forked child, whose parent keeps its own counts)."""
        self._lock = threading.Lock()
        self._reset_state()

    @property
    def window_seconds(self) -> tuple[int, ...]:
        return self._window_seconds

    # -- hot path -----------------------------------------------------------------------
    # Recording a call only appends to a queue (atomic, no lock). Whoever finds the queue
    # holding a batch drains it under the lock, unless another thread is already draining:
    # the lock is taken once per batch, never contended on every span, which keeps threads
    # from queueing behind each other (a lock convoy) under the GIL.

    def _at(self, end_time_s: float) -> float | None:
        """Clamp a future time to now; ``None`` (and counted) for one older than every window."""
        now = self._clock()
        if not math.isfinite(end_time_s) or end_time_s > now:
            return now
        if end_time_s < now - self._horizon_s:
            return None  # the recorder counts it as a drop (reason "too_old")
        return end_time_s

    def add_call(self, call: Call, end_time_s: float) -> bool:
        """Record a call that ended at ``end_time_s``; ``False`` if it was too old to keep."""
        t = self._at(end_time_s)
        if t is None:
            return False
        queue = self._queue
        queue.append((t, call, None))
        if len(queue) >= _BATCH:
            self._drain_when_free(queue)
        return True

    def add_request(self, sample: RequestSample, end_time_s: float) -> None:
        t = self._at(end_time_s)
        if t is None:
            return
        queue = self._queue
        queue.append((t, None, sample))
        if len(queue) >= _BATCH:
            self._drain_when_free(queue)

    def _drain_when_free(self, queue: deque[tuple[float, Call | None, RequestSample | None]]) -> None:
        # Wait for the lock only when the queue is far behind: that bounds its memory.
        if self._lock.acquire(blocking=len(queue) >= _MAX_QUEUED):
            try:
                self._drain()
            finally:
                self._lock.release()

    def _drain(self) -> None:
        """Apply every queued call and request (the lock is held)."""
        queue = self._queue
        for _ in range(len(queue)):
            t, call, sample = queue.popleft()
            if call is not None:
                self._apply_call(call, t)
            elif sample is not None:
                self._apply_request(sample, t)

    def _apply_call(self, call: Call, t: float) -> None:
        epoch = int(t // self._tick)
        if epoch == self._pending_epoch:
            accumulate_call(self._pending, call)
        elif epoch > self._pending_epoch:
            self._fold()
            self._pending_epoch = epoch
            accumulate_call(self._pending, call)
        else:  # a late span: straight into its buckets
            late: dict[Key, CallStats] = {}
            accumulate_call(late, call)
            self._fold_into(t, late)

    def _apply_request(self, sample: RequestSample, t: float) -> None:
        epoch = int(t // self._tick)
        if epoch > self._pending_epoch:
            self._fold()
            self._pending_epoch = epoch
        stats = self._pending_req if epoch == self._pending_epoch else new_request_stats()
        accumulate_request(stats, sample)
        self._requests_total += 1
        if sample.purpose_cost_usd:
            self._purpose_cost[sample.purpose] += sample.purpose_cost_usd
        if sample.eval_step_cost_usd:
            self._purpose_cost[EVAL] += sample.eval_step_cost_usd
        self._frontier_hist.observe(sample.frontier_calls)
        self._tokens_hist.observe(sample.tokens)
        if stats is not self._pending_req:  # a late request: straight into its buckets
            for ring in self._rings:
                ring.add_request(t, stats)

    # -- folding ---------------------------------------------------------------------------
    def _fold(self) -> None:
        t_s = self._pending_epoch * self._tick
        if self._pending:
            self._fold_into(t_s, self._pending)
            self._pending = {}
        if self._pending_req[REQUESTS]:
            for ring in self._rings:
                ring.add_request(t_s, self._pending_req)
            self._pending_req = new_request_stats()

    def _fold_into(self, t_s: float, calls: dict[Key, CallStats]) -> None:
        totals = self._totals
        for key, stats in calls.items():
            acc = totals.get(key)
            totals[key] = array(_DOUBLES, stats if acc is None else map(_add, acc, stats))
        for ring in self._rings:
            ring.add_calls(t_s, calls)

    # -- reading ---------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        with self._lock:
            self._drain()
            now = self._clock()
            self._fold()
            self._pending_epoch = max(self._pending_epoch, int(now // self._tick))
            for ring in self._rings:
                ring.expire(now)
            return Snapshot(
                totals=self._totals.copy(),
                requests_total=self._requests_total,
                purpose_cost_usd=self._purpose_cost.copy(),
                frontier_calls_hist=Histogram(
                    self._frontier_hist.bounds, list(self._frontier_hist.counts), self._frontier_hist.total
                ),
                tokens_hist=Histogram(
                    self._tokens_hist.bounds, list(self._tokens_hist.counts), self._tokens_hist.total
                ),
                windows=tuple(r.view(w) for r, w in zip(self._rings, self._window_seconds, strict=True)),
            )
