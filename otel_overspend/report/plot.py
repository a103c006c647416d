"""The report's time series as a picture: the specialist-eligible fraction per period over
its health bands and alarm line, and each period's spend split by step.

``.html`` (and ``.svg``) are written with inline SVG and need nothing; ``.png`` needs
matplotlib (the ``plot`` extra).
"""

from __future__ import annotations

import html
import importlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from pathlib import Path

    from otel_overspend.report.run import Report

__all__ = ("PLOT_SUFFIXES", "PlotError", "write_plot")

PLOT_SUFFIXES: Final = (".png", ".html", ".htm", ".svg")
#: Step colours, in the order of the steps' total spend (Okabe-Ito, readable by most).
_COLOURS: Final = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#999999",
)
_BAND_COLOURS: Final = ("#e5f5e0", "#fff3cd", "#f8d7da")  # healthy, suspect, confirmed


class PlotError(Exception):
    """The plot cannot be written (an unknown suffix, matplotlib missing)."""


@dataclass(frozen=True, slots=True)
class _Series:
    labels: list[str]
    fractions: list[float | None]
    steps: list[str]
    #: shares[i][j]: share of step j in period i (0 when the step had no priced spend).
    shares: list[list[float]]
    suspect: float
    alarm: float
    confirmed: float
    title: str


def _series(report: Report) -> _Series:
    steps = [line.step for line in report.diagnosis.steps]
    band = report.fraction_band
    return _Series(
        labels=[
            datetime.fromtimestamp(p.start_s, tz=timezone.utc).strftime("%Y-%m-%d") for p in report.periods
        ],
        fractions=[p.diagnosis.specialist_eligible_fraction for p in report.periods],
        steps=steps,
        shares=[[p.diagnosis.step_shares.get(step, 0.0) for step in steps] for p in report.periods],
        suspect=band.suspect,
        alarm=report.alarm_fraction,
        confirmed=band.confirmed,
        title=f"Specialist-eligible fraction and spend by step, by {report.period or 'period'} (UTC)",
    )


def write_plot(report: Report, path: Path) -> None:
    """Write the plot to ``path``; its suffix picks the format (see :data:`PLOT_SUFFIXES`)."""
    suffix = path.suffix.lower()
    series = _series(report)
    if suffix == ".png":
        _png(series, path)
    elif suffix in (".html", ".htm"):
        path.write_text(_html(series), encoding="utf-8")
    elif suffix == ".svg":
        path.write_text(_svg(series), encoding="utf-8")
    else:
        raise PlotError(f"--plot {path}: use a file ending in {', '.join(PLOT_SUFFIXES)}")


# -- PNG ------------------------------------------------------------------------------------------
def _png(s: _Series, path: Path) -> None:
    try:
        # Optional (the 'plot' extra): only PNG plots need it.
        figure: Any = importlib.import_module("matplotlib.figure")
    except ModuleNotFoundError:
        raise PlotError(
            f"--plot {path}: a PNG needs matplotlib (pip install 'otel-overspend[plot]'); "
            "an .html plot needs nothing"
        ) from None
    fig = figure.Figure(figsize=(10, 7), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    x = list(range(len(s.labels)))
    for (low, high), colour, name in zip(
        ((0.0, s.suspect), (s.suspect, s.confirmed), (s.confirmed, 1.0)),
        _BAND_COLOURS,
        ("healthy", "suspect", "confirmed"),
        strict=True,
    ):
        top.axhspan(low, high, color=colour, label=name)
    top.axhline(s.alarm, color="#b02a37", linestyle="--", linewidth=1, label=f"alarm {s.alarm:g}")
    top.plot(x, [float("nan") if f is None else f for f in s.fractions], marker="o", color="#212529")
    top.set_ylim(0, 1)
    top.set_ylabel("specialist-eligible fraction")
    top.set_title(s.title)
    top.legend(loc="upper left", fontsize="small", ncols=4)
    base = [0.0] * len(x)
    for j, step in enumerate(s.steps):
        heights = [row[j] for row in s.shares]
        bottom.bar(x, heights, bottom=base, color=_COLOURS[j % len(_COLOURS)], label=step)
        base = [b + h for b, h in zip(base, heights, strict=True)]
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("share of spend")
    bottom.set_xticks(x, s.labels, rotation=45, ha="right")
    bottom.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    fig.savefig(path, format="png", dpi=100)


# -- SVG and HTML ------------------------------------------------------------------------------------
_W: Final = 860
_H: Final = 260
_LEFT: Final = 60
_RIGHT: Final = 150
_TOP: Final = 20
_BOTTOM: Final = 60


def _x(i: int, n: int) -> float:
    inner = _W - _LEFT - _RIGHT
    return _LEFT + inner * (i + 0.5) / max(n, 1)


def _y(v: float) -> float:
    return _TOP + (_H - _TOP - _BOTTOM) * (1 - v)


def _axes(s: _Series, y_label: str) -> list[str]:
    label = (
        f'<text x="14" y="{_y(0.5)}" transform="rotate(-90 14 {_y(0.5)})" text-anchor="middle" '
        f'font-size="12">{html.escape(y_label)}</text>'
    )
    out = [
        f'<line x1="{_LEFT}" y1="{_y(0)}" x2="{_W - _RIGHT}" y2="{_y(0)}" stroke="#333"/>',
        f'<line x1="{_LEFT}" y1="{_y(0)}" x2="{_LEFT}" y2="{_y(1)}" stroke="#333"/>',
        label,
    ]
    out += [
        f'<text x="{_LEFT - 6}" y="{_y(tick) + 4:.1f}" text-anchor="end" font-size="11">{tick:g}</text>'
        for tick in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    n = len(s.labels)
    every = max(1, n // 14)
    for i, label in enumerate(s.labels):
        if i % every == 0:
            x = _x(i, n)
            out.append(
                f'<text x="{x:.1f}" y="{_y(0) + 14}" transform="rotate(40 {x:.1f} {_y(0) + 14})" '
                f'font-size="11">{html.escape(label)}</text>'
            )
    return out


def _fraction_svg(s: _Series) -> str:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img">']
    parts.append(f"<title>{html.escape(s.title)}</title>")
    for (low, high), colour, name in zip(
        ((0.0, s.suspect), (s.suspect, s.confirmed), (s.confirmed, 1.0)),
        _BAND_COLOURS,
        ("healthy", "suspect", "confirmed"),
        strict=True,
    ):
        parts.append(
            f'<rect x="{_LEFT}" y="{_y(high):.1f}" width="{_W - _LEFT - _RIGHT}" '
            f'height="{_y(low) - _y(high):.1f}" fill="{colour}"><title>{name}</title></rect>'
        )
        parts.append(
            f'<text x="{_W - _RIGHT + 6}" y="{(_y(low) + _y(high)) / 2 + 4:.1f}" font-size="11">{name}</text>'
        )
    parts.append(
        f'<line class="alarm" x1="{_LEFT}" y1="{_y(s.alarm):.1f}" x2="{_W - _RIGHT}" y2="{_y(s.alarm):.1f}" '
        f'stroke="#b02a37" stroke-dasharray="6 4"/>'
        f'<text x="{_W - _RIGHT + 6}" y="{_y(s.alarm) + 4:.1f}" font-size="11" fill="#b02a37">'
        f"alarm {s.alarm:g}</text>"
    )
    parts += _axes(s, "specialist-eligible fraction")
    n = len(s.labels)
    points = [(_x(i, n), _y(f), f, s.labels[i]) for i, f in enumerate(s.fractions) if f is not None]
    if len(points) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
        parts.append(
            f'<polyline class="fraction" points="{path}" fill="none" stroke="#212529" stroke-width="2"/>'
        )
    for x, y, f, label in points:
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#212529">'
            f"<title>{html.escape(label)}: {f:.3f}</title></circle>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _shares_svg(s: _Series) -> str:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" role="img">']
    parts.append("<title>Share of spend by step</title>")
    parts += _axes(s, "share of spend")
    n = len(s.labels)
    width = 0.7 * (_W - _LEFT - _RIGHT) / max(n, 1)
    for i, row in enumerate(s.shares):
        base = 0.0
        for j, share in enumerate(row):
            if share <= 0:
                continue
            top = base + share
            tip = f"{html.escape(s.labels[i])} {html.escape(s.steps[j])}: {100 * share:.1f}%"
            parts.append(
                f'<rect class="share" x="{_x(i, n) - width / 2:.1f}" y="{_y(top):.1f}" width="{width:.1f}" '
                f'height="{_y(base) - _y(top):.1f}" fill="{_COLOURS[j % len(_COLOURS)]}">'
                f"<title>{tip}</title></rect>"
            )
            base = top
    for j, step in enumerate(s.steps):
        y, x = _TOP + 16 * j, _W - _RIGHT
        parts.append(
            f'<rect x="{x + 6}" y="{y}" width="10" height="10" fill="{_COLOURS[j % len(_COLOURS)]}"/>'
            f'<text x="{x + 20}" y="{y + 9}" font-size="11">{html.escape(step)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _svg(s: _Series) -> str:
    """Both charts stacked in one SVG document."""
    inner = [_fraction_svg(s), _shares_svg(s)]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{2 * _H}">\n'
        f'<g>{inner[0]}</g>\n<g transform="translate(0 {_H})">{inner[1]}</g>\n</svg>\n'
    )


def _html(s: _Series) -> str:
    title = html.escape(s.title)
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        "<style>body{font-family:system-ui,sans-serif;margin:2em}</style></head>\n"
        f"<body><h1>{title}</h1>\n{_fraction_svg(s)}\n{_shares_svg(s)}\n</body></html>\n"
    )
