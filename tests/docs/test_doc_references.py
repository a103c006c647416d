"""Every name the docs give exists, and every link lands.

``tests/test_docs.py`` runs or checks each code block; this module checks what the prose and
the blocks *name*, in every ``docs/*.md`` (blocks marked not-run included):

- each ``OVERSPEND_*`` variable is a setting's (or one the zero-code hook reads);
- each ``overspend_*`` metric family is one the package writes, each ``overspend:*`` recording
  rule and each ``Overspend*`` alert is in what ``otel-overspend rules`` prints, and each alert
  has its runbook heading in ``alerts.md`` (the anchor its ``runbook_url`` points at);
- each ``--option`` is one of an ``otel-overspend`` command's (the programs' own help says so),
  or of another program the same page runs;
- each relative link names a file that exists, and a heading there if it has an anchor;
- the ``docker compose`` and ``kubectl`` lines, which no test here can run (no Docker engine,
  no cluster): the services they name are in the compose file, a path copied out of a
  container is one of its mounts, a manifest applied is written by the same block or shipped;
- a ``yaml`` block that is a Prometheus rule file or configuration passes ``promtool``.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

import otel_overspend
from otel_overspend.cli import main as cli_main
from otel_overspend.config.settings import Settings
from otel_overspend.rules import alerting

from conftest import require_binary

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^\s*```(\S*)\s*$")

#: Options of programs other than ours that the docs show, with the program each belongs to:
#: the page that shows one must name that program.
FOREIGN_OPTIONS = {
    "--build": "docker compose",
    "--workers": "uvicorn",
    "--preload": "gunicorn",
    "--data-urlencode": "curl",
    "--floors": "bench_hot_path.py",
}


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _blocks(page: Path) -> list[tuple[int, str, str]]:
    """(line, language, body) of each fenced block."""
    lines = _text(page).splitlines()
    found: list[tuple[int, str, str]] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```"))
        found.append((i + 1, fence.group(1), "\n".join(lines[i + 1 : end]) + "\n"))
        i = end + 1
    return found


def _cli(*argv: str) -> str:
    """What ``otel-overspend ARGV`` prints (``--help`` included)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        cli_main(list(argv))
    return out.getvalue()


@cache
def _rules() -> str:
    return _cli("rules")


@cache
def _package_source() -> str:
    files = (ROOT / "otel_overspend").rglob("*")
    return "".join(
        p.read_text(encoding="utf-8")
        for p in files
        if p.is_file() and p.suffix in {".py", ".yml", ".yaml", ".json"}
    )


@cache
def _our_options() -> frozenset[str]:
    helps = [_cli("--help")]
    helps += [_cli(command, "--help") for command in ("demo", "report", "rules", "deploy-kit")]
    return frozenset(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", "".join(helps)))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", _text(page), flags=re.DOTALL)
    return {_slug(m) for m in re.findall(r"^#+\s+(.+)$", text, flags=re.MULTILINE)}


pages = pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)


@pages
def test_every_variable_is_a_setting(page: Path) -> None:
    hook = (ROOT / "otel_overspend" / "integrations" / "autoconfigure.py").read_text(encoding="utf-8")
    known = {f"OVERSPEND_{name.upper()}" for name in Settings.model_fields}
    known |= set(re.findall(r"OVERSPEND_[A-Z0-9_]+", hook))
    named = set(re.findall(r"\bOVERSPEND_[A-Z][A-Z0-9_]*[A-Z0-9]\b", _text(page)))
    assert named <= known, f"{page.name}: no such variable: {sorted(named - known)}"


@pages
def test_every_metric_family_is_written_by_the_package(page: Path) -> None:
    for name in sorted(set(re.findall(r"\boverspend_[a-z0-9_]*[a-z0-9]\b", _text(page)))):
        family = re.sub(r"_(total|sum|count|bucket|created)$", "", name)
        assert family in _package_source(), f"{page.name}: no metric {name}"


@pages
def test_every_recording_rule_and_alert_is_in_the_rules(page: Path) -> None:
    text = _text(page)
    for record in sorted(set(re.findall(r"\boverspend:[a-z0-9_:]*[a-z0-9]", text))):
        assert record in _rules(), f"{page.name}: no recording rule {record}"
    names = set(re.findall(r"\bOverspend[A-Z][A-Za-z]+", text)) - set(otel_overspend.__all__)
    for alert in sorted(names):
        assert f"alert: {alert}\n" in _rules(), f"{page.name}: no alert {alert}"


def test_every_alert_has_its_runbook_in_alerts_md() -> None:
    """The anchors the rules' ``runbook_url`` and ``pattern_runbook_url`` point at."""
    anchors = _anchors(DOCS / "alerts.md")
    pointed = set(re.findall(r"runbook_url: \S+/docs/alerts\.md#(\S+)", _rules()))
    assert set(alerting.runbook_anchors()) <= pointed
    assert any(anchor.startswith("pattern-") for anchor in pointed)
    missing = sorted(pointed - anchors)
    assert not missing, f"alerts.md has no runbook heading for {missing}"


@pages
def test_every_option_exists(page: Path) -> None:
    text = _text(page)
    for option in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))):
        if option in _our_options():
            continue
        program = FOREIGN_OPTIONS.get(option)
        assert program is not None, f"{page.name}: {option} is no option of otel-overspend"
        assert program in text, f"{page.name}: {option} is {program}'s, and the page does not run {program}"


@pages
def test_every_relative_link_lands(page: Path) -> None:
    prose = re.sub(r"```.*?```", "", _text(page), flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (DOCS / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}: no such file"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page.name}: {target}: no such heading"


# -- lines for systems that are not here ----------------------------------------------------------
def _compose() -> dict[str, Any]:
    kit = yaml.safe_load((ROOT / "otel_overspend" / "rules" / "kit" / "docker-compose.yml").read_text())
    checkout = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(kit["services"]) == set(checkout["services"])
    return dict(kit)


def _shell_lines(body: str) -> list[list[str]]:
    return [
        words
        for line in body.replace("\\\n", " ").splitlines()
        if (words := shlex.split(line, comments=True))
    ]


SHELL_BLOCKS = [
    pytest.param(page, line, body, id=f"{page.name}:{line}")
    for page in PAGES
    for line, lang, body in _blocks(page)
    if lang in {"sh", "bash"} and re.search(r"^\s*(docker|kubectl)\b", body, flags=re.MULTILINE)
]


@pytest.mark.parametrize(("page", "line", "body"), SHELL_BLOCKS)
def test_docker_and_kubectl_lines_name_what_exists(page: Path, line: int, body: str) -> None:
    services = _compose()["services"]
    written: set[str] = set()
    for words in _shell_lines(body):
        where = f"{page.name}:{line}: {' '.join(words)}"
        if ">" in words:
            written.add(words[words.index(">") + 1])
        if words[:2] == ["docker", "compose"]:
            action = words[2]
            assert action in {"up", "exec", "cp", "logs", "down", "ps"}, where
            if action == "exec":
                assert words[3] in services, where
            if action == "cp":
                service, _, path = words[3].partition(":")
                mounts = [str(v).split(":")[1] for v in services[service].get("volumes", [])]
                assert any(path == m or path.startswith(m + "/") for m in mounts), where
        elif words[0] == "kubectl":
            assert words[1] == "apply", where
            manifest = words[words.index("-f") + 1]
            assert manifest in written or (ROOT / manifest).is_file(), (
                f"{where}: {manifest} is neither written nor shipped"
            )


# -- yaml for Prometheus --------------------------------------------------------------------------
YAML_BLOCKS = [
    pytest.param(page, line, body, id=f"{page.name}:{line}")
    for page in PAGES
    for line, lang, body in _blocks(page)
    if lang in {"yaml", "yml"}
]


@pytest.mark.parametrize(("page", "line", "body"), YAML_BLOCKS)
def test_prometheus_yaml_passes_promtool(page: Path, line: int, body: str, tmp_path: Path) -> None:
    doc = yaml.safe_load(body)
    assert isinstance(doc, dict), f"{page.name}:{line}"
    check = "rules" if "groups" in doc else "config" if "scrape_configs" in doc else None
    if check is None:
        return  # not Prometheus's: tests/test_docs.py parses it
    path = tmp_path / "block.yml"
    path.write_text(body)
    done = subprocess.run(
        [require_binary("promtool", "prometheus"), "check", check, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"{page.name}:{line}: promtool check {check}:\n{done.stdout}{done.stderr}"


def test_performance_links_the_results_and_runs_scripts_that_exist() -> None:
    performance = _text(DOCS / "performance.md")
    assert "](../benchmarks/RESULTS.md)" in performance
    for words in _shell_lines(next(b for _, lang, b in _blocks(DOCS / "performance.md") if lang == "sh")):
        script = next((w for w in words if w.endswith(".py")), None)
        assert script is not None, words
        assert (ROOT / script).is_file(), words
