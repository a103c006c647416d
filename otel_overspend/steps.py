"""Marking code as a pipeline step: ``with step("rerank"):`` or ``@step("rerank")``.

The active step lives in a :class:`contextvars.ContextVar`, so it follows the code that
set it across ``await`` points and never leaks to other threads or asyncio tasks. Names
are validated here, where they are written; the span processor only reads them.
"""

from __future__ import annotations

import functools
import inspect
import re
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeGuard, TypeVar, cast

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from typing_extensions import Self

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Generator
    from types import TracebackType

__all__ = (
    "BAGGAGE_KEY",
    "CASCADE_STAGES",
    "CASCADE_STAGE_KEY",
    "CURRENT_STEP",
    "GENERATE",
    "MAX_STEP_NAME_LENGTH",
    "STEP_NAME_PATTERN",
    "UNATTRIBUTED",
    "current_step",
    "is_step_name",
    "mark_cascade_stage",
    "set_step_timer",
    "step",
    "validate_step_name",
)

#: The span attribute and W3C baggage entry that carry a step name.
BAGGAGE_KEY: Final = "overspend.step"
#: The LLM-span attribute marking a call as one stage of a cheap-then-expensive cascade.
CASCADE_STAGE_KEY: Final = "overspend.cascade.stage"
#: Its values: the cheap stage every case runs, the expensive stage an escalated case runs.
CASCADE_STAGES: Final = ("cheap", "expensive")
#: The step that writes the answer itself: the one step whose spend is not specialist-eligible.
GENERATE: Final = "generate"
#: The step of an LLM call nothing could attribute. Never counted as ``generate``.
UNATTRIBUTED: Final = "unattributed"
#: What a step name may look like: it becomes a Prometheus label value.
STEP_NAME_PATTERN: Final = re.compile(r"[a-z][a-z0-9_.-]{0,62}")
MAX_STEP_NAME_LENGTH: Final = 63

_F = TypeVar("_F", bound="Callable[..., Any]")


@dataclass(frozen=True, slots=True)
class _Frame:
    name: str
    outer: _Frame | None
    #: ``time.time()`` when the block was entered (the clock of span times, so that work
    #: timed elsewhere merges with it); :data:`_UNTIMED` for a frame that is not timed (a
    #: generator's: its body runs between its consumer's statements).
    started: float = -1.0


_UNTIMED: Final = -1.0
_now: Final = time.time
#: What :func:`set_step_timer` installed: told of every timed step block that ends.
_TIMER: list[Callable[[str, int, float, float], None] | None] = [None]


def set_step_timer(timer: Callable[[str, int, float, float], None] | None) -> None:
    """Have ``timer(step, trace_id, started, ended)`` called as each ``step()`` block or
    decorated (async) function ends (seconds since the epoch; ``trace_id`` 0 outside a
    span); ``None`` stops it. A step inside a block of the same step is not timed apart: the
    outer block holds it. The timer must not raise (what it raises is ignored)."""
    _TIMER[0] = timer


def _time(frame: _Frame) -> None:
    """Tell the timer that ``frame``'s block ended, unless an outer block of its step holds it."""
    timer = _TIMER[0]
    if timer is None or frame.started < 0:
        return
    ended = _now()
    outer = frame.outer
    while outer is not None:
        if outer.name == frame.name:
            return
        outer = outer.outer
    try:
        trace_id = trace_api.get_current_span().get_span_context().trace_id
        timer(frame.name, trace_id, frame.started, ended)
    except Exception:  # noqa: S110 - the app's block has ended: nothing may fail it
        pass


_CURRENT: ContextVar[_Frame | None] = ContextVar("overspend_step", default=None)
#: The baggage attach tokens of the steps entered with ``baggage=True`` in this context, with
#: the step object that attached each: one variable for all of them (a variable per step
#: object would stay in every context it was set in, one per use).
_BAGGAGE_TOKENS: ContextVar[tuple[tuple[object, object], ...]] = ContextVar(
    "overspend_step_baggage", default=()
)
#: The innermost step frame (``.name``) of this context: read directly on the span path.
CURRENT_STEP: Final = _CURRENT


#: Strings already checked -> whether they are step names (spans repeat a few); bounded in
#: entries and in size (no string longer than a step name is kept: baggage can be 8 KB).
_CHECKED_NAMES: dict[str, bool] = {}
_MAX_CHECKED_NAMES: Final = 10_000


def is_step_name(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a valid step name (checked once per distinct string)."""
    if type(value) is not str or len(value) > MAX_STEP_NAME_LENGTH:
        return False
    valid = _CHECKED_NAMES.get(value)
    if valid is None:
        valid = STEP_NAME_PATTERN.fullmatch(value) is not None
        if len(_CHECKED_NAMES) < _MAX_CHECKED_NAMES:
            _CHECKED_NAMES[value] = valid
    return valid


def validate_step_name(name: object) -> str:
    """Return ``name`` if it is a valid step name, else raise :class:`ValueError`."""
    if not isinstance(name, str) or STEP_NAME_PATTERN.fullmatch(name) is None:
        msg = (
            f"invalid step name {name!r}: use 1-63 characters of lowercase letters, digits, "
            "'_', '.' or '-', starting with a letter (e.g. 'rerank')"
        )
        raise ValueError(msg)
    return name


def current_step() -> str | None:
    """The innermost step active in this context, or ``None``."""
    frame = _CURRENT.get()
    return None if frame is None else frame.name


class step:  # noqa: N801 - used like a function: ``with step("rerank")``
    """Mark the enclosed code, or the decorated function, as pipeline step ``name``.

    Works as a context manager and as a decorator of plain, async, generator and async
    generator functions. Nested steps: the innermost wins. With ``baggage=True`` the step
    is also written to W3C baggage so that downstream services see it; baggage travels
    to every service the request reaches, so this is opt-in.
    """

    __slots__ = ("_baggage", "name")

    def __init__(self, name: str, *, baggage: bool = False) -> None:
        self.name: Final = validate_step_name(name)
        self._baggage = baggage

    # -- context manager -------------------------------------------------------------
    def __enter__(self) -> Self:
        _CURRENT.set(_Frame(self.name, _CURRENT.get(), _now()))
        if self._baggage:
            token = otel_context.attach(baggage.set_baggage(BAGGAGE_KEY, self.name))
            _BAGGAGE_TOKENS.set((*_BAGGAGE_TOKENS.get(), (self, token)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._baggage:
            tokens = _BAGGAGE_TOKENS.get()
            # The innermost entry of this step object in this context (normally the last).
            for i in range(len(tokens) - 1, -1, -1):
                if tokens[i][0] is self:
                    _BAGGAGE_TOKENS.set(tokens[:i] + tokens[i + 1 :])
                    otel_context.detach(cast("Any", tokens[i][1]))
                    break
        frame = _CURRENT.get()
        if frame is not None and _TIMER[0] is not None:
            _time(frame)
        _CURRENT.set(None if frame is None else frame.outer)

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator -------------------------------------------------------------------
    def __call__(self, fn: _F) -> _F:
        if inspect.isasyncgenfunction(fn):
            return cast("_F", self._wrap_async_gen(fn))
        if inspect.isgeneratorfunction(fn):
            return cast("_F", self._wrap_gen(fn))
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await fn(*args, **kwargs)

            return cast("_F", run_async)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return cast("_F", run)

    # -- generators ----------------------------------------------------------------------
    # A generator body runs in its consumer's context, so a step it holds across a yield
    # (``with step("score"): yield x``) would leak into the consumer, and popping only this
    # step's frame after each resume would lose it. Instead the body keeps its own step stack:
    # it is swapped in for each resume and swapped out, whole, when the body yields.
    def _create(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Call a generator function with this step active (no body runs yet: untimed)."""
        outer = _CURRENT.get()
        _CURRENT.set(_Frame(self.name, outer))
        try:
            return fn(*args, **kwargs)
        finally:
            _CURRENT.set(outer)

    def _resume(self, body: _Frame | None) -> tuple[_Frame | None, object]:
        """Enter the body's step stack (a new one with this step on first resume)."""
        outer = _CURRENT.get()
        _CURRENT.set(body if body is not None else _Frame(self.name, outer))
        token = otel_context.attach(baggage.set_baggage(BAGGAGE_KEY, self.name)) if self._baggage else None
        return outer, token

    def _suspend(self, outer: _Frame | None, token: object) -> _Frame | None:
        """Leave the body's step stack, restore the consumer's, return the body's."""
        if token is not None:
            otel_context.detach(cast("Any", token))
        body = _CURRENT.get()
        _CURRENT.set(outer)
        return body

    def _wrap_gen(
        self, fn: Callable[..., Generator[Any, Any, Any]]
    ) -> Callable[..., Generator[Any, Any, Any]]:
        # The step is active only while the generator body runs, never in its consumer.
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            gen = self._create(fn, args, kwargs)
            body: _Frame | None = None
            to_send: Any = None
            to_throw: BaseException | None = None
            while True:
                outer, token = self._resume(body)
                try:
                    item = gen.send(to_send) if to_throw is None else gen.throw(to_throw)
                except StopIteration as stop:
                    return stop.value
                finally:
                    body = self._suspend(outer, token)
                to_send, to_throw = None, None
                try:
                    to_send = yield item
                except GeneratorExit:
                    outer, token = self._resume(body)
                    try:
                        gen.close()
                    finally:
                        self._suspend(outer, token)
                    raise
                except BaseException as exc:
                    to_throw = exc

        return run

    def _wrap_async_gen(
        self, fn: Callable[..., AsyncGenerator[Any, Any]]
    ) -> Callable[..., AsyncGenerator[Any, Any]]:
        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            agen = self._create(fn, args, kwargs)
            body: _Frame | None = None
            to_send: Any = None
            to_throw: BaseException | None = None
            while True:
                outer, token = self._resume(body)
                try:
                    item = await (agen.asend(to_send) if to_throw is None else agen.athrow(to_throw))
                except StopAsyncIteration:
                    return
                finally:
                    body = self._suspend(outer, token)
                to_send, to_throw = None, None
                try:
                    to_send = yield item
                except GeneratorExit:
                    outer, token = self._resume(body)
                    try:
                        await agen.aclose()
                    finally:
                        self._suspend(outer, token)
                    raise
                except BaseException as exc:
                    to_throw = exc

        return run

    def __repr__(self) -> str:
        return f"step({self.name!r})"


def mark_cascade_stage(stage: str, *, span: trace_api.Span | None = None) -> None:
    """Mark ``span`` (default: the current span), an LLM call's span, as the ``"cheap"`` or
    ``"expensive"`` stage of a cheap-then-expensive cascade: its step counts as a cascade
    from the first such call, and the stage wins over the call's model tier. Raises
    ``ValueError`` for another stage."""
    if stage not in CASCADE_STAGES:
        msg = f"cascade stage {stage!r}: expected one of {', '.join(CASCADE_STAGES)}"
        raise ValueError(msg)
    (span if span is not None else trace_api.get_current_span()).set_attribute(CASCADE_STAGE_KEY, stage)
