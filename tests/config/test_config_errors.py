"""Every configuration mistake is one ConfigError whose one-line message names where the value
came from (the variable, the file's key, the keyword argument), the value and the form expected;
and the places a user meets it: the processor, ``report``, ``demo`` and zero-code setup."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_overspend import Settings
from otel_overspend.config.settings import ConfigError, ConfigFileError

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OVERSPEND_"):
            monkeypatch.delenv(name)


class Bad(NamedTuple):
    #: The variable's text.
    value: str
    #: A phrase of the form expected that the message must hold.
    expected: str
    #: Other variables the case needs, so that the mistake is this one alone.
    also: dict[str, str] = {}  # noqa: RUF012 - never mutated


MISSING_PEM = "/nonexistent/overspend/cert.pem"

#: One mistake per setting, as an ``OVERSPEND_*`` variable. A new setting needs a case here.
BAD: dict[str, Bad] = {
    "serve_metrics": Bad("maybe", "true or false"),
    "metrics_host": Bad("http://localhost", "a host name or IP address"),
    "metrics_port": Bad("abc", "an integer port 0-65535"),
    "metrics_port_range": Bad("0", "a whole number of ports 1-1000"),
    "metrics_certfile": Bad(MISSING_PEM, "the path of an existing PEM file"),
    "metrics_keyfile": Bad(MISSING_PEM, "the path of an existing PEM file"),
    "metrics_client_cafile": Bad(MISSING_PEM, "the path of an existing PEM file"),
    "metrics_basic_auth_username": Bad(
        "ops:team", "without ':'", {"OVERSPEND_METRICS_BASIC_AUTH_PASSWORD": "pw"}
    ),
    "metrics_basic_auth_password": Bad(
        "", "a non-empty password", {"OVERSPEND_METRICS_BASIC_AUTH_USERNAME": "ops"}
    ),
    "max_models": Bad("0", "a whole number 1-10000"),
    "max_steps": Bad("many", "a whole number 1-1000"),
    "max_providers": Bad("1001", "a whole number 1-1000"),
    "model_tiers": Bad("notjson", "a map of model pattern to tier (frontier, mid, mini, specialist)"),
    "model_prices": Bad('{"acme-*": {"input": -1, "output": 1}}', "a map of model pattern to price"),
    "tier_prices": Bad('{"premium": {"input": 1, "output": 1}}', "a map of tier"),
    "use_span_cost": Bad("sometimes", "true or false"),
    "use_genai_prices": Bad("perhaps", "true or false"),
    "step_rules": Bad('[{"step": "rerank"}]', "a list of rules"),
    "default_step_rules": Bad("nah", "true or false"),
    "framework_steps": Bad("y e s", "true or false"),
    "step_aliases": Bad('{"score_docs": "Re Rank"}', "a map of framework name to step name"),
    "stamp_spans": Bad("x", "true or false"),
    "specialize": Bad('{"rerank": "tiny"}', "a map of step name to tier or unchanged"),
    "specialize_default": Bad("tiny", "one of frontier, mid, mini, specialist, unchanged"),
    "windows": Bad("5 minutes", "comma-separated durations of whole seconds"),
    "unattributed": Bad("sometimes", "one of exclude, eligible, generate"),
    "bands": Bad('{"nope": {"suspect": 1, "confirmed": 2}}', "a map of signal"),
    "max_open_requests": Bad("0", "a whole number 1-10000000"),
    "request_timeout_seconds": Bad("-1", "a number of seconds above 0"),
    "step_latency_p95_ms": Bad("0", "a number of milliseconds above 0"),
    "agreement_min": Bad("1.5", "a share 0-1"),
    "oracle_stale_seconds": Bad("a week", "a number of seconds above 0"),
    "eval_share_max": Bad("-0.1", "a ratio of eval to inference spend above 0"),
    "escalation_band": Bad("2", "a share above 0, at most 1"),
    "savings_drop_share": Bad("half", "a share above 0, at most 1"),
    "eval_steps": Bad('["Eval Job"]', "a list of step names"),
    "specialist_steps": Bad('["generate"]', "a list of step names (not generate or unattributed)"),
    "eval_services": Bad("[1]", "a list of service names"),
    "otlp_metrics": Bad("maybe", "true or false"),
}


def message_of(**kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        Settings(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.__suppress_context__  # no pydantic error chained behind it
    return message


def test_every_setting_has_a_case() -> None:
    assert set(BAD) == set(Settings.model_fields)


@pytest.mark.parametrize("field", list(Settings.model_fields))
def test_a_bad_variable_names_itself_its_value_and_the_form(
    monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    assert field in BAD, f"add a bad value for the new setting {field!r} to BAD"
    bad = BAD[field]
    variable = f"OVERSPEND_{field.upper()}"
    monkeypatch.setenv(variable, bad.value)
    for name, value in bad.also.items():
        monkeypatch.setenv(name, value)
    message = message_of()
    assert message.startswith(f"{variable}={bad.value!r}: expected "), message
    assert bad.expected in message
    assert message.count(": expected ") == 1  # this mistake alone


@pytest.mark.parametrize(
    ("text", "key", "shown", "expected"),
    [
        ('metrics_port = "abc"\n', "metrics_port", "'abc'", "an integer port 0-65535"),
        ("max_models = 0\n", "max_models", "0", "a whole number 1-10000"),
        ('[model_tiers]\n"gpt-4o" = "huge"\n', "model_tiers.gpt-4o", "'huge'", "to tier"),
        ('[model_prices."gpt-*"]\ninput = -3\noutput = 1\n', 'model_prices."gpt-*".input', "-3", "to price"),
        ('[[step_rules]]\nstep = "Bad Step"\nspan_name = "x"\n', "step_rules[0].step", "'Bad Step'", "rules"),
        ('windows = "5x"\n', "windows", "'5x'", "durations of whole seconds"),
        ("metrics_prot = 1\n", "metrics_prot", "1", "the name of a setting (did you mean metrics_port?)"),
    ],
)
def test_a_bad_file_key_names_the_file_the_key_and_its_value(  # noqa: PLR0917 - parametrized
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, key: str, shown: str, expected: str
) -> None:
    config = tmp_path / "overspend.toml"
    config.write_text(text, encoding="utf-8")
    monkeypatch.setenv("OVERSPEND_CONFIG", str(config))
    message = message_of()
    assert message.startswith(f"{config}: {key} = {shown}: expected "), message
    assert expected in message


@pytest.mark.parametrize(
    ("kwargs", "shown", "expected"),
    [
        ({"metrics_port": "abc"}, "Settings(metrics_port='abc')", "an integer port 0-65535"),
        ({"max_steps": 0}, "Settings(max_steps=0)", "a whole number 1-1000"),
        ({"model_tiers": {"gpt-4o": "huge"}}, "Settings(model_tiers={'gpt-4o': 'huge'})", "at gpt-4o"),
        ({"unattributed": "sometimes"}, "Settings(unattributed='sometimes')", "one of exclude"),
        ({"metric_port": 1}, "Settings(metric_port=1)", "did you mean metrics_port?"),
    ],
)
def test_a_bad_argument_names_itself_and_its_value(kwargs: dict[str, Any], shown: str, expected: str) -> None:
    message = message_of(**kwargs)
    assert message.startswith(f"{shown}: expected "), message
    assert expected in message


def test_a_variable_that_is_not_json_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERSPEND_MODEL_TIERS", "notjson")
    assert message_of() == (
        "OVERSPEND_MODEL_TIERS='notjson': expected a map of model pattern to tier (frontier, mid, mini, "
        'specialist), e.g. {"ft:gpt-4o*": "mini"} (not JSON: Expecting value: line 1 column 1 (char 0))'
    )


def test_the_source_that_set_the_value_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A dict set in the file and in a variable is merged: the bad key is the file's.
    config = tmp_path / "overspend.toml"
    config.write_text('[model_tiers]\n"gpt-4o" = "huge"\n', encoding="utf-8")
    monkeypatch.setenv("OVERSPEND_CONFIG", str(config))
    monkeypatch.setenv("OVERSPEND_MODEL_TIERS", '{"acme-*": "mini"}')
    assert message_of().startswith(f"{config}: model_tiers.gpt-4o = 'huge': ")
    # A scalar in both: the variable's value is the one used, and named.
    config.write_text("max_models = 5\n", encoding="utf-8")
    monkeypatch.setenv("OVERSPEND_MAX_MODELS", "0")
    assert message_of().startswith("OVERSPEND_MAX_MODELS='0': ")


def test_several_mistakes_are_reported_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERSPEND_METRICS_PORT", "abc")
    monkeypatch.setenv("OVERSPEND_MAX_STEPS", "0")
    message = message_of()
    assert "OVERSPEND_METRICS_PORT='abc': expected an integer port" in message
    assert "; OVERSPEND_MAX_STEPS='0': expected a whole number 1-1000" in message


def test_settings_that_clash_are_named_with_their_partner(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pem = tmp_path / "key.pem"
    pem.write_text("-----BEGIN PRIVATE KEY-----\n", encoding="utf-8")
    monkeypatch.setenv("OVERSPEND_METRICS_KEYFILE", str(pem))
    assert message_of() == (
        f"OVERSPEND_METRICS_KEYFILE={str(pem)!r}: expected OVERSPEND_METRICS_CERTFILE too "
        "(metrics_certfile: TLS needs the server certificate)"
    )
    monkeypatch.delenv("OVERSPEND_METRICS_KEYFILE")
    assert message_of(metrics_client_cafile=pem).startswith(
        f"Settings(metrics_client_cafile={pem!r}): expected metrics_certfile too"
    )
    assert message_of(metrics_basic_auth_username="ops") == (
        "Settings(metrics_basic_auth_username='ops'): expected metrics_basic_auth_password too "
        "(basic auth needs both)"
    )
    monkeypatch.setenv("OVERSPEND_METRICS_PORT", "65000")
    assert message_of(metrics_port_range=1000) == (
        "OVERSPEND_METRICS_PORT='65000' with Settings(metrics_port_range=1000): expected ports that end "
        "by 65535 (the last would be 65999)"
    )


def test_a_password_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    message = message_of(metrics_basic_auth_password="hunter2")
    assert "hunter2" not in message
    assert message.startswith(
        "Settings(metrics_basic_auth_password='***'): expected metrics_basic_auth_username"
    )
    monkeypatch.setenv("OVERSPEND_METRICS_BASIC_AUTH_PASSWORD", "hunter2")
    monkeypatch.setenv("OVERSPEND_METRICS_BASIC_AUTH_USERNAME", "a:b")
    assert "hunter2" not in message_of()


@pytest.mark.parametrize(
    "host", ["", "127.0.0.1", "0.0.0.0", "::", "::1", "fe80::1%eth0", "localhost", "my_host.lan"]
)
def test_hosts_that_bind(host: str) -> None:
    assert Settings(metrics_host=host).metrics_host == host


@pytest.mark.parametrize("host", ["localhost:9464", "http://example.com", "[::1]", "two words", "a/b"])
def test_hosts_that_do_not(host: str) -> None:
    assert message_of(metrics_host=host).startswith(f"Settings(metrics_host={host!r}): expected a host name")


def test_an_unreadable_config_file_is_a_config_file_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv("OVERSPEND_CONFIG", str(missing))
    with pytest.raises(ConfigFileError) as info:
        Settings()
    assert (
        str(info.value)
        == f"OVERSPEND_CONFIG={str(missing)!r}: expected the path of a TOML file (no such file)"
    )
    broken = tmp_path / "broken.toml"
    broken.write_text("metrics_port = \n", encoding="utf-8")
    with pytest.raises(
        ConfigFileError, match=r"^config file '.*broken\.toml': expected a readable TOML file \("
    ):
        Settings.with_config_file(broken)


def test_the_processor_fails_at_start_up_with_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_overspend import OverspendProcessor

    monkeypatch.setenv("OVERSPEND_METRICS_PORT", "abc")
    with pytest.raises(ConfigError, match=r"^OVERSPEND_METRICS_PORT='abc': expected an integer port 0-65535"):
        OverspendProcessor(serve_metrics=False)


def test_report_prints_the_message_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from otel_overspend.cli import main

    traces = tmp_path / "traces.json"
    traces.write_text("", encoding="utf-8")
    monkeypatch.setenv("OVERSPEND_METRICS_PORT", "abc")
    assert main(["report", str(traces)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "otel-overspend report: invalid settings: OVERSPEND_METRICS_PORT='abc': expected an integer "
        "port 0-65535 (0: any free port)\n"
    )
    monkeypatch.delenv("OVERSPEND_METRICS_PORT")
    config = tmp_path / "overspend.toml"
    config.write_text('unattributed = "sometimes"\n', encoding="utf-8")
    assert main(["report", "--config", str(config), str(traces)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"otel-overspend report: invalid settings: {config}: unattributed = 'sometimes': expected one of "
    )
    assert "Traceback" not in err


def test_demo_prints_the_message_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from otel_overspend.cli import main

    monkeypatch.setenv("OVERSPEND_WINDOWS", "5 minutes")
    assert main(["demo", "--duration", "1"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("otel-overspend demo: invalid settings: OVERSPEND_WINDOWS='5 minutes': expected ")
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_zero_code_setup_logs_the_message_and_the_app_runs_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from opentelemetry import trace

    from otel_overspend.integrations.autoconfigure import pre_instrument

    provider = TracerProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    monkeypatch.setenv("OVERSPEND_ENABLED", "true")
    monkeypatch.setenv("OVERSPEND_MAX_STEPS", "lots")
    with caplog.at_level(logging.WARNING, logger="otel_overspend"):
        pre_instrument()
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is None  # the message says it all
    assert record.getMessage() == (
        "otel_overspend: OVERSPEND_MAX_STEPS='lots': expected a whole number 1-1000; "
        "the app runs without the span processor"
    )
    assert not provider._active_span_processor._span_processors
