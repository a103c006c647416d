"""Spans out of OTLP/JSON: the collector file exporter's lines and the trace APIs' answers.

A document is one of (:func:`resource_spans`):

- ``{"resourceSpans": [...]}``: an ``ExportTraceServiceRequest`` (the collector's file
  exporter) or a ``TracesData`` (Tempo's ``tempo-cli query api trace-id``);
- ``{"batches": [...]}``: Tempo's ``GET /api/traces/{id}`` (its ``Trace`` message named
  the field ``batches`` until Tempo renamed it, and the v1 API still writes that name);
- ``{"result": {"resourceSpans": [...]}}``: Jaeger's ``GET /api/v3/traces[/{id}]`` (the
  grpc-gateway envelope Jaeger v2 keeps);
- ``{"trace": {"resourceSpans": [...]}, ...}``: Tempo's ``GET /api/v2/traces/{id}``.

Before OTLP named the instrumentation scope (Tempo before 2.0, Jaeger before 1.50),
``scopeSpans`` was ``instrumentationLibrarySpans`` and its ``scope``
``instrumentationLibrary``: both names are read.

Only what the report needs is kept: ids, name, times, the remote-parent flag and the
attributes the attribution reads (usage, model, provider, cost, ``overspend.step`` and
the step rules' attributes); every other attribute is dropped. Values follow the
OTLP/JSON mapping: ``intValue`` is a string (an integer is accepted too), ``doubleValue``
a number or ``"NaN"``/``"Infinity"``, ids are hex as OTLP/JSON says (Jaeger writes hex) or
base64, as protobuf's own JSON printers write them (Tempo's answers, ``json_format``).

With msgspec installed (the ``report`` extra) lines are decoded by
:mod:`otel_overspend.report.otlp_msgspec`, several times faster; a line it rejects, and every
line without it, is decoded here into plain dicts, span by span.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from otel_overspend.accounting.observations import ORACLE_AGREED_KEY
from otel_overspend.accounting.purposes import PURPOSE_KEY
from otel_overspend.calls.conventions import (
    LITELLM_CALL_KEY,
    LITELLM_RAW_USAGE_KEYS,
    READ_KEYS,
    STATUS_ERROR,
    STATUS_KEY,
)
from otel_overspend.calls.framework_steps import FRAMEWORK_KEYS
from otel_overspend.calls.step_rules import DEFAULT_RULES
from otel_overspend.steps import BAGGAGE_KEY

if TYPE_CHECKING:
    from otel_overspend.config.settings import Settings

__all__ = (
    "ERROR_CODES",
    "MAX_ENCODED_RESOURCES",
    "MAX_PROCESSES",
    "PROCESS_KEYS",
    "REMOTE_PARENT_MASK",
    "SERVER",
    "SERVER_KINDS",
    "SPAN_KIND_KEY",
    "STATUS_CODE_ERROR",
    "Processes",
    "SpanRecord",
    "attribute_keys",
    "decode_id",
    "decode_request",
    "line_decoder",
    "process_identity",
    "resource_spans",
)

#: Bytes a span on average above which a file's attribute values are decoded only when read.
LONG_SPAN_BYTES: Final = 8_192
#: Spans decoded before the average is trusted.
_LONG_SPAN_EVIDENCE: Final = 16
#: Distinct resources told apart; beyond, spans share the last index (requests may merge).
MAX_PROCESSES: Final = 65_536
#: Resources remembered as written (:attr:`Processes.encoded`); beyond, decoded each time.
MAX_ENCODED_RESOURCES: Final = 1_024
#: ``flags`` bits: the span knows whether its parent is remote, and it is.
_HAS_IS_REMOTE: Final = 0x100
_IS_REMOTE: Final = 0x200
REMOTE_PARENT_MASK: Final = _HAS_IS_REMOTE | _IS_REMOTE
#: ``Status.code`` of a failed span in OTLP.
STATUS_CODE_ERROR: Final = 2
#: The OTLP JSON status codes of a failed span (the enum's number, or its name).
ERROR_CODES: Final = (STATUS_CODE_ERROR, "STATUS_CODE_ERROR")
#: Resource attributes that tell one process from another.
PROCESS_KEYS: Final = ("service.name", "service.instance.id", "host.name", "process.pid", PURPOSE_KEY)
#: A server span is marked with this attribute (value :data:`SERVER`) as it is read: the
#: root of a request from a client (``accounting.purposes``). Jaeger and Zipkin spans carry
#: the same tag.
SPAN_KIND_KEY: Final = "span.kind"
SERVER: Final = "server"
#: A server span's ``kind`` in OTLP/JSON (the enum's number, or its name) and in protobuf.
SERVER_KINDS: Final = frozenset({2, "SPAN_KIND_SERVER"})
#: The fields a document keeps its ``ResourceSpans`` in, in the order they are looked for.
_SPANS_KEYS: Final = ("resourceSpans", "batches")
#: The envelopes around a ``TracesData``: Jaeger's api/v3, Tempo's v2 API.
_ENVELOPE_KEYS: Final = ("result", "trace")


class SpanRecord(NamedTuple):
    """One ended span, as the report replays it."""

    #: Trace id and process index in one int: a request is per trace and per process.
    trace_key: int
    span_id: int
    #: 0 for a span without a parent.
    parent_id: int
    #: The parent lives in another process: this span is a local root.
    remote_parent: bool
    name: str
    #: The attributes the attribution reads, and only those.
    attrs: dict[str, Any]
    start_ns: int
    end_ns: int
    #: The name of the instrumentation scope that made the span (the recorder tells two
    #: instrumentations' spans of one call apart by it).
    scope: str


def attribute_keys(settings: Settings) -> frozenset[str]:
    """Every attribute the attribution and the step rules of ``settings`` may read."""
    rule_keys = {rule.attribute for rule in settings.step_rules if rule.attribute is not None}
    if settings.default_step_rules:
        rule_keys |= {rule.attribute for rule in DEFAULT_RULES if rule.attribute is not None}
    return (
        READ_KEYS
        | FRAMEWORK_KEYS
        | LITELLM_RAW_USAGE_KEYS
        | {LITELLM_CALL_KEY, BAGGAGE_KEY, ORACLE_AGREED_KEY, PURPOSE_KEY, SPAN_KIND_KEY, *rule_keys}
    )


class Processes:
    """Resource -> small int, so that requests are told apart per process as live. Processes
    count from 1: 0 stands for spans whose resource does not say which process they came from."""

    __slots__ = ("_index", "encoded", "last_encoded")

    def __init__(self) -> None:
        self._index: dict[tuple[Any, ...], int] = {}
        #: A decoder's cache: a resource as written (it repeats on each line of its process)
        #: -> its index. At most :data:`MAX_ENCODED_RESOURCES` entries.
        self.encoded: dict[bytes, int] = {}
        #: A decoder's last resource as it read it (its own type) and its index: a file's lines
        #: mostly come from one process, and comparing is cheaper than copying and hashing.
        self.last_encoded: tuple[Any, int] | None = None

    def resource_attributes(self, index: int) -> dict[str, str]:
        """The :data:`PROCESS_KEYS` attributes of process ``index`` (none for 0 or unknown)."""
        for identity, found in self._index.items():
            if found == index:
                # process_identity() wrote an absent attribute as "None".
                return {key: v for key, v in zip(PROCESS_KEYS, identity, strict=False) if v != "None"}
        return {}

    def identities(self) -> dict[int, tuple[Any, ...]]:
        """Index -> the process it stands for (as :meth:`index` was given it)."""
        return {index: identity for identity, index in self._index.items()}

    def index(self, identity: tuple[Any, ...]) -> int:
        found = self._index.get(identity)
        if found is None:
            found = min(len(self._index) + 1, MAX_PROCESSES - 1)
            if len(self._index) < MAX_PROCESSES:
                self._index[identity] = found
        return found


def value(raw: Any) -> Any:
    """An ``AnyValue`` in OTLP/JSON as the Python value the SDK would have held."""
    if type(raw) is not dict:
        return None
    if "stringValue" in raw:
        return raw["stringValue"]
    if "intValue" in raw:
        number = raw["intValue"]
        try:
            return int(number)
        except (TypeError, ValueError):
            return number  # left as it is: the attribution counts it as malformed
    if "doubleValue" in raw:
        number = raw["doubleValue"]
        try:
            return float(number)
        except (TypeError, ValueError):
            return number
    if "boolValue" in raw:
        return raw["boolValue"]
    if "arrayValue" in raw:
        items = (raw["arrayValue"] or {}).get("values") or ()
        return tuple(value(item) for item in items)
    if "bytesValue" in raw:
        return raw["bytesValue"]
    return None


def decode_id(text: Any, size: int) -> int:
    """An id from its hex (or base64) text; raises :class:`ValueError` if it is none."""
    if type(text) is not str:
        raise ValueError(f"id {text!r} is not a string")
    if len(text) == 2 * size:
        number = int(text, 16)
    else:
        try:
            raw = base64.b64decode(text, validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != size:
            raise ValueError(f"id {text!r} is neither {2 * size} hex digits nor {size} bytes in base64")
        number = int.from_bytes(raw, "big")
    if number == 0:
        raise ValueError("id is all zeros")
    return number


def process_identity(resource_attrs: dict[str, Any], processes: Processes) -> int:
    """The index of the process a resource's attributes describe (0 when they say nothing)."""
    if not any(key in resource_attrs for key in PROCESS_KEYS):
        return 0
    return processes.index(tuple(str(resource_attrs.get(key)) for key in PROCESS_KEYS))


def _process(resource: Any, processes: Processes) -> int:
    if type(resource) is not dict:
        return 0
    found: dict[str, Any] = {}
    for kv in resource.get("attributes") or ():
        key = kv.get("key") if type(kv) is dict else None
        if key in PROCESS_KEYS:
            found[key] = value(kv.get("value"))
    return process_identity(found, processes)


def _spans_list(doc: dict[str, Any]) -> list[Any] | None:
    for key in _SPANS_KEYS:
        found = doc.get(key)
        if type(found) is list:
            return found
    return None


def resource_spans(doc: Any) -> list[Any] | None:
    """The ``ResourceSpans`` of a decoded document of any of the shapes above, or ``None``
    if it is none of them: its own list first, else an envelope's."""
    if type(doc) is not dict:
        return None
    found = _spans_list(doc)
    if found is not None:
        return found
    for key in _ENVELOPE_KEYS:
        inner = doc.get(key)
        if type(inner) is dict:
            found = _spans_list(inner)
            if found is not None:
                return found
    return None


def decode_request(
    doc: Any, keys: frozenset[str], processes: Processes, bad_span: Callable[[str], None]
) -> list[SpanRecord] | None:
    """The spans of one document (an ``ExportTraceServiceRequest`` or a trace API's answer);
    ``None`` if it holds no traces (a metrics or logs line, say). ``bad_span`` is told
    what is wrong with each span that cannot be used; the others are returned."""
    found = resource_spans(doc)
    if found is None:
        return None
    out: list[SpanRecord] = []
    append = out.append
    for rs in found:
        if type(rs) is not dict:
            bad_span("resourceSpans entry is not an object")
            continue
        process = _process(rs.get("resource"), processes)
        scopes = rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or ()
        for ss in scopes:
            spans = ss.get("spans") if type(ss) is dict else None
            scope = _scope_name(ss)
            for sp in spans or ():
                try:
                    append(_span(sp, keys, process, scope))
                except KeyError as missing:  # noqa: PERF203 - one bad span must not lose the others
                    bad_span(f"span {_label(sp)} has no {missing.args[0]}")
                except (AttributeError, TypeError, ValueError) as exc:
                    bad_span(f"span {_label(sp)}: {exc}")
    return out


def _scope_name(scope_spans: Any) -> str:
    if type(scope_spans) is not dict:
        return ""
    scope = scope_spans.get("scope")
    if scope is None:
        scope = scope_spans.get("instrumentationLibrary")
    name = scope.get("name") if type(scope) is dict else None
    return name if type(name) is str else ""


def _span(sp: Any, keys: frozenset[str], process: int, scope: str) -> SpanRecord:
    """One span object as a record; raises ``KeyError`` for a missing field and
    ``ValueError`` (or ``TypeError``, ``AttributeError``) for a malformed one."""
    name = sp.get("name", "")
    if type(name) is not str:
        raise ValueError(f"name {name!r} is not a string")
    parent = sp.get("parentSpanId")
    trace_id = decode_id(sp["traceId"], 16)
    span_id = decode_id(sp["spanId"], 8)
    parent_id = decode_id(parent, 8) if parent else 0
    start_ns = int(sp["startTimeUnixNano"])
    end_ns = int(sp["endTimeUnixNano"])
    attrs: dict[str, Any] = {}
    for kv in sp.get("attributes") or ():
        key = kv["key"]
        if key in keys:
            attrs[key] = value(kv.get("value"))
    status = sp.get("status")
    if type(status) is dict and status.get("code") in ERROR_CODES:
        attrs[STATUS_KEY] = STATUS_ERROR  # a failed call: see conventions.ERROR_KEYS
    kind = sp.get("kind")
    if type(kind) in {int, str} and kind in SERVER_KINDS:
        attrs[SPAN_KIND_KEY] = SERVER
    flags = sp.get("flags") or 0
    remote = type(flags) is int and flags & REMOTE_PARENT_MASK == REMOTE_PARENT_MASK
    return SpanRecord(
        (trace_id << 16) | process, span_id, parent_id, remote, name, attrs, start_ns, end_ns, scope
    )


def _label(span: Any) -> str:
    if type(span) is not dict:
        return f"{span!r:.60}"
    return repr(span.get("name", "?"))


LineDecoder = Callable[[bytes, Callable[[str], None]], "list[SpanRecord] | None"]


def line_decoder(
    keys: frozenset[str], processes: Processes, *, long_spans: bool | None = None
) -> LineDecoder:
    """A function decoding one line to its spans (``None``: the line holds no traces).
    It raises :class:`ValueError` for a line that is not JSON, and tells ``bad_span``
    about each span it has to leave out.

    Spans that carry long values (prompts and completions: more than
    :data:`LONG_SPAN_BYTES` a span on average, over the lines so far) are decoded with
    their attribute values left encoded until read; ``long_spans`` forces either way."""
    try:
        from otel_overspend.report import otlp_msgspec  # noqa: PLC0415 - optional speed-up
    except ModuleNotFoundError:
        import json  # noqa: PLC0415

        def slow(data: bytes, bad_span: Callable[[str], None]) -> list[SpanRecord] | None:
            return decode_request(json.loads(data), keys, processes, bad_span)

        return slow

    fast, untyped, mismatch = (
        otlp_msgspec.decode_line,
        otlp_msgspec.decode_untyped,
        otlp_msgspec.ValidationError,
    )

    # Bytes and spans of the lines decoded so far: building a 30 KB string costs more than
    # decoding a read value apart, which short values do not repay.
    seen = [0, 0]

    def decode(data: bytes, bad_span: Callable[[str], None]) -> list[SpanRecord] | None:
        long = long_spans
        if long is None:
            total, spans = seen
            long = spans >= _LONG_SPAN_EVIDENCE and total > LONG_SPAN_BYTES * spans
        try:
            found = fast(data, keys, processes, bad_span, long_spans=long)
        except mismatch:
            return decode_request(untyped(data), keys, processes, bad_span)
        if found:
            seen[0] += len(data)
            seen[1] += len(found)
        return found

    return decode
