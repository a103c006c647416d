"""``otel-overspend rules``: its options, shared with ``otel-overspend deploy-kit``, and its output.

Every option that changes the rules (windows, ``for:`` durations, thresholds, runbook links)
is defined once here; the deploy kit writes the same files ``rules`` prints for them, with a
header naming the ``rules`` command that prints that file.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import TYPE_CHECKING, Any

from otel_overspend.rules import alerting
from otel_overspend.rules.overrides import parse_threshold, threshold_names, with_thresholds
from otel_overspend.steps import validate_step_name

if TYPE_CHECKING:
    from collections.abc import Sequence

    from otel_overspend.rules.overrides import ThresholdOverride

__all__ = ("add_rule_arguments", "document", "main", "rule_argv", "rules_text")

FORMATS = ("prometheus", "operator", "inhibit")


def _label(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        msg = f"expected KEY=VALUE, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return key, val


def _threshold(value: str) -> ThresholdOverride:
    try:
        return parse_threshold(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _step(text: str) -> str:
    try:
        return validate_step_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_rule_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that change the rules (every one but ``--format``)."""
    parser.add_argument(
        "--window",
        action="append",
        dest="windows",
        metavar="DURATION",
        help=f"a rate window to record (repeatable; default {' '.join(alerting.DEFAULT_WINDOWS)});"
        " the alert window is always recorded",
    )
    parser.add_argument(
        "--alert-window",
        default=alerting.DEFAULT_ALERT_WINDOW,
        metavar="DURATION",
        help=f"the rate window the alerts read (default {alerting.DEFAULT_ALERT_WINDOW})",
    )
    durations = parser.add_mutually_exclusive_group()
    durations.add_argument(
        "--for-scale", type=float, default=1.0, metavar="FACTOR", help="multiply every for: duration"
    )
    durations.add_argument("--for", dest="for_duration", metavar="DURATION", help="use this for: everywhere")
    parser.add_argument(
        "--threshold",
        action="append",
        dest="thresholds",
        type=_threshold,
        default=[],
        metavar="NAME[:SEVERITY]=VALUE",
        help="change one alert threshold (repeatable); SEVERITY only for an alert with several. "
        "Shares are fractions (0.4, not 40). The thresholds and their defaults: "
        + ", ".join(threshold_names()),
    )
    parser.add_argument(
        "--runbook-base-url",
        default=alerting.DEFAULT_RUNBOOK_BASE_URL,
        metavar="URL",
        help="where each alert's runbook_url points: this URL plus '#alert-<name>' "
        f"(default {alerting.DEFAULT_RUNBOOK_BASE_URL})",
    )
    parser.add_argument(
        "--name", default=alerting.DEFAULT_MANIFEST_NAME, help="PrometheusRule name (operator format)"
    )
    parser.add_argument("--namespace", help="PrometheusRule namespace (operator format)")
    parser.add_argument(
        "--label",
        action="append",
        type=_label,
        default=[],
        metavar="KEY=VALUE",
        help="extra PrometheusRule label, e.g. release=kube-prometheus-stack (repeatable)",
    )


def rule_argv(args: argparse.Namespace, *, fmt: str = "prometheus") -> list[str]:
    """The ``rules`` options that print the ``fmt`` document for ``args``, the defaults left out."""
    argv: list[str] = [] if fmt == "prometheus" else ["--format", fmt]
    if fmt == "inhibit":
        return argv + [arg for t in args.thresholds for arg in ("--threshold", t.text)]
    for window in args.windows or ():
        argv += ["--window", window]
    if args.alert_window != alerting.DEFAULT_ALERT_WINDOW:
        argv += ["--alert-window", args.alert_window]
    if args.for_scale != 1:
        argv += ["--for-scale", f"{args.for_scale:g}"]
    if args.for_duration is not None:
        argv += ["--for", args.for_duration]
    argv += [arg for t in args.thresholds for arg in ("--threshold", t.text)]
    if args.runbook_base_url != alerting.DEFAULT_RUNBOOK_BASE_URL:
        argv += ["--runbook-base-url", args.runbook_base_url]
    if fmt == "operator":
        if args.name != alerting.DEFAULT_MANIFEST_NAME:
            argv += ["--name", args.name]
        if args.namespace is not None:
            argv += ["--namespace", args.namespace]
        argv += [arg for key, value in args.label for arg in ("--label", f"{key}={value}")]
    return argv


def render_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`~otel_overspend.rules.alerting.render_rules` keywords for ``args``; :class:`ValueError`
    when a threshold names no alert."""
    windows: list[str] = list(args.windows or alerting.DEFAULT_WINDOWS)
    if args.alert_window not in windows:
        windows.insert(0, args.alert_window)
    return {
        "windows": tuple(windows),
        "alert_window": args.alert_window,
        "alerts": with_thresholds(args.thresholds),
        "runbook_base_url": args.runbook_base_url,
        "for_scale": args.for_scale,
        "for_duration": args.for_duration,
    }


def document(args: argparse.Namespace, *, fmt: str) -> dict[str, Any]:
    """The ``fmt`` document for ``args``; :class:`ValueError` names a bad option value."""
    kwargs = render_kwargs(args)
    if fmt == "inhibit":
        alerting.render_rules(**kwargs)  # checks the thresholds the inhibition pairs
        return alerting.alertmanager_inhibit_rules(alerts=kwargs["alerts"])
    if fmt == "operator":
        return alerting.render_prometheus_rule_manifest(
            name=args.name, namespace=args.namespace, labels=dict(args.label), **kwargs
        )
    return alerting.render_rules(**kwargs)


def rules_text(document: dict[str, Any], argv: Sequence[str]) -> str:
    """``document`` as YAML under a header naming the command that prints it."""
    command = shlex.join(["otel-overspend", "rules", *argv])
    header = (
        f"# Generated by: {command}\n"
        "# Windows, for: durations, alert thresholds (--threshold NAME[:SEVERITY]=VALUE) and runbook"
        " links are options: see 'otel-overspend rules --help'.\n"
    )
    return header + alerting.dump_yaml(document)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-overspend rules",
        description="Write the overspend Prometheus recording and alerting rules as YAML to stdout.",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="prometheus",
        help="a Prometheus rule file, a prometheus-operator PrometheusRule, or Alertmanager inhibit_rules",
    )
    add_rule_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args_list = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(args_list)
    try:
        rendered = document(args, fmt=args.format)
    except ValueError as exc:
        parser.error(str(exc))
    sys.stdout.write(rules_text(rendered, args_list))
    return 0
