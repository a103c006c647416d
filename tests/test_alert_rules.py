"""The shipped Prometheus rules: valid, unit-tested with promtool, and in sync with thresholds.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_overspend import alerting
from otel_overspend.thresholds import ALERTS, AlertThreshold

from conftest import require_binary

ROOT = Path(__file__).resolve().parents[1]
RULES_FILE = ROOT / "deploy" / "prometheus" / "overspend.rules.yml"
MANIFEST_FILE = ROOT / "deploy" / "kubernetes" / "overspend-prometheusrule.yaml"
PROMTOOL_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yml"))
RULE_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")

SEED_RECORDS = (
    "overspend:llm_cost_usd:rate{w}",
    "overspend:specialist_eligible_fraction:ratio_rate{w}",
    "overspend:frontier_model_concentration:ratio_rate{w}",
    "overspend:frontier_model_cost_share:ratio_rate{w}",
    "overspend:step_cost_share:ratio_rate{w}",
    "overspend:generate_cost_share:ratio_rate{w}",
    "overspend:frontier_calls_per_request:ratio_rate{w}",
    "overspend:tokens_per_request:ratio_rate{w}",
    "overspend:projected_cost_reduction:ratio_rate{w}",
    "overspend:unattributed_cost_share:ratio_rate{w}",
    "overspend:unpriced_llm_calls:rate{w}",
    "overspend:unpriced_llm_calls_by_model:rate{w}",
)


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binary("promtool", "prometheus")


@pytest.fixture(scope="module")
def amtool() -> str:
    return require_binary("amtool", "prometheus-alertmanager")


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _rendered(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert alerting.main(argv) == 0
    return capsys.readouterr().out


def _alert_rules(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


# --------------------------------------------------------------------------- promtool


def test_promtool_check_rules(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_test_files_exist() -> None:
    names = {path.stem for path in PROMTOOL_TESTS}
    assert {"specialist_eligible_fraction", "fleet", "counter_reset", "other_alerts", "no_traffic"} <= names


@pytest.mark.parametrize("test_file", PROMTOOL_TESTS, ids=lambda path: path.name)
def test_promtool_unit_tests(promtool: str, test_file: Path) -> None:
    result = subprocess.run(
        [promtool, "test", "rules", str(test_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_short_windows_for_end_to_end_runs_are_valid(promtool: str, tmp_path: Path) -> None:
    text = alerting.dump_yaml(alerting.render_rules(windows=("1m",), alert_window="1m", for_duration="15s"))
    path = tmp_path / "short.rules.yml"
    path.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_inhibit_rules_are_a_valid_alertmanager_config(amtool: str, tmp_path: Path) -> None:
    config = {
        "route": {"receiver": "default"},
        "receivers": [{"name": "default"}],
        **alerting.alertmanager_inhibit_rules(),
    }
    path = tmp_path / "alertmanager.yml"
    path.write_text(alerting.dump_yaml(config), encoding="utf-8")
    result = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- drift


def test_committed_rules_equal_generator_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert RULES_FILE.read_text(encoding="utf-8") == _rendered([], capsys), (
        "deploy/prometheus/overspend.rules.yml is stale: "
        "python -m otel_overspend.alerting > deploy/prometheus/overspend.rules.yml"
    )


def test_committed_manifest_equals_generator_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert MANIFEST_FILE.read_text(encoding="utf-8") == _rendered(["--format", "operator"], capsys), (
        "deploy/kubernetes/overspend-prometheusrule.yaml is stale: "
        "python -m otel_overspend.alerting --format operator"
        " > deploy/kubernetes/overspend-prometheusrule.yaml"
    )


def test_committed_rules_parse_to_render_rules() -> None:
    assert _load(RULES_FILE) == alerting.render_rules()


def test_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "otel_overspend.alerting"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == RULES_FILE.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- content


def test_every_alert_has_for_severity_summary_and_runbook() -> None:
    rules = _alert_rules(_load(RULES_FILE))
    for name, thresholds in ALERTS.items():
        rendered = [rule for rule in rules if rule["alert"] == name]
        assert len(rendered) == len(thresholds), name
        for rule, threshold in zip(rendered, thresholds, strict=True):
            assert rule["for"] == threshold.for_duration
            assert rule["labels"]["severity"] == threshold.severity
            assert rule["expr"].endswith(f" {threshold.op} {threshold.value:g}")
            annotations = rule["annotations"]
            assert annotations["summary"]
            assert annotations["description"]
            assert annotations["runbook_url"] == (f"{alerting.DEFAULT_RUNBOOK_BASE_URL}#alert-{name.lower()}")
    assert {rule["alert"] for rule in rules} == set(ALERTS)


def test_runbook_anchors() -> None:
    anchors = alerting.runbook_anchors()
    assert anchors == [f"alert-{name.lower()}" for name in ALERTS]
    assert "alert-overspendspecialisteligiblefractionhigh" in anchors
    urls = {rule["annotations"]["runbook_url"] for rule in _alert_rules(alerting.render_rules())}
    assert {url.rpartition("#")[2] for url in urls} == set(anchors)


def test_heaviest_step_is_named_where_it_applies() -> None:
    for rule in _alert_rules(alerting.render_rules()):
        if rule["alert"] in {"OverspendUnpricedModel", "OverspendAttributionCoverageLow"}:
            continue
        assert (
            'overspend:step_cost_share:ratio_rate1h{step!~"generate|unattributed"}'
            in (rule["annotations"]["description"])
        )


def test_recording_rules_for_every_window() -> None:
    doc = alerting.render_rules()
    groups = {group["name"]: group["rules"] for group in doc["groups"]}
    assert list(groups) == [*(f"overspend.rules.{w}" for w in ("1h", "1d", "7d")), "overspend.alerts"]
    for window in ("1h", "1d", "7d"):
        records = [rule["record"] for rule in groups[f"overspend.rules.{window}"]]
        assert len(records) == len(set(records))
        for name in SEED_RECORDS:
            assert name.format(w=window) in records
        for record in records:
            assert RULE_NAME.fullmatch(record), record
            assert record.startswith("overspend:"), record
            assert record.endswith(window), record


def test_ratios_sum_rates_across_instances_before_dividing() -> None:
    rules = {rule["record"]: rule["expr"] for rule in alerting.render_rules()["groups"][0]["rules"]}
    fraction = rules["overspend:specialist_eligible_fraction:ratio_rate1h"]
    assert fraction == (
        '(sum(overspend:llm_cost_usd_by_step:rate1h{step!~"generate|unattributed"}) or vector(0))'
        ' / (sum(overspend:llm_cost_usd_by_step:rate1h{step!="unattributed"}) > 0)'
    )
    assert rules["overspend:llm_cost_usd_by_step:rate1h"] == (
        "sum by (step) (rate(overspend_llm_cost_usd_total[1h]))"
    )
    assert "avg" not in " ".join(rules.values())


def test_alerts_read_the_alert_window() -> None:
    doc = alerting.render_rules(windows=("5m", "1h"), alert_window="5m")
    for rule in _alert_rules(doc):
        assert re.search(r"rate5m ", rule["expr"]), rule["expr"]
        assert "rate1h" not in rule["annotations"]["description"]


# --------------------------------------------------------------------------- options


def test_for_scale_and_override() -> None:
    scaled = _alert_rules(alerting.render_rules(for_scale=0.01))
    assert {rule["alert"]: rule["for"] for rule in scaled} == {
        "OverspendSpecialistEligibleFractionHigh": "18s",
        "OverspendFrontierConcentrationHigh": "36s",
        "OverspendFrontierCallsPerRequestHigh": "18s",
        "OverspendGenerateShareLow": "36s",
        "OverspendTokensPerRequestHigh": "36s",
        "OverspendUnpricedModel": "9s",
        "OverspendAttributionCoverageLow": "36s",
    }
    overridden = _alert_rules(alerting.render_rules(for_duration="15s"))
    assert {rule["for"] for rule in overridden} == {"15s"}
    assert {rule["for"] for rule in _alert_rules(alerting.render_rules(for_scale=1 / 7200))} == {
        "125ms",
        "250ms",
        "500ms",
    }


def test_cli_short_windows(capsys: pytest.CaptureFixture[str]) -> None:
    out = _rendered(["--window", "1m", "--alert-window", "1m", "--for", "15s"], capsys)
    doc = yaml.safe_load(out)
    assert [group["name"] for group in doc["groups"]] == ["overspend.rules.1m", "overspend.alerts"]
    assert {rule["for"] for rule in _alert_rules(doc)} == {"15s"}
    # The alert window is recorded even when not listed with --window.
    doc = yaml.safe_load(_rendered(["--alert-window", "2m"], capsys))
    assert doc["groups"][0]["name"] == "overspend.rules.2m"


def test_cli_rejects_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        alerting.main(["--window", "1 hour"])
    assert excinfo.value.code == 2
    assert "1 hour" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        alerting.main(["--for", "15s", "--for-scale", "0.5"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"windows": ("1h", "soon")}, "soon"),
        ({"windows": ("0m",), "alert_window": "0m"}, "0m"),
        ({"windows": ("1h", "1h")}, "repeat"),
        ({"windows": "1h"}, "1h"),
        ({"alert_window": "5m"}, "5m"),
        ({"for_scale": 0.0}, "0.0"),
        ({"for_scale": 2.0, "for_duration": "1m"}, "not both"),
        ({"for_duration": "later"}, "later"),
        ({"runbook_base_url": "https://x/README.md#top"}, "#top"),
        (
            {"alerts": {"OverspendNoSuchThing": (AlertThreshold(1.0, "5m", "warning"),)}},
            "OverspendNoSuchThing",
        ),
        ({"alerts": {"OverspendUnpricedModel": (AlertThreshold(0.0, "5m", "warning", op="=>"),)}}, "=>"),
        ({"alerts": {"OverspendUnpricedModel": (AlertThreshold(0.0, "5 min", "warning"),)}}, "5 min"),
        ({"alerts": {"OverspendUnpricedModel": ()}}, "OverspendUnpricedModel"),
        (
            {
                "alerts": {
                    "OverspendUnpricedModel": (
                        AlertThreshold(0.0, "5m", "warning"),
                        AlertThreshold(1.0, "5m", "warning"),
                    )
                }
            },
            "warning",
        ),
    ],
)
def test_render_rules_rejects_bad_input(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=re.escape(match)):
        alerting.render_rules(**kwargs)


# --------------------------------------------------------------------------- operator manifest


def test_operator_manifest_shape() -> None:
    manifest = _load(MANIFEST_FILE)
    assert set(manifest) == {"apiVersion", "kind", "metadata", "spec"}
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    metadata = manifest["metadata"]
    assert metadata["name"] == "otel-overspend"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata["labels"].items())
    assert set(manifest["spec"]) == {"groups"}
    assert manifest["spec"]["groups"] == alerting.render_rules()["groups"]
    for group in manifest["spec"]["groups"]:
        assert set(group) == {"name", "rules"}
        for rule in group["rules"]:
            assert ("record" in rule) != ("alert" in rule)
            assert isinstance(rule["expr"], str)
            assert RULE_NAME.fullmatch(rule.get("record") or rule["alert"])


def test_operator_manifest_options() -> None:
    manifest = alerting.render_prometheus_rule_manifest(
        name="llm-spend", namespace="monitoring", labels={"release": "kube-prometheus-stack"}
    )
    assert manifest["metadata"]["namespace"] == "monitoring"
    assert manifest["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert manifest["metadata"]["labels"]["app.kubernetes.io/name"] == "otel-overspend"
    with pytest.raises(ValueError, match="Bad_Name"):
        alerting.render_prometheus_rule_manifest(name="Bad_Name")
    with pytest.raises(ValueError, match="ns/x"):
        alerting.render_prometheus_rule_manifest(namespace="ns/x")


def test_inhibit_rules_mute_lower_severities() -> None:
    rules = alerting.alertmanager_inhibit_rules()["inhibit_rules"]
    assert rules == [
        {
            "source_matchers": ['alertname="OverspendSpecialistEligibleFractionHigh"', 'severity="critical"'],
            "target_matchers": ['alertname="OverspendSpecialistEligibleFractionHigh"', 'severity="warning"'],
            "equal": ["alertname"],
        }
    ]


def test_dump_yaml_round_trips() -> None:
    doc = alerting.render_prometheus_rule_manifest()
    assert yaml.safe_load(alerting.dump_yaml(doc)) == doc
    assert alerting.dump_yaml({"a": "x\ny\n"}) == "a: |\n  x\n  y\n"
