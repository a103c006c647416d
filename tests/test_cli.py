"""The ``otel-overspend`` program: one entry point, ``--version``, help for every command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _declared_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'^version = "([^"]+)"$', text, re.MULTILINE)
    assert found is not None
    return found.group(1)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otel_overspend", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_is_the_declared_one() -> None:
    result = _run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"otel-overspend {_declared_version()}"


@pytest.mark.parametrize("command", ["demo", "report", "rules", "deploy-kit"])
def test_every_command_has_help(command: str) -> None:
    result = _run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
