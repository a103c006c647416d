"""The docker-compose example and its configuration files, checked without a Docker engine.

What runs for real: the compose file against the Compose Specification's JSON schema (vendored
in ``e2e_support/compose-spec.json``), ``promtool check config`` on the Prometheus configuration
both in the checkout and laid out as compose mounts it, ``promtool check rules`` on every
dashboard query (as a PromQL syntax check), ``amtool check-config`` and ``amtool config routes
test`` on the Alertmanager configuration. What is structural only: the collector configuration
(no ``otelcol`` binary here), the Dockerfile, Grafana's provisioning files and dashboard model,
and how the services' ports, mounts and addresses fit together.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml
from e2e_support import grafana
from prometheus_client import CollectorRegistry

from otel_overspend import OverspendProcessor, Settings
from otel_overspend.rules.alerting import DEFAULT_ALERT_WINDOW, DEFAULT_WINDOWS, alertmanager_inhibit_rules
from otel_overspend.thresholds import ALERTS, BANDS

from conftest import require_binary

pytestmark = [pytest.mark.needs_binary]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = Path(__file__).resolve().parents[1] / "e2e_support" / "compose-spec.json"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
RULES_FILE = ROOT / "deploy" / "prometheus" / "overspend.rules.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
COLLECTOR_CONFIG = ROOT / "deploy" / "otel-collector" / "config.yaml"
GRAFANA_DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_DASHBOARDS = ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "otel-overspend.yml"

IMAGE_TAG = re.compile(r"^[\w./-]+:v?\d+(\.\d+)+([-.\w]*)?$")
COMPONENT_ID = re.compile(r"^[a-z][a-z0-9_]*(/[^/\s]+)?$")
PIPELINE_ID = re.compile(r"^(traces|metrics|logs)(/[^/\s]+)?$")


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binary("promtool", "prometheus")


@pytest.fixture(scope="module")
def amtool() -> str:
    return require_binary("amtool", "prometheus-alertmanager")


def _run(argv: list[str]) -> str:
    """The command's standard output; fails the test with both streams if it exits non-zero."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, f"{shlex.join(argv)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


# --------------------------------------------------------------------------- compose helpers


def _mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, container target, is a bind mount) of each volume, short or long syntax."""
    mounts: list[tuple[str, str, bool]] = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            source, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
            bind = source.startswith((".", "/", "~"))
        else:
            source, target = volume.get("source", ""), volume["target"]
            bind = volume.get("type") == "bind"
        mounts.append((source, target, bind))
    return mounts


def _host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """Where a container path of ``service`` comes from in the checkout (longest bind mount first)."""
    path = PurePosixPath(container_path)
    binds = sorted(((s, t) for s, t, bind in _mounts(service) if bind), key=lambda m: -len(m[1]))
    for source, target in binds:
        if path == PurePosixPath(target) or PurePosixPath(target) in path.parents:
            return (COMPOSE_FILE.parent / source / path.relative_to(target)).resolve()
    return None


def _in_named_volume(service: dict[str, Any], container_path: str) -> bool:
    path = PurePosixPath(container_path)
    return any(
        not bind and (PurePosixPath(target) == path or PurePosixPath(target) in path.parents)
        for _, target, bind in _mounts(service)
    )


def _container_ports(service: dict[str, Any]) -> set[int]:
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.add(int(port["target"]))
        else:
            ports.add(int(str(port).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def _published_ports(service: dict[str, Any]) -> set[int]:
    """Container ports published on the host (``ports:``, short or long syntax)."""
    return {
        int(p["target"]) if isinstance(p, dict) else int(str(p).split("/")[0].rsplit(":", 1)[-1])
        for p in service.get("ports", [])
    }


def _flag(command: list[str], name: str) -> str:
    for i, arg in enumerate(command):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name:
            return command[i + 1]
    msg = f"{name} not in {command}"
    raise AssertionError(msg)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.split("://")[-1], int(port.rstrip("/"))


# --------------------------------------------------------------------------- compose


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)
    # The schema catches misspelled keys, not just shapes:
    assert list(validator.iter_errors({"services": {"app": {"imgae": "python:3.12"}}}))


def test_compose_has_the_whole_loop(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"app", "otel-collector", "prometheus", "alertmanager", "grafana"}


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            dockerfile = COMPOSE_FILE.parent / service["build"]["context"] / service["build"]["dockerfile"]
            assert dockerfile.is_file(), name
            continue
        assert IMAGE_TAG.fullmatch(service["image"]), f"{name}: pin a version tag, not {service['image']!r}"


def test_every_bind_mount_exists_and_every_named_volume_is_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source, target, bind in _mounts(service):
            assert PurePosixPath(target).is_absolute(), (name, target)
            if bind:
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source!r} is not declared"


def test_depends_on_names_services(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for other in service.get("depends_on", []):
            assert other in compose["services"], (name, other)


# --------------------------------------------------------------------------- Dockerfile


def _dockerfile(compose: dict[str, Any]) -> tuple[Path, list[list[str]]]:
    build = compose["services"]["app"]["build"]
    path = COMPOSE_FILE.parent / build["context"] / build["dockerfile"]
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    lines = [
        shlex.split(line) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    return path, lines


def test_dockerfile_installs_the_checkout_and_runs_the_replica(compose: dict[str, Any]) -> None:
    path, lines = _dockerfile(compose)
    context = COMPOSE_FILE.parent / compose["services"]["app"]["build"]["context"]
    instructions = [line[0].upper() for line in lines]
    froms = [line[1] for line in lines if line[0].upper() == "FROM"]
    assert froms, path
    assert all(IMAGE_TAG.fullmatch(image) for image in froms), froms
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    readme_line = re.search(r'^readme = "([^"]+)"$', pyproject, re.MULTILINE)
    assert readme_line is not None
    readme = readme_line.group(1)
    copied: list[str] = []
    for line in lines:
        if line[0].upper() == "COPY":
            copied += [arg for arg in line[1:-1] if not arg.startswith("--")]
    # pip needs the README pyproject.toml names; whether it exists is the packaging's concern.
    assert {"pyproject.toml", readme, "otel_overspend", "examples"} <= set(copied), copied
    for source in copied:
        if source != readme:
            assert (context / source).exists(), f"COPY {source}: not in the build context"
    assert any(line[0].upper() == "RUN" and line[1:4] == ["pip", "install", "."] for line in lines), lines
    assert instructions[-1] == "CMD"
    command = compose["services"]["app"]["command"]
    assert command[:2] == ["python", "examples/traffic_replica.py"]
    assert (ROOT / command[1]).is_file()
    assert _flag(command, "--host") == "0.0.0.0"  # inside its container


def test_app_is_reachable_where_it_is_scraped_and_sends_traces_to_the_collector(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    app = services["app"]
    port = int(_flag(app["command"], "--port"))
    assert port in _container_ports(app)
    endpoint = app["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    host, otlp_port = _host_port(endpoint)
    assert host == "otel-collector"
    assert app["environment"]["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    collector = _yaml(COLLECTOR_CONFIG)
    grpc = collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert _host_port(grpc)[1] == otlp_port
    assert otlp_port in _container_ports(services["otel-collector"])
    windows = app["environment"]["OVERSPEND_WINDOWS"]
    Settings(windows=windows, serve_metrics=False)  # valid for the app's settings


# --------------------------------------------------------------------------- Prometheus


def test_promtool_accepts_the_config_in_the_checkout(promtool: str) -> None:
    output = _run([promtool, "check", "config", str(PROMETHEUS_CONFIG)])
    assert "1 rule files found" in output, output


def test_promtool_accepts_the_config_as_compose_mounts_it(
    compose: dict[str, Any], promtool: str, tmp_path: Path
) -> None:
    service = compose["services"]["prometheus"]
    for source, target, bind in _mounts(service):
        if bind:
            destination = tmp_path / target.lstrip("/")
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(COMPOSE_FILE.parent / source, destination)
    config = tmp_path / _flag(service["command"], "--config.file").lstrip("/")
    for rule_file in _yaml(PROMETHEUS_CONFIG)["rule_files"]:
        assert (config.parent / rule_file).is_file(), rule_file
        assert (PROMETHEUS_CONFIG.parent / rule_file).resolve() == RULES_FILE
    output = _run([promtool, "check", "config", str(config)])
    assert "1 rule files found" in output, output


def test_every_scrape_target_is_a_compose_service_port(compose: dict[str, Any]) -> None:
    services = compose["services"]
    config = _yaml(PROMETHEUS_CONFIG)
    targets = [
        (job["job_name"], target)
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    targets += [
        ("alerting", target)
        for am in config["alerting"]["alertmanagers"]
        for static in am["static_configs"]
        for target in static["targets"]
    ]
    assert {job for job, _ in targets} >= {"rag-example", "otel-collector", "alerting"}
    for job, target in targets:
        host, port = _host_port(target)
        assert host in services, f"{job}: {target} is not a compose service"
        assert port in _container_ports(services[host]), f"{job}: {host} does not expose {port}"


def test_collector_ports_are_the_scraped_ones(compose: dict[str, Any]) -> None:
    collector = _yaml(COLLECTOR_CONFIG)
    scraped = {
        _host_port(t)[1]
        for job in _yaml(PROMETHEUS_CONFIG)["scrape_configs"]
        for static in job["static_configs"]
        for t in static["targets"]
        if _host_port(t)[0] == "otel-collector"
    }
    exporter_port = _host_port(collector["exporters"]["prometheus"]["endpoint"])[1]
    (reader,) = collector["service"]["telemetry"]["metrics"]["readers"]
    telemetry_port = int(reader["pull"]["exporter"]["prometheus"]["port"])
    assert scraped == {exporter_port, telemetry_port}
    published = _published_ports(compose["services"]["otel-collector"])
    for protocol in ("grpc", "http"):
        endpoint = collector["receivers"]["otlp"]["protocols"][protocol]["endpoint"]
        host, port = _host_port(endpoint)
        assert host == "0.0.0.0", endpoint  # it listens in its container
        assert port in published, endpoint


# --------------------------------------------------------------------------- Alertmanager


def test_amtool_accepts_the_config(compose: dict[str, Any], amtool: str) -> None:
    _run([amtool, "check-config", str(ALERTMANAGER_CONFIG)])
    service = compose["services"]["alertmanager"]
    assert _host_path(service, _flag(service["command"], "--config.file")) == ALERTMANAGER_CONFIG.resolve()
    assert _in_named_volume(service, _flag(service["command"], "--storage.path"))


def test_overspend_alerts_route_to_the_overspend_receiver(amtool: str) -> None:
    for alertname in ALERTS:
        for severity in {t.severity for t in ALERTS[alertname]}:
            receiver = _run(
                [
                    amtool,
                    "config",
                    "routes",
                    "test",
                    f"--config.file={ALERTMANAGER_CONFIG}",
                    f"alertname={alertname}",
                    f"severity={severity}",
                ]
            )
            assert receiver.split() == ["overspend"], (alertname, receiver)


def test_alertmanager_inhibit_rules_are_the_generated_ones() -> None:
    assert _yaml(ALERTMANAGER_CONFIG)["inhibit_rules"] == alertmanager_inhibit_rules()["inhibit_rules"]


def test_prometheus_mounts(compose: dict[str, Any]) -> None:
    service = compose["services"]["prometheus"]
    assert _host_path(service, _flag(service["command"], "--config.file")) == PROMETHEUS_CONFIG.resolve()
    assert _in_named_volume(service, _flag(service["command"], "--storage.tsdb.path"))


# --------------------------------------------------------------------------- OpenTelemetry Collector


def test_collector_pipelines_reference_only_defined_components() -> None:
    config = _yaml(COLLECTOR_CONFIG)
    service = config["service"]
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    assert service["pipelines"], "no pipelines"
    for pipeline_id, pipeline in service["pipelines"].items():
        assert PIPELINE_ID.fullmatch(pipeline_id), pipeline_id
        assert set(pipeline) <= set(used), (pipeline_id, pipeline)
        assert pipeline.get("receivers"), pipeline_id
        assert pipeline.get("exporters"), pipeline_id
        for kind, names in used.items():
            for component in pipeline.get(kind, []):
                assert component in (config.get(kind) or {}), (
                    f"{pipeline_id}: {kind} {component!r} is not defined"
                )
                names.add(component)
    for kind, names in used.items():
        defined = set(config.get(kind) or {})
        assert all(COMPONENT_ID.fullmatch(name) for name in defined), defined
        assert defined == names, f"{kind} defined but unused: {sorted(defined - names)}"
    extensions = set(config.get("extensions") or {})
    assert set(service.get("extensions", [])) == extensions
    assert set(config) <= {"receivers", "processors", "exporters", "extensions", "connectors", "service"}
    # Every metrics pipeline has a memory limiter first, as the collector's documentation asks.
    for pipeline in service["pipelines"].values():
        assert pipeline.get("processors", [])[:1] == ["memory_limiter"]


def test_collector_writes_trace_files_into_a_volume(compose: dict[str, Any]) -> None:
    config = _yaml(COLLECTOR_CONFIG)
    exporters = [
        name for name in config["service"]["pipelines"]["traces"]["exporters"] if name.startswith("file")
    ]
    assert exporters, "the traces pipeline has no file exporter"
    for name in exporters:
        exporter = config["exporters"][name]
        # The format the offline report reads: one JSON ExportTraceServiceRequest a line.
        assert exporter.get("format", "json") == "json"
        assert "compression" not in exporter
        assert _in_named_volume(compose["services"]["otel-collector"], exporter["path"])
    service = compose["services"]["otel-collector"]
    assert _host_path(service, _flag(service["command"], "--config")) == COLLECTOR_CONFIG.resolve()


def test_collector_reexports_otlp_metrics_under_their_own_names() -> None:
    """The recording rules sum overspend_* over every target: a second copy would double them."""
    exporter = _yaml(COLLECTOR_CONFIG)["exporters"]["prometheus"]
    namespace = exporter.get("namespace", "")
    assert namespace, "the prometheus exporter needs a namespace"
    assert not f"{namespace}_overspend_llm_cost_usd_total".startswith("overspend_")


# --------------------------------------------------------------------------- Grafana


def _provisioned_datasource() -> dict[str, Any]:
    (datasource,) = _yaml(GRAFANA_DATASOURCES)["datasources"]
    assert isinstance(datasource, dict)
    return datasource


def test_grafana_datasource_points_at_prometheus(compose: dict[str, Any]) -> None:
    datasource = _provisioned_datasource()
    assert datasource["type"] == "prometheus"
    assert datasource["uid"]
    host, port = _host_port(datasource["url"])
    assert host == "prometheus"
    assert port in _container_ports(compose["services"]["prometheus"])
    # Grafana derives $__rate_interval from the scrape interval it is told.
    assert datasource["jsonData"]["timeInterval"] == _yaml(PROMETHEUS_CONFIG)["global"]["scrape_interval"]


def test_grafana_provisioning_is_mounted_where_grafana_reads_it(compose: dict[str, Any]) -> None:
    service = compose["services"]["grafana"]
    assert (
        _host_path(service, "/etc/grafana/provisioning/datasources") == GRAFANA_DATASOURCES.parent.resolve()
    )
    assert _host_path(service, "/etc/grafana/provisioning/dashboards") == GRAFANA_DASHBOARDS.parent.resolve()
    (provider,) = _yaml(GRAFANA_DASHBOARDS)["providers"]
    assert provider["type"] == "file"
    folder = _host_path(service, provider["options"]["path"])
    assert folder is not None
    assert (folder / grafana.DASHBOARD.name).resolve() == grafana.DASHBOARD.resolve()
    home = service["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _host_path(service, home) == grafana.DASHBOARD.resolve()


def test_dashboard_model() -> None:
    dashboard = grafana.load()
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"]
    panels = list(grafana.panels(dashboard))
    ids = [panel["id"] for panel in panels]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0
        assert grid["w"] > 0
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]
        if panel["type"] != "row":
            assert panel.get("targets"), f"panel {panel['title']!r} has no query"


def test_every_panel_uses_the_provisioned_datasource() -> None:
    dashboard = grafana.load()
    expected = {"type": "prometheus", "uid": grafana.DATASOURCE_VARIABLE}
    for panel in grafana.panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"] == expected, panel["title"]
    for query in grafana.queries(dashboard):
        assert query.datasource == expected, query.where
    variable = grafana.variable(dashboard, "datasource")
    assert variable["type"] == "datasource"
    assert variable["query"] == "prometheus"
    assert variable["current"]["value"] == _provisioned_datasource()["uid"]
    assert grafana.variable(dashboard, "instance")["datasource"] == expected


def test_dashboard_variables() -> None:
    dashboard = grafana.load()
    window = grafana.variable(dashboard, "window")
    assert [o["value"] for o in window["options"]] == list(DEFAULT_WINDOWS)
    assert window["query"].split(",") == list(DEFAULT_WINDOWS)
    assert window["current"]["value"] == DEFAULT_ALERT_WINDOW
    instance = grafana.variable(dashboard, "instance")
    assert instance["type"] == "query"
    assert instance["multi"]
    assert instance["includeAll"]
    assert instance["query"]["query"] == "label_values(overspend_llm_calls_total, instance)"


def _exposed_metric_names() -> set[str]:
    """The sample names /metrics can show, from a real processor's collector."""
    registry = CollectorRegistry()
    # Registers its collector in ``registry``; an empty ledger still renders every family.
    OverspendProcessor(settings=Settings(serve_metrics=False), registry=registry, serve_metrics=False)
    names: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def test_dashboard_queries_are_valid_promql_over_shipped_rules_and_real_metrics(
    promtool: str, tmp_path: Path
) -> None:
    dashboard = grafana.load()
    values = {
        "window": DEFAULT_ALERT_WINDOW,
        "instance": grafana.prometheus_regex(["app:9464"]),
        "__rate_interval": "1m",
        "__range": "3h",
    }
    records = {
        rule["record"] for group in _yaml(RULES_FILE)["groups"] for rule in group["rules"] if "record" in rule
    }
    metrics = _exposed_metric_names() | {"ALERTS"}
    rules: list[dict[str, str]] = []
    for i, query in enumerate(grafana.queries(dashboard)):
        expr = grafana.substitute(query.expr, values)
        for name in re.findall(r"\boverspend:[a-zA-Z0-9_:]+", expr):
            assert name in records, f"{query.where}: {name} is not a shipped recording rule"
        for name in re.findall(r"\b(overspend_[a-zA-Z0-9_]+|ALERTS)\b", expr):
            assert name in metrics, f"{query.where}: {name} is not an exposed metric"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    _run([promtool, "check", "rules", str(path)])


def _panel(dashboard: dict[str, Any], title_part: str) -> dict[str, Any]:
    matches = [p for p in grafana.panels(dashboard) if title_part.lower() in p["title"].lower()]
    assert len(matches) == 1, (title_part, [p["title"] for p in matches])
    return matches[0]


def _threshold_values(panel: dict[str, Any]) -> list[float]:
    return [
        s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"] if s["value"] is not None
    ]


def test_dashboard_panels_and_bands() -> None:
    dashboard = grafana.load()
    band = BANDS["specialist_eligible_fraction"]
    warning = next(
        t.value for t in ALERTS["OverspendSpecialistEligibleFractionHigh"] if t.severity == "warning"
    )
    fraction = _panel(dashboard, "Specialist-eligible fraction (fleet")
    assert _threshold_values(fraction) == [band.suspect, warning, band.confirmed] == [0.2, 0.3, 0.5]
    assert "area" in fraction["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"]
    assert fraction["targets"][0]["expr"] == "overspend:specialist_eligible_fraction:ratio_rate$window"
    concentration = _panel(dashboard, "Top frontier model")
    conc = BANDS["model_concentration"]
    assert _threshold_values(concentration) == [conc.suspect, conc.confirmed]
    assert "{{model}}" in _panel(dashboard, "Frontier models by share")["targets"][0]["legendFormat"]
    shares = _panel(dashboard, "Cost share by step")
    assert shares["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    for title in (
        "Frontier calls per request",
        "tokens per request",
        "headroom (USD/h)",
        "headroom over the time range",
        "Unpriced LLM calls",
        "Unattributed spend",
        "fraction by instance",
        "Spend by instance (USD/h)",
        "Spans not counted, by reason",
        "Label overflows and evicted requests",
        "Open requests and calls waiting for a step",
    ):
        _panel(dashboard, title)
    per_instance = [q for q in grafana.queries(dashboard) if "$instance" in q.expr]
    assert len(per_instance) >= 4
