"""Intake layer: reads the body once (within the size limit), parses and checks it.

The parsed body lives in the `Call`; no later layer reads or parses the request again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from gateway.call import get_call
from gateway.config import Limits
from gateway.errors import InvalidRequest, PayloadTooLarge
from gateway.responses_store import StoredResponses, input_items
from models.translate.responses_request import check_responses_request
from models.validate import check_request

OFFLOAD_BYTES = 1024 * 1024


async def read_body(scope: dict[str, Any], receive: Any, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it is known to exceed `limit`."""
    for name, value in scope["headers"]:
        if name.lower() == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge(f"request body of {int(value)} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            get_call(scope).client_gone = True
            raise InvalidRequest("client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class Intake:
    def __init__(self, app: Any, limits: Limits, responses: StoredResponses | None = None) -> None:
        self.app = app
        self.limit = limits.max_body_bytes
        self.max_messages = limits.max_messages
        self.responses = responses  # stored Responses, for previous_response_id

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        call = get_call(scope)
        raw = await read_body(scope, receive, self.limit)
        if not raw.strip():
            raise InvalidRequest("request body is empty: expected a JSON object")
        try:
            # Big bodies are parsed in a worker thread, but orjson keeps the GIL while it parses, so
            # the loop still waits: ~0.3 ms for a 400 KB (100k-token) body, ~3 ms per MB beyond.
            body = await asyncio.to_thread(orjson.loads, raw) if len(raw) > OFFLOAD_BYTES else orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            # orjson also refuses nesting deeper than 1024 levels, which lands here too.
            raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
        messages = body.get("messages") if isinstance(body, dict) else None
        if isinstance(messages, list) and len(messages) > self.max_messages:
            raise PayloadTooLarge(f"messages: {len(messages)} messages exceed the limit of {self.max_messages}")
        if call.responses:
            problems = check_responses_request(body)
            if not problems and body.get("previous_response_id") is not None:
                body = await self._continued(body)
        else:
            # count_tokens and the routing API take message bodies without max_tokens.
            problems = check_request(call.protocol, body, count_tokens=call.endpoint in ("count_tokens", "route"))
        if problems:
            raise InvalidRequest("; ".join(problems))
        call.body = body
        call.body_size = len(raw)
        call.stream = body.get("stream") is True and call.endpoint == "chat"
        # Codex may omit the model of a Responses request: the default model (or a route) serves it.
        call.requested_model = body.get("model") if call.responses else body["model"]
        await self.app(scope, receive, send)

    async def _continued(self, body: dict[str, Any]) -> dict[str, Any]:
        """A request that continues a stored response, with that conversation's items put before its
        own input. An unknown or expired id is refused: answering without the history the client meant
        to send would be a silent loss."""
        previous = body["previous_response_id"]
        stored = await self.responses.get(previous) if self.responses is not None else None
        if stored is None:
            raise InvalidRequest(f"Previous response with id {previous!r} not found.", code="previous_response_not_found",
                                 param="previous_response_id")  # fmt: skip
        rest = {k: v for k, v in body.items() if k != "previous_response_id"}
        return rest | {"input": stored + input_items(body.get("input"))}
