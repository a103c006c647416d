"""``otel-overspend deploy-kit``: the fleet files of docs/fleet.md from the package, and the
repository's ``deploy/`` and ``docker-compose.yml`` as that kit writes them."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from otel_overspend.rules import command, deploy_kit

from conftest import require_binary

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_SCHEMA = Path(__file__).resolve().parents[1] / "e2e_support" / "compose-spec.json"
IMAGE_TAG = re.compile(r"^[\w./-]+:v?\d+(\.\d+)+([-.\w]*)?$")
REGENERATE = "otel-overspend deploy-kit --app-from-checkout --force ."
FRACTION = "OverspendSpecialistEligibleFractionHigh"


def _kit(*argv: str, app_from_checkout: bool = False) -> deploy_kit.Kit:
    return deploy_kit.render_kit(
        deploy_kit.parse_args(["unused", *argv]), app_from_checkout=app_from_checkout
    )


def _written(tmp_path: Path, *argv: str) -> Path:
    directory = tmp_path / "kit"
    deploy_kit.write_kit(directory, _kit(*argv))
    return directory


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return data


def _run(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, f"{shlex.join(argv)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


# --------------------------------------------------------------------------- one source of truth


def test_repository_deploy_files_are_the_kit() -> None:
    """deploy/ and docker-compose.yml are written from otel_overspend/rules/kit/: edit those."""
    kit = _kit(app_from_checkout=True)
    stale = [path for path, text in kit.files.items() if (ROOT / path).read_text(encoding="utf-8") != text]
    assert not stale, (
        f"{stale} differ from the package's kit: edit otel_overspend/rules/kit/, then {REGENERATE}"
    )
    in_repo = {path.relative_to(ROOT).as_posix() for path in (ROOT / "deploy").rglob("*") if path.is_file()}
    extra = in_repo - set(kit.files)
    assert not extra, (
        f"{sorted(extra)} are in deploy/ but not in the package's kit (otel_overspend/rules/kit/)"
    )
    assert set(kit.files) - in_repo == {"docker-compose.yml"}
    assert not kit.notes


def test_the_kit_has_every_file_docs_fleet_names() -> None:
    files = set(_kit().files)
    assert {
        "docker-compose.yml",
        "app/Dockerfile",
        "deploy/prometheus/prometheus.yml",
        "deploy/prometheus/overspend.rules.yml",
        "deploy/alertmanager/alertmanager.yml",
        "deploy/grafana/dashboards/otel-overspend.json",
        "deploy/grafana/provisioning/datasources/prometheus.yml",
        "deploy/grafana/provisioning/dashboards/otel-overspend.yml",
        "deploy/otel-collector/config.yaml",
        "deploy/kubernetes/overspend-prometheusrule.yaml",
    } <= files
    assert len([f for f in files if f.startswith("deploy/prometheus/tests/")]) >= 8
    docs = (ROOT / "docs" / "fleet.md").read_text(encoding="utf-8")
    for named in re.findall(r"`((?:deploy/)?[\w./-]+\.(?:ya?ml|json))`", docs):
        assert any(f == named or f.endswith(f"/{named}") for f in files), named


# --------------------------------------------------------------------------- the kit a pip user gets


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts: list[tuple[str, str]] = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts.append((source, target))
    return mounts


def test_compose_file_is_valid_and_every_mount_is_in_the_kit(tmp_path: Path) -> None:
    directory = _written(tmp_path)
    compose = _yaml(directory / "docker-compose.yml")
    validator = jsonschema.Draft202012Validator(json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8")))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)
    mounts = [m for service in compose["services"].values() for m in _bind_mounts(service)]
    assert len(mounts) >= 7
    for source, _ in mounts:
        assert (directory / source).exists(), source
    repo = _yaml(ROOT / "docker-compose.yml")
    # Only how the app is built differs from the repository's compose file.
    assert {k: v for k, v in compose["services"].items() if k != "app"} == {
        k: v for k, v in repo["services"].items() if k != "app"
    }
    assert {k: v for k, v in compose["services"]["app"].items() if k != "build"} == {
        k: v for k, v in repo["services"]["app"].items() if k != "build"
    }


def test_app_is_this_version_from_the_index(tmp_path: Path) -> None:
    directory = _written(tmp_path)
    app = _yaml(directory / "docker-compose.yml")["services"]["app"]
    version = metadata.version("otel-overspend")
    assert app["build"] == {
        "context": "./app",
        "args": {"OTEL_OVERSPEND_REQUIREMENT": f"otel-overspend=={version}"},
    }
    dockerfile = (directory / "app" / "Dockerfile").read_text(encoding="utf-8")
    (base,) = re.findall(r"^FROM (\S+)$", dockerfile, re.MULTILINE)
    assert IMAGE_TAG.fullmatch(base), base
    assert "ARG OTEL_OVERSPEND_REQUIREMENT" in dockerfile
    assert 'pip install "$OTEL_OVERSPEND_REQUIREMENT"' in dockerfile
    # The replica comes from the same release's sdist (tests/test_packaging.py checks it is there)
    # and runs where the repository's compose file expects it.
    assert "*/examples/traffic_replica.py" in dockerfile
    assert app["command"][:2] == ["python", "examples/traffic_replica.py"]
    assert "WORKDIR /src" in dockerfile
    assert "--strip-components=1" in dockerfile


def test_kit_rules_are_what_rules_prints_for_the_same_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = [
        "--threshold",
        f"{FRACTION}:warning=0.4",
        "--window",
        "5m",
        "--alert-window",
        "5m",
        "--for",
        "1m",
    ]
    kit = _kit(*options)
    canonical = [
        "--window",
        "5m",
        "--alert-window",
        "5m",
        "--for",
        "1m",
        "--threshold",
        f"{FRACTION}:warning=0.4",
    ]
    for path, fmt in (
        ("deploy/prometheus/overspend.rules.yml", []),
        ("deploy/kubernetes/overspend-prometheusrule.yaml", ["--format", "operator"]),
    ):
        header, body = kit.files[path].split("\n", 1)
        # The header names the command that prints this file, ...
        assert header == f"# Generated by: {shlex.join(['otel-overspend', 'rules', *fmt, *canonical])}"
        # ... and that command prints it, as does the order the options were given in.
        for argv in (canonical, options):
            assert command.main([*fmt, *argv]) == 0
            assert capsys.readouterr().out.split("\n", 1)[1] == body
    rules = yaml.safe_load(kit.files["deploy/prometheus/overspend.rules.yml"])
    assert [g["name"] for g in rules["groups"]] == ["overspend.rules.5m", "overspend.alerts"]
    # The promtool tests expect the default rules: left out, and the user told why.
    assert not [path for path in kit.files if path.startswith("deploy/prometheus/tests/")]
    assert any("promtool tests expect the default rules" in note for note in kit.notes)
    # The dashboard offers the windows that are recorded.
    dashboard = json.loads(kit.files["deploy/grafana/dashboards/otel-overspend.json"])
    (window,) = [v for v in dashboard["templating"]["list"] if v["name"] == "window"]
    assert window["query"] == "5m"
    assert [o["value"] for o in window["options"]] == ["5m"]
    assert window["current"]["value"] == "5m"
    alertmanager = yaml.safe_load(kit.files["deploy/alertmanager/alertmanager.yml"])
    assert (
        alertmanager["inhibit_rules"]
        == command.document(command._parser().parse_args(options), fmt="inhibit")["inhibit_rules"]
    )


def test_promtool_tests_are_written_for_default_rules_only() -> None:
    assert any(path.startswith("deploy/prometheus/tests/") for path in _kit().files)
    for options in (
        ["--for-scale", "2"],
        ["--runbook-base-url", "https://wiki/x"],
        ["--threshold", "OverspendUnpricedModel=1"],
    ):
        assert not any(path.startswith("deploy/prometheus/tests/") for path in _kit(*options).files), options
    # Options that change only the PrometheusRule's metadata keep the rule file's tests.
    assert any(
        path.startswith("deploy/prometheus/tests/") for path in _kit("--namespace", "monitoring").files
    )


# --------------------------------------------------------------------------- writing


def test_refuses_a_non_empty_directory_unless_forced(tmp_path: Path) -> None:
    directory = tmp_path / "kit"
    directory.mkdir()
    (directory / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ValueError, match="not empty"):
        deploy_kit.write_kit(directory, _kit())
    assert sorted(p.name for p in directory.iterdir()) == ["notes.txt"]
    written = deploy_kit.write_kit(directory, _kit(), force=True)
    assert (directory / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert {p.relative_to(directory).as_posix() for p in written} == set(_kit().files)
    # Forced again with rules the tests do not fit: the kit's tests go, the rest is rewritten.
    (directory / "deploy" / "prometheus" / "prometheus.yml").write_text("edited", encoding="utf-8")
    deploy_kit.write_kit(directory, _kit("--for", "1m"), force=True)
    assert not list((directory / "deploy" / "prometheus" / "tests").iterdir())
    assert "edited" not in (directory / "deploy" / "prometheus" / "prometheus.yml").read_text(
        encoding="utf-8"
    )
    file = tmp_path / "file"
    file.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="not a directory"):
        deploy_kit.write_kit(file, _kit(), force=True)


def test_an_empty_directory_is_fine(tmp_path: Path) -> None:
    deploy_kit.write_kit(tmp_path, _kit())
    assert (tmp_path / "docker-compose.yml").is_file()


def test_command(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "kit"
    argv = [sys.executable, "-m", "otel_overspend", "deploy-kit", str(directory)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"Wrote {len(_kit().files)} files into {directory}" in result.stdout
    assert "docker compose up --build" in result.stdout
    assert result.stderr == ""
    written = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    assert written == set(_kit().files)
    again = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert again.returncode == 2
    assert "is not empty" in again.stderr
    assert "--force" in again.stderr
    bad = subprocess.run(
        [*argv, "--force", "--threshold", "Nope=1"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    assert f"{FRACTION}:warning (0.3)" in bad.stderr
    noted = subprocess.run(
        [*argv, "--force", "--threshold", f"{FRACTION}:warning=0.4"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert noted.returncode == 0, noted.stderr
    assert "note: deploy/prometheus/tests/ is not written" in noted.stderr


# --------------------------------------------------------------------------- the written files work


@pytest.mark.needs_binary
def test_promtool_and_amtool_accept_a_kit_with_other_options(tmp_path: Path) -> None:
    promtool = require_binary("promtool", "prometheus")
    amtool = require_binary("amtool", "prometheus-alertmanager")
    directory = _written(tmp_path, "--threshold", f"{FRACTION}:critical=0.6", "--window", "5m", "--for", "2m")
    # As compose mounts them: prometheus.yml and the rules side by side in /etc/prometheus.
    compose = _yaml(directory / "docker-compose.yml")
    etc = tmp_path / "mounted"
    for source, target in _bind_mounts(compose["services"]["prometheus"]):
        destination = etc / PurePosixPath(target).relative_to("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes((directory / source).read_bytes())
    output = _run([promtool, "check", "config", str(etc / "etc" / "prometheus" / "prometheus.yml")])
    assert "1 rule files found" in output, output
    _run([amtool, "check-config", str(directory / "deploy" / "alertmanager" / "alertmanager.yml")])


def test_promtool_tests_find_the_rules_in_a_written_kit(tmp_path: Path) -> None:
    """The tests themselves run in test_alert_rules.py on deploy/, which is this kit."""
    directory = _written(tmp_path)
    tests = sorted((directory / "deploy" / "prometheus" / "tests").glob("*.yml"))
    assert tests
    for test in tests:
        for rule_file in _yaml(test)["rule_files"]:
            assert (
                test.parent / rule_file
            ).resolve() == directory / "deploy" / "prometheus" / "overspend.rules.yml"
