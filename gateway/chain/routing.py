"""Route-by-preference layer: the embedding router picks the model from the latest genuine
user turn (router/), and the decision is explained in `x-junction-route*` headers.

Which requests are routed (as in Plano, when `routing_preferences` exist): every chat request,
except when the client named a configured model or alias and `routing.explicit_model_wins` is
on (the default), or when it sends `x-junction-route: off`. A matching route serves the request
with its first model; its other models (and their `fallbacks:`) are the failover chain. No
match keeps the model alias resolution chose (the requested or the default model). The route's
`selection_policy` (gateway/selection.py) decides the order its models are tried in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gateway.call import Call, get_call
from gateway.chain.aliases import set_candidates
from gateway.chain.boundary import json_response
from gateway.config import Config, Provider, SelectionPolicy
from gateway.observe import Metrics
from gateway.selection import rank
from router.preferences import Decision, Router

log = logging.getLogger("junction")
ROUTE_HEADER = "x-junction-route"
POLICY_HEADER = "x-junction-route-policy"
SESSION_HEADER = "x-junction-session"


def build_router(config: Config) -> Router | None:
    """The router for `config`, or None without preferences (then nothing is ever loaded)."""
    if not config.preferences:
        return None
    from router.encoder import Encoder
    from router.preferences import RouterSettings, default_encoder
    from router.taxonomy import head_available, load_head

    options = config.routing
    settings = RouterSettings(**options.settings)
    if options.encoder_model:  # a model of the user's own: the task head cannot read it, similarity only
        encoder: Any = Encoder(options.encoder_model, backend=options.encoder_backend)
    else:
        head = load_head(settings.head) if settings.use_head and head_available(settings.head) else None
        encoder = default_encoder(head, options.encoder_backend)
    return Router(config.preferences, encoder, settings)


async def decide(router: Router, call: Call) -> Decision:
    assert call.body is not None
    return await router.decide(call.body, call.wire, call.headers.get(SESSION_HEADER))  # type: ignore[arg-type]


class Routing:
    def __init__(self, app: Any, config: Config, router: Router | None, metrics: Metrics | None = None) -> None:
        self.app = app
        self.config = config
        self.router = router
        self.metrics = metrics
        self.policies = policies(config)

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
        policy = self.policies.get(decision.route, SelectionPolicy())
        models = ranked(decision.models, policy, call.key.allows if call.key is not None else None)
        if models:  # a route whose models this key may not use leaves the request where it was
            set_candidates(call, self.config, models)
            call.route = decision.route
            if policy.prefer != "none":
                call.extra_headers[POLICY_HEADER] = policy.prefer


def policies(config: Config) -> dict[str, SelectionPolicy]:
    return {pref.name: pref.selection_policy for pref in config.preferences}


def ranked(models: tuple[Any, ...], policy: SelectionPolicy,
           allows: Callable[[Provider], bool] | None = None) -> tuple[Provider, ...]:  # fmt: skip
    """A route's models in the order its policy wants them tried, without those the client's key
    may not use. Weights stay paired with their models, so a key's filter does not shift them."""
    pairs = [(m, policy.weights[i] if i < len(policy.weights) else 1.0) for i, m in enumerate(models)
             if isinstance(m, Provider) and (allows is None or allows(m))]  # fmt: skip
    return rank([m for m, _ in pairs], policy.prefer, [w for _, w in pairs])


class RouteDecision:
    """`POST /routing/v1/messages`, `/routing/v1/chat/completions` and `/routing/v1/responses` (Plano's decision-only API):
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
