"""Fork and multi-worker servers: each worker counts its own spans, the parent's counts are
never repeated, and scraping every process's port gives the fleet's total.

Setups tested with the real servers, on 127.0.0.1:

- gunicorn ``--preload`` (the processor is created in the master before it forks) and
  without it, with the hooks of :mod:`otel_overspend.integrations.gunicorn`: worker slot k serves on
  ``OVERSPEND_METRICS_PORT + k``, the master on ``OVERSPEND_METRICS_PORT``;
- ``uvicorn --workers 2`` (each worker imports the app): ``OVERSPEND_METRICS_PORT_RANGE=2``,
  each worker takes the first free port of the range.
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conftest import unavailable

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.e2e]

# One call: 1,000 input and 100 output tokens of an acme-* model at the frontier default
# ($3 / $15 per 1M tokens): 0.003 + 0.0015 = $0.0045.
CALL_COST_USD = 0.0045
PRE_FORK_CALLS = 7

APP_COMMON = """
import json, os

from opentelemetry.sdk.trace import TracerProvider

from otel_overspend import OverspendProcessor, Settings, step

processor = OverspendProcessor(
    settings=Settings(use_genai_prices=False, model_tiers={"acme-*": "frontier"}, max_models=1)
)
provider = TracerProvider()
provider.add_span_processor(processor)
tracer = provider.get_tracer("app")
USAGE = {
    "gen_ai.request.model": "acme-1",
    "gen_ai.usage.input_tokens": 1000,
    "gen_ai.usage.output_tokens": 100,
}


def call(model="acme-1"):
    with tracer.start_as_current_span("request"):
        attributes = {**USAGE, "gen_ai.request.model": model}
        with step("rerank"), tracer.start_as_current_span("chat", attributes=attributes):
            pass


def answer():
    server = processor.metrics_server
    return json.dumps({"pid": os.getpid(), "port": None if server is None else server.port}).encode()


for _ in range(int(os.environ.get("APP_PRE_FORK_CALLS", "0"))):
    call()
# Counted in the master before the fork: one label overflow, one drop, one eviction.
if os.environ.get("APP_PRE_FORK_CALLS"):
    call("acme-2")
    with tracer.start_as_current_span("bad", attributes={"gen_ai.usage.input_tokens": -1}):
        pass
"""

WSGI_APP = (
    APP_COMMON
    + """

def app(environ, start_response):
    call()
    body = answer()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
"""
)

ASGI_APP = (
    APP_COMMON
    + """

async def app(scope, receive, send):
    assert scope["type"] == "http"
    async with step("generate"):
        call()
    body = answer()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""
)


def _binary(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed: pip install {name} (the tests' extra should carry it)")
    return found


def _port_block(n: int) -> int:
    """A base port such that base .. base + n - 1 are free on 127.0.0.1 (checked, then released)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 60_000 - n)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + n):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return base
    pytest.fail("no block of free ports found")


def _get(url: str, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return str(response.read().decode())


def _answers(url: str) -> bool:
    try:
        _get(url, 2.0)
    except (OSError, urllib.error.URLError):
        return False
    return True


def _wait_for(url: str, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while not _answers(url):
        if time.monotonic() > end:
            pytest.fail(f"{url} did not answer within {deadline_s} s")
        time.sleep(0.1)


def _counts(port: int) -> tuple[float, float, dict[str, float]]:
    """(LLM calls, cost in USD, other counters by name) scraped from one port."""
    calls = cost = 0.0
    others: dict[str, float] = {}
    for line in _get(f"http://127.0.0.1:{port}/metrics").splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith("overspend_llm_calls_total{"):
            calls += float(value)
        elif name.startswith("overspend_llm_cost_usd_total{"):
            cost += float(value)
        elif name.startswith(
            (
                "overspend_spans_dropped_total",
                "overspend_label_overflow_total",
                "overspend_open_requests_evicted_total",
            )
        ):
            others[name] = float(value)
    return calls, cost, others


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "overspend_wsgi.py").write_text(WSGI_APP, encoding="utf-8")
    (tmp_path / "overspend_asgi.py").write_text(ASGI_APP, encoding="utf-8")
    return tmp_path


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OVERSPEND_", "OTEL_"))}
    return env | {"OTEL_SDK_DISABLED": "false", **extra}


class _Server:
    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.log = cwd / "server.log"
        self._out = self.log.open("wb")
        self.process = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._out, stderr=subprocess.STDOUT)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._out.close()
        return self.log.read_text(errors="replace")


@pytest.fixture
def servers() -> Iterator[list[_Server]]:
    started: list[_Server] = []
    yield started
    for server in started:
        server.stop()


def _requests(app_port: int, n: int) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{app_port}/"
    with ThreadPoolExecutor(8) as pool:
        return [json.loads(body) for body in pool.map(lambda _: _get(url), range(n))]


def _served_by_port(answers: list[dict[str, Any]]) -> dict[int, int]:
    served: dict[int, int] = {}
    for answer in answers:
        assert answer["port"] is not None, answer
        served[answer["port"]] = served.get(answer["port"], 0) + 1
    return served


# -- a plain fork ---------------------------------------------------------------------------
FORK_SCRIPT = """
import json, os, sys, urllib.request

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from otel_overspend import OverspendProcessor, Settings, step

processor = OverspendProcessor(
    settings=Settings(metrics_port=0, use_genai_prices=False, max_models=1, max_open_requests=1),
    registry=CollectorRegistry(),
)
provider = TracerProvider()
provider.add_span_processor(processor)
tracer = provider.get_tracer("t")


def call(model):
    with tracer.start_as_current_span("chat", attributes={
        "gen_ai.request.model": model, "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 1,
    }):
        pass


def state():
    snap, status = processor.status()
    return {
        "calls": sum(stats[0] for stats in snap.totals.values()),
        "dropped": status.dropped,
        "overflow": status.label_overflow,
        "evicted": status.requests_evicted,
        "serving": processor.metrics_server is not None,
    }


call("m1")
call("m2")  # folded into "other": one overflow
with tracer.start_as_current_span("bad", attributes={"gen_ai.usage.input_tokens": -1}):
    pass  # one drop
root_a = tracer.start_span("a")
# In a step: a call with no step would wait for its still-open ancestors to name one.
in_a = __import__("opentelemetry").trace.set_span_in_context(root_a)
with step("rerank"), tracer.start_as_current_span("x", context=in_a):
    call("m1")
root_b = tracer.start_span("b")
in_b = __import__("opentelemetry").trace.set_span_in_context(root_b)
with step("rerank"), tracer.start_as_current_span("y", context=in_b):
    call("m1")  # the second open request evicts the first: one eviction
parent_port = processor.metrics_server.port
print(json.dumps({"parent": state()}), flush=True)

read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read)
    child = {"after_fork": state()}
    server = processor.start_metrics_server(port=0)
    call("m1")
    body = urllib.request.urlopen(server.url, timeout=5).read().decode()
    child["scraped_calls"] = [l for l in body.splitlines() if l.startswith("overspend_llm_calls_total")]
    child["port_differs"] = server.port != parent_port
    os.write(write, json.dumps(child).encode())
    processor.shutdown()
    os._exit(0)
os.close(write)
child = json.loads(os.fdopen(read).read())
os.waitpid(pid, 0)
body = urllib.request.urlopen(f"http://127.0.0.1:{parent_port}/metrics", timeout=5).read().decode()
child["parent_still_serves"] = [l for l in body.splitlines() if l.startswith("overspend_llm_calls_total")]
print(json.dumps(child), flush=True)
processor.shutdown()
"""


def test_a_forked_child_starts_from_zero_and_serves_only_when_told(tmp_path: Path) -> None:
    script = tmp_path / "fork.py"
    script.write_text(FORK_SCRIPT, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parent_line, child_line = result.stdout.strip().splitlines()
    parent = json.loads(parent_line)["parent"]
    assert parent["calls"] == 4
    assert parent["dropped"] == {"invalid_tokens": 1}
    assert parent["overflow"]["model"] == 1
    assert parent["evicted"]["capacity"] == 1

    child = json.loads(child_line)
    # Nothing of the parent's is repeated in the child: not calls, drops, overflows or evictions.
    assert child["after_fork"] == {
        "calls": 0,
        "dropped": {},
        "overflow": {"step": 0, "model": 0, "provider": 0, "cascade_steps": 0},
        "evicted": {"capacity": 0, "timeout": 0},
        "serving": False,
    }
    assert child["port_differs"] is True
    assert child["scraped_calls"] == [
        'overspend_llm_calls_total{model="m1",provider="unknown",step="unattributed",tier="unknown"} 1.0'
    ]
    # The parent's server survived the child and still reports the parent's own counts.
    assert sorted(child["parent_still_serves"]) == [
        'overspend_llm_calls_total{model="m1",provider="unknown",step="rerank",tier="unknown"} 2.0',
        'overspend_llm_calls_total{model="m1",provider="unknown",step="unattributed",tier="unknown"} 1.0',
        'overspend_llm_calls_total{model="other",provider="unknown",step="unattributed",tier="unknown"} 1.0',
    ]


# -- gunicorn -------------------------------------------------------------------------------
@functools.cache
def _gunicorn_quiet_flags(binary: str) -> tuple[str, ...]:
    """``--no-control-socket`` where gunicorn has one (else it makes ~/.gunicorn/gunicorn.ctl)."""
    usage = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30, check=False).stdout
    return ("--no-control-socket",) if "--no-control-socket" in usage else ()


def _gunicorn(
    servers: list[_Server], app_dir: Path, *, workers: int, preload: bool, base: int, app_port: int
) -> _Server:
    binary = _binary("gunicorn")
    args = [
        binary,
        *_gunicorn_quiet_flags(binary),
        "-c",
        "python:otel_overspend.integrations.gunicorn",
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{app_port}",
        "--graceful-timeout",
        "5",
        *(["--preload"] if preload else []),
        "overspend_wsgi:app",
    ]
    env = _environment(OVERSPEND_METRICS_PORT=str(base), PYTHONPATH=str(app_dir))
    if preload:
        env["APP_PRE_FORK_CALLS"] = str(PRE_FORK_CALLS)
    server = _Server(args, env, app_dir)
    servers.append(server)
    return server


def test_gunicorn_preload_four_workers_each_count_their_own(app_dir: Path, servers: list[_Server]) -> None:
    workers = 4
    base = _port_block(workers + 3)
    app_port = base + workers + 2
    server = _gunicorn(servers, app_dir, workers=workers, preload=True, base=base, app_port=app_port)
    for port in range(base, base + workers + 1):  # the master, then worker slots 1..4
        _wait_for(f"http://127.0.0.1:{port}/metrics")
    _wait_for(f"http://127.0.0.1:{app_port}/")  # one request, counted like the others
    answers = _requests(app_port, 199)
    served = _served_by_port(answers)
    assert set(served) <= set(range(base + 1, base + workers + 1))

    master_calls, _, master_other = _counts(base)
    # The master counted its pre-fork calls (one of them folded into "other") and nothing since.
    assert master_calls == PRE_FORK_CALLS + 1
    assert master_other['overspend_label_overflow_total{label="model"}'] == 1.0
    assert master_other['overspend_spans_dropped_total{reason="invalid_tokens"}'] == 1.0
    total = master_calls
    per_worker = {}
    for port in range(base + 1, base + workers + 1):
        calls, cost, other = _counts(port)
        per_worker[port] = calls
        total += calls
        assert cost == pytest.approx(calls * CALL_COST_USD, abs=1e-9)
        # None of the master's pre-fork overflow or drop is repeated in a worker.
        assert other.get('overspend_label_overflow_total{label="model"}', 0.0) == 0.0
        assert other.get('overspend_spans_dropped_total{reason="invalid_tokens"}', 0.0) == 0.0
    # Each worker reports exactly the requests it served (the first, readiness request included).
    answered = {port: served.get(port, 0) for port in per_worker}
    assert sum(per_worker.values()) == 200
    differences = {port: per_worker[port] - answered[port] for port in per_worker}
    assert sorted(differences.values()) in ([0, 0, 0, 0], [0, 0, 0, 1]), (per_worker, answered)
    assert total == PRE_FORK_CALLS + 1 + 200  # the fleet view: every call once
    assert not _listening(base + workers + 1)

    # A replacement worker takes the slot (and the port) of the one it replaces, from zero.
    victim_port = max(per_worker, key=lambda port: per_worker[port])
    victim_pid = next(a["pid"] for a in answers if a["port"] == victim_port)
    os.kill(victim_pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        try:
            if _counts(victim_port)[0] == 0.0:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the replacement worker did not serve its slot's port"
        time.sleep(0.1)
    assert not _listening(base + workers + 1)
    log = server.stop()
    assert "Traceback" not in log, log


def test_gunicorn_without_preload_serves_one_port_per_worker(app_dir: Path, servers: list[_Server]) -> None:
    workers = 2
    base = _port_block(workers + 3)
    app_port = base + workers + 2
    server = _gunicorn(servers, app_dir, workers=workers, preload=False, base=base, app_port=app_port)
    for port in range(base + 1, base + workers + 1):
        _wait_for(f"http://127.0.0.1:{port}/metrics")
    answers = _requests(app_port, 60)
    served = _served_by_port(answers)
    assert set(served) <= {base + 1, base + 2}
    assert not _listening(base)  # no processor in the master
    for port in (base + 1, base + 2):
        calls, cost, _ = _counts(port)
        assert calls == served.get(port, 0)
        assert cost == pytest.approx(calls * CALL_COST_USD, abs=1e-9)
    log = server.stop()
    assert "Traceback" not in log, log


# -- uvicorn --------------------------------------------------------------------------------
def test_uvicorn_workers_take_the_free_ports_of_the_range(app_dir: Path, servers: list[_Server]) -> None:
    base = _port_block(4)
    app_port = base + 3
    args = [
        _binary("uvicorn"),
        "--workers",
        "2",
        "--host",
        "127.0.0.1",
        "--port",
        str(app_port),
        "--lifespan",
        "off",
        "--no-access-log",
        "overspend_asgi:app",
    ]
    env = _environment(
        OVERSPEND_METRICS_PORT=str(base), OVERSPEND_METRICS_PORT_RANGE="2", PYTHONPATH=str(app_dir)
    )
    server = _Server(args, env, app_dir)
    servers.append(server)
    for port in (base, base + 1):
        _wait_for(f"http://127.0.0.1:{port}/metrics")
    _wait_for(f"http://127.0.0.1:{app_port}/")
    answers = _requests(app_port, 99)
    served = _served_by_port(answers)
    assert set(served) <= {base, base + 1}
    totals = {port: _counts(port) for port in (base, base + 1)}
    assert sum(calls for calls, _, _ in totals.values()) == 100
    for port, (calls, cost, _) in totals.items():
        assert calls - served.get(port, 0) in (0, 1)  # the readiness request was not answered to us
        assert cost == pytest.approx(calls * CALL_COST_USD, abs=1e-9)
    assert not _listening(base + 2)
    log = server.stop()
    assert "Traceback" not in log, log


def test_gunicorn_slots_are_the_lowest_free_ones() -> None:
    import otel_overspend.integrations.gunicorn as hooks

    class Worker:
        pass

    class Arbiter:
        WORKERS: dict[int, Worker] = {}  # noqa: RUF012 - gunicorn's shape

    arbiter = Arbiter()
    slots = []
    for pid in range(4):
        worker = Worker()
        hooks.pre_fork(arbiter, worker)
        arbiter.WORKERS[pid] = worker
        slots.append(getattr(worker, hooks.SLOT_ATTRIBUTE))
    assert slots == [1, 2, 3, 4]
    del arbiter.WORKERS[1]  # slot 2 died
    replacement = Worker()
    hooks.pre_fork(arbiter, replacement)
    assert getattr(replacement, hooks.SLOT_ATTRIBUTE) == 2
    assert hooks.worker_port(9464, 2) == 9466
