"""Which tier a model belongs to: frontier, mid, mini or specialist.

Names are matched on their parts, never on substrings: ``gemini`` is one part and does not
contain the part ``mini``. Provider prefixes (``openai/gpt-4o``, ``models/gemini-2.5-pro``,
``us.anthropic.claude-...``) and date or version suffixes are tolerated because matching
looks at parts wherever they stand.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = (
    "TIERS",
    "UNKNOWN_TIER",
    "catalog_tier",
    "name_parts",
)

#: Tiers from most to least expensive.
TIERS: Final = ("frontier", "mid", "mini", "specialist")
UNKNOWN_TIER: Final = "unknown"

_SPLIT: Final = re.compile(r"[^a-z0-9]+")


def name_parts(model: str) -> tuple[str, ...]:
    """Lower-cased alphanumeric parts of a model name: ``gpt-4o-mini`` -> ``('gpt', '4o', 'mini')``."""
    return tuple(part for part in _SPLIT.split(model.lower()) if part)


# Each rule: (tier, parts that must all be present). The first rule that matches wins, so
# the specific (rerankers, embedders, small variants) come before the family defaults.
_RULES: Final[tuple[tuple[str, frozenset[str]], ...]] = tuple(
    (tier, frozenset(parts.split()))
    for tier, parts in (
        # Specialists: rerankers, embedders, classifiers and guards.
        ("specialist", "rerank"),
        ("specialist", "reranker"),
        ("specialist", "zerank"),
        ("specialist", "embedding"),
        ("specialist", "embed"),
        ("specialist", "zembed"),
        ("specialist", "bge"),
        ("specialist", "e5"),
        ("specialist", "gte"),
        ("specialist", "minilm"),
        ("specialist", "mpnet"),
        ("specialist", "bert"),
        ("specialist", "distilbert"),
        ("specialist", "deberta"),
        ("specialist", "roberta"),
        ("specialist", "modernbert"),
        ("specialist", "classifier"),
        ("specialist", "colbert"),
        ("specialist", "voyage"),
        ("specialist", "nomic"),
        ("specialist", "moderation"),
        # Small variants of the big families.
        ("mini", "mini"),
        ("mini", "nano"),
        ("mini", "lite"),
        ("mini", "haiku"),
        ("mini", "small"),
        ("mini", "tiny"),
        ("mini", "ministral"),
        ("mini", "8b"),
        ("mini", "7b"),
        ("mini", "3b"),
        ("mini", "1b"),
        ("mini", "instant"),
        ("mini", "flash 8b"),
        # Big variants of families whose default is mid.
        ("frontier", "405b"),
        ("frontier", "large"),
        # Mid tier.
        ("mid", "oss"),
        ("mid", "flash"),
        ("mid", "70b"),
        ("mid", "72b"),
        ("mid", "32b"),
        ("mid", "medium"),
        ("mid", "codestral"),
        ("mid", "mixtral"),
        ("mid", "deepseek"),
        ("mid", "qwen"),
        ("mid", "llama"),
        ("mid", "mistral"),
        ("mid", "command"),
        ("mid", "gemma"),
        ("mid", "3 5 turbo"),
        # Frontier families.
        ("frontier", "opus"),
        ("frontier", "sonnet"),
        ("frontier", "claude"),
        ("frontier", "pro"),
        ("frontier", "ultra"),
        ("frontier", "gpt"),
        ("frontier", "o1"),
        ("frontier", "o3"),
        ("frontier", "o4"),
        ("frontier", "grok"),
        ("frontier", "gemini"),
    )
)


def catalog_tier(model: str) -> str | None:
    """The default catalog's tier for ``model``, or ``None`` when the catalog cannot place it."""
    parts = frozenset(name_parts(model))
    if not parts:
        return None
    for tier, needed in _RULES:
        if needed <= parts:
            return tier
    return None
