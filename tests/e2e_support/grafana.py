"""Reading the shipped Grafana dashboard: its panels, their queries, and variable substitution."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "otel-overspend.json"
DATASOURCE_VARIABLE = "${datasource}"

_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
#: Characters Grafana escapes when it formats a multi-value variable as a Prometheus regex.
_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|\\]")


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL query of the dashboard: a panel target or an annotation."""

    where: str  # "panel 3 'Title' target A" or "annotation 'Name'"
    expr: str
    instant: bool
    datasource: Any


def load(path: Path = DASHBOARD) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, with the panels of collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: Mapping[str, Any]) -> Iterator[Query]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield Query(
                where=f"panel {panel.get('id')} {panel.get('title')!r} target {target.get('refId')}",
                expr=target["expr"],
                instant=bool(target.get("instant")) and not target.get("range"),
                datasource=target.get("datasource"),
            )
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            yield Query(
                where=f"annotation {annotation.get('name')!r}",
                expr=annotation["expr"],
                instant=False,
                datasource=annotation.get("datasource"),
            )


def variable(dashboard: Mapping[str, Any], name: str) -> dict[str, Any]:
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("name") == name:
            assert isinstance(var, dict)
            return var
    msg = f"dashboard has no variable {name!r}"
    raise LookupError(msg)


def prometheus_regex(values: Sequence[str]) -> str:
    r"""A multi-value selection as Grafana writes it into a Prometheus query: ``(a\\.b|c)``."""
    escaped = [_REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value) for value in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace ``$name``, ``${name}`` and Grafana's ``$__*`` variables; an unknown one raises ``KeyError``."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name not in values:
            msg = f"no value for ${name} in {expr!r}"
            raise KeyError(msg)
        return values[name]

    return _VARIABLE.sub(replace, expr)
