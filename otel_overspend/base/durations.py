"""Durations as Prometheus writes them (``30s``, ``5m``, ``1h30m``): the settings' windows and
the alert rules' windows and ``for:`` read the same text, so they share one parser."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ("duration_ms", "format_duration_ms")

_UNIT_MS: Final[Mapping[str, int]] = {
    "y": 365 * 86_400_000,
    "w": 7 * 86_400_000,
    "d": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1_000,
    "ms": 1,
}
_DURATION: Final = re.compile(r"(?:[0-9]+(?:ms|s|m|h|d|w|y))+")
_PART: Final = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
#: The units a formatted duration is written in (a day as ``24h``).
_FORMAT_UNITS: Final = ("h", "m", "s", "ms")


def duration_ms(text: object) -> int:
    """``"5m"`` -> 300_000, ``"1h30m"`` -> 5_400_000. Raises :class:`ValueError` naming
    ``text`` for anything that is not a Prometheus duration (zero is one)."""
    if not isinstance(text, str) or _DURATION.fullmatch(text) is None:
        raise ValueError(f"not a Prometheus duration: {text!r} (use e.g. '30s', '5m' or '1h30m')")
    return sum(int(count) * _UNIT_MS[unit] for count, unit in _PART.findall(text))


def format_duration_ms(ms: int) -> str:
    """``5_400_000`` -> ``"1h30m"``: a text :func:`duration_ms` reads back as ``ms``."""
    if ms == 0:
        return "0s"
    parts: list[str] = []
    for unit in _FORMAT_UNITS:
        count, ms = divmod(ms, _UNIT_MS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
