"""What the gateway runs on: the immutable `Config` and its parts, built from a checked config document
(gateway/config/resolve.py). Every class here is frozen: a reload builds a new `Config`, never edits one."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, Mapping
from urllib.parse import urlsplit

from models.providers import NO_QUIRKS, ApiStyle, ProviderSpec, Quirks, join_url, quirks_for

PLANO_VERSIONS = ("v0.1", "v0.1.0", "0.1-beta", "0.2.0", "v0.3.0", "v0.4.0")
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_PORT = 12000
LOOPBACK = "127.0.0.1"

__all__ = [
    "DEFAULT_MAX_BODY_BYTES", "DEFAULT_PORT", "LOOPBACK", "PLANO_VERSIONS", "SELECTION_PREFER", "AccessLog",
    "Config", "Failover", "GatewayKey", "LedgerOptions", "Limits", "Listener", "Pricing", "Provider",
    "RoutingOptions", "RoutingPreference", "SelectionPolicy", "SharedState", "StateStorage", "Timeouts",
    "TracingOptions", "sha256",
]  # fmt: skip


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


def sha256(value: str) -> bytes:
    """The digest a gateway key is kept and compared as."""
    return hashlib.sha256(value.encode("utf-8")).digest()
