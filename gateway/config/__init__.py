"""The gateway's configuration: Plano-format YAML -> an immutable `Config`.

runtime.py holds what the gateway consumes (`Config`, `Provider`, ...), document.py the file as written (pydantic
models, which also give `junction schema`), resolve.py the step between them, loading.py the entry points."""

from gateway.config import runtime
from gateway.config.document import json_schema
from gateway.config.errors import ConfigError
from gateway.config.loading import load, parse, text_digest
from gateway.config.runtime import *  # noqa: F403  (the runtime classes, by their public names)

__all__ = [*runtime.__all__, "ConfigError", "json_schema", "load", "parse", "text_digest"]
