"""Processes, a Prometheus HTTP API client and a webhook receiver for end-to-end tests.

Everything listens on 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from otel_overspend.rules.alerting import alertmanager_inhibit_rules

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from types import TracebackType

    from typing_extensions import Self

#: The Alertmanager configuration the deploy kit ships.
ALERTMANAGER_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager" / "alertmanager.yml"

T = TypeVar("T")
HTTP_TIMEOUT_S = 5.0


def free_port() -> int:
    """A port free on 127.0.0.1 right now (for binaries that cannot bind port 0 and report it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.2,
    explain: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something true, and return that; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            details = f"\n{explain()}" if explain is not None else ""
            pytest.fail(f"timed out after {timeout_s:g}s waiting for {what}{details}")
        time.sleep(interval_s)


# --------------------------------------------------------------------------- processes


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 20) -> str:
        return "\n".join(f"  [{self.name}] {line}" for line in self.log_text().splitlines()[-lines:])

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; always reaps the process. Idempotent."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout_s)
        self._log.close()


class Processes:
    """Starts processes with their output in log files and stops every one of them at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[ManagedProcess] = []

    def start(
        self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("wb")
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
        )
        process = ManagedProcess(name, popen, log_path, log)
        self.started.append(process)
        return process

    def explain(self) -> str:
        return "\n".join(
            f"{p.name}: {'running' if p.alive() else f'exited {p.popen.returncode}'}\n{p.tail()}"
            for p in self.started
        )

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()


# --------------------------------------------------------------------------- HTTP


def http_get(url: str, *, timeout_s: float = HTTP_TIMEOUT_S) -> tuple[int, bytes]:
    """(status, body); (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def is_ready(base_url: str) -> bool:
    return http_get(f"{base_url}/-/ready", timeout_s=1.0)[0] == 200


Sample = tuple[str, frozenset[tuple[str, str]]]


def scrape(url: str) -> dict[Sample, float]:
    """One /metrics page as {(sample name, labels): value}."""
    status, body = http_get(url)
    assert status == 200, f"GET {url} answered {status}"
    samples: dict[Sample, float] = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = float(sample.value)
    return samples


class PrometheusAPI:
    """The few endpoints of Prometheus' HTTP API the tests use."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def _get(self, path: str, params: Mapping[str, str]) -> Any:
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        status, body = http_get(url)
        assert status == 200, f"GET {url} answered {status}: {body[:500]!r}"
        document = json.loads(body)
        assert document["status"] == "success", document
        return document["data"]

    def query(self, expr: str, *, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query: a list of ``{"metric": ..., "value": [ts, "v"]}`` (or ``"values"`` for ranges)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] in ("vector", "matrix") else []
        return result

    def query_range(self, expr: str, *, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}"}
        result: list[dict[str, Any]] = self._get("/api/v1/query_range", params)["result"]
        return result

    def scalar(self, expr: str, *, at: float | None = None) -> float | None:
        """The value of a query that returns at most one series, or ``None``."""
        result = self.query(expr, at=at)
        assert len(result) <= 1, f"{expr} returned {len(result)} series"
        return float(result[0]["value"][1]) if result else None

    def samples(self, selector: str, *, seconds: int) -> dict[frozenset[tuple[str, str]], dict[float, float]]:
        """Raw samples at their own timestamps: {labels: {ts: value}} over the last ``seconds``."""
        out: dict[frozenset[tuple[str, str]], dict[float, float]] = {}
        for series in self.query(f"{selector}[{seconds}s]"):
            labels = frozenset((k, v) for k, v in series["metric"].items() if k != "__name__")
            out[labels] = {float(ts): float(v) for ts, v in series["values"]}
        return out

    def label_values(self, label: str, *, match: str) -> list[str]:
        values: list[str] = self._get(f"/api/v1/label/{label}/values", {"match[]": match})
        return values


# --------------------------------------------------------------------------- receivers


class PostSink:
    """An HTTP server on 127.0.0.1 that answers 200 to every POST and keeps (path, body)."""

    def __init__(self) -> None:
        self._posts: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        received = self._receive

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received(self.path, self.rfile.read(length))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
                del format, args

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="post-sink", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _receive(self, path: str, body: bytes) -> None:
        with self._lock:
            self._posts.append((path, body))

    def posts(self, path: str | None = None) -> list[bytes]:
        with self._lock:
            return [body for p, body in self._posts if path is None or p == path]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)


class WebhookReceiver(PostSink):
    """An Alertmanager webhook receiver: the JSON payloads posted to ``/alerts``."""

    @property
    def url(self) -> str:
        return f"{self.base_url}/alerts"

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body in self.posts("/alerts")]

    def alerts(
        self, alertname: str, *, status: str | None = None
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(payload, alert) for every delivered alert with this name (and status)."""
        return [
            (payload, alert)
            for payload in self.payloads()
            for alert in payload.get("alerts", [])
            if alert["labels"].get("alertname") == alertname and (status is None or alert["status"] == status)
        ]


def write_alertmanager_config(tmp_path: Path, webhook_url: str) -> Path:
    """The shipped Alertmanager configuration (its inhibition the rule generator's) with
    one-second group timings and ``webhook_url`` on its overspend receiver."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    route = config["route"]
    route.update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    for child in route.get("routes", []):
        for key in ("group_wait", "group_interval", "repeat_interval"):
            child.pop(key, None)
    assert config["inhibit_rules"] == alertmanager_inhibit_rules()["inhibit_rules"]
    receivers = {r["name"]: r for r in config["receivers"]}
    receivers["overspend"]["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start_alertmanager(processes: Processes, binary: str, tmp_path: Path, webhook_url: str) -> int:
    """Start Alertmanager on a free port with :func:`write_alertmanager_config`; its port."""
    port = free_port()
    (tmp_path / "am-data").mkdir()
    processes.start(
        "alertmanager",
        [
            binary,
            f"--config.file={write_alertmanager_config(tmp_path, webhook_url)}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
    )
    return port


def start_prometheus(processes: Processes, binary: str, tmp_path: Path, config: Path) -> int:
    """Start Prometheus on a free port with ``config`` (alerts resent every second); its port."""
    port = free_port()
    processes.start(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
            "--log.level=warn",
        ],
    )
    return port
