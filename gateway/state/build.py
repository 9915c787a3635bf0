"""The key state a config asks for (`state: {backend: memory | redis}`)."""

from __future__ import annotations

from typing import Any

from gateway.config import Config
from gateway.state import KeyState
from gateway.state.local import LocalState

LEASE_MARGIN_S = 2.0  # a lease outlives the longest request (timeouts.total) by this much


def build_state(config: Config, metrics: Any = None) -> KeyState:
    if config.state.backend != "redis":
        return LocalState()
    from gateway.state.shared import SharedState  # redis-py only when asked for

    counter = getattr(metrics, "state_degraded", None)
    on_degraded = (lambda operation: counter.labels(operation).inc()) if counter is not None else None
    return SharedState(config.state, config.timeouts.total + LEASE_MARGIN_S, on_degraded)
