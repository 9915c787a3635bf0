"""The gateway's configuration: Plano-format YAML -> an immutable `Config`.

runtime.py holds what the gateway consumes (`Config`, `Provider`, ...), document.py the file as written (pydantic
models, which also give `junction schema`), resolve.py the step between them, loading.py the entry points."""

from gateway.config.document import json_schema
from gateway.config.errors import ConfigError
from gateway.config.loading import load, parse, text_digest
from gateway.config.runtime import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
    LOOPBACK,
    PLANO_VERSIONS,
    SELECTION_PREFER,
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

__all__ = [
    "DEFAULT_MAX_BODY_BYTES", "DEFAULT_PORT", "LOOPBACK", "PLANO_VERSIONS", "SELECTION_PREFER", "AccessLog",
    "Config", "ConfigError", "Failover", "GatewayKey", "LedgerOptions", "Limits", "Listener", "Pricing", "Provider",
    "RoutingOptions", "RoutingPreference", "SelectionPolicy", "SharedState", "StateStorage", "Timeouts",
    "TracingOptions", "json_schema", "load", "parse", "sha256", "text_digest",
]  # fmt: skip
