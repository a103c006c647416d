"""The ``otel-overspend`` command: ``demo``, ``rules``, ``deploy-kit`` and ``report``.

Subcommands import their modules inside the functions that use them, so a module that is
missing or broken fails only the subcommand that needs it.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ("build_parser", "main")

_RULES_HELP = "print Prometheus recording and alerting rules (see 'otel-overspend rules --help')"
_DEPLOY_KIT_HELP = (
    "write the fleet setup (compose file, Prometheus, Alertmanager, Grafana) into a directory"
    " (see 'otel-overspend deploy-kit --help')"
)


def _demo(args: argparse.Namespace) -> int:
    from otel_overspend import demo  # noqa: PLC0415 - loads the OpenTelemetry SDK

    return demo.run(args)


def _report(args: argparse.Namespace) -> int:
    from otel_overspend.report import cli as report_cli  # noqa: PLC0415 - loads pydantic and the attribution

    return report_cli.run(args)


def _rules(argv: Sequence[str]) -> int:
    try:
        from otel_overspend.rules import alerting  # noqa: PLC0415 - optional until it ships
    except ModuleNotFoundError as exc:
        if exc.name != "otel_overspend.rules.alerting":
            raise
        print("otel-overspend: the 'rules' subcommand is not available in this installation", file=sys.stderr)
        return 2
    return alerting.main(list(argv))


def _deploy_kit(argv: Sequence[str]) -> int:
    from otel_overspend.rules import deploy_kit  # noqa: PLC0415 - reads the package's kit files

    return deploy_kit.main(list(argv))


def version() -> str:
    """The installed package's version (``unknown`` when run from a tree never installed)."""
    from importlib.metadata import PackageNotFoundError  # noqa: PLC0415
    from importlib.metadata import version as installed  # noqa: PLC0415

    try:
        return installed("otel-overspend")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-overspend",
        description="Attribute LLM spend to pipeline steps, model tiers and dollars "
        "from OpenTelemetry spans.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run a synthetic RAG service and watch its spend move when a step is specialized",
        description="Run a synthetic RAG service through a real TracerProvider with OverspendProcessor, "
        "serve its metrics and print the diagnosis of the shortest window every few seconds.",
    )
    from otel_overspend.demo import add_arguments  # noqa: PLC0415

    add_arguments(demo)
    demo.set_defaults(handler=_demo)

    # Listed for --help only: main() hands 'rules' and 'deploy-kit' and everything after them to
    # the rules package.
    commands.add_parser("rules", help=_RULES_HELP, add_help=False)
    commands.add_parser("deploy-kit", help=_DEPLOY_KIT_HELP, add_help=False)

    report = commands.add_parser(
        "report",
        help="diagnose trace files offline: the live processor's four tests, per step and per period",
        description="Read OpenTelemetry trace files (the collector's file exporter output) and print the "
        "same diagnosis as the live processor: model concentration, spend by step, the specialized "
        "counterfactual, the specialist-eligible fraction and what to specialize next.",
    )
    from otel_overspend.report.cli import add_arguments as add_report_arguments  # noqa: PLC0415

    add_report_arguments(report)
    report.set_defaults(handler=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (the console script passes it to ``sys.exit``)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["rules"]:
        return _rules(args_list[1:])
    if args_list[:1] == ["deploy-kit"]:
        return _deploy_kit(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    return handler(args)
