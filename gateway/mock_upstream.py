"""A deterministic fake LLM provider for tests and benchmarks.

One process speaks every wire style (OpenAI Chat Completions, Anthropic Messages and the OpenAI
Responses API) on any base path, because routes match by path suffix. It is a raw ASGI app: it is the "direct" baseline of the
latency benchmark, so the hot path does no routing framework work and no per-request task.

Behaviour is chosen per request by knobs, read from `x-mock-<name>` headers or `<name>` query
parameters (the header wins), so one process serves every scenario:

  delay_ms     sleep before sending headers
  ttft_ms      streams: sleep after the headers, before the first chunk
  chunks       streams: number of content chunks (default: one per word)
  gap_ms       streams: sleep between chunks
  status       answer with this HTTP status and a protocol-shaped error body
  retry_after  add a Retry-After header
  fault        reset | hang | stall | close (see `Mock._serve`)
  stall_after  chunks sent before a stall/close fault (default 2)
  reply        the exact reply text
  words        reply with N words "w1 w2 ..." (fixed-size bodies for benchmarks)
  cached       report this many of the input tokens as read from a prompt cache
  chunk_bytes  reply with `chunks` pieces of N bytes of filler each (a big, fast stream: chunks=4096,
               chunk_bytes=16384 streams 64 MiB; the pieces share one string, no word splitting)

Control endpoints live under /_mock/: health, requests (GET lists, DELETE clears), stats, and
script (POST queues verbatim responses, DELETE clears the queue). `stats` counts requests received,
completed, aborted and open, and `stream_bytes`: body bytes of streamed answers the server has
accepted, which stops growing while a client does not read (backpressure).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import re
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import parse_qsl

import orjson

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

MAX_RECORDED = 1000
DEFAULT_STALL_AFTER = 2
KNOB_PREFIX = b"x-mock-"
MODELS = ("gpt-mock", "claude-mock")

JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
SSE_HEADERS: Headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]

ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                         403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                         429: "rate_limit_error", 500: "api_error", 504: "timeout_error",
                         529: "overloaded_error"}  # fmt: skip
OPENAI_ERRORS = {400: ("invalid_request_error", "invalid_request"), 401: ("invalid_request_error", "invalid_api_key"),
                 403: ("permission_error", "forbidden"), 404: ("invalid_request_error", "model_not_found"),
                 429: ("requests", "rate_limit_exceeded")}  # fmt: skip

# One chunk per word: each piece carries its leading whitespace; trailing whitespace stays on the last.
WORD_PIECE = re.compile(r"\s*\S+(?:\s+$)?")


class ClientGone(Exception):
    """The client disconnected while the mock was waiting."""


# --- request parsing ------------------------------------------------------------------------------


def read_knobs(scope: Scope) -> dict[str, str]:
    knobs = dict(parse_qsl(scope["query_string"].decode("latin-1"))) if scope["query_string"] else {}
    for name, value in scope["headers"]:
        if name.startswith(KNOB_PREFIX):
            # `x-mock-retry-after` and `x-mock-retry_after` both work.
            knobs[name[len(KNOB_PREFIX) :].decode("latin-1").replace("-", "_")] = value.decode("latin-1")
    return knobs


def knob_number(knobs: dict[str, str], name: str, default: float = 0) -> float:
    try:
        return float(knobs[name])
    except (KeyError, ValueError):
        return default


def text_of(content: Any) -> str:
    """Plain text of a message content: a string, or a list of text parts/blocks (others skipped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def tool_result_text(message: dict[str, Any]) -> str | None:
    """The result text when `message` returns a tool result (OpenAI role "tool", Anthropic tool_result block)."""
    if message.get("role") == "tool":
        return text_of(message.get("content"))
    content = message.get("content")
    if message.get("role") == "user" and isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                return text_of(block.get("content"))
    return None


def tool_choice(choice: Any) -> tuple[bool, str | None] | None:
    """(forced, name) for either protocol's tool_choice; None when tools are switched off."""
    if choice == "none":
        return None
    if choice == "required":
        return True, None
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "none":
            return None
        if kind == "any":
            return True, None
        if kind == "tool":
            return True, choice.get("name")
        if kind == "function":  # Chat nests the name, Responses does not
            return True, (choice.get("function") or {}).get("name") or choice.get("name")
    return False, None


def tool_specs(tools: Any) -> list[tuple[str, dict[str, Any]]]:
    """(name, JSON schema) of each tool: OpenAI `{function: {name, parameters}}`, Anthropic `{name, input_schema}`."""
    specs = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        schema = fn.get("parameters") or fn.get("input_schema") or {}
        if isinstance(fn.get("name"), str):
            specs.append((fn["name"], schema if isinstance(schema, dict) else {}))
    return specs


SCHEMA_SAMPLES: dict[str, Any] = {"string": "mock", "integer": 1, "number": 1, "boolean": True, "array": [],
                                  "object": {}}  # fmt: skip


def sample_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """Deterministic arguments that satisfy the schema's `required` properties."""
    properties = schema.get("properties") or {}
    args = {}
    for name in schema.get("required") or []:
        kind = (properties.get(name) or {}).get("type")
        kind = kind[0] if isinstance(kind, list) and kind else kind
        args[name] = SCHEMA_SAMPLES.get(kind, "mock") if isinstance(kind, str) else "mock"
    return args


def split_even(text: str, n: int) -> list[str]:
    """`text` in `n` contiguous pieces of near-equal length (fewer if the text is shorter)."""
    n = max(1, min(n, len(text)))
    return [text[i * len(text) // n : (i + 1) * len(text) // n] for i in range(n)]


# --- the reply ------------------------------------------------------------------------------------


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text


@dataclass
class Reply:
    """What to answer, independent of the wire style."""

    id: str
    model: str
    created: int
    text: str
    tool: ToolCall | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int  # of input_tokens, read from a prompt cache
    stream_usage: bool  # OpenAI stream_options.include_usage
    pieces: list[str]  # stream fragments of the text, or of the tool arguments
    events: int = 0  # Responses streams: events sent so far (the next sequence_number)


def responses_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A Responses `input` as Chat-like messages: enough for `plan_reply` to find the user's text and a
    tool result."""
    items = body.get("input")
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    out: list[dict[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        if item.get("type") in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            out.append({"role": "tool", "content": output if isinstance(output, str) else text_of(output)})
        elif item.get("type", "message") == "message":
            out.append({"role": item.get("role"), "content": text_of(item.get("content"))})
    return out


def plan_reply(body: dict[str, Any], knobs: dict[str, str], n: int, anthropic: bool, responses: bool = False) -> Reply:
    if responses:
        body = {**body, "messages": responses_messages(body)}
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    result = tool_result_text(last)
    user_text = next((text_of(m.get("content")) for m in reversed(messages)
                      if isinstance(m, dict) and m.get("role") == "user"), "")  # fmt: skip
    chunks = int(knob_number(knobs, "chunks"))
    filler = ""
    if "reply" in knobs:
        text = knobs["reply"]
    elif "words" in knobs:
        text = " ".join(f"w{i}" for i in range(1, int(knob_number(knobs, "words")) + 1))
    elif "chunk_bytes" in knobs:
        size = max(1, int(knob_number(knobs, "chunk_bytes")))
        filler = ("0123456789abcdef" * (size // 16 + 1))[:size]  # no whitespace: counted as one word
        text = filler * max(1, chunks)
    elif result is not None:
        text = f"Tool result received: {result[:200]}"
    else:
        text = f"Mock reply to: {user_text[:200]}"

    tool = None
    specs = tool_specs(body.get("tools"))
    choice = tool_choice(body.get("tool_choice"))
    if specs and choice and result is None:
        forced, name = choice
        lowered = user_text.lower()
        if forced or "use tool" in lowered or "call tool" in lowered:
            name, schema = next((s for s in specs if s[0] == name), specs[0])
            call_id = f"toolu_mock{n}" if anthropic else f"call_mock{n}"
            tool = ToolCall(call_id, name, orjson.dumps(sample_arguments(schema)).decode())

    if tool:
        pieces = split_even(tool.arguments, max(2, chunks))  # always >= 2 fragments when possible
    elif filler:
        pieces = [filler] * max(1, chunks)  # one shared string rather than `chunks` slices of the text
    elif chunks > 0:
        pieces = split_even(text, chunks)
    else:
        pieces = WORD_PIECE.findall(text) or [text]
    counted = tool.arguments if tool else text
    prompt = [body.get(k) for k in ("system", "instructions", "tools", "messages") if k in body]
    stream_options = body.get("stream_options")
    input_tokens = max(1, len(orjson.dumps(prompt)) // 4)
    return Reply(
        id=f"resp_mock{n}" if responses else f"msg_mock{n}" if anthropic else f"chatcmpl-mock-{n}",
        model=str(body.get("model", "mock")),
        created=int(time.time()),
        text=text,
        tool=tool,
        input_tokens=input_tokens,
        output_tokens=max(1, len(counted.split())),
        cached_tokens=min(input_tokens, int(knob_number(knobs, "cached"))),
        stream_usage=isinstance(stream_options, dict) and stream_options.get("include_usage") is True,
        pieces=pieces,
    )


def sse(data: dict[str, Any], event: str | None = None) -> bytes:
    frame = b"data: " + orjson.dumps(data) + b"\n\n"
    return b"event: " + event.encode() + b"\n" + frame if event else frame


class OpenAIStyle:
    """Chat Completions bodies, chunks and errors."""

    @staticmethod
    def error(status: int, message: str) -> dict[str, Any]:
        kind, code = OPENAI_ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    @staticmethod
    def usage(r: Reply) -> dict[str, int]:
        return {"prompt_tokens": r.input_tokens, "completion_tokens": r.output_tokens,
                "total_tokens": r.input_tokens + r.output_tokens,
                "prompt_tokens_details": {"cached_tokens": r.cached_tokens}}  # fmt: skip

    @staticmethod
    def finish(r: Reply) -> str:
        return "tool_calls" if r.tool else "stop"

    def complete(self, r: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": None if r.tool else r.text, "refusal": None}
        if r.tool:
            message["tool_calls"] = [{"id": r.tool.id, "type": "function",
                                      "function": {"name": r.tool.name, "arguments": r.tool.arguments}}]  # fmt: skip
        return {"id": r.id, "object": "chat.completion", "created": r.created, "model": r.model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish(r)}],
                "usage": self.usage(r)}  # fmt: skip

    @staticmethod
    def chunk(r: Reply, delta: dict[str, Any], finish: str | None = None) -> bytes:
        data = {"id": r.id, "object": "chat.completion.chunk", "created": r.created, "model": r.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}  # fmt: skip
        if r.stream_usage:
            data["usage"] = None  # only the trailing usage chunk carries it
        return sse(data)

    def open(self, r: Reply) -> bytes:
        if r.tool:
            call = {"index": 0, "id": r.tool.id, "type": "function", "function": {"name": r.tool.name, "arguments": ""}}
            return self.chunk(r, {"role": "assistant", "content": None, "tool_calls": [call]})
        return self.chunk(r, {"role": "assistant", "content": ""})

    def delta(self, r: Reply, piece: str) -> bytes:
        if r.tool:
            return self.chunk(r, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        return self.chunk(r, {"content": piece})

    def close(self, r: Reply) -> bytes:
        frames = self.chunk(r, {}, self.finish(r))
        if r.stream_usage:
            frames += sse({"id": r.id, "object": "chat.completion.chunk", "created": r.created, "model": r.model,
                           "choices": [], "usage": self.usage(r)})  # fmt: skip
        return frames + b"data: [DONE]\n\n"


class AnthropicStyle:
    """Messages bodies, SSE events and errors."""

    @staticmethod
    def error(status: int, message: str) -> dict[str, Any]:
        kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    @staticmethod
    def event(data: dict[str, Any]) -> bytes:
        return sse(data, data["type"])

    @staticmethod
    def block(r: Reply, streaming: bool) -> dict[str, Any]:
        if r.tool:
            tool_input = {} if streaming else orjson.loads(r.tool.arguments)
            return {"type": "tool_use", "id": r.tool.id, "name": r.tool.name, "input": tool_input}
        return {"type": "text", "text": "" if streaming else r.text}

    def message(self, r: Reply, streaming: bool) -> dict[str, Any]:
        # Streaming starts with an empty shell; the totals arrive in message_delta.
        # Anthropic's input_tokens leave out what was read from the cache.
        usage = {"input_tokens": r.input_tokens - r.cached_tokens, "cache_read_input_tokens": r.cached_tokens,
                 "output_tokens": 1 if streaming else r.output_tokens}  # fmt: skip
        return {"id": r.id, "type": "message", "role": "assistant", "model": r.model,
                "content": [] if streaming else [self.block(r, False)],
                "stop_reason": None if streaming else ("tool_use" if r.tool else "end_turn"), "stop_sequence": None,
                "usage": usage}  # fmt: skip

    def complete(self, r: Reply) -> dict[str, Any]:
        return self.message(r, False)

    def open(self, r: Reply) -> bytes:
        start = {"type": "content_block_start", "index": 0, "content_block": self.block(r, True)}
        return (self.event({"type": "message_start", "message": self.message(r, True)})
                + self.event({"type": "ping"}) + self.event(start))  # fmt: skip

    def delta(self, r: Reply, piece: str) -> bytes:
        delta = {"type": "input_json_delta", "partial_json": piece} if r.tool else {"type": "text_delta", "text": piece}
        return self.event({"type": "content_block_delta", "index": 0, "delta": delta})

    def close(self, r: Reply) -> bytes:
        stop = {"stop_reason": "tool_use" if r.tool else "end_turn", "stop_sequence": None}
        usage = {"input_tokens": r.input_tokens - r.cached_tokens, "cache_read_input_tokens": r.cached_tokens,
                 "output_tokens": r.output_tokens}  # fmt: skip
        return (self.event({"type": "content_block_stop", "index": 0})
                + self.event({"type": "message_delta", "delta": stop, "usage": usage})
                + self.event({"type": "message_stop"}))  # fmt: skip


class ResponsesStyle:
    """Responses API bodies, SSE events (numbered per reply) and errors (OpenAI's shape)."""

    error = staticmethod(OpenAIStyle.error)

    @staticmethod
    def usage(r: Reply) -> dict[str, Any]:
        return {"input_tokens": r.input_tokens, "input_tokens_details": {"cached_tokens": r.cached_tokens},
                "output_tokens": r.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": r.input_tokens + r.output_tokens}  # fmt: skip

    @staticmethod
    def item(r: Reply, done: bool) -> dict[str, Any]:
        status = "completed" if done else "in_progress"
        if r.tool:
            return {"type": "function_call", "id": f"fc_{r.id}", "call_id": r.tool.id, "name": r.tool.name,
                    "arguments": r.tool.arguments if done else "", "status": status}  # fmt: skip
        content = [{"type": "output_text", "text": r.text, "annotations": [], "logprobs": []}] if done else []
        return {"type": "message", "id": f"msg_{r.id}", "role": "assistant", "status": status, "content": content}

    def response(self, r: Reply, done: bool) -> dict[str, Any]:
        return {"id": r.id, "object": "response", "created_at": r.created, "model": r.model,
                "status": "completed" if done else "in_progress", "error": None, "incomplete_details": None,
                "instructions": None, "metadata": {}, "parallel_tool_calls": True, "temperature": None,
                "tool_choice": "auto", "tools": [], "top_p": None, "text": {"format": {"type": "text"}},
                "output": [self.item(r, True)] if done else [], "usage": self.usage(r) if done else None}  # fmt: skip

    def complete(self, r: Reply) -> dict[str, Any]:
        return self.response(r, True)

    @staticmethod
    def event(r: Reply, kind: str, **fields: Any) -> bytes:
        r.events += 1
        return sse({"type": kind, "sequence_number": r.events - 1, **fields}, kind)

    def open(self, r: Reply) -> bytes:
        frames = (self.event(r, "response.created", response=self.response(r, False))
                  + self.event(r, "response.in_progress", response=self.response(r, False))
                  + self.event(r, "response.output_item.added", output_index=0, item=self.item(r, False)))  # fmt: skip
        if not r.tool:
            frames += self.event(r, "response.content_part.added", item_id=f"msg_{r.id}", output_index=0, content_index=0,
                                 part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})  # fmt: skip
        return frames

    def delta(self, r: Reply, piece: str) -> bytes:
        if r.tool:
            return self.event(r, "response.function_call_arguments.delta", item_id=f"fc_{r.id}", output_index=0, delta=piece)
        return self.event(r, "response.output_text.delta", item_id=f"msg_{r.id}", output_index=0, content_index=0,
                          delta=piece, logprobs=[])  # fmt: skip

    def close(self, r: Reply) -> bytes:
        if r.tool:
            frames = self.event(r, "response.function_call_arguments.done", item_id=f"fc_{r.id}", output_index=0,
                                name=r.tool.name, arguments=r.tool.arguments)  # fmt: skip
        else:
            part = {"type": "output_text", "text": r.text, "annotations": [], "logprobs": []}
            frames = (self.event(r, "response.output_text.done", item_id=f"msg_{r.id}", output_index=0, content_index=0,
                                 text=r.text, logprobs=[])
                      + self.event(r, "response.content_part.done", item_id=f"msg_{r.id}", output_index=0,
                                   content_index=0, part=part))  # fmt: skip
        return (frames + self.event(r, "response.output_item.done", output_index=0, item=self.item(r, True))
                + self.event(r, "response.completed", response=self.response(r, True)))  # fmt: skip


Style = OpenAIStyle | AnthropicStyle | ResponsesStyle
OPENAI, ANTHROPIC, RESPONSES = OpenAIStyle(), AnthropicStyle(), ResponsesStyle()


# --- transport helpers ----------------------------------------------------------------------------


class Client:
    """The client end of one request: sleeps that end early (ClientGone) when it disconnects."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._gone: asyncio.Future[None] | None = None  # created on the first sleep only (hot path stays task-free)

    async def _wait_disconnect(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass

    def _watch(self) -> asyncio.Future[None]:
        if self._gone is None:
            self._gone = asyncio.ensure_future(self._wait_disconnect())
        return self._gone

    async def read_body(self) -> bytes:
        parts = []
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                return parts[0] if len(parts) == 1 else b"".join(parts)

    async def pause(self, ms: float) -> None:
        if ms > 0:
            done, _ = await asyncio.wait({self._watch()}, timeout=ms / 1000)
            if done:
                raise ClientGone

    async def until_gone(self) -> None:
        await self._watch()
        raise ClientGone

    def close(self) -> None:
        if self._gone is not None and not self._gone.done():
            self._gone.cancel()


async def send_json(send: Send, status: int, data: Any, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = orjson.dumps(data)
    await send({"type": "http.response.start", "status": status,
                "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *headers]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


async def send_steps(send: Send, client: Client, status: int, headers: Headers, steps: list[bytes], *,
                     ttft_ms: float = 0, gap_ms: float = 0, cut_after: int | None = None,
                     stall: bool = False) -> None:  # fmt: skip
    """Headers, then each step as one body write with `gap_ms` between. With `cut_after`, only that
    many steps go out, then the body ends early (or, with `stall`, never ends)."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await client.pause(ttft_ms)
    sent = steps if cut_after is None else steps[:cut_after]
    for i, step in enumerate(sent):
        await client.pause(gap_ms if i else 0)
        await send({"type": "http.response.body", "body": step, "more_body": stall or i < len(sent) - 1})
    if stall:
        await client.until_gone()
    if not sent:
        await send({"type": "http.response.body", "body": b""})


async def reset_connection(send: Send, client: Client) -> None:
    """Drop the TCP connection with an RST and no response. Uvicorn answers 500 to an app that raises
    before starting a response, so the transport is reached through the server's bound `send`."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionResetError("mock fault: reset")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    try:
        await client.until_gone()  # let the server notice, so it does not answer on our behalf
    except ClientGone:
        pass


# --- the app --------------------------------------------------------------------------------------


class Mock:
    """The ASGI app and its state: recorded requests, counters and the script queue."""

    def __init__(self) -> None:
        self.requests: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDED)
        self.stats = {"received": 0, "completed": 0, "aborted": 0, "open": 0, "stream_bytes": 0}
        self.script: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # nothing to set up; just acknowledge
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        client = Client(receive)
        try:
            if scope["path"].startswith("/_mock/"):
                await self._control(scope, client, send)
                return
            self.stats["received"] += 1
            self.stats["open"] += 1
            try:
                await self._serve(scope, client, send)
                self.stats["completed"] += 1
            except ClientGone:
                self.stats["aborted"] += 1
            finally:
                self.stats["open"] -= 1
        finally:
            client.close()

    def _record(self, scope: Scope, raw: bytes) -> Any:
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        self.requests.append({"method": scope["method"], "path": scope["path"],
                              "query": scope["query_string"].decode("latin-1"),
                              "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
                              "body": body})  # fmt: skip
        return body

    async def _serve(self, scope: Scope, client: Client, send: Send) -> None:
        body = self._record(scope, await client.read_body())
        path, method = scope["path"], scope["method"]
        style: Style = ANTHROPIC if path.endswith(("/messages", "/messages/count_tokens")) else \
            RESPONSES if path.endswith("/responses") else OPENAI
        route = next((r for r in ("/chat/completions", "/messages", "/messages/count_tokens", "/responses", "/models")
                      if path.endswith(r)), None)  # fmt: skip
        if route is None:
            await send_json(send, 404, style.error(404, f"mock: no route for {path}"))
            return
        if method != ("GET" if route == "/models" else "POST"):
            await send_json(send, 405, style.error(405, f"mock: {method} not allowed on {path}"))
            return
        body = body if isinstance(body, dict) else {}
        if route in ("/chat/completions", "/messages", "/responses") and (entry := self._take_script(body.get("model"))):
            await self._serve_script(entry, client, send)
            return

        knobs = read_knobs(scope)
        headers = [(b"retry-after", knobs["retry_after"].encode())] if "retry_after" in knobs else []
        await client.pause(knob_number(knobs, "delay_ms"))
        fault = knobs.get("fault")
        if fault == "reset":
            await reset_connection(send, client)
            return
        if fault == "hang":
            await client.until_gone()
        status = int(knob_number(knobs, "status", 200))
        if status >= 400:
            await send_json(send, status, style.error(status, f"mock: status {status} requested"), headers)
            return
        if route == "/models":
            await send_json(send, 200, self._models(), headers)
            return
        reply = plan_reply(body, knobs, next(self._ids), style is ANTHROPIC, style is RESPONSES)
        if route == "/messages/count_tokens":
            await send_json(send, 200, {"input_tokens": reply.input_tokens}, headers)
            return

        stall_after = int(knob_number(knobs, "stall_after", DEFAULT_STALL_AFTER))
        if body.get("stream") is True:
            steps = [style.open(reply) + style.delta(reply, reply.pieces[0]),
                     *(style.delta(reply, p) for p in reply.pieces[1:]), style.close(reply)]  # fmt: skip
            headers = SSE_HEADERS + headers
            send = self._counted(send)
        elif fault in ("stall", "close"):
            whole = orjson.dumps(style.complete(reply))
            steps = [whole[: len(whole) // 2], whole[len(whole) // 2 :]]
            headers = JSON_HEADERS + headers
        else:
            await send_json(send, 200, style.complete(reply), headers)
            return
        cut = min(stall_after, len(steps) - 1) if fault in ("stall", "close") else None  # never the terminator
        await send_steps(send, client, 200, headers, steps, ttft_ms=knob_number(knobs, "ttft_ms"),
                         gap_ms=knob_number(knobs, "gap_ms"), cut_after=cut, stall=fault == "stall")  # fmt: skip

    def _counted(self, send: Send) -> Send:
        """`send`, adding the body bytes the server accepted to `stream_bytes`. The server's send
        waits while the client is not reading, so the counter shows how far streams really got."""

        async def counted(message: Message) -> None:
            await send(message)
            self.stats["stream_bytes"] += len(message.get("body", b""))

        return counted

    @staticmethod
    def _models() -> dict[str, Any]:
        # One list both SDKs parse: OpenAI's {object, created, owned_by} plus Anthropic's {type, display_name, ...}.
        data = [{"id": m, "object": "model", "type": "model", "created": 0, "created_at": "2025-01-01T00:00:00Z",
                 "owned_by": "mock", "display_name": m} for m in MODELS]  # fmt: skip
        return {"object": "list", "data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]}

    # --- scripted responses ---

    def _take_script(self, model: Any) -> dict[str, Any] | None:
        for i, entry in enumerate(self.script):
            if entry.get("match_model") in (None, model):
                return self.script.pop(i)
        return None

    async def _serve_script(self, entry: dict[str, Any], client: Client, send: Send) -> None:
        encoding = "latin-1" if entry.get("encoding") == "latin1" else "utf-8"
        steps = [c.encode(encoding) for c in entry.get("chunks") or []]
        headers = [(k.lower().encode("latin-1"), str(v).encode("latin-1"))
                   for k, v in (entry.get("headers") or {}).items()]  # fmt: skip
        if entry.get("gzip"):
            # Compressed as one body, then cut into as many writes as there were chunks.
            compressed = gzip.compress(b"".join(steps))
            steps = [compressed[i * len(compressed) // len(steps) : (i + 1) * len(compressed) // len(steps)]
                     for i in range(len(steps))] or [compressed]  # fmt: skip
            headers.append((b"content-encoding", b"gzip"))
        cut = len(steps) - 1 if entry.get("close_early") else None
        await send_steps(send, client, int(entry.get("status", 200)), headers, steps,
                         gap_ms=float(entry.get("gap_ms") or 0), cut_after=cut)  # fmt: skip

    # --- control endpoints ---

    async def _control(self, scope: Scope, client: Client, send: Send) -> None:
        raw = await client.read_body()
        name, method = scope["path"][len("/_mock/") :], scope["method"]
        if (name, method) == ("health", "GET"):
            await send_json(send, 200, {"ok": True})
        elif (name, method) == ("requests", "GET"):
            await send_json(send, 200, list(self.requests))
        elif (name, method) == ("requests", "DELETE"):
            self.requests.clear()
            await send_json(send, 200, {"ok": True})
        elif (name, method) == ("stats", "GET"):
            await send_json(send, 200, self.stats)
        elif (name, method) == ("script", "POST"):
            try:
                responses = orjson.loads(raw)["responses"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                responses = None
            if not isinstance(responses, list) or not all(isinstance(r, dict) for r in responses):
                await send_json(send, 400, {"error": 'expected {"responses": [{...}, ...]}'})
                return
            self.script.extend(responses)
            await send_json(send, 200, {"ok": True, "queued": len(self.script)})
        elif (name, method) == ("script", "DELETE"):
            self.script.clear()
            await send_json(send, 200, {"ok": True})
        else:
            await send_json(send, 404, {"error": f"no control endpoint {method} {scope['path']}"})


def build_app() -> ASGIApp:
    return Mock()


def run(host: str = "127.0.0.1", port: int = 9100, log_level: str = "warning", certfile: str | None = None,
        keyfile: str | None = None) -> None:  # fmt: skip
    """Serve plain HTTP, or HTTPS when `certfile` (and `keyfile`, unless the key is in the same PEM) is given:
    tests use that to stand in for an upstream whose certificate the gateway must verify."""
    import uvicorn

    # A short graceful-shutdown timeout: hung requests (fault=hang) would otherwise block exit.
    uvicorn.run(build_app(), host=host, port=port, log_level=log_level, loop="auto", http="auto",
                access_log=False, lifespan="off", timeout_graceful_shutdown=2,
                ssl_certfile=certfile, ssl_keyfile=keyfile)  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Deterministic mock LLM upstream (OpenAI and Anthropic styles)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--certfile", help="PEM certificate (chain): serve HTTPS instead of HTTP")
    parser.add_argument("--keyfile", help="PEM private key for --certfile (if not inside it)")
    cli = parser.parse_args()
    if cli.keyfile and not cli.certfile:
        parser.error("--keyfile needs --certfile")
    run(cli.host, cli.port, cli.log_level, certfile=cli.certfile, keyfile=cli.keyfile)
