"""Stream state machines: OpenAI chunks -> Anthropic SSE, Anthropic SSE -> OpenAI chunks.

Both are pure: the gateway feeds decoded upstream events and writes the returned bytes. Each
object serves one response and, once it has produced a terminal frame (`message_stop` / `[DONE]`
or an error), returns nothing more.

OpenAI -> Anthropic, tool-call policy (§5.4 rule 5). Anthropic blocks must be strictly
sequential; OpenAI tool-call fragments may interleave, reuse an index, or arrive all at the end.
Blocks are kept in arrival order and exactly one is open at a time; content for the open block
streams live, content for later blocks is held. A block is closed only when it is certainly
finished: text and thinking as soon as anything follows them; a tool call once its arguments
form a complete JSON object (nothing but whitespace can legally follow), or at the end of the
response. So well-behaved upstreams (one call after another) stream every call live, which keeps
real events flowing for Claude Code's idle watchdog during long tool inputs, while interleaved
upstreams degrade to policy (b): held calls are emitted when their turn comes, at the latest at
finish, as start -> one delta -> stop. No fragment is ever sent to a closed or unstarted index.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import orjson

from models.providers import ApiStyle
from models.sse import SSEEvent, encode
from models.translate.errors import stream_error_frame, upstream_stream_error_frame
from models.translate.fragments import Assembly, Pending
from models.translate.ids import to_client_id
from models.translate.response import (
    OVERLOADED_FINISH,
    anthropic_usage,
    arguments_text,
    finish_reason_for,
    new_completion_id,
    new_message_id,
    new_tool_id,
    openai_usage,
    parse_arguments,
    stop_reason_for,
)
from models.translate.thinking import sign

_ANTHROPIC = ApiStyle.ANTHROPIC
_OPENAI = ApiStyle.OPENAI


def _frame(payload: dict[str, Any]) -> bytes:
    """An Anthropic frame: always named, with the name equal to the payload's `type` (§1.5)."""
    return encode(payload["type"], orjson.dumps(payload))


_PING = _frame({"type": "ping"})
_TRUNCATED = "upstream stream ended before the response was complete"


class _Translator:
    """What both directions share: one terminal frame, then silence."""

    _api: ApiStyle

    def __init__(self) -> None:
        self._started = False
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def fail(self, status: int, message: str) -> bytes:
        """An in-band error frame (upstream read error, timeout, abort); nothing follows it."""
        return b"" if self._done else self._fail(status, message)

    def _fail(self, status: int, message: str) -> bytes:
        self._done = True
        return stream_error_frame(self._api, status, message)

    def _upstream_error(self, payload: dict[str, Any]) -> bytes:
        self._done = True
        return upstream_stream_error_frame(payload, self._api)


@dataclass(eq=False, slots=True)
class _Block(Pending):
    """One future content block: text, thinking, or a tool call being assembled."""

    index: int | None = None  # client block index, once started


class OpenAIToAnthropicStream(_Translator):
    """Chat Completions chunks from an upstream -> Anthropic Messages SSE for the client (§5.4)."""

    _api = _ANTHROPIC

    def __init__(self, client_model: str, input_estimate: int) -> None:
        super().__init__()
        self._model = client_model
        self._input_estimate = input_estimate
        self._id = new_message_id()
        self._next_index = 0
        self._finish: str | None = None
        self._stop_sequence: str | None = None
        self._saw_done = False
        self._raw_usage: dict[str, Any] | None = None
        self._saw_tool_use = False
        self.anomalies: list[str] = []  # upstream protocol oddities, for the gateway's logs
        self._assembly: Assembly[_Block] = Assembly(_Block, self.anomalies, "block", ("thinking", "text", "tool_use"))
        self._blocks = self._assembly.items

    # -- inspection ------------------------------------------------------------------------

    @property
    def usage(self) -> dict[str, int]:
        return anthropic_usage(self._raw_usage, self._input_estimate)

    @property
    def saw_tool_use(self) -> bool:
        return self._saw_tool_use

    @property
    def finish_reason(self) -> str | None:
        return self._finish

    # -- public steps ----------------------------------------------------------------------

    def start(self) -> bytes:
        """`message_start` (with the input estimate) and one `ping`, sent as soon as the
        upstream answers 200 so headers flush before the first token (§5.4 rule 1)."""
        if self._started:
            return b""
        self._started = True
        usage = {"input_tokens": self._input_estimate, "output_tokens": 0,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}  # fmt: skip
        message = {"id": self._id, "type": "message", "role": "assistant", "model": self._model, "content": [],
                   "stop_reason": None, "stop_sequence": None, "usage": usage}  # fmt: skip
        return _frame({"type": "message_start", "message": message}) + _PING

    def ping(self) -> bytes:
        return b"" if self._done else _PING

    def feed(self, event: SSEEvent) -> bytes:
        if self._done:
            return b""
        out = self.start()
        if event.comment:
            return out + _PING  # the upstream is alive but idle: keep the client's path alive
        data = event.data.strip()
        if not data:
            return out
        if data == "[DONE]":
            self._saw_done = True
            return out + self._finalize()
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return out + self._fail(502, "upstream sent a malformed stream chunk")
        if not isinstance(chunk, dict):
            return out + self._fail(502, "upstream sent a malformed stream chunk")
        if chunk.get("error"):
            return out + self._upstream_error(chunk)
        return out + self._chunk(chunk)

    def finish(self) -> bytes:
        """Upstream EOF: the proper ending after a finish_reason/[DONE], else an error (rule 8)."""
        if self._done:
            return b""
        out = self.start()
        if self._finish is None and not self._saw_done:
            return out + self._fail(502, _TRUNCATED)
        return out + self._finalize()

    # -- chunk handling --------------------------------------------------------------------

    def _chunk(self, chunk: dict[str, Any]) -> bytes:
        usage, choice = self._assembly.read(chunk)
        if usage is not None:
            self._raw_usage = usage
        if choice is None:
            return b""
        finish = choice.get("finish_reason")
        if finish == OVERLOADED_FINISH:
            return self._pump(final=False) + self._fail(529, "upstream is overloaded (insufficient_system_resource)")
        if isinstance(finish, str) and finish:
            # Remember, but keep reading: usage usually follows in a later chunk (rule 6).
            self._finish = finish
            matched = choice.get("stop_reason")  # vLLM: the matched stop string
            self._stop_sequence = matched if isinstance(matched, str) and matched else None
        return self._pump(final=False)

    # -- block emission --------------------------------------------------------------------

    def _pump(self, final: bool) -> bytes:
        """Emit what can be emitted: start, feed and close blocks strictly in order."""
        return b"".join(self._assembly.pump(final, self))

    # Emitter hooks (fragments.Assembly.pump)
    def started(self, block: _Block) -> bool:
        return block.index is not None

    def open(self, block: _Block) -> list[bytes]:
        return [self._start(block)]

    def flush(self, block: _Block) -> list[bytes]:
        return [self._flush(block)]

    def close(self, block: _Block) -> list[bytes]:
        return [self._close(block)]

    def _start(self, block: _Block) -> bytes:
        block.index = self._next_index
        self._next_index += 1
        content: dict[str, Any]
        if block.kind == "text":
            content = {"type": "text", "text": ""}
        elif block.kind == "thinking":
            content = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            self._saw_tool_use = True
            client_id = to_client_id(block.upstream_id) if block.upstream_id else new_tool_id()
            content = {"type": "tool_use", "id": client_id, "name": block.name, "input": {}}
        return _frame({"type": "content_block_start", "index": block.index, "content_block": content})

    def _flush(self, block: _Block) -> bytes:
        if block.sent == len(block.parts):
            return b""
        text = "".join(block.parts[block.sent :])
        block.sent = len(block.parts)
        if not text:
            return b""
        if block.kind == "text":
            delta = {"type": "text_delta", "text": text}
        elif block.kind == "thinking":
            delta = {"type": "thinking_delta", "thinking": text}
        else:
            delta = {"type": "input_json_delta", "partial_json": text}
        return _frame({"type": "content_block_delta", "index": block.index, "delta": delta})

    def _close(self, block: _Block) -> bytes:
        block.closed = True
        out = b""
        if block.kind == "thinking":
            # Claude Code drops thinking blocks without a signature; it comes right before stop. An
            # upstream that relays Anthropic's own signature (`reasoning_signature`) keeps it.
            signature = {"type": "signature_delta", "signature": block.signature or sign("".join(block.parts))}
            out = _frame({"type": "content_block_delta", "index": block.index, "delta": signature})
        return out + _frame({"type": "content_block_stop", "index": block.index})

    def _finalize(self) -> bytes:
        """Close every block and end the message: one message_delta, one message_stop (rule 7)."""
        truncated = False
        for block in self._blocks:
            if block.kind != "tool_use" or block.name is None:
                continue
            if block.late or parse_arguments("".join(block.parts)) is None:
                if self._finish != "length":
                    # Rule 9: never pass a silently corrupted call on as a success.
                    return self._fail(502, f"upstream sent invalid JSON arguments for tool '{block.name}'")
                truncated = True  # cut off by max_tokens: passed through as it is
        out = self._pump(final=True)
        stop_reason = stop_reason_for(self._finish, has_tool_blocks=self._saw_tool_use, truncated_tool=truncated)
        stop_sequence = self._stop_sequence if stop_reason == "end_turn" else None
        if stop_sequence is not None:
            stop_reason = "stop_sequence"
        self._done = True
        delta = {"stop_reason": stop_reason, "stop_sequence": stop_sequence}
        return (
            out
            + _frame({"type": "message_delta", "delta": delta, "usage": self.usage})
            + _frame({"type": "message_stop"})
        )


@dataclass(slots=True)
class _ToolCall:
    position: int  # OpenAI tool_calls index: tool blocks only, from 0
    start_input: object  # `input` of the start event
    streamed: bool = False  # input_json_delta seen


class AnthropicToOpenAIStream(_Translator):
    """Anthropic Messages SSE from an upstream -> Chat Completions chunks for the client (§5.9)."""

    _api = _OPENAI

    def __init__(self, client_model: str, include_usage: bool) -> None:
        super().__init__()
        self._model = client_model
        self._include_usage = include_usage
        self._id = new_completion_id()
        self._created = int(time.time())
        self._tools: dict[int, _ToolCall] = {}  # by Anthropic block index
        self._usage: dict[str, int] = {"input_tokens": 0, "output_tokens": 0}
        self._stop_reason: str | None = None

    @property
    def usage(self) -> dict[str, Any]:
        return openai_usage(self._usage)

    @property
    def saw_tool_use(self) -> bool:
        return bool(self._tools)

    def start(self) -> bytes:
        """The first chunk, carrying the role, so headers flush before the first token."""
        if self._started:
            return b""
        self._started = True
        return self._chunk({"role": "assistant", "content": ""})

    def ping(self) -> bytes:
        # An SSE comment: ignored by OpenAI clients, but keeps idle connections open.
        return b"" if self._done else b": ping\n\n"

    def feed(self, event: SSEEvent) -> bytes:
        if self._done:
            return b""
        out = self.start()
        if event.comment:
            return out + self.ping()
        try:
            data = orjson.loads(event.data) if event.data.strip() else {}
        except orjson.JSONDecodeError:
            return out + self._fail(502, "upstream sent a malformed stream event")
        if not isinstance(data, dict):
            return out + self._fail(502, "upstream sent a malformed stream event")
        kind = event.event or data.get("type")
        if kind == "error":
            return out + self._upstream_error(data)
        handler = self._HANDLERS.get(kind or "")
        return out + (handler(self, data) if handler else b"")

    def finish(self) -> bytes:
        """Upstream EOF: fine after message_stop; before it the answer is truncated -> error."""
        return b"" if self._done else self._fail(502, _TRUNCATED)

    # -- event handlers --------------------------------------------------------------------

    def _on_ping(self, data: dict[str, Any]) -> bytes:
        return self.ping()

    def _on_message_start(self, data: dict[str, Any]) -> bytes:
        message = data.get("message")
        if isinstance(message, dict):
            self._merge_usage(message.get("usage"))
        return b""

    def _on_block_start(self, data: dict[str, Any]) -> bytes:
        block = data.get("content_block")
        if not isinstance(block, dict):
            return b""
        kind = block.get("type")
        if kind == "tool_use":
            position = len(self._tools)  # tool calls are numbered among tool blocks only
            self._tools[data.get("index", -1)] = _ToolCall(position, block.get("input"))
            function = {"name": block.get("name") or "", "arguments": ""}
            call = {"index": position, "id": block.get("id") or new_tool_id(), "type": "function", "function": function}
            return self._chunk({"tool_calls": [call]})
        if kind == "text" and block.get("text"):
            return self._chunk({"content": block["text"]})
        if kind == "thinking" and block.get("thinking"):
            delta = {"reasoning_content": block["thinking"]}
            if block.get("signature"):  # a server that sends the whole block at once
                delta["reasoning_signature"] = block["signature"]
            return self._chunk(delta)
        return b""

    def _on_block_delta(self, data: dict[str, Any]) -> bytes:
        delta = data.get("delta")
        if not isinstance(delta, dict):
            return b""
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return self._chunk({"content": delta["text"]})
        if kind == "thinking_delta" and delta.get("thinking"):
            return self._chunk({"reasoning_content": delta["thinking"]})
        if kind == "signature_delta" and delta.get("signature"):
            # The thinking block's signature, as LiteLLM carries it: a client (or the Responses
            # translation) that gives it back lets the block return to Anthropic intact.
            return self._chunk({"reasoning_signature": delta["signature"]})
        tool = self._tools.get(data.get("index", -1))
        if kind == "input_json_delta" and tool is not None and delta.get("partial_json"):
            tool.streamed = True
            return self._arguments(tool.position, delta["partial_json"])
        return b""  # citation deltas have no Chat Completions form

    def _on_block_stop(self, data: dict[str, Any]) -> bytes:
        tool = self._tools.get(data.get("index", -1))
        # Some Anthropic-compatible servers put the whole input in the start event.
        if tool is not None and not tool.streamed and isinstance(tool.start_input, dict) and tool.start_input:
            return self._arguments(tool.position, arguments_text(tool.start_input))
        return b""

    def _on_message_delta(self, data: dict[str, Any]) -> bytes:
        delta = data.get("delta")
        if isinstance(delta, dict) and delta.get("stop_reason"):
            self._stop_reason = delta["stop_reason"]
        self._merge_usage(data.get("usage"))
        return b""

    def _on_message_stop(self, data: dict[str, Any]) -> bytes:
        self._done = True
        finish = finish_reason_for(self._stop_reason, has_tool_calls=bool(self._tools))
        out = self._chunk({}, finish)
        if self._include_usage:
            out += encode(None, orjson.dumps(self._envelope([], usage=self.usage)))
        return out + encode(None, b"[DONE]")

    _HANDLERS: ClassVar[dict[str, Callable[[AnthropicToOpenAIStream, dict[str, Any]], bytes]]] = {
        "ping": _on_ping,
        "message_start": _on_message_start,
        "content_block_start": _on_block_start,
        "content_block_delta": _on_block_delta,
        "content_block_stop": _on_block_stop,
        "message_delta": _on_message_delta,
        "message_stop": _on_message_stop,
    }

    # -- chunk building --------------------------------------------------------------------

    def _merge_usage(self, usage: object) -> None:
        if isinstance(usage, dict):  # cumulative totals: present fields overwrite
            self._usage.update({k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)})

    def _arguments(self, position: int, fragment: str) -> bytes:
        return self._chunk({"tool_calls": [{"index": position, "function": {"arguments": fragment}}]})

    def _envelope(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                                 "model": self._model, "choices": choices}  # fmt: skip
        if self._include_usage:
            chunk["usage"] = usage  # null on every chunk but the last, as OpenAI does
        return chunk

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return encode(None, orjson.dumps(self._envelope([choice])))
