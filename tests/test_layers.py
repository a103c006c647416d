"""The package's layers: a module imports only from its own layer or the layers below.

The order follows a span's path (see docs/design.md): the step marker and the numbers at
the bottom; then reading a call; counting calls; settings; the span hooks and, beside them,
the exporters (neither imports the other); the processor that attaches exporters to the
hooks; and on top what users run (the report, the rules, the integrations, the CLI).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "otel_overspend"

#: Layer of each part of the package, lowest first; equal numbers may not import each other
#: unless they are the same part.
LAYERS = {
    "steps": 0,
    "thresholds": 0,
    "base": 1,
    "calls": 2,
    "accounting": 3,
    "config": 4,
    "hooks": 5,
    "exporters": 5,
    "processor": 6,
    "report": 7,
    "rules": 7,
    "integrations": 7,
    "demo": 8,
    "cli": 9,
    "__main__": 10,
    "__init__": 10,
}


def _part(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _imported_parts(path: Path) -> set[str]:
    """The parts of the package a module imports, at any depth (TYPE_CHECKING and
    function-level imports included)."""
    parts: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module == "otel_overspend":
                names = [f"otel_overspend.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "otel_overspend" and len(pieces) > 1:
                parts.add(pieces[1])
    return parts


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_part_has_a_layer() -> None:
    assert {_part(p) for p in MODULES} == set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_from_a_layer_above_or_beside_it(path: Path) -> None:
    own = _part(path)
    wrong = {
        part
        for part in _imported_parts(path)
        if part != own and (part not in LAYERS or LAYERS[part] >= LAYERS[own])
    }
    # The package's own __init__ names the public objects lazily, from any layer.
    if own == "__init__":
        wrong = {part for part in wrong if part not in LAYERS}
    assert not wrong, f"{path.relative_to(PACKAGE)} imports from {sorted(wrong)} (layers: {LAYERS})"
