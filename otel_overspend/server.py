"""The ``/metrics`` endpoint: prometheus_client's server, loopback unless told otherwise."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prometheus_client import start_http_server

if TYPE_CHECKING:
    import threading
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.registry import CollectorRegistry

__all__ = ("MetricsServer",)

_log = logging.getLogger("otel_overspend")


class MetricsServer:
    """A running endpoint. A busy port logs one warning and leaves the app running."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @classmethod
    def start(cls, *, host: str, port: int, registry: CollectorRegistry) -> MetricsServer | None:
        try:
            server, thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            _log.warning(
                "otel_overspend: cannot serve /metrics on %s:%d (%s); the metrics are still in the "
                "registry. Set OVERSPEND_METRICS_PORT, or OVERSPEND_SERVE_METRICS=false if the app "
                "already serves the default registry.",
                host,
                port,
                exc.strerror or exc,
            )
            return None
        _log.info("otel_overspend: serving /metrics on http://%s:%d/metrics", host, server.server_address[1])
        return cls(server, thread)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout_s)
