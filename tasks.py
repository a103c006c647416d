#!/usr/bin/env python3
"""The project's two commands, with nothing but Python 3.10+ on the machine.

    python3 tasks.py demo [demo options]   # install into .venv and run the demo
    python3 tasks.py test [pytest options] # install everything the tests need, run every check
    python3 tasks.py bench                 # the figures beside their budgets, on the compiled wheel

``test`` installs the package with its test extras into ``.venv``, the pinned client
instrumentations (``constraints-instrumentations.txt``) into it too, OpenLIT into its own
``.venv-openlit`` (``constraints-openlit.txt``) and traceloop-sdk into its own ``.venv-traceloop``
(``constraints-traceloop.txt``), the package with its test extras into ``.venv-sdk-floor`` and
``.venv-sdk-mid`` at the oldest and a middle OpenTelemetry release it accepts
(``constraints-sdk-floor.txt``, ``constraints-sdk-mid.txt``), installs Debian's ``prometheus``
and ``prometheus-alertmanager`` with apt-get when it runs as root on a Debian-like system and
they are missing, then runs ruff, mypy --strict and pytest, and the fast core suite again in
each of the two older-SDK environments, and once more, with the framework stacks and the
integrations, against the wheel a user installs: ``.venv-compiled`` holds the package built
as a wheel, its hot paths compiled by mypyc (``setup.py``; ``.venv`` and the other
environments install it editable, pure Python). With
``CI=true`` the tests refuse to skip anything that needs a real binary or environment, and
the compiled build must compile.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
OPENLIT_VENV = ROOT / ".venv-openlit"
TRACELOOP_VENV = ROOT / ".venv-traceloop"
#: The older OpenTelemetry releases the fast core suite also runs against (.venv has the newest,
#: constraints.txt's): name -> its environment; constraints-<name>.txt pins the release.
SDK_MATRIX = {"sdk-floor": ROOT / ".venv-sdk-floor", "sdk-mid": ROOT / ".venv-sdk-mid"}
FAST_CORE = "not slow and not e2e and not needs_binary"
#: The wheel's build, its hot paths compiled (setup.py), where the fast core suite runs too.
COMPILED_VENV = ROOT / ".venv-compiled"
#: Run on the compiled build beside the fast core suite: real instrumentations and frameworks
#: through the compiled span hooks. Not the runs in .venv-openlit and .venv-traceloop, whose
#: editable installs are pure Python: the main run has them.
COMPILED_STACKS = (
    "tests/stacks",
    "tests/integrations",
    "--ignore=tests/stacks/test_instrumentations_openlit.py",
    "--ignore=tests/stacks/test_stack_traceloop.py",
)
APT_PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
}


def _run(*args: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    result = subprocess.run([str(a) for a in args], check=False, env=env)
    if result.returncode != 0:
        sys.exit(result.returncode)


def _ensure_venv(extras: str) -> None:
    if sys.version_info < (3, 10):  # noqa: UP036 - this script runs on whatever python3 the user has
        sys.exit(f"otel_overspend needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{extras or 'base'}"
    sources = [ROOT / "pyproject.toml", ROOT / "constraints.txt"]
    newest = max(p.stat().st_mtime for p in sources if p.exists())
    if stamp.exists() and stamp.stat().st_mtime >= newest:
        return
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    args: list[str | Path] = [PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if (ROOT / "constraints.txt").exists():
        args += ["-c", ROOT / "constraints.txt"]
    _run(*args, "-e", target)
    stamp.touch()


def _install_once(python: Path, name: str, constraints: Path, *targets: str | Path) -> bool:
    """``pip install -c constraints targets`` into ``python``'s environment, unless done since
    the constraints or pyproject.toml last changed; whether it is installed. Outside CI a
    failure only warns: the tests that need it skip, saying why."""
    stamp = python.parent.parent / f".installed-{name}"
    newest = max(p.stat().st_mtime for p in (ROOT / "pyproject.toml", constraints))
    if stamp.exists() and stamp.stat().st_mtime >= newest:
        return True
    args: list[str | Path] = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if (ROOT / "constraints.txt").exists() and python == PY:
        args += ["-c", ROOT / "constraints.txt"]
    args += ["-c", constraints, *targets]
    print("+", " ".join(str(a) for a in args), flush=True)
    if subprocess.run([str(a) for a in args], check=False).returncode == 0:
        stamp.touch()
        return True
    message = f"could not install the {name} test environment ({python.parent.parent.name})"
    if os.environ.get("CI") == "true":
        sys.exit(f"CI needs it: {message}")
    print(f"warning: {message}; the tests that need it will be skipped", flush=True)
    return False


def _own_venv(path: Path) -> Path:
    """The python of a test environment of its own at ``path``, created if missing."""
    python = path / BIN.name / "python"
    if not python.exists():
        print(f"creating {path}", flush=True)
        venv.EnvBuilder(with_pip=True).create(path)
        # Keeps git and ruff out of it (the venv module writes this itself only from Python 3.13).
        (path / ".gitignore").write_text("*\n")
    return python


def _ensure_instrumentations() -> None:
    """The real LLM clients and instrumentations the instrumentation tests drive: the
    ``instrumentations`` extra in ``.venv``; OpenLIT, which pins older clients, in its own
    ``.venv-openlit``; traceloop-sdk, which needs OpenTelemetry one release behind, in its own
    ``.venv-traceloop``."""
    _install_once(
        PY, "instrumentations", ROOT / "constraints-instrumentations.txt", "-e", f"{ROOT}[instrumentations]"
    )
    _install_once(
        _own_venv(OPENLIT_VENV),
        "openlit",
        ROOT / "constraints-openlit.txt",
        "openlit",
        "openai",
        "anthropic",
        "-e",
        ROOT,
    )
    _install_once(
        _own_venv(TRACELOOP_VENV),
        "traceloop",
        ROOT / "constraints-traceloop.txt",
        "traceloop-sdk",
        "openai",
        "httpx",  # traceloop-sdk imports it without declaring it
        "opentelemetry-instrumentation-openai-v2",
        "opentelemetry-util-genai",
        "openinference-instrumentation-openai",
        "-e",
        ROOT,
    )


def _pinned_name(line: str) -> str | None:
    """The normalised project name a constraints line names (``None``: a comment or blank)."""
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    return re.sub(r"[-_.]+", "-", re.split(r"[\s=<>!~;\[]", text, maxsplit=1)[0]).lower()


def _layered_constraints(pins: Path, into: Path) -> Path:
    """``into``/constraints.txt: the lines of ``pins``, then constraints.txt's for every package
    ``pins`` does not name (pip refuses two pins of one package). Rewritten only when its text
    changes, so that the install stamp stays valid until a constraints file does change."""
    own = pins.read_text(encoding="utf-8").splitlines()
    named = {_pinned_name(line) for line in own} - {None}
    base = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    rest = [line for line in base if _pinned_name(line) not in named | {None}]
    text = "\n".join([*own, f"# constraints.txt, less the packages {pins.name} pins:", *rest]) + "\n"
    layered = into / "constraints.txt"
    if not layered.exists() or layered.read_text(encoding="utf-8") != text:
        layered.write_text(text, encoding="utf-8")
    return layered


def _ensure_sdk_matrix() -> dict[str, Path]:
    """The package and its test extras in each SDK_MATRIX environment; the python of each
    installed one, by name (outside CI a failed install only warns and that run is skipped)."""
    ready: dict[str, Path] = {}
    for name, path in SDK_MATRIX.items():
        python = _own_venv(path)
        constraints = _layered_constraints(ROOT / f"constraints-{name}.txt", path)
        if _install_once(python, name, constraints, "-e", f"{ROOT}[test]"):
            ready[name] = python
    return ready


def _source_digest() -> str:
    """What a wheel is built from, digested: the package's files, setup.py, pyproject.toml
    and constraints.txt (the compiled environment is rebuilt when any of them changes)."""
    digest = hashlib.sha256()
    package = [
        p for p in (ROOT / "otel_overspend").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    ]
    for path in sorted([*package, ROOT / "setup.py", ROOT / "pyproject.toml", ROOT / "constraints.txt"]):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _ensure_compiled() -> Path | None:
    """``.venv-compiled``: the test extras, and the package built as a wheel with its counting
    core compiled (rebuilt when its source changes); its python, or ``None`` when the build
    fails outside CI (a warning: that run is skipped)."""
    python = _own_venv(COMPILED_VENV)
    # The dependencies, through editable installs the wheel then replaces (which build
    # nothing); after either runs again the wheel is installed again too. The clients and
    # instrumentations are there because the span hooks are compiled: the framework stacks
    # run on the wheel too.
    if not _install_once(python, "compiled-deps", ROOT / "constraints.txt", "-e", f"{ROOT}[test]"):
        return None
    pins = _layered_constraints(ROOT / "constraints-instrumentations.txt", COMPILED_VENV)
    if not _install_once(python, "compiled-instrumentations", pins, "-e", f"{ROOT}[instrumentations]"):
        return None
    stamp = COMPILED_VENV / ".installed-digest"
    digest = _source_digest()
    deps = [COMPILED_VENV / f".installed-compiled-{name}" for name in ("deps", "instrumentations")]
    if (
        stamp.exists()
        and stamp.stat().st_mtime >= max(d.stat().st_mtime for d in deps)
        and stamp.read_text(encoding="utf-8") == digest
    ):
        return python
    # The build's own environment (mypy's mypyc) takes the pins too, through PIP_CONSTRAINT.
    env = {
        **os.environ,
        "PIP_CONSTRAINT": str(ROOT / "constraints.txt"),
        "OTEL_OVERSPEND_REQUIRE_COMPILED": "1",
    }
    args = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    args += ["--no-deps", "--force-reinstall", str(ROOT)]
    print("+", " ".join(args), flush=True)
    if subprocess.run(args, check=False, env=env).returncode != 0:
        message = "could not build the compiled wheel (setup.py: mypyc and a C compiler)"
        if os.environ.get("CI") == "true":
            sys.exit(f"CI needs it: {message}")
        print(f"warning: {message}; its fast core suite will be skipped", flush=True)
        return None
    stamp.write_text(digest, encoding="utf-8")
    return python


def _ensure_binaries() -> None:
    missing = sorted({pkg for binary, pkg in APT_PACKAGES.items() if shutil.which(binary) is None})
    if not missing:
        return
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if is_root and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run("apt-get", "update", "-qq", env=env)
        _run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, env=env)
        return
    message = f"missing {', '.join(missing)} (install them with your package manager)"
    if os.environ.get("CI") == "true":
        sys.exit(f"CI needs the real binaries: {message}")
    print(f"warning: {message}; the tests that need them will be skipped", flush=True)


def demo(argv: list[str]) -> None:
    _ensure_venv("")
    os.execv(str(BIN / "otel-overspend"), [str(BIN / "otel-overspend"), "demo", *argv])  # noqa: S606


def test(argv: list[str]) -> None:
    _ensure_venv("test")
    _ensure_instrumentations()
    matrix = _ensure_sdk_matrix()
    compiled = _ensure_compiled()
    _ensure_binaries()
    _run(BIN / "ruff", "check", ROOT)
    _run(BIN / "ruff", "format", "--check", ROOT)
    _run(BIN / "mypy", "--config-file", ROOT / "pyproject.toml")
    _run(PY, "-m", "pytest", *argv)
    failed = []
    for name, python in matrix.items():
        # No cache: .pytest_cache (--lf, --ff) keeps describing the main run.
        args = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", FAST_CORE]
        print("+", " ".join(args), flush=True)
        if subprocess.run(args, check=False).returncode != 0:
            failed.append(name)
    if compiled is not None:
        # Its pytest script, not ``python -m pytest``: the checkout's directory stays off
        # sys.path, so the tests import the installed, compiled package (conftest checks).
        # The fast core suite, then the framework stacks and integrations (the span hooks are
        # compiled too).
        pytest = [str(compiled.parent / "pytest"), "-q", "-p", "no:cacheprovider"]
        env = {**os.environ, "OTEL_OVERSPEND_EXPECT_COMPILED": "1"}
        for args in (
            [*pytest, "-m", f"{FAST_CORE} and not pure_python"],
            [*pytest, "-m", "e2e and not needs_binary and not pure_python", *COMPILED_STACKS],
        ):
            print("+", " ".join(args), flush=True)
            if subprocess.run(args, check=False, env=env).returncode != 0:
                failed.append("the compiled build (.venv-compiled)")
                break
    if failed:
        sys.exit(f"the fast core suite failed on {', '.join(failed)}")


def bench(argv: list[str]) -> None:
    # What a user installs: the wheel, its hot paths compiled (.venv-compiled).
    python = _ensure_compiled()
    if python is None:
        sys.exit("the benchmarks measure the compiled wheel, which did not build (setup.py)")
    _install_once(python, "bench", ROOT / "constraints.txt", "pandas>=2.0", "zstandard>=0.22")
    _run(python, ROOT / "benchmarks" / "run.py", *argv)


def main() -> None:
    commands = {"demo": demo, "test": test, "bench": bench}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit("usage: python3 tasks.py demo|test|bench [args...]")
    os.chdir(ROOT)
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
