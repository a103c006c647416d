"""``otel-overspend rules`` options that change the rules: ``--threshold``, and the header that
names the command printing the file."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from otel_overspend.rules import alerting, command
from otel_overspend.rules.overrides import (
    ThresholdOverride,
    parse_threshold,
    threshold_names,
    with_thresholds,
)
from otel_overspend.thresholds import ALERTS, AlertThreshold

FRACTION = "OverspendSpecialistEligibleFractionHigh"


def _rendered(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert alerting.main(argv) == 0
    return capsys.readouterr().out


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as excinfo:
        alerting.main(argv)
    assert excinfo.value.code == 2
    return capsys.readouterr().err


def _alert(doc: dict[str, Any], name: str, severity: str) -> dict[str, Any]:
    (rule,) = [
        rule
        for group in doc["groups"]
        for rule in group["rules"]
        if rule.get("alert") == name and rule["labels"]["severity"] == severity
    ]
    assert isinstance(rule, dict)
    return rule


# --------------------------------------------------------------------------- parsing


def test_parse_threshold() -> None:
    assert parse_threshold(f"{FRACTION}:warning=0.4") == ThresholdOverride(FRACTION, "warning", 0.4)
    assert parse_threshold("OverspendTokensPerRequestHigh=20000") == ThresholdOverride(
        "OverspendTokensPerRequestHigh", None, 20_000.0
    )
    assert parse_threshold(f"{FRACTION}:warning=0.4").text == f"{FRACTION}:warning=0.4"
    assert parse_threshold("OverspendTokensPerRequestHigh=2e4").text == "OverspendTokensPerRequestHigh=20000"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("OverspendTokensPerRequestHigh", "NAME=VALUE"),
        ("=0.4", "NAME=VALUE"),
        ("OverspendTokensPerRequestHigh=lots", "'lots' is not a number"),
        ("OverspendTokensPerRequestHigh=nan", "finite"),
        ("OverspendTokensPerRequestHigh=inf", "finite"),
    ],
)
def test_parse_threshold_rejects(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=re.escape(match)):
        parse_threshold(text)


def test_with_thresholds_replaces_only_the_named_value() -> None:
    alerts = with_thresholds(
        [ThresholdOverride(FRACTION, "warning", 0.4), ThresholdOverride("OverspendUnpricedModel", None, 0.01)]
    )
    assert [t.value for t in alerts[FRACTION]] == [0.4, 0.5]
    assert alerts["OverspendUnpricedModel"][0] == AlertThreshold(0.01, "15m", "warning")
    assert {name: alerts[name] for name in ALERTS if name not in {FRACTION, "OverspendUnpricedModel"}} == {
        name: ALERTS[name] for name in ALERTS if name not in {FRACTION, "OverspendUnpricedModel"}
    }
    assert with_thresholds([]) == {name: tuple(t) for name, t in ALERTS.items()}
    assert ALERTS[FRACTION][0].value == 0.3  # the defaults are left alone


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ([ThresholdOverride("OverspendNoSuchAlert", None, 1.0)], f"{FRACTION}:warning (0.3)"),
        ([ThresholdOverride(FRACTION, None, 0.4)], f"give {FRACTION}:warning or {FRACTION}:critical"),
        (
            [ThresholdOverride(FRACTION, "page", 0.4)],
            "no 'page' threshold; its severities: warning, critical",
        ),
        (
            [ThresholdOverride("OverspendUnpricedModel", None, 1.0)] * 2,
            "the warning threshold of OverspendUnpricedModel is given twice",
        ),
    ],
)
def test_with_thresholds_rejects(overrides: list[ThresholdOverride], match: str) -> None:
    with pytest.raises(ValueError, match=re.escape(match)):
        with_thresholds(overrides)


def test_threshold_names_cover_every_threshold() -> None:
    names = threshold_names()
    assert len(names) == sum(len(t) for t in ALERTS.values())
    assert f"{FRACTION}:warning (0.3)" in names
    assert "OverspendTokensPerRequestHigh (15000)" in names


# --------------------------------------------------------------------------- values the rules accept


@pytest.mark.parametrize(
    ("alerts", "match"),
    [
        ({"OverspendGenerateShareLow": (AlertThreshold(40.0, "1h", "warning", op="<"),)}, "0.3 for 30%"),
        ({"OverspendTokensPerRequestHigh": (AlertThreshold(-1.0, "1h", "warning"),)}, "negative"),
        (
            {FRACTION: (AlertThreshold(0.6, "30m", "warning"), AlertThreshold(0.5, "30m", "critical"))},
            "the warning threshold (0.6) is above the critical one (0.5)",
        ),
        (
            {
                "OverspendGenerateShareLow": (
                    AlertThreshold(0.4, "1h", "warning", op="<"),
                    AlertThreshold(0.5, "1h", "critical", op="<"),
                )
            },
            "the warning threshold (0.4) is below the critical one (0.5)",
        ),
    ],
)
def test_render_rules_rejects_thresholds_that_cannot_work(
    alerts: dict[str, tuple[AlertThreshold, ...]], match: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(match)):
        alerting.render_rules(alerts=alerts)


def test_equal_severities_thresholds_are_allowed() -> None:
    alerts = {FRACTION: (AlertThreshold(0.5, "30m", "warning"), AlertThreshold(0.5, "30m", "critical"))}
    assert alerting.render_rules(alerts=alerts)


# --------------------------------------------------------------------------- the command


def test_eval_share_rule_reads_spend_by_purpose(capsys: pytest.CaptureFixture[str]) -> None:
    # The processes decide what is evaluation spend (eval_steps, eval_services, overspend.purpose):
    # the rule needs no list of steps.
    doc = yaml.safe_load(_rendered([], capsys))
    (expr,) = [
        rule["expr"]
        for group in doc["groups"]
        for rule in group["rules"]
        if rule.get("record") == "overspend:eval_spend_share:ratio_rate1h"
    ]
    assert 'overspend:purpose_cost_usd:rate1h{purpose="eval"}' in expr
    assert 'overspend:purpose_cost_usd:rate1h{purpose!="eval"}' in expr
    assert "step" not in expr.replace("unpriced_step", "")
    with pytest.raises(SystemExit):
        command.main(["--eval-step", "judge"])
    assert "unrecognized arguments: --eval-step" in capsys.readouterr().err


def test_threshold_option_changes_the_rule_and_the_header(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--threshold", f"{FRACTION}:warning=0.4", "--threshold", "OverspendTokensPerRequestHigh=20000"]
    out = _rendered(argv, capsys)
    header = out.splitlines()[:2]
    assert header[0] == (
        f"# Generated by: otel-overspend rules --threshold {FRACTION}:warning=0.4"
        " --threshold OverspendTokensPerRequestHigh=20000"
    )
    assert "--threshold NAME[:SEVERITY]=VALUE" in header[1]
    assert "otel-overspend rules --help" in header[1]
    doc = yaml.safe_load(out)
    warning = _alert(doc, FRACTION, "warning")
    assert warning["expr"] == "overspend:specialist_eligible_fraction:ratio_rate1h > 0.4"
    assert "threshold 40%" in str(warning["annotations"])
    assert _alert(doc, FRACTION, "critical")["expr"].endswith("> 0.5")
    assert _alert(doc, "OverspendTokensPerRequestHigh", "warning")["expr"].endswith("> 20000")
    # The header's command prints the same file.
    again = _rendered(header[0].split("otel-overspend rules ", 1)[1].split(), capsys)
    assert again == out


def test_default_header_names_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    header = _rendered([], capsys).splitlines()[:2]
    assert header == [
        "# Generated by: otel-overspend rules",
        (
            "# Windows, for: durations, alert thresholds (--threshold NAME[:SEVERITY]=VALUE) and runbook"
            " links are options: see 'otel-overspend rules --help'."
        ),
    ]


def test_threshold_option_errors_list_the_names(capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(["--threshold", "FractionHigh=0.4"], capsys)
    assert "no alert named 'FractionHigh'" in err
    for name in threshold_names():
        assert name in err
    assert "give" in _error(["--threshold", f"{FRACTION}=0.4"], capsys)
    assert "0.3 for 30%" in _error(["--threshold", f"{FRACTION}:warning=30"], capsys)
    assert "is not a number" in _error(["--threshold", f"{FRACTION}:warning=high"], capsys)
    assert "above the critical" in _error(["--threshold", f"{FRACTION}:warning=0.6"], capsys)
    # The inhibition is checked the same way: it pairs the thresholds it is given.
    assert "above the critical" in _error(
        ["--format", "inhibit", "--threshold", f"{FRACTION}:warning=0.6"], capsys
    )


def test_help_lists_the_thresholds(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        alerting.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--threshold NAME[:SEVERITY]=VALUE" in out
    assert f"{FRACTION}:warning (0.3)" in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--window", "5m", "--alert-window", "5m", "--for", "15s"],
        [
            "--for-scale",
            "0.5",
            "--threshold",
            f"{FRACTION}:critical=0.6",
            "--runbook-base-url",
            "https://x/r",
        ],
        [
            "--format",
            "operator",
            "--name",
            "llm",
            "--namespace",
            "mon",
            "--label",
            "release=k",
            "--window",
            "1d",
        ],
        ["--format", "inhibit", "--threshold", "OverspendUnpricedModel=0.5"],
        ["--format", "operator", "--window", "1d", "--alert-window", "1d"],
    ],
)
def test_rule_argv_prints_the_same_document(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """The kit's headers name ``rule_argv``'s options: they must print the kit's file."""
    parser = command._parser()
    args = parser.parse_args(argv)
    canonical = command.rule_argv(args, fmt=args.format)
    assert command.document(parser.parse_args(canonical), fmt=args.format) == command.document(
        args, fmt=args.format
    )
    assert _rendered(canonical, capsys).split("\n", 2)[2] == _rendered(argv, capsys).split("\n", 2)[2]
