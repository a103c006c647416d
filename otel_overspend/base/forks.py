"""Starting over in a forked child: state that must not be shared with the parent, and
servers that a forked worker must start on a port of its own.

A pre-forking server (gunicorn) tells its new worker which slot it holds through
:func:`start_worker_servers`; whatever registered with :func:`serve_in_worker` then serves
there. Registration holds its target weakly, like :func:`reset_in_forked_child`: it is a
subscription to the process's fork events, not a way to find an object.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("reset_in_forked_child", "serve_in_worker", "start_worker_servers", "worker_port")

_T = TypeVar("_T")
_lock = threading.Lock()
_worker_servers: list[Callable[[int], int | None]] = []


def reset_in_forked_child(target: _T, reset: Callable[[_T], None]) -> None:
    """Call ``reset(target)`` in every forked child while ``target`` is alive (held weakly,
    so that registering does not keep it alive). No-op where there is no fork."""
    if not hasattr(os, "register_at_fork"):  # pragma: no cover - Windows
        return
    ref = weakref.ref(target)

    def run() -> None:
        alive = ref()
        if alive is not None:
            reset(alive)

    os.register_at_fork(after_in_child=run)


def serve_in_worker(target: _T, serve: Callable[[_T, int], int | None]) -> None:
    """Call ``serve(target, slot)`` when :func:`start_worker_servers` runs in a forked worker,
    while ``target`` is alive; ``serve`` returns the port it serves on, or ``None`` when it
    serves no more (its registration is then dropped)."""
    ref = weakref.ref(target)

    def run(slot: int) -> int | None:
        alive = ref()
        return None if alive is None else serve(alive, slot)

    with _lock:
        _worker_servers.append(run)


def worker_port(base_port: int, slot: int) -> int:
    """The port worker slot ``slot`` serves on: ``base_port + slot``, or an ephemeral port
    (0) for each when ``base_port`` is 0."""
    return 0 if base_port == 0 else base_port + slot


def start_worker_servers(slot: int) -> list[int]:
    """In a forked worker: start every server registered with :func:`serve_in_worker` for
    worker slot ``slot``; the ports they serve on (none if nothing registered is alive)."""
    with _lock:
        runs = list(_worker_servers)
    ports: list[int] = []
    for run in runs:
        port = run(slot)
        if port is not None:
            ports.append(port)
            continue
        with _lock:  # its target is gone, or serves no more
            if run in _worker_servers:
                _worker_servers.remove(run)
    return ports
