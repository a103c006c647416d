"""Settings: validated once at start-up, from keyword arguments, ``OVERSPEND_*`` environment
variables and an optional TOML file named by ``OVERSPEND_CONFIG`` (in that precedence).

Every mistake (an unknown tier, a bad regex, a negative price, an unknown step in the
specialization map, a TLS key without its certificate, an unreadable config file) fails
here with a message naming the field and the value; nothing in this module runs on the
span path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from otel_overspend.accounting.signals import UnattributedTreatment  # noqa: TC001 - pydantic reads it at run time
from otel_overspend.base.durations import duration_ms
from otel_overspend.base.patterns import compile_pattern
from otel_overspend.calls.catalog import SPECIALIST, TIERS, UNCHANGED, SpecializeTarget, Tier
from otel_overspend.calls.pricing import DEFAULT_TIER_PRICES, DEFAULT_TIER_SEARCH_PRICES
from otel_overspend.steps import GENERATE, UNATTRIBUTED, is_step_name, validate_step_name
from otel_overspend.thresholds import BANDS

__all__ = ("Price", "Settings", "StepRule", "parse_duration_seconds")

#: No model costs more than this per 1M tokens; a larger price is a typo (and would let one
#: call's cost overflow a float).
MAX_USD_PER_MTOK: Final = 1_000_000.0


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

    @model_validator(mode="after")
    def _valid_endpoint(self) -> Settings:
        if self.metrics_keyfile is not None and self.metrics_certfile is None:
            raise ValueError(
                f"metrics_keyfile {str(self.metrics_keyfile)!r} is set but metrics_certfile is not: "
                "TLS needs the certificate too"
            )
        if self.metrics_client_cafile is not None and self.metrics_certfile is None:
            raise ValueError(
                f"metrics_client_cafile {str(self.metrics_client_cafile)!r} is set but metrics_certfile "
                "is not: client certificates need TLS"
            )
        user, password = self.metrics_basic_auth_username, self.metrics_basic_auth_password
        if (user is None) != (password is None):
            missing = "metrics_basic_auth_password" if password is None else "metrics_basic_auth_username"
            raise ValueError(f"basic auth needs both a username and a password: {missing} is not set")
        if user is not None and (not user or ":" in user or not user.isprintable()):
            raise ValueError(f"metrics_basic_auth_username {user!r}: use printable characters and no ':'")
        if password is not None and not password.get_secret_value():
            raise ValueError("metrics_basic_auth_password is empty")
        last = self.metrics_port + self.metrics_port_range - 1
        if self.metrics_port != 0 and last > 65535:
            raise ValueError(
                f"metrics_port {self.metrics_port} + metrics_port_range {self.metrics_port_range} "
                f"goes past port 65535"
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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        del dotenv_settings, file_secret_settings
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_path = os.environ.get("OVERSPEND_CONFIG")
        if config_path:
            path = Path(config_path)
            if not path.is_file():
                raise ValueError(f"OVERSPEND_CONFIG: no such file {config_path!r}")
            try:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            except (ValueError, OSError) as exc:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
                raise ValueError(f"OVERSPEND_CONFIG: cannot read {config_path!r} as TOML: {exc}") from None
        return tuple(sources)
