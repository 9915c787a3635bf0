"""Protocol conformance over real sockets (docs/conformance.md maps every rule to its tests).

One `junction serve` process and one mock upstream process serve the whole module. The mock
plays OpenAI-style, Kimi-like (`moonshotai/*` at `/coding/v1`), DeepSeek-like (`deepseek/*`, so
DeepSeek quirks apply) and Anthropic-style (`anth/*`) providers; scripted responses are written
byte for byte (tests/conformance_streams.py builds them) and matched by the upstream model name,
so each test names its own model. Every client stream is read twice: raw with httpx, to check
the exact frames against the grammar of protocol-conformance §1.5 / §3.2, and through the official
`anthropic` / `openai` SDK, which must either give the exact expected result or raise an APIError.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import anthropic
import httpx
import openai
import pytest

from models.tokens import count_anthropic_tokens
from models.translate.ids import to_client_id
from models.translate.thinking import sign
from tests.conformance_streams import (
    DONE,
    KEEP_ALIVE,
    KIMI_USAGE,
    ROLE,
    an_end,
    an_error_body,
    an_sse,
    an_start,
    an_text,
    an_text_stream,
    an_thinking,
    an_tool,
    call,
    calls,
    deepseek_reasoning_text_tool,
    kimi_thinking_tool,
    oa_chunk,
    oa_completion,
    oa_error,
    oa_text_stream,
    oa_usage_chunk,
    text,
    usage,
)
from tests.procs import free_port, start_mock_upstream, start_process

pytestmark = pytest.mark.timeout(30)

KEY = "conformance-gateway-key-0123456789"
SECRET = "conformance-upstream-secret-abcdef"
PING_S = 0.3
CLIENT_TIMEOUT = 10.0
SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8"}
JSON_HEADERS = {"content-type": "application/json"}
SERIAL = itertools.count(1)

CONFIG = """
version: v0.4.0
llm_providers:
  - model: mock/t-listed
    base_url: {mock}/v1
  - model: mock/*
    base_url: {mock}/v1
    access_key: $CONF_UPSTREAM_SECRET
  - model: moonshotai/*
    base_url: {mock}/coding/v1
    access_key: $CONF_UPSTREAM_SECRET
  - model: deepseek/*
    base_url: {mock}/v1
    access_key: $CONF_UPSTREAM_SECRET
  - model: anth/*
    base_url: {mock}
    provider_interface: anthropic
    access_key: $CONF_UPSTREAM_SECRET
  - model: anthv1/*
    base_url: {mock}/v1
    provider_interface: anthropic
    access_key: $CONF_UPSTREAM_SECRET
  - model: nocount/*
    base_url: {mock}
    provider_interface: anthropic
    access_key: $CONF_UPSTREAM_SECRET
    headers: {{x-mock-status: "404"}}
  - model: cut/*
    base_url: {mock}/v1
    provider_interface: openai
    headers: {{x-mock-fault: close}}
gateway_keys:
  - {{name: conformance, key: $CONF_GATEWAY_KEY}}
streaming:
  ping_interval: {ping}s
"""


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Frame:
    """One SSE frame as the client received it, and when (seconds after the request was sent)."""

    event: str | None
    data: str
    at: float
    comment: bool = False

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    raw: bytes
    frames: list[Frame] = field(default_factory=list)
    tail: bytes = b""  # bytes after the last complete frame

    def json(self) -> Any:
        return json.loads(self.raw)


def parse_frame(raw: bytes, at: float) -> Frame:
    """A frame of the gateway's own output: LF line ends, only `event:`, `data:` and comment lines."""
    event, data, comments = None, [], 0
    for line in raw.decode("utf-8").split("\n"):
        if line.startswith(":"):
            comments += 1
        elif line.startswith("event: "):
            assert event is None, f"two event lines in {raw!r}"
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            data.append(line[len("data: ") :])
        else:
            raise AssertionError(f"unexpected SSE line {line!r} in {raw!r}")
    assert not comments or not data, f"comment mixed into an event: {raw!r}"
    return Frame(event, "\n".join(data), at, comment=bool(comments))


@dataclass
class Gateway:
    url: str
    mock: str

    def an(self, **kwargs: Any) -> anthropic.Anthropic:
        kwargs.setdefault("api_key", KEY)
        return anthropic.Anthropic(base_url=kwargs.pop("base_url", self.url), max_retries=0,
                                   timeout=CLIENT_TIMEOUT, **kwargs)  # fmt: skip

    def oa(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=KEY, max_retries=0, timeout=CLIENT_TIMEOUT)

    def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
        """A request read to the end; SSE bodies are split into frames with arrival times."""
        started = time.monotonic()
        all_headers = {"x-api-key": KEY, **(headers or {})}
        with httpx.stream("POST", f"{self.url}{path}", json=body, headers=all_headers,
                          timeout=CLIENT_TIMEOUT) as response:  # fmt: skip
            reply = Reply(response.status_code, response.headers, b"")
            pending = b""
            for piece in response.iter_raw():
                reply.raw += piece
                pending += piece
                while b"\n\n" in pending:
                    frame, pending = pending.split(b"\n\n", 1)
                    reply.frames.append(parse_frame(frame, time.monotonic() - started))
            reply.tail = pending
        if not reply.headers.get("content-type", "").startswith("text/event-stream"):
            reply.frames = []
        return reply


class Upstream:
    """Scripts for the mock and what it received."""

    def __init__(self, base: str) -> None:
        self.base = base

    def script(self, model: str, chunks: list[str], *, status: int = 200, headers: dict[str, str] | None = None,
               times: int = 1, **options: Any) -> None:  # fmt: skip
        entry = {"match_model": model, "status": status, "headers": SSE_HEADERS if headers is None else headers,
                 "chunks": chunks, **options}  # fmt: skip
        httpx.post(f"{self.base}/_mock/script", json={"responses": [entry] * times}, timeout=5).raise_for_status()

    def once(self, model: str, chunks: list[str] | None, **options: Any) -> str:
        """A model name no other request uses (`model` plus a serial number), with `chunks`
        scripted for it. The gateway cools a model down after failures, so failing requests that
        shared a name would change each other's answers."""
        fresh = f"{model}-{next(SERIAL)}"
        if chunks is not None:
            self.script(fresh.split("/", 1)[1], chunks, **options)
        return fresh

    def requests(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.base}/_mock/requests", timeout=5).json()

    def stats(self) -> dict[str, int]:
        return httpx.get(f"{self.base}/_mock/stats", timeout=5).json()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with start_mock_upstream() as (_, mock):
        config = tmp_path_factory.mktemp("conformance") / "config.yaml"
        config.write_text(CONFIG.format(mock=mock, ping=PING_S))
        port = free_port()
        args = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning"]  # fmt: skip
        env = dict(os.environ, CONF_UPSTREAM_SECRET=SECRET, CONF_GATEWAY_KEY=KEY)
        with start_process(args, f"http://127.0.0.1:{port}/healthz", env=env):
            yield Gateway(f"http://127.0.0.1:{port}", mock)


@pytest.fixture()
def up(gw: Gateway) -> Upstream:
    httpx.delete(f"{gw.mock}/_mock/script", timeout=5).raise_for_status()
    httpx.delete(f"{gw.mock}/_mock/requests", timeout=5).raise_for_status()
    return Upstream(gw.mock)


# --- stream grammar checks ---------------------------------------------------------------------

ANTHROPIC_EVENTS = {"message_start", "content_block_start", "content_block_delta", "content_block_stop",
                    "message_delta", "message_stop", "ping", "error"}  # fmt: skip
DELTA_TYPES = {"text": {"text_delta", "citations_delta"}, "thinking": {"thinking_delta", "signature_delta"},
               "tool_use": {"input_json_delta"}, "redacted_thinking": set()}  # fmt: skip
SAFE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
MSG_ID = re.compile(r"^msg_[A-Za-z0-9]+$")


def anthropic_events(reply: Reply) -> list[dict[str, Any]]:
    """The stream's payloads without pings, after checking §1.5: named frames (name == type),
    one message_start first, blocks 0,1,2... strictly sequential with deltas of their own type
    only, a signature right before a thinking block stops, usage on message_delta, and exactly
    one terminal frame (message_stop or error) with nothing after it."""
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/event-stream")
    assert reply.tail == b"", f"unterminated frame at the end: {reply.tail!r}"
    payloads = []
    for frame in reply.frames:
        assert not frame.comment and frame.event in ANTHROPIC_EVENTS, frame
        payload = frame.json()
        assert payload["type"] == frame.event
        payloads.append(payload)
    names = [p["type"] for p in payloads]
    assert names[0] == "message_start" and names.count("message_start") == 1
    terminals = [n for n in names if n in ("message_stop", "error")]
    assert len(terminals) == 1 and names[-1] == terminals[0], names
    start = payloads[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and isinstance(start["usage"]["input_tokens"], int)
    open_index, next_index, kinds, last_delta, saw_delta = None, 0, {}, None, False
    for payload in payloads[1:]:
        kind = payload["type"]
        if kind == "content_block_start":
            assert open_index is None, f"block {payload['index']} started while {open_index} is open"
            assert payload["index"] == next_index
            block = payload["content_block"]
            kinds[next_index], open_index, last_delta = block["type"], next_index, None
            next_index += 1
            if block["type"] == "thinking":
                assert block == {"type": "thinking", "thinking": "", "signature": ""}
            elif block["type"] == "text":
                assert block == {"type": "text", "text": ""}
            elif block["type"] == "tool_use":
                assert block["input"] == {} and SAFE_ID.match(block["id"]) and block["name"]
        elif kind == "content_block_delta":
            assert payload["index"] == open_index, f"delta for {payload['index']}, open block is {open_index}"
            assert payload["delta"]["type"] in DELTA_TYPES[kinds[open_index]]
            assert last_delta != "signature_delta", "a delta after the signature"
            last_delta = payload["delta"]["type"]
        elif kind == "content_block_stop":
            assert payload["index"] == open_index
            if kinds[open_index] == "thinking":
                assert last_delta == "signature_delta", "thinking block stopped without a signature"
            open_index = None
        elif kind == "message_delta":
            assert open_index is None and isinstance(payload["usage"]["output_tokens"], int)
            saw_delta = True
        elif kind == "message_stop":
            assert saw_delta and open_index is None
    deltas = [p for p in payloads if p["type"] == "message_delta"]
    if "tool_use" in kinds.values() and deltas:
        assert deltas[-1]["delta"]["stop_reason"] in ("tool_use", "max_tokens")
    return [p for p in payloads if p["type"] != "ping"]


def translated(reply: Reply, model: str, estimate: int) -> list[dict[str, Any]]:
    """`anthropic_events` for a translated stream: message_start then a ping lead (§5.4 rule 1),
    with the message id checked and replaced by `msg_*`."""
    events = anthropic_events(reply)
    assert [f.event for f in reply.frames[:2]] == ["message_start", "ping"]
    message = events[0]["message"]
    assert MSG_ID.match(message["id"])
    assert events[0] == an_client_start(model, estimate, message["id"])
    events[0] = {"type": "message_start", "message": {**message, "id": "msg_*"}}
    return events


def an_client_start(model: str, estimate: int, message_id: str = "msg_*") -> dict[str, Any]:
    usage_ = {"input_tokens": estimate, "output_tokens": 0, "cache_creation_input_tokens": 0,
              "cache_read_input_tokens": 0}  # fmt: skip
    return {"type": "message_start", "message": {"id": message_id, "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage_}}  # fmt: skip


def an_usage(input_tokens: int, output_tokens: int, cache_read: int = 0) -> dict[str, int]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cache_read}  # fmt: skip


def an_error_frame(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The final `error` event of a failed stream (no message_stop)."""
    assert events[-1]["type"] == "error" and "message_stop" not in [e["type"] for e in events]
    assert set(events[-1]) == {"type", "error"} and isinstance(events[-1]["error"]["message"], str)
    return events[-1]["error"]


def openai_chunks(reply: Reply, model: str, *, include_usage: bool, complete: bool = True) -> list[dict[str, Any]]:
    """The chunks of an OpenAI stream after checking §3.2 / §5.9: data-only frames, one id,
    role first, tool calls numbered 0..n-1 with id/type/name on their first fragment, usage null
    on every chunk but the `choices: []` usage chunk, `[DONE]` last (or an error chunk and no
    [DONE]). Returns each chunk's `choices` and `usage` (when the stream carries usage)."""
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/event-stream")
    assert reply.tail == b""
    datas = [f.data for f in reply.frames if not f.comment]
    assert all(f.event is None for f in reply.frames)
    assert all(f.data == "" for f in reply.frames if f.comment)
    if complete:
        assert datas[-1] == "[DONE]" and datas.count("[DONE]") == 1
        datas = datas[:-1]
    else:
        assert "[DONE]" not in datas
    chunks = [json.loads(d) for d in datas]
    body = [c for c in chunks if "error" not in c]
    assert len({c["id"] for c in body}) == 1 and body[0]["id"].startswith("chatcmpl-")
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == model for c in body)
    assert body[0]["choices"][0]["delta"]["role"] == "assistant"
    seen: list[int] = []
    for chunk in body:
        for choice in chunk["choices"]:
            for fragment in choice["delta"].get("tool_calls") or ():
                if fragment["index"] not in seen:
                    assert fragment["index"] == len(seen), "tool calls must be numbered 0..n-1"
                    assert fragment["id"] and fragment["type"] == "function" and fragment["function"]["name"]
                    seen.append(fragment["index"])
    if include_usage:
        assert all(c["usage"] is None for c in body[:-1]) and body[-1]["choices"] == []
        last = body[-1]["usage"]
        assert all(isinstance(last[k], int) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    else:
        assert all(c.get("usage") is None for c in body)
    keep = ("choices", "usage") if include_usage else ("choices",)
    return [{k: c[k] for k in keep} if "error" not in c else c for c in chunks]


def och(delta: dict[str, Any], finish: str | None = None, with_usage: bool = True) -> dict[str, Any]:
    """An expected client chunk (as returned by `openai_chunks`)."""
    chunk: dict[str, Any] = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
    if with_usage:
        chunk["usage"] = None
    return chunk


def user(content: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content}]


def messages_body(model: str, content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 1024, "stream": True, "messages": user(content), **extra}


def stream_sdk(gw: Gateway, body: dict[str, Any]) -> anthropic.types.Message:
    """The Anthropic SDK's own accumulation of the same request."""
    args = {k: v for k, v in body.items() if k != "stream"}
    with gw.an().messages.stream(**args) as stream:
        return stream.get_final_message()


def assert_sdk_stream_error(gw: Gateway, body: dict[str, Any]) -> anthropic.APIStatusError:
    with pytest.raises(anthropic.APIStatusError) as info:
        stream_sdk(gw, body)
    return info.value


@dataclass
class Run:
    """One scripted stream, read raw: the request, the reply, and its events after message_start."""

    body: dict[str, Any]
    reply: Reply
    events: list[dict[str, Any]]
    estimate: int


def run_stream(gw: Gateway, up: Upstream, model: str, chunks: list[str] | None, *, times: int = 2,
               script: dict[str, Any] | None = None, content: str = "hi", **body_extra: Any) -> Run:  # fmt: skip
    """Script `chunks` for `model` (`times` answers: the raw read, then the SDK's), read the stream
    raw and check it as a translated stream (§1.5 grammar, message_start + ping lead)."""
    model = up.once(model, chunks, times=times, **(script or {}))
    body = messages_body(model, content, **body_extra)
    reply = gw.post("/v1/messages", body)
    estimate = count_anthropic_tokens(body)
    return Run(body, reply, translated(reply, model, estimate)[1:], estimate)


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")


READ_TOOL = {"name": "Read", "description": "Read a file", "input_schema": {
    "type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}}  # fmt: skip


# =================================================================================================
# OpenAI-style upstream -> Anthropic client, streaming (§5.4, §5.5, §5.6, §1.5)
# =================================================================================================


def test_plain_text_stream_exact_events(gw: Gateway, up: Upstream) -> None:
    run = run_stream(gw, up, "mock/t-plain", oa_text_stream("Hello", " world", final_usage=usage(40, 2)))
    assert run.events == [*an_text(0, "Hello", " world"), *an_end("end_turn", an_usage(40, 2))]
    message = stream_sdk(gw, run.body)
    assert message.id != run.reply.frames[0].json()["message"]["id"]  # unique per response (§5.3)
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == "Hello world"
    assert message.stop_reason == "end_turn" and message.usage.input_tokens == 40
    assert message.usage.output_tokens == 2


def test_deepseek_reasoning_then_text_then_tool_call(gw: Gateway, up: Upstream) -> None:
    name = "deepseek-v4-pro-t-reason"
    run = run_stream(gw, up, f"deepseek/{name}", deepseek_reasoning_text_tool(name), tools=[READ_TOOL])
    assert run.events == [
        *an_thinking(0, sign("The user wants a.py."), "The user wants", " a.py."),
        *an_text(1, "Reading", " it."),
        *an_tool(2, "call_00_Xa9", "Read", '{"file_path":', ' "/a.py"}'),
        # prompt 1200 of which 1024 cached: Anthropic input_tokens excludes cached tokens (§5.6)
        *an_end("tool_use", an_usage(176, 90, cache_read=1024)),
    ]
    message = stream_sdk(gw, run.body)
    thinking, said, tool = message.content
    assert thinking.type == "thinking" and thinking.thinking == "The user wants a.py."
    assert thinking.signature == sign("The user wants a.py.") and thinking.signature.startswith("junction1.")
    assert said.text == "Reading it." and tool.input == {"file_path": "/a.py"} and tool.id == "call_00_Xa9"
    assert message.stop_reason == "tool_use" and message.usage.cache_read_input_tokens == 1024


def test_interleaved_parallel_tool_calls_are_serialised(gw: Gateway, up: Upstream) -> None:
    """Fragments of two calls arrive interleaved; blocks stay strictly sequential (§1.5 rule 5)."""
    chunks = [
        oa_chunk(ROLE),
        oa_chunk(calls(call(0, "call_a", "Read", ""))),
        oa_chunk(calls(call(1, "call_b", "Read", ""))),
        oa_chunk(calls(call(0, arguments='{"file_path":'), call(1, arguments='{"file_path":'))),
        oa_chunk(calls(call(1, arguments='"/b.py"}'))),
        oa_chunk(calls(call(0, arguments='"/a.py"}'))),
        oa_chunk({}, "tool_calls"),
        oa_usage_chunk(usage(30, 20)),
        DONE,
    ]
    run = run_stream(gw, up, "mock/t-interleave", chunks, tools=[READ_TOOL])
    assert run.events == [
        *an_tool(0, "call_a", "Read", '{"file_path":', '"/a.py"}'),
        # call_b was held while call_a was open, then sent whole
        *an_tool(1, "call_b", "Read", '{"file_path":"/b.py"}'),
        *an_end("tool_use", an_usage(30, 20)),
    ]
    message = stream_sdk(gw, run.body)
    assert [(b.id, b.input) for b in message.content] == [("call_a", {"file_path": "/a.py"}),
                                                           ("call_b", {"file_path": "/b.py"})]  # fmt: skip


@pytest.mark.parametrize(
    ("chunks", "blocks"),
    [
        # every call's arguments arrive only in the finish chunk
        ([oa_chunk(calls(call(0, "call_a", "Read"), call(1, "call_b", "Read"))),
          oa_chunk(calls(call(0, arguments='{"file_path":"/a.py"}'), call(1, arguments='{"file_path":"/b.py"}')),
                   "tool_calls")],
         [("call_a", "Read", {"file_path": "/a.py"}), ("call_b", "Read", {"file_path": "/b.py"})]),
        # one index reused for a second call with a new id
        ([oa_chunk(calls(call(0, "call_a", "Read", '{"file_path":"/a.py"}'))),
          oa_chunk(calls(call(0, "call_b", "Grep", '{"pattern":"x"}'))), oa_chunk({}, "tool_calls")],
         [("call_a", "Read", {"file_path": "/a.py"}), ("call_b", "Grep", {"pattern": "x"})]),
    ],
    ids=["arguments-only-in-last-chunk", "index-reuse-with-new-id"],
)
def test_unusual_tool_call_fragments_give_one_block_per_call(gw: Gateway, up: Upstream, chunks: list[str],
                                                             blocks: list[tuple[str, str, Any]]) -> None:  # fmt: skip
    run = run_stream(gw, up, "mock/t-fragments", [oa_chunk(ROLE), *chunks, DONE], tools=[READ_TOOL])
    expected = [e for i, (id, name, args) in enumerate(blocks)
                for e in an_tool(i, id, name, json.dumps(args, separators=(",", ":")))]  # fmt: skip
    # no usage from the upstream: the input estimate and 0 output tokens, still integers (§0 #6)
    assert run.events == [*expected, *an_end("tool_use", an_usage(run.estimate, 0))]
    assert [(b.id, b.name, b.input) for b in stream_sdk(gw, run.body).content] == blocks


def test_kimi_tool_ids_are_made_safe_and_mapped_back(gw: Gateway, up: Upstream) -> None:
    """`functions.Read:0` is not a valid Anthropic id: the client sees a safe id, and the next
    request carries Kimi's own id back in tool_calls and tool_call_id (§5.2 IDs, §3.4)."""
    model = "moonshotai/kimi-for-coding-t-ids"
    run = run_stream(gw, up, model, kimi_thinking_tool("kimi-for-coding-t-ids"), content="read k.py",
                     tools=[READ_TOOL])  # fmt: skip
    safe = to_client_id("functions.Read:0")
    assert run.events == [
        *an_thinking(0, sign("Need the file."), "Need the file."),
        *an_tool(1, safe, "Read", '{"file_path":"/k.py"}'),
        # Kimi usage inside choices[0], cached_tokens at the top of usage
        *an_end("tool_use", an_usage(3000 - 2048, 60, cache_read=2048)),
    ]
    message = stream_sdk(gw, run.body)
    assert message.content[1].id == safe and SAFE_ID.match(safe)
    assert message.usage.cache_read_input_tokens == 2048
    history = [block.model_dump(exclude_none=True) for block in message.content]
    follow_up = [*user("read k.py"), {"role": "assistant", "content": history},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": safe, "content": "x = 1"}]}]
    answer = gw.an().messages.create(model=run.body["model"], max_tokens=1024, tools=[READ_TOOL],
                                     messages=follow_up)  # fmt: skip
    assert answer.content[0].text == "Tool result received: x = 1"
    sent = up.requests()[-1]["body"]
    assert sent["messages"][1:] == [
        {"role": "assistant", "content": None, "reasoning_content": "Need the file.",
         "tool_calls": [{"id": "functions.Read:0", "type": "function",
                         "function": {"name": "Read", "arguments": '{"file_path": "/k.py"}'}}]},
        {"role": "tool", "tool_call_id": "functions.Read:0", "content": "x = 1"},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        # OpenAI / DeepSeek: the usage chunk (`choices: []`) comes after the finish chunk
        ([oa_chunk({}, "stop"), oa_usage_chunk(usage(500, 7, prompt_tokens_details={"cached_tokens": 384})), DONE],
         an_usage(116, 7, cache_read=384)),
        ([oa_chunk({}, "stop"), oa_usage_chunk(usage(500, 7, prompt_cache_hit_tokens=100)), DONE],
         an_usage(400, 7, cache_read=100)),
        # Kimi: usage inside choices[0] of the finish chunk
        ([oa_chunk({}, "stop", choice_usage=usage(500, 7, cached_tokens=256)), DONE], an_usage(244, 7, cache_read=256)),
        # usage on the finish chunk itself, and an upstream that ends without [DONE]
        ([oa_chunk({}, "stop", usage=usage(500, 7))], an_usage(500, 7)),
    ],
    ids=["usage-chunk-after-finish", "deepseek-cache-hit", "kimi-usage-in-choice", "usage-on-finish-no-done"],
)
def test_usage_is_read_wherever_the_upstream_puts_it(gw: Gateway, up: Upstream, tail: list[str],
                                                     expected: dict[str, int]) -> None:  # fmt: skip
    # written apart: the gateway must keep reading after the finish chunk (§0 #8, §5.4 rule 6)
    run = run_stream(gw, up, "mock/t-usage", [oa_chunk(ROLE), oa_chunk(text("ok")), *tail], script={"gap_ms": 60})
    assert run.events == [*an_text(0, "ok"), *an_end("end_turn", expected)]
    final = stream_sdk(gw, run.body).usage
    assert (final.input_tokens, final.output_tokens, final.cache_read_input_tokens) == (
        expected["input_tokens"], expected["output_tokens"], expected["cache_read_input_tokens"])


@pytest.mark.parametrize(
    ("finish", "with_call", "stop_reason"),
    [
        ("stop", True, "tool_use"),  # §0 #7: a tool_use block always means stop_reason tool_use
        ("tool_calls", True, "tool_use"),
        ("stop", False, "end_turn"),
        ("length", False, "max_tokens"),
        ("content_filter", False, "refusal"),
        ("tool_calls", False, "end_turn"),  # no tool block was emitted: never claim tool_use
    ],
)
def test_finish_reason_mapping(gw: Gateway, up: Upstream, finish: str, with_call: bool, stop_reason: str) -> None:
    pieces = [oa_chunk(calls(call(0, "call_f", "Read", '{"file_path":"/f"}')))] if with_call else []
    run = run_stream(gw, up, "mock/t-finish", [oa_chunk(ROLE), oa_chunk(text("Sure.")), *pieces,
                                               oa_chunk({}, finish), DONE], tools=[READ_TOOL])  # fmt: skip
    assert run.events[-2]["delta"] == {"stop_reason": stop_reason, "stop_sequence": None}
    assert stream_sdk(gw, run.body).stop_reason == stop_reason


def test_empty_upstream_answer_is_still_a_whole_message(gw: Gateway, up: Upstream) -> None:
    run = run_stream(gw, up, "mock/t-empty", [oa_chunk(ROLE), oa_chunk(text("")), oa_chunk({}, "stop"), DONE])
    assert run.events == an_end("end_turn", an_usage(run.estimate, 0))
    message = stream_sdk(gw, run.body)
    assert message.content == [] and message.stop_reason == "end_turn"


@pytest.mark.parametrize("comments", [True, False], ids=["keep-alive-comments", "silence"])
def test_idle_upstream_gets_pings_at_most_one_per_interval(gw: Gateway, up: Upstream, comments: bool) -> None:
    """`: keep-alive` comments are not events: during 1.2 s without events the client gets
    pings, at most one per ping interval, and the stream still completes (§0 #14, §6)."""
    idle = [KEEP_ALIVE] * 3 if comments else ["", "", ""]
    finish = oa_chunk(text("ok")) + oa_chunk({}, "stop") + oa_usage_chunk(usage(9, 1)) + DONE
    run = run_stream(gw, up, "mock/t-pings", [oa_chunk(ROLE), *idle, finish], script={"gap_ms": 300})
    assert run.events == [*an_text(0, "ok"), *an_end("end_turn", an_usage(9, 1))]
    frames = run.reply.frames
    pings = [f.at for f in frames[2:] if f.event == "ping"]
    assert 2 <= len(pings) <= (frames[-1].at - frames[0].at) / PING_S + 1, pings
    gaps = [b - a for a, b in zip([frames[0].at, *pings], pings)]
    assert min(gaps) > PING_S * 0.6, gaps
    assert stream_sdk(gw, run.body).content[0].text == "ok"


def test_message_start_is_sent_before_the_first_token(gw: Gateway, up: Upstream) -> None:
    """message_start and a ping leave as soon as the upstream answers (§5.4 rule 1)."""
    late = oa_chunk(ROLE) + oa_chunk(text("late")) + oa_chunk({}, "stop") + DONE
    run = run_stream(gw, up, "mock/t-early", [KEEP_ALIVE, late], times=1, script={"gap_ms": 1000})
    first_text = next(f.at for f in run.reply.frames if f.event == "content_block_delta")
    assert run.reply.frames[0].at < first_text - 0.5
    assert run.events[-2]["delta"]["stop_reason"] == "end_turn"


def test_utf8_split_across_upstream_writes(gw: Gateway, up: Upstream) -> None:
    wire = "".join(oa_text_stream("héllo ✓ 日本語 🎉")).encode("utf-8")
    cuts = [wire.index("✓".encode()) + 1, wire.index("本".encode()) + 2, wire.index("🎉".encode()) + 3]
    pieces = [wire[a:b].decode("latin-1") for a, b in zip([0, *cuts], [*cuts, len(wire)])]
    # latin1: each character of a chunk is one byte on the wire, so writes end mid-character
    run = run_stream(gw, up, "mock/t-utf8", pieces, script={"encoding": "latin1", "gap_ms": 40})
    assert text_of(run.events) == "héllo ✓ 日本語 🎉"
    assert stream_sdk(gw, run.body).content[0].text == "héllo ✓ 日本語 🎉"


def test_sse_line_endings_multiline_data_and_comments_from_upstream(gw: Gateway, up: Upstream) -> None:
    """CRLF and CR line ends, a JSON chunk split over two `data:` lines, comments (§6)."""
    head, *rest = json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "a"}}]},
                             indent=1).split("\n")  # fmt: skip
    chunks = [
        ": hello\r\n\r\n",
        f"data: {head}\r\ndata: {' '.join(rest)}\r\n\r\n",
        oa_chunk(text("b")).replace("\n", "\r"),
        oa_chunk({}, "stop").replace("\n", "\r\n") + "data: [DONE]",  # no final blank line
    ]
    run = run_stream(gw, up, "mock/t-framing", chunks)
    assert run.events == [*an_text(0, "a", "b"), *an_end("end_turn", an_usage(run.estimate, 0))]
    assert stream_sdk(gw, run.body).content[0].text == "ab"


def test_gzip_compressed_upstream_stream(gw: Gateway, up: Upstream) -> None:
    run = run_stream(gw, up, "mock/t-gzip", oa_text_stream("squeezed", " text"), script={"gzip": True, "gap_ms": 20})
    assert "content-encoding" not in run.reply.headers
    assert run.events[:4] == an_text(0, "squeezed", " text")
    assert stream_sdk(gw, run.body).content[0].text == "squeezed text"


# --- streams that fail after the 200 --------------------------------------------------------------

TRUNCATED_TAIL = [oa_chunk({}, "stop"), DONE]


@pytest.mark.parametrize(
    ("model", "chunks", "script"),
    [
        # the body ends cleanly before any finish_reason / [DONE]
        ("mock/t-eof", [oa_chunk(ROLE), oa_chunk(text("partial")), "".join(TRUNCATED_TAIL)], {"close_early": True}),
        # the connection drops: fewer bytes than the declared Content-Length
        ("mock/t-drop", [oa_chunk(ROLE), oa_chunk(text("partial"))],
         {"headers": {**SSE_HEADERS, "content-length": "100000"}}),
        # the mock's own fault knob, set in the provider's headers
        ("cut/t-knob", None, None),
    ],
    ids=["eof-before-finish", "connection-lost", "fault-knob-close"],
)
def test_upstream_dying_mid_stream_ends_with_an_error_event(gw: Gateway, up: Upstream, model: str,
                                                            chunks: list[str] | None,
                                                            script: dict[str, Any] | None) -> None:  # fmt: skip
    """Never a fake message_stop over a truncated answer (§0 #5, §5.4 rule 8)."""
    run = run_stream(gw, up, model, chunks, script=script, content="one two three four five")
    error = an_error_frame(run.events)
    assert error["type"] == "api_error" and error["message"]
    assert run.events[0]["content_block"] == {"type": "text", "text": ""}
    exc = assert_sdk_stream_error(gw, run.body)
    assert exc.body["error"]["type"] == "api_error"


@pytest.mark.parametrize(
    ("chunks", "error"),
    [
        ([oa_chunk(ROLE), oa_chunk(text("so far")), "data: {not json at all\n\n", *TRUNCATED_TAIL],
         {"type": "api_error", "message": "upstream sent a malformed stream event"}),
        ([oa_chunk(ROLE), oa_chunk(text("so far")),
          'data: {"error":{"message":"Rate limit reached for requests","type":"rate_limit_error","code":429}}\n\n'],
         {"type": "rate_limit_error", "message": "Rate limit reached for requests"}),
        ([oa_chunk(ROLE), oa_chunk(text("I will")), oa_chunk({}, "insufficient_system_resource"),
          oa_usage_chunk(usage(10, 2)), DONE],
         {"type": "overloaded_error", "message": "upstream is overloaded (insufficient_system_resource)"}),
    ],
    ids=["garbage-data-line", "upstream-error-chunk", "deepseek-insufficient-system-resource"],
)
def test_upstream_failure_inside_the_stream_is_an_error_event(gw: Gateway, up: Upstream, chunks: list[str],
                                                              error: dict[str, str]) -> None:  # fmt: skip
    run = run_stream(gw, up, "deepseek/deepseek-v4-flash-t-fail", chunks)
    assert an_error_frame(run.events) == error
    assert assert_sdk_stream_error(gw, run.body).body["error"] == error


@pytest.mark.parametrize("finish", ["tool_calls", "length"])
def test_invalid_tool_arguments_at_the_end(gw: Gateway, up: Upstream, finish: str) -> None:
    """§5.4 rule 9: cut-off arguments pass only with max_tokens; otherwise an error, never a
    silently corrupted call."""
    chunks = [oa_chunk(ROLE), oa_chunk(calls(call(0, "call_x", "Read", '{"file_path": "/a'))), oa_chunk({}, finish),
              DONE]  # fmt: skip
    run = run_stream(gw, up, "mock/t-badargs", chunks, times=1, tools=[READ_TOOL])
    if finish == "length":
        assert run.events == [*an_tool(0, "call_x", "Read", '{"file_path": "/a'),
                              *an_end("max_tokens", an_usage(run.estimate, 0))]  # fmt: skip
    else:
        assert "invalid JSON arguments" in an_error_frame(run.events)["message"]


def test_client_disconnect_mid_stream_cancels_the_upstream(gw: Gateway, up: Upstream) -> None:
    model = "mock/t-leave"
    before = up.stats()["aborted"]
    up.script("t-leave", [oa_chunk(ROLE) + oa_chunk(text("first")), oa_chunk(text("never read")), DONE],
              gap_ms=5000)  # fmt: skip
    with httpx.stream("POST", f"{gw.url}/v1/messages", json=messages_body(model), headers={"x-api-key": KEY},
                      timeout=CLIENT_TIMEOUT) as response:  # fmt: skip
        for piece in response.iter_raw():
            if b"first" in piece:
                break
    deadline = time.monotonic() + 4
    while up.stats()["aborted"] == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert up.stats()["aborted"] == before + 1


# =================================================================================================
# Non-streaming, both directions (§1.4, §5.3, §5.9)
# =================================================================================================


def test_non_streaming_openai_upstream_to_anthropic_client(gw: Gateway, up: Upstream) -> None:
    message = {"role": "assistant", "content": "", "reasoning_content": "Check first.",
               "tool_calls": [{"id": "functions.Read:0", "type": "function",
                               "function": {"name": "Read", "arguments": '{"file_path":"/a.py"}'}},
                              {"id": "call_2", "type": "function",
                               "function": {"name": "Read", "arguments": ""}}]}  # fmt: skip
    # DeepSeek under load writes blank lines before the JSON body (§3.3)
    up.script("deepseek-v4-pro-t-ns", ["\n\n", oa_completion(message, "tool_calls", KIMI_USAGE)],
              headers=JSON_HEADERS)  # fmt: skip
    answer = gw.an().messages.create(model="deepseek/deepseek-v4-pro-t-ns", max_tokens=100, messages=user("go"),
                                     tools=[READ_TOOL])  # fmt: skip
    assert answer.model_dump(exclude_none=True, exclude={"id"}) == {
        "type": "message", "role": "assistant", "model": "deepseek/deepseek-v4-pro-t-ns",
        "content": [
            {"type": "thinking", "thinking": "Check first.", "signature": sign("Check first.")},
            {"type": "tool_use", "id": to_client_id("functions.Read:0"), "name": "Read",
             "input": {"file_path": "/a.py"}},
            {"type": "tool_use", "id": "call_2", "name": "Read", "input": {}},
        ],  # no empty text block for content ""
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 952, "output_tokens": 60, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 2048},
    }  # fmt: skip
    assert MSG_ID.match(answer.id)


def test_non_streaming_deepseek_insufficient_system_resource_is_overloaded(gw: Gateway, up: Upstream) -> None:
    message = {"role": "assistant", "content": ""}
    up.script("deepseek-v4-flash-t-isr2", [oa_completion(message, "insufficient_system_resource", usage(5, 0))],
              headers=JSON_HEADERS)  # fmt: skip
    with pytest.raises(anthropic.OverloadedError) as info:
        gw.an().messages.create(model="deepseek/deepseek-v4-flash-t-isr2", max_tokens=10, messages=user("hi"))
    assert info.value.body["error"]["type"] == "overloaded_error"


@pytest.mark.parametrize("upstream_usage", [None, {}], ids=["absent", "empty"])
def test_non_streaming_usage_is_always_integers(gw: Gateway, up: Upstream, upstream_usage: Any) -> None:
    """§1.4: usage with integer input_tokens / output_tokens even when the upstream sends none."""
    body = {"model": "mock/t-nousage", "max_tokens": 50, "messages": user("count me")}
    up.script("t-nousage", [oa_completion({"role": "assistant", "content": "ok"}, "stop", upstream_usage)],
              headers=JSON_HEADERS)  # fmt: skip
    reply = gw.post("/v1/messages", body)
    assert reply.status == 200
    payload = reply.json()
    assert set(payload["usage"]) == {"input_tokens", "output_tokens", "cache_creation_input_tokens",
                                     "cache_read_input_tokens"}  # fmt: skip
    assert all(isinstance(v, int) and v >= 0 for v in payload["usage"].values())
    assert payload["stop_reason"] == "end_turn" and payload["stop_sequence"] is None


@pytest.mark.parametrize("upstream_usage", [None, {"completion_tokens": 1}],
                         ids=["no-usage", "usage-without-prompt-count"])  # fmt: skip
def test_non_streaming_missing_prompt_count_falls_back_to_the_input_estimate(gw: Gateway, up: Upstream,
                                                                             upstream_usage: Any) -> None:  # fmt: skip
    """0 input tokens blinds Claude Code's context meter in its non-streaming fallback (§1.4, §5.6)."""
    body = {"model": "mock/t-noest", "max_tokens": 50, "messages": user("count me please")}
    up.script("t-noest", [oa_completion({"role": "assistant", "content": "ok"}, "stop", upstream_usage)],
              headers=JSON_HEADERS)  # fmt: skip
    assert gw.post("/v1/messages", body).json()["usage"]["input_tokens"] == count_anthropic_tokens(body)


def test_non_streaming_anthropic_upstream_to_openai_client(gw: Gateway, up: Upstream) -> None:
    upstream = {"id": "msg_01Up", "type": "message", "role": "assistant", "model": "claude-up",
                "content": [{"type": "thinking", "thinking": "Plan.", "signature": "EqQBCkYIBxgC"},
                            {"type": "text", "text": "Two reads."},
                            {"type": "tool_use", "id": "toolu_01A", "name": "Read", "input": {"file_path": "/a"}},
                            {"type": "tool_use", "id": "toolu_01B", "name": "Read", "input": {"file_path": "/b"}}],
                "stop_reason": "tool_use", "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 30, "cache_creation_input_tokens": 5,
                          "cache_read_input_tokens": 100}}  # fmt: skip
    up.script("claude-t-ns", [json.dumps(upstream)], headers=JSON_HEADERS)
    fn = {"type": "function", "function": {"name": "Read", "parameters": READ_TOOL["input_schema"]}}
    completion = gw.oa().chat.completions.create(model="anth/claude-t-ns", tools=[fn], messages=[
        {"role": "system", "content": "Be brief."}, *user("read both")])  # fmt: skip
    choice = completion.choices[0]
    assert completion.model == "anth/claude-t-ns" and completion.id.startswith("chatcmpl-")
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Two reads."
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls] == [
        ("toolu_01A", "Read", {"file_path": "/a"}), ("toolu_01B", "Read", {"file_path": "/b"})]
    assert choice.message.model_extra["reasoning_content"] == "Plan."
    assert completion.usage.model_dump(exclude_none=True) == {
        "prompt_tokens": 115, "completion_tokens": 30, "total_tokens": 145,
        "prompt_tokens_details": {"cached_tokens": 100}}  # fmt: skip
    received = up.requests()[-1]
    assert received["path"] == "/v1/messages" and received["headers"]["x-api-key"] == SECRET
    assert received["headers"]["anthropic-version"] == "2023-06-01" and "authorization" not in received["headers"]
    sent = received["body"]
    assert sent["system"] == "Be brief." and sent["max_tokens"] > 0
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "read both"}]}]


# =================================================================================================
# Upstream error statuses (§1.6, §5.7)
# =================================================================================================

KIMI_GATE = ("Kimi For Coding is currently only available for Coding Agents such as Kimi CLI, Claude Code, "
             "Roo Code, Kilo Code, etc.")  # fmt: skip
DEEPSEEK_OVERFLOW = ("This model's maximum context length is 131072 tokens. However, you requested 140000 tokens "
                     "(139000 in the messages, 1000 in the completion). Please reduce the length of the messages "
                     "or completion.")  # fmt: skip
AUTH_REFUSED = "refused the gateway's credentials"  # the generic message, upstream text withheld
OPENAI_OVERFLOW = ("This model's maximum context length is 128000 tokens. However, your messages resulted in "
                   "130500 tokens. Please reduce the length of the messages.")  # fmt: skip


@pytest.mark.parametrize(
    ("model", "status", "body", "expected_status", "kind", "message"),
    [
        ("mock/e400", 400, oa_error("Invalid request: messages[1] is empty", "invalid_request_error"),
         400, "invalid_request_error", "Invalid request: messages[1] is empty"),
        # 401/403 to the gateway's own provider key: an operator problem, answered as a generic 502 (R5);
        # test_reliability.py::test_r5_* covers passthrough credentials, which keep the upstream's answer.
        ("deepseek/deepseek-v4-pro-e401", 401, oa_error("Authentication Fails (no such user)", "authentication_error"),
         502, "api_error", AUTH_REFUSED),
        ("deepseek/deepseek-v4-pro-e402", 402, oa_error("Insufficient Balance", "unknown_error", "invalid_request_error"),
         402, "billing_error", "Insufficient Balance"),
        ("moonshotai/kimi-for-coding-e403", 403, oa_error(KIMI_GATE, "access_terminated_error"),
         502, "api_error", AUTH_REFUSED),
        ("mock/e404", 404, oa_error("The model `x` does not exist", "invalid_request_error", "model_not_found"),
         404, "not_found_error", "The model `x` does not exist"),
        ("deepseek/deepseek-v4-pro-e422", 422, oa_error("Invalid parameters: temperature", "invalid_request_error"),
         400, "invalid_request_error", "Invalid parameters: temperature"),
        ("mock/e429", 429, oa_error("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
         429, "rate_limit_error", "Rate limit reached for requests"),
        ("mock/e500", 500, oa_error("Internal server error", "server_error"), 500, "api_error", "Internal server error"),
        ("deepseek/deepseek-v4-pro-e503", 503, oa_error("Server overloaded, please try again later", "server_error"),
         529, "overloaded_error", "Server overloaded, please try again later"),
        ("deepseek/deepseek-v4-pro-eover", 400, oa_error(DEEPSEEK_OVERFLOW, "invalid_request_error"),
         400, "invalid_request_error", "prompt is too long: 139000 tokens > 131072 maximum"),
        ("mock/eover", 400, oa_error(OPENAI_OVERFLOW, "invalid_request_error", "context_length_exceeded"),
         400, "invalid_request_error", "prompt is too long: 130500 tokens > 128000 maximum"),
    ],
    ids=["400", "401", "402", "403-kimi-gate", "404", "422", "429", "500", "503", "overflow-deepseek",
         "overflow-openai"],
)
def test_upstream_errors_to_anthropic_client(gw: Gateway, up: Upstream, model: str, status: int, body: str,
                                             expected_status: int, kind: str, message: str) -> None:  # fmt: skip
    answer = {"status": status, "headers": {**JSON_HEADERS, "retry-after": "7"}}
    with pytest.raises(anthropic.APIStatusError) as info:
        gw.an().messages.create(model=up.once(model, [body], **answer), max_tokens=100, messages=user("hi"))
    exc = info.value
    assert exc.status_code == expected_status
    # the same error for a streaming request: a real HTTP status before any SSE byte
    reply = gw.post("/v1/messages", messages_body(up.once(model, [body], **answer)))
    assert reply.status == expected_status and reply.headers["content-type"] == "application/json"
    for error in (exc.body, reply.json()):
        assert error["type"] == "error" and error["error"]["type"] == kind
        if message == AUTH_REFUSED:
            assert AUTH_REFUSED in error["error"]["message"] and SECRET[:8] not in str(error)
            assert json.loads(body)["error"]["message"] not in error["error"]["message"]
        else:
            assert error["error"]["message"] == message
    retryable = expected_status in (429, 500, 529)
    assert exc.response.headers.get("retry-after") == ("7" if retryable else None)
    if expected_status == 529:
        assert isinstance(exc, anthropic.OverloadedError)


@pytest.mark.parametrize(
    ("status", "kind", "message", "expected_status", "code"),
    [
        (400, "invalid_request_error", "messages.1.content: text content blocks must be non-empty", 400, None),
        (401, "authentication_error", "invalid x-api-key", 502, None),
        (402, "billing_error", "Your credit balance is too low to access the Anthropic API.", 402, None),
        (403, "permission_error", "Your API key does not have permission to use the specified resource.", 502, None),
        (404, "not_found_error", "model: claude-t-missing", 404, None),
        (413, "request_too_large", "Request exceeds the maximum allowed number of bytes.", 413, None),
        (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit", 429, None),
        (500, "api_error", "Internal server error", 500, None),
        (529, "overloaded_error", "Overloaded", 503, None),
        (400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum", 400,
         "context_length_exceeded"),
    ],
    ids=["400", "401", "402", "403", "404", "413", "429", "500", "529", "overflow"],
)
def test_upstream_errors_to_openai_client(gw: Gateway, up: Upstream, status: int, kind: str, message: str,
                                          expected_status: int, code: str | None) -> None:  # fmt: skip
    answer = {"status": status, "headers": {**JSON_HEADERS, "retry-after": "7", "request-id": "req_up_1"}}
    with pytest.raises(openai.APIStatusError) as info:
        gw.oa().chat.completions.create(model=up.once("anth/claude-t-err", [an_error_body(kind, message)], **answer),
                                        messages=user("hi"))  # fmt: skip
    exc = info.value
    assert exc.status_code == expected_status
    if expected_status == 502:  # the gateway's own key refused (R5): generic message
        assert AUTH_REFUSED in exc.body["message"] and message not in exc.body["message"]
    else:
        assert exc.body["message"] == message and exc.code == code
    assert exc.response.headers.get("retry-after") == ("7" if expected_status in (429, 500, 503) else None)
    if code:
        assert exc.body["param"] == "messages"
    with pytest.raises(openai.APIStatusError) as streamed:
        list(gw.oa().chat.completions.create(model=up.once("anth/claude-t-err", [an_error_body(kind, message)],
                                                           **answer), messages=user("hi"), stream=True))  # fmt: skip
    assert streamed.value.status_code == expected_status


def test_same_protocol_openai_errors_keep_status_body_and_headers(gw: Gateway, up: Upstream) -> None:
    """OpenAI client, OpenAI-style upstream: status, error body and retry/rate-limit headers kept."""
    body = oa_error("Rate limit reached for gpt-x", "requests", "rate_limit_exceeded")
    up.script("t-pass429", [body], status=429, headers={**JSON_HEADERS, "retry-after": "12",
                                                        "x-ratelimit-remaining-requests": "0"})  # fmt: skip
    with pytest.raises(openai.RateLimitError) as info:
        gw.oa().chat.completions.create(model="mock/t-pass429", messages=user("hi"))
    assert info.value.response.json() == json.loads(body)
    assert info.value.response.headers["retry-after"] == "12"
    assert info.value.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_upstream_headers_survive_cross_protocol_buffered_answers(gw: Gateway, up: Upstream) -> None:
    """§1.1 / §1.6: request-id and x-should-retry reach the client whatever the protocols."""
    kept = {"request-id": "req_up_9", "x-should-retry": "true", "x-ratelimit-remaining-requests": "0"}
    up.script("t-xhdr", [oa_error("Rate limit reached", "requests", "rate_limit_exceeded")], status=429,
              headers={**JSON_HEADERS, **kept})  # fmt: skip
    reply = gw.post("/v1/messages", {"model": "mock/t-xhdr", "max_tokens": 10, "messages": user("hi")})
    assert reply.status == 429
    up.script("claude-t-xhdr", [an_error_body("overloaded_error", "Overloaded")], status=529,
              headers={**JSON_HEADERS, **kept})  # fmt: skip
    second = gw.post("/v1/chat/completions", {"model": "anth/claude-t-xhdr", "messages": user("hi")})
    assert second.status == 503
    for answer in (reply, second):
        assert {k: answer.headers.get(k) for k in kept} == kept


def test_context_overflow_from_deepseek_reaches_openai_client_as_context_length_exceeded(
    gw: Gateway, up: Upstream
) -> None:
    """§0 #9, §5.7: any overflow wording reaches an OpenAI client as `context_length_exceeded`,
    also when the upstream speaks the client's protocol; the upstream's text is kept."""
    up.script("deepseek-v4-pro-t-ovf", [oa_error(DEEPSEEK_OVERFLOW, "invalid_request_error", "invalid_request_error")],
              status=400, headers=JSON_HEADERS)  # fmt: skip
    with pytest.raises(openai.BadRequestError) as info:
        gw.oa().chat.completions.create(model="deepseek/deepseek-v4-pro-t-ovf", messages=user("hi"))
    assert info.value.body["message"] == DEEPSEEK_OVERFLOW
    assert info.value.code == "context_length_exceeded"


# =================================================================================================
# Anthropic-style upstream -> OpenAI client, streaming (§5.9, §3.2)
# =================================================================================================

ANTHROPIC_AGENT_TURN = [
    an_start("claude-up", 12, cache_creation_input_tokens=3, cache_read_input_tokens=40),
    *an_thinking(0, "EqQBCkYIBxgCKkD", "Let me", " look."),
    *an_text(1, "Reading."),
    *an_tool(2, "toolu_01A", "Read", '{"file_', 'path":"/a"}'),
    *an_tool(3, "toolu_01B", "Read", '{"file_path":"/b"}'),
    *an_end("tool_use", {"output_tokens": 50}),
]


def test_anthropic_stream_to_openai_client_exact_chunks(gw: Gateway, up: Upstream) -> None:
    model = "anth/claude-t-o"
    up.script("claude-t-o", an_sse(ANTHROPIC_AGENT_TURN), times=2)
    fn = {"type": "function", "function": {"name": "Read", "parameters": READ_TOOL["input_schema"]}}
    body = {"model": model, "stream": True, "stream_options": {"include_usage": True}, "tools": [fn],
            "messages": user("read")}  # fmt: skip
    reply = gw.post("/v1/chat/completions", body)
    args = [{"index": 0, "function": {"arguments": '{"file_'}}, {"index": 0, "function": {"arguments": 'path":"/a"}'}},
            {"index": 1, "function": {"arguments": '{"file_path":"/b"}'}}]  # fmt: skip
    head = lambda i, id: {"index": i, "id": id, "type": "function", "function": {"name": "Read", "arguments": ""}}  # noqa: E731
    assert openai_chunks(reply, model, include_usage=True) == [
        och({"role": "assistant", "content": ""}),
        och({"reasoning_content": "Let me"}),
        och({"reasoning_content": " look."}),
        och({"reasoning_signature": "EqQBCkYIBxgCKkD"}),  # the thinking block's own signature, for the way back
        och({"content": "Reading."}),
        och({"tool_calls": [head(0, "toolu_01A")]}),
        och({"tool_calls": [args[0]]}),
        och({"tool_calls": [args[1]]}),
        och({"tool_calls": [head(1, "toolu_01B")]}),
        och({"tool_calls": [args[2]]}),
        och({}, "tool_calls"),
        {"choices": [], "usage": {"prompt_tokens": 55, "completion_tokens": 50, "total_tokens": 105,
                                  "prompt_tokens_details": {"cached_tokens": 40}}},
    ]  # fmt: skip
    with gw.oa().chat.completions.stream(**{k: v for k, v in body.items() if k != "stream"}) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Reading." and final.choices[0].finish_reason == "tool_calls"
    assert [(c.id, json.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("toolu_01A", {"file_path": "/a"}), ("toolu_01B", {"file_path": "/b"})]
    assert final.usage.prompt_tokens == 55 and final.usage.completion_tokens == 50


def test_anthropic_stream_to_openai_client_without_include_usage(gw: Gateway, up: Upstream) -> None:
    model = "anth/claude-t-o2"
    up.script("claude-t-o2", an_text_stream("Hi", " there"), times=2)
    reply = gw.post("/v1/chat/completions", {"model": model, "stream": True, "messages": user("hi")})
    assert openai_chunks(reply, model, include_usage=False) == [
        och({"role": "assistant", "content": ""}, with_usage=False), och({"content": "Hi"}, with_usage=False),
        och({"content": " there"}, with_usage=False), och({}, "stop", with_usage=False)]  # fmt: skip
    chunks = list(gw.oa().chat.completions.create(model=model, stream=True, messages=user("hi")))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hi there"


@pytest.mark.parametrize(
    ("tail", "kind", "message"),
    [
        # OpenAI clients get OpenAI's type for the status (an Anthropic type means nothing to them).
        (an_sse([{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]),
         "api_error", "Overloaded"),
        ([], "api_error", "upstream stream ended before the response was complete"),
    ],
    ids=["error-event", "truncated"],
)
def test_anthropic_stream_failure_is_an_error_chunk_without_done(gw: Gateway, up: Upstream, tail: list[str],
                                                                 kind: str, message: str) -> None:  # fmt: skip
    model = up.once("anth/claude-t-oerr", an_sse([an_start(), *an_text(0, "partial")]) + tail, times=2)
    reply = gw.post("/v1/chat/completions", {"model": model, "stream": True, "messages": user("hi")})
    chunks = openai_chunks(reply, model, include_usage=False, complete=False)
    assert chunks[-1]["error"]["message"] == message and chunks[-1]["error"]["type"] == kind
    assert chunks[:-1] == [och({"role": "assistant", "content": ""}, with_usage=False),
                           och({"content": "partial"}, with_usage=False)]  # fmt: skip
    with pytest.raises(openai.APIError, match=message):
        list(gw.oa().chat.completions.create(model=model, stream=True, messages=user("hi")))


def test_idle_anthropic_upstream_gives_openai_client_comment_pings(gw: Gateway, up: Upstream) -> None:
    model = "anth/claude-t-opings"
    frames = an_text_stream("slow", " reply")
    up.script("claude-t-opings", ["".join(frames[:3]), "".join(frames[3:])], gap_ms=1000, times=2)
    reply = gw.post("/v1/chat/completions", {"model": model, "stream": True, "messages": user("hi")})
    assert openai_chunks(reply, model, include_usage=False)[-1] == och({}, "stop", with_usage=False)
    assert sum(f.comment for f in reply.frames) >= 2  # `: ping` comments, which OpenAI clients skip
    chunks = list(gw.oa().chat.completions.create(model=model, stream=True, messages=user("hi")))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "slow reply"


def test_truncated_openai_relay_gets_an_error_chunk(gw: Gateway, up: Upstream) -> None:
    """OpenAI client, OpenAI-style upstream: bytes relayed as they are, then an error chunk, no [DONE]."""
    upstream = [oa_chunk(ROLE, model="t-otrunc"), oa_chunk(text("partial"), model="t-otrunc")]
    up.script("t-otrunc", upstream, times=2)
    reply = gw.post("/v1/chat/completions", {"model": "mock/t-otrunc", "stream": True, "messages": user("hi")})
    assert reply.raw.startswith("".join(upstream).encode())
    error = json.loads(reply.frames[-1].data)
    assert error["error"]["message"] == "upstream stream ended before the response was complete"
    assert b"[DONE]" not in reply.raw
    with pytest.raises(openai.APIError, match="ended before the response was complete"):
        list(gw.oa().chat.completions.create(model="mock/t-otrunc", stream=True, messages=user("hi")))


# =================================================================================================
# Same-protocol Anthropic relay (§1.1, §5.8, §6)
# =================================================================================================


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (SSE_HEADERS, "upstream stream ended before the response was complete"),
        ({**SSE_HEADERS, "content-length": "100000"},
         "upstream '{model}' failed mid-response (connection closed by the upstream)"),
    ],
    ids=["eof", "connection-lost"],
)
def test_truncated_anthropic_relay_gets_an_error_event(gw: Gateway, up: Upstream, headers: dict[str, str],
                                                       message: str) -> None:  # fmt: skip
    """The Anthropic SDK accepts a stream that just stops; the gateway must end it with an error."""
    upstream = an_sse([an_start(), *an_text(0, "partial")])
    body = messages_body(up.once("anth/claude-t-trunc", upstream, headers=headers, times=2))
    reply = gw.post("/v1/messages", body)
    relayed = "".join(upstream).encode()
    assert reply.raw.startswith(relayed)
    events = anthropic_events(reply)
    assert an_error_frame(events) == {"type": "api_error", "message": message.format(model=body["model"])}
    assert reply.raw[len(relayed):].startswith(b"event: error\n")
    assert_sdk_stream_error(gw, body)


def test_anthropic_relay_pings_only_between_whole_events(gw: Gateway, up: Upstream) -> None:
    """Silence (even in the middle of an event) gets pings, but never inside an event (§6)."""
    upstream = an_sse([an_start(), *an_text(0, "slow", " answer"), *an_end("end_turn", {"output_tokens": 2})])
    delta = upstream[2]
    split = [upstream[0] + upstream[1], delta[:20], delta[20:], "".join(upstream[3:])]
    up.script("claude-t-ping", split, gap_ms=500, times=2)
    body = messages_body("anth/claude-t-ping")
    reply = gw.post("/v1/messages", body)
    events = anthropic_events(reply)
    pings = [f for f in reply.frames if f.event == "ping"]
    assert len(pings) >= 2
    assert reply.raw.replace(b'event: ping\ndata: {"type":"ping"}\n\n', b"") == "".join(upstream).encode()
    assert events == [e for e in json_payloads(upstream)]
    assert stream_sdk(gw, body).content[0].text == "slow answer"


def json_payloads(frames: list[str]) -> list[dict[str, Any]]:
    return [json.loads(f.split("data: ", 1)[1]) for f in frames]


GENUINE = {"type": "thinking", "thinking": "Genuine “thought” with\nnewline, é and \\ escapes",
           "signature": "EqQBCkYIBxgCKkDwJ3l0x/Gs+signature=="}  # fmt: skip


def test_gateway_signed_thinking_is_removed_genuine_thinking_kept_exactly(gw: Gateway, up: Upstream) -> None:
    """§0 #13, §5.8: gateway-signed blocks never reach a real Anthropic upstream; genuine ones
    arrive unchanged, and nothing else in the body changes but `model`."""
    made_here = "From another upstream."
    body = {
        "model": "anth/claude-t-sig", "max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "messages": [
            *user("start"),
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": made_here, "signature": sign(made_here)},
                {"type": "text", "text": "Calling."},
                {"type": "tool_use", "id": "toolu_01X", "name": "Read", "input": {"file_path": "/x"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01X", "content": "ok"}]},
            {"role": "assistant", "content": [GENUINE, {"type": "redacted_thinking", "data": "EmwKAhgBEgy"},
                                              {"type": "text", "text": "Done."}]},
            *user("next"),
        ],
    }  # fmt: skip
    headers = {"anthropic-beta": "interleaved-thinking-2025-05-14,context-management-2025-06-27",
               "anthropic-version": "2023-06-01"}  # fmt: skip
    reply = gw.post("/v1/messages?beta=true", body, headers)
    assert reply.status == 200
    (received,) = up.requests()
    assert received["path"] == "/v1/messages" and received["query"] == "beta=true"
    assert received["headers"]["anthropic-beta"] == headers["anthropic-beta"]
    expected = json.loads(json.dumps(body))
    expected["model"] = "claude-t-sig"
    del expected["messages"][1]["content"][0]
    assert received["body"] == expected
    genuine = received["body"]["messages"][3]["content"][0]
    assert json.dumps(genuine, ensure_ascii=False) == json.dumps(GENUINE, ensure_ascii=False)


def test_anthropic_beta_reaches_only_anthropic_upstreams(gw: Gateway, up: Upstream) -> None:
    beta = {"anthropic-beta": "claude-code-20250219,effort-2025-11-24", "anthropic-version": "2023-06-01"}
    for model in ("anth/claude-t-beta", "anthv1/claude-t-beta", "mock/t-beta", "deepseek/deepseek-v4-pro-t-beta",
                  "moonshotai/kimi-for-coding-t-beta"):
        assert gw.post("/v1/messages", {"model": model, "max_tokens": 10, "messages": user("hi")}, beta).status == 200
    *to_anthropic, = up.requests()[:2]
    to_openai_style = up.requests()[2:]
    for request in to_anthropic:  # a base URL ending in /v1 still gives /v1/messages (§1.1)
        assert request["path"] == "/v1/messages" and request["headers"]["x-api-key"] == SECRET
        assert request["headers"]["anthropic-beta"] == beta["anthropic-beta"]
    for request in to_openai_style:
        assert "anthropic-beta" not in request["headers"] and "anthropic-version" not in request["headers"]
        assert request["headers"]["authorization"] == f"Bearer {SECRET}" and "x-api-key" not in request["headers"]


def test_anthropic_upstream_response_headers_reach_the_client(gw: Gateway, up: Upstream) -> None:
    kept = {"request-id": "req_011CUp", "x-should-retry": "false", "retry-after-ms": "1500",
            "anthropic-ratelimit-requests-remaining": "99"}  # fmt: skip
    up.script("claude-t-hdr", an_text_stream("hi"), headers={**SSE_HEADERS, **kept, "set-cookie": "a=b"})
    reply = gw.post("/v1/messages", messages_body("anth/claude-t-hdr"))
    anthropic_events(reply)
    assert {k: reply.headers.get(k) for k in kept} == kept and "set-cookie" not in reply.headers


# =================================================================================================
# Requests as the upstream receives them (§1.2, §1.3, §5.1, §5.2, §3.3, §3.4)
# =================================================================================================

BILLING = "x-anthropic-billing-header: cc_version=2.1.200.a1b; cc_entrypoint=cli; cch=93f2c;"
USER_ID = json.dumps({"device_id": "d" * 64, "account_uuid": "acc-1", "session_id": "sess-7"})
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
CLAUDE_CODE_HEADERS = {
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27",
    "anthropic-version": "2023-06-01", "user-agent": "claude-cli/2.1.200 (external, cli)", "x-app": "cli",
    "accept-encoding": "gzip, deflate", "x-claude-code-session-id": "sess-7",
    "anthropic-dangerous-direct-browser-access": "true",
}  # fmt: skip
BASH_TOOL = {"name": "Bash", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}


def claude_code_request(model: str, tool_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": model, "max_tokens": 32000, "stream": True, "temperature": 1,
        "system": [{"type": "text", "text": BILLING},
                   {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Fix a.py", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Look first.", "signature": sign("Look first.")},
                {"type": "text", "text": "Reading."},
                {"type": "tool_use", "id": tool_id, "name": "Read", "input": {"file_path": "/a.py"}},
                {"type": "tool_use", "id": "toolu_01B", "name": "Bash", "input": {"command": "ls"}}]},
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>keep going</system-reminder>"},
                {"type": "tool_result", "tool_use_id": tool_id, "content": "print(1)"},
                {"type": "tool_result", "tool_use_id": "toolu_01B", "is_error": True,
                 "content": [{"type": "text", "text": "ls: permission denied"}]},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
            {"role": "system", "content": "Plan mode is on."},
            {"role": "user", "content": "continue"},
        ],
        "tools": [{**READ_TOOL, "input_schema": {"$schema": "https://json-schema.org/draft/2020-12/schema",
                                                 **READ_TOOL["input_schema"], "additionalProperties": False},
                   "cache_control": {"type": "ephemeral"}}, BASH_TOOL],
        "thinking": {"type": "enabled", "budget_tokens": 31999},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": USER_ID},
        **extra,
    }  # fmt: skip


def translated_turns(tool_id: str, last_user: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages an OpenAI-style upstream gets for `claude_code_request`."""
    arguments = [("Read", '{"file_path": "/a.py"}', tool_id), ("Bash", '{"command": "ls"}', "toolu_01B")]
    return [
        {"role": "system", "content": "You are Claude Code."},  # the billing line is gone
        {"role": "user", "content": "Fix a.py"},
        {"role": "assistant", "content": "Reading.", "reasoning_content": "Look first.",
         "tool_calls": [{"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                        for n, a, i in arguments]},
        # tool results first, in order, before the text of the same turn
        {"role": "tool", "tool_call_id": tool_id, "content": "print(1)"},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": "[tool error] ls: permission denied"},
        {"role": "user", "content": last_user},
        {"role": "system", "content": "Plan mode is on."},
        {"role": "user", "content": "continue"},
    ]  # fmt: skip


OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "Read", "description": "Read a file", "parameters": {
        **READ_TOOL["input_schema"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "Bash", "parameters": BASH_TOOL["input_schema"]}},
]  # fmt: skip
HASHED_USER = "u_" + hashlib.sha256(USER_ID.encode()).hexdigest()[:32]


def assert_upstream_answer_relayed(reply: Reply, model: str, body: dict[str, Any]) -> None:
    events = translated(reply, model, count_anthropic_tokens(body))
    assert events[-1] == {"type": "message_stop"}
    assert text_of(events) == "Mock reply to: continue"


def test_claude_code_request_as_deepseek_receives_it(gw: Gateway, up: Upstream) -> None:
    model = "deepseek/deepseek-chat-t-cc"
    body = claude_code_request(model, "toolu_01A", output_config={"effort": "medium"}, top_k=40,
                               stop_sequences=["END"], tool_choice={"type": "auto", "disable_parallel_tool_use": True},
                               service_tier="auto", container="c1", cache_control={"type": "ephemeral"})  # fmt: skip
    reply = gw.post("/v1/messages?beta=true", body, CLAUDE_CODE_HEADERS)
    assert_upstream_answer_relayed(reply, model, body)
    (received,) = up.requests()
    assert received["path"] == "/v1/chat/completions" and received["query"] == ""
    placeholder = "<system-reminder>keep going</system-reminder>\n\n[image omitted: this model cannot read images]"
    assert received["body"] == {
        "model": "deepseek-chat-t-cc",
        "messages": translated_turns("toolu_01A", placeholder),
        "max_tokens": 8192,  # deepseek-chat takes at most 8192
        "temperature": 1,  # top_k has no OpenAI equivalent
        "stop": ["END"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": OPENAI_TOOLS,  # `$schema` and cache_control gone
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "thinking": {"type": "enabled"},
        "reasoning_effort": "high",  # DeepSeek has high|max only
        "user": HASHED_USER,
    }
    headers = received["headers"]
    assert headers["authorization"] == f"Bearer {SECRET}" and headers["accept-encoding"] == "identity"
    assert headers["user-agent"] != CLAUDE_CODE_HEADERS["user-agent"]
    assert not {"anthropic-beta", "anthropic-version", "x-api-key", "x-app"} & set(headers)


def test_claude_code_request_as_kimi_receives_it(gw: Gateway, up: Upstream) -> None:
    model = "moonshotai/kimi-k2.6-t-cc"
    kimi_id = to_client_id("functions.Read:0")
    body = claude_code_request(model, kimi_id, tool_choice={"type": "any"})
    reply = gw.post("/v1/messages?beta=true", body, CLAUDE_CODE_HEADERS)
    assert_upstream_answer_relayed(reply, model, body)
    (received,) = up.requests()
    assert received["path"] == "/coding/v1/chat/completions"
    last_user = [{"type": "text", "text": "<system-reminder>keep going</system-reminder>"},
                 {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]  # fmt: skip
    assert received["body"] == {
        "model": "kimi-k2.6-t-cc",
        "messages": translated_turns("functions.Read:0", last_user),
        "max_tokens": 32000,
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": OPENAI_TOOLS,
        "tool_choice": "auto",  # "required" is rejected by Kimi with thinking on
        "thinking": {"type": "enabled"},
        "user": HASHED_USER,
        "prompt_cache_key": "sess-7",
    }  # temperature is fixed server-side on K2.6: not sent


def test_openai_client_request_as_anthropic_receives_it(gw: Gateway, up: Upstream) -> None:
    """§5.9: system/developer -> `system`, tool_calls -> tool_use, consecutive tool messages -> one
    user turn of tool_result blocks, max_tokens always set, tool_choice and parallel calls mapped."""
    fn = {"type": "function", "function": {"name": "Read", "parameters": READ_TOOL["input_schema"]}}
    arguments = {"toolu_01A": '{"file_path":"/a"}', "call_9": '{"file_path":"/b"}'}
    completion = gw.oa().chat.completions.create(
        model="anth/claude-t-oreq", tools=[fn], tool_choice="required", parallel_tool_calls=False, stop="END",
        max_completion_tokens=300, user="u-1", temperature=1.5,
        messages=[
            {"role": "system", "content": "Be brief."}, *user("read both"),
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": i, "type": "function", "function": {"name": "Read", "arguments": a}}
                for i, a in arguments.items()]},
            {"role": "tool", "tool_call_id": "toolu_01A", "content": "A"},
            {"role": "tool", "tool_call_id": "call_9", "content": "B"},
            {"role": "developer", "content": "Answer in French."}, *user("summarise"),
        ],
    )  # fmt: skip
    assert completion.choices[0].message.content == "Tool result received: A"
    (received,) = up.requests()
    assert received["body"] == {
        "model": "claude-t-oreq",
        "system": "Be brief.\n\nAnswer in French.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "read both"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": i, "name": "Read", "input": json.loads(a)}
                                              for i, a in arguments.items()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "A"},
                                         {"type": "tool_result", "tool_use_id": "call_9", "content": "B"},
                                         {"type": "text", "text": "summarise"}]},
        ],
        "max_tokens": 300,
        "stop_sequences": ["END"],
        "temperature": 1,  # Anthropic's range is 0..1
        "tools": [{"name": "Read", "input_schema": READ_TOOL["input_schema"]}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "u-1"},
    }  # fmt: skip


# =================================================================================================
# count_tokens (§1.7)
# =================================================================================================


def count(gw: Gateway, path: str, body: dict[str, Any]) -> int:
    reply = gw.post(path, body)
    assert reply.status == 200, reply.raw
    payload = reply.json()
    assert list(payload) == ["input_tokens"] and isinstance(payload["input_tokens"], int)
    return payload["input_tokens"]


@pytest.mark.parametrize("model", ["mock/t-count", "deepseek/deepseek-v4-pro-t-count",
                                   "moonshotai/kimi-for-coding-t-count"])  # fmt: skip
def test_count_tokens_is_local_for_openai_style_upstreams(gw: Gateway, up: Upstream, model: str) -> None:
    bare = {"model": model, "messages": user("How many tokens is this?")}
    n = count(gw, "/v1/messages/count_tokens?beta=true", bare)
    assert n > 0
    with_system = count(gw, "/v1/messages/count_tokens", {**bare, "system": "You are a careful assistant."})
    with_tools = count(gw, "/v1/messages/count_tokens", {**bare, "tools": [READ_TOOL, BASH_TOOL]})
    assert with_system > n and with_tools > n + 20
    full = claude_code_request(model, "toolu_01A")
    for key in ("max_tokens", "stream", "temperature", "metadata", "context_management"):
        del full[key]
    assert count(gw, "/v1/messages/count_tokens?beta=true", full) > with_tools
    assert up.requests() == []  # answered by the gateway
    assert gw.an().messages.count_tokens(model=model, messages=user("How many tokens is this?")).input_tokens == n


def test_count_tokens_falls_back_when_anthropic_upstream_has_no_endpoint(gw: Gateway, up: Upstream) -> None:
    body = {"model": "nocount/claude-t-count", "system": "Be brief.", "messages": user("How many tokens?")}
    local = count(gw, "/v1/messages/count_tokens", {**body, "model": "mock/t-count"})
    assert count(gw, "/v1/v1/messages/count_tokens?beta=true", body) == local > 0
    (asked,) = up.requests()
    # asked first, with the client's query; its 404 is not a model failure
    assert (asked["path"], asked["query"]) == ("/v1/messages/count_tokens", "beta=true")


# =================================================================================================
# Paths, auth and HTTP hygiene (§1.1, §6)
# =================================================================================================


def test_v1_v1_path_and_both_auth_styles(gw: Gateway, up: Upstream) -> None:
    """A base URL ending in /v1 (SDK appends /v1/messages) and ANTHROPIC_AUTH_TOKEN (Bearer)."""
    up.script("t-paths", oa_text_stream("fine"))
    bearer = gw.an(api_key=None, auth_token=KEY, base_url=f"{gw.url}/v1")
    with bearer.messages.stream(model="mock/t-paths", max_tokens=10, messages=user("hi")) as stream:
        assert stream.get_final_message().content[0].text == "fine"
    assert up.requests()[-1]["path"] == "/v1/chat/completions"
    assert bearer.messages.count_tokens(model="mock/t-paths", messages=user("hi")).input_tokens > 0
    with pytest.raises(anthropic.AuthenticationError):
        gw.an(api_key="wrong-key").messages.create(model="mock/t-paths", max_tokens=10, messages=user("hi"))
    # the Responses API on the same key (tests/test_responses_gateway.py covers it)
    responses = gw.post("/v1/responses", {"model": "mock/t-paths", "input": "hi"})
    assert responses.status == 200 and responses.json()["object"] == "response"


def test_models_list_in_anthropic_shape(gw: Gateway) -> None:
    """§1.1 MAY: GET /v1/models in Anthropic's list shape (OpenAI's fields alongside)."""
    listing = httpx.get(f"{gw.url}/v1/models", headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
                        timeout=CLIENT_TIMEOUT).json()  # fmt: skip
    assert listing["has_more"] is False and listing["data"]
    assert (listing["first_id"], listing["last_id"]) == (listing["data"][0]["id"], listing["data"][-1]["id"])
    for model in listing["data"]:
        assert model["type"] == "model" and model["id"] and model["display_name"]
        assert re.match(r"^\d{4}-\d{2}-\d{2}T", model["created_at"])
    assert [m.id for m in gw.an().models.list()] == [m["id"] for m in listing["data"]]


def test_sse_response_headers(gw: Gateway, up: Upstream) -> None:
    """§1.5 rule 2, §6: text/event-stream, no content-length, no content-encoding, in both
    directions and on a same-protocol relay."""
    up.script("t-hdr", oa_text_stream("a"), headers={**SSE_HEADERS, "content-length": "999", "x-request-id": "r1"})
    up.script("claude-t-hdr2", an_text_stream("a"), headers={**SSE_HEADERS, "content-encoding": "identity"})
    up.script("claude-t-hdr3", an_text_stream("a"), gzip=True)
    replies = [gw.post("/v1/messages", messages_body("mock/t-hdr")),
               gw.post("/v1/chat/completions", {"model": "anth/claude-t-hdr2", "stream": True, "messages": user("x")}),
               gw.post("/v1/messages", messages_body("anth/claude-t-hdr3"))]  # fmt: skip
    for reply in replies:
        assert reply.status == 200 and reply.headers["content-type"].startswith("text/event-stream")
        assert "content-length" not in reply.headers and "content-encoding" not in reply.headers
        assert reply.headers.get("transfer-encoding") == "chunked"
    assert replies[0].headers["x-request-id"] == "r1"
    assert replies[0].headers["cache-control"] == replies[1].headers["cache-control"] == "no-cache"
    assert replies[2].raw == "".join(an_text_stream("a")).encode()


SSE_STREAMS = [("/v1/messages", "mock/t-relay"), ("/v1/chat/completions", "mock/t-relay"),
               ("/v1/messages", "anth/claude-t-relay"), ("/v1/chat/completions", "anth/claude-t-relay")]


@pytest.mark.parametrize(("header", "value"), [("cache-control", "no-cache"), ("x-accel-buffering", "no")])
def test_sse_responses_are_neither_cached_nor_buffered(gw: Gateway, up: Upstream, header: str, value: str) -> None:
    """§1.5 rule 2: relays and translations alike, whatever headers the upstream sent."""
    for path, model in SSE_STREAMS:
        name = model.split("/", 1)[1]
        up.script(name, an_text_stream("a") if model.startswith("anth/") else oa_text_stream("a"))
        body = messages_body(model) if path == "/v1/messages" else {"model": model, "stream": True,
                                                                    "messages": user("x")}  # fmt: skip
        reply = gw.post(path, body)
        assert reply.status == 200 and reply.headers.get(header) == value, (path, model)


@pytest.mark.parametrize(
    ("path", "model", "upstream_body"),
    [
        ("/v1/messages", "mock/t-gz", oa_completion({"role": "assistant", "content": "unzipped"}, "stop", usage(3, 1))),
        ("/v1/chat/completions", "mock/t-gz",
         oa_completion({"role": "assistant", "content": "unzipped"}, "stop", usage(3, 1))),
        ("/v1/messages", "anth/claude-t-gz", json.dumps({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-t-gz",
            "content": [{"type": "text", "text": "unzipped"}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 1}})),
    ],
    ids=["cross-protocol", "openai-relay", "anthropic-relay"],
)
def test_decompressed_bodies_never_carry_content_encoding(gw: Gateway, up: Upstream, path: str, model: str,
                                                          upstream_body: str) -> None:  # fmt: skip
    """§0 #10: the upstream's gzip is undone on the way, so its Content-Encoding must not pass."""
    up.script(model.split("/")[1], [upstream_body[:30], upstream_body[30:]], headers=JSON_HEADERS, gzip=True)
    body = {"model": model, "max_tokens": 10, "messages": user("hi")}
    reply = gw.post(path, body, {"accept-encoding": "x-client-only"})
    assert reply.status == 200 and "content-encoding" not in reply.headers
    assert int(reply.headers["content-length"]) == len(reply.raw)
    payload = reply.json()
    said = payload["content"][0]["text"] if path == "/v1/messages" else payload["choices"][0]["message"]["content"]
    assert said == "unzipped"
    assert "x-client-only" not in up.requests()[0]["headers"].get("accept-encoding", "")


def test_default_upstream_timeouts_allow_ten_minutes_of_silence() -> None:
    """§6 Timeouts: reasoning models may think for minutes before the first byte (a configuration
    check; ten minutes of silence are not waited for)."""
    from gateway.config import parse

    config = parse("version: v0.4.0\nllm_providers:\n  - model: mock/m\n", {})
    assert config.timeouts.first_byte >= 600 and config.timeouts.idle >= 600
