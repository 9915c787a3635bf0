"""build_app(config): the Starlette app, with the whole request chain listed in one place."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
from typing import Any, AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from gateway.chain.aliases import Aliases
from gateway.chain.auth import Auth
from gateway.chain.boundary import Boundary
from gateway.chain.intake import Intake
from gateway.chain.quota import Ledgers, Quota
from gateway.chain.repair import Repair
from gateway.chain.routing import RouteDecision, Routing, build_router
from gateway.chain.translate import Translate
from gateway.config import Config
from gateway.cooldown import Health
from gateway.lifecycle import Lifecycle
from gateway.console import build_console
from gateway.endpoints import ModelList, ResponsesWebSocket, StoredResponse, healthz, not_routed
from gateway.observe import Metrics
from gateway.responses_store import ResponseStore, SharedResponseStore, StoredResponses
from gateway.ledger.build import build_ledger
from gateway.recent import RecentRequests
from gateway.state.build import build_state
from gateway.tracing import Tracing
from gateway.tracing import setup as setup_tracing
from gateway.upstream import ClientPool, Upstream
from models.tokens import count_text_tokens
from router.preferences import Router

log = logging.getLogger("junction")


def llm_chain(config: Config, pool: ClientPool, metrics: Metrics, lifecycle: Lifecycle, ledgers: Ledgers,
              router: Router | None, tracing: Tracing | None = None, responses: StoredResponses | None = None) -> Any:  # fmt: skip
    """auth -> aliases -> routing -> quota -> translate -> repair -> upstream, inside the error boundary.

    Intake (read and check the body once) sits right after auth so that unauthenticated
    requests are refused before their body is read; quota (a key's tokens per minute and budget)
    comes once routing has chosen the models, since a budget is priced by them.
    """
    state, policy = ledgers.state, config.failover
    health = Health(policy, on_cool=state.announce_cooldown, on_recover=state.clear_failures,
                    on_fail=lambda model: state.count_failure(model, policy.failures_to_cool, policy.cooldown))  # fmt: skip
    ledgers.health = health  # the one the key state's cooldown announcements from other processes reach
    app: Any = Upstream(pool, config, health, metrics)
    app = Repair(app, config.ping_interval_s, lifecycle, metrics.streams)
    app = Translate(app, responses, config.ping_interval_s)
    app = Quota(app, ledgers, metrics)
    app = Routing(app, config, router, metrics)
    app = Aliases(app, config)
    app = Intake(app, config.limits, responses)
    app = Auth(app, config)
    prompt_chars = config.access_log.prompt_max_chars if config.access_log.prompts else 0
    return Boundary(app, config.limits.max_header_bytes, metrics, tracing, prompt_chars, lifecycle, ledgers.usage,
                    ledgers.recent)  # fmt: skip


class MetricsEndpoint:
    """`GET /metrics` as a plain ASGI app, so it can sit behind the auth layer."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body, content_type = self.metrics.exposition()
        await Response(body, media_type=content_type)(scope, receive, send)


async def _warm(router: Router) -> None:
    """Load the encoder and build the route vectors in the background (in worker threads), so
    the first routed request does not pay for it; requests before it finishes wait for it."""
    try:
        await router.prepare()
        log.info("router ready: %d routes", len(router.preferences))
        gc.freeze()  # the model's objects are long-lived too (see `start`)
    except Exception:  # noqa: BLE001 - a broken model must not take the gateway down
        log.exception("router failed to load; requests will be served without routing")


async def _warm_tokenizer() -> None:
    """Load the tokenizer's vocabulary (~140 ms of CPU) in a worker thread at start-up, rather than
    on the event loop inside the first request that counts tokens."""
    await asyncio.to_thread(count_text_tokens, "warm-up")
    gc.freeze()


def routes_digest(config: Config) -> str:
    """What a route binding depends on: every route's name, description and models."""
    routes = [(p.name, p.description, [m.model for m in p.models]) for p in config.preferences]
    return hashlib.sha256(orjson.dumps(routes)).hexdigest()[:16]


def build_ledgers(config: Config, metrics: Metrics) -> Ledgers:
    """Per-key state and the usage ledger: chosen once per process (a reload keeps them)."""
    return Ledgers(build_state(config, metrics), usage=build_ledger(config.ledger, metrics), recent=RecentRequests())


def build_app(config: Config, lifecycle: Lifecycle | None = None, metrics: Metrics | None = None,
              ledgers: Ledgers | None = None, responses: StoredResponses | None = None) -> Starlette:  # fmt: skip
    """The gateway for one config. `lifecycle`, `metrics`, `ledgers` (per-key limits and spend) and
    `responses` (stored Responses) outlive config reloads when given."""
    pool = ClientPool(config.timeouts)
    lifecycle = lifecycle or Lifecycle()
    metrics = metrics or Metrics()
    owned = ledgers is None  # then this app also closes them (a Reloadable closes its own)
    ledgers = ledgers or build_ledgers(config, metrics)
    store = config.state_storage
    if responses is None:
        local = ResponseStore(store.max_entries, store.ttl_s)
        # With a shared state store, stored Responses live there: a conversation continues on any replica.
        responses = SharedResponseStore(ledgers.state, store.ttl_s, local=local) if hasattr(ledgers.state, "command") \
            else local  # fmt: skip
    if ledgers.recent is not None:
        ledgers.recent.keep_text = config.access_log.prompts  # prompt text only where prompts are logged
    router = build_router(config)
    if router is not None and hasattr(ledgers.state, "sessions"):  # shared state: conversations keep their route
        router.remote_sessions = ledgers.state.sessions(router.settings.session_ttl_s, routes_digest(config))
    tracing = setup_tracing(config.tracing)
    chain = llm_chain(config, pool, metrics, lifecycle, ledgers, router, tracing, responses)
    decisions = Boundary(Auth(Intake(RouteDecision(router), config.limits), config), config.limits.max_header_bytes)

    # Open for scrapers by default; behind the gateway keys when the config asks for it.
    metrics_endpoint: Any = MetricsEndpoint(metrics)
    if config.metrics_require_key:
        metrics_endpoint = Boundary(Auth(metrics_endpoint, config), config.limits.max_header_bytes)


    warming: list[asyncio.Task[None]] = []

    async def start() -> None:
        for warning in config.warnings:
            log.warning("config: %s", warning)
        metrics.watch_loop()  # the event-loop lag gauge; one monitor however many reloads
        # Everything that exists now lives as long as the process: out of the garbage collector's
        # sight, a full collection no longer walks it. Big request bodies make collections frequent,
        # and a full one over the start-up heap held the event loop for 50-75 ms under load.
        gc.freeze()
        warming.append(asyncio.create_task(_warm_tokenizer()))
        await ledgers.start()  # a shared store's connection and scripts, the usage ledger's writer
        # Other processes' model cooldowns (shared state); this app's Health from now on.
        ledgers.state.follow_cooldowns(lambda model, seconds: ledgers.health.cool(model, seconds) if ledgers.health else None)
        if router is not None:
            warming.append(asyncio.create_task(_warm(router)))

    async def stop() -> None:
        metrics.unwatch_loop()
        for task in warming:
            task.cancel()
        # Streams cut at the end of the drain are writing their error frames: let them finish.
        await lifecycle.wait_idle(2.0)
        await pool.aclose()
        if tracing is not None:
            await asyncio.to_thread(tracing.shutdown)  # flushes the batch exporter

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await start()
        yield
        await stop()
        if owned:
            await ledgers.close()

    async def ready(request: Request) -> Response:
        if lifecycle.draining:
            return Response(b'{"status":"draining"}', status_code=503, media_type="application/json")
        return Response(b'{"status":"ready"}', media_type="application/json")

    routes = [
        Route("/v1/chat/completions", chain, methods=["POST"]),
        Route("/chat/completions", chain, methods=["POST"]),
        Route("/v1/messages", chain, methods=["POST"]),
        Route("/v1/messages/count_tokens", chain, methods=["POST"]),
        # The Anthropic SDK appends /v1/messages to a base URL that may already end in /v1.
        Route("/v1/v1/messages", chain, methods=["POST"]),
        Route("/v1/v1/messages/count_tokens", chain, methods=["POST"]),
        Route("/v1/responses", chain, methods=["POST"]),
        Route("/v1/responses/{response_id}", Boundary(Auth(StoredResponse(responses), config),
                                                      config.limits.max_header_bytes), methods=["GET", "DELETE"]),  # fmt: skip
        Route("/responses", chain, methods=["POST"]),
        WebSocketRoute("/v1/responses", ResponsesWebSocket()),
        WebSocketRoute("/responses", ResponsesWebSocket()),
        Route("/routing/v1/messages", decisions, methods=["POST"]),
        Route("/routing/v1/responses", decisions, methods=["POST"]),
        Route("/routing/v1/chat/completions", decisions, methods=["POST"]),
        Route("/v1/models", Boundary(Auth(ModelList(config), config), config.limits.max_header_bytes),
              methods=["GET"]),  # fmt: skip
        Route("/healthz", healthz, methods=["GET"]),
        Route("/health/live", healthz, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *build_console(config, router, ledgers),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={404: not_routed, 405: not_routed})
    app.state.config = config
    app.state.pool = pool
    app.state.metrics = metrics
    app.state.lifecycle = lifecycle
    app.state.responses = responses
    app.state.start, app.state.stop = start, stop
    return app
