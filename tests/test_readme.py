"""The README and docs/ are the user's manual: keep the parts that code defines in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

from otel_overspend import Settings
from otel_overspend.rules.alerting import runbook_anchors
from otel_overspend.thresholds import ALERTS

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
