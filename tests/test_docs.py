"""Every code block in ``docs/`` is run or checked, by its language, as the README's are.

- ``python``: run as pasted in a fresh interpreter (with what it assumes defined before it:
  a tracer provider, a tracer, messages, the local fake provider for an LLM client);
- ``toml``: loaded as the settings' config file;
- ``sh``: each ``otel-overspend`` command run for real where it needs nothing from outside
  (``rules``, ``deploy-kit``), else parsed by the program's own argument parser, so that
  every option shown exists; ``opentelemetry-instrument`` lines: the program is installed and
  every ``OVERSPEND_*`` variable is a setting;
- ``yaml``: parsed; a collector configuration must name the file exporter the report reads;
- ``text``: error messages, each produced by the mistake it names.

A block none of these can run (a diagram, sample output, a formula, a command against a
live system) carries ``<!-- not-run: why -->`` on the line before it; a block with neither
a check nor that mark fails, so a new block cannot go unchecked.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from otel_overspend.cli import build_parser
from otel_overspend.cli import main as cli_main
from otel_overspend.config.settings import ConfigError, Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: pydantic-settings brings tomli
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NOT_RUN = re.compile(r"<!-- not-run: (.+?) -->")
FENCE = re.compile(r"^\s*```(\S*)\s*$")


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    body: str
    #: Why it is not run (the ``not-run`` mark before it), if it is not.
    not_run: str | None

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def _blocks() -> Iterator[Block]:
    for path in sorted(DOCS.glob("*.md")):
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            fence = FENCE.match(lines[i])
            if fence is None:
                i += 1
                continue
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```"))
            before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            mark = NOT_RUN.search(before)
            yield Block(
                path.name,
                i + 1,
                fence.group(1),
                "\n".join(lines[i + 1 : end]) + "\n",
                mark.group(1) if mark else None,
            )
            i = end + 1


BLOCKS = list(_blocks())


def test_the_docs_have_blocks_and_every_kind_is_known() -> None:
    assert len(BLOCKS) >= 15
    for block in BLOCKS:
        assert block.not_run is not None or block.lang in CHECKS, (
            f"{block}: a ```{block.lang or ''} block with no check: give it one in tests/test_docs.py, "
            "or mark it <!-- not-run: why --> on the line before"
        )


# -- python ---------------------------------------------------------------------------------------
PROVIDER = """
from opentelemetry.sdk.trace import TracerProvider
provider = TracerProvider()
tracer = provider.get_tracer("docs")
"""
LLM_CLIENT = """
import sys
sys.path.insert(0, {examples!r})
from fake_provider import FakeProvider
fake = FakeProvider().start()
import os
os.environ["OPENAI_API_BASE"] = os.environ["OPENAI_BASE_URL"] = fake.openai_url
os.environ["OPENAI_API_KEY"] = "test"
import litellm
from otel_overspend import step
messages = [{{"role": "user", "content": "what does the policy say?"}}]
"""


def _run_python(block: Block, tmp_path: Path) -> None:
    prelude = ""
    if "provider = " not in block.body and ("provider." in block.body or "tracer." in block.body):
        prelude += PROVIDER
    if "litellm." in block.body:
        prelude += LLM_CLIENT.format(examples=str(ROOT / "examples"))
    script = tmp_path / "block.py"
    script.write_text(prelude + block.body + ("\nprovider.shutdown()\n" if "provider" in prelude else ""))
    env = {
        **os.environ,
        "OVERSPEND_SERVE_METRICS": "false",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
    }
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert done.returncode == 0, f"{block} failed:\n{done.stderr[-3000:]}"


# -- toml -----------------------------------------------------------------------------------------
def _load_toml(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "overspend.toml"
    path.write_text(block.body)
    settings = Settings.with_config_file(path)  # a key that is no setting, or a bad value, raises
    for key in tomllib.loads(block.body):
        assert key in type(settings).model_fields, f"{block}: {key!r} is no setting"


# -- sh -------------------------------------------------------------------------------------------
def _commands(body: str) -> Iterator[list[str]]:
    """The block's command lines (continuations joined, comments and redirections gone), the
    part after a pipe that runs a program of ours included."""
    text = body.replace("\\\n", " ")
    for line in text.splitlines():
        for part in line.split("|"):
            words = shlex.split(part, comments=True)
            while words and words[-2:-1] == [">"]:
                words = words[:-2]
            if words:
                yield words


def _run_sh(block: Block, tmp_path: Path) -> None:
    checked = 0
    for line in _commands(block.body):
        env_vars = [w for w in line if re.fullmatch(r"[A-Z_]+=\S*", w)]
        words = [w for w in line if w not in env_vars]
        program = Path(words[0]).name
        if program == "otel-overspend":
            _run_otel_overspend(block, words[1:], tmp_path)
        elif program in {"python", "python3"} and words[1:2] and words[1].endswith(".py"):
            script = ROOT / words[1]
            assert script.is_file(), f"{block}: {words[1]} is not in the repository"
            if script.name == "tasks.py":
                assert words[2] in {"demo", "test", "bench"}, f"{block}: tasks.py has no {words[2]!r}"
        elif program == "opentelemetry-instrument":
            assert (Path(sys.executable).parent / program).exists(), f"{block}: {program} is not installed"
        else:
            continue  # curl, docker, kubectl: the systems they talk to are not here
        for assignment in env_vars:
            name = assignment.split("=", 1)[0]
            if name.startswith("OVERSPEND_"):
                assert (
                    name in ZERO_CODE_VARIABLES
                    or name.removeprefix("OVERSPEND_").lower() in Settings.model_fields
                ), f"{block}: {name} is no setting"
        checked += 1
    assert checked, f"{block}: no command of ours in it; mark it <!-- not-run: why -->"


#: Variables the zero-code hook reads itself (not settings).
ZERO_CODE_VARIABLES = frozenset(
    re.findall(
        r"OVERSPEND_[A-Z_]+", (ROOT / "otel_overspend" / "integrations" / "autoconfigure.py").read_text()
    )
) - {f"OVERSPEND_{name.upper()}" for name in Settings.model_fields}


def _run_otel_overspend(block: Block, args: list[str], tmp_path: Path) -> None:
    command = args[0] if args else ""
    if command in {"rules", "deploy-kit"}:
        # Run for real, in a scratch directory (deploy-kit writes where it is told).
        args = [
            str(tmp_path / a) if command == "deploy-kit" and not a.startswith("-") and a != command else a
            for a in args
        ]
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli_main(args)
        assert code == 0, f"{block}: otel-overspend {' '.join(args)} exited {code}"
        return
    # report (paths of the user's machine): every option must parse.
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"{block}: otel-overspend {' '.join(args)} does not parse (exit {exc.code})")


# -- yaml -----------------------------------------------------------------------------------------
def _load_yaml(block: Block, _: Path) -> None:
    doc = yaml.safe_load(block.body)
    assert isinstance(doc, dict), block
    if "exporters" in doc:  # the collector's configuration the report's files come from
        exporters = doc["exporters"]
        assert any(name.split("/")[0] == "file" for name in exporters), f"{block}: no file exporter"
        for name, exporter in exporters.items():
            if name.split("/")[0] == "file":
                assert exporter.get("path"), f"{block}: {name} has no path"


# -- text: error messages -------------------------------------------------------------------------
def _error_of(line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ConfigError message of the mistake ``line`` names, made for real."""
    for name in list(os.environ):
        if name.startswith("OVERSPEND_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    try:
        _make(line, tmp_path, monkeypatch)
    except ConfigError as exc:
        return str(exc)
    pytest.fail(f"{line!r}: no ConfigError")


def _make(line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if line.startswith("OVERSPEND_METRICS_PORT="):
        monkeypatch.setenv("OVERSPEND_METRICS_PORT", "abc")
        Settings()
    elif line.startswith("OVERSPEND_METRICS_KEYFILE="):
        key = tmp_path / "key.pem"  # the doc's /etc/tls/key.pem, here
        key.write_text("-----BEGIN PRIVATE KEY-----\n")
        monkeypatch.setenv("OVERSPEND_METRICS_KEYFILE", str(key))
        try:
            Settings()
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(str(key), "/etc/tls/key.pem")) from None
    elif line.startswith("overspend.toml:"):
        Path("overspend.toml").write_text('[model_tiers]\n"gpt-4o" = "huge"\n')
        Settings.with_config_file("overspend.toml")
    elif line.startswith("Settings(metrics_prot=1)"):
        Settings(metrics_prot=1)  # type: ignore[call-arg]
    else:
        pytest.fail(f"no way to make the error {line!r}: add one in tests/test_docs.py")


def _check_text(block: Block, tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        for line in block.body.splitlines():
            if line.strip():
                assert _error_of(line, tmp_path, monkeypatch) == line, block


CHECKS = {"python": _run_python, "toml": _load_toml, "sh": _run_sh, "yaml": _load_yaml, "text": _check_text}


#: Blocks that run a framework only the main test environment installs (the older-SDK
#: environments run the core suite): end to end, as the stack tests are.
_FRAMEWORKS = ("litellm",)


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(b, marks=pytest.mark.e2e) if any(f"{name}." in b.body for name in _FRAMEWORKS) else b
        for b in BLOCKS
        if b.not_run is None
    ],
    ids=str,
)
def test_each_block_runs_or_is_checked(block: Block, tmp_path: Path) -> None:
    check = CHECKS.get(block.lang)
    if check is None:
        pytest.fail(f"{block}: no check for ```{block.lang}; mark it <!-- not-run: why -->")
    check(block, tmp_path)


def test_performance_doc_links_the_benchmark_results() -> None:
    text = (DOCS / "performance.md").read_text(encoding="utf-8")
    assert "../benchmarks/RESULTS.md" in text
