"""Step rules: the first rule that matches names the step, however the match is sped up."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from otel_overspend.calls.step_rules import DEFAULT_RULES, Rule, StepRules

KEYS = ("a", "b", "gen_ai.operation.name", "openinference.span.kind")
VALUES = ("x", "chat", "embeddings", "RERANKER", 1, 2.5, True)

rules_st = st.builds(
    Rule,
    step=st.sampled_from(("rerank", "embed", "judge")),
    span_name=st.sampled_from((None, re.compile("call"))),
    attribute=st.sampled_from((None, *KEYS)),
    equals=st.sampled_from((None, "x", "1", "chat", "embeddings")),
    matches=st.sampled_from((None, re.compile("^c"), re.compile("x"))),
)


def _first_match(rules: list[Rule], name: str, attrs: dict[str, Any]) -> str | None:
    """The rules tried one by one, in order: what ``StepRules.match`` must answer."""
    return next((rule.step for rule in rules if rule.test(name, attrs)), None)


@settings(max_examples=400, deadline=None)
@example(  # a value that is not a string is compared as its text
    user_rules=[Rule(step="judge", attribute="a", equals="1")], with_defaults=True, name="x", attrs={"a": 1}
)
@example(  # an attribute one rule compares and another reads by pattern
    user_rules=[
        Rule(step="judge", attribute="a", equals="x"),
        Rule(step="rerank", attribute="a", matches=re.compile("^c")),
    ],
    with_defaults=False,
    name="x",
    attrs={"a": "chat"},
)
@given(
    user_rules=st.lists(rules_st, max_size=5),
    with_defaults=st.booleans(),
    name=st.sampled_from(("call", "other")),
    attrs=st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=4),
)
def test_match_is_the_first_rule_that_matches(
    user_rules: list[Rule], with_defaults: bool, name: str, attrs: dict[str, Any]
) -> None:
    rules = [*user_rules, *DEFAULT_RULES] if with_defaults else user_rules
    assert StepRules(rules).match(name, attrs) == _first_match(rules, name, attrs)


def test_a_value_no_rule_compares_equal_to_matches_no_rule() -> None:
    rules = StepRules(DEFAULT_RULES)
    assert rules.match("chat claude", {"gen_ai.operation.name": "chat"}) is None
    assert rules.match("embed", {"gen_ai.operation.name": "embeddings"}) == "embed"
    # A rule that reads the same attribute with a pattern is still tried.
    with_pattern = StepRules(
        [Rule(step="judge", attribute="gen_ai.operation.name", matches=re.compile("^ch")), *DEFAULT_RULES]
    )
    assert with_pattern.match("chat claude", {"gen_ai.operation.name": "chat"}) == "judge"
