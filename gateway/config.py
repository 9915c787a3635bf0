"""Plano-format YAML -> an immutable `Config`.

Loading never stops at the first problem: every error is collected with the YAML path it belongs
to (`routing_preferences[1].models[0]: unknown model ...`), so `junction validate` can list them all.
An unset `$VAR` is not an error: the provider that needs it is marked unavailable and requests
that reach it get an error naming the variable (never its value).
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping
from urllib.parse import urlsplit

import yaml

from models.providers import (
    CATALOG,
    NO_QUIRKS,
    ApiStyle,
    ProviderSpec,
    Quirks,
    custom_spec,
    default_headers_for,
    join_url,
    quirks_for,
    speaks_responses,
)

PLANO_VERSIONS = ("v0.1", "v0.1.0", "0.1-beta", "0.2.0", "v0.3.0", "v0.4.0")
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_PORT = 12000
LOOPBACK = "127.0.0.1"

# Plano keys we accept but do not act on (a warning says so); anything else is a typo.
_PLANO_IGNORED = (
    "agents", "filters", "endpoints", "overrides", "prompt_caching", "system_prompt",
    "prompt_targets", "ratelimits", "mode",
    "prompt_guards", "model_metrics_sources",
)  # fmt: skip
_KNOWN_TOP = (
    "version", "llm_providers", "model_providers", "routing_preferences", "model_aliases",
    "listeners", "gateway_keys", "limits", "streaming", "timeouts", "failover", "shutdown", "routing", "tracing",
    "metrics", "access_log", "state_storage", "state", "ledger",
) + _PLANO_IGNORED  # fmt: skip
_PROVIDER_KEYS = (
    "model", "name", "access_key", "base_url", "headers", "default", "provider_interface",
    "passthrough_auth", "http_host", "routing_preferences", "fallbacks", "anthropic_betas", "pricing",
    "tls_ca_file",
)  # fmt: skip

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


class ConfigError(Exception):
    """One or more problems, each naming the YAML path it concerns."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Pricing:
    """USD per million tokens (the unit providers publish); used for key budgets and
    `selection_policy: {prefer: cheapest}`."""

    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        # Cached input is charged at the full input rate: a budget errs on the safe side.
        return (input_tokens * self.input + output_tokens * self.output) / 1e6

    def nano(self, input_tokens: int, output_tokens: int) -> int:
        """The cost in whole nano-dollars (budgets and the usage ledger keep integers, so sums are exact)."""
        return round(input_tokens * self.input * 1000 + output_tokens * self.output * 1000)


@dataclass(frozen=True)
class Provider:
    name: str  # how the config names it (`name`, else the full model string)
    model: str  # provider/model-id
    prefix: str
    model_id: str
    spec: ProviderSpec
    base_url: str | None
    url: str  # the chat endpoint
    access_key: str | None = field(repr=False)
    headers: tuple[tuple[str, str], ...] = ()
    default: bool = False
    passthrough_auth: bool = False
    missing_env: tuple[str, ...] = ()  # unset variables this provider needs
    wildcard: bool = False
    quirks: Quirks = NO_QUIRKS
    # Which client `anthropic-beta` values reach this (Anthropic-style) upstream: None = all, as
    # native Anthropic needs; a set = only those (third parties reject betas they do not know).
    anthropic_betas: frozenset[str] | None = None
    pricing: Pricing | None = None
    # PEM bundle of the CA(s) trusted for this upstream *instead of* the default store (a private
    # CA). Certificates are always verified: deliberately, there is no option to turn that off.
    tls_ca_file: str | None = None
    native_responses: bool = False  # Responses clients are relayed to its `/responses` (models/providers.py)

    @property
    def api(self) -> ApiStyle:
        return self.spec.api

    @property
    def responses_url(self) -> str:
        """The native Responses endpoint (only called when `native_responses`)."""
        return join_url(self.spec, self.base_url, "", self.model_id, ApiStyle.RESPONSES)

    @property
    def available(self) -> bool:
        return not self.missing_env

    def endpoint_url(self, endpoint: str) -> str:
        return join_url(self.spec, self.base_url, endpoint, self.model_id)

    def for_model_id(self, model_id: str) -> "Provider":
        """A concrete provider for `prefix/<model_id>` served by a `prefix/*` entry."""
        return replace(
            self,
            model=f"{self.prefix}/{model_id}",
            model_id=model_id,
            name=f"{self.prefix}/{model_id}",
            url=join_url(self.spec, self.base_url, "", model_id),
            wildcard=False,
            quirks=quirks_for(self.spec, self.base_url, model_id),
        )


SELECTION_PREFER = ("none", "cheapest", "fastest", "weighted", "least_busy")


@dataclass(frozen=True)
class SelectionPolicy:
    """A route's `selection_policy`: how its models are ordered (gateway/selection.py).
    `weighted` and `least_busy` are Junction extensions of Plano's none/cheapest/fastest."""

    prefer: str = "none"
    weights: tuple[float, ...] = ()  # `weighted` only: one per model of the route, in order


@dataclass(frozen=True)
class RoutingPreference:
    name: str
    description: str
    models: tuple[Provider, ...]
    examples: tuple[str, ...] = ()
    selection_policy: SelectionPolicy = SelectionPolicy()


@dataclass(frozen=True)
class Listener:
    name: str
    address: str
    port: int
    timeout_s: float | None = None


@dataclass(frozen=True)
class GatewayKey:
    name: str
    sha256: bytes = field(repr=False)
    models: frozenset[str] | None = None  # provider/model names this key may reach (None: all)
    rpm: int | None = None  # requests per minute (None: unlimited)
    max_parallel: int | None = None  # requests in flight at once (None: unlimited)
    tpm: int | None = None  # tokens per minute, input + output (None: unlimited)
    budget_usd: float | None = None  # spend limit, priced by the models' `pricing` (None: unlimited)
    budget_window_s: float | None = None  # the budget renews every window (UTC-aligned); None: never
    role: str = "user"  # "admin": may also open the console (/console)

    def allows(self, provider: "Provider") -> bool:
        return self.models is None or provider.model in self.models


@dataclass(frozen=True)
class Timeouts:
    """Upstream timeouts, in seconds. Defaults suit long reasoning streams."""

    connect: float = 10.0  # TCP + TLS to the upstream
    # Reasoning models may think, and DeepSeek may queue, for up to 10 minutes before a byte.
    first_byte: float = 600.0  # request sent -> response headers (and, for streams, the first chunk)
    idle: float = 600.0  # longest silence between two chunks of a stream
    total: float = 3600.0  # the whole request, all attempts included


@dataclass(frozen=True)
class Failover:
    """The retry loop's policy (gateway/upstream.py)."""

    retries: int = 0  # extra tries of the same model on 429/5xx before moving to the next one
    max_retry_after: float = 30.0  # longest Retry-After the gateway waits for instead of moving on
    failures_to_cool: int = 3  # consecutive failures that put a model in cooldown
    cooldown: float = 30.0  # seconds a cooling model is skipped (a 429's Retry-After, if longer)


@dataclass(frozen=True)
class RoutingOptions:
    """The `routing:` section: how the gateway uses the router (`settings` go to the router)."""

    explicit_model_wins: bool = True  # a request naming a configured model or alias is not re-routed
    encoder_model: str | None = None  # a local sentence-transformers folder (default: the packaged model)
    encoder_backend: str = "auto"
    settings: Mapping[str, Any] = field(default_factory=dict)  # router/preferences.py RouterSettings


# routing: keys -> (RouterSettings field, type). Plano's own session keys map onto ours.
_ROUTER_SETTINGS = {
    "use_head": ("use_head", bool), "head": ("head", str), "route_threshold": ("route_threshold", float),
    "map_threshold": ("map_threshold", float), "example_share": ("example_share", float),
    "followup_threshold": ("followup_threshold", float), "switch_probability": ("switch_probability", float),
    "switch_markers": ("switch_markers", bool), "similarity_encoder": ("similarity_encoder", str),
    "similarity_mix": ("similarity_mix", float), "example_weight": ("example_weight", float),
    "threshold": ("threshold", float), "margin": ("margin", float), "sticky": ("sticky", bool),
    "switch_threshold": ("switch_threshold", float), "switch_margin": ("switch_margin", float),
    "switch_lead": ("switch_lead", float), "max_chars": ("max_chars", int),
    "session_ttl_seconds": ("session_ttl_s", float), "session_max_entries": ("session_max_entries", int),
}  # fmt: skip
_ROUTING_PLANO_IGNORED = ("llm_provider", "model", "routing_budget", "route_on_user_only")


@dataclass(frozen=True)
class TracingOptions:
    """The `tracing:` section (Plano's, with Junction's OTLP/HTTP exporter settings)."""

    otlp_endpoint: str | None = None  # e.g. http://127.0.0.1:4318/v1/traces
    console: bool = False  # print spans to stdout (debugging)
    sampling: float = 1.0  # fraction of requests traced (Plano's random_sampling is a percentage)
    service_name: str = "junction"

    @property
    def enabled(self) -> bool:
        return bool(self.otlp_endpoint or self.console)


@dataclass(frozen=True)
class AccessLog:
    """The `access_log:` section. Prompts are never logged unless `prompts: true`, and then not
    for a request that sends `x-junction-no-log: true`."""

    prompts: bool = False
    prompt_max_chars: int = 4000


@dataclass(frozen=True)
class _Shutdown:
    drain: float = 30.0


@dataclass(frozen=True)
class Limits:
    """Request limits: past them a request is refused before it costs anything more."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_header_bytes: int = 32 * 1024  # all request headers together (431 beyond)
    max_messages: int = 10_000  # messages in one request


@dataclass(frozen=True)
class StateStorage:
    """Plano's `state_storage`: where stored Responses (for `previous_response_id`) live."""

    type: str = "memory"
    max_entries: int = 1000
    ttl_s: float = 3600.0


@dataclass(frozen=True)
class SharedState:
    """`state:` where per-key limits live: this process (`memory`) or a Redis shared by every worker and
    replica (`redis`). With Redis unreachable each process admits `local_share` of a limit on its own
    (and says so in `x-junction-state: degraded`) until Redis answers again."""

    backend: str = "memory"
    url: str | None = field(default=None, repr=False)  # may carry a password
    timeout_s: float = 0.1  # one Redis call, at most (three late ones in a row open the breaker)
    retry_s: float = 2.0  # after a failure, Redis is left alone this long (the circuit breaker)
    local_share: float = 0.5  # of each limit, per process, while Redis is unreachable
    prefix: str = "junction"
    # While Redis is unreachable, per feature: "local" (each process decides with its share) or "closed" (the
    # requests the feature governs are refused with 503/529 until Redis answers).
    budget_fail_mode: str = "local"  # spend budgets
    limits_fail_mode: str = "local"  # rpm, tpm, max_parallel


@dataclass(frozen=True)
class LedgerOptions:
    """`ledger:` the usage ledger (gateway/ledger): one row per LLM request and daily rollups, in a
    SQLite file beside the config (the default; every worker on one host may share it) or PostgreSQL
    (replicas on several hosts); `off` keeps none."""

    backend: str = "off"  # sqlite, postgres or off (a config read from a file defaults to sqlite)
    path: str | None = None  # sqlite: the database file
    dsn: str | None = field(default=None, repr=False)  # postgres: may carry a password
    journal: str | None = None  # a folder for usage that could not reach the database
    flush_interval_s: float = 1.0
    max_batch: int = 500
    buffer: int = 100_000  # events held in memory while the database is down, before the journal
    retention_days: float | None = 90.0  # per-request rows; the daily rollups are kept (None: forever)
    pool_size: int = 2  # postgres connections per process

    @property
    def enabled(self) -> bool:
        return self.backend != "off"


_LIMIT_FLOORS = {"max_body_bytes": 1024, "max_header_bytes": 1024, "max_messages": 1}


@dataclass(frozen=True)
class Config:
    version: str
    providers: tuple[Provider, ...]
    refs: Mapping[str, Provider]
    ambiguous: Mapping[str, tuple[str, ...]]
    aliases: Mapping[str, Provider]
    default: Provider | None
    preferences: tuple[RoutingPreference, ...]
    listeners: tuple[Listener, ...]
    gateway_keys: tuple[GatewayKey, ...]
    auth_enabled: bool
    limits: Limits
    gateway_secrets: tuple[str, ...] = field(default=(), repr=False)  # plaintext keys, for redaction only
    ping_interval_s: float = 10.0
    drain_s: float = 30.0  # how long in-flight requests may finish after a stop signal
    routing: RoutingOptions = RoutingOptions()
    tracing: TracingOptions = TracingOptions()
    metrics_require_key: bool = False  # /metrics needs a gateway key (otherwise open, for scrapers)
    access_log: AccessLog = AccessLog()
    timeouts: Timeouts = Timeouts()
    failover: Failover = Failover()
    fallbacks: Mapping[str, tuple[Provider, ...]] = field(default_factory=dict)  # by provider.model
    state_storage: StateStorage = StateStorage()
    state: SharedState = SharedState()
    ledger: LedgerOptions = LedgerOptions()
    warnings: tuple[str, ...] = ()
    source: str = "<memory>"
    digest: str = ""  # sha256 of the file's text this config was read from (reloads compare it)

    def listen_address(self) -> tuple[str, int]:
        """(host, port) of the config's first listener (the loader always gives one)."""
        listener = self.listeners[0] if self.listeners else None
        return (listener.address, listener.port) if listener else (LOOPBACK, DEFAULT_PORT)

    def lookup(self, ref: str) -> Provider | None:
        """A configured provider model by full name, `name`, unique bare id or wildcard prefix."""
        found = self.refs.get(ref)
        if found is not None:
            return found
        prefix, _, model_id = ref.partition("/")
        wildcard = self.refs.get(f"{prefix}/*") if model_id else None
        return wildcard.for_model_id(model_id) if wildcard else None

    @property
    def console_enabled(self) -> bool:
        """The console is on when some gateway key may open it."""
        return any(k.role == "admin" for k in self.gateway_keys)

    def secrets(self) -> tuple[str, ...]:
        """Every configured secret value, for redaction."""
        passwords = [urlsplit(url).password for url in (self.state.url, self.ledger.dsn) if url]  # scheme://:secret@host
        return tuple(p.access_key for p in self.providers if p.access_key) + self.gateway_secrets + \
            tuple(password for password in passwords if password)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Loading


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; raises ConfigError listing every problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read ({exc.strerror})"]) from None
    env = dict(_dotenv(file.parent / ".env"))
    env.update(os.environ if environ is None else environ)
    return replace(parse(text, env, source=str(file)), digest=text_digest(text))


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse(text: str, environ: Mapping[str, str], source: str = "<memory>") -> Config:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError([f"{source}: invalid YAML{where}: {getattr(exc, 'problem', exc)}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping"])
    return _Builder(raw, environ, source).build()


def _dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a `.env` beside the config (the process environment wins)."""
    values: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return values
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def sha256(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


class _Builder:
    """Walks the raw YAML once, collecting problems instead of raising on the first."""

    def __init__(self, raw: dict[str, Any], env: Mapping[str, str], source: str) -> None:
        self.raw = raw
        self.env = env
        self.source = source
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.plain_keys: list[str] = []

    # -- helpers ------------------------------------------------------------------------------
    def error(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def expand(self, value: str) -> tuple[str, list[str]]:
        """Expand `$VAR` / `${VAR}`; returns the value and the names that were unset."""
        missing: list[str] = []

        def sub(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            if name not in self.env or self.env[name] == "":
                missing.append(name)
                return ""
            return self.env[name]

        return _VAR.sub(sub, value), missing

    def typed(self, path: str, value: Any, kind: type | tuple[type, ...], what: str) -> bool:
        if isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)):
            return True
        self.error(path, f"expected {what}, got {type(value).__name__}")
        return False

    def unknown_keys(self, path: str, mapping: dict[str, Any], known: tuple[str, ...]) -> None:
        for key in mapping:
            if key not in known:
                hint = difflib.get_close_matches(str(key), known, n=1)
                tip = f" (did you mean '{hint[0]}'?)" if hint else ""
                self.error(f"{path}{key}" if path else str(key), f"unknown key{tip}")

    # -- sections -----------------------------------------------------------------------------
    def build(self) -> Config:
        raw = self.raw
        self.unknown_keys("", raw, _KNOWN_TOP)
        for key in _PLANO_IGNORED:
            if key in raw:
                self.warnings.append(f"{key}: accepted for Plano compatibility but not used by Junction")
        version = raw.get("version")
        if version is None:
            self.error("version", f"required (one of {', '.join(PLANO_VERSIONS)})")
        elif str(version) not in PLANO_VERSIONS:
            self.warnings.append(f"version: '{version}' is not a known Plano config version")

        providers = self.providers()
        refs, ambiguous = self.index(providers)
        aliases = self.aliases(refs, ambiguous)
        preferences = self.preferences(refs, ambiguous)
        listeners = self.listeners()
        keys, auth_enabled = self.gateway_keys()
        gateway_secrets = tuple(self.plain_keys)
        limits = self.limits()
        ping_interval = self.streaming()
        timeouts = self.durations("timeouts", Timeouts)
        failover = self.failover()
        routing = self.routing()
        tracing = self.tracing()
        metrics_raw = self.raw.get("metrics") or {}
        metrics_require_key = False
        if self.typed("metrics", metrics_raw, dict, "a mapping"):
            self.unknown_keys("metrics.", metrics_raw, ("require_key",))
            metrics_require_key = metrics_raw.get("require_key", False)
            if not self.typed("metrics.require_key", metrics_require_key, bool, "true or false"):
                metrics_require_key = False
        access_log = self.access_log()
        drain = self.durations_of("shutdown", self.raw.get("shutdown") or {}, _Shutdown).get("drain", 30.0)
        fallbacks = self.fallbacks(refs, ambiguous)
        state_storage = self.state_storage()
        state = self.shared_state()
        ledger = self.ledger()
        keys = [self.key_models(i, k, refs, ambiguous) for i, k in enumerate(keys)]
        for i, key in enumerate(keys):
            if key.budget_usd is not None:
                unpriced = [p.model for p in providers if key.allows(p) and p.pricing is None]
                if unpriced:
                    self.error(f"gateway_keys[{i}].budget_usd", "a budget needs pricing: {input, output} on every "
                               f"model the key may use; missing for {', '.join(unpriced)}")  # fmt: skip
        defaults = [p for p in providers if p.default]
        if len(defaults) > 1:
            self.error("llm_providers", "at most one provider may have default: true "
                       f"(found {', '.join(p.model for p in defaults)})")  # fmt: skip
        if auth_enabled:
            for i, p in enumerate(providers):
                if p.passthrough_auth:
                    self.error(f"{self.provider_key}[{i}].passthrough_auth",
                               "cannot be combined with gateway_keys: the client's credential "
                               "would be both the gateway key and the provider key")  # fmt: skip
        if self.problems:
            raise ConfigError(self.problems)
        return Config(
            version=str(version),
            providers=tuple(providers),
            refs=MappingProxyType(refs),
            ambiguous=MappingProxyType(ambiguous),
            aliases=MappingProxyType(aliases),
            default=defaults[0] if defaults else None,
            preferences=tuple(preferences),
            listeners=tuple(listeners),
            gateway_keys=tuple(keys),
            auth_enabled=auth_enabled,
            gateway_secrets=gateway_secrets,
            limits=limits,
            ping_interval_s=ping_interval,
            timeouts=timeouts,
            drain_s=drain,
            routing=routing,
            tracing=tracing,
            metrics_require_key=metrics_require_key,
            access_log=access_log,
            failover=failover,
            fallbacks=MappingProxyType(fallbacks),
            state_storage=state_storage,
            state=state,
            ledger=ledger,
            warnings=tuple(self.warnings),
            source=self.source,
        )

    provider_key = "llm_providers"

    def providers(self) -> list[Provider]:
        raw = self.raw
        if "llm_providers" in raw and "model_providers" in raw:
            self.error("model_providers", "use either llm_providers or model_providers, not both")
        if "model_providers" in raw:
            self.provider_key = "model_providers"
        items = raw.get(self.provider_key)
        if items is None:
            self.error("llm_providers", "required: a list of providers")
            return []
        if not self.typed(self.provider_key, items, list, "a list"):
            return []
        result = []
        for i, item in enumerate(items):
            provider = self.provider(f"{self.provider_key}[{i}]", item)
            if provider is not None:
                result.append(provider)
        return result

    def provider(self, path: str, item: Any) -> Provider | None:
        if not self.typed(path, item, dict, "a mapping"):
            return None
        self.unknown_keys(f"{path}.", item, _PROVIDER_KEYS)
        model = item.get("model")
        if not isinstance(model, str) or "/" not in model or model.startswith("/") or model.endswith("/"):
            self.error(f"{path}.model", f"expected 'provider/model-id', got {model!r}")
            return None
        prefix, _, model_id = model.partition("/")
        missing: list[str] = []
        base_unset: list[str] = []

        base_url = item.get("base_url")
        if base_url is not None:
            if not self.typed(f"{path}.base_url", base_url, str, "a URL string"):
                return None
            base_url, base_unset = self.expand(base_url)
            missing += base_unset
            parts = urlsplit(base_url)
            if not base_unset and (parts.scheme not in ("http", "https") or not parts.netloc):
                self.error(f"{path}.base_url", f"must be an http(s) URL, got {base_url!r}")
                return None
            if not base_unset and _is_metadata_host(parts.hostname or ""):
                self.error(f"{path}.base_url", f"{parts.hostname} is a link-local / cloud metadata address; "
                                               "provider keys must never be sent there")  # fmt: skip
                return None

        spec = self.spec(path, prefix, item.get("provider_interface"), base_url)
        if spec is None:
            return None

        access_key = item.get("access_key")
        if access_key is not None:
            if not self.typed(f"{path}.access_key", access_key, str, "a string"):
                return None
            access_key, unset = self.expand(access_key)
            missing += unset

        headers: dict[str, str] = dict(default_headers_for(base_url or spec.base_url or ""))
        configured = item.get("headers") or {}
        if self.typed(f"{path}.headers", configured, dict, "a mapping of header names to values"):
            for name, value in configured.items():
                value, unset = self.expand(str(value))
                missing += unset
                # A configured header replaces a default of the same name, whatever its case.
                headers = {k: v for k, v in headers.items() if k.lower() != str(name).lower()}
                headers[str(name)] = value

        tls_ca_file, unset = self.tls_ca_file(f"{path}.tls_ca_file", item.get("tls_ca_file"))
        missing += unset

        for var in dict.fromkeys(missing):
            self.warnings.append(f"{path}: environment variable {var} is not set; "
                                 f"'{model}' is unavailable until it is")  # fmt: skip
        flags = {}
        for key in ("default", "passthrough_auth"):
            value = item.get(key, False)
            if self.typed(f"{path}.{key}", value, bool, "true or false"):
                flags[key] = value
        name = item.get("name", model)
        if not isinstance(name, str) or not name:
            self.error(f"{path}.name", "expected a non-empty string")
            name = model
        wildcard = model_id == "*"
        if wildcard and flags.get("default"):
            self.error(f"{path}.default", "a wildcard provider cannot be the default")
        betas = item.get("anthropic_betas")
        if betas is False:
            betas = []
        if betas is not None and not (isinstance(betas, list) and all(isinstance(b, str) for b in betas)):
            self.error(f"{path}.anthropic_betas", "expected a list of beta names (or false to send none)")
            betas = None
        if spec.needs_base_url and not base_url:
            self.error(f"{path}.base_url", f"required for provider '{prefix}'")
            return None
        pricing = self.pricing(f"{path}.pricing", item.get("pricing"))
        return Provider(
            name=name,
            model=model,
            prefix=prefix,
            model_id=model_id,
            spec=spec,
            base_url=base_url,
            url="" if base_unset else join_url(spec, base_url, "", model_id),
            access_key=access_key or None,
            headers=tuple(headers.items()),
            default=flags.get("default", False),
            passthrough_auth=flags.get("passthrough_auth", False),
            missing_env=tuple(dict.fromkeys(missing)),
            wildcard=wildcard,
            quirks=quirks_for(spec, base_url, model_id),
            anthropic_betas=frozenset(betas) if betas is not None else None,
            pricing=pricing,
            tls_ca_file=tls_ca_file,
            native_responses=item.get("provider_interface") == "responses" or speaks_responses(spec, base_url),
        )

    def pricing(self, path: str, raw: Any) -> Pricing | None:
        """`pricing: {input: 0.27, output: 1.10}` in USD per million tokens."""
        if raw is None or not self.typed(path, raw, dict, "a mapping {input, output}"):
            return None
        self.unknown_keys(f"{path}.", raw, ("input", "output"))
        values: dict[str, float] = {}
        for name in ("input", "output"):
            value = raw.get(name)
            if not is_number(value) or value < 0:
                self.error(f"{path}.{name}", f"expected USD per million tokens (a number >= 0), got {value!r}")
                return None
            values[name] = float(value)
        return Pricing(**values)

    def tls_ca_file(self, path: str, raw: Any) -> tuple[str | None, list[str]]:
        """`tls_ca_file:` a readable PEM CA bundle (relative paths from the config's folder), checked
        now so a typo fails at load time rather than on the first request. Returns (path, unset vars)."""
        if raw is None or not self.typed(path, raw, str, "a path to a PEM CA bundle"):
            return None, []
        value, unset = self.expand(raw)
        if unset:
            return None, unset  # the provider is unavailable until the variable is set, like a key
        file = Path(value).expanduser()
        if not file.is_absolute() and Path(self.source).is_file():
            file = Path(self.source).resolve().parent / file
        import ssl  # only needed for this check

        try:
            ssl.create_default_context(cafile=str(file))
        except FileNotFoundError:
            self.error(path, f"file not found: {file}")
        except OSError as exc:  # also ssl.SSLError: a file without any PEM certificate
            reason = "not a PEM CA bundle" if isinstance(exc, ssl.SSLError) else exc.strerror or exc
            self.error(path, f"cannot use {file} as a CA bundle: {reason}")
        else:
            return str(file), []
        return None, []

    def spec(self, path: str, prefix: str, interface: Any, base_url: str | None) -> ProviderSpec | None:
        builtin = CATALOG.get(prefix)
        if interface is None:
            if builtin is not None:
                return builtin
            self.error(f"{path}.provider_interface",
                       f"required for the custom provider prefix '{prefix}' "
                       f"(built-in prefixes: {', '.join(sorted(CATALOG))})")  # fmt: skip
            return None
        # `responses`: an OpenAI-style upstream that also serves the Responses API natively.
        native = interface == "responses"
        like = CATALOG["openai"] if native else CATALOG.get(str(interface))
        if like is None:
            self.error(f"{path}.provider_interface",
                       f"unknown interface {interface!r} (use openai, anthropic, responses or a built-in prefix)")  # fmt: skip
            return None
        if builtin is not None and prefix != "mock" and builtin.api is not like.api:
            self.error(f"{path}.provider_interface",
                       f"'{prefix}' is a built-in provider that speaks {builtin.api.value}; "
                       "provider_interface is for custom prefixes")  # fmt: skip
            return None
        if builtin is not None and prefix != "mock":
            return builtin  # with `responses`, the provider is marked native (`build_provider`)
        if base_url is None:
            self.error(f"{path}.base_url", f"required for the custom provider prefix '{prefix}'")
            return None
        return custom_spec(prefix, like.api, base_url)

    def index(self, providers: list[Provider]) -> tuple[dict[str, Provider], dict[str, tuple[str, ...]]]:
        """Every name a provider may be referenced by; bare ids only when unique."""
        refs: dict[str, Provider] = {}
        for i, p in enumerate(providers):
            for key in dict.fromkeys((p.model, p.name)):
                if key in refs and refs[key] is not p:
                    self.error(f"{self.provider_key}[{i}]", f"'{key}' is already used by another provider")
                refs[key] = p
        by_id: dict[str, list[Provider]] = {}
        for p in providers:
            if not p.wildcard:
                by_id.setdefault(p.model_id, []).append(p)
        ambiguous: dict[str, tuple[str, ...]] = {}
        for model_id, owners in by_id.items():
            if model_id in refs:
                continue
            if len(owners) == 1:
                refs[model_id] = owners[0]
            else:
                ambiguous[model_id] = tuple(p.model for p in owners)
        return refs, ambiguous

    def resolve_ref(self, path: str, ref: Any, refs: Mapping[str, Provider],
                    ambiguous: Mapping[str, tuple[str, ...]]) -> Provider | None:  # fmt: skip
        if not isinstance(ref, str):
            self.error(path, f"expected a model name, got {ref!r}")
            return None
        if ref in refs:
            return refs[ref]
        if ref in ambiguous:
            self.error(path, f"ambiguous model '{ref}' (matches {', '.join(ambiguous[ref])}); "
                             "use the full provider/model name")  # fmt: skip
            return None
        known = sorted(p.model for p in refs.values() if not p.wildcard)
        self.error(path, f"unknown model '{ref}' (known: {', '.join(dict.fromkeys(known))})")
        return None

    def aliases(self, refs: Mapping[str, Provider], ambiguous: Mapping[str, tuple[str, ...]]) -> dict[str, Provider]:
        raw = self.raw.get("model_aliases") or {}
        if not self.typed("model_aliases", raw, dict, "a mapping of alias -> {target: model}"):
            return {}
        targets: dict[str, Any] = {}
        for alias, body in raw.items():
            path = f"model_aliases.{alias}"
            if not isinstance(body, dict) or "target" not in body:
                self.error(path, "expected {target: <model>}")
                continue
            self.unknown_keys(f"{path}.", body, ("target",))
            targets[str(alias)] = body["target"]
            if alias in refs:
                self.warnings.append(f"{path}: shadows the provider model of the same name")
        resolved: dict[str, Provider] = {}
        for alias in targets:
            seen = [alias]
            target = targets[alias]
            while isinstance(target, str) and target in targets and target not in refs:
                if target in seen:
                    self.error(f"model_aliases.{alias}.target",
                               f"alias cycle: {' -> '.join(seen + [target])}")  # fmt: skip
                    break
                seen.append(target)
                target = targets[target]
            else:
                provider = self.resolve_ref(f"model_aliases.{alias}.target", target, refs, ambiguous)
                if provider is not None:
                    resolved[alias] = provider
        return resolved

    def preferences(self, refs: Mapping[str, Provider], ambiguous: Mapping[str, tuple[str, ...]]) -> list[RoutingPreference]:
        raw = self.raw.get("routing_preferences") or []
        if not self.typed("routing_preferences", raw, list, "a list"):
            return []
        result: list[RoutingPreference] = []
        names: set[str] = set()
        for i, item in enumerate(raw):
            path = f"routing_preferences[{i}]"
            if not self.typed(path, item, dict, "a mapping"):
                continue
            self.unknown_keys(f"{path}.", item, ("name", "description", "models", "examples", "selection_policy"))
            name, description = item.get("name"), item.get("description")
            if not isinstance(name, str) or not name:
                self.error(f"{path}.name", "required: a non-empty string")
                continue
            if name in names:
                self.error(f"{path}.name", f"duplicate route name '{name}'")
            names.add(name)
            if not isinstance(description, str) or not description.strip():
                self.error(f"{path}.description", "required: a non-empty string")
                continue
            models = item.get("models")
            if not isinstance(models, list) or not models:
                self.error(f"{path}.models", "required: a non-empty list of models")
                continue
            resolved = [self.resolve_ref(f"{path}.models[{j}]", ref, refs, ambiguous) for j, ref in enumerate(models)]
            examples = item.get("examples") or []
            if not isinstance(examples, list) or not all(isinstance(e, str) for e in examples):
                self.error(f"{path}.examples", "expected a list of strings")
                examples = []
            policy = self.selection_policy(f"{path}.selection_policy", item.get("selection_policy"), resolved)
            if all(resolved):
                result.append(RoutingPreference(name, description.strip(), tuple(resolved), tuple(examples),  # type: ignore[arg-type]
                                                policy))  # fmt: skip
        return result

    def selection_policy(self, path: str, raw: Any, models: list[Provider | None]) -> SelectionPolicy:
        """`selection_policy: {prefer: none|cheapest|fastest|weighted|least_busy, weights: [...]}`."""
        if raw is None or not self.typed(path, raw, dict, "a mapping {prefer, weights}"):
            return SelectionPolicy()
        self.unknown_keys(f"{path}.", raw, ("prefer", "weights"))
        prefer = raw.get("prefer", "none")
        if prefer not in SELECTION_PREFER:
            self.error(f"{path}.prefer", f"unknown value {prefer!r} (expected one of {', '.join(SELECTION_PREFER)})")
            return SelectionPolicy()
        raw_weights = raw.get("weights")
        if prefer != "weighted":
            if raw_weights is not None:
                self.warnings.append(f"{path}.weights: ignored unless prefer is weighted")
            if prefer == "cheapest":
                known = [m for m in models if m is not None]
                unpriced = [m.model for m in known if m.pricing is None]
                if known and len(unpriced) == len(known):
                    self.warnings.append(f"{path}.prefer: cheapest, but no model of this route has `pricing:`; "
                                         "they are tried in configured order")  # fmt: skip
                elif unpriced:
                    self.warnings.append(f"{path}.prefer: cheapest; models without `pricing:` rank last: "
                                         f"{', '.join(unpriced)}")  # fmt: skip
            return SelectionPolicy(prefer)
        if not isinstance(raw_weights, list) or not raw_weights:
            self.error(f"{path}.weights", "required with prefer: weighted: a list of positive numbers, one per model")
            return SelectionPolicy()
        if len(raw_weights) != len(models):
            self.error(f"{path}.weights", f"expected one weight per model of the route ({len(models)}), "
                                          f"got {len(raw_weights)}")  # fmt: skip
            return SelectionPolicy()
        weights: list[float] = []
        for j, weight in enumerate(raw_weights):
            if not is_number(weight) or not 0 < weight < float("inf"):
                self.error(f"{path}.weights[{j}]", f"expected a positive number, got {weight!r}")
                return SelectionPolicy()
            weights.append(float(weight))
        return SelectionPolicy("weighted", tuple(weights))

    def listeners(self) -> list[Listener]:
        raw = self.raw.get("listeners")
        if raw is None:
            return [Listener("default", LOOPBACK, DEFAULT_PORT)]
        if isinstance(raw, dict):  # Plano's legacy object form
            raw = [dict(v, type="model", name=k) for k, v in raw.items() if isinstance(v, dict)]
        if not self.typed("listeners", raw, list, "a list"):
            return []
        result = []
        for i, item in enumerate(raw):
            path = f"listeners[{i}]"
            if not self.typed(path, item, dict, "a mapping"):
                continue
            kind = item.get("type", "model")
            if kind != "model":
                self.warnings.append(f"{path}: listener type '{kind}' is not served by Junction")
                continue
            address = item.get("address", LOOPBACK)
            port = item.get("port", DEFAULT_PORT)
            if not isinstance(address, str) or not address:
                self.error(f"{path}.address", f"expected a host address, got {address!r}")
                continue
            if not is_number(port, whole=True) or not 0 <= port <= 65535:
                self.error(f"{path}.port", f"expected a port number 0-65535, got {port!r}")
                continue
            timeout = item.get("timeout")
            timeout_s = parse_duration(f"{path}.timeout", timeout, self) if timeout is not None else None
            result.append(Listener(str(item.get("name", f"listener{i}")), address, port, timeout_s))
        return result

    def gateway_keys(self) -> tuple[list[GatewayKey], bool]:
        raw = self.raw.get("gateway_keys")
        if raw is None:
            return [], False
        if not self.typed("gateway_keys", raw, list, "a list of keys"):
            return [], True
        keys = []
        for i, item in enumerate(raw):
            path = f"gateway_keys[{i}]"
            if isinstance(item, str):
                item = {"key": item}
            if not self.typed(path, item, dict, "a key string or {name, key | sha256, models}"):
                continue
            self.unknown_keys(f"{path}.", item, ("name", "key", "sha256", "models", "rpm", "max_parallel", "tpm",
                                                 "budget_usd", "budget_window", "role"))  # fmt: skip
            name = str(item.get("name", f"key{i}"))
            role = item.get("role", "user")
            if role not in ("user", "admin"):
                self.error(f"{path}.role", f"expected user or admin, got {role!r}")
                role = "user"
            if ("key" in item) == ("sha256" in item):
                self.error(path, "give exactly one of key or sha256")
                continue
            if "sha256" in item:
                digest = str(item["sha256"]).strip().lower()
                if not re.fullmatch(r"[0-9a-f]{64}", digest):
                    self.error(f"{path}.sha256", "expected 64 hex digits (sha256 of the key)")
                    continue
                value = bytes.fromhex(digest)
            else:
                key, unset = self.expand(str(item["key"]))
                if unset:
                    self.warnings.append(f"{path}: environment variable {unset[0]} is not set; key '{name}' is disabled")
                    continue
                value = sha256(key)
                self.plain_keys.append(key)
            models = item.get("models")
            if models is not None and not (isinstance(models, list) and all(isinstance(m, str) for m in models)):
                self.error(f"{path}.models", "expected a list of model names")
                models = None
            limits = {}
            for field_name in ("rpm", "max_parallel", "tpm"):
                number = item.get(field_name)
                if number is not None and (not is_number(number, whole=True) or number < 1):
                    self.error(f"{path}.{field_name}", f"expected a whole number >= 1, got {number!r}")
                    number = None
                limits[field_name] = number
            budget = item.get("budget_usd")
            if budget is not None and (not is_number(budget) or budget <= 0):
                self.error(f"{path}.budget_usd", f"expected a positive amount of US dollars, got {budget!r}")
                budget = None
            window = item.get("budget_window")
            window_s = parse_duration(f"{path}.budget_window", window, self) if window is not None else None
            if window is not None and budget is None:
                self.error(f"{path}.budget_window", "only meaningful with budget_usd")
            keys.append(GatewayKey(name, value, frozenset(models) if models is not None else None, **limits,
                                   budget_usd=float(budget) if budget is not None else None,
                                   budget_window_s=window_s, role=role))  # fmt: skip
        if not keys:
            self.warnings.append("gateway_keys: no usable key; every request will be refused")
        return keys, True

    def limits(self) -> Limits:
        raw = self.raw.get("limits") or {}
        if not self.typed("limits", raw, dict, "a mapping"):
            return Limits()
        self.unknown_keys("limits.", raw, tuple(f.name for f in fields(Limits)))
        values = {}
        for item in fields(Limits):
            value = raw.get(item.name, item.default)
            floor = _LIMIT_FLOORS[item.name]
            if not is_number(value, whole=True) or value < floor:
                self.error(f"limits.{item.name}", f"expected an integer >= {floor}, got {value!r}")
                continue
            values[item.name] = value
        return Limits(**values)

    def access_log(self) -> AccessLog:
        raw = self.raw.get("access_log") or {}
        if not self.typed("access_log", raw, dict, "a mapping"):
            return AccessLog()
        self.unknown_keys("access_log.", raw, ("prompts", "prompt_max_chars"))
        prompts = raw.get("prompts", False)
        if not self.typed("access_log.prompts", prompts, bool, "true or false"):
            prompts = False
        chars = raw.get("prompt_max_chars", AccessLog.prompt_max_chars)
        if not is_number(chars, whole=True) or chars < 1:
            self.error("access_log.prompt_max_chars", f"expected a whole number >= 1, got {chars!r}")
            chars = AccessLog.prompt_max_chars
        return AccessLog(prompts, chars)

    def tracing(self) -> TracingOptions:
        raw = self.raw.get("tracing") or {}
        if not self.typed("tracing", raw, dict, "a mapping"):
            return TracingOptions()
        plano = ("trace_arch_internal", "opentracing_grpc_endpoint", "span_attributes", "exporters")
        self.unknown_keys("tracing.", raw, ("otlp_endpoint", "console", "random_sampling", "service_name") + plano)
        for key in plano:
            if key in raw:
                self.warnings.append(f"tracing.{key}: not used by Junction (it exports OTLP over HTTP: otlp_endpoint)")
        sampling = raw.get("random_sampling", 100)
        if not is_number(sampling) or not 0 <= sampling <= 100:
            self.error("tracing.random_sampling", f"expected a percentage 0-100, got {sampling!r}")
            sampling = 100
        endpoint = raw.get("otlp_endpoint")
        if endpoint is not None and not (isinstance(endpoint, str) and urlsplit(endpoint).scheme in ("http", "https")):
            self.error("tracing.otlp_endpoint", f"expected an http(s) URL, got {endpoint!r}")
            endpoint = None
        console = raw.get("console", False)
        if not self.typed("tracing.console", console, bool, "true or false"):
            console = False
        return TracingOptions(endpoint, console, sampling / 100, str(raw.get("service_name", "junction")))

    def routing(self) -> RoutingOptions:
        raw = self.raw.get("routing") or {}
        if not self.typed("routing", raw, dict, "a mapping"):
            return RoutingOptions()
        own = ("explicit_model_wins", "encoder_model", "encoder_backend", "session_cache")
        self.unknown_keys("routing.", raw, own + tuple(_ROUTER_SETTINGS) + _ROUTING_PLANO_IGNORED)
        for key in _ROUTING_PLANO_IGNORED:
            if key in raw:
                self.warnings.append(f"routing.{key}: accepted for Plano compatibility but not used by Junction")
        settings: dict[str, Any] = {}
        for key, (name, kind) in _ROUTER_SETTINGS.items():
            if key not in raw:
                continue
            value = raw[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                self.error(f"routing.{key}", f"expected {kind.__name__}, got {value!r}")
                continue
            settings[name] = value
        if settings.get("similarity_encoder", "both") not in ("both", "minilm", "head"):
            self.error("routing.similarity_encoder",
                       f"expected both, minilm or head, got {settings.pop('similarity_encoder')!r}")  # fmt: skip
        if not 0.0 <= settings.get("similarity_mix", 0.0) < 1.0:
            self.error("routing.similarity_mix", f"expected a share from 0 to below 1, got {settings.pop('similarity_mix')!r}")
        if settings.get("example_weight", 0.0) < 0.0:
            self.error("routing.example_weight", f"expected 0 or more, got {settings.pop('example_weight')!r}")
        explicit = raw.get("explicit_model_wins", True)
        if not self.typed("routing.explicit_model_wins", explicit, bool, "true or false"):
            explicit = True
        backend = str(raw.get("encoder_backend", "auto"))
        if backend not in ("auto", "onnx-int8", "onnx", "torch", "torch-int8"):
            self.error("routing.encoder_backend", f"expected auto, onnx-int8, onnx, torch or torch-int8, got {backend!r}")
        model = raw.get("encoder_model")
        return RoutingOptions(explicit, str(model) if model else None, backend, MappingProxyType(settings))

    def durations(self, section: str, kind: type) -> Any:
        """A section of durations (`300s`, `5m`, numbers of seconds) into dataclass `kind`."""
        raw = self.raw.get(section) or {}
        if not self.typed(section, raw, dict, "a mapping"):
            return kind()
        return kind(**self.durations_of(section, raw, kind))

    def failover(self) -> Failover:
        raw = self.raw.get("failover") or {}
        if not self.typed("failover", raw, dict, "a mapping"):
            return Failover()
        raw = dict(raw)
        counts = {k: raw.pop(k) for k in ("retries", "failures_to_cool") if k in raw}
        durations = self.durations_of("failover", raw, Failover)
        for name, value in counts.items():
            if not is_number(value, whole=True) or value < 0:
                self.error(f"failover.{name}", f"expected a whole number >= 0, got {value!r}")
            else:
                durations[name] = value
        return Failover(**durations)

    def durations_of(self, section: str, raw: dict[str, Any], kind: type) -> dict[str, Any]:
        names = tuple(f.name for f in fields(kind))
        self.unknown_keys(f"{section}.", raw, names)
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name not in names:
                continue
            seconds = parse_duration(f"{section}.{name}", value, self)
            if seconds is not None and seconds <= 0:
                self.error(f"{section}.{name}", "expected a positive duration")
            elif seconds is not None:
                values[name] = seconds
        return values

    def fallbacks(self, refs: Mapping[str, Provider], ambiguous: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[Provider, ...]]:
        """Each provider's own `fallbacks:` list, resolved."""
        items = self.raw.get(self.provider_key) or []
        result: dict[str, tuple[Provider, ...]] = {}
        for i, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, dict) or "fallbacks" not in item:
                continue
            path = f"{self.provider_key}[{i}].fallbacks"
            names = item["fallbacks"]
            if not isinstance(names, list):
                self.error(path, "expected a list of models")
                continue
            owner = refs.get(str(item.get("model")))
            resolved = [self.resolve_ref(f"{path}[{j}]", ref, refs, ambiguous) for j, ref in enumerate(names)]
            if owner is not None and all(resolved):
                result[owner.model] = tuple(p for p in resolved if p is not None and p is not owner)
        return result

    def key_models(self, index: int, key: GatewayKey, refs: Mapping[str, Provider],
                   ambiguous: Mapping[str, tuple[str, ...]]) -> GatewayKey:  # fmt: skip
        """Resolve a key's allowed model names to provider/model names."""
        if key.models is None:
            return key
        path = f"gateway_keys[{index}].models"
        resolved = [self.resolve_ref(f"{path}[{j}]", ref, refs, ambiguous) for j, ref in enumerate(sorted(key.models))]
        return replace(key, models=frozenset(p.model for p in resolved if p is not None))

    def state_storage(self) -> StateStorage:
        raw = self.raw.get("state_storage")
        if raw is None or not self.typed("state_storage", raw, dict, "a mapping"):
            return StateStorage()
        self.unknown_keys("state_storage.", raw, ("type", "connection_string", "max_entries", "ttl"))
        kind = raw.get("type", "memory")
        if kind != "memory":
            self.error("state_storage.type", f"only memory is supported so far, got {kind!r}")
        entries = raw.get("max_entries", StateStorage.max_entries)
        if not is_number(entries, whole=True) or entries < 1:
            self.error("state_storage.max_entries", f"expected a positive whole number, got {entries!r}")
            entries = StateStorage.max_entries
        ttl = parse_duration("state_storage.ttl", raw.get("ttl", StateStorage.ttl_s), self)
        if ttl is not None and ttl <= 0:
            self.error("state_storage.ttl", "expected a positive duration")
        if ttl is None or ttl <= 0:
            ttl = StateStorage.ttl_s
        return StateStorage("memory", int(entries), ttl)

    def session_cache(self) -> dict[str, Any] | None:
        """Plano's `routing.session_cache: {type: memory | redis, url}`: as `state: {backend, url}`."""
        routing = self.raw.get("routing")
        raw = routing.get("session_cache") if isinstance(routing, dict) else None
        if raw is None or not self.typed("routing.session_cache", raw, dict, "a mapping"):
            return None
        self.unknown_keys("routing.session_cache.", raw, ("type", "url"))
        kind = raw.get("type", "memory")
        if kind not in ("memory", "redis"):
            self.error("routing.session_cache.type", f"expected memory or redis, got {kind!r}")
            return None
        return {"backend": kind, "url": raw.get("url")} if kind == "redis" else None

    def shared_state(self) -> SharedState:
        raw = self.raw.get("state")
        cache = self.session_cache()
        if raw is None and cache is not None:
            raw = cache  # Plano's session cache in Redis: the shared state, sessions and limits alike
        elif raw is not None and cache is not None:
            self.warnings.append("routing.session_cache: `state:` is set too and decides where sessions live")
        if raw is None or not self.typed("state", raw, dict, "a mapping"):
            return SharedState()
        self.unknown_keys("state.", raw, ("backend", "url", "timeout", "retry_after", "local_share", "prefix",
                                          "budget_fail_mode", "fail_mode"))  # fmt: skip
        backend = raw.get("backend", "memory")
        if backend not in ("memory", "redis"):
            self.error("state.backend", f"expected memory or redis, got {backend!r}")
            return SharedState()
        url = raw.get("url")
        if url is not None:
            if not self.typed("state.url", url, str, "a redis:// URL"):
                url = None
            else:
                url, unset = self.expand(url)
                if unset:
                    self.error("state.url", f"environment variable {', '.join(unset)} is not set")
                elif urlsplit(url).scheme not in ("redis", "rediss", "unix"):
                    self.error("state.url", f"expected a redis://, rediss:// or unix:// URL, got {url!r}")
        if backend == "redis" and not url:
            self.error("state.url", "required with backend: redis")
        timeout = parse_duration("state.timeout", raw.get("timeout", SharedState.timeout_s), self)
        retry = parse_duration("state.retry_after", raw.get("retry_after", SharedState.retry_s), self)
        share = raw.get("local_share", SharedState.local_share)
        if not is_number(share) or not 0 < share <= 1:
            self.error("state.local_share", f"expected a fraction in (0, 1], got {share!r}")
            share = SharedState.local_share
        prefix = raw.get("prefix", SharedState.prefix)
        if not isinstance(prefix, str) or not prefix:
            self.error("state.prefix", "expected a non-empty string")
            prefix = SharedState.prefix
        modes = self.fail_modes(raw)
        return SharedState(backend, url, timeout if timeout and timeout > 0 else SharedState.timeout_s,
                           retry if retry and retry > 0 else SharedState.retry_s, float(share), prefix,
                           modes["budgets"], modes["limits"])  # fmt: skip

    def fail_modes(self, raw: dict[str, Any]) -> dict[str, str]:
        """`state.fail_mode: {limits: local | closed, budgets: local | closed}` (or `closed` for both);
        `budget_fail_mode` is the older spelling of `fail_mode: {budgets: ...}`."""
        modes = {"limits": "local", "budgets": "local"}
        given = raw.get("fail_mode")
        if isinstance(given, str):
            given = dict.fromkeys(modes, given)
        if given is not None and not self.typed("state.fail_mode", given, dict, "a mapping {limits, budgets}"):
            given = None
        values = {f"fail_mode.{k}": v for k, v in (given or {}).items()}
        if "budget_fail_mode" in raw:
            values["budget_fail_mode"] = raw["budget_fail_mode"]
        for path, value in values.items():
            feature = "budgets" if path == "budget_fail_mode" else path.split(".", 1)[1]
            if feature not in modes:
                self.error(f"state.{path}", "unknown feature: expected limits or budgets")
            elif value not in ("local", "closed"):
                self.error(f"state.{path}", f"expected local or closed, got {value!r}")
            else:
                modes[feature] = value
        return modes

    def ledger(self) -> LedgerOptions:
        raw = self.raw.get("ledger")
        from_file = self.source != "<memory>"
        if raw is None:
            raw = {}
        if not self.typed("ledger", raw, dict, "a mapping"):
            return LedgerOptions()
        self.unknown_keys("ledger.", raw, ("backend", "path", "dsn", "journal", "flush_interval", "max_batch", "buffer",
                                           "retention_days", "pool_size"))  # fmt: skip
        backend = raw.get("backend", "sqlite" if from_file or "path" in raw else "off")
        if backend is False:
            backend = "off"  # YAML reads a bare `off` as false
        if backend not in ("sqlite", "postgres", "off"):
            self.error("ledger.backend", f"expected sqlite, postgres or off, got {backend!r}")
            return LedgerOptions()
        # Relative paths are beside the config file.
        here = Path(self.source).parent if from_file else Path.cwd()
        stem = Path(self.source).stem if from_file else "junction"
        path = raw.get("path", f"{stem}.usage.db")
        if not isinstance(path, str) or not path:
            self.error("ledger.path", "expected a file path")
            path = f"{stem}.usage.db"
        journal = raw.get("journal", f"{stem}.usage-journal")
        if not isinstance(journal, str) or not journal:
            self.error("ledger.journal", "expected a folder path")
            journal = f"{stem}.usage-journal"
        dsn = raw.get("dsn")
        if backend == "postgres":
            if not isinstance(dsn, str) or not dsn:
                self.error("ledger.dsn", "required with backend: postgres (postgresql://user:password@host:port/db)")
                dsn = None
            else:
                dsn, unset = self.expand(dsn)
                if unset:
                    self.error("ledger.dsn", f"environment variable {', '.join(unset)} is not set")
                elif urlsplit(dsn).scheme not in ("postgres", "postgresql"):
                    self.error("ledger.dsn", "expected a postgresql:// URL")
        elif dsn is not None:
            self.warnings.append("ledger.dsn is only read with backend: postgres")
        interval = parse_duration("ledger.flush_interval", raw.get("flush_interval", 1.0), self)
        if interval is not None and interval <= 0:
            self.error("ledger.flush_interval", "expected a positive duration")
        whole = {}
        for name in ("max_batch", "buffer", "pool_size"):
            value = raw.get(name, getattr(LedgerOptions, name))
            if not is_number(value, whole=True) or value < 1:
                self.error(f"ledger.{name}", f"expected a positive whole number, got {value!r}")
                value = getattr(LedgerOptions, name)
            whole[name] = value
        retention = raw.get("retention_days", LedgerOptions.retention_days)
        if retention is not None and (not is_number(retention) or retention <= 0):
            self.error("ledger.retention_days", f"expected a positive number of days (or null: keep all), got {retention!r}")
            retention = LedgerOptions.retention_days
        return LedgerOptions(backend, str(here / path), dsn, str(here / journal),
                             interval if interval and interval > 0 else 1.0, retention_days=retention, **whole)  # fmt: skip

    def streaming(self) -> float:
        raw = self.raw.get("streaming") or {}
        if not self.typed("streaming", raw, dict, "a mapping"):
            return 10.0
        self.unknown_keys("streaming.", raw, ("ping_interval",))
        value = parse_duration("streaming.ping_interval", raw.get("ping_interval", 10), self)
        if value is None or value <= 0:
            self.error("streaming.ping_interval", "expected a positive duration")
            return 10.0
        return value


def is_number(value: Any, whole: bool = False) -> bool:
    """An int (or, unless `whole`, a float) from YAML; `true`/`false` are ints to Python, not here."""
    return isinstance(value, int if whole else (int, float)) and not isinstance(value, bool)


def _is_metadata_host(host: str) -> bool:
    """Cloud metadata endpoints (169.254.169.254 and the like) hand out credentials: refusing
    them as upstreams closes the classic SSRF path."""
    if host.lower().rstrip(".") in ("metadata.google.internal", "metadata", "instance-data"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_link_local
    except ValueError:
        return False


def parse_duration(path: str, value: Any, builder: _Builder) -> float | None:
    """`300s`, `5m`, `1500ms`, `24h`, `30d` or a number of seconds."""
    if is_number(value):
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", str(value))
    if not match:
        builder.error(path, f"expected a duration like 300s, got {value!r}")
        return None
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}[match.group(2)]
    return float(match.group(1)) * scale
