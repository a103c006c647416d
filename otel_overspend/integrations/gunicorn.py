"""Gunicorn server hooks: every worker serves its own ``/metrics``, on a port of its own.

A custom collector cannot work in prometheus_client's multiprocess mode, so each worker
process exposes its own counts and Prometheus sums them (``sum(rate(...))`` over the
targets). Use both hooks, from a gunicorn config file::

    # gunicorn.conf.py
    from otel_overspend.integrations.gunicorn import post_fork, pre_fork

or with no config file of your own: ``gunicorn -c python:otel_overspend.integrations.gunicorn ...``.

Worker slot ``k`` (1, 2, ... ``workers``; a replacement worker takes the slot of the one it
replaces) serves on ``OVERSPEND_METRICS_PORT + k``. With ``--preload`` the master keeps
``OVERSPEND_METRICS_PORT`` for the spans it counted before it forked (each worker starts
from zero and never repeats them). So scrape ports ``OVERSPEND_METRICS_PORT`` to
``OVERSPEND_METRICS_PORT + workers`` (to ``+ 2 * workers`` if you reload with ``SIGHUP``:
new workers start before the old ones stop).

Without ``--preload`` the app is imported in each worker after ``post_fork``, which sets
``OVERSPEND_METRICS_PORT`` in the worker's environment for the processor it creates (a port
passed to ``Settings(metrics_port=...)`` in code wins over it).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Final

from otel_overspend.base.forks import start_worker_servers, worker_port
from otel_overspend.config.settings import Settings

__all__ = ("post_fork", "pre_fork", "worker_port")

_log = logging.getLogger("otel_overspend")

#: The attribute :func:`pre_fork` sets on gunicorn's worker object.
SLOT_ATTRIBUTE: Final = "overspend_slot"
_PORT_VARIABLE: Final = "OVERSPEND_METRICS_PORT"


def pre_fork(server: Any, worker: Any) -> None:
    """In the master, before a worker forks: give it the lowest slot no live worker holds."""
    taken = {getattr(other, SLOT_ATTRIBUTE, None) for other in server.WORKERS.values()}
    slot = 1
    while slot in taken:
        slot += 1
    setattr(worker, SLOT_ATTRIBUTE, slot)


def post_fork(server: Any, worker: Any) -> None:
    """In the new worker: serve its ``/metrics`` on its own port. Never raises."""
    del server
    try:
        slot = getattr(worker, SLOT_ATTRIBUTE, None)
        if slot is None:
            _log.warning(
                "otel_overspend: the gunicorn post_fork hook ran without pre_fork; use both "
                "(from otel_overspend.integrations.gunicorn import post_fork, pre_fork). "
                "This worker serves no /metrics."
            )
            return
        # A processor created before the fork (--preload) serves on its own port now.
        ports = start_worker_servers(slot)
        if not ports:  # the app is imported after the fork: its processor reads the port here
            base = Settings().metrics_port
            ports = [worker_port(base, slot)]
        os.environ[_PORT_VARIABLE] = str(ports[0])
    except Exception:
        _log.exception("otel_overspend: could not start this worker's /metrics; the worker runs without it")
