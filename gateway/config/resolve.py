"""A checked config document -> the runtime `Config`: `$VAR`s expanded, upstream URLs and CA files checked,
model names resolved (full names, `name`, unique bare ids, aliases with their chains and cycles, routes,
fallbacks, key models), and the checks that span sections (one default, budgets need pricing, no pass-through
credentials together with gateway keys)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from types import MappingProxyType
from typing import Mapping
from urllib.parse import urlsplit

from gateway.config.document import (
    AccessLogSection,
    FailoverSection,
    GatewayKeyEntry,
    LedgerSection,
    LimitsSection,
    MetricsSection,
    PlanoConfig,
    ProviderEntry,
    RouteEntry,
    RoutingSection,
    SelectionPolicySection,
    ShutdownSection,
    StateSection,
    StateStorageSection,
    StreamingSection,
    TimeoutsSection,
    TracingSection,
)
from gateway.config.errors import ConfigError
from gateway.config.runtime import (
    DEFAULT_PORT,
    LOOPBACK,
    PLANO_VERSIONS,
    AccessLog,
    Config,
    Failover,
    GatewayKey,
    LedgerOptions,
    Limits,
    Listener,
    Pricing,
    Provider,
    RoutingOptions,
    RoutingPreference,
    SelectionPolicy,
    SharedState,
    StateStorage,
    Timeouts,
    TracingOptions,
    sha256,
)
from models.providers import (
    CATALOG,
    ProviderSpec,
    custom_spec,
    default_headers_for,
    join_url,
    quirks_for,
    speaks_responses,
)

# Where each entry of a top-level list was in the file (entries with problems are dropped before resolving).
Positions = dict[str, list[int]]
Refs = Mapping[str, Provider]
Ambiguous = Mapping[str, tuple[str, ...]]

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def resolve(document: PlanoConfig, positions: Positions, env: Mapping[str, str], source: str,
            problems: list[str] | None = None) -> Config:  # fmt: skip
    """The runtime config; raises ConfigError with `problems` (those found reading the document) and its own."""
    return _Resolution(document, positions, env, source, list(problems or ())).config()


class _Resolution:
    def __init__(self, doc: PlanoConfig, positions: Positions, env: Mapping[str, str], source: str,
                 problems: list[str]) -> None:  # fmt: skip
        self.doc = doc
        self.positions = positions
        self.env = env
        self.source = source
        self.problems = problems
        self.warnings: list[str] = []
        self.plain_keys: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def path(self, section: str, index: int) -> str:
        """The YAML path of entry `index` of a top-level list, as numbered in the file."""
        where = self.positions.get(section)
        return f"{section}[{where[index] if where and index < len(where) else index}]"

    def expand(self, value: str) -> tuple[str, list[str]]:
        """Expand `$VAR` / `${VAR}`; returns the value and the names that were unset."""
        missing: list[str] = []

        def sub(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            if not self.env.get(name):
                missing.append(name)
                return ""
            return self.env[name]

        return _VAR.sub(sub, value), missing

    # -- the whole ----------------------------------------------------------------------------------
    def config(self) -> Config:
        doc = self.doc
        self.plano_warnings()
        providers = self.providers()
        refs, ambiguous = self.index(providers)
        aliases = self.aliases(refs, ambiguous)
        preferences = self.preferences(refs, ambiguous)
        keys = self.gateway_keys(providers, refs, ambiguous)
        auth_enabled = doc.gateway_keys is not None
        defaults = [p for p in providers if p.default]
        if len(defaults) > 1:
            self.error("llm_providers", "at most one provider may have default: true "
                       f"(found {', '.join(p.model for p in defaults)})")  # fmt: skip
        if auth_enabled:
            for i, entry in enumerate(doc.providers):
                if entry.passthrough_auth:
                    self.error(f"{self.path(doc.provider_key, i)}.passthrough_auth",
                               "cannot be combined with gateway_keys: the client's credential "
                               "would be both the gateway key and the provider key")  # fmt: skip
        fallbacks = self.fallbacks(refs, ambiguous)
        routing = self.routing()
        state = self.shared_state()
        ledger = self.ledger()
        if self.problems:
            raise ConfigError(self.problems)
        timeouts = doc.timeouts or TimeoutsSection()
        failover = doc.failover or FailoverSection()
        limits = doc.limits or LimitsSection()
        tracing = doc.tracing or TracingSection()
        access_log = doc.access_log or AccessLogSection()
        stored = doc.state_storage or StateStorageSection()
        return Config(
            version=doc.version,
            providers=tuple(providers),
            refs=MappingProxyType(refs),
            ambiguous=MappingProxyType(ambiguous),
            aliases=MappingProxyType(aliases),
            default=defaults[0] if defaults else None,
            preferences=tuple(preferences),
            listeners=tuple(self.listeners()),
            gateway_keys=tuple(keys),
            auth_enabled=auth_enabled,
            gateway_secrets=tuple(self.plain_keys),
            limits=Limits(limits.max_body_bytes, limits.max_header_bytes, limits.max_messages),
            ping_interval_s=(doc.streaming or StreamingSection()).ping_interval,
            timeouts=Timeouts(timeouts.connect, timeouts.first_byte, timeouts.idle, timeouts.total),
            drain_s=(doc.shutdown or ShutdownSection()).drain,
            routing=routing,
            tracing=TracingOptions(tracing.otlp_endpoint, tracing.console, tracing.random_sampling / 100,
                                   tracing.service_name),  # fmt: skip
            metrics_require_key=(doc.metrics or MetricsSection()).require_key,
            access_log=AccessLog(access_log.prompts, access_log.prompt_max_chars),
            failover=Failover(failover.retries, failover.max_retry_after, failover.failures_to_cool, failover.cooldown),
            fallbacks=MappingProxyType(fallbacks),
            state_storage=StateStorage(stored.type, stored.max_entries, stored.ttl),
            state=state,
            ledger=ledger,
            warnings=tuple(self.warnings),
            source=self.source,
        )

    def plano_warnings(self) -> None:
        """Plano keys that Junction reads but does not act on, and an unknown version."""
        doc = self.doc
        for key in PlanoConfig.PLANO_UNUSED:
            if key in doc.model_fields_set:
                self.warnings.append(f"{key}: accepted for Plano compatibility but not used by Junction")
        if doc.version not in PLANO_VERSIONS:
            self.warnings.append(f"version: '{doc.version}' is not a known Plano config version")
        for key in RoutingSection.PLANO_UNUSED:
            if doc.routing is not None and key in doc.routing.model_fields_set:
                self.warnings.append(f"routing.{key}: accepted for Plano compatibility but not used by Junction")
        for key in TracingSection.PLANO_UNUSED:
            if doc.tracing is not None and key in doc.tracing.model_fields_set:
                self.warnings.append(f"tracing.{key}: not used by Junction (it exports OTLP over HTTP: otlp_endpoint)")

    # -- providers ----------------------------------------------------------------------------------
    def providers(self) -> list[Provider]:
        result = []
        for i, entry in enumerate(self.doc.providers):
            provider = self.provider(self.path(self.doc.provider_key, i), entry)
            if provider is not None:
                result.append(provider)
        return result

    def provider(self, path: str, entry: ProviderEntry) -> Provider | None:
        model = entry.model
        prefix, _, model_id = model.partition("/")
        missing: list[str] = []
        base_unset: list[str] = []
        base_url = entry.base_url
        if base_url is not None:
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
        spec = self.spec(path, prefix, entry.provider_interface, base_url)
        if spec is None:
            return None
        access_key = None
        if entry.access_key is not None:
            access_key, unset = self.expand(entry.access_key)
            missing += unset
        headers: dict[str, str] = dict(default_headers_for(base_url or spec.base_url or ""))
        for name, value in (entry.headers or {}).items():
            value, unset = self.expand(value)
            missing += unset
            # A configured header replaces a default of the same name, whatever its case.
            headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
            headers[name] = value
        tls_ca_file, unset = self.tls_ca_file(f"{path}.tls_ca_file", entry.tls_ca_file)
        missing += unset
        for var in dict.fromkeys(missing):
            self.warnings.append(f"{path}: environment variable {var} is not set; "
                                 f"'{model}' is unavailable until it is")  # fmt: skip
        if spec.needs_base_url and not base_url:
            self.error(f"{path}.base_url", f"required for provider '{prefix}'")
            return None
        pricing = entry.pricing
        return Provider(
            name=entry.name or model,
            model=model,
            prefix=prefix,
            model_id=model_id,
            spec=spec,
            base_url=base_url,
            url="" if base_unset else join_url(spec, base_url, "", model_id),
            access_key=access_key or None,
            headers=tuple(headers.items()),
            default=entry.default,
            passthrough_auth=entry.passthrough_auth,
            missing_env=tuple(dict.fromkeys(missing)),
            wildcard=model_id == "*",
            quirks=quirks_for(spec, base_url, model_id),
            anthropic_betas=frozenset(entry.anthropic_betas) if entry.anthropic_betas is not None else None,
            pricing=Pricing(pricing.input, pricing.output) if pricing is not None else None,
            tls_ca_file=tls_ca_file,
            native_responses=entry.provider_interface == "responses" or speaks_responses(spec, base_url),
        )

    def tls_ca_file(self, path: str, raw: str | None) -> tuple[str | None, list[str]]:
        """`tls_ca_file:` a readable PEM CA bundle (relative paths from the config's folder), checked
        now so a typo fails at load time rather than on the first request. Returns (path, unset vars)."""
        if raw is None:
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

    def spec(self, path: str, prefix: str, interface: str | None, base_url: str | None) -> ProviderSpec | None:
        builtin = CATALOG.get(prefix)
        if interface is None:
            if builtin is not None:
                return builtin
            self.error(f"{path}.provider_interface",
                       f"required for the custom provider prefix '{prefix}' "
                       f"(built-in prefixes: {', '.join(sorted(CATALOG))})")  # fmt: skip
            return None
        # `responses`: an OpenAI-style upstream that also serves the Responses API natively.
        like = CATALOG["openai"] if interface == "responses" else CATALOG[interface]
        if builtin is not None and prefix != "mock" and builtin.api is not like.api:
            self.error(f"{path}.provider_interface",
                       f"'{prefix}' is a built-in provider that speaks {builtin.api.value}; "
                       "provider_interface is for custom prefixes")  # fmt: skip
            return None
        if builtin is not None and prefix != "mock":
            return builtin  # with `responses`, the provider is marked native (see `provider`)
        if base_url is None:
            self.error(f"{path}.base_url", f"required for the custom provider prefix '{prefix}'")
            return None
        return custom_spec(prefix, like.api, base_url)

    # -- names ----------------------------------------------------------------------------------------
    def index(self, providers: list[Provider]) -> tuple[dict[str, Provider], dict[str, tuple[str, ...]]]:
        """Every name a provider may be referenced by; bare ids only when unique."""
        refs: dict[str, Provider] = {}
        for i, p in enumerate(providers):
            for key in dict.fromkeys((p.model, p.name)):
                if key in refs and refs[key] is not p:
                    self.error(self.path(self.doc.provider_key, i), f"'{key}' is already used by another provider")
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

    def resolve_ref(self, path: str, ref: str, refs: Refs, ambiguous: Ambiguous) -> Provider | None:
        if ref in refs:
            return refs[ref]
        if ref in ambiguous:
            self.error(path, f"ambiguous model '{ref}' (matches {', '.join(ambiguous[ref])}); "
                             "use the full provider/model name")  # fmt: skip
            return None
        known = sorted(p.model for p in refs.values() if not p.wildcard)
        self.error(path, f"unknown model '{ref}' (known: {', '.join(dict.fromkeys(known))})")
        return None

    def aliases(self, refs: Refs, ambiguous: Ambiguous) -> dict[str, Provider]:
        targets = {alias: entry.target for alias, entry in (self.doc.model_aliases or {}).items()}
        for alias in targets:
            if alias in refs:
                self.warnings.append(f"model_aliases.{alias}: shadows the provider model of the same name")
        resolved: dict[str, Provider] = {}
        for alias, target in targets.items():
            seen = [alias]
            while target in targets and target not in refs:
                if target in seen:
                    self.error(f"model_aliases.{alias}.target", f"alias cycle: {' -> '.join(seen + [target])}")
                    break
                seen.append(target)
                target = targets[target]
            else:
                provider = self.resolve_ref(f"model_aliases.{alias}.target", target, refs, ambiguous)
                if provider is not None:
                    resolved[alias] = provider
        return resolved

    def preferences(self, refs: Refs, ambiguous: Ambiguous) -> list[RoutingPreference]:
        result: list[RoutingPreference] = []
        names: set[str] = set()
        for i, route in enumerate(self.doc.routing_preferences or []):
            path = self.path("routing_preferences", i)
            if route.name in names:
                self.error(f"{path}.name", f"duplicate route name '{route.name}'")
            names.add(route.name)
            models = [self.resolve_ref(f"{path}.models[{j}]", ref, refs, ambiguous)
                      for j, ref in enumerate(route.models)]  # fmt: skip
            policy = self.selection_policy(f"{path}.selection_policy", route, models)
            if all(models):
                found = tuple(m for m in models if m is not None)
                result.append(RoutingPreference(route.name, route.description.strip(), found,
                                                tuple(route.examples or ()), policy))  # fmt: skip
        return result

    def selection_policy(self, path: str, route: RouteEntry, models: list[Provider | None]) -> SelectionPolicy:
        """The route's policy; its warnings need the models' pricing."""
        raw = route.selection_policy or SelectionPolicySection()
        if raw.prefer == "weighted":
            return SelectionPolicy("weighted", tuple(raw.weights or ()))
        if raw.weights is not None:
            self.warnings.append(f"{path}.weights: ignored unless prefer is weighted")
        if raw.prefer == "cheapest":
            known = [m for m in models if m is not None]
            unpriced = [m.model for m in known if m.pricing is None]
            if known and len(unpriced) == len(known):
                self.warnings.append(f"{path}.prefer: cheapest, but no model of this route has `pricing:`; "
                                     "they are tried in configured order")  # fmt: skip
            elif unpriced:
                self.warnings.append(f"{path}.prefer: cheapest; models without `pricing:` rank last: "
                                     f"{', '.join(unpriced)}")  # fmt: skip
        return SelectionPolicy(raw.prefer)

    def fallbacks(self, refs: Refs, ambiguous: Ambiguous) -> dict[str, tuple[Provider, ...]]:
        """Each provider's own `fallbacks:` list, resolved."""
        result: dict[str, tuple[Provider, ...]] = {}
        for i, entry in enumerate(self.doc.providers):
            if entry.fallbacks is None:
                continue
            path = f"{self.path(self.doc.provider_key, i)}.fallbacks"
            owner = refs.get(entry.model)
            resolved = [self.resolve_ref(f"{path}[{j}]", ref, refs, ambiguous) for j, ref in enumerate(entry.fallbacks)]
            if owner is not None and all(resolved):
                result[owner.model] = tuple(p for p in resolved if p is not None and p is not owner)
        return result

    # -- listeners and keys -------------------------------------------------------------------------
    def listeners(self) -> list[Listener]:
        if self.doc.listeners is None:
            return [Listener("default", LOOPBACK, DEFAULT_PORT)]
        result = []
        for i, item in enumerate(self.doc.listeners):
            if item.type != "model":
                where = self.path("listeners", i)
                self.warnings.append(f"{where}: listener type '{item.type}' is not served by Junction")
                continue
            result.append(Listener(item.name or f"listener{i}", item.address, item.port, item.timeout))
        return result

    def gateway_keys(self, providers: list[Provider], refs: Refs, ambiguous: Ambiguous) -> list[GatewayKey]:
        if self.doc.gateway_keys is None:
            return []
        keys = []
        for i, entry in enumerate(self.doc.gateway_keys):
            path = self.path("gateway_keys", i)
            key = self.gateway_key(path, i, entry, refs, ambiguous)
            if key is None:
                continue
            keys.append(key)
            unpriced = [p.model for p in providers if key.allows(p) and p.pricing is None]
            if key.budget_usd is not None and unpriced:
                self.error(f"{path}.budget_usd", "a budget needs pricing: {input, output} on every model the key may "
                           f"use; missing for {', '.join(unpriced)}")  # fmt: skip
        if not keys:
            self.warnings.append("gateway_keys: no usable key; every request will be refused")
        return keys

    def gateway_key(self, path: str, index: int, entry: GatewayKeyEntry, refs: Refs,
                    ambiguous: Ambiguous) -> GatewayKey | None:  # fmt: skip
        name = entry.name or f"key{index}"
        if entry.sha256 is not None:
            digest = bytes.fromhex(entry.sha256.strip().lower())
        else:
            key, unset = self.expand(entry.key or "")
            if unset:
                self.warnings.append(f"{path}: environment variable {unset[0]} is not set; key '{name}' is disabled")
                return None
            digest = sha256(key)
            self.plain_keys.append(key)
        models = None
        if entry.models is not None:
            # Sorted, so the problems come in a stable order.
            found = [self.resolve_ref(f"{path}.models[{j}]", ref, refs, ambiguous)
                     for j, ref in enumerate(sorted(set(entry.models)))]  # fmt: skip
            models = frozenset(p.model for p in found if p is not None)
        return GatewayKey(name, digest, models, entry.rpm, entry.max_parallel, entry.tpm, entry.budget_usd,
                          entry.budget_window, entry.role)  # fmt: skip

    # -- routing and state --------------------------------------------------------------------------
    def routing(self) -> RoutingOptions:
        raw = self.doc.routing or RoutingSection()
        settings = {name: getattr(raw, key) for key, name in RoutingSection.router_keys().items()
                    if key in raw.model_fields_set and getattr(raw, key) is not None}  # fmt: skip
        return RoutingOptions(raw.explicit_model_wins, raw.encoder_model or None, raw.encoder_backend,
                              MappingProxyType(settings))  # fmt: skip

    def shared_state(self) -> SharedState:
        raw = self.doc.state
        routing = self.doc.routing
        cache = routing.session_cache if routing is not None else None
        if raw is None and cache is not None and cache.type == "redis":
            # Plano's session cache in Redis: the shared state, sessions and limits alike.
            raw = StateSection(backend="redis", url=cache.url) if cache.url else None
            if raw is None:
                self.error("state.url", "required with backend: redis")
        elif raw is not None and cache is not None and cache.type == "redis":
            self.warnings.append("routing.session_cache: `state:` is set too and decides where sessions live")
        if raw is None:
            return SharedState()
        url = raw.url
        if url is not None:
            url, unset = self.expand(url)
            if unset:
                self.error("state.url", f"environment variable {', '.join(unset)} is not set")
            elif urlsplit(url).scheme not in ("redis", "rediss", "unix"):
                self.error("state.url", f"expected a redis://, rediss:// or unix:// URL, got {url!r}")
        modes = raw.fail_mode.model_dump() if raw.fail_mode is not None else {"limits": "local", "budgets": "local"}
        if raw.budget_fail_mode is not None:
            modes["budgets"] = raw.budget_fail_mode
        return SharedState(raw.backend, url, raw.timeout if raw.timeout > 0 else SharedState.timeout_s,
                           raw.retry_after if raw.retry_after > 0 else SharedState.retry_s, raw.local_share, raw.prefix,
                           modes["budgets"], modes["limits"])  # fmt: skip

    def ledger(self) -> LedgerOptions:
        raw = self.doc.ledger or LedgerSection()
        from_file = self.source != "<memory>"
        backend = raw.backend or ("sqlite" if from_file or raw.path is not None else "off")
        # Relative paths are beside the config file.
        here = Path(self.source).parent if from_file else Path.cwd()
        stem = Path(self.source).stem if from_file else "junction"
        dsn = raw.dsn
        if backend == "postgres" and dsn is not None:
            dsn, unset = self.expand(dsn)
            if unset:
                self.error("ledger.dsn", f"environment variable {', '.join(unset)} is not set")
            elif urlsplit(dsn).scheme not in ("postgres", "postgresql"):
                self.error("ledger.dsn", "expected a postgresql:// URL")
        elif dsn is not None:
            self.warnings.append("ledger.dsn is only read with backend: postgres")
        return LedgerOptions(backend, str(here / (raw.path or f"{stem}.usage.db")), dsn,
                             str(here / (raw.journal or f"{stem}.usage-journal")), raw.flush_interval, raw.max_batch,
                             raw.buffer, raw.retention_days, raw.pool_size)  # fmt: skip


def _is_metadata_host(host: str) -> bool:
    """Cloud metadata endpoints (169.254.169.254 and the like) hand out credentials: refusing
    them as upstreams closes the classic SSRF path."""
    if host.lower().rstrip(".") in ("metadata.google.internal", "metadata", "instance-data"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_link_local
    except ValueError:
        return False
