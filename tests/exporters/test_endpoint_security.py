"""The /metrics endpoint is safe to run in production: loopback unless configured, TLS,
client certificates and basic auth, tested with real HTTPS scrapes; and no prompt,
completion, user or tool text ever reaches a label value or an added span attribute."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import logging
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from otel_overspend import OverspendProcessor, OverspendSpanExporter, Settings, step
from otel_overspend.exporters.spans import ATTRIBUTES

from conftest import unavailable

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from opentelemetry.util.types import AttributeValue

USAGE: dict[str, AttributeValue] = {
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 100,
    "gen_ai.usage.output_tokens": 10,
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OVERSPEND_"):
            monkeypatch.delenv(name)


# -- certificates, made here ----------------------------------------------------------------
@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # a client certificate from another CA
    rogue_key: Path


def _pki(directory: Path) -> Pki:
    try:
        from cryptography import x509
    except ImportError:
        unavailable("the cryptography package is missing: it makes the test certificates (test extra)")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def name(common: str) -> Any:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def cert(subject: str, public: Any, issuer: str, signer: Any, *, ca: bool, usage: Any = None) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        else:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
            )
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    def write(stem: str, certificate: Any, private: Any) -> tuple[Path, Path]:
        cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path

    ca_key, rogue_ca_key = key(), key()
    ca_cert = cert("test ca", ca_key.public_key(), "test ca", ca_key, ca=True)
    ca_path, _ = write("ca", ca_cert, ca_key)
    server_key, client_key, rogue_key = key(), key(), key()
    server = cert(
        "127.0.0.1",
        server_key.public_key(),
        "test ca",
        ca_key,
        ca=False,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    client = cert(
        "scraper", client_key.public_key(), "test ca", ca_key, ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    rogue = cert(
        "rogue",
        rogue_key.public_key(),
        "rogue ca",
        rogue_ca_key,
        ca=False,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    server_paths = write("server", server, server_key)
    client_paths = write("client", client, client_key)
    rogue_paths = write("rogue", rogue, rogue_key)
    return Pki(ca_path, *server_paths, *client_paths, *rogue_paths)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return _pki(tmp_path_factory.mktemp("pki"))


# -- helpers --------------------------------------------------------------------------------
@dataclass
class Served:
    processor: OverspendProcessor
    provider: TracerProvider
    url: str


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[Served] = []

    def start(**settings: Any) -> Served:
        processor = OverspendProcessor(
            settings=Settings(metrics_port=0, use_genai_prices=False, **settings),
            registry=CollectorRegistry(),
        )
        provider = TracerProvider()
        provider.add_span_processor(processor)
        with step("rerank"), provider.get_tracer("t").start_as_current_span("chat", attributes=USAGE):
            pass
        server = processor.metrics_server
        assert server is not None
        served = Served(processor, provider, server.url)
        started.append(served)
        return served

    yield start
    for served in started:
        served.provider.shutdown()


def _client_context(pki: Pki, *, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def _scrape(url: str, *, context: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None) -> str:
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=5, context=context) as response:
        assert response.status == 200
        return str(response.read().decode())


def _refused(url: str, *, context: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None) -> str:
    """Scrape expecting 401; the ``WWW-Authenticate`` header it came with."""
    with pytest.raises(urllib.error.HTTPError) as info:
        _scrape(url, context=context, auth=auth)
    with info.value as error:
        assert error.code == 401
        return str(error.headers["WWW-Authenticate"])


def _non_loopback_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


# -- binding --------------------------------------------------------------------------------
def test_metrics_bind_loopback_by_default(serve: Any) -> None:
    served = serve()
    server = served.processor.metrics_server
    assert server.host == "127.0.0.1"
    assert "overspend_llm_calls_total" in _scrape(served.url)
    other = _non_loopback_address()
    if other is not None:
        with socket.socket() as sock:
            sock.settimeout(2)
            assert sock.connect_ex((other, server.port)) != 0  # not reachable from outside


def test_metrics_bind_where_configured(serve: Any) -> None:
    served = serve(metrics_host="0.0.0.0")
    server = served.processor.metrics_server
    assert server.host == "0.0.0.0"
    port = server.port
    assert "overspend_llm_calls_total" in _scrape(f"http://127.0.0.1:{port}/metrics")


# -- TLS ------------------------------------------------------------------------------------
def test_https_scrape(serve: Any, pki: Pki) -> None:
    served = serve(metrics_certfile=pki.server_cert, metrics_keyfile=pki.server_key)
    assert served.url.startswith("https://127.0.0.1:")
    body = _scrape(served.url, context=_client_context(pki))
    assert (
        'overspend_llm_calls_total{model="gpt-4o",provider="unknown",step="rerank",tier="frontier"} 1.0'
        in body
    )
    # Plain HTTP to the TLS port gets no metrics, and the endpoint goes on serving.
    with pytest.raises(OSError):
        _scrape(served.url.replace("https://", "http://"))
    assert "overspend_llm_calls_total" in _scrape(served.url, context=_client_context(pki))


def test_client_certificates_are_required_when_a_client_ca_is_set(serve: Any, pki: Pki) -> None:
    served = serve(
        metrics_certfile=pki.server_cert, metrics_keyfile=pki.server_key, metrics_client_cafile=pki.ca
    )
    with pytest.raises(OSError):
        _scrape(served.url, context=_client_context(pki))  # no client certificate
    with pytest.raises(OSError):
        _scrape(served.url, context=_client_context(pki, cert=pki.rogue_cert, key=pki.rogue_key))
    body = _scrape(served.url, context=_client_context(pki, cert=pki.client_cert, key=pki.client_key))
    assert "overspend_llm_calls_total" in body


def test_a_silent_client_blocks_neither_scrapes_nor_shutdown(serve: Any, pki: Pki) -> None:
    served = serve(metrics_certfile=pki.server_cert, metrics_keyfile=pki.server_key)
    server = served.processor.metrics_server
    with socket.create_connection(("127.0.0.1", server.port)) as silent:  # never says hello
        started = time.monotonic()
        assert "overspend_llm_calls_total" in _scrape(served.url, context=_client_context(pki))
        assert time.monotonic() - started < 3
        started = time.monotonic()
        served.processor.shutdown()
        assert time.monotonic() - started < 3
        assert silent.fileno() >= 0


# -- basic auth -----------------------------------------------------------------------------
def test_basic_auth_over_https(serve: Any, pki: Pki) -> None:
    served = serve(
        metrics_certfile=pki.server_cert,
        metrics_keyfile=pki.server_key,
        metrics_basic_auth_username="prometheus",
        metrics_basic_auth_password="s3cret:with colon",
    )
    context = _client_context(pki)
    for auth in (None, ("prometheus", "wrong"), ("other", "s3cret:with colon"), ("", "")):
        assert _refused(served.url, context=context, auth=auth).startswith("Basic ")
    body = _scrape(served.url, context=context, auth=("prometheus", "s3cret:with colon"))
    assert "overspend_llm_calls_total" in body


def test_basic_auth_from_the_environment(
    serve: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OVERSPEND_METRICS_BASIC_AUTH_USERNAME", "prom")
    monkeypatch.setenv("OVERSPEND_METRICS_BASIC_AUTH_PASSWORD", "pa55word-marker")
    with caplog.at_level(logging.DEBUG, logger="otel_overspend"):
        served = serve()
    _refused(served.url)
    assert "overspend_llm_calls_total" in _scrape(served.url, auth=("prom", "pa55word-marker"))
    settings = served.processor.settings
    assert "pa55word-marker" not in repr(settings)
    assert "pa55word-marker" not in repr(served.processor.metrics_server.endpoint)
    assert "pa55word-marker" not in caplog.text


def test_basic_auth_without_tls_off_loopback_warns(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_overspend"):
        serve(metrics_host="0.0.0.0", metrics_basic_auth_username="u", metrics_basic_auth_password="p")
    assert "clear text" in caplog.text


# -- configuration errors, at start-up ------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "shown"),
    [
        ({"metrics_keyfile": "KEY"}, ["metrics_keyfile", "metrics_certfile", "server.key"]),
        ({"metrics_client_cafile": "CA"}, ["metrics_client_cafile", "metrics_certfile", "ca.crt"]),
        ({"metrics_basic_auth_username": "u"}, ["metrics_basic_auth_password"]),
        ({"metrics_basic_auth_password": "p"}, ["metrics_basic_auth_username"]),
        ({"metrics_basic_auth_username": "a:b", "metrics_basic_auth_password": "p"}, ["'a:b'"]),
        ({"metrics_basic_auth_username": "u", "metrics_basic_auth_password": ""}, ["password is empty"]),
        ({"metrics_certfile": "/no/such/cert.pem"}, ["metrics_certfile", "/no/such/cert.pem"]),
        ({"metrics_port": 65535, "metrics_port_range": 2}, ["metrics_port_range", "65535"]),
    ],
)
def test_bad_endpoint_settings_fail_naming_field_and_value(
    pki: Pki, fields: dict[str, Any], shown: list[str]
) -> None:
    paths = {"KEY": pki.server_key, "CA": pki.ca}
    kwargs: dict[str, Any] = {
        field: paths.get(value, value) if isinstance(value, str) else value for field, value in fields.items()
    }
    with pytest.raises(ValueError) as info:
        Settings(**kwargs)
    for text in shown:
        assert text in str(info.value)


def test_unloadable_tls_files_fail_when_the_processor_starts(pki: Pki, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n", encoding="utf-8")
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"metrics_certfile": garbage}, ["metrics_certfile", "garbage.pem"]),
        ({"metrics_certfile": pki.server_cert, "metrics_keyfile": pki.client_key}, ["metrics_keyfile"]),
        (
            {
                "metrics_certfile": pki.server_cert,
                "metrics_keyfile": pki.server_key,
                "metrics_client_cafile": garbage,
            },
            ["metrics_client_cafile", "garbage.pem"],
        ),
    ]
    threads_before = _counting_threads()
    for fields, shown in cases:
        settings = Settings(metrics_port=0, **fields)
        registry = CollectorRegistry()
        with pytest.raises(ValueError) as info:
            OverspendProcessor(settings=settings, registry=registry)
        for text in shown:
            assert text in str(info.value)
        # Nothing it started outlives the failed constructor.
        assert list(registry.collect()) == []
    assert _counting_threads() == threads_before


def _counting_threads() -> int:
    return sum(thread.name == "otel-overspend-counter" for thread in threading.enumerate())


def test_tls_settings_from_the_environment(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERSPEND_METRICS_KEYFILE", str(pki.server_key))
    with pytest.raises(ValueError, match="metrics_certfile"):
        Settings()
    monkeypatch.setenv("OVERSPEND_METRICS_CERTFILE", str(pki.server_cert))
    monkeypatch.setenv("OVERSPEND_METRICS_CLIENT_CAFILE", str(pki.ca))
    settings = Settings()
    assert settings.metrics_client_cafile == pki.ca


# -- no message content anywhere we write ---------------------------------------------------
MARKER = "zq7-secret-marker-4821"
CONTENT_ATTRIBUTES = (
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.prompt.0.content",
    "gen_ai.prompt.0.role",
    "gen_ai.completion.0.content",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.tool.description",
    "gen_ai.conversation.id",
    "gen_ai.response.id",
    "llm.input_messages.0.message.content",
    "llm.output_messages.0.message.content",
    "llm.prompts",
    "llm.tools.0.tool.json_schema",
    "input.value",
    "output.value",
    "traceloop.entity.input",
    "traceloop.entity.output",
    "user.id",
    "enduser.id",
    "session.id",
    "metadata",
    "tag.tags",
)


def test_message_content_reaches_no_label_and_no_added_attribute(pki: Pki) -> None:
    registry = CollectorRegistry()
    reader = InMemoryMetricReader()
    processor = OverspendProcessor(
        settings=Settings(
            metrics_port=0,
            metrics_certfile=pki.server_cert,
            metrics_keyfile=pki.server_key,
            use_genai_prices=False,
            stamp_spans=True,
        ),
        registry=registry,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(OverspendSpanExporter(exported, processor=processor)))
    tracer = provider.get_tracer("t")
    shapes: list[dict[str, AttributeValue]] = [
        {**USAGE},
        {**USAGE, "openinference.span.kind": "RERANKER", "gen_ai.provider.name": "openai"},
        {**USAGE, "gen_ai.operation.name": "embeddings", "llm.token_count.prompt": 5},
        {"gen_ai.usage.cost": 0.25},
        {},  # no usage: not an LLM call
        {"gen_ai.usage.input_tokens": -1},  # dropped
    ]
    for i, shape in enumerate(shapes):  # every call its own: no two share a response id
        shape.update({key: f"{MARKER} {key} {i}" for key in CONTENT_ATTRIBUTES})
        shape["llm.input_messages"] = (MARKER, f"{MARKER} {i}")
    try:
        with tracer.start_as_current_span(f"request {MARKER}"):
            for i, attributes in enumerate(shapes):
                with (
                    step("rerank" if i % 2 else "generate"),
                    tracer.start_as_current_span(f"chat {MARKER}", attributes=attributes),
                ):
                    pass
        server = processor.metrics_server
        assert server is not None
        body = _scrape(server.url, context=_client_context(pki))
        assert "overspend_llm_calls_total" in body
        assert MARKER not in body
        data = reader.get_metrics_data()
        assert data is not None
        assert MARKER not in data.to_json()
        spans = exported.get_finished_spans()
        assert len(spans) == len(shapes) + 1
        annotated = 0
        for span in spans:
            attributes = dict(span.attributes or {})
            added = {key: value for key, value in attributes.items() if key in ATTRIBUTES}
            annotated += "overspend.tier" in added
            assert MARKER not in repr(added)
        assert annotated == 4
    finally:
        provider.shutdown()
