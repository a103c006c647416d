"""docs/configuration.md's "How a model gets its tier" says what the code does: every catalog
rule in its order, the size rule and the price bands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from otel_overspend.calls import catalog
from otel_overspend.calls.catalog import catalog_tier
from otel_overspend.calls.models import tier_from_price

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")


def _section() -> str:
    match = re.search(r"^## How a model gets its tier\n(.*?)(?=^## )", DOC, re.MULTILINE | re.DOTALL)
    assert match, "no '## How a model gets its tier' section in docs/configuration.md"
    return match.group(1)


def _table(first_header: str) -> list[tuple[str, str]]:
    """The (first cell, second cell) rows of the section's table whose header starts so."""
    lines = [line.strip() for line in _section().splitlines()]
    start = lines.index(next(line for line in lines if line.startswith(f"| {first_header} |")))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append((cells[0], cells[1]))
    return rows


def _codes(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_every_catalog_rule_is_documented_in_its_order() -> None:
    documented = [
        (tier, frozenset(code.split("+"))) for tier, cell in _table("tier") for code in _codes(cell)
    ]
    assert documented == list(catalog._RULES)


def test_the_documented_sizes_are_the_sizes_that_place_a_model() -> None:
    sizes = {size: tier for cell, tier in _table("size part") for size in _codes(cell)}
    assert sizes["7b"] == "mini"  # the acme-internal-7b
    for billions in range(1, 1_001):
        size = f"{billions}b"
        assert catalog_tier(f"acme-internal-{size}") == sizes.get(size), size


def test_the_documented_price_bands_are_the_code_s() -> None:
    rows = _table("input price per 1M tokens")
    floors = []
    for price, tier in rows[:-1]:
        match = re.fullmatch(r"\$(\d+\.\d+) or more", price)
        assert match, price
        floors.append((float(match.group(1)), tier))
    last_price, last_tier = rows[-1]
    assert last_price == f"below ${floors[-1][0]:.2f}"
    lower_tiers = [tier for _, tier in floors[1:]] + [last_tier]
    for (floor, tier), below in zip(floors, lower_tiers, strict=True):
        assert tier_from_price(floor) == tier
        assert tier_from_price(floor * (1 - 1e-9)) == below
    assert tier_from_price(0.0) == last_tier
    assert tier_from_price(1e6) == floors[0][1]


@pytest.mark.parametrize(
    ("model", "tier"),
    [
        ("text-embedding-3-small", "specialist"),
        ("gpt-4o-mini", "mini"),
        ("mistral-large", "frontier"),
        ("gpt-4o", "frontier"),
        ("acme-internal-7b", "mini"),
    ],
)
def test_the_documented_examples(model: str, tier: str) -> None:
    assert f"`{model}`" in _section()
    assert catalog_tier(model) == tier
