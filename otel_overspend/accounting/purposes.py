"""What a request's spend is for: serving a request, evaluation, or batch work.

A request (a local root span and the LLM calls under it) has one purpose, decided when its
root ends, the first rule that applies winning:

1. the root span's ``overspend.purpose`` attribute (``request``, ``eval`` or ``batch``);
2. its resource's ``overspend.purpose`` attribute (``OTEL_RESOURCE_ATTRIBUTES=overspend.purpose=eval``
   for a whole eval job), or ``eval`` when its ``service.name`` is one of the ``eval_services``;
3. ``request`` when the root is a server span or continues a remote parent (a request that
   came from elsewhere), else ``batch``: a root no request started (a script, a cron job,
   a notebook).

Whatever the request's purpose, the spend of its calls in the ``eval_steps`` (an LLM judge
scoring answers on the request path) is evaluation spend. An unknown ``overspend.purpose``
value is counted (drop reason ``invalid_purpose``) and the next rule decides.

Pure: the live processor and the offline report both call :func:`root_purpose`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping

__all__ = (
    "BATCH",
    "EVAL",
    "PURPOSES",
    "PURPOSE_KEY",
    "REQUEST_PATH",
    "SERVICE_NAME_KEY",
    "resource_purpose",
    "root_purpose",
)

REQUEST_PATH: Final = "request"
EVAL: Final = "eval"
BATCH: Final = "batch"
#: Every purpose, in the order of the ledger's request-stats vector.
PURPOSES: Final = (REQUEST_PATH, EVAL, BATCH)
#: The span or resource attribute that states a purpose.
PURPOSE_KEY: Final = "overspend.purpose"
SERVICE_NAME_KEY: Final = "service.name"
_VALID: Final = frozenset(PURPOSES)


def _ignore(_: str) -> None:
    return None


def resource_purpose(
    attrs: Mapping[str, object], eval_services: Collection[str], invalid: Callable[[str], None] = _ignore
) -> str | None:
    """The purpose a resource states (rule 2), ``None`` if it states none."""
    declared = attrs.get(PURPOSE_KEY)
    if declared is not None:
        if declared in _VALID:
            return str(declared)
        invalid("invalid_purpose")
    if eval_services and attrs.get(SERVICE_NAME_KEY) in eval_services:
        return EVAL
    return None


def root_purpose(
    declared: object,
    of_resource: str | None,
    server: bool,
    remote_parent: bool,
    invalid: Callable[[str], None] = _ignore,
) -> str:
    """The purpose of the request a local root closes: ``declared`` is its ``overspend.purpose``
    attribute (``None`` if absent), ``of_resource`` what :func:`resource_purpose` gave,
    ``server`` whether it is a server span, ``remote_parent`` whether its parent is remote."""
    if declared is not None:
        if declared in _VALID:
            return str(declared)
        invalid("invalid_purpose")
    if of_resource is not None:
        return of_resource
    return REQUEST_PATH if server or remote_parent else BATCH
