"""The README and docs/ are the user's manual: keep the parts that code defines in step with the code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fake_provider import FakeProvider

from otel_overspend import Settings
from otel_overspend.rules.alerting import runbook_anchors
from otel_overspend.thresholds import ALERTS

from conftest import require_module

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
ALERTS_DOC = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")


def _section(title: str, text: str = README) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, f"no '## {title}' section"
    return match.group(1)


def test_quickstart_has_exactly_two_commands() -> None:
    block = re.search(r"```sh\n(.*?)```", _section("Quickstart"), re.DOTALL)
    assert block
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert [c.split("#")[0].strip() for c in commands] == ["python3 tasks.py demo", "python3 tasks.py test"]


def test_every_setting_is_documented() -> None:
    table = _section("Configuration reference", CONFIGURATION)
    missing = [name for name in Settings.model_fields if f"| `{name}` |" not in table]
    assert not missing, f"settings missing from docs/configuration.md's table: {missing}"


def test_every_alert_has_a_runbook_section() -> None:
    headings = {
        "alert-" + m.group(1).lower() for m in re.finditer(r"^### Alert: (\w+)$", ALERTS_DOC, re.MULTILINE)
    }
    assert set(runbook_anchors()) <= headings
    assert headings == {f"alert-{name.lower()}" for name in ALERTS}


@pytest.mark.e2e
def test_the_first_snippet_runs_as_pasted_and_its_call_reaches_the_metrics(tmp_path: Path) -> None:
    """The README's first Python block, saved as a file and run with the packages its install
    line names, against the local fake provider: its LLM call is on /metrics with its step."""
    require_module("openai")
    require_module("opentelemetry.instrumentation.openai")
    install = re.search(r"```sh\n(pip install [^\n]*)\n```", _section("Try it"))
    assert install
    assert install.group(1).split()[2:] == [
        "otel-overspend",
        "openai",
        "opentelemetry-instrumentation-openai",
    ]
    snippet = re.search(r"```python\n(.*?)```", _section("Try it"), re.DOTALL)
    assert snippet
    app = tmp_path / "app.py"
    app.write_text(snippet.group(1), encoding="utf-8")
    with FakeProvider() as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OVERSPEND_", "OTEL_", "OPENAI_"))}
        env |= {
            "OPENAI_BASE_URL": fake.openai_url,
            "OPENAI_API_KEY": "sk-test",
            "OVERSPEND_METRICS_PORT": "0",
        }
        result = subprocess.run(
            [sys.executable, str(app)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    labels = '{model="gpt-4o-2024-08-06",provider="openai",step="rerank",tier="frontier"}'
    assert f"overspend_llm_calls_total{labels} 1.0" in lines
    cost = next(line for line in lines if line.startswith(f"overspend_llm_cost_usd_total{labels}"))
    assert float(cost.rsplit(" ", 1)[1]) > 0
