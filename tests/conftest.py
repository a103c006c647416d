"""Shared fixtures: a real TracerProvider wired to a fresh OverspendProcessor."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from otel_overspend import OverspendProcessor, Settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from e2e_support.fleet import Processes, WebhookReceiver
    from opentelemetry.trace import Tracer


class FakeClock:
    """A clock the test moves by hand (seconds since the epoch)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Pipeline:
    provider: TracerProvider
    tracer: Tracer
    processor: OverspendProcessor
    registry: CollectorRegistry

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.registry.get_sample_value(name, labels or {})

    def total(self, name: str, **labels: str) -> float | None:
        """The sum of every sample of ``name`` whose labels include ``labels`` (``None``: none)."""
        found = [
            sample.value
            for family in self.registry.collect()
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        ]
        return sum(found) if found else None


def make_pipeline(settings: Settings | None = None, **kwargs: object) -> Pipeline:
    registry = CollectorRegistry()
    processor = OverspendProcessor(
        settings=settings or Settings(serve_metrics=False),
        registry=registry,
        serve_metrics=False,
        **kwargs,  # type: ignore[arg-type]
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    return Pipeline(provider, provider.get_tracer("tests"), processor, registry)


@pytest.fixture(autouse=True)
def _processors_shut_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every processor a test builds is shut down after it, as an app's exit does.

    A processor left running keeps its counting thread, which wakes twice a second for the
    rest of the session: a hundred of them made the thread tests after them 10 to 40 times
    slower than alone."""
    made: list[OverspendProcessor] = []
    build = OverspendProcessor.__init__

    def tracked(self: OverspendProcessor, *args: Any, **kwargs: Any) -> None:
        build(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(OverspendProcessor, "__init__", tracked)
    yield
    for processor in made:
        processor.shutdown()


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    p = make_pipeline()
    yield p
    p.provider.shutdown()


def absent(module: str) -> bool:
    """Whether ``module`` cannot be imported; a missing parent package is absent too
    (``find_spec("a.b")`` raises when ``a`` itself is missing)."""
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


def unavailable(reason: str) -> NoReturn:
    """A real part this test needs is missing: fail under ``CI=true``, where every part must be
    installed and used, and skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run this test, but {reason}", pytrace=False)
    pytest.skip(reason)


def require_module(name: str) -> Any:
    """An installed Python module a test extra provides, or :func:`unavailable`."""
    try:
        return importlib.import_module(name)
    except ImportError:
        unavailable(f"the Python module {name} is not installed (python3 tasks.py test installs it)")


def require_binary(name: str, package: str) -> str:
    """The path of a Debian package's binary, or :func:`unavailable`."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} not found on PATH (Debian/Ubuntu: apt-get install {package})")
    return path


# -- the end-to-end tests' processes and webhook ---------------------------------------------


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Processes an end-to-end test starts, all stopped at its end."""
    from e2e_support.fleet import Processes

    group = Processes(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    """An HTTP receiver of Alertmanager's webhook posts."""
    from e2e_support.fleet import WebhookReceiver

    with WebhookReceiver() as receiver:
        yield receiver


def pytest_sessionstart(session: pytest.Session) -> None:
    """In the compiled build's run (``tasks.py test``), refuse to test pure Python instead."""
    del session
    if os.environ.get("OTEL_OVERSPEND_EXPECT_COMPILED") == "1":
        from otel_overspend.accounting import recorder

        if recorder.__file__ is None or recorder.__file__.endswith(".py"):
            raise pytest.UsageError(f"expected the compiled build, imported {recorder.__file__}")
