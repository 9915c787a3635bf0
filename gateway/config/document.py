"""The config file as written: Plano's format plus Junction's extensions, as pydantic models.

These models check what a file can be checked for on its own (types, ranges, allowed values, keys that belong
together); names of models, `$VAR`s and files are resolved afterwards (gateway/config/resolve.py). Every key has
a description: they are the configuration reference of `junction schema` (schema/plano_config.schema.json).
Unknown keys are refused everywhere except in listeners, whose Plano keys Junction has never checked."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from gateway.config.fields import (
    Duration,
    Expect,
    ModelRef,
    PositiveDuration,
    Text,
    invalid,
    needs,
    whole_number,
)
from gateway.config.runtime import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
    LOOPBACK,
    PLANO_VERSIONS,
    SELECTION_PREFER,
    AccessLog,
    Failover,
    LedgerOptions,
    Limits,
    SharedState,
    StateStorage,
    Timeouts,
)
from models.providers import CATALOG

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"
TITLE = "Junction gateway configuration (Plano format)"
_PLANO_UNUSED = "Plano's; accepted for compatibility, not used by Junction (a warning says so)."


class Section(BaseModel):
    """A mapping of the config: its keys are exactly the fields (a typo is named with a "did you mean"), and a value
    of another type is refused (`"yes"` is not `true`) unless a field's type says how it is read (durations)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, protected_namespaces=())
    # The wording for a key the section does not have (default: `unknown key (did you mean ...?)`).
    unknown_key: ClassVar[str | None] = None


# -- providers ------------------------------------------------------------------------------------


class PricingSection(Section):
    """USD per million tokens, as providers publish them."""

    input: Annotated[float, Field(ge=0), Expect("expected USD per million tokens (a number >= 0), got {value!r}")] = \
        Field(description="USD per million input tokens (cached input is counted at this rate too).")
    output: Annotated[float, Field(ge=0), Expect("expected USD per million tokens (a number >= 0), got {value!r}")] = \
        Field(description="USD per million output tokens.")


def _no_betas(value: Any) -> Any:
    return [] if value is False else value


_INTERFACES = ("openai", "anthropic", "responses", *sorted(CATALOG))


class ProviderEntry(Section):
    """One upstream model (`provider/model-id`), or every model of a provider (`provider/*`)."""

    model: Annotated[str, Field(pattern=r"^[^/]+/(.*[^/])$"), Expect("expected 'provider/model-id', got {value!r}")] = \
        Field(description="`provider/model-id`, e.g. `deepseek/deepseek-v4-pro`; `provider/*` serves any model id "
                          "of that provider. The prefix picks a built-in provider (URL, wire API, auth) unless "
                          "`provider_interface` is given.")  # fmt: skip
    name: Annotated[str, Field(min_length=1), Expect("expected a non-empty string")] | None = \
        Field(None, description="Another name to refer to this model by (default: `model`).")
    access_key: str | None = Field(None, description="The provider key. `$VAR` and `${VAR}` are expanded from the "
                                   "environment (and a `.env` beside the config); while one is unset the model is "
                                   "unavailable.")  # fmt: skip
    base_url: Annotated[str, Expect("expected a URL string, got {kind}")] | None = \
        Field(None, description="Overrides the provider's default URL (http or https; `$VAR` expanded); its path "
                                "replaces the default version prefix. Required for a custom prefix.")  # fmt: skip
    headers: Annotated[dict[str, Text], Expect("expected a mapping of header names to values, got {kind}")] | None = \
        Field(None, description="Extra upstream headers (values may use `$VAR`); one replaces a default header of "
                                "the same name.")  # fmt: skip
    default: bool = Field(False, description="Receives requests for model names the config does not know. At most "
                          "one provider; never a wildcard.")  # fmt: skip
    provider_interface: Annotated[
        Literal[_INTERFACES],  # type: ignore[valid-type]
        Expect("unknown interface {value!r} (use openai, anthropic, responses or a built-in prefix)"),
    ] | None = Field(None, description="The wire API of a custom prefix: `openai`, `anthropic` or a built-in prefix "
                     "(requires `base_url`). `responses`: an OpenAI-style upstream that also serves the Responses "
                     "API, to which Responses clients are relayed natively.")  # fmt: skip
    passthrough_auth: bool = Field(False, description="Forward the client's own credential instead of "
                                   "`access_key`. Not allowed together with `gateway_keys`.")  # fmt: skip
    http_host: Any = Field(None, description=_PLANO_UNUSED)
    routing_preferences: Any = Field(None, description="Plano's per-provider routing preferences; accepted, not "
                                     "used (Junction routes by the top-level `routing_preferences`).")  # fmt: skip
    fallbacks: Annotated[list[ModelRef], Expect("expected a list of models")] | None = \
        Field(None, description="Junction extension: models tried in order when this one fails.")
    anthropic_betas: Annotated[
        list[str],
        Expect("expected a list of beta names (or false to send none)", whole=True),
        BeforeValidator(_no_betas, json_schema_input_type=list[str] | Literal[False]),
    ] | None = Field(None, description="Junction extension, Anthropic-style upstreams: the client `anthropic-beta` "
                     "values this upstream accepts (others are dropped; `false` drops all). Absent: all are "
                     "forwarded.")  # fmt: skip
    pricing: Annotated[PricingSection, Expect("expected a mapping {{input, output}}, got {kind}")] | None = \
        Field(None, description="Junction extension: prices for key budgets and `selection_policy: {prefer: "
                                "cheapest}`.")  # fmt: skip
    tls_ca_file: Annotated[str, Expect("expected a path to a PEM CA bundle, got {kind}")] | None = \
        Field(None, description="Junction extension: a PEM bundle of the CA(s) trusted for this upstream instead "
                                "of the default store. `$VAR` is expanded; a relative path is read beside the "
                                "config. Certificates are always verified.")  # fmt: skip

    @model_validator(mode="after")
    def _wildcard_is_no_default(self) -> ProviderEntry:
        if self.default and self.model.endswith("/*"):
            raise invalid("a wildcard provider cannot be the default", at=("default",))
        return self


# -- aliases and routes ---------------------------------------------------------------------------


class AliasEntry(Section):
    """Another name for a model."""

    target: ModelRef = Field(description="The model (or another alias) this alias stands for.")

    @model_validator(mode="before")
    @classmethod
    def _has_target(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "target" not in data:
            raise invalid("expected {target: <model>}")
        return data


class SelectionPolicySection(Section):
    """How a route's models are ordered: the first serves, the others are its failover chain."""

    prefer: Annotated[
        Literal[SELECTION_PREFER],  # type: ignore[valid-type]
        Expect(f"unknown value {{value!r}} (expected one of {', '.join(SELECTION_PREFER)})"),
    ] = Field("none", description="`none` (configured order), `cheapest` (by `pricing`), `fastest` (recent "
              "latency), `weighted` (random by `weights`) or `least_busy` (fewest requests in flight).")  # fmt: skip
    weights: Annotated[
        list[Annotated[float, Field(gt=0, allow_inf_nan=False), Expect("expected a positive number, got {value!r}")]],
        Expect("required with prefer: weighted: a list of positive numbers, one per model"),
    ] | None = Field(None, description="With `prefer: weighted`: one positive weight per model of the route, in "
                     "order.")  # fmt: skip

    _weights_for_weighted = needs("weights", when=("prefer", "weighted"),
                                  message="required with prefer: weighted: a list of positive numbers, one per model")


class RouteEntry(Section):
    """A routing preference: requests that match its description are served by its models."""

    name: Annotated[str, Field(min_length=1), Expect("required: a non-empty string")] = \
        Field(description="The route's name (unique).")
    description: Annotated[str, Field(pattern=r"\S"), Expect("required: a non-empty string")] = \
        Field(description="What requests this route serves, in plain words; the router matches requests to it.")
    models: Annotated[list[ModelRef], Field(min_length=1), Expect("required: a non-empty list of models")] = \
        Field(description="The models serving this route, in order; every one must name a configured model.")
    examples: Annotated[list[str], Expect("expected a list of strings", whole=True)] | None = \
        Field(None, description="Junction extension: example requests of this route, which sharpen the router.")
    selection_policy: Annotated[SelectionPolicySection, Expect("expected a mapping {{prefer, weights}}, got {kind}")] \
        | None = Field(None, description="How the route's models are ordered (default: as configured).")

    @model_validator(mode="after")
    def _one_weight_per_model(self) -> RouteEntry:
        weights = self.selection_policy.weights if self.selection_policy else None
        if self.selection_policy and self.selection_policy.prefer == "weighted" and weights is not None \
                and len(weights) != len(self.models):  # fmt: skip
            raise invalid(f"expected one weight per model of the route ({len(self.models)}), got {len(weights)}",
                          at=("selection_policy", "weights"))  # fmt: skip
        return self


# -- listeners and keys ---------------------------------------------------------------------------


class ListenerEntry(Section):
    """Where the gateway listens. Other Plano listener keys are accepted and not used."""

    model_config = ConfigDict(extra="allow")

    type: Text = Field("model", description="Only `model` listeners are served by Junction; others are skipped "
                       "with a warning.")  # fmt: skip
    name: Text | None = Field(None, description="The listener's name (default `listener<N>`).")
    address: Annotated[str, Field(min_length=1), Expect("expected a host address, got {value!r}")] = \
        Field(LOOPBACK, description="The address to bind (`0.0.0.0` for every interface).")
    port: Annotated[int, Field(ge=0, le=65535), Expect("expected a port number 0-65535, got {value!r}")] = \
        Field(DEFAULT_PORT, description="The port to bind.")
    timeout: Duration | None = Field(None, description="Plano's listener timeout (`30s`, `5m`, seconds).")


def _listener_list(value: Any) -> Any:
    """Plano's legacy form: a mapping of listener name -> settings."""
    if isinstance(value, dict):
        return [dict(v, type="model", name=k) for k, v in value.items() if isinstance(v, dict)]
    return value


class GatewayKeyEntry(Section):
    """A client key of the gateway, with what it may do."""

    name: Text | None = Field(None, description="How logs, metrics and the console name the key (default "
                              "`key<N>`).")  # fmt: skip
    key: Text | None = Field(None, description="The key itself (`$VAR` expanded; unset: the key is disabled). "
                             "Give exactly one of `key` and `sha256`.")  # fmt: skip
    sha256: Annotated[
        str, Field(pattern=r"^\s*[0-9a-fA-F]{64}\s*$"), Expect("expected 64 hex digits (sha256 of the key)"),
    ] | None = Field(None, description="The SHA-256 of the key, in hex, so the config holds no secret.")
    models: Annotated[list[str], Expect("expected a list of model names", whole=True)] | None = \
        Field(None, description="The only models this key may reach (default: all).")
    rpm: whole_number(1, "a whole number >= 1") | None = Field(None, description="Requests per minute.")
    max_parallel: whole_number(1, "a whole number >= 1") | None = Field(None, description="Requests in flight at once.")
    tpm: whole_number(1, "a whole number >= 1") | None = Field(None, description="Tokens per minute (input + output).")
    budget_usd: Annotated[float, Field(gt=0), Expect("expected a positive amount of US dollars, got {value!r}")] \
        | None = Field(None, description="Spend limit in USD, priced by the models' `pricing` (every model the "
                       "key may use needs one).")  # fmt: skip
    budget_window: Duration | None = Field(None, description="The budget renews every window, aligned to UTC "
                                           "(`24h`, `30d`); absent: never.")  # fmt: skip
    role: Literal["user", "admin"] = Field("user", description="`admin` may also open the console (`/console`).")

    @model_validator(mode="before")
    @classmethod
    def _one_secret(cls, data: Any) -> Any:
        # Before the fields: with both or neither, what either says does not matter yet.
        if isinstance(data, dict) and ("key" in data) == ("sha256" in data):
            raise invalid("give exactly one of key or sha256")
        return data

    @model_validator(mode="after")
    def _budget_for_window(self) -> GatewayKeyEntry:
        if self.budget_window is not None and self.budget_usd is None:
            raise invalid("only meaningful with budget_usd", at=("budget_window",))
        return self


def _key_entry(value: Any) -> Any:
    return {"key": value} if isinstance(value, str) else value


GatewayKeyItem = Annotated[
    GatewayKeyEntry,
    Expect("expected a key string or {{name, key | sha256, models}}, got {kind}"),
    BeforeValidator(_key_entry, json_schema_input_type=str | GatewayKeyEntry),
]


# -- gateway behaviour ----------------------------------------------------------------------------


class LimitsSection(Section):
    """Request limits: past them a request is refused before it costs anything more."""

    max_body_bytes: whole_number(1024, "an integer >= 1024") = \
        Field(DEFAULT_MAX_BODY_BYTES, description="Largest request body accepted, in bytes (413 beyond).")
    max_header_bytes: whole_number(1024, "an integer >= 1024") = \
        Field(Limits.max_header_bytes, description="All request headers together, in bytes (431 beyond).")
    max_messages: whole_number(1, "an integer >= 1") = \
        Field(Limits.max_messages, description="Messages in one request (413 beyond).")


class StreamingSection(Section):
    """Streams to clients."""

    ping_interval: PositiveDuration = Field(10.0, description="Longest silence on a stream before a ping is sent.")


class TimeoutsSection(Section):
    """Upstream timeouts (`300s`, `5m`, seconds); the defaults suit long reasoning streams."""

    connect: PositiveDuration = Field(Timeouts.connect, description="TCP and TLS to the upstream.")
    first_byte: PositiveDuration = Field(Timeouts.first_byte, description="Request sent -> response headers (and, "
                                         "for streams, the first chunk).")  # fmt: skip
    idle: PositiveDuration = Field(Timeouts.idle, description="Longest silence between two chunks of a stream.")
    total: PositiveDuration = Field(Timeouts.total, description="The whole request, all attempts included.")


class FailoverSection(Section):
    """Retries, fallbacks and cooldowns."""

    retries: whole_number(0, "a whole number >= 0") = \
        Field(Failover.retries, description="Extra tries of the same model on 429/5xx before the next one.")
    max_retry_after: PositiveDuration = Field(Failover.max_retry_after, description="Longest Retry-After waited "
                                              "for; a longer one moves on to the next model.")  # fmt: skip
    failures_to_cool: whole_number(0, "a whole number >= 0") = \
        Field(Failover.failures_to_cool, description="Consecutive failures that put a model in cooldown.")
    cooldown: PositiveDuration = Field(Failover.cooldown, description="How long a cooling model is skipped (or a "
                                       "429's Retry-After, if longer).")  # fmt: skip


class ShutdownSection(Section):
    """Stopping."""

    drain: PositiveDuration = Field(30.0, description="How long in-flight requests may finish after a stop signal.")


def _float(value: Any) -> Any:
    """Router settings are floats; `1` is written for `1.0`."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


FloatSetting = Annotated[float, Expect("expected float, got {value!r}"), BeforeValidator(_float)]
IntSetting = Annotated[int, Expect("expected int, got {value!r}")]
BoolSetting = Annotated[bool, Expect("expected bool, got {value!r}")]
StrSetting = Annotated[str, Expect("expected str, got {value!r}")]


class SessionCacheSection(Section):
    """Plano's session cache; in Redis it is Junction's shared state (`state: {backend: redis, url}`)."""

    type: Literal["memory", "redis"] = Field("memory", description="`memory` (each process) or `redis`.")
    url: str | None = Field(None, description="With `type: redis`: the Redis URL.")


class RoutingSection(Section):
    """How the gateway uses the router, and the router's settings (all optional)."""

    explicit_model_wins: bool = Field(True, description="A request naming a configured model or alias is not "
                                      "re-routed.")  # fmt: skip
    encoder_model: str | None = Field(None, description="A local sentence-transformers folder replacing the "
                                      "packaged encoder; routes by similarity only.")  # fmt: skip
    encoder_backend: Literal["auto", "onnx-int8", "onnx", "torch", "torch-int8"] = \
        Field("auto", description="How the encoder runs.")
    session_cache: SessionCacheSection | None = Field(None, description="Plano's session cache (see `state`).")
    use_head: BoolSetting | None = Field(None, description="false: route by description similarity only.")
    head: StrSetting | None = Field(None, description="The task-class head to use.")
    route_threshold: FloatSetting | None = Field(None, description="Probability the best route needs.")
    map_threshold: FloatSetting | None = Field(None, description="Description <-> task-class affinity for a route "
                                               "to claim a class.")  # fmt: skip
    example_share: FloatSetting | None = Field(None, description="Share of a route's examples falling in a task "
                                                 "class for the route to claim it.")
    followup_threshold: FloatSetting | None = Field(None, description="Follow-up probability that keeps the "
                                                    "session's route.")  # fmt: skip
    switch_probability: FloatSetting | None = Field(None, description="Probability a new verdict needs to leave the "
                                                    "session's route.")  # fmt: skip
    switch_markers: BoolSetting | None = Field(None, description="Explicit topic switches decide the rest of the "
                                               "turn afresh.")  # fmt: skip
    similarity_encoder: Literal["both", "minilm", "head"] | None = \
        Field(None, description="For configs with a route outside the taxonomy: both (MiniLM + USE), minilm, head.")
    similarity_mix: Annotated[
        float, Field(ge=0, lt=1),
        Expect("expected float, got {value!r}", bound="expected a share from 0 to below 1, got {value!r}"),
        BeforeValidator(_float),
    ] | None = Field(None, description="USE's share of the cosine with `similarity_encoder: both`.")  # fmt: skip
    example_weight: Annotated[
        float, Field(ge=0), Expect("expected float, got {value!r}", bound="expected 0 or more, got {value!r}"),
        BeforeValidator(_float),
    ] | None = Field(None, description="Weight of the classifier fitted on routes' examples (0: off).")
    threshold: FloatSetting | None = Field(None, description="Similarity routes: minimum score.")
    margin: FloatSetting | None = Field(None, description="Similarity routes: lead over the runner-up.")
    sticky: BoolSetting | None = Field(None, description="Keep a session on its route.")
    switch_threshold: FloatSetting | None = Field(None, description="Similarity routes: score to switch route.")
    switch_margin: FloatSetting | None = Field(None, description="Similarity routes: margin to switch route.")
    switch_lead: FloatSetting | None = Field(None, description="Similarity routes: lead to switch route.")
    max_chars: IntSetting | None = Field(None, description="Characters of a request the router reads.")
    session_ttl_seconds: FloatSetting | None = Field(None, description="Plano's name: how long a session's route is "
                                                     "remembered, in seconds.")  # fmt: skip
    session_max_entries: IntSetting | None = Field(None, description="Sessions remembered at most.")
    llm_provider: Any = Field(None, description=_PLANO_UNUSED)
    model: Any = Field(None, description=_PLANO_UNUSED)
    routing_budget: Any = Field(None, description=_PLANO_UNUSED)
    route_on_user_only: Any = Field(None, description=_PLANO_UNUSED)

    PLANO_UNUSED: ClassVar[tuple[str, ...]] = ("llm_provider", "model", "routing_budget", "route_on_user_only")
    GATEWAY_OWN: ClassVar[tuple[str, ...]] = ("explicit_model_wins", "encoder_model", "encoder_backend", "session_cache")
    RENAMED: ClassVar[dict[str, str]] = {"session_ttl_seconds": "session_ttl_s"}  # Plano's name -> the router's

    @classmethod
    def router_keys(cls) -> dict[str, str]:
        """Every other key goes to the router (router/preferences.py RouterSettings), under its name there."""
        return {key: cls.RENAMED.get(key, key) for key in cls.model_fields
                if key not in cls.GATEWAY_OWN + cls.PLANO_UNUSED}  # fmt: skip


class TracingSection(Section):
    """OpenTelemetry traces, exported over OTLP/HTTP."""

    otlp_endpoint: Annotated[
        str, Field(pattern=r"^[hH][tT][tT][pP][sS]?:"), Expect("expected an http(s) URL, got {value!r}"),
    ] | None = Field(None, description="The OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`.")
    console: bool = Field(False, description="Also print spans to stdout (debugging).")
    random_sampling: Annotated[float, Field(ge=0, le=100), Expect("expected a percentage 0-100, got {value!r}")] = \
        Field(100, description="Percent of requests traced (Plano's key).")
    service_name: Text = Field("junction", description="The service name on the spans.")
    trace_arch_internal: Any = Field(None, description=_PLANO_UNUSED)
    opentracing_grpc_endpoint: Any = Field(None, description=_PLANO_UNUSED)
    span_attributes: Any = Field(None, description=_PLANO_UNUSED)
    exporters: Any = Field(None, description=_PLANO_UNUSED)

    PLANO_UNUSED: ClassVar[tuple[str, ...]] = ("trace_arch_internal", "opentracing_grpc_endpoint", "span_attributes",
                                               "exporters")  # fmt: skip


class MetricsSection(Section):
    """The Prometheus endpoint, /metrics."""

    require_key: bool = Field(False, description="/metrics needs a gateway key (otherwise open, for scrapers).")


class AccessLogSection(Section):
    """The access log. Prompts are never logged unless `prompts: true`, and then not for a request that sends
    `x-junction-no-log: true`."""

    prompts: bool = Field(False, description="Add the system prompt and the last messages, as JSON, to each line.")
    prompt_max_chars: whole_number(1, "a whole number >= 1") = \
        Field(AccessLog.prompt_max_chars, description="Logged prompts are cut there.")


# -- state ----------------------------------------------------------------------------------------


class StateStorageSection(Section):
    """Plano's `state_storage`: where stored Responses (for `previous_response_id`) live."""

    type: Annotated[Literal["memory"], Expect("only memory is supported so far, got {value!r}")] = \
        Field("memory", description="`memory` (PostgreSQL is not supported yet).")
    connection_string: Any = Field(None, description="Plano's, for a database store; not used with `memory`.")
    max_entries: whole_number(1, "a positive whole number") = \
        Field(StateStorage.max_entries, description="Stored responses kept at most (least recently used out).")
    ttl: PositiveDuration = Field(StateStorage.ttl_s, description="How long a stored response is kept.")


FailMode = Literal["local", "closed"]


class FailModesSection(Section):
    """Per feature, while Redis is unreachable: `local` (each process decides with its share) or `closed` (the
    requests the feature governs are refused with 503/529)."""

    unknown_key: ClassVar[str | None] = "unknown feature: expected limits or budgets"

    limits: FailMode = Field("local", description="rpm, tpm and max_parallel.")
    budgets: FailMode = Field("local", description="Spend budgets.")


def _both_features(value: Any) -> Any:
    return {"limits": value, "budgets": value} if isinstance(value, str) else value


class StateSection(Section):
    """Where per-key limits live: this process (`memory`) or a Redis shared by every worker and replica."""

    backend: Literal["memory", "redis"] = Field("memory", description="`memory` or `redis`.")
    url: Annotated[str, Expect("expected a redis:// URL, got {kind}")] | None = \
        Field(None, description="With `backend: redis`: a redis://, rediss:// or unix:// URL (`$VAR` expanded; "
                                "the password is redacted like any secret).")  # fmt: skip
    timeout: Duration = Field(SharedState.timeout_s, description="One Redis call at most.")
    retry_after: Duration = Field(SharedState.retry_s, description="After a failure, Redis is left alone this long.")
    local_share: Annotated[float, Field(gt=0, le=1), Expect("expected a fraction in (0, 1], got {value!r}")] = \
        Field(SharedState.local_share, description="Of each limit, per process, while Redis is unreachable.")
    prefix: Annotated[str, Field(min_length=1), Expect("expected a non-empty string")] = \
        Field(SharedState.prefix, description="Of every Redis key.")
    budget_fail_mode: FailMode | None = Field(None, description="The older spelling of `fail_mode: {budgets: ...}`.")
    fail_mode: Annotated[
        FailModesSection,
        Expect("expected a mapping {{limits, budgets}}, got {kind}"),
        BeforeValidator(_both_features, json_schema_input_type=FailMode | FailModesSection),
    ] | None = Field(None, description="While Redis is unreachable: `local` or `closed`, for both features or "
                     "`{limits, budgets}`.")  # fmt: skip

    _url_for_redis = needs("url", when=("backend", "redis"), message="required with backend: redis")


def _off(value: Any) -> Any:
    return "off" if value is False else value  # YAML reads a bare `off` as false


LedgerBackend = Literal["sqlite", "postgres", "off"]


class LedgerSection(Section):
    """The usage ledger: one row per LLM request and daily rollups."""

    backend: Annotated[LedgerBackend, BeforeValidator(_off, json_schema_input_type=LedgerBackend | Literal[False])] \
        | None = Field(None, description="`sqlite` (the default for a config file, beside it), `postgres` (replicas "
                       "on several hosts) or `off`.")  # fmt: skip
    path: Annotated[str, Field(min_length=1), Expect("expected a file path")] | None = \
        Field(None, description="sqlite: the database file (relative: beside the config; default "
                                "`<config>.usage.db`).")  # fmt: skip
    dsn: str | None = Field(None, description="postgres: `postgresql://user:password@host:port/db` (`$VAR` "
                            "expanded; the password is redacted).")  # fmt: skip
    journal: Annotated[str, Field(min_length=1), Expect("expected a folder path")] | None = \
        Field(None, description="A folder for usage the database could not take (default `<config>.usage-journal`).")
    flush_interval: PositiveDuration = Field(LedgerOptions.flush_interval_s, description="How often buffered rows "
                                             "are written.")  # fmt: skip
    max_batch: whole_number(1, "a positive whole number") = \
        Field(LedgerOptions.max_batch, description="Rows per transaction.")
    buffer: whole_number(1, "a positive whole number") = \
        Field(LedgerOptions.buffer, description="Rows held in memory while the database is down, then journaled.")
    retention_days: Annotated[
        float, Field(gt=0), Expect("expected a positive number of days (or null: keep all), got {value!r}"),
    ] | None = Field(LedgerOptions.retention_days, description="Per-request rows are kept this many days (the "
                     "daily rollups stay); null keeps all.")  # fmt: skip
    pool_size: whole_number(1, "a positive whole number") = \
        Field(LedgerOptions.pool_size, description="postgres connections per process.")

    _dsn_for_postgres = needs("dsn", when=("backend", "postgres"),
                              message="required with backend: postgres (postgresql://user:password@host:port/db)")


# -- the whole file -------------------------------------------------------------------------------


class PlanoConfig(Section):
    """A Junction gateway config: Plano's config format, with Junction's extensions."""

    model_config = ConfigDict(
        title=TITLE,
        # Exactly one of the two spellings of the provider list.
        json_schema_extra={"oneOf": [{"required": ["llm_providers"]}, {"required": ["model_providers"]}]},
    )

    version: Annotated[Text, Expect(missing=f"required (one of {', '.join(PLANO_VERSIONS)})")] = \
        Field(description=f"The Plano config version: {', '.join(PLANO_VERSIONS)}.")
    llm_providers: list[ProviderEntry] | None = Field(None, description="The provider models.")
    model_providers: list[ProviderEntry] | None = Field(None, description="Plano's newer name for "
                                                        "`llm_providers` (give one of the two).")  # fmt: skip
    routing_preferences: list[RouteEntry] | None = Field(None, description="Routes: which models serve which "
                                                         "kind of request.")  # fmt: skip
    model_aliases: Annotated[
        dict[str, AliasEntry], Expect("expected a mapping of alias -> {{target: model}}, got {kind}"),
    ] | None = Field(None, description="`{alias: {target: model}}`; a target may be another alias (cycles are "
                     "errors).")  # fmt: skip
    listeners: Annotated[
        list[ListenerEntry],
        BeforeValidator(_listener_list, json_schema_input_type=list[ListenerEntry] | dict[str, ListenerEntry]),
    ] | None = Field(None, description="Where the gateway listens; the first `model` listener is where `serve` "
                     "binds (default 127.0.0.1:12000). Plano's legacy mapping form is accepted.")  # fmt: skip
    gateway_keys: Annotated[list[GatewayKeyItem], Expect("expected a list of keys, got {kind}")] | None = \
        Field(None, description="Junction extension: the client keys; with any, every request needs one.")
    limits: LimitsSection | None = Field(None, description="Junction extension: request limits.")
    streaming: StreamingSection | None = Field(None, description="Junction extension: streams to clients.")
    timeouts: TimeoutsSection | None = Field(None, description="Junction extension: upstream timeouts.")
    failover: FailoverSection | None = Field(None, description="Junction extension: retries and cooldowns.")
    shutdown: ShutdownSection | None = Field(None, description="Junction extension: stopping.")
    routing: RoutingSection | None = Field(None, description="The router's settings.")
    tracing: TracingSection | None = Field(None, description="OpenTelemetry traces.")
    metrics: MetricsSection | None = Field(None, description="Junction extension: the /metrics endpoint.")
    access_log: AccessLogSection | None = Field(None, description="Junction extension: the access log.")
    state_storage: StateStorageSection | None = Field(None, description="Where stored Responses live.")
    state: StateSection | None = Field(None, description="Junction extension: where per-key limits live.")
    ledger: LedgerSection | None = Field(None, description="Junction extension: the usage ledger.")
    agents: Any = Field(None, description=_PLANO_UNUSED)
    filters: Any = Field(None, description=_PLANO_UNUSED)
    endpoints: Any = Field(None, description=_PLANO_UNUSED)
    overrides: Any = Field(None, description=_PLANO_UNUSED)
    prompt_caching: Any = Field(None, description=_PLANO_UNUSED)
    system_prompt: Any = Field(None, description=_PLANO_UNUSED)
    prompt_targets: Any = Field(None, description=_PLANO_UNUSED)
    ratelimits: Any = Field(None, description=_PLANO_UNUSED)
    mode: Any = Field(None, description=_PLANO_UNUSED)
    prompt_guards: Any = Field(None, description=_PLANO_UNUSED)
    model_metrics_sources: Any = Field(None, description=_PLANO_UNUSED)

    PLANO_UNUSED: ClassVar[tuple[str, ...]] = (
        "agents", "filters", "endpoints", "overrides", "prompt_caching", "system_prompt", "prompt_targets",
        "ratelimits", "mode", "prompt_guards", "model_metrics_sources",
    )  # fmt: skip

    @model_validator(mode="after")
    def _one_provider_list(self) -> PlanoConfig:
        given = self.model_fields_set
        if "llm_providers" in given and "model_providers" in given:
            raise invalid("use either llm_providers or model_providers, not both", at=("model_providers",))
        if self.llm_providers is None and self.model_providers is None:
            raise invalid("required: a list of providers", at=("llm_providers",))
        return self

    @property
    def provider_key(self) -> str:
        return "model_providers" if self.model_providers is not None else "llm_providers"

    @property
    def providers(self) -> list[ProviderEntry]:
        return self.model_providers if self.model_providers is not None else self.llm_providers or []


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a config file, as users write it."""
    return {"$schema": SCHEMA_URI, **PlanoConfig.model_json_schema()}
