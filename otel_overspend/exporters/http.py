"""The ``/metrics`` endpoint: loopback unless told otherwise, with optional TLS, client
certificates and basic auth.

It serves prometheus_client's WSGI app from a thread, one short-lived thread per scrape.
A TLS handshake happens in the scrape's thread under a time-out, so a client that connects
and says nothing can hold neither the accept loop nor :meth:`MetricsServer.stop`. A busy
port is not an error: the next port of the configured range is tried, and when none is
free one warning is logged and the app runs on.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hmac
import logging
import selectors
import socket
import ssl
import threading
import zlib
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from prometheus_client.registry import CollectorRegistry

    from otel_overspend.config.settings import Settings

__all__ = ("Endpoint", "MetricsServer")

_log = logging.getLogger("otel_overspend")

#: A scrape's connection (TLS handshake included) that is idle this long is closed.
CONNECTION_TIMEOUT_S: Final = 10.0
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})
#: zlib's window bits for a gzip member (header and trailer), not a raw zlib stream.
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how ``/metrics`` is served (built from :class:`Settings`)."""

    host: str = "127.0.0.1"
    port: int = 9464
    #: Ports ``port`` .. ``port + port_range - 1`` are tried in order.
    port_range: int = 1
    certfile: str | None = None
    keyfile: str | None = None
    client_cafile: str | None = None
    #: (user, password); never in the repr.
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, port: int | None = None) -> Endpoint:
        password = settings.metrics_basic_auth_password
        user = settings.metrics_basic_auth_username
        return cls(
            host=settings.metrics_host,
            port=settings.metrics_port if port is None else port,
            port_range=settings.metrics_port_range if port is None else 1,
            certfile=None if settings.metrics_certfile is None else str(settings.metrics_certfile),
            keyfile=None if settings.metrics_keyfile is None else str(settings.metrics_keyfile),
            client_cafile=(
                None if settings.metrics_client_cafile is None else str(settings.metrics_client_cafile)
            ),
            basic_auth=None if user is None or password is None else (user, password.get_secret_value()),
        )

    @property
    def scheme(self) -> str:
        return "http" if self.certfile is None else "https"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context; :class:`ValueError` naming the file if it cannot be loaded."""
        if self.certfile is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as exc:
            msg = (
                f"metrics_certfile {self.certfile!r} / metrics_keyfile {self.keyfile!r}: "
                f"cannot load the certificate and key ({exc})"
            )
            raise ValueError(msg) from None
        if self.client_cafile is not None:
            try:
                context.load_verify_locations(cafile=self.client_cafile)
            except (OSError, ssl.SSLError) as exc:
                msg = f"metrics_client_cafile {self.client_cafile!r}: cannot load the CA ({exc})"
                raise ValueError(msg) from None
            context.verify_mode = ssl.CERT_REQUIRED
        return context


class _Handler(WSGIRequestHandler):
    timeout = CONNECTION_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Scrapes are not logged."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 64  # socketserver's 5 drops the SYNs of a burst: a 1 s retransmit each
    tls: ssl.SSLContext | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # stop_serving() writes here: the loop wakes at once, and never while idle. Made
        # first: a port that cannot be bound closes the server (and these) in super().
        self._wake_up, self._waker = socket.socketpair()
        self._stopping = False
        super().__init__(*args, **kwargs)

    def serve_until_stopped(self) -> None:
        """Serve until :meth:`stop_serving`. socketserver's ``serve_forever`` wakes twice a
        second to look for a stop, so ``shutdown`` (at every app's exit) waited up to half a
        second; this loop sleeps until a scrape or the stop comes."""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_up, selectors.EVENT_READ)
            while not self._stopping:
                ready = selector.select()
                if self._stopping or any(key.fileobj is self._wake_up for key, _ in ready):
                    return
                self.handle_request()  # a connection is waiting: accepted at once

    def stop_serving(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):  # closed already
            self._waker.send(b"\0")

    def server_close(self) -> None:
        super().server_close()
        self._wake_up.close()
        self._waker.close()

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        if self.tls is not None:
            # No handshake here: it runs in the scrape's own thread (finish_request).
            conn = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            request.settimeout(CONNECTION_TIMEOUT_S)
            try:
                request.do_handshake()
            except (OSError, ValueError):  # a plain-HTTP client, a bad certificate, a time-out
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A broken connection is the client's business: no traceback on stderr."""


def _with_basic_auth(app: WSGIApplication, user: str, password: str) -> WSGIApplication:
    expected_user, expected_password = user.encode(), password.encode()

    def authenticated(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        scheme, _, token = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
        given_user, given_password = b"", b""
        if scheme.lower() == "basic":
            with contextlib.suppress(binascii.Error, ValueError):
                given_user, _, given_password = base64.b64decode(token.strip(), validate=True).partition(b":")
        # Both compared every time, in constant time: a wrong user name takes as long as a wrong password.
        user_ok = hmac.compare_digest(given_user, expected_user)
        if hmac.compare_digest(given_password, expected_password) and user_ok:
            return app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [("WWW-Authenticate", 'Basic realm="otel_overspend", charset="UTF-8"'), ("Content-Length", "0")],
        )
        return [b""]

    return authenticated


def _server_class(host: str, tls: ssl.SSLContext | None) -> type[_Server]:
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family = infos[0][0] if infos else socket.AF_INET
    return type("MetricsHTTPServer", (_Server,), {"address_family": family, "tls": tls})


def _with_fast_text(fallback: WSGIApplication, render: Callable[[], list[bytes]]) -> WSGIApplication:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if "name" in environ.get("QUERY_STRING", ""):
            return fallback(environ, start_response)
        body = render()  # written piece by piece: never one large buffer
        headers = [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            gzipped = zlib.compressobj(1, zlib.DEFLATED, _GZIP_WBITS)
            body = [*map(gzipped.compress, body), gzipped.flush()]
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(sum(map(len, body)))))
        start_response("200 OK", headers)
        return [piece for piece in body if piece]

    return app


class MetricsServer:
    """A running endpoint."""

    def __init__(self, server: _Server, thread: threading.Thread, endpoint: Endpoint) -> None:
        self._server = server
        self._thread = thread
        self.endpoint = endpoint

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        """The address the server is bound to."""
        return str(self._server.server_address[0])

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"{self.endpoint.scheme}://{host}:{self.port}/metrics"

    @classmethod
    def start(
        cls,
        endpoint: Endpoint,
        *,
        registry: CollectorRegistry,
        render: Callable[[], list[bytes]] | None = None,
    ) -> MetricsServer | None:
        """Serve ``registry``; ``None`` (and one warning) if no port of the range is free.

        With ``render`` (the registry in the text format, rendered fast, in pieces), a plain scrape is
        answered with it; a scrape filtering by ``name[]`` goes through prometheus_client.
        A TLS file that cannot be loaded is a configuration error: :class:`ValueError`.
        """
        tls = endpoint.ssl_context()
        app: WSGIApplication = make_wsgi_app(registry)
        if render is not None:
            app = _with_fast_text(app, render)
        if endpoint.basic_auth is not None:
            app = _with_basic_auth(app, *endpoint.basic_auth)
            if tls is None and endpoint.host not in _LOOPBACK:
                _log.warning(
                    "otel_overspend: basic auth on /metrics without TLS sends the password in clear "
                    "text; set OVERSPEND_METRICS_CERTFILE and OVERSPEND_METRICS_KEYFILE"
                )
        last = endpoint.port if endpoint.port == 0 else endpoint.port + endpoint.port_range - 1
        error: OSError | None = None
        try:
            server_class = _server_class(endpoint.host, tls)
        except OSError as exc:
            error = exc
        else:
            for port in range(endpoint.port, last + 1):
                try:
                    server = make_server(endpoint.host, port, app, server_class, handler_class=_Handler)
                except OSError as exc:
                    error = exc
                    if exc.errno == errno.EADDRINUSE:
                        continue
                    break
                thread = threading.Thread(
                    target=server.serve_until_stopped, name="otel-overspend-metrics", daemon=True
                )
                thread.start()
                running = cls(server, thread, endpoint)
                _log.info("otel_overspend: serving /metrics on %s", running.url)
                return running
        ports = str(endpoint.port) if last == endpoint.port else f"{endpoint.port}-{last}"
        _log.warning(
            "otel_overspend: cannot serve /metrics on %s:%s (%s); the metrics are still in the "
            "registry. Set OVERSPEND_METRICS_PORT (or OVERSPEND_METRICS_PORT_RANGE), or "
            "OVERSPEND_SERVE_METRICS=false if the app already serves the default registry.",
            endpoint.host,
            ports,
            (error.strerror or error) if error is not None else "no port",
        )
        return None

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving and close the port (scrapes in flight are not waited for)."""
        self._server.stop_serving()
        self._thread.join(timeout_s)
        self._server.server_close()

    def close_inherited(self) -> None:
        """In a forked child: close this process's copies of the parent's sockets.

        The serving thread did not survive the fork, so :meth:`stop` would wait for it forever.
        """
        self._server.server_close()
