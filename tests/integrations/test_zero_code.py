"""``opentelemetry-instrument python app.py`` with only environment variables set."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e]

APP = textwrap.dedent(
    """
    import os
    import urllib.request

    from opentelemetry import trace

    tracer = trace.get_tracer("app")
    with tracer.start_as_current_span("request"):
        with tracer.start_as_current_span(
            "chat",
            attributes={
                "gen_ai.request.model": "claude-sonnet-4-5",
                "gen_ai.provider.name": "anthropic",
                "gen_ai.usage.input_tokens": 12000,
                "gen_ai.usage.output_tokens": 200,
                "openinference.span.kind": "RERANKER",
            },
        ):
            pass
    port = os.environ["OVERSPEND_METRICS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        print(response.read().decode())
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _instrument() -> str:
    found = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(
            "opentelemetry-instrument is missing: it comes with the test extras (opentelemetry-distro)"
        )
    return found


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OVERSPEND_", "OTEL_"))}
    environ |= {
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OVERSPEND_METRICS_PORT": str(_free_port()),
        **env,
    }
    return subprocess.run(
        [_instrument(), sys.executable, str(app)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_env_vars_alone_add_the_processor(tmp_path: Path) -> None:
    result = _run(tmp_path, OVERSPEND_ENABLED="true")
    assert result.returncode == 0, result.stderr
    # 12,000 x $3/M + 200 x $15/M = $0.039, rerank from the OpenInference span kind.
    line = next(
        line for line in result.stdout.splitlines() if line.startswith("overspend_llm_cost_usd_total{")
    )
    assert 'step="rerank"' in line
    assert 'model="claude-sonnet-4-5"' in line
    assert 'tier="frontier"' in line
    assert abs(float(line.rsplit(" ", 1)[1]) - 0.039) < 1e-12


def test_without_the_switch_nothing_is_added(tmp_path: Path) -> None:
    result = _run(tmp_path)
    # Nothing serves /metrics: the app's own scrape fails to connect.
    assert result.returncode != 0
    assert "Connection refused" in result.stderr
