"""Protocol translation layer.

On the way in it builds the request in the upstream's wire protocol: same-protocol bodies keep
every field (only `model` is rewritten, and gateway-signed thinking blocks are removed before
they can reach a real Anthropic upstream); cross-protocol bodies go through the pure translators
in `models/translate/`. On the way back it turns the upstream's answer into the client's
protocol: buffered bodies and errors whole, streams event by event through a state machine fed
by the repair layer's decoded events.

`count_tokens` for upstreams without such an endpoint is answered here, with a real tokenizer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import time
from typing import Any, Awaitable, Callable

import orjson

from gateway.call import Call, get_call
from gateway.chain.boundary import json_response
from gateway.chain.repair import ERROR_KEY, EVENTS_KEY, PING_KEY
from gateway.errors import InvalidRequest
from gateway.redact import Redactor
from gateway.responses_store import StoredResponses, input_items
from models.providers import ApiStyle
from models.sse import SSEDecoder, SSEEvent
from models.tokens import count_anthropic_tokens, count_responses_tokens
from models.translate import request as treq
from models.translate import response as tresp
from models.translate.errors import UpstreamResponseError, error_body, map_upstream_error, responses_error_code
from models.translate.responses_request import ResponsesInputError, responses_passthrough, responses_to_chat
from models.translate.responses_response import chat_to_responses, new_response_id
from models.translate.responses_stream import ChatToResponsesStream
from models.translate.responses_tools import ToolTable
from models.translate.stream import AnthropicToOpenAIStream, OpenAIToAnthropicStream

# Body fields some gateways honour to redirect a call (LiteLLM's CVE-2024-6587): never forwarded.
CLIENT_OVERRIDES = frozenset(("api_base", "base_url", "api_key", "api_version", "extra_headers", "headers",
                              "custom_llm_provider", "user_config", "organization"))  # fmt: skip
# Work proportional to the body runs in a worker thread once doing it inline would hold the event
# loop for about a millisecond (a thread hop costs ~50 us). Token counting costs ~65 us per KiB
# of body, and tiktoken releases the GIL while it encodes: from 16 KiB. Translation and
# serialisation cost ~2-3 us per KiB in pure Python (the loop gets the GIL back every 5 ms): from
# 256 KiB. Figures: a 400 KB, 100k-token Claude Code-style body (benchmarks/head_of_line.py).
OFFLOAD_BYTES = 256 * 1024
COUNT_OFFLOAD_BYTES = 16 * 1024
# The worker threads run 5 nice levels below the process: on a busy core the event-loop thread then
# preempts them at once instead of sharing the core with a 100k-token count while small streams wait
# (benchmarks/head_of_line.py, gateway pinned to one core and ~90% busy: small-stream p50 TTFT rise
# from about +1.5 ms to +0.3 ms). Not lower: work that holds the GIL in such a thread must still get
# the CPU when another process competes for it.
OFFLOAD_NICE = 5
_SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
# Upstream statuses that mean "no count_tokens endpoint here", not a model failure.
_NO_COUNT_ENDPOINT = (404, 405, 501)


def upstream_request(call: Call) -> dict[str, Any]:
    """The request body in the upstream's protocol (pure, but for the Responses tool table it keeps)."""
    provider, body = call.provider, call.body
    assert provider is not None and body is not None
    if call.upstream_api is ApiStyle.RESPONSES:
        return responses_passthrough(body, provider.model_id, CLIENT_OVERRIDES)
    target = treq.Target(provider.model_id, provider.prefix, provider.quirks)
    if call.responses:
        # Responses -> Chat Completions, and on to Messages through the existing translator: one
        # copy of each mapping. The tool table turns calls back into custom / namespaced tools.
        try:
            chat, call.tool_table = responses_to_chat(body, target, provider.api is ApiStyle.ANTHROPIC)
        except ResponsesInputError as exc:
            raise InvalidRequest(f"{exc.param}: {exc.message}", param=exc.param) from None
        return treq.openai_to_anthropic(chat, target) if provider.api is ApiStyle.ANTHROPIC else chat
    if call.protocol is ApiStyle.ANTHROPIC and provider.api is ApiStyle.OPENAI:
        return treq.anthropic_to_openai(body, target)
    if call.protocol is ApiStyle.OPENAI and provider.api is ApiStyle.ANTHROPIC:
        return treq.openai_to_anthropic(body, target)
    if provider.api is ApiStyle.ANTHROPIC:
        body = treq.strip_gateway_thinking(body)
    if not CLIENT_OVERRIDES.isdisjoint(body):
        body = {k: v for k, v in body.items() if k not in CLIENT_OVERRIDES}
    return body if body.get("model") == provider.model_id else dict(body, model=provider.model_id)


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):  # per-thread priorities are Linux's; elsewhere as is
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + OFFLOAD_NICE)


_workers = concurrent.futures.ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2)),
                                                 thread_name_prefix="junction-offload", initializer=_lower_priority)


async def offload(call: Call, func: Callable[[], Any], above: int = OFFLOAD_BYTES) -> Any:
    """Run CPU work inline for small requests, in a low-priority worker thread for bodies over
    `above` bytes."""
    if call.body_size > above:
        return await asyncio.get_running_loop().run_in_executor(_workers, func)
    return func()


async def counted_input(call: Call) -> int:
    """The request's input tokens by our tokenizer, counted once per request (the quota's
    reservation and the translated stream's first usage figure both need it)."""
    if call.counted_tokens is None:
        body = call.body
        count = count_responses_tokens if call.responses else count_anthropic_tokens
        call.counted_tokens = await offload(call, lambda: count(body), COUNT_OFFLOAD_BYTES)
    return call.counted_tokens


class Translate:
    def __init__(self, app: Any, responses: StoredResponses | None = None, ping_interval: float = 10.0) -> None:
        self.app = app
        self.responses = responses  # where Responses answers are kept for previous_response_id
        self.ping_interval = ping_interval  # Responses streams: longest client-side silence

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        call = get_call(scope)
        provider = call.provider
        assert provider is not None and call.body is not None
        if call.endpoint == "count_tokens" and provider.api is not ApiStyle.ANTHROPIC:
            await send_count(call, send)
            return
        call.upstream_body = await offload(call, lambda: orjson.dumps(upstream_request(call)))
        await self.app(scope, receive, ClientResponse(call, send, self.responses, self.ping_interval).send)


class ClientResponse:
    """Picks the response path once the answering model is known: failover may have moved the
    call to a model of the other protocol after this layer built the first request."""

    def __init__(self, call: Call, send: Any, responses: StoredResponses | None = None, ping_interval: float = 10.0) -> None:
        self.call, self._send = call, send
        self.responses = responses
        self.ping_interval = ping_interval
        self.inner: _Responder | None = None

    async def send(self, message: dict[str, Any]) -> None:
        if self.inner is None:
            call = self.call
            assert call.provider is not None
            if call.upstream_api is ApiStyle.RESPONSES:
                self.inner = NativeResponses(call, self._send, self.responses)
            elif call.responses:
                self.inner = ResponsesAnswer(call, self._send, self.responses, self.ping_interval)
            elif call.provider.api is call.protocol:
                self.inner = SameProtocol(call, self._send)
            else:
                estimate = 0
                if call.stream and call.protocol is ApiStyle.ANTHROPIC:
                    estimate = await counted_input(call)
                self.inner = CrossProtocol(call, self._send, estimate)
        await self.inner.send(message)


async def send_count(call: Call, send: Any) -> None:
    tokens = await counted_input(call)
    start, body = json_response(200, {"input_tokens": tokens})
    await send(start)
    await send(body)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


class _Responder:
    """A `send` wrapper that lets some answers through and buffers the others whole.

    Subclasses decide at `http.response.start` (`_passes`) and answer buffered bodies in
    `_complete`. Upstream errors always go through the one upstream-error mapper, so a client
    sees the same statuses and wording whichever protocol the upstream speaks.
    """

    def __init__(self, call: Call, send: Any) -> None:
        self.call, self._send = call, send
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.parts: list[bytes] = []
        self.relaying = False

    async def send(self, message: dict[str, Any]) -> None:
        if self.relaying:
            await self._relay(message)
        elif message["type"] == "http.response.start":
            self.status, self.headers = message["status"], list(message.get("headers", []))
            self.relaying = await self._passes(message)
        else:
            self.parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._complete(b"".join(self.parts))

    async def _passes(self, start: dict[str, Any]) -> bool:
        raise NotImplementedError

    async def _relay(self, message: dict[str, Any]) -> None:
        await self._send(message)

    async def _complete(self, raw: bytes) -> None:
        if self.call.provider is not None and self.call.provider.access_key:
            raw = Redactor((self.call.provider.access_key,)).data(raw)  # providers echo keys in errors
        status, body, extra = map_upstream_error(self.status, raw, self.call.protocol,
                                                 _header(self.headers, b"retry-after"))  # fmt: skip
        await self._respond(status, body, extra)

    async def _translated(self, raw: bytes, convert: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> None:
        """A successful upstream body, converted for the client; a clear 502 when it is not one."""
        call = self.call
        try:
            upstream = orjson.loads(raw)
            if not isinstance(upstream, dict):
                raise UpstreamResponseError("upstream answered with something other than a JSON object")
            if call.stream:
                raise UpstreamResponseError("upstream answered a streaming request with a non-streaming body")
            answer = await convert(upstream)
        except orjson.JSONDecodeError:
            await self._respond(502, error_body(call.protocol, 502, "upstream answered with invalid JSON"), {})
            return
        except UpstreamResponseError as exc:
            await self._respond(exc.status, error_body(call.protocol, exc.status, exc.message), {})
            return
        await self._respond(200, answer, {})

    async def _respond(self, status: int, payload: dict[str, Any], extra: dict[str, str]) -> None:
        start, body = json_response(status, payload)
        # The upstream's request-id, x-should-retry and rate-limit headers still apply.
        kept = [(k, v) for k, v in self.headers if k not in (b"content-type", b"content-length", b"retry-after")]
        start["headers"] += kept + [(k.encode(), v.encode()) for k, v in extra.items()]
        await self._send(start)
        await self._send(body)


class SameProtocol(_Responder):
    """Successful answers pass untouched; errors are re-expressed (context overflow wording,
    statuses); an Anthropic-style upstream without count_tokens gets a local count instead."""

    async def _passes(self, start: dict[str, Any]) -> bool:
        if self.status < 400:
            await self._send(start)
            return True
        return False

    async def _complete(self, raw: bytes) -> None:
        if self.call.endpoint == "count_tokens" and self.status in _NO_COUNT_ENDPOINT:
            await send_count(self.call, self._send)
        else:
            await super()._complete(raw)


class _Converting(_Responder):
    """Successful buffered answers go through `_convert` (the upstream's JSON -> the client's); a
    successful upstream stream gets the client's SSE headers and `_open_stream`'s first frames at once."""

    async def _passes(self, start: dict[str, Any]) -> bool:
        is_sse = (_header(self.headers, b"content-type") or "").startswith("text/event-stream")
        if not (self.call.stream and self.status == 200 and is_sse):
            return False  # buffered: answered whole once the body is in
        first = self._open_stream()
        passed = [(k, v) for k, v in self.headers if k != b"content-type"]
        await self._send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS + passed})
        # The stream's opening frames as soon as the upstream answers: headers flush at once.
        await self._send({"type": "http.response.body", "body": first, "more_body": True})
        return True

    def _open_stream(self) -> bytes:
        raise NotImplementedError

    async def _complete(self, raw: bytes) -> None:
        if self.status >= 400:
            await super()._complete(raw)
        else:
            await self._translated(raw, self._convert)

    async def _convert(self, upstream: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


class CrossProtocol(_Converting):
    """The upstream's answer (in its protocol) -> the client's protocol."""

    def __init__(self, call: Call, send: Any, input_estimate: int) -> None:
        super().__init__(call, send)
        self.estimate = input_estimate
        self.stream: OpenAIToAnthropicStream | AnthropicToOpenAIStream | None = None

    def _open_stream(self) -> bytes:
        self.stream = self._new_stream()
        return self.stream.start()  # message_start (and a ping)

    def _new_stream(self) -> OpenAIToAnthropicStream | AnthropicToOpenAIStream:
        model = self.call.requested_model or ""
        if self.call.protocol is ApiStyle.ANTHROPIC:
            return OpenAIToAnthropicStream(model, self.estimate)
        options = (self.call.body or {}).get("stream_options") or {}
        return AnthropicToOpenAIStream(model, bool(options.get("include_usage")))

    async def _relay(self, message: dict[str, Any]) -> None:
        stream = self.stream
        assert stream is not None
        more = message.get("more_body", False)
        error = message.get(ERROR_KEY)
        if error is not None:
            out = stream.fail(*error)
        elif message.get(PING_KEY):
            out = stream.ping()
        else:
            out = b"".join([stream.feed(event) for event in message.get(EVENTS_KEY, ())])
            if not more:
                out += stream.finish()
        if out or not more:
            await self._send({"type": "http.response.body", "body": out, "more_body": more})

    async def _convert(self, upstream: dict[str, Any]) -> dict[str, Any]:
        call = self.call
        model = call.requested_model or ""
        if call.protocol is ApiStyle.ANTHROPIC:
            estimate = None
            usage = upstream.get("usage")
            if not isinstance(usage, dict) or not usage.get("prompt_tokens"):
                # No usage from the upstream: Claude Code's context meter still needs a figure.
                estimate = await counted_input(call)
            return tresp.openai_to_anthropic(upstream, client_model=model, input_estimate=estimate)
        return tresp.anthropic_to_openai(upstream, client_model=model)


class ResponsesAnswer(_Converting):
    """A Chat Completions (or Messages) answer -> the Responses API: the whole body, or the event stream.

    A Messages upstream's answer goes through the Messages -> Chat translator first, so each
    mapping exists once. Errors before the headers take OpenAI's error shape (the mapper's); after
    them the stream ends with `error` + `response.failed` carrying a code Codex acts on.
    """

    def __init__(self, call: Call, send: Any, responses: StoredResponses | None = None, ping_interval: float = 10.0) -> None:
        super().__init__(call, send)
        self.responses = responses
        self.ping_interval = ping_interval
        self.last_sent = time.monotonic()  # when the client last got a byte
        self.stream: ChatToResponsesStream | None = None
        self.via: AnthropicToOpenAIStream | None = None  # Messages upstream: its events -> Chat chunks
        self.decoder = SSEDecoder()

    def _model(self) -> str:
        return self.call.requested_model or (self.call.provider.model if self.call.provider else "")

    def _tools(self) -> ToolTable:
        return self.call.tool_table if isinstance(self.call.tool_table, ToolTable) else ToolTable()

    def _open_stream(self) -> bytes:
        call = self.call
        assert call.body is not None and call.provider is not None
        self.stream = call.responses_stream = ChatToResponsesStream(call.body, self._tools(), self._model())
        if call.provider.api is ApiStyle.ANTHROPIC:
            self.via = AnthropicToOpenAIStream(self._model(), True)
        return b"".join(self.stream.start())  # response.created, response.in_progress

    def _chunks(self, events: Any, last: bool) -> list[dict[str, Any]]:
        """The upstream's events as Chat Completions chunks."""
        if self.via is not None:
            frames = b"".join(self.via.feed(e) for e in events) + (self.via.finish() if last else b"")
            events = self.decoder.feed(frames) if frames else []
        chunks = []
        for event in events:
            data = event.data.strip() if isinstance(event, SSEEvent) else ""
            if not data or data == "[DONE]" or event.comment:
                continue
            payload = orjson.loads(data)
            if isinstance(payload, dict):
                chunks.append(payload)
        return chunks

    async def _relay(self, message: dict[str, Any]) -> None:
        stream = self.stream
        assert stream is not None
        more = message.get("more_body", False)
        error = message.get(ERROR_KEY)
        out: list[bytes] = []
        if error is not None:
            status, text = error
            out = stream.fail(responses_error_code(status, text), text)
        elif message.get(PING_KEY):
            out = [stream.keepalive()]  # a data event: comments do not reset Codex's idle timer
        else:
            for chunk in self._chunks(message.get(EVENTS_KEY, ()), not more):
                out += stream.feed(chunk)  # in-band upstream errors end the stream as failed there
            if not more:
                out += stream.finish()
            elif not out and time.monotonic() - self.last_sent >= self.ping_interval:
                # The upstream is busy but nothing can be shown yet (a tool call's input is held
                # until it is complete): the repair layer's pings only cover upstream silence.
                out = [stream.keepalive()]
        if out:
            self.last_sent = time.monotonic()
        if out or not more:
            await self._send({"type": "http.response.body", "body": b"".join(out), "more_body": more and not stream.done})
        if stream.final is not None and not more:
            await keep_response(self.responses, self.call, stream.final)

    async def _convert(self, upstream: dict[str, Any]) -> dict[str, Any]:
        call = self.call
        assert call.body is not None and call.provider is not None
        if call.provider.api is ApiStyle.ANTHROPIC:
            upstream = tresp.anthropic_to_openai(upstream, client_model=self._model())
        answer = chat_to_responses(upstream, call.body, self._tools(), new_response_id(), int(time.time()), self._model())
        await keep_response(self.responses, call, answer)
        return answer


class NativeResponses(SameProtocol):
    """A native Responses upstream's answer: relayed unchanged when it succeeds (the repair layer
    follows the stream and adds keepalives and failure events in its numbering), re-expressed by the
    one error mapper when it fails, and kept for `previous_response_id` like a translated answer, so a
    conversation may move between upstream paths."""

    def __init__(self, call: Call, send: Any, responses: StoredResponses | None) -> None:
        super().__init__(call, send)
        self.responses = responses
        self.body: list[bytes] = []  # a buffered answer, to keep once whole

    async def _relay(self, message: dict[str, Any]) -> None:
        await self._send(message)
        if message.get("more_body", False):
            if not self.call.stream:
                self.body.append(message.get("body", b""))
            return
        if self.call.stream:
            final = getattr(self.call.responses_stream, "final", None)
        else:
            raw = b"".join(self.body) + message.get("body", b"")
            final = await offload(self.call, lambda: _json_object(raw))
        if isinstance(final, dict) and isinstance(final.get("id"), str):
            await keep_response(self.responses, self.call, final)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


async def keep_response(store: StoredResponses | None, call: Call, response: dict[str, Any]) -> None:
    """Store the conversation a response ends, unless the client said `store: false`."""
    body = call.body or {}
    if store is None or body.get("store") is False or response.get("status") in ("failed", "queued", "in_progress"):
        return
    await store.put(str(response["id"]), input_items(body.get("input")) + list(response.get("output") or []),
                    response=response)  # fmt: skip
