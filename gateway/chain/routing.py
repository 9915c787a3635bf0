"""Route-by-preference layer: the embedding router picks the model from the latest genuine
user turn (router/), and the decision is explained in `x-junction-route*` headers.

Which requests are routed (as in Plano, when `routing_preferences` exist): every chat request,
except when the client named a configured model or alias and `routing.explicit_model_wins` is
on (the default), or when it sends `x-junction-route: off`. A matching route serves the request
with its first model; its other models (and their `fallbacks:`) are the failover chain. No
match keeps the model alias resolution chose (the requested or the default model).
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.call import Call, get_call
from gateway.chain.aliases import set_candidates
from gateway.chain.boundary import json_response
from gateway.config import Config, Provider
from gateway.observe import Metrics
from router.preferences import Decision, Router

log = logging.getLogger("junction")
ROUTE_HEADER = "x-junction-route"
SESSION_HEADER = "x-junction-session"


def build_router(config: Config) -> Router | None:
    """The router for `config`, or None without preferences (then nothing is ever loaded)."""
    if not config.preferences:
        return None
    from router.encoder import Encoder
    from router.preferences import RouterSettings

    options = config.routing
    encoder = Encoder(options.encoder_model, backend=options.encoder_backend)
    return Router(config.preferences, encoder, RouterSettings(**options.settings))


async def decide(router: Router, call: Call) -> Decision:
    assert call.body is not None
    return await router.decide(call.body, call.protocol.value, call.headers.get(SESSION_HEADER))


class Routing:
    def __init__(self, app: Any, config: Config, router: Router | None, metrics: Metrics | None = None) -> None:
        self.app = app
        self.config = config
        self.router = router
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        call = get_call(scope)
        if self.router is not None and call.endpoint == "chat" and self._routable(call):
            try:
                call.decision = await decide(self.router, call)
            except Exception:  # noqa: BLE001 - a broken router must not fail the request
                log.exception("routing failed; serving request %s without a route", call.request_id)
            else:
                if self.metrics is not None:
                    self.metrics.route(call.decision)
                self._apply(call, call.decision)
        await self.app(scope, receive, send)

    def _routable(self, call: Call) -> bool:
        if call.headers.get(ROUTE_HEADER, "").strip().lower() == "off":
            return False
        return not (call.explicit and self.config.routing.explicit_model_wins)

    def _apply(self, call: Call, decision: Decision) -> None:
        if decision.route is None:
            return
        models: tuple[Provider, ...] = tuple(m for m in decision.models if isinstance(m, Provider))
        if call.key is not None:
            models = tuple(m for m in models if call.key.allows(m))
        if models:  # a route whose models this key may not use leaves the request where it was
            set_candidates(call, self.config, models)
            call.route = decision.route


class RouteDecision:
    """`POST /routing/v1/messages` and `/routing/v1/chat/completions` (Plano's decision-only API):
    the same bodies as the LLM endpoints, answered with the decision and no LLM call."""

    def __init__(self, router: Router | None) -> None:
        self.router = router

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        call = get_call(scope)
        if self.router is None:
            payload: dict[str, Any] = {"route": None, "models": [], "scores": {}, "text": "", "latency_ms": 0.0,
                                       "reason": "no_preferences"}  # fmt: skip
        else:
            call.decision = await decide(self.router, call)
            payload = call.decision.as_dict()
        start, body = json_response(200, payload)
        await send(start)
        await send(body)
