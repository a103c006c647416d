"""Settings: validated once at start-up, from keyword arguments, ``OVERSPEND_*`` environment
variables and an optional TOML file named by ``OVERSPEND_CONFIG`` (in that precedence).

Every mistake (an unknown tier, a bad regex, a negative price, an unknown step in the
specialization map, a TLS key without its certificate, an unreadable config file) fails
here with one :class:`ConfigError`, whose one-line message names where the value came from
(the variable, the file's key or the keyword argument), the value and the form expected:
``OVERSPEND_METRICS_PORT='abc': expected an integer port 0-65535 (0: any free port)``.
Nothing in this module runs on the span path.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, get_args, get_origin

import annotated_types
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from otel_overspend.accounting.signals import UnattributedTreatment
from otel_overspend.base.durations import duration_ms
from otel_overspend.base.patterns import compile_pattern
from otel_overspend.calls.catalog import (
    SPECIALIST,
    SPECIALIZE_TARGETS,
    TIERS,
    UNCHANGED,
    SpecializeTarget,
    Tier,
)
from otel_overspend.calls.pricing import DEFAULT_TIER_PRICES, DEFAULT_TIER_SEARCH_PRICES
from otel_overspend.steps import GENERATE, UNATTRIBUTED, is_step_name, validate_step_name
from otel_overspend.thresholds import BANDS, DEFAULT_EVAL_STEPS, PatternThresholds

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pydantic.fields import FieldInfo
    from pydantic_core import ErrorDetails

__all__ = ("ConfigError", "ConfigFileError", "Price", "Settings", "StepRule", "parse_duration_seconds")

#: No model costs more than this per 1M tokens; a larger price is a typo (and would let one
#: call's cost overflow a float).
MAX_USD_PER_MTOK: Final = 1_000_000.0


class ConfigError(ValueError):
    """A setting that cannot be used, raised when :class:`Settings` is built.

    The message is one line naming where the value came from (the ``OVERSPEND_*`` variable,
    the config file's key or the keyword argument), the value and the form expected::

        OVERSPEND_METRICS_PORT='abc': expected an integer port 0-65535 (0: any free port)
        overspend.toml: model_tiers."gpt-4o" = 'huge': expected ... (Input should be ...)
        Settings(max_models=0): expected a whole number 1-10000

    A password is never shown. Several mistakes are reported together, separated by ``;``.
    """


class ConfigFileError(ConfigError):
    """The config file (``OVERSPEND_CONFIG``'s, or the one given to
    :meth:`Settings.with_config_file`) is missing or is not readable TOML."""


def parse_duration_seconds(text: str) -> int:
    """A window's length in whole seconds: ``"5m"`` -> 300, ``"1h30m"`` -> 5400. Raises
    :class:`ValueError` on anything else, zero and fractions of a second included."""
    ms = duration_ms(text.strip())
    if ms == 0 or ms % 1_000:
        raise ValueError(
            f"invalid window {text!r}: use a positive whole number of seconds (e.g. '5m', '1h30m')"
        )
    return ms // 1_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_UsdPerMtok = Annotated[float, Field(ge=0, le=MAX_USD_PER_MTOK, allow_inf_nan=False)]
#: No request or search costs more than this (USD); a larger price is a typo.
MAX_USD_PER_REQUEST: Final = 1_000.0
#: A host name or an IPv4 address (an IPv6 address has a ':' and is parsed as one).
_HOST_NAME: Final = re.compile(r"[A-Za-z0-9_.-]+")
_UsdPerRequest = Annotated[float, Field(ge=0, le=MAX_USD_PER_REQUEST, allow_inf_nan=False)]


class Price(_Strict):
    """Token rates in USD per 1M tokens; ``per_request`` and ``per_search`` in USD each.

    Unset rates fall back as providers bill: ``cache_read`` and ``cache_write`` (a 5-minute
    cache write) to ``input``, ``cache_write_1h`` to ``cache_write``. ``per_request`` is
    charged once per call (a rerank call: once per search); ``per_search``, when set,
    prices a rerank call's searches instead.
    """

    input: _UsdPerMtok
    output: _UsdPerMtok
    cache_read: _UsdPerMtok | None = None
    cache_write: _UsdPerMtok | None = None
    cache_write_1h: _UsdPerMtok | None = None
    per_request: _UsdPerRequest = 0.0
    per_search: _UsdPerRequest | None = None


class StepRule(_Strict):
    """Give spans matching every condition that is set the step ``step``.

    ``span_name`` and ``matches`` are regexes (searched); ``equals`` compares the
    attribute's string value exactly.
    """

    step: str
    span_name: str | None = None
    attribute: str | None = None
    equals: str | None = None
    matches: str | None = None

    @field_validator("step")
    @classmethod
    def _valid_step(cls, value: str) -> str:
        return validate_step_name(value)

    @field_validator("span_name", "matches")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _has_condition(self) -> StepRule:
        if self.span_name is None and self.attribute is None:
            raise ValueError(f"step rule for {self.step!r} needs span_name or attribute")
        if (self.equals is not None or self.matches is not None) and self.attribute is None:
            raise ValueError(f"step rule for {self.step!r}: equals/matches need an attribute")
        return self


class Band(_Strict):
    suspect: float
    confirmed: float


def _default_tier_prices() -> dict[Tier, Price]:
    return {
        tier: Price(input=i, output=o, per_search=DEFAULT_TIER_SEARCH_PRICES.get(tier))
        for tier, (i, o) in DEFAULT_TIER_PRICES.items()
    }


def _default_specialize() -> dict[str, SpecializeTarget]:
    return {GENERATE: UNCHANGED}


def _default_bands() -> dict[str, Band]:
    return {name: Band(suspect=b.suspect, confirmed=b.confirmed) for name, b in BANDS.items()}


class _CombinationError(ValueError):
    """Settings that are valid one by one but not together: the message is written when
    their sources are known (see :func:`_explain`)."""

    def __init__(self, given: tuple[str, ...], expected: str, *, needs: str | None = None) -> None:
        super().__init__(expected)
        #: The settings whose values clash, shown with where they came from.
        self.given = given
        #: What is expected; ``{needs}`` stands for the setting ``needs``, named as the
        #: user would set it (``OVERSPEND_METRICS_CERTFILE``, a file key, an argument), and
        #: ``{setting}`` for its setting's name and a colon when that is another name.
        self.expected = expected
        self.needs = needs


class _Environment(EnvSettingsSource):
    """``OVERSPEND_*`` variables; a dict or list value that is not JSON is passed on as the
    string it is, so that validation reports it with the variable's name and value."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:  # json.JSONDecodeError
            return value


@dataclass(frozen=True, slots=True)
class _ConfigFile:
    #: As the user named it, e.g. ``overspend.toml``.
    path: str
    source: TomlConfigSettingsSource


#: The config file of the :class:`Settings` being built, read by ``Settings.__init__`` for
#: ``settings_customise_sources`` (a class method, which is not given the arguments).
_BUILDING: ContextVar[_ConfigFile | None] = ContextVar("overspend_config_file", default=None)
#: The file given to :meth:`Settings.with_config_file`, read in place of OVERSPEND_CONFIG's.
_GIVEN_FILE: ContextVar[Path | None] = ContextVar("overspend_given_config_file", default=None)
_CONFIG_VARIABLE: Final = "OVERSPEND_CONFIG"


def _read_config_file(settings_cls: type[BaseSettings]) -> _ConfigFile | None:
    given = _GIVEN_FILE.get()
    if given is not None:
        path, named = given, f"config file {str(given)!r}"
    else:
        text = os.environ.get(_CONFIG_VARIABLE)
        if not text:
            return None
        path, named = Path(text), f"{_CONFIG_VARIABLE}={text!r}"
    if not path.is_file():
        raise ConfigFileError(f"{named}: expected the path of a TOML file (no such file)")
    try:
        source = TomlConfigSettingsSource(settings_cls, toml_file=path)
    except (ValueError, OSError) as exc:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        raise ConfigFileError(f"{named}: expected a readable TOML file ({exc})") from None
    return _ConfigFile(str(path), source)


class Settings(BaseSettings):
    """Everything configurable. Defaults are production-safe: loopback-only metrics."""

    model_config = SettingsConfigDict(env_prefix="OVERSPEND_", extra="forbid", frozen=True)

    # -- metrics endpoint ------------------------------------------------------------
    serve_metrics: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9464
    #: How many ports, from ``metrics_port`` on, a process may try: it serves on the first
    #: free one. Set it to the worker count when every worker of a server that imports the
    #: app once per worker (``uvicorn --workers N``) should serve its own ``/metrics``.
    metrics_port_range: Annotated[int, Field(ge=1, le=1_000)] = 1
    #: TLS: the server certificate (PEM; it may hold the key too) and its private key.
    metrics_certfile: FilePath | None = None
    metrics_keyfile: FilePath | None = None
    #: Require a client certificate signed by this CA (PEM); needs ``metrics_certfile``.
    metrics_client_cafile: FilePath | None = None
    #: HTTP basic auth on ``/metrics``: both or neither.
    metrics_basic_auth_username: str | None = None
    metrics_basic_auth_password: SecretStr | None = None

    # -- label caps --------------------------------------------------------------------
    max_models: Annotated[int, Field(ge=1, le=10_000)] = 50
    max_steps: Annotated[int, Field(ge=1, le=1_000)] = 20
    max_providers: Annotated[int, Field(ge=1, le=1_000)] = 20

    # -- models, tiers and prices --------------------------------------------------------
    #: pattern (glob, or ``re:`` regex) -> tier; checked before the built-in catalog.
    model_tiers: dict[str, Tier] = Field(default_factory=dict)
    #: pattern -> price; beats every other price source.
    model_prices: dict[str, Price] = Field(default_factory=dict)
    tier_prices: dict[Tier, Price] = Field(default_factory=_default_tier_prices)
    use_span_cost: bool = True
    use_genai_prices: bool = True

    # -- steps -----------------------------------------------------------------------------
    #: Extra step rules, tried before the built-in ones.
    step_rules: list[StepRule] = Field(default_factory=list)
    default_step_rules: bool = True
    #: Take steps from the names frameworks record (Traceloop tasks and workflows, LangChain
    #: run names, LangGraph nodes, Pydantic AI agents): see otel_overspend.calls.framework_steps.
    framework_steps: bool = True
    #: framework name -> step (``{"score_docs": "rerank"}``), for names that are not steps.
    step_aliases: dict[str, str] = Field(default_factory=dict)
    #: Write ``overspend.step`` onto every span at start (costs a little on every span).
    stamp_spans: bool = False

    # -- the specialized counterfactual ----------------------------------------------------
    #: step -> tier its work could run at, or ``unchanged``.
    specialize: dict[str, SpecializeTarget] = Field(default_factory=_default_specialize)
    #: the target of every step the map does not name.
    specialize_default: SpecializeTarget = SPECIALIST

    # -- streaming diagnostics ---------------------------------------------------------------
    windows: str = "5m,1h,1d,7d"
    unattributed: UnattributedTreatment = "exclude"
    bands: dict[str, Band] = Field(default_factory=_default_bands)
    max_open_requests: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    request_timeout_seconds: Annotated[float, Field(gt=0, le=86_400)] = 300.0

    # -- after specialization: the look-alike patterns ----------------------------------------
    #: p95 of the time a specialist-served step adds to a request above which it is flagged.
    step_latency_p95_ms: Annotated[float, Field(gt=0, le=600_000)] = 300.0
    #: Student-teacher agreement below which a step's specialist counts as drifted.
    agreement_min: Annotated[float, Field(ge=0, le=1)] = 0.95
    #: Seconds since a specialist-served step's last oracle check beyond which it is stale.
    oracle_stale_seconds: Annotated[float, Field(gt=0, le=31_536_000)] = 604_800.0
    #: Evaluation spend / every other spend (request path and batch) above which eval is the bill.
    eval_share_max: Annotated[float, Field(gt=0, le=100)] = 0.25
    #: How far a cascade's escalation rate may move from its trailing baseline, either way.
    escalation_band: Annotated[float, Field(gt=0, le=1)] = 0.10
    #: The share of its baseline savings a cascade may lose before it counts as saturated.
    savings_drop_share: Annotated[float, Field(gt=0, le=1)] = 0.25
    #: Steps whose spend is evaluation work (an LLM judge re-scoring an eval set), not inference.
    eval_steps: list[str] = Field(default_factory=lambda: list(DEFAULT_EVAL_STEPS))
    #: Services (resource ``service.name``) whose requests are evaluation work: an eval
    #: harness run as its own service (see ``accounting.purposes``).
    eval_services: list[str] = Field(default_factory=list)
    #: Steps served by a specialist even without LLM spans at specialist tier (a cross-encoder
    #: over HTTP, a local model).
    specialist_steps: list[str] = Field(default_factory=list)

    # -- OpenTelemetry metrics push ------------------------------------------------------------
    otlp_metrics: bool = False

    @field_validator("model_tiers", "model_prices")
    @classmethod
    def _valid_patterns(cls, value: dict[str, Any], info: Any) -> dict[str, Any]:
        for pattern in value:
            compile_pattern(pattern, field=info.field_name)
        return value

    @field_validator("specialize")
    @classmethod
    def _valid_specialize(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name == UNATTRIBUTED:
                raise ValueError(f"specialize: {UNATTRIBUTED!r} is not a step that can be specialized")
            validate_step_name(name)
        return value

    @field_validator("step_aliases")
    @classmethod
    def _valid_aliases(cls, value: dict[str, str]) -> dict[str, str]:
        bad = {name: target for name, target in value.items() if not is_step_name(target)}
        if bad:
            name, target = next(iter(bad.items()))
            try:
                validate_step_name(target)
            except ValueError as exc:
                raise ValueError(f"step_aliases: {name!r} -> {target!r}: {exc}") from None
        return value

    @field_validator("eval_steps", "specialist_steps")
    @classmethod
    def _valid_step_list(cls, value: list[str], info: Any) -> list[str]:
        for name in value:
            if name in {GENERATE, UNATTRIBUTED}:
                raise ValueError(f"{info.field_name}: {name!r} cannot be listed here")
            validate_step_name(name)
        return value

    @property
    def pattern_thresholds(self) -> PatternThresholds:
        """The pattern classifier's cut points with these settings' values."""
        return PatternThresholds(
            step_latency_p95_seconds=self.step_latency_p95_ms / 1000.0,
            agreement_min=self.agreement_min,
            oracle_stale_seconds=self.oracle_stale_seconds,
            eval_share_max=self.eval_share_max,
            escalation_band=self.escalation_band,
            savings_drop_share=self.savings_drop_share,
        )

    @field_validator("windows")
    @classmethod
    def _valid_windows(cls, value: str) -> str:
        seconds = [parse_duration_seconds(part) for part in value.split(",")]
        if len(set(seconds)) != len(seconds):
            raise ValueError(f"windows: duplicate window in {value!r}")
        return value

    @field_validator("bands")
    @classmethod
    def _valid_bands(cls, value: dict[str, Band]) -> dict[str, Band]:
        merged = _default_bands() | value
        for name, band in merged.items():
            if name not in BANDS:
                raise ValueError(f"bands: unknown signal {name!r}; known: {', '.join(sorted(BANDS))}")
            default = BANDS[name]
            ordered = (
                band.suspect <= band.confirmed if default.higher_is_worse else band.suspect >= band.confirmed
            )
            if not ordered:
                raise ValueError(
                    f"bands.{name}: suspect {band.suspect} and confirmed {band.confirmed} out of order"
                )
        return merged

    @field_validator("metrics_host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        if ":" in value:  # an IPv6 address, or a URL or host:port by mistake
            try:
                ipaddress.IPv6Address(value)
            except ValueError:
                raise ValueError("a ':' makes it an IPv6 address, and it is not one") from None
        elif value and _HOST_NAME.fullmatch(value) is None:
            raise ValueError("not a host name or IPv4 address")
        return value

    @field_validator("metrics_basic_auth_username")
    @classmethod
    def _valid_username(cls, value: str | None) -> str | None:
        if value is not None:
            if not value:
                raise ValueError("empty")
            if ":" in value:
                raise ValueError("holds ':'")
            if not value.isprintable():
                raise ValueError("holds an unprintable character")
        return value

    @field_validator("metrics_basic_auth_password")
    @classmethod
    def _valid_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("the password is empty")
        return value

    @model_validator(mode="after")
    def _valid_endpoint(self) -> Settings:
        for needing in ("metrics_keyfile", "metrics_client_cafile"):
            if getattr(self, needing) is not None and self.metrics_certfile is None:
                raise _CombinationError(
                    (needing,),
                    "{needs} too ({setting}TLS needs the server certificate)",
                    needs="metrics_certfile",
                )
        user, password = self.metrics_basic_auth_username, self.metrics_basic_auth_password
        if (user is None) != (password is None):
            given, missing = (
                ("metrics_basic_auth_username", "metrics_basic_auth_password")
                if password is None
                else ("metrics_basic_auth_password", "metrics_basic_auth_username")
            )
            raise _CombinationError((given,), "{needs} too ({setting}basic auth needs both)", needs=missing)
        last = self.metrics_port + self.metrics_port_range - 1
        if self.metrics_port != 0 and last > 65535:
            raise _CombinationError(
                ("metrics_port", "metrics_port_range"),
                f"ports that end by 65535 (the last would be {last})",
            )
        return self

    @model_validator(mode="after")
    def _complete_tier_prices(self) -> Settings:
        missing = [tier for tier in TIERS if tier not in self.tier_prices]
        if missing:
            defaults = _default_tier_prices()
            object.__setattr__(self, "tier_prices", {**{t: defaults[t] for t in missing}, **self.tier_prices})
        return self

    @property
    def window_seconds(self) -> tuple[int, ...]:
        return tuple(sorted(self.window_labels))

    @property
    def window_labels(self) -> dict[int, str]:
        """Window length in seconds -> its label as written (``"5m"``)."""
        return {parse_duration_seconds(part): part.strip() for part in self.windows.split(",")}

    if not TYPE_CHECKING:  # type checkers keep the signature made from the fields

        def __init__(self, **values: Any) -> None:
            token = _BUILDING.set(_read_config_file(type(self)))
            try:
                super().__init__(**values)
            except ValidationError as exc:
                raise ConfigError(_explain(exc, values, _BUILDING.get())) from None
            except SettingsError as exc:  # a source failed otherwise than by a value
                raise ConfigError(str(exc)) from None
            finally:
                _BUILDING.reset(token)

    @classmethod
    def with_config_file(cls, config_file: str | os.PathLike[str] | None, /, **values: Any) -> Settings:
        """``Settings(**values)``, with ``config_file`` read in place of the file
        ``OVERSPEND_CONFIG`` names (``None``: that one), at the same place in the precedence:
        keyword arguments, then ``OVERSPEND_*`` variables, then the file."""
        token = _GIVEN_FILE.set(None if config_file is None else Path(config_file))
        try:
            return cls(**values)
        finally:
            _GIVEN_FILE.reset(token)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        del env_settings, dotenv_settings, file_secret_settings
        sources: list[PydanticBaseSettingsSource] = [init_settings, _Environment(settings_cls)]
        config_file = _BUILDING.get()
        if config_file is not None:
            sources.append(config_file.source)
        return tuple(sources)


# -- what each setting expects, and the messages of ConfigError ---------------------------------

_BOOL: Final = "true or false"
_PEM: Final = "the path of an existing PEM file"
_PRICE: Final = (
    "{input, output} in USD per 1M tokens (optional: cache_read, cache_write, cache_write_1h in USD "
    "per 1M tokens, per_request, per_search in USD each)"
)
_TARGETS: Final = ", ".join(SPECIALIZE_TARGETS)


def _range(name: str) -> str:
    """The bounds of a number setting as its field declares them: ``1-10000``."""
    low: object = None
    high: object = None
    above = False
    for item in Settings.model_fields[name].metadata:
        if isinstance(item, annotated_types.Ge):
            low = item.ge
        elif isinstance(item, annotated_types.Gt):
            low, above = item.gt, True
        elif isinstance(item, annotated_types.Le):
            high = item.le
    return f"above {low}, at most {high}" if above else f"{low}-{high}"


#: The form each setting takes, as ConfigError's messages name it.
_EXPECTED: Final[dict[str, str]] = {
    "serve_metrics": _BOOL,
    "metrics_host": "a host name or IP address to bind (no scheme, port or brackets)",
    "metrics_port": f"an integer port {_range('metrics_port')} (0: any free port)",
    "metrics_port_range": f"a whole number of ports {_range('metrics_port_range')}",
    "metrics_certfile": _PEM,
    "metrics_keyfile": _PEM,
    "metrics_client_cafile": _PEM,
    "metrics_basic_auth_username": "a user name of printable characters without ':'",
    "metrics_basic_auth_password": "a non-empty password",
    "max_models": f"a whole number {_range('max_models')}",
    "max_steps": f"a whole number {_range('max_steps')}",
    "max_providers": f"a whole number {_range('max_providers')}",
    "model_tiers": f'a map of model pattern to tier ({", ".join(TIERS)}), e.g. {{"ft:gpt-4o*": "mini"}}',
    "model_prices": (
        f'a map of model pattern to price {_PRICE}, e.g. {{"acme-*": {{"input": 0.1, "output": 0.4}}}}'
    ),
    "tier_prices": f"a map of tier ({', '.join(TIERS)}) to price {_PRICE}",
    "use_span_cost": _BOOL,
    "use_genai_prices": _BOOL,
    "step_rules": (
        "a list of rules {step, span_name?, attribute?, equals?, matches?}, each with span_name or "
        'attribute, e.g. [{"step": "rerank", "span_name": "^rerank"}]'
    ),
    "default_step_rules": _BOOL,
    "framework_steps": _BOOL,
    "step_aliases": 'a map of framework name to step name, e.g. {"score_docs": "rerank"}',
    "stamp_spans": _BOOL,
    "specialize": f'a map of step name to tier or unchanged ({_TARGETS}), e.g. {{"rerank": "mini"}}',
    "specialize_default": f"one of {_TARGETS}",
    "windows": "comma-separated durations of whole seconds, e.g. 5m,1h,1d,7d",
    "unattributed": f"one of {', '.join(get_args(UnattributedTreatment))}",
    "bands": f"a map of signal ({', '.join(BANDS)}) to {{suspect, confirmed}} cut points",
    "max_open_requests": f"a whole number {_range('max_open_requests')}",
    "request_timeout_seconds": f"a number of seconds {_range('request_timeout_seconds')}",
    "step_latency_p95_ms": f"a number of milliseconds {_range('step_latency_p95_ms')}",
    "agreement_min": f"a share {_range('agreement_min')}, e.g. 0.95",
    "oracle_stale_seconds": f"a number of seconds {_range('oracle_stale_seconds')} (604800: a week)",
    "eval_share_max": f"a ratio of eval to inference spend {_range('eval_share_max')}, e.g. 0.25",
    "escalation_band": f"a share {_range('escalation_band')}, e.g. 0.1",
    "savings_drop_share": f"a share {_range('savings_drop_share')}, e.g. 0.25",
    "eval_steps": 'a list of step names (not generate or unattributed), e.g. ["eval", "judge"]',
    "specialist_steps": 'a list of step names (not generate or unattributed), e.g. ["rerank"]',
    "eval_services": 'a list of service names, e.g. ["eval-harness"]',
    "otlp_metrics": _BOOL,
}
_HIDDEN_SETTING: Final = "metrics_basic_auth_password"
#: Longer values are cut in messages.
_MAX_SHOWN: Final = 200
_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
#: Where pydantic's location names a dict's key rather than its value.
_KEY: Final = "[key]"


def _shown(field: str, value: Any) -> str:
    if field == _HIDDEN_SETTING and value != "":
        return "'***'"  # never a password, not even a wrong one
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else f"{text[:_MAX_SHOWN]}..."


def _dotted(path: Sequence[str | int]) -> str:
    """A key path as TOML writes it: ``model_prices."gpt-*".input``, ``step_rules[0].step``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            key = part if _BARE_KEY.fullmatch(part) else json.dumps(part)
            text += f".{key}" if text else key
    return text


@dataclass(frozen=True, slots=True)
class _Origin:
    #: ``argument``, ``variable`` or ``file``.
    kind: str
    #: The variable's name (``OVERSPEND_METRICS_PORT``); the setting's otherwise.
    name: str
    #: As given: a variable's text, a file's or an argument's value.
    value: Any
    #: The value as read: a variable's JSON decoded.
    read: Any


class _Origins:
    """Where each setting of one construction came from, in the order of precedence."""

    def __init__(self, kwargs: Mapping[str, Any], config_file: _ConfigFile | None) -> None:
        self._kwargs = kwargs
        self._file = config_file
        self._variables: dict[str, tuple[str, str]] = {}
        for name, text in os.environ.items():
            key = name.lower()
            if key.startswith("overspend_") and (key not in self._variables or name.isupper()):
                self._variables[key] = (name, text)

    def of(self, field: str, path: Sequence[str | int] = ()) -> _Origin | None:
        """The source of ``field`` that holds ``path`` in it (sources merge dicts), else the
        first that sets ``field``."""
        found: list[_Origin] = []
        if field in self._kwargs:
            found.append(_Origin("argument", field, self._kwargs[field], self._kwargs[field]))
        variable = self._variables.get(f"overspend_{field}")
        if variable is not None:
            name, text = variable
            try:
                read = json.loads(text)
            except ValueError:
                read = text
            found.append(_Origin("variable", name, text, read))
        if self._file is not None and field in self._file.source.toml_data:
            value = self._file.source.toml_data[field]
            found.append(_Origin("file", field, value, value))
        for origin in found:
            if len(_walk(origin.read, path)[0]) == len(path):
                return origin
        return found[0] if found else None

    def where(self, field: str, path: Sequence[str | int] = ()) -> tuple[str, int]:
        """Where ``field`` was set, with its value; and how much of ``path`` that names."""
        origin = self.of(field, path)
        if origin is None:
            default = Settings.model_fields[field].get_default(call_default_factory=True)
            return f"{field} (default {_shown(field, default)})", 0
        if origin.kind == "argument":
            return f"Settings({field}={_shown(field, origin.value)})", 0
        if origin.kind == "variable":
            return f"{origin.name}={_shown(field, origin.value)}", 0
        walked, value = _walk(origin.value, path)
        path_text = self._file.path if self._file is not None else "the config file"
        return f"{path_text}: {_dotted([field, *walked])} = {_shown(field, value)}", len(walked)

    def named(self, field: str, like: str) -> str:
        """``field`` named as ``like`` was set: its variable, or the setting."""
        origin = self.of(like)
        return f"OVERSPEND_{field.upper()}" if origin is not None and origin.kind == "variable" else field

    def not_json(self, field: str) -> str | None:
        """Why a variable's text is not JSON, when it should be (a dict or list setting) and is not."""
        origin = self.of(field)
        if origin is None or origin.kind != "variable" or origin.read is not origin.value:
            return None
        if get_origin(Settings.model_fields[field].annotation) not in {dict, list}:
            return None
        try:
            json.loads(origin.value)
        except ValueError as exc:
            return f"not JSON: {exc}"
        return None


def _walk(value: Any, path: Sequence[str | int]) -> tuple[list[str | int], Any]:
    """The longest start of ``path`` found in ``value``, and what it leads to."""
    walked: list[str | int] = []
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]
        else:
            break
        walked.append(part)
    return walked, value


def _explain(exc: ValidationError, kwargs: Mapping[str, Any], config_file: _ConfigFile | None) -> str:
    """One line for ``exc``: per setting, where it came from, its value and the form expected."""
    origins = _Origins(kwargs, config_file)
    lines: dict[str, str] = {}
    for error in exc.errors():
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, _CombinationError):
            lines.setdefault(" ".join(cause.given), _combination(origins, cause))
        elif error["loc"]:
            field = str(error["loc"][0])
            lines.setdefault(field, _field_error(origins, field, error))
        else:
            lines.setdefault("", error["msg"])
    return "; ".join(lines.values())


def _field_error(origins: _Origins, field: str, error: ErrorDetails) -> str:
    path = list(error["loc"][1:])
    is_key = bool(path) and path[-1] == _KEY
    if is_key:
        path.pop()
    where, shown = origins.where(field, path)
    expected = _EXPECTED.get(field)
    if expected is None:  # not a setting
        close = difflib.get_close_matches(field, list(Settings.model_fields), n=1)
        expected = "the name of a setting" + (f" (did you mean {close[0]}?)" if close else "")
    rest = path[shown:]
    label = ("key " if is_key else "at ") + _dotted(rest) if rest else "the key" if is_key else ""
    message = error["msg"].removeprefix("Value error, ")
    detail = origins.not_json(field)
    if detail is None and (path or error["type"] == "value_error"):
        detail = f"{label}: {message}" if label else message
    return f"{where}: expected {expected}" + (f" ({detail})" if detail else "")


def _combination(origins: _Origins, cause: _CombinationError) -> str:
    where = " with ".join(origins.where(field)[0] for field in cause.given)
    needs = "" if cause.needs is None else origins.named(cause.needs, like=cause.given[0])
    setting = "" if needs == cause.needs else f"{cause.needs}: "
    return f"{where}: expected {cause.expected.format(needs=needs, setting=setting)}"
