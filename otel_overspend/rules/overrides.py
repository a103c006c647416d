"""Alert thresholds changed on the command line: ``--threshold NAME[:SEVERITY]=VALUE``.

``NAME`` is an alert name from :data:`otel_overspend.thresholds.ALERTS`; ``SEVERITY`` picks
one threshold of an alert that has several (the specialist-eligible fraction's ``warning``
and ``critical``) and may be left out when the alert has one. Whether a value makes sense
(a share between 0 and 1, a warning below its critical) is checked where the rules are
rendered, so the Python API checks it too.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from otel_overspend.thresholds import ALERTS, AlertThreshold

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = ("ThresholdOverride", "parse_threshold", "threshold_names", "with_thresholds")


@dataclass(frozen=True, slots=True)
class ThresholdOverride:
    """One ``--threshold``: the alert, the severity (``None``: the alert's only one), the value."""

    alert: str
    severity: str | None
    value: float

    @property
    def text(self) -> str:
        """The option's argument, as :func:`parse_threshold` reads it back."""
        name = self.alert if self.severity is None else f"{self.alert}:{self.severity}"
        return f"{name}={self.value:g}"


def parse_threshold(text: str) -> ThresholdOverride:
    """``"OverspendSpecialistEligibleFractionHigh:warning=0.4"`` -> an override (syntax only)."""
    name, sep, value_text = text.partition("=")
    alert, _, severity = name.strip().partition(":")
    if not sep or not alert:
        raise ValueError(f"expected NAME=VALUE or NAME:SEVERITY=VALUE, got {text!r}")
    try:
        value = float(value_text)
    except ValueError:
        raise ValueError(f"threshold {text!r}: {value_text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"threshold {text!r}: the value must be a finite number")
    return ThresholdOverride(alert, severity.strip() or None, value)


def threshold_names(alerts: Mapping[str, Sequence[AlertThreshold]] = ALERTS) -> list[str]:
    """Every name ``--threshold`` accepts, with the current value: ``Name:severity (0.3)``."""
    names: list[str] = []
    for alert, thresholds in alerts.items():
        for threshold in thresholds:
            name = alert if len(thresholds) == 1 else f"{alert}:{threshold.severity}"
            names.append(f"{name} ({threshold.value:g})")
    return names


def with_thresholds(
    overrides: Iterable[ThresholdOverride], *, alerts: Mapping[str, Sequence[AlertThreshold]] = ALERTS
) -> dict[str, tuple[AlertThreshold, ...]]:
    """A copy of ``alerts`` with the overridden values; :class:`ValueError` names what is wrong."""
    result = {name: tuple(thresholds) for name, thresholds in alerts.items()}
    seen: set[tuple[str, str]] = set()
    for override in overrides:
        thresholds = result.get(override.alert)
        if thresholds is None:
            raise ValueError(
                f"no alert named {override.alert!r} (--threshold {override.text});"
                f" the thresholds are: {', '.join(threshold_names(alerts))}"
            )
        severities = [t.severity for t in thresholds]
        severity = override.severity
        if severity is None:
            if len(thresholds) > 1:
                choices = " or ".join(f"{override.alert}:{s}" for s in severities)
                raise ValueError(f"{override.alert} has {len(thresholds)} thresholds: give {choices}")
            severity = severities[0]
        if severity not in severities:
            raise ValueError(
                f"{override.alert} has no {severity!r} threshold; its severities: {', '.join(severities)}"
            )
        if (override.alert, severity) in seen:
            raise ValueError(f"the {severity} threshold of {override.alert} is given twice")
        seen.add((override.alert, severity))
        result[override.alert] = tuple(
            dataclasses.replace(t, value=override.value) if t.severity == severity else t for t in thresholds
        )
    return result
