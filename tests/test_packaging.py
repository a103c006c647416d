"""The sdist and the wheel a release ships, built from this checkout's files.

The sdist is built from the files git knows (tracked, or new and not ignored) and the wheel
from the unpacked sdist, as ``python -m build`` does, so a file missing from the sdist fails
the wheel too. Then:

* the sdist holds every tracked file, and tests run from the unpacked sdist (the suite runs
  from it, ``python3 tasks.py test``);
* the wheel alone, in its own virtual environment, writes the deploy kit (the same files as
  this checkout) and runs the offline report;
* the kit's app image finds ``examples/traffic_replica.py`` in the sdist where its Dockerfile
  looks, and the replica runs on the wheel alone.

The two virtual environments (the build tools; the wheel's dependencies) are cached under
``$OVERSPEND_PACKAGING_CACHE`` (default: the temporary directory), keyed on the Python version
and pyproject.toml, so a second run only rebuilds and reinstalls the package.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from report_support import export_to, seed_requests, write_collector_lines

from otel_overspend import Settings
from otel_overspend.rules import deploy_kit

from conftest import make_pipeline, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[1]
CACHE = (
    Path(os.environ.get("OVERSPEND_PACKAGING_CACHE") or tempfile.gettempdir()) / "otel-overspend-packaging"
)
#: pyproject.toml's build requirements (mypy: its mypyc compiles the wheel's counting core), and build.
BUILD_TOOLS = ("setuptools>=69", "mypy>=1.11", "build")
REQUESTS = 12
REPORT_CONFIG = """\
use_genai_prices = false

[model_tiers]
"acme-frontier-*" = "frontier"
"""


def _run(argv: list[str | Path], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    args = [str(a) for a in argv]
    result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=300, cwd=cwd, env=env)
    assert result.returncode == 0, f"{shlex.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _cached_venv(name: str, *requirements: str | Path) -> Path:
    """A virtual environment with ``requirements``, made once per Python and pyproject.toml."""
    key = hashlib.sha256(
        "\n".join([sys.version, (ROOT / "pyproject.toml").read_text(encoding="utf-8"), *BUILD_TOOLS]).encode()
    ).hexdigest()[:12]
    venv = CACHE / f"{name}-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "ready").exists():
            shutil.rmtree(venv, ignore_errors=True)
            _run([sys.executable, "-m", "venv", venv])
            _run([_python(venv), "-m", "pip", "install", "--quiet", *requirements])
            (venv / "ready").touch()
    return venv


def _source_files() -> list[str]:
    """The checkout's files as a release sees them: tracked, or new and not ignored."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        unavailable("it builds the packages from a git checkout, and git or .git is missing")
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    return sorted(name for name in listed.split("\0") if name and (ROOT / name).is_file())


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path
    unpacked: Path  # the sdist's top directory, unpacked
    tracked: list[str]
    seconds: float


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    started = time.perf_counter()
    tools = _python(_cached_venv("build-tools", *BUILD_TOOLS))
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    files = _source_files()
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    dist = tmp / "dist"
    _run([tools, "-m", "build", "--sdist", "--no-isolation", "--outdir", dist, source])
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(tmp / "unpacked", filter="data")
        else:  # Python before 3.10.12 and 3.11.4: no filters (and the archive is our own)
            archive.extractall(tmp / "unpacked")
    (unpacked,) = (tmp / "unpacked").iterdir()
    # The wheel a release ships compiles its counting core (setup.py): a failure is an error.
    compiled = {**os.environ, "OTEL_OVERSPEND_REQUIRE_COMPILED": "1"}
    _run([tools, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, unpacked], env=compiled)
    (wheel,) = dist.glob("*.whl")
    tracked = [name for name in _run(["git", "ls-files", "-z"], cwd=ROOT).split("\0") if name]
    return Built(sdist, wheel, unpacked, tracked, time.perf_counter() - started)


@pytest.fixture(scope="module")
def installed(built: Built) -> Path:
    """A virtual environment holding the wheel and its dependencies, nothing from the checkout."""
    venv = _cached_venv("wheel", built.wheel)
    _run([_python(venv), "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", built.wheel])
    _run([_python(venv), "-m", "pip", "check"])
    return venv


# --------------------------------------------------------------------------- the sdist


def test_sdist_holds_every_tracked_file(built: Built) -> None:
    with tarfile.open(built.sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = sorted(set(built.tracked) - names - {".gitignore"})
    assert not missing, f"not in the sdist (add them to MANIFEST.in): {missing}"
    for needed in (
        "tasks.py",
        "constraints.txt",
        "docker-compose.yml",
        "examples/traffic_replica.py",
        "LICENSE",
    ):
        assert needed in names
    # The sdist in seconds; the wheel's compilation (mypyc, then the C compiler) about a
    # minute on two cores.
    assert built.seconds < 240, f"building took {built.seconds:.0f} s"


def test_tests_run_from_the_unpacked_sdist(built: Built) -> None:
    """The unpacked sdist's package, tests and files, with this environment's dependencies."""
    env = {**os.environ, "PYTHONPATH": str(built.unpacked)}
    where = _run(
        [sys.executable, "-c", "import otel_overspend; print(otel_overspend.__file__)"],
        cwd=built.unpacked,
        env=env,
    )
    assert Path(where.strip()).is_relative_to(built.unpacked)
    tests = [
        "tests/test_cli.py",
        "tests/test_readme.py",
        "tests/test_layers.py",
        "tests/rules/test_deploy_kit.py",
    ]
    out = _run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not needs_binary", *tests],
        cwd=built.unpacked,
        env=env,
    )
    assert " passed" in out
    assert " failed" not in out


# --------------------------------------------------------------------------- the wheel alone


def test_wheel_holds_the_kit_and_the_licence(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as archive:
        names = set(archive.namelist())
    kit = {name for name in names if name.startswith("otel_overspend/rules/kit/")}
    assert "otel_overspend/rules/kit/docker-compose.yml" in kit
    assert "otel_overspend/rules/kit/app/Dockerfile" in kit
    assert len(kit) >= 16
    assert "otel_overspend/py.typed" in names
    # The counting core compiled, its Python source beside it (setup.py's COMPILED).
    for module in (
        "hooks/sdk",
        "calls/conventions",
        "calls/framework_steps",
        "calls/step_rules",
        "calls/pricing",
        "calls/attribution",
        "accounting/requests",
        "base/bounded",
        "accounting/recorder",
        "accounting/ledger",
        "report/replay",
        "report/sums",
    ):
        assert f"otel_overspend/{module}.py" in names
        assert any(name.startswith(f"otel_overspend/{module}.") and name.endswith(".so") for name in names), (
            module
        )
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert not [name for name in names if name.startswith(("tests/", "examples/", "deploy/"))]


def test_wheel_alone_writes_the_kit(installed: Path, tmp_path: Path) -> None:
    python = _python(installed)
    where = _run([python, "-c", "import otel_overspend; print(otel_overspend.__file__)"], cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(installed)
    directory = tmp_path / "kit"
    out = _run([installed / "bin" / "otel-overspend", "deploy-kit", directory], cwd=tmp_path)
    assert "docker compose up --build" in out
    expected = deploy_kit.render_kit(deploy_kit.parse_args([str(directory)])).files
    written = {
        p.relative_to(directory).as_posix(): p.read_text(encoding="utf-8")
        for p in directory.rglob("*")
        if p.is_file()
    }
    assert written.keys() == expected.keys()
    assert [path for path in expected if written[path] != expected[path]] == []


def test_wheel_alone_runs_the_report(installed: Path, tmp_path: Path) -> None:
    pipeline = make_pipeline(Settings(serve_metrics=False, use_genai_prices=False))
    exported = InMemorySpanExporter()
    export_to(pipeline, exported)
    seed_requests(pipeline.tracer, REQUESTS)
    pipeline.provider.shutdown()
    traces = write_collector_lines(tmp_path / "traces.jsonl", exported.get_finished_spans())
    config = tmp_path / "overspend.toml"
    config.write_text(REPORT_CONFIG, encoding="utf-8")
    argv = ["report", "--format", "json", "--config", str(config), str(traces)]
    from_wheel = json.loads(_run([installed / "bin" / "otel-overspend", *argv], cwd=tmp_path))
    assert from_wheel["requests"] == REQUESTS
    assert from_wheel == json.loads(_run([sys.executable, "-m", "otel_overspend", *argv], cwd=tmp_path))
    table = _run([installed / "bin" / "otel-overspend", "report", "--config", config, traces], cwd=tmp_path)
    assert f"{REQUESTS} requests" in table


def test_kit_app_finds_the_replica_in_the_sdist(built: Built, installed: Path, tmp_path: Path) -> None:
    """app/Dockerfile unpacks examples/traffic_replica.py from the release's sdist into its WORKDIR."""
    dockerfile = deploy_kit.render_kit(deploy_kit.parse_args(["unused"])).files["app/Dockerfile"]
    extract = "tar -xzf /tmp/sdist/*.tar.gz --strip-components=1 --wildcards '*/examples/traffic_replica.py'"
    assert extract in dockerfile
    _run([*shlex.split(extract.replace("/tmp/sdist/*.tar.gz", str(built.sdist)))], cwd=tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.py")) == [
        "examples/traffic_replica.py"
    ]
    out = _run([_python(installed), "examples/traffic_replica.py", "--help"], cwd=tmp_path)
    assert "--mix-file" in out
