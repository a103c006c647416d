"""``otel-overspend deploy-kit DIR``: the files of docs/fleet.md, written for the installed version.

The kit is package data (``otel_overspend/rules/kit/``) plus what ``otel-overspend rules``
renders for the options given::

    docker-compose.yml                        the collector, Prometheus, Alertmanager, Grafana and an app
    app/Dockerfile                            the example app on this version of otel-overspend
    deploy/prometheus/prometheus.yml          scrape config; loads overspend.rules.yml beside it
    deploy/prometheus/overspend.rules.yml     rendered (otel-overspend rules ...)
    deploy/prometheus/tests/*.yml             promtool unit tests, written for the default rules only
    deploy/alertmanager/alertmanager.yml      routes, with the rendered inhibit_rules
    deploy/grafana/dashboards/otel-overspend.json
    deploy/grafana/provisioning/{datasources,dashboards}/*.yml
    deploy/otel-collector/config.yaml
    deploy/kubernetes/overspend-prometheusrule.yaml   rendered (--format operator)

The repository's own ``docker-compose.yml`` and ``deploy/`` are this kit written with
``--app-from-checkout`` (the app built from the source tree instead of the package index);
a test keeps them equal.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from otel_overspend.rules import alerting, command

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.abc import Traversable

__all__ = ("Kit", "main", "parse_args", "render_kit", "write_kit")

DISTRIBUTION: Final = "otel-overspend"
RULES: Final = "deploy/prometheus/overspend.rules.yml"
MANIFEST: Final = "deploy/kubernetes/overspend-prometheusrule.yaml"
ALERTMANAGER: Final = "deploy/alertmanager/alertmanager.yml"
DASHBOARD: Final = "deploy/grafana/dashboards/otel-overspend.json"
COMPOSE: Final = "docker-compose.yml"
PROMTOOL_TESTS: Final = "deploy/prometheus/tests/"
APP_DOCKERFILE: Final = "app/Dockerfile"

#: The compose file's app service, built from a source checkout (the package data's form) ...
_CHECKOUT_BUILD: Final = "    build:\n      context: .\n      dockerfile: examples/Dockerfile\n"
#: ... and from the package index (``{requirement}``: this version), as a pip user runs it.
_INDEX_BUILD: Final = (
    "    # The example app on the otel-overspend release that wrote this kit (app/Dockerfile).\n"
    "    build:\n"
    "      context: ./app\n"
    "      args:\n"
    "        OTEL_OVERSPEND_REQUIREMENT: {requirement}\n"
)


@dataclass(frozen=True, slots=True)
class Kit:
    """The kit's files (path relative to its directory -> text) and what the user should know."""

    files: dict[str, str]
    notes: tuple[str, ...]


@functools.cache
def _package_files() -> dict[str, str]:
    """Every file under ``otel_overspend/rules/kit/``, by its path in the kit."""
    files: dict[str, str] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            else:
                files[f"{prefix}{child.name}"] = child.read_text(encoding="utf-8")

    walk(resources.files("otel_overspend.rules") / "kit", "")
    return files


def _requirement() -> tuple[str, str | None]:
    """The pip requirement for this version, and a note when it is unknown."""
    try:
        return f"{DISTRIBUTION}=={metadata.version(DISTRIBUTION)}", None
    except metadata.PackageNotFoundError:
        return DISTRIBUTION, (
            f"{DISTRIBUTION} is not installed, so app/Dockerfile installs the newest release"
            " (set OTEL_OVERSPEND_REQUIREMENT in docker-compose.yml to pin one)"
        )


def _compose(text: str, *, app_from_checkout: bool, requirement: str) -> str:
    if app_from_checkout:
        return text
    if text.count(_CHECKOUT_BUILD) != 1:
        msg = "the packaged docker-compose.yml no longer builds the app from examples/Dockerfile"
        raise RuntimeError(msg)
    return text.replace(_CHECKOUT_BUILD, _INDEX_BUILD.format(requirement=requirement))


def _dashboard(text: str, *, windows: Sequence[str], alert_window: str) -> str:
    """The dashboard with its ``window`` variable offering the recorded windows."""
    if tuple(windows) == alerting.DEFAULT_WINDOWS and alert_window == alerting.DEFAULT_ALERT_WINDOW:
        return text
    model: dict[str, Any] = json.loads(text)
    for variable in model["templating"]["list"]:
        if variable.get("name") == "window":
            variable["description"] = f"Rate window of the recording rules; the alerts read {alert_window}."
            variable["query"] = ",".join(windows)
            variable["current"] = {"selected": True, "text": alert_window, "value": alert_window}
            variable["options"] = [{"selected": w == alert_window, "text": w, "value": w} for w in windows]
    return json.dumps(model, indent=2) + "\n"


def render_kit(args: argparse.Namespace, *, app_from_checkout: bool = False) -> Kit:
    """The kit for parsed ``deploy-kit`` (or ``rules``) options; :class:`ValueError` on a bad one."""
    kwargs = command.render_kwargs(args)
    rules = command.document(args, fmt="prometheus")
    default_rules = rules == alerting.render_rules()
    requirement, requirement_note = _requirement()
    notes: list[str] = [requirement_note] if requirement_note and not app_from_checkout else []
    files: dict[str, str] = {}
    for path, text in _package_files().items():
        if path == APP_DOCKERFILE and app_from_checkout:
            continue
        if path.startswith(PROMTOOL_TESTS) and not default_rules:
            continue
        if path == COMPOSE:
            text = _compose(text, app_from_checkout=app_from_checkout, requirement=requirement)  # noqa: PLW2901
        elif path == ALERTMANAGER:
            text += alerting.dump_yaml(command.document(args, fmt="inhibit"))  # noqa: PLW2901
        elif path == DASHBOARD:
            text = _dashboard(text, windows=kwargs["windows"], alert_window=args.alert_window)  # noqa: PLW2901
        files[path] = text
    files[RULES] = command.rules_text(rules, command.rule_argv(args))
    files[MANIFEST] = command.rules_text(
        command.document(args, fmt="operator"), command.rule_argv(args, fmt="operator")
    )
    if not default_rules:
        notes.append(
            f"{PROMTOOL_TESTS} is not written: its promtool tests expect the default rules"
            " (windows, for: durations, thresholds and runbook links)"
        )
    if args.thresholds:
        notes.append(f"{DASHBOARD} draws the default thresholds (otel_overspend/thresholds.py) on its panels")
    return Kit(files=dict(sorted(files.items())), notes=tuple(notes))


def write_kit(directory: Path, kit: Kit, *, force: bool = False) -> list[Path]:
    """Write ``kit`` into ``directory`` (created if missing); return the files written.

    A directory that already holds anything is refused unless ``force``; then the kit's files
    are overwritten, other files are left alone and promtool tests the kit leaves out are
    removed (they would test rules it no longer has).
    """
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory} is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise ValueError(f"{directory} is not empty: choose an empty or new directory, or give --force")
    written: list[Path] = []
    for relative, text in kit.files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        written.append(path)
    for relative in _package_files():
        if relative.startswith(PROMTOOL_TESTS) and relative not in kit.files:
            (directory / relative).unlink(missing_ok=True)
    return written


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-overspend deploy-kit",
        description="Write the fleet setup of docs/fleet.md into DIR: docker-compose.yml, the Prometheus "
        "scrape config and rules (with their promtool tests when the rules are the defaults), "
        "Alertmanager routes with the inhibition, the Grafana dashboard and its provisioning, the "
        "collector config and a PrometheusRule. The rule options are those of 'otel-overspend rules'.",
    )
    parser.add_argument("directory", metavar="DIR", type=Path, help="where to write the kit (new or empty)")
    parser.add_argument(
        "--force", action="store_true", help="write into a non-empty DIR (overwrites the kit)"
    )
    parser.add_argument(
        "--app-from-checkout",
        action="store_true",
        help="build the example app from the source checkout DIR is (how the repository's own "
        "docker-compose.yml and deploy/ are written) instead of installing this version from the index",
    )
    command.add_rule_arguments(parser)
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """``deploy-kit`` options (exits on a bad one, as argparse does)."""
    return _parser().parse_args(list(argv))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        kit = render_kit(args, app_from_checkout=args.app_from_checkout)
        written = write_kit(args.directory, kit, force=args.force)
    except ValueError as exc:
        parser.error(str(exc))
    for note in kit.notes:
        print(f"otel-overspend deploy-kit: note: {note}", file=sys.stderr)
    print(f"Wrote {len(written)} files into {args.directory}:")
    for path in written:
        print(f"  {path.relative_to(args.directory).as_posix()}")
    print(f"Start it: cd {args.directory} && docker compose up --build (see docs/fleet.md)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
