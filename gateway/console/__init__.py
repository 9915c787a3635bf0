"""The team console at `/console`: read-only pages over what the gateway is doing, and the JSON API
they use (documented for scripts in docs/console.md). Open to gateway keys with `role: admin` only; off when
no key has that role. Every asset ships in this package: the console works offline.

Routing decisions asked for here (the playground, a request's detail) are taken by a copy of the router
with its own sessions, so looking never moves a real conversation's route.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import html
import time
from importlib import resources
from typing import Any, Callable
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from gateway.config import Config
from gateway.console import api
from gateway.console.auth import COOKIE, SESSION_S, NotAdmin, admin, login, session_token
from gateway.ledger import report
from gateway.selection import STATS

STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}  # fmt: skip
MAX_PLAYGROUND_BYTES = 256 * 1024


@functools.lru_cache(maxsize=16)
def _static(name: str) -> bytes | None:
    """A packaged asset, read once per process."""
    folder = resources.files("gateway.console") / "static"
    item = folder / name
    return item.read_bytes() if "/" not in name and item.is_file() else None


def _page(title: str, body: str, status: int) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
                        '<link rel=stylesheet href="/console/static/console.css"><link rel=icon href="/console/static/icon.svg"></head>'
                        f'<body class="plain"><main class="card"><h1>{html.escape(title)}</h1>{body}</main></body></html>',
                        status_code=status)  # fmt: skip


LOGIN_FORM = ('<p>Sign in with a gateway key that has <code>role: admin</code>.</p>'
              '<form method=post action="/console/login"><label>Gateway key '
              '<input name=key type=password autocomplete=off autofocus required></label>'
              '<button type=submit>Open the console</button></form>')  # fmt: skip


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json",
                    headers={"cache-control": "no-store"})  # fmt: skip


def _error(status: int, message: str) -> Response:
    return _json({"error": {"message": message, "type": "console_error"}}, status)


def playground_body(text: str) -> dict[str, Any]:
    """A pasted prompt as a request body: JSON (Anthropic, OpenAI Chat or Responses shape, or a bare
    list of messages) as it is, anything else as one user message."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {"messages": value}
    return {"messages": [{"role": "user", "content": text}]}


def guess_protocol(body: dict[str, Any]) -> str:
    if "input" in body and "messages" not in body:
        return "responses"
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    chat_only = any(isinstance(m, dict) and (m.get("role") in ("system", "developer", "tool") or "tool_calls" in m)
                    for m in messages)  # fmt: skip
    return "openai" if chat_only else "anthropic"


class Console:
    def __init__(self, config: Config, router: Any, ledgers: Any, loaded_at: float) -> None:
        self.config = config
        self.router = router  # router.preferences.Router, or None without routing_preferences
        self.ledgers = ledgers  # recent requests, the usage ledger, model health
        self.loaded_at = loaded_at

    def routes(self) -> list[Route]:
        return [
            Route("/console", self.page, methods=["GET"]),
            Route("/console/login", self.do_login, methods=["POST"]),
            Route("/console/logout", self.logout, methods=["GET", "POST"]),
            Route("/console/static/{name}", self.static, methods=["GET"]),
            Route("/console/api/{name}", self.api, methods=["GET", "POST"]),
            Route("/console/api/requests/{request_id}", self.request_detail, methods=["GET"]),
        ]

    # -- who may look ------------------------------------------------------------------------------
    def _who(self, request: Request) -> tuple[Any, Response | None]:
        """(admin key, None) or (None, the refusal as a page or a JSON error)."""
        wants_json = request.url.path.startswith("/console/api/")
        if not self.config.console_enabled:
            message = "the console is off: no gateway key has role: admin"
            return None, _error(404, message) if wants_json else _page("Console off", f"<p>{message}.</p>", 404)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            key = admin(self.config, headers)
        except NotAdmin as exc:
            message = f"the key '{exc}' is not an admin key (role: admin opens the console)"
            return None, _error(403, message) if wants_json else _page("Not an admin key", f"<p>{html.escape(message)}.</p>", 403)
        if key is None:
            return None, _error(401, "an admin gateway key is needed") if wants_json else _page("Junction console", LOGIN_FORM, 200)
        return key, None

    async def page(self, request: Request) -> Response:
        _, refused = self._who(request)
        if refused is not None:
            return refused
        return Response(_static("console.html") or b"", media_type="text/html; charset=utf-8",
                        headers={"cache-control": "no-store"})  # fmt: skip

    async def do_login(self, request: Request) -> Response:
        if not self.config.console_enabled:
            return self._who(request)[1]  # type: ignore[return-value]
        form = parse_qs((await request.body())[:4096].decode("utf-8", "replace"))
        try:
            key = login(self.config, (form.get("key") or [""])[0])
        except NotAdmin as exc:
            return _page("Not an admin key", f"<p>The key '{html.escape(str(exc))}' is not an admin key.</p>{LOGIN_FORM}", 403)
        if key is None:
            return _page("Junction console", f"<p class=error>Unknown key.</p>{LOGIN_FORM}", 401)
        answer = RedirectResponse("/console", status_code=303)
        answer.set_cookie(COOKIE, session_token(key), max_age=SESSION_S, path="/console", httponly=True, samesite="strict")
        return answer

    async def logout(self, request: Request) -> Response:
        answer = RedirectResponse("/console", status_code=303)
        answer.delete_cookie(COOKIE, path="/console")
        return answer

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        data = _static(name)
        suffix = name[name.rfind("."):] if "." in name else ""
        if data is None or suffix not in STATIC_TYPES:
            return Response(b"not found", status_code=404)
        return Response(data, media_type=STATIC_TYPES[suffix], headers={"cache-control": "no-cache"})

    # -- the JSON API ------------------------------------------------------------------------------
    async def api(self, request: Request) -> Response:
        _, refused = self._who(request)
        if refused is not None:
            return refused
        name = request.path_params["name"]
        handlers: dict[tuple[str, str], Callable[[Request], Any]] = {
            ("live", "GET"): self.live, ("requests", "GET"): self.requests, ("models", "GET"): self.models,
            ("config", "GET"): self.config_view, ("usage", "GET"): self.usage, ("route", "POST"): self.route,
            ("routes", "GET"): self.routes_view,
        }  # fmt: skip
        handler = handlers.get((name, request.method))
        if handler is None:
            return _error(404, f"no console API {request.method} /console/api/{name}")
        return await handler(request)

    def _entries(self) -> list[dict[str, Any]]:
        recent = self.ledgers.recent
        return recent.events if recent is not None else []

    async def live(self, request: Request) -> Response:
        return _json(api.live(self._entries()))

    async def requests(self, request: Request) -> Response:
        try:
            limit = min(1000, max(1, int(request.query_params.get("limit", "100"))))
        except ValueError:
            return _error(400, "limit: a whole number")
        if request.query_params.get("source") == "ledger":  # older requests, every process's (no decisions)
            if self.ledgers.usage is None:
                return _error(409, "the usage ledger is off")
            try:
                return _json({"requests": await self.ledgers.usage.store.latest(limit), "source": "ledger"})
            except Exception as exc:  # noqa: BLE001 - a database outage: say so
                return _error(503, f"the usage ledger cannot be read ({type(exc).__name__})")
        recent = self.ledgers.recent
        return _json({"requests": recent.latest(limit) if recent is not None else [],
                      "prompts": bool(recent is not None and recent.keep_text)})  # fmt: skip

    async def request_detail(self, request: Request) -> Response:
        _, refused = self._who(request)
        if refused is not None:
            return refused
        recent = self.ledgers.recent
        entry = recent.find(request.path_params["request_id"]) if recent is not None else None
        if entry is None:
            return _error(404, "no such request among the recent ones")
        detail: dict[str, Any] = {"request": entry}
        text = (entry.get("decision") or {}).get("text")
        if text and self.router is not None:  # what decided it: the nearest examples (prompt logging on)
            body = {"messages": [{"role": "user", "content": text}]}
            explained = await asyncio.to_thread(self._copy_router().explain, body, "anthropic")
            detail["nearest_training"] = explained.get("nearest_training", [])
            detail["nearest_route_texts"] = explained.get("nearest_route_texts", [])
        return _json(detail)

    async def routes_view(self, request: Request) -> Response:
        preferences = self.router.preferences if self.router is not None else ()
        return _json({"routes": [{"name": p.name, "description": p.description, "examples": list(p.examples),
                                  "models": [getattr(m, "model", m) for m in p.models]} for p in preferences]})  # fmt: skip

    async def models(self, request: Request) -> Response:
        health = self.ledgers.health
        cooling, failures = (health.cooling(), health.failures()) if health is not None else ({}, {})
        # this process's upstream attempts in flight and first-byte averages, per model
        return _json({"models": api.models(self.config, cooling, failures, self._entries(), dict(STATS.in_flight),
                                           dict(STATS.latency_ms))})  # fmt: skip

    async def config_view(self, request: Request) -> Response:
        try:
            with open(self.config.source, encoding="utf-8") as file:
                text = file.read()
        except OSError as exc:
            text = f"# cannot read {self.config.source}: {exc.strerror}"
        return _json({"source": self.config.source, "loaded_at": self.loaded_at, "text": api.config_text(self.config, text)})

    async def usage(self, request: Request) -> Response:
        try:
            by = report.parse_by(request.query_params.get("by", "key,model"))
            since = report.parse_since(request.query_params.get("since"), dt.datetime.now(dt.timezone.utc).date())
        except report.UsageArgsError as exc:
            return _error(400, str(exc))
        ledger = self.ledgers.usage
        if ledger is not None:
            try:
                rows = report.complete(await ledger.store.report(by, since), by)
                return _json({"source": "ledger", **report.as_json(rows, by, since)})
            except Exception as exc:  # noqa: BLE001 - the database may be down: say so, show memory
                note = f"the usage ledger cannot be read ({type(exc).__name__}); these are this process's recent requests"
        else:
            note = "the usage ledger is off; these are this process's recent requests"
        entries = [e for e in self._entries() if e["day"] >= since]
        rows = report.complete(api.usage_from_memory(entries, by), by)
        return _json({"source": "memory", "note": note, **report.as_json(rows, by, since)})

    def _copy_router(self, routes: list[dict[str, Any]] | None = None) -> Any:
        """A router for looking: the live one's encoder and settings, its own sessions, and the routes as
        configured or as edited in the playground (their models kept when a route keeps its name)."""
        from router.preferences import Router

        current = {p.name: p for p in (self.router.preferences if self.router is not None else ())}
        if routes is None:
            preferences: list[Any] = list(current.values())
        else:
            preferences = [{"name": r["name"], "description": r.get("description", ""),
                            "examples": r.get("examples") or [],
                            "models": current[r["name"]].models if r["name"] in current else ()} for r in routes]  # fmt: skip
        encoder = self.router.encoder if self.router is not None else None
        settings = self.router.settings if self.router is not None else None
        return Router(preferences, encoder, settings)

    async def route(self, request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_PLAYGROUND_BYTES:
            return _error(413, f"at most {MAX_PLAYGROUND_BYTES} bytes")
        try:
            ask = orjson.loads(raw)
            text = ask["input"]
            assert isinstance(text, str) and text.strip()
            routes = ask.get("routes")
            assert routes is None or (isinstance(routes, list) and all(
                isinstance(r, dict) and isinstance(r.get("name"), str) and r["name"] for r in routes))
        except (orjson.JSONDecodeError, KeyError, TypeError, AssertionError):
            return _error(400, 'expected {"input": "<a prompt or a JSON request>", "protocol"?: "auto|anthropic|'
                               'openai|responses", "routes"?: [{"name", "description", "examples"}]}')  # fmt: skip
        if self.router is None and not routes:
            return _error(409, "no routing_preferences in the config: add routes in the playground to try some")
        body = playground_body(text)
        protocol = ask.get("protocol") or "auto"
        protocol = guess_protocol(body) if protocol == "auto" else protocol
        if protocol not in ("anthropic", "openai", "responses"):
            return _error(400, "protocol: auto, anthropic, openai or responses")
        try:
            router = self._copy_router(routes)
            explained = await asyncio.to_thread(router.explain, body, protocol)
        except ValueError as exc:  # e.g. two routes of one name
            return _error(400, str(exc))
        answer = {"protocol": protocol, **explained}
        if routes is not None:
            answer["yaml"] = api.routes_yaml([{**r, "models": [getattr(m, "name", m) for m in pref.models]}
                                              for r, pref in zip(routes, router.preferences)])  # fmt: skip
        return _json(answer)


def build_console(config: Config, router: Any, ledgers: Any) -> list[Route]:
    return Console(config, router, ledgers, time.time()).routes()
