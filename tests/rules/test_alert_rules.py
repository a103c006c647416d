"""The shipped Prometheus rules: valid, unit-tested with promtool, and in sync with thresholds.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_overspend.rules import alerting
from otel_overspend.thresholds import ALERTS, AlertThreshold

from conftest import require_binary

pytestmark = [pytest.mark.needs_binary]

ROOT = Path(__file__).resolve().parents[2]
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
# Coverage, so an unpriced step reads as unknown spend, never $0: unpriced calls by step, calls
# without usage, spend without counterfactual.
COVERAGE_RECORDS = (
    "overspend:llm_calls:rate{w}",
    "overspend:llm_calls_by_step:rate{w}",
    "overspend:unpriced_llm_calls_by_step:rate{w}",
    "overspend:priced_llm_calls_by_step:rate{w}",
    "overspend:llm_calls_by_unpriced_step:rate{w}",
    "overspend:llm_calls_by_unpriced_instance_step:rate{w}",
    "overspend:unpriced_llm_calls_share:ratio_rate{w}",
    "overspend:llm_calls_without_usage:rate{w}",
    "overspend:llm_calls_without_usage_by_step_model:rate{w}",
    "overspend:llm_calls_without_usage_share:ratio_rate{w}",
    "overspend:llm_calls_without_usage_share_by_step_model:ratio_rate{w}",
    "overspend:llm_cost_without_counterfactual_usd:rate{w}",
)
# Ratios that would read an all-unpriced step's spend as $0, and what they are gated on: the
# steps (fleet) or instance steps whose calls in the window are all unpriced.
_UNPRICED_STEPS = "overspend:llm_calls_by_unpriced_step:rate{w}"
_UNPRICED_GENERATE = _UNPRICED_STEPS + '{{step="generate"}}'
GATED_RATIOS = {
    "overspend:specialist_eligible_fraction:ratio_rate{w}": f"unless on () {_UNPRICED_GENERATE}",
    "overspend:specialist_eligible_fraction_by_instance:ratio_rate{w}": (
        'unless on (instance) overspend:llm_calls_by_unpriced_instance_step:rate{w}{{step="generate"}}'
    ),
    "overspend:generate_cost_share:ratio_rate{w}": f"unless on () {_UNPRICED_GENERATE}",
    "overspend:step_cost_share:ratio_rate{w}": f"unless on (step) {_UNPRICED_STEPS}",
    "overspend:frontier_model_cost_share:ratio_rate{w}": f"unless on () {_UNPRICED_STEPS}",
    "overspend:frontier_model_concentration:ratio_rate{w}": f"unless on () {_UNPRICED_STEPS}",
    "overspend:unattributed_cost_share:ratio_rate{w}": f"unless on () {_UNPRICED_STEPS}",
}


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
    assert {
        "specialist_eligible_fraction",
        "fleet",
        "counter_reset",
        "other_alerts",
        "no_traffic",
        "unpriced",
        "calls_without_usage",
        "counterfactual",
        "patterns",
        "cascade",
    } <= names


def _cost_share_alerts() -> set[str]:
    """The alerts that read a recording rule dividing spend."""
    records = {
        rule["record"]: rule["expr"]
        for group in alerting.render_rules()["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    names: set[str] = set()
    for rule in _alert_rules(alerting.render_rules()):
        record = rule["expr"].split(" ", 1)[0]
        if any(
            part in records[record]
            for part in ("overspend:llm_cost_usd", "overspend:purpose_cost_usd", "frontier_model_cost_share")
        ):
            names.add(rule["alert"])
    return names


def test_every_cost_share_alert_has_an_all_unpriced_test_that_stays_silent() -> None:
    """Each alert on a cost ratio is checked, in unpriced.yml, not to fire on an all-unpriced step."""
    assert _cost_share_alerts() == {
        "OverspendSpecialistEligibleFractionHigh",
        "OverspendFrontierConcentrationHigh",
        "OverspendGenerateShareLow",
        "OverspendAttributionCoverageLow",
        "OverspendEvalSpendHigh",
    }
    doc = _load(ROOT / "deploy" / "prometheus" / "tests" / "unpriced.yml")
    first = doc["tests"][0]
    unpriced = [s["series"] for s in first["input_series"] if s["series"].startswith("overspend_unpriced_")]
    assert any('step="generate"' in series for series in unpriced)
    silent = {check["alertname"] for check in first["alert_rule_test"] if check["exp_alerts"] == []}
    assert _cost_share_alerts() <= silent
    absent = {check["expr"] for check in first["promql_expr_test"] if check["exp_samples"] == []}
    records = {rule["expr"].split(" ", 1)[0] for rule in _alert_rules(alerting.render_rules())} & {
        name.format(w="1h") for name in GATED_RATIOS
    }
    assert records <= absent


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
        "otel-overspend rules > deploy/prometheus/overspend.rules.yml"
    )


def test_committed_manifest_equals_generator_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert MANIFEST_FILE.read_text(encoding="utf-8") == _rendered(["--format", "operator"], capsys), (
        "deploy/kubernetes/overspend-prometheusrule.yaml is stale: "
        "otel-overspend rules --format operator"
        " > deploy/kubernetes/overspend-prometheusrule.yaml"
    )


def test_committed_rules_parse_to_render_rules() -> None:
    assert _load(RULES_FILE) == alerting.render_rules()


def test_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "otel_overspend.rules.alerting"],
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
        if (
            rule["alert"]
            in {
                "OverspendUnpricedModel",
                "OverspendAttributionCoverageLow",
                "OverspendLLMCallsWithoutUsage",
            }
            or "pattern" in rule["annotations"]
        ):  # the look-alikes' alerts are about one step
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
        for name in (*SEED_RECORDS, *COVERAGE_RECORDS, *GATED_RATIOS):
            assert name.format(w=window) in records
        for record in records:
            assert RULE_NAME.fullmatch(record), record
            assert record.startswith("overspend:"), record
            # The cascade's drift of a shorter window from the baseline (the longest) is
            # recorded in the baseline's group, so that both sides are of one evaluation.
            drift = record.startswith(
                ("overspend:cascade_escalation_drift:", "overspend:cascade_savings_drop:")
            )
            assert record.endswith(window) or (drift and window == "7d"), record


def test_ratios_sum_rates_across_instances_before_dividing() -> None:
    rules = {rule["record"]: rule["expr"] for rule in alerting.render_rules()["groups"][0]["rules"]}
    fraction = rules["overspend:specialist_eligible_fraction:ratio_rate1h"]
    assert fraction == (
        '((sum(overspend:llm_cost_usd_by_step:rate1h{step!~"generate|unattributed"}) or vector(0))'
        ' / (sum(overspend:llm_cost_usd_by_step:rate1h{step!="unattributed"}) > 0))'
        ' unless on () overspend:llm_calls_by_unpriced_step:rate1h{step="generate"}'
    )
    assert rules["overspend:llm_cost_usd_by_step:rate1h"] == (
        "sum by (step) (rate(overspend_llm_cost_usd_total[1h]))"
    )
    assert "avg" not in " ".join(rules.values())


@pytest.mark.parametrize("window", ["1h", "1d", "7d"])
def test_ratios_that_would_read_unpriced_spend_as_zero_are_gated(window: str) -> None:
    rules = {
        rule["record"]: rule["expr"]
        for group in alerting.render_rules()["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    for record, gate in GATED_RATIOS.items():
        assert gate.format(w=window) in rules[record.format(w=window)], record
    assert rules[f"overspend:priced_llm_calls_by_step:rate{window}"] == (
        f"overspend:llm_calls_by_step:rate{window} - (overspend:unpriced_llm_calls_by_step:rate{window}"
        f" or 0 * overspend:llm_calls_by_step:rate{window})"
    )
    # Steps seen only through calls without usage count as steps with no priced call.
    assert (
        f"overspend:llm_calls_without_usage_by_step_model:rate{window}"
        in (rules[f"overspend:llm_calls_by_unpriced_step:rate{window}"])
    )


def test_projected_reduction_leaves_out_spend_without_counterfactual() -> None:
    rules = {rule["record"]: rule["expr"] for rule in alerting.render_rules()["groups"][0]["rules"]}
    assert rules["overspend:projected_cost_reduction:ratio_rate1h"] == (
        "1 - overspend:llm_specialized_cost_usd:rate1h / ((overspend:llm_cost_usd:rate1h"
        " - (overspend:llm_cost_without_counterfactual_usd:rate1h or vector(0))) > 0)"
    )
    assert rules["overspend:llm_cost_without_counterfactual_usd:rate1h"] == (
        "sum(rate(overspend_llm_cost_without_counterfactual_usd_total[1h]))"
    )


def test_unpriced_by_model_still_sums_by_model() -> None:
    """The counter gained step, tier and provider labels; the rule users read keeps its shape."""
    rules = {rule["record"]: rule["expr"] for rule in alerting.render_rules()["groups"][0]["rules"]}
    assert rules["overspend:unpriced_llm_calls_by_model:rate1h"] == (
        "sum by (model) (rate(overspend_unpriced_llm_calls_total[1h]))"
    )


def test_calls_without_usage_alert() -> None:
    (rule,) = [
        r for r in _alert_rules(alerting.render_rules()) if r["alert"] == "OverspendLLMCallsWithoutUsage"
    ]
    assert rule["expr"] == "overspend:llm_calls_without_usage_share_by_step_model:ratio_rate1h > 0.1"
    assert rule["for"] == "30m"
    assert rule["labels"] == {"severity": "warning"}
    assert "{{ $labels.step }}" in rule["annotations"]["summary"]
    assert "{{ $labels.model }}" in rule["annotations"]["summary"]
    assert rule["annotations"]["runbook_url"].endswith("#alert-overspendllmcallswithoutusage")


def test_alerts_read_the_alert_window() -> None:
    doc = alerting.render_rules(windows=("5m", "1h"), alert_window="5m")
    for rule in _alert_rules(doc):
        assert re.search(r"(rate|time_max)5m ", rule["expr"]), rule["expr"]
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
        "OverspendLLMCallsWithoutUsage": "18s",
        "OverspendStepLatencyHigh": "9s",
        "OverspendCascadeEscalationOutOfBand": "36s",
        "OverspendCascadeSavingsDrop": "36s",
        "OverspendTeacherAgreementLow": "18s",
        "OverspendOracleCheckStale": "36s",
        "OverspendEvalSpendHigh": "36s",
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
