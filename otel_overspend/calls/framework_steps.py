"""Steps from the names frameworks already record on their spans.

Frameworks name the units of a pipeline; when those names are steps, no ``step()`` is
needed. Read, nearest first:

- Traceloop / OpenLLMetry: ``traceloop.entity.name`` of a ``@task`` / ``@workflow`` span
  (and of OpenLLMetry's LangChain and LangGraph spans: run and node names), and the last
  part of ``traceloop.entity.path``, which spans inside a task carry;
- Pydantic AI and the GenAI conventions: ``gen_ai.agent.name``;
- OpenInference's LangChain and LangGraph spans: the name of a ``CHAIN`` or ``AGENT`` span
  (a ``with_config(run_name=...)`` run, a graph node).

A name becomes a step through ``step_aliases`` (framework name -> step), else when it is a
valid step name itself (lower case): class names such as ``RunnableSequence`` or
``ChatOpenAI`` and LangGraph's ``__start__`` never do. These names are read once a span has
ended (Traceloop sets its entity name after the span starts), so the recorder gives an LLM
call whose step is still undecided the step of its nearest ancestor that has one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from otel_overspend.calls.conventions import SPAN_KIND_KEY
from otel_overspend.steps import is_step_name

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ("FRAMEWORK_KEYS", "FrameworkSteps")

ENTITY_NAME_KEY: Final = "traceloop.entity.name"
ENTITY_PATH_KEY: Final = "traceloop.entity.path"
TRACELOOP_KIND_KEY: Final = "traceloop.span.kind"
AGENT_NAME_KEY: Final = "gen_ai.agent.name"
#: OpenInference span kinds whose span name is the name a user gave (a run, a graph node).
_NAMED_KINDS: Final = frozenset({"CHAIN", "AGENT"})
#: Every attribute read here (the offline readers keep these).
FRAMEWORK_KEYS: Final = frozenset(
    {ENTITY_NAME_KEY, ENTITY_PATH_KEY, TRACELOOP_KIND_KEY, AGENT_NAME_KEY, SPAN_KIND_KEY}
)


class FrameworkSteps:
    """Reads a step from a span's final name and attributes; built once from settings."""

    __slots__ = ("_aliases", "_enabled")

    def __init__(self, *, aliases: Mapping[str, str] | None = None, enabled: bool = True) -> None:
        self._aliases = dict(aliases or {})
        self._enabled = enabled

    def _step(self, value: Any) -> str | None:
        if type(value) is not str:
            return None
        alias = self._aliases.get(value)
        if alias is not None:
            return alias
        return value if is_step_name(value) else None

    def of(self, name: str, attrs: Mapping[str, Any] | None) -> str | None:
        """The step the framework names for this span, if any."""
        if not self._enabled or not attrs or FRAMEWORK_KEYS.isdisjoint(attrs):
            return None
        get = attrs.get
        if get(TRACELOOP_KIND_KEY) is not None:
            found = self._step(get(ENTITY_NAME_KEY))
            if found is not None:
                return found
        path = get(ENTITY_PATH_KEY)
        if type(path) is str and path:
            found = self._step(path.rpartition(".")[2])
            if found is not None:
                return found
        found = self._step(get(AGENT_NAME_KEY))
        if found is not None:
            return found
        if get(SPAN_KIND_KEY) in _NAMED_KINDS:
            return self._step(name)
        return None
