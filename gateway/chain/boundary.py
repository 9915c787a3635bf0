"""Outermost layer: creates the `Call`, adds debug headers, and turns every failure into an
error in the client's own protocol. Nothing below it can produce a 500 with a stack trace or a
stream that just stops: errors after the first byte end the stream with a protocol error frame.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import orjson

from gateway.call import STATE_KEY, Call
from gateway.errors import GatewayError, render, stream_error_frame
from gateway.ledger import Ledger, event_of
from gateway.lifecycle import Lifecycle
from gateway.recent import RecentRequests
from gateway.observe import Metrics, log_access
from models.providers import ApiStyle
from models.translate.errors import responses_error_code

log = logging.getLogger("junction")

ASGIApp = Any
_NOT_LLM = ("models", "metrics", "stored")  # endpoints that are not LLM calls: no access log, no request metrics
_STREAM_HEADERS = ((b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no"))
Scope = dict[str, Any]


def _protocol(path: str) -> ApiStyle:
    return ApiStyle.ANTHROPIC if "/messages" in path else ApiStyle.OPENAI


def _endpoint(path: str) -> str:
    if path.startswith("/routing/"):
        return "route"
    if path.endswith("/count_tokens"):
        return "count_tokens"
    if path.endswith("/models"):
        return "models"
    if "/responses/" in path:
        return "stored"  # GET / DELETE of a stored Response
    if path == "/metrics":
        return "metrics"
    return "chat"


def _request_id(headers: dict[str, str]) -> str:
    # Keep a caller's id (tracing across hops) if it is short and printable.
    given = headers.get("x-request-id", "")
    if 0 < len(given) <= 128 and given.isprintable():
        return given
    return uuid.uuid4().hex


class Boundary:
    def __init__(self, app: ASGIApp, max_header_bytes: int = 32 * 1024, metrics: Metrics | None = None,
                 tracing: Any = None, prompt_chars: int = 0, lifecycle: Lifecycle | None = None,
                 usage: Ledger | None = None, recent: RecentRequests | None = None) -> None:  # fmt: skip
        self.app = app
        self.usage = usage  # the usage ledger: one row per LLM request
        self.recent = recent  # the latest requests, for the console
        self.lifecycle = lifecycle  # for the LLM chain: counts its requests, refuses new ones while draining
        self.max_header_bytes = max_header_bytes
        self.metrics = metrics
        self.tracing = tracing  # gateway.tracing.Tracing, when configured
        self.prompt_chars = prompt_chars  # log this much of each prompt (access_log.prompts), 0: none

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        call = Call(_request_id(headers), _protocol(path), _endpoint(path), headers)
        call.responses = path.endswith("/responses")
        call.query = scope.get("query_string", b"").decode("latin-1")
        scope.setdefault("state", {})[STATE_KEY] = call
        started = finished = streaming = False

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal started, streaming, finished
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            elif message["type"] == "http.response.start":
                started = True
                call.status = message["status"]
                raw = message.get("headers", [])
                streaming = any(k == b"content-type" and v.startswith(b"text/event-stream") for k, v in raw)
                if call.extra_headers:  # the gateway's own rate-limit state replaces the upstream's
                    raw = [(k, v) for k, v in raw if k.decode("latin-1") not in call.extra_headers]
                message["headers"] = list(raw) + call.debug_headers()
                if streaming:
                    # No cache or proxy (nginx) may hold a stream back.
                    message["headers"] += [(k, v) for k, v in _STREAM_HEADERS if k not in {h for h, _ in raw}]
            elif streaming and call.ttft_ms is None and message.get("body"):
                call.ttft_ms = call.elapsed_ms()
            await send(message)

        if self.metrics is not None:
            self.metrics.in_flight.inc()
        lifecycle = self.lifecycle
        if lifecycle is not None:
            lifecycle.requests += 1
        try:
            if lifecycle is not None and lifecycle.draining:
                # Stopping: requests in flight finish, new ones go elsewhere (clients retry a 503/529).
                raise GatewayError("the gateway is shutting down; retry on another instance",
                                   status=529 if call.protocol is ApiStyle.ANTHROPIC else 503,
                                   code="shutting_down", headers={"retry-after": "1"})  # fmt: skip
            header_bytes = sum(len(k) + len(v) + 4 for k, v in scope["headers"])
            if header_bytes > self.max_header_bytes:
                raise GatewayError(f"request headers of {header_bytes} bytes exceed the limit of "
                                   f"{self.max_header_bytes} bytes", status=431, code="headers_too_large")  # fmt: skip
            await self.app(scope, receive, send_wrapper)
        except GatewayError as exc:
            await self._fail(call, send, started, finished, streaming, exc.status, exc.message, exc)
        except asyncio.CancelledError:
            if lifecycle is None or not lifecycle.draining or call.client_gone:
                raise
            # Cut off at the end of the shutdown drain: answer that (a stream already has its
            # error event from the repair layer) and end normally, not as a crashed task.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            status = 529 if call.protocol is ApiStyle.ANTHROPIC else 503
            await self._fail(call, send, started, finished, streaming, status,
                             "the gateway is shutting down; the response was interrupted", None)  # fmt: skip
        except Exception:  # noqa: BLE001 - last line of defence; the trace goes to the log only
            log.exception("unhandled error in request %s", call.request_id)
            message = f"internal gateway error (request id {call.request_id})"
            await self._fail(call, send, started, finished, streaming, 500, message, None)
        finally:
            if lifecycle is not None:
                lifecycle.requests -= 1
            if self.metrics is not None:
                self.metrics.in_flight.dec()
                if call.endpoint not in _NOT_LLM:
                    self.metrics.record(call)
            if call.endpoint not in _NOT_LLM:
                log_access(call, self.prompt_chars)
                if call.endpoint == "chat" and (self.usage is not None or self.recent is not None):
                    event = event_of(call)
                    if self.usage is not None:
                        self.usage.add(event)
                    if self.recent is not None:
                        self.recent.add(event, call.decision)
                if self.tracing is not None:
                    self.tracing.record(call)

    async def _fail(self, call: Call, send: Any, started: bool, finished: bool, streaming: bool,
                    status: int, message: str, exc: GatewayError | None) -> None:  # fmt: skip
        if call.client_gone or finished:
            return
        if not started:
            body = render(call.protocol, exc or GatewayError(message, status=status), call.request_id)[1]
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            headers += [(k.lower().encode(), v.encode()) for k, v in (exc.headers if exc else {}).items()]
            call.status = status
            await send({"type": "http.response.start", "status": status,
                        "headers": headers + call.debug_headers()})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        # Headers are gone: the only honest ending is an in-band error the SDKs raise on.
        tail = b""
        if streaming and call.responses_stream is not None:  # Responses: error + response.failed, in sequence
            tail = b"".join(call.responses_stream.fail(responses_error_code(status, message), message))
        elif streaming:
            tail = stream_error_frame(call.protocol, status, message)
        await send({"type": "http.response.body", "body": tail, "more_body": False})


def json_response(status: int, payload: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    body = orjson.dumps(payload)
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, {"type": "http.response.body", "body": body}
