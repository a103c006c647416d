"""Rules that name a span's step from its name and attributes, when no code marked it.

The built-in rules read the hints instrumentations already emit (OpenInference span kinds,
the GenAI operation name, OpenLLMetry's request type). User rules come first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from otel_overspend.calls.framework_steps import FrameworkSteps

if TYPE_CHECKING:
    import re
    from collections.abc import Iterable, Mapping

__all__ = ("DEFAULT_RULES", "Rule", "StepRules")


@dataclass(frozen=True, slots=True)
class Rule:
    step: str
    span_name: re.Pattern[str] | None = None
    attribute: str | None = None
    equals: str | None = None
    matches: re.Pattern[str] | None = None

    def test(self, name: str, attrs: Mapping[str, Any]) -> bool:
        if self.span_name is not None and self.span_name.search(name) is None:
            return False
        if self.attribute is None:
            return True
        value = attrs.get(self.attribute)
        if value is None:
            return False
        if self.equals is None and self.matches is None:
            return True
        text = _text(value)
        if self.equals is not None and text != self.equals:
            return False
        return self.matches is None or self.matches.search(text) is not None


def _text(value: object) -> str:
    """An attribute's value as the rules compare it."""
    return value if type(value) is str else str(value)


def _attr(attribute: str, equals: str, step: str) -> Rule:
    return Rule(step=step, attribute=attribute, equals=equals)


DEFAULT_RULES: Final = (
    _attr("openinference.span.kind", "RERANKER", "rerank"),
    _attr("openinference.span.kind", "EMBEDDING", "embed"),
    _attr("openinference.span.kind", "RETRIEVER", "retrieve"),
    _attr("openinference.span.kind", "EVALUATOR", "evaluate"),
    _attr("openinference.span.kind", "GUARDRAIL", "guardrail"),
    _attr("gen_ai.operation.name", "embeddings", "embed"),
    _attr("gen_ai.operation.name", "retrieval", "retrieve"),
    _attr("llm.request.type", "rerank", "rerank"),
    _attr("llm.request.type", "embedding", "embed"),
)


class StepRules:
    """An ordered rule list; the first match names the step."""

    __slots__ = ("_only_equals", "_rules", "framework", "keys", "on_names")

    def __init__(self, rules: Iterable[Rule], *, framework: FrameworkSteps | None = None) -> None:
        self._rules = tuple(rules)
        #: Steps from the names frameworks record, read on a span's final attributes.
        self.framework = framework if framework is not None else FrameworkSteps()
        #: The attributes the rules read: a span with none of them is matched by no rule
        #: unless :attr:`on_names` (most spans carry none of them).
        self.keys = frozenset(r.attribute for r in self._rules if r.attribute is not None)
        #: Whether a rule may match on the span's name alone.
        self.on_names = any(r.attribute is None for r in self._rules)
        #: When every rule only compares an attribute's value (as the built-in rules do):
        #: each attribute read, with the values its rules match. A span whose values are
        #: none of them is matched by no rule, without trying each (most LLM spans carry
        #: ``gen_ai.operation.name``, a key the built-in rules read, as ``chat``).
        self._only_equals: tuple[tuple[str, frozenset[str]], ...] | None = None
        if all(
            r.attribute is not None and r.equals is not None and r.span_name is None and r.matches is None
            for r in self._rules
        ):
            values: dict[str, set[str]] = {}
            for r in self._rules:
                values.setdefault(r.attribute, set()).add(r.equals)  # type: ignore[arg-type]
            self._only_equals = tuple((key, frozenset(found)) for key, found in values.items())

    def at_end(self, name: str, attrs: Mapping[str, Any] | None) -> str | None:
        """The step an ended span's final name and attributes give: a framework's name for
        it, else the first rule that matches."""
        return self.framework.of(name, attrs) or self.match(name, attrs)

    def match(self, name: str, attrs: Mapping[str, Any] | None) -> str | None:
        if not self.on_names:
            if not attrs:
                return None
            only_equals = self._only_equals
            if only_equals is not None:
                get = attrs.get
                for key, allowed in only_equals:
                    value = get(key)
                    if value is not None and _text(value) in allowed:
                        break  # a rule may match: try them in order
                else:
                    return None
            elif self.keys.isdisjoint(attrs):
                return None
        present = self.keys.intersection(attrs) if attrs else frozenset()
        values: Mapping[str, Any] = attrs or {}
        for rule in self._rules:
            if rule.attribute is not None and rule.attribute not in present:
                continue
            if rule.test(name, values):
                return rule.step
        return None
