"""The demo through its switches, end to end: the probable pattern moves from single-LLM overspend
to healthy to each look-alike in turn, and each look-alike's alert reaches an Alertmanager webhook.

``otel-overspend demo`` runs as a process at 30 requests/s with windows 10s and 60s (the 60s one
the cascade's baseline). Debian's Prometheus scrapes its ``/metrics`` every second and evaluates
the rules ``python -m otel_overspend.rules.alerting`` renders for the windows 10s (the alerts')
and 60s (the baseline), with ``for: 3s``; Alertmanager, configured from the shipped
``deploy/alertmanager/alertmanager.yml`` with one-second group timings, posts to a webhook here.
The demo's 10s window covers ten seconds: windows under a minute used to hold a whole one.

The switches, in seconds of the demo (``t0``: the demo announcing its metrics URL), in the order
that lets each pattern show in ``overspend_pattern_info`` in turn: the switches accumulate and
the rules are first match wins (eval overrun, single-LLM overspend / model selection, reranker
on the request path, distillation drift, cascade saturation, healthy), so each look-alike is
switched on after those it outranks.

    t   switch                                  pattern (10s window)        alert (Overspend...)
    0   every LLM step on claude-sonnet-4-5     single_llm_overspend        SpecialistEligibleFractionHigh
    18  rerank -> zerank-2, faithfulness ->     healthy                     ... resolves
        gpt-5-nano; a route cascade escalates 10 %
    40  the cascade escalates 40 %              cascade_saturation (route)  CascadeEscalationOutOfBand
    56  the student agrees on 7 checks in 10    distillation_drift          TeacherAgreementLow
    72  zerank-2 takes 450 ms                   reranker_on_request_path    StepLatencyHigh
    88  an eval job re-scores every answer      eval_spend_overrun          EvalSpendHigh
        (stop at about t0 + 102 s)

The figures by hand, in micro-dollars a request at the mean tokens (tests/test_demo_patterns.py
gives each call's price): rewrite 1,350; rerank 39,000 (frontier) or 244 (zerank-2); generate
16,500; faithfulness 13,500 (frontier) or 240 (gpt-5-nano); route 23 (gpt-5-nano) + 1,200 per
escalation; eval 13,500.

* All frontier: steps other than generate take 53,850 / 70,350 = 0.765 of the spend, above the
  critical 0.5 (Alertmanager inhibits the warning), on one model (concentration 1.0 >= 0.4: not
  model selection). Specialized, with the cascade at 10 %: (1,834 + 143) / (18,334 + 143) =
  0.107, well under 0.3. In the 10s window the fraction falls under 0.5 about 6.9 s after the
  switch and under 0.3 about 9 s after; a 10 % cascade has no drift from its baseline (the same
  rate); agreement is 1.0 >= 0.95: healthy.
* Cascade: 22 s of 10 % escalations build the baseline before it saturates. x s after the
  switch the 10s window reads 0.1 + 0.03 x (0.4 from x = 10) and the 60s one (2.2 + 0.4 x) /
  (22 + x): the drift is 0.12 at x = 6, 0.21 at x = 10, 0.18 at x = 15, and stays above the 0.1
  band until x = 38 (0.4 against 0.3 when the window holds 20 s of 10 % and 40 s of 40 %). The
  savings drop (1 - 0.581 / 0.79, about 0.26 against 0.25) is too close to assert.
* Drift: the judge agrees on 0.7 of checks against the 0.95 minimum; the 10s window drops under
  0.95 1.7 s after the switch. The cascade still drifts (0.18) but ranks below.
* Slow reranker: 450 ms +- 20 % is 0.36-0.54 s, all above the 0.3 s p95 threshold. The demo's
  ``step()`` blocks are also timed in real time (microseconds, outside any current span: a
  request of their own), so half of rerank's observations are near zero: the p95 rank 0.95 of
  2N falls 0.9 N into the slow half, 77.8 % of which is below 0.5 s, so the estimate is
  0.5 + 0.5 x (0.9 - 0.778) / 0.222 = 0.775 s. rerank is specialist-served (zerank-2's tier);
  faithfulness and route run on gpt-5-nano, a mini-tier model, and are not.
* Eval: 13,500 of eval spend a request against 18,334 + 23 + 0.4 x 1,200 = 18,837 of request
  spend is 0.717, above 0.25 (in the 10s window after 3.5 s). The eval step is not generate, so
  the specialist-eligible fraction rises to (1,834 + 503 + 13,500) / (18,837 + 13,500) = 0.490 and
  the fraction's warning fires again: the look-alike of overspend that the eval alert's pattern
  annotation tells apart.

After rerank moves to zerank-2, the window holds both models' calls of rerank for a while
(specialist calls the majority from about 5 s, the frontier model's 1.5 s latencies in its time
until about 11 s): rerank is served mostly, not only, by the specialist, and its time has no
tier, so neither the alert nor the info gauge reads the frontier model's latency as the
specialist's. The latency alert stays quiet from the start until the slow-reranker switch.

The info gauge's timeline is read back from Prometheus (every scrape of it), the alerts' from the
``ALERTS`` series and the webhook.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support.fleet import (
    ManagedProcess,
    Processes,
    PrometheusAPI,
    WebhookReceiver,
    is_ready,
    scrape,
    start_alertmanager,
    start_prometheus,
    wait_until,
)

from otel_overspend.accounting.patterns import (
    CASCADE_SATURATION,
    DISTILLATION_DRIFT,
    EVAL_SPEND_OVERRUN,
    HEALTHY,
    RERANKER_ON_REQUEST_PATH,
    SINGLE_LLM_OVERSPEND,
)
from otel_overspend.rules.alerting import DEFAULT_RUNBOOK_BASE_URL

from conftest import require_binary

pytestmark = [pytest.mark.e2e, pytest.mark.needs_binary, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

RATE = 30
WINDOW = "10s"
#: When each switch happens, in seconds of the demo.
SPECIALIZE_S = 18.0
SATURATE_S = 40.0
DRIFT_S = 56.0
SLOW_S = 72.0
EVAL_S = 88.0
#: How long the eval phase runs before the demo is stopped (its pattern shows after ~4 s).
EVAL_PHASE_S = 14.0

FRACTION_ALERT = "OverspendSpecialistEligibleFractionHigh"


@dataclass(frozen=True)
class Phase:
    """From ``start_s`` (demo seconds) to the next phase: the pattern the 10s window names and
    the alert that names it (``None``: the phase has no look-alike alert)."""

    start_s: float
    pattern: str
    step: str
    alert: str | None


PHASES = (
    Phase(0.0, SINGLE_LLM_OVERSPEND, "", None),
    Phase(SPECIALIZE_S, HEALTHY, "", None),
    Phase(SATURATE_S, CASCADE_SATURATION, "route", "OverspendCascadeEscalationOutOfBand"),
    Phase(DRIFT_S, DISTILLATION_DRIFT, "faithfulness", "OverspendTeacherAgreementLow"),
    Phase(SLOW_S, RERANKER_ON_REQUEST_PATH, "rerank", "OverspendStepLatencyHigh"),
    Phase(EVAL_S, EVAL_SPEND_OVERRUN, "", "OverspendEvalSpendHigh"),
)


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    processes: Processes
    webhook: WebhookReceiver
    prom: PrometheusAPI
    demo: ManagedProcess
    demo_url: str
    #: Wall time of the demo's start (seconds since the epoch).
    t0: float

    def at(self, demo_s: float) -> float:
        return self.t0 + demo_s

    def explain(self) -> str:
        firing = sorted({a["metric"]["alertname"] for a in self.prom.query('ALERTS{alertstate="firing"}')})
        return f"demo t={time.time() - self.t0:.1f}s, firing {firing}\n{self.processes.explain()}"


def write_rules(tmp_path: Path) -> Path:
    rules = subprocess.run(
        [
            sys.executable,
            "-m",
            "otel_overspend.rules.alerting",
            "--window",
            WINDOW,
            "--window",
            "60s",
            "--alert-window",
            WINDOW,
            "--for",
            "3s",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = tmp_path / "rules.yml"
    path.write_text(rules, encoding="utf-8")
    return path


def write_prometheus_config(tmp_path: Path, target: str, alertmanager_port: int) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(write_rules(tmp_path))],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
        },
        "scrape_configs": [{"job_name": "demo", "static_configs": [{"targets": [target]}]}],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def demo_argv() -> list[str]:
    after = {
        "--specialize-rerank-after": SPECIALIZE_S,
        "--specialize-faithfulness-after": SPECIALIZE_S,
        "--cascade-after": SPECIALIZE_S,
        "--saturate-cascade-after": SATURATE_S,
        "--drift-student-after": DRIFT_S,
        "--slow-reranker-after": SLOW_S,
        "--eval-job-after": EVAL_S,
    }
    return [
        sys.executable,
        "-m",
        "otel_overspend",
        "demo",
        "--port=0",
        f"--rate={RATE}",
        f"--duration={EVAL_S + 3 * EVAL_PHASE_S:g}",  # a backstop: the test stops it first
        f"--windows={WINDOW},60s",
        "--report-every=5",
        "--seed=7",
        *(f"{option}={seconds:g}" for option, seconds in after.items()),
    ]


def start_stack(processes: Processes, webhook: WebhookReceiver, tmp_path: Path) -> Stack:
    prometheus_bin = require_binary("prometheus", "prometheus")
    alertmanager_bin = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
    am_port = start_alertmanager(processes, alertmanager_bin, tmp_path, webhook.url)
    wait_until(
        lambda: is_ready(f"http://127.0.0.1:{am_port}"),
        timeout_s=30,
        what="Alertmanager",
        explain=processes.explain,
    )

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OVERSPEND_"))}
    demo = processes.start("demo", demo_argv(), env=env)

    def announced_url() -> str | None:
        found = re.search(r"^metrics: curl (http://127\.0\.0\.1:\d+/metrics)$", demo.log_text(), re.MULTILINE)
        return found[1] if found else None

    # The demo's clock starts as it announces the URL: t0 is within one poll of it.
    demo_url = wait_until(
        announced_url, timeout_s=30, interval_s=0.05, what="the demo's metrics URL", explain=processes.explain
    )
    t0 = time.time()

    target = demo_url.removeprefix("http://").removesuffix("/metrics")
    prom_port = start_prometheus(
        processes, prometheus_bin, tmp_path, write_prometheus_config(tmp_path, target, am_port)
    )
    stack = Stack(processes, webhook, PrometheusAPI(f"http://127.0.0.1:{prom_port}"), demo, demo_url, t0)
    wait_until(
        lambda: is_ready(stack.prom.base_url), timeout_s=30, what="Prometheus", explain=processes.explain
    )
    wait_until(
        lambda: stack.prom.scalar('up{job="demo"}') == 1.0,
        timeout_s=20,
        what="the demo scraped",
        explain=processes.explain,
    )
    return stack


# --------------------------------------------------------------------------- reading back


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def epoch(rfc3339: str) -> float:
    """Alertmanager's timestamps (nanosecond fractions) as seconds since the epoch."""
    found = _RFC3339.match(rfc3339)
    assert found is not None, rfc3339
    whole, fraction, zone = found.groups()
    parsed = datetime.strptime(whole + ("+00:00" if zone == "Z" else zone), "%Y-%m-%dT%H:%M:%S%z")
    return parsed.astimezone(timezone.utc).timestamp() + float(f"0.{fraction or 0}")


def delivered(
    stack: Stack, alertname: str, *, status: str = "firing", since: float = 0.0
) -> list[dict[str, Any]]:
    """The alerts of ``alertname`` the webhook received with ``status`` that started at or
    after wall time ``since``."""
    return [
        alert
        for payload, alert in stack.webhook.alerts(alertname, status=status)
        if payload["receiver"] == "overspend" and epoch(alert["startsAt"]) >= since
    ]


def wait_for_alert(stack: Stack, alertname: str, *, after: float, timeout_s: float) -> dict[str, Any]:
    """The first alert of ``alertname`` delivered firing that started after wall time ``after``."""
    found = wait_until(
        lambda: delivered(stack, alertname, since=after),
        timeout_s=max(1.0, timeout_s),
        what=f"{alertname} starting after demo t={after - stack.t0:.1f}s delivered to the webhook",
        explain=stack.explain,
    )
    return found[0]


Timeline = dict[float, set[tuple[str, ...]]]


def timeline(
    prom: PrometheusAPI, expr: str, labels: tuple[str, ...], *, start: float, end: float
) -> Timeline:
    """At each second from ``start`` to ``end``: the label values of the series ``expr`` had."""
    out: Timeline = {}
    for series in prom.query_range(expr, start=start, end=end, step_s=1):
        key = tuple(series["metric"].get(label, "") for label in labels)
        for ts, _ in series["values"]:
            out.setdefault(float(ts), set()).add(key)
    return out


def collapsed(line: Timeline, t0: float) -> list[tuple[float, list[tuple[str, ...]]]]:
    """The timeline as its changes: (demo seconds, the series from then on)."""
    changes: list[tuple[float, list[tuple[str, ...]]]] = []
    for ts in sorted(line):
        now = sorted(line[ts])
        if not changes or changes[-1][1] != now:
            changes.append((round(ts - t0, 1), now))
    return changes


# --------------------------------------------------------------------------- the checks


def check_fraction_alert_fires_then_resolves(stack: Stack) -> None:
    """All frontier: 0.765 > 0.5, the critical (the warning inhibited) reaches the webhook
    before the switch; specialized, it resolves (under 0.5 about 6.9 s after the switch)."""
    fired = wait_until(
        lambda: [a for a in delivered(stack, FRACTION_ALERT) if a["labels"]["severity"] == "critical"],
        # The critical holds until ~6.9 s after the switch: it may be delivered a little after.
        timeout_s=stack.at(SPECIALIZE_S + 5) - time.time(),
        what=f"{FRACTION_ALERT} (critical) delivered to the webhook",
        explain=stack.explain,
    )[0]
    assert epoch(fired["startsAt"]) < stack.at(SPECIALIZE_S)
    # The shipped inhibition: the warning (0.765 > 0.3 too) is muted while the critical fires.
    assert [a for a in delivered(stack, FRACTION_ALERT) if a["labels"]["severity"] == "warning"] == []
    assert fired["annotations"]["runbook_url"].endswith(f"#alert-{FRACTION_ALERT.lower()}")
    resolved = wait_until(
        lambda: [
            a
            for _, a in stack.webhook.alerts(FRACTION_ALERT, status="resolved")
            if a["labels"]["severity"] == "critical"
        ],
        timeout_s=stack.at(SPECIALIZE_S + 20) - time.time(),
        what=f"{FRACTION_ALERT} (critical) resolved at the webhook",
        explain=stack.explain,
    )[0]
    assert stack.at(SPECIALIZE_S) < epoch(resolved["endsAt"]) < stack.at(SPECIALIZE_S + 15), resolved


def check_look_alike_alert(stack: Stack, phase: Phase, next_start_s: float) -> None:
    """The phase's alert reaches the webhook, started after the switch, naming its pattern."""
    assert phase.alert is not None
    alert = wait_for_alert(
        stack,
        phase.alert,
        after=stack.at(phase.start_s) - 1,
        timeout_s=stack.at(next_start_s + 20) - time.time(),
    )
    annotations = alert["annotations"]
    assert annotations["pattern"] == phase.pattern, alert
    assert annotations["pattern_runbook_url"] == f"{DEFAULT_RUNBOOK_BASE_URL}#pattern-{phase.pattern}"
    assert annotations["runbook_url"] == f"{DEFAULT_RUNBOOK_BASE_URL}#alert-{phase.alert.lower()}"
    if phase.step:
        assert alert["labels"]["step"] == phase.step, alert


def check_info_gauge(stack: Stack, end: float) -> None:
    """Each phase's pattern is named in the phase (after the window turns over) and stays named
    until the next switch; the last is the eval overrun, in the demo's own /metrics too."""
    line = timeline(
        stack.prom,
        f'overspend_pattern_info{{window="{WINDOW}"}}',
        ("pattern", "step"),
        start=stack.t0,
        end=end,
    )
    changes = collapsed(line, stack.t0)
    assert all(len(names) == 1 for names in line.values()), changes
    for phase, following in zip(PHASES, (*PHASES[1:], None), strict=True):
        begin = stack.at(phase.start_s)
        stop = stack.at(following.start_s) if following is not None else end
        named = [
            ts for ts in sorted(line) if begin < ts <= stop and line[ts] == {(phase.pattern, phase.step)}
        ]
        assert named, f"{phase.pattern} never named in its phase; the pattern's changes: {changes}"
        # Until the next switch (a switch moves the 10s window's pattern 1.7 s later at the soonest).
        held = {frozenset(line[ts]) for ts in line if named[0] <= ts <= stop - 0.5}
        assert held == {frozenset({(phase.pattern, phase.step)})}, (phase, changes)
    assert demo_patterns(stack) == [EVAL_SPEND_OVERRUN]


def demo_patterns(stack: Stack) -> list[str]:
    """The patterns the demo's own /metrics names for the 10s window (one, once it has data)."""
    return [
        dict(labels)["pattern"]
        for (name, labels), value in scrape(stack.demo_url).items()
        if name == "overspend_pattern_info" and dict(labels)["window"] == WINDOW and value == 1
    ]


def check_alerts_timeline(stack: Stack, end: float) -> None:
    """Which alerts fired when, from Prometheus' own ALERTS series."""
    line = timeline(
        stack.prom,
        'ALERTS{alertstate="firing"}',
        ("alertname", "severity", "step"),
        start=stack.t0,
        end=end,
    )

    def firing(alertname: str, start_s: float, end_s: float) -> list[float]:
        return [
            round(ts - stack.t0, 1)
            for ts, alerts in sorted(line.items())
            if stack.at(start_s) <= ts <= stack.at(end_s) and any(a[0] == alertname for a in alerts)
        ]

    # Each look-alike alert is quiet until its switch (the latency alert too, through the
    # window that holds both models' calls of rerank: see the module docstring).
    quiet_until = {
        "OverspendCascadeEscalationOutOfBand": (0.0, SATURATE_S),
        "OverspendCascadeSavingsDrop": (0.0, SATURATE_S),
        "OverspendTeacherAgreementLow": (0.0, DRIFT_S),
        "OverspendStepLatencyHigh": (0.0, SLOW_S),
        "OverspendEvalSpendHigh": (0.0, EVAL_S),
    }
    for alertname, (start_s, end_s) in quiet_until.items():
        assert firing(alertname, start_s, end_s) == [], [
            (t, [a for a in alerts if a[0] == alertname]) for t, alerts in collapsed(line, stack.t0)
        ]
    # The fraction alert stays resolved through the look-alikes until the eval job's spend
    # (an eval step, not generate) lifts the fraction to 0.49: the warning fires again.
    assert firing(FRACTION_ALERT, SPECIALIZE_S + 15, EVAL_S) == []
    again = {
        a[1] for ts, alerts in line.items() if ts > stack.at(EVAL_S) for a in alerts if a[0] == FRACTION_ALERT
    }
    assert again == {"warning"}, collapsed(line, stack.t0)


def check_figures(stack: Stack, end: float) -> None:
    """The recorded figures at the end of each phase, against the numbers by hand."""

    def at(expr: str, demo_s: float) -> float:
        value = stack.prom.scalar(expr, at=stack.at(demo_s))
        assert value is not None, (expr, demo_s)
        return value

    fraction = f"overspend:specialist_eligible_fraction:ratio_rate{WINDOW}"
    escalation = f'overspend:cascade_escalation:ratio_rate{WINDOW}{{step="route"}}'
    drift = f'overspend:cascade_escalation_drift:abs_rate{WINDOW}{{step="route"}}'
    agreement = f'overspend:teacher_agreement:ratio_rate{WINDOW}{{step="faithfulness"}}'
    p95 = f'overspend:specialist_step_request_seconds:p95_rate{WINDOW}{{step="rerank"}}'
    assert at(fraction, SPECIALIZE_S - 1) == pytest.approx(53_850 / 70_350, abs=0.02)
    assert at(f"overspend:frontier_model_concentration:ratio_rate{WINDOW}", SPECIALIZE_S - 1) > 0.99
    assert at(fraction, SATURATE_S - 1) == pytest.approx(1_977 / 18_477, abs=0.01)
    assert at(escalation, SATURATE_S - 1) == pytest.approx(0.1, abs=0.02)
    assert at(drift, SATURATE_S - 1) < 0.03
    assert at(agreement, SATURATE_S - 1) == pytest.approx(1.0)
    # rerank is served by zerank-2 alone once the frontier calls are 10 s + the 15 s margin old.
    assert at(p95, DRIFT_S - 1) < 0.05
    assert at(escalation, DRIFT_S - 1) == pytest.approx(0.4, abs=0.03)
    # 0.4 against (22 x 0.1 + 15 x 0.4) / 37 = 0.222.
    assert at(drift, DRIFT_S - 1) == pytest.approx(0.4 - 8.2 / 37, abs=0.04)
    assert at(agreement, SLOW_S - 1) == pytest.approx(0.7, abs=0.03)
    assert at(p95, EVAL_S - 1) == pytest.approx(0.775, abs=0.1)
    share = stack.prom.scalar(f"overspend:eval_spend_share:ratio_rate{WINDOW}", at=end)
    assert share == pytest.approx(13_500 / 18_837, abs=0.04)
    assert stack.prom.scalar(fraction, at=end) == pytest.approx(15_837 / 32_337, abs=0.02)


# --------------------------------------------------------------------------- the test


def test_demo_switches_move_the_pattern_and_fire_each_look_alike_alert(
    processes: Processes, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    stack = start_stack(processes, webhook, tmp_path)
    check_fraction_alert_fires_then_resolves(stack)
    for phase, following in zip(PHASES[2:], (*PHASES[3:], None), strict=True):
        check_look_alike_alert(
            stack, phase, following.start_s if following is not None else EVAL_S + EVAL_PHASE_S
        )
    # The eval phase runs its length (the 10s window all eval job by then), then the demo stops:
    # Prometheus keeps what it recorded.
    wait_until(
        lambda: demo_patterns(stack) == [EVAL_SPEND_OVERRUN],
        timeout_s=stack.at(EVAL_S + EVAL_PHASE_S) - time.time(),
        what="the demo naming eval_spend_overrun",
        explain=stack.explain,
    )
    time.sleep(max(0.0, stack.at(EVAL_S + EVAL_PHASE_S) - time.time()))
    end = time.time()
    check_info_gauge(stack, end)
    stack.demo.stop()
    log = stack.demo.log_text()
    assert "otel-overspend demo: stopped" in log
    switched = [float(t) for t in re.findall(r"^== t=\s*([\d.]+)s", log, re.MULTILINE)]
    expected = [SPECIALIZE_S] * 3 + [SATURATE_S, DRIFT_S, SLOW_S, EVAL_S]
    assert switched == pytest.approx(expected, abs=0.5), log[-3000:]
    check_alerts_timeline(stack, end)
    check_figures(stack, end)
