"""The build: the hot paths compiled with mypyc in a wheel, pure Python otherwise.

A wheel (``pip install otel-overspend``, ``pip install .``) compiles the modules of
:data:`COMPILED` to C extensions with mypyc: the same source, type-checked by mypy
``--strict``, through which every span and every LLM call runs, live and in the offline
report (the figures: ``benchmarks/RESULTS.md``). Everything else stays Python, and every
module has its Python source beside it.

An editable install (``pip install -e .``, the development environment) is pure Python, so
that an edit takes effect at once. ``OTEL_OVERSPEND_PURE_PYTHON=1`` builds a pure-Python
wheel; so does a machine where the compilation fails (no C compiler, say), with a warning.
``OTEL_OVERSPEND_REQUIRE_COMPILED=1`` makes that failure an error instead (CI).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

#: What every span and every LLM call runs through: the span hooks on the SDK's own spans;
#: then, live and offline, reading usage, the step rules, pricing, attribution, the
#: recorder, its open requests and the bounded tables; live, the ledger; offline, the
#: replay of trace files, the step time of its requests and its per-period sums.
COMPILED = (
    "otel_overspend/hooks/sdk.py",
    "otel_overspend/calls/conventions.py",
    "otel_overspend/calls/framework_steps.py",
    "otel_overspend/calls/step_rules.py",
    "otel_overspend/calls/pricing.py",
    "otel_overspend/calls/attribution.py",
    "otel_overspend/base/bounded.py",
    "otel_overspend/accounting/requests.py",
    "otel_overspend/accounting/recorder.py",
    "otel_overspend/accounting/ledger.py",
    "otel_overspend/accounting/step_time.py",
    "otel_overspend/report/otlp_proto.py",
    "otel_overspend/report/replay.py",
    "otel_overspend/report/sums.py",
)
PURE_ENV = "OTEL_OVERSPEND_PURE_PYTHON"
REQUIRE_ENV = "OTEL_OVERSPEND_REQUIRE_COMPILED"


def _warn(message: str) -> None:
    print(f"otel-overspend: {message}", file=sys.stderr, flush=True)


def _fail_or_warn(message: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        raise SystemExit(f"otel-overspend: {message} ({REQUIRE_ENV}=1)")
    _warn(f"{message}; building pure Python, which counts the same, more slowly")


def _extensions() -> list[Any]:
    """The compiled modules, for a wheel only (not an editable install, nor metadata)."""
    if "bdist_wheel" not in sys.argv or os.environ.get(PURE_ENV) == "1":
        return []
    try:
        from mypyc.build import mypycify  # noqa: PLC0415 - only a wheel's build needs mypy
    except ImportError:
        _fail_or_warn("mypyc is not installed")
        return []
    try:
        # Only the compiled modules must type-check here. The build's environment need not
        # hold the package's dependencies (pip builds the wheel before it installs them): the
        # hooks' OpenTelemetry types are then unknown, and the "type: ignore" comments that
        # the SDK's types need in development are unused.
        flags = ["--follow-imports=silent", "--ignore-missing-imports", "--no-warn-unused-ignores"]
        return list(mypycify([*flags, *COMPILED], opt_level="3", group_name="otel_overspend"))
    except BaseException as exc:  # mypy exits with SystemExit on a type error
        _fail_or_warn(f"mypyc could not compile the modules: {exc!r}")
        return []


class _AllOrNothing(build_ext):
    """Builds every compiled module or none: a half-built set would not import."""

    def run(self) -> None:
        self.force = True  # each module compiled afresh, no object reused from an earlier build
        try:
            super().run()
        except Exception as exc:  # a compiler's failure has many classes
            for ext in self.extensions:
                built = Path(self.get_ext_fullpath(ext.name))
                if built.exists():
                    built.unlink()
            shutil.rmtree(Path(self.build_temp), ignore_errors=True)
            self.extensions = []
            _fail_or_warn(f"the C compiler failed: {exc!r}")


def _forget_earlier_builds() -> None:
    """Remove the extensions an earlier build left in ``build/``: pip builds a local directory
    in place, and a module compiled then and not now (or a pure-Python build after a
    compiled one) would otherwise ship its stale extension beside its current source."""
    for lib in Path(__file__).resolve().parent.glob("build/lib*"):
        for pattern in ("*.so", "*.pyd", "otel_overspend/**/*.so", "otel_overspend/**/*.pyd"):
            for built in lib.glob(pattern):
                built.unlink()


if "bdist_wheel" in sys.argv:
    _forget_earlier_builds()
setup(ext_modules=_extensions(), cmdclass={"build_ext": _AllOrNothing})
