"""Settings from keyword arguments, ``OVERSPEND_*`` variables and a TOML file; mistakes fail
at construction with a message naming the field and the value (test_config_errors.py has
the form of those messages)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import ValidationError

from otel_overspend import Settings
from otel_overspend.config.settings import ConfigError

from conftest import make_pipeline

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("OVERSPEND_"):
            monkeypatch.delenv(name)


def tier_and_cost(settings: Settings, model: str) -> tuple[str, float]:
    """One call of ``model`` (1M input, 1M output tokens) through a pipeline built from ``settings``."""
    p = make_pipeline(settings)
    with p.tracer.start_as_current_span(
        "chat",
        attributes={
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": 1_000_000,
            "gen_ai.usage.output_tokens": 1_000_000,
        },
    ):
        pass
    found = [
        (sample.labels["tier"], sample.value)
        for family in p.registry.collect()
        for sample in family.samples
        if sample.name == "overspend_llm_cost_usd_total"
    ]
    p.provider.shutdown()
    assert len(found) == 1
    return found[0]


def assert_tier_and_cost(settings: Settings, model: str, tier: str, cost_usd: float) -> None:
    found_tier, found_cost = tier_and_cost(settings, model)
    assert found_tier == tier
    assert found_cost == pytest.approx(cost_usd, abs=1e-12)


def test_defaults() -> None:
    settings = Settings()
    assert settings.serve_metrics is True
    assert settings.metrics_host == "127.0.0.1"  # loopback unless told otherwise
    assert settings.metrics_port == 9464
    assert settings.window_seconds == (300, 3600, 86400, 604800)


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERSPEND_METRICS_PORT", "9999")
    monkeypatch.setenv("OVERSPEND_SERVE_METRICS", "false")
    monkeypatch.setenv("OVERSPEND_USE_GENAI_PRICES", "false")
    monkeypatch.setenv("OVERSPEND_MODEL_TIERS", '{"acme-*": "mini", "re:^gpt-4o$": "mid"}')
    settings = Settings()
    assert settings.metrics_port == 9999
    assert settings.serve_metrics is False
    # mini default: 1M x 0.05 + 1M x 0.20 = $0.25; mid: 1M x 0.30 + 1M x 1.20 = $1.50
    assert_tier_and_cost(settings, "acme-chat", "mini", 0.25)
    assert_tier_and_cost(settings, "gpt-4o", "mid", 1.5)


def test_environment_model_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERSPEND_MODEL_PRICES", '{"acme-*": {"input": 1.5, "output": 2.5}}')
    monkeypatch.setenv("OVERSPEND_MODEL_TIERS", '{"acme-*": "mid"}')
    # 1M x 1.5 + 1M x 2.5 = $4.00
    assert_tier_and_cost(Settings(serve_metrics=False), "acme-chat", "mid", 4.0)


def test_toml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "overspend.toml"
    config.write_text(
        """
serve_metrics = false
metrics_port = 9555
use_genai_prices = false
windows = "1m,1h"

[model_tiers]
"acme-*" = "specialist"

[model_prices."acme-big-*"]
input = 2.0
output = 8.0

[tier_prices.specialist]
input = 0.5
output = 0.5
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("OVERSPEND_CONFIG", str(config))
    settings = Settings()
    assert settings.metrics_port == 9555
    assert settings.window_seconds == (60, 3600)
    # The file's specialist price: 1M x 0.5 + 1M x 0.5 = $1.00
    assert_tier_and_cost(settings, "acme-small", "specialist", 1.0)
    # The file's override: 1M x 2 + 1M x 8 = $10.00
    assert_tier_and_cost(settings, "acme-big-1", "specialist", 10.0)


def test_precedence_arguments_then_environment_then_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "overspend.toml"
    config.write_text("metrics_port = 1111\nmax_models = 7\nmax_steps = 5\n", encoding="utf-8")
    monkeypatch.setenv("OVERSPEND_CONFIG", str(config))
    monkeypatch.setenv("OVERSPEND_METRICS_PORT", "2222")
    monkeypatch.setenv("OVERSPEND_MAX_MODELS", "8")
    settings = Settings(metrics_port=3333)
    assert settings.metrics_port == 3333
    assert settings.max_models == 8
    assert settings.max_steps == 5


def test_dict_settings_merge_key_by_key_across_sources(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "overspend.toml"
    config.write_text('[model_tiers]\n"a-*" = "mini"\n"c-*" = "mini"\n', encoding="utf-8")
    monkeypatch.setenv("OVERSPEND_CONFIG", str(config))
    monkeypatch.setenv("OVERSPEND_MODEL_TIERS", '{"b-*": "mid", "c-*": "mid"}')
    assert Settings(model_tiers={"c-*": "frontier"}).model_tiers == {
        "a-*": "mini",
        "b-*": "mid",
        "c-*": "frontier",
    }


def test_a_config_file_given_in_code_takes_the_place_of_overspend_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    named = tmp_path / "named.toml"
    named.write_text("max_models = 7\nmax_steps = 7\n", encoding="utf-8")
    given = tmp_path / "given.toml"
    given.write_text("max_models = 9\nmetrics_port = 1111\n", encoding="utf-8")
    monkeypatch.setenv("OVERSPEND_CONFIG", str(named))
    monkeypatch.setenv("OVERSPEND_METRICS_PORT", "2222")
    settings = Settings.with_config_file(given, max_steps=3)
    assert (settings.max_models, settings.max_steps, settings.metrics_port) == (9, 3, 2222)
    assert Settings.with_config_file(None).max_models == 7  # None: OVERSPEND_CONFIG's file


def test_report_config_has_the_same_precedence(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``report --config FILE`` reads FILE in place of OVERSPEND_CONFIG's: variables beat it."""
    from report_support import CollectorFileExporter, export_to, seed_requests

    from otel_overspend.cli import main

    p = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False))
    traces = tmp_path / "traces.json"
    exporter = CollectorFileExporter(traces)
    export_to(p, exporter)
    seed_requests(p.tracer, 1)
    exporter.flush()
    p.provider.shutdown()
    config = tmp_path / "overspend.toml"
    config.write_text('use_genai_prices = false\nunattributed = "eligible"\n', encoding="utf-8")

    def unattributed() -> str:
        assert main(["report", "--config", str(config), "--format", "json", str(traces)]) == 0
        value: str = json.loads(capsys.readouterr().out)["unattributed"]
        return value

    assert unattributed() == "eligible"
    monkeypatch.setenv("OVERSPEND_UNATTRIBUTED", "generate")
    assert unattributed() == "generate"


def test_a_missing_config_file_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv("OVERSPEND_CONFIG", str(missing))
    with pytest.raises(ValueError, match="OVERSPEND_CONFIG") as info:
        Settings()
    assert str(missing) in str(info.value)


def test_an_unknown_key_in_the_file_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "overspend.toml"
    config.write_text("metrics_prot = 1\n", encoding="utf-8")
    monkeypatch.setenv("OVERSPEND_CONFIG", str(config))
    with pytest.raises(ConfigError, match="metrics_prot = 1: expected the name of a setting"):
        Settings()


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"model_tiers": {"gpt-4o": "huge"}}, "model_tiers", "huge"),
        ({"model_tiers": {"re:(": "mini"}}, "model_tiers", "re:("),
        ({"model_prices": {"re:[a-": {"input": 1, "output": 1}}}, "model_prices", "re:[a-"),
        ({"model_tiers": {"": "mini"}}, "model_tiers", "empty model pattern"),
        ({"model_prices": {"gpt-4o": {"input": -1, "output": 1}}}, "model_prices", "-1"),
        ({"model_prices": {"gpt-4o": {"input": 1, "output": 1, "cache_read": -0.5}}}, "cache_read", "-0.5"),
        ({"model_prices": {"gpt-4o": {"input": "nan", "output": 1}}}, "model_prices", "nan"),
        ({"tier_prices": {"frontier": {"input": 3, "output": -15}}}, "tier_prices", "-15"),
        ({"tier_prices": {"premium": {"input": 3, "output": 15}}}, "tier_prices", "premium"),
        ({"specialize": {"Re Rank!": "mini"}}, "specialize", "Re Rank!"),
        ({"specialize": {"unattributed": "mini"}}, "specialize", "unattributed"),
        ({"specialize": {"rerank": "tiny"}}, "specialize", "tiny"),
        ({"specialize_default": "tiny"}, "specialize_default", "tiny"),
        ({"windows": "5x"}, "windows", "5x"),
        ({"windows": "5m,0h"}, "windows", "0h"),
        ({"windows": "5m,300s"}, "windows", "5m,300s"),
        ({"windows": ""}, "windows", "''"),
        ({"metrics_port": 70000}, "metrics_port", "70000"),
        ({"max_models": 0}, "max_models", "0"),
        ({"step_rules": [{"step": "Bad Step", "span_name": "x"}]}, "step_rules", "Bad Step"),
        ({"step_rules": [{"step": "rerank", "span_name": "("}]}, "step_rules", "'('"),
        ({"step_rules": [{"step": "rerank"}]}, "step_rules", "needs span_name or attribute"),
        (
            {"step_rules": [{"step": "rerank", "span_name": "x", "equals": "y"}]},
            "step_rules",
            "need an attribute",
        ),
        ({"bands": {"nope": {"suspect": 1, "confirmed": 2}}}, "bands", "nope"),
        ({"metric_port": 1}, "metric_port", "metric_port"),
    ],
)
def test_bad_settings_fail_naming_field_and_value(kwargs: dict[str, Any], field: str, value: str) -> None:
    with pytest.raises(ValueError) as info:
        Settings(**kwargs)
    message = str(info.value)
    assert field in message
    assert value in message


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("OVERSPEND_MODEL_TIERS", '{"gpt-4o": "huge"}', "huge"),
        ("OVERSPEND_MODEL_TIERS", '{"re:(": "mini"}', "re:("),
        ("OVERSPEND_METRICS_PORT", "http", "http"),
        ("OVERSPEND_WINDOWS", "5 minutes", "5 minutes"),
    ],
)
def test_bad_environment_fails_at_construction(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, shown: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        Settings()
    assert name in str(info.value)
    assert shown in str(info.value)


def test_bad_environment_fails_when_the_processor_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERSPEND_MODEL_TIERS", '{"gpt-4o": "huge"}')
    from otel_overspend import OverspendProcessor

    with pytest.raises(ValueError, match="huge"):
        OverspendProcessor(serve_metrics=False)


def test_settings_are_frozen() -> None:
    settings = Settings(serve_metrics=False)
    with pytest.raises(ValidationError, match="frozen"):
        settings.metrics_port = 1
