"""Which tier a model belongs to: frontier, mid, mini or specialist.

Names are matched on their parts, never on substrings: ``gemini`` is one part and does not
contain the part ``mini``. Provider prefixes (``openai/gpt-4o``, ``models/gemini-2.5-pro``,
``us.anthropic.claude-...``) and date or version suffixes are tolerated because matching
looks at parts wherever they stand.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

__all__ = (
    "FRONTIER",
    "MID",
    "MINI",
    "SPECIALIST",
    "SPECIALIZE_TARGETS",
    "TIERS",
    "UNCHANGED",
    "UNKNOWN_TIER",
    "SpecializeTarget",
    "Tier",
    "catalog_tier",
    "name_parts",
)

#: A tier a model can be placed in, from most to least expensive.
Tier = Literal["frontier", "mid", "mini", "specialist"]
TIERS: Final[tuple[Tier, ...]] = get_args(Tier)
FRONTIER: Final[Tier] = "frontier"
MID: Final[Tier] = "mid"
MINI: Final[Tier] = "mini"
SPECIALIST: Final[Tier] = "specialist"
#: The tier of a model nothing could place (neither the settings, the catalog nor a price).
UNKNOWN_TIER: Final = "unknown"
#: Where a step's work could run in the counterfactual: a tier, or ``unchanged`` (its
#: calls keep their own cost).
SpecializeTarget = Literal[Tier, "unchanged"]
SPECIALIZE_TARGETS: Final[tuple[SpecializeTarget, ...]] = get_args(SpecializeTarget)
UNCHANGED: Final[SpecializeTarget] = "unchanged"

_SPLIT: Final = re.compile(r"[^a-z0-9]+")


def name_parts(model: str) -> tuple[str, ...]:
    """Lower-cased alphanumeric parts of a model name: ``gpt-4o-mini`` -> ``('gpt', '4o', 'mini')``."""
    return tuple(part for part in _SPLIT.split(model.lower()) if part)


# Each rule: (tier, parts that must all be present). The first rule that matches wins, so
# the specific (rerankers, embedders, small variants) come before the family defaults.
_RULES: Final[tuple[tuple[Tier, frozenset[str]], ...]] = tuple(
    (tier, frozenset(parts.split()))
    for tier, parts in (
        # Specialists: rerankers, embedders, classifiers and guards.
        (SPECIALIST, "rerank"),
        (SPECIALIST, "reranker"),
        (SPECIALIST, "zerank"),
        (SPECIALIST, "embedding"),
        (SPECIALIST, "embed"),
        (SPECIALIST, "zembed"),
        (SPECIALIST, "bge"),
        (SPECIALIST, "e5"),
        (SPECIALIST, "gte"),
        (SPECIALIST, "minilm"),
        (SPECIALIST, "mpnet"),
        (SPECIALIST, "bert"),
        (SPECIALIST, "distilbert"),
        (SPECIALIST, "deberta"),
        (SPECIALIST, "roberta"),
        (SPECIALIST, "modernbert"),
        (SPECIALIST, "classifier"),
        (SPECIALIST, "colbert"),
        (SPECIALIST, "voyage"),
        (SPECIALIST, "nomic"),
        (SPECIALIST, "moderation"),
        # Small variants of the big families.
        (MINI, "mini"),
        (MINI, "nano"),
        (MINI, "lite"),
        (MINI, "haiku"),
        (MINI, "small"),
        (MINI, "tiny"),
        (MINI, "ministral"),
        (MINI, "8b"),
        (MINI, "7b"),
        (MINI, "3b"),
        (MINI, "1b"),
        (MINI, "instant"),
        (MINI, "flash 8b"),
        # Big variants of families whose default is mid.
        (FRONTIER, "405b"),
        (FRONTIER, "large"),
        # Mid tier.
        (MID, "oss"),
        (MID, "flash"),
        (MID, "70b"),
        (MID, "72b"),
        (MID, "32b"),
        (MID, "medium"),
        (MID, "codestral"),
        (MID, "mixtral"),
        (MID, "deepseek"),
        (MID, "qwen"),
        (MID, "llama"),
        (MID, "mistral"),
        (MID, "command"),
        (MID, "gemma"),
        (MID, "3 5 turbo"),
        # Frontier families.
        (FRONTIER, "opus"),
        (FRONTIER, "sonnet"),
        (FRONTIER, "claude"),
        (FRONTIER, "pro"),
        (FRONTIER, "ultra"),
        (FRONTIER, "gpt"),
        (FRONTIER, "o1"),
        (FRONTIER, "o3"),
        (FRONTIER, "o4"),
        (FRONTIER, "grok"),
        (FRONTIER, "gemini"),
    )
)


def catalog_tier(model: str) -> Tier | None:
    """The default catalog's tier for ``model``, or ``None`` when the catalog cannot place it."""
    parts = frozenset(name_parts(model))
    if not parts:
        return None
    for tier, needed in _RULES:
        if needed <= parts:
            return tier
    return None
