"""Endpoints that are not LLM calls: the model list, health, and the Responses WebSocket refusal."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.call import get_call
from gateway.chain.boundary import json_response
from gateway.config import Config
from gateway.errors import error_body
from models.providers import ApiStyle


def model_list(config: Config) -> dict[str, Any]:
    """Every provider model and alias, in a shape both SDKs accept: OpenAI's list format plus
    the fields of Anthropic's model list (`type`, `display_name`, `created_at`, paging)."""
    entries: list[tuple[str, str]] = []
    for provider in config.providers:
        if not provider.wildcard:
            entries.append((provider.model, provider.prefix))
    for alias in config.aliases:
        entries.append((alias, "junction-alias"))
    data = [
        {
            "id": model_id,
            "object": "model",
            "created": 0,
            "owned_by": owner,
            "type": "model",
            "display_name": model_id,
            "created_at": "1970-01-01T00:00:00Z",
        }
        for model_id, owner in dict.fromkeys(entries)
    ]
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


class ModelList:
    def __init__(self, config: Config) -> None:
        self.config = config

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        get_call(scope)  # set by the boundary: auth has already run
        start, body = json_response(200, model_list(self.config))
        await send(start)
        await send(body)


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def not_routed(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods, answered in the protocol the path suggests."""
    status = getattr(exc, "status_code", 404)
    api = ApiStyle.ANTHROPIC if "/messages" in request.url.path else ApiStyle.OPENAI
    what = "method not allowed" if status == 405 else "no such endpoint"
    message = f"{what}: {request.method} {request.url.path}"
    return Response(orjson.dumps(error_body(api, status, message)), status_code=status,
                    media_type="application/json")  # fmt: skip


class ResponsesWebSocket:
    """A WebSocket upgrade on /v1/responses gets HTTP 426: Codex tries a WebSocket first for some
    providers and falls back to HTTP at once on 426 (any other failure costs it five retries).
    A class, so Starlette hands it the raw ASGI messages rather than a WebSocket session."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await refuse_websocket(scope, receive, send)


async def refuse_websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    message = await receive()
    if message.get("type") != "websocket.connect":
        return
    body = orjson.dumps(error_body(ApiStyle.OPENAI, 426, "WebSocket transport is not supported here: use HTTP "
                                   "POST /v1/responses with server-sent events"))  # fmt: skip
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send({"type": "websocket.http.response.start", "status": 426,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # a server without the denial-response extension: refuse the handshake
        await send({"type": "websocket.close", "code": 1008})


class StoredResponse:
    """`GET` and `DELETE /v1/responses/{id}` on the stored Responses (the OpenAI SDK's `responses.retrieve`
    and `responses.delete`); a response never stored, expired or deleted is a 404."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        get_call(scope)  # set by the boundary: auth has already run
        response_id = scope["path_params"]["response_id"]
        if scope["method"] == "DELETE":
            found = await self.store.delete(response_id)
            payload: Any = {"id": response_id, "object": "response.deleted", "deleted": True}
        else:
            payload = await self.store.response(response_id)
            found = payload is not None
        if not found:
            payload = error_body(ApiStyle.OPENAI, 404, f"Response with id {response_id!r} not found.")
        start, body = json_response(200 if found else 404, payload)
        await send(start)
        await send(body)
