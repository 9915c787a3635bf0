"""Stream translation golden tests (protocol-conformance §1.5, §3.2-3.4, §5.4, §5.9).

Upstream chunk sequences are written the way Kimi, DeepSeek and OpenAI send them; the client side
is checked event by event, and then parsed by the official SDKs' own stream accumulators.
"""

from __future__ import annotations

import json
import re
from typing import Any

import anthropic
import httpx2
import openai
import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from models.sse import SSEDecoder, encode
from models.translate.ids import to_client_id
from models.translate.stream import AnthropicToOpenAIStream, OpenAIToAnthropicStream
from models.translate.thinking import sign

# -- upstream (OpenAI) side ------------------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, *, usage: dict[str, Any] | None = None,
          choices: bool = True, choice_usage: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    body: dict[str, Any] = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "up"}
    if choices:
        choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "finish_reason": finish}
        if choice_usage is not None:
            choice["usage"] = choice_usage
        body["choices"] = [choice]
    else:
        body["choices"] = []
    if usage is not None:
        body["usage"] = usage
    return body


def tool(index: int | None, id: str | None = None, name: str | None = None, args: str | None = None) -> dict[str, Any]:
    fragment: dict[str, Any] = {}
    if index is not None:
        fragment["index"] = index
    if id is not None:
        fragment["id"] = id
        fragment["type"] = "function"
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if args is not None:
        function["arguments"] = args
    fragment["function"] = function
    return fragment


def tools(*fragments: dict[str, Any]) -> dict[str, Any]:
    return chunk({"tool_calls": list(fragments)})


def sse(*chunks: dict[str, Any] | str, done: bool = True) -> bytes:
    """Upstream bytes: each chunk as `data:`, a str as a comment line, then `data: [DONE]`."""
    out = b"".join(f": {c}\n\n".encode() if isinstance(c, str) else encode(None, orjson.dumps(c)) for c in chunks)
    return out + (b"data: [DONE]\n\n" if done else b"")


USAGE = {"prompt_tokens": 1200, "completion_tokens": 40, "total_tokens": 1240, "prompt_tokens_details": {"cached_tokens": 1000}}


def o2a(raw: bytes | list[bytes], estimate: int = 900, eof: bool = True) -> tuple[bytes, OpenAIToAnthropicStream]:
    """Run upstream bytes (whole or in pieces) through SSEDecoder and the state machine."""
    stream = OpenAIToAnthropicStream("claude-sonnet-4-5", estimate)
    decoder = SSEDecoder()
    out = stream.start()
    for piece in [raw] if isinstance(raw, bytes) else raw:
        for event in decoder.feed(piece):
            out += stream.feed(event)
    if eof:
        for event in decoder.flush():
            out += stream.feed(event)
        out += stream.finish()
    return out, stream


# -- client (Anthropic) side -----------------------------------------------------------------


def frames(out: bytes) -> list[dict[str, Any]]:
    """Client events, checking the framing rule: every frame named, name == payload type."""
    decoded = SSEDecoder().feed(out)
    assert out.endswith(b"\n\n")
    payloads = []
    for event in decoded:
        payload = orjson.loads(event.data)
        assert event.event == payload["type"], "every Anthropic frame needs its event: line"
        payloads.append(payload)
    return payloads


def summary(out: bytes) -> list[str]:
    """A compact, exact rendering of the client event sequence."""
    lines: list[str] = []
    thinking: dict[int, str] = {}
    for e in frames(out):
        kind = e["type"]
        if kind == "message_start":
            assert e["message"]["content"] == [] and e["message"]["stop_reason"] is None
            lines.append(f"message_start in={e['message']['usage']['input_tokens']}")
        elif kind == "content_block_start":
            block = e["content_block"]
            extra = f" {block['id']} {block['name']}" if block["type"] == "tool_use" else ""
            if block["type"] == "tool_use":
                assert block["input"] == {}
            lines.append(f"start {e['index']} {block['type']}{extra}")
        elif kind == "content_block_delta":
            d = e["delta"]
            if d["type"] == "signature_delta":
                assert d["signature"] == sign(thinking[e["index"]])
                lines.append(f"{e['index']} signature")
                continue
            field = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}[d["type"]]
            if d["type"] == "thinking_delta":
                thinking[e["index"]] = thinking.get(e["index"], "") + d["thinking"]
            lines.append(f"{e['index']} {d['type'].removesuffix('_delta')} {d[field]!r}")
        elif kind == "content_block_stop":
            lines.append(f"stop {e['index']}")
        elif kind == "message_delta":
            u = e["usage"]
            lines.append(
                f"message_delta {e['delta']['stop_reason']} in={u['input_tokens']} out={u['output_tokens']} "
                f"read={u['cache_read_input_tokens']} write={u['cache_creation_input_tokens']}"
            )
        elif kind == "error":
            lines.append(f"error {e['error']['type']}: {e['error']['message']}")
        else:
            lines.append(kind)
    return lines


def check_grammar(out: bytes) -> list[dict[str, Any]]:
    """§1.5 rules 3-6 for any output: one start first, sequential blocks, one stop last."""
    events = frames(out)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds.count("message_start") == 1
    terminal = kinds[-1]
    assert terminal in ("message_stop", "error")
    assert kinds.count("message_stop") == (terminal == "message_stop")
    assert kinds.count("error") == (terminal == "error")
    assert kinds.count("message_delta") == (terminal == "message_stop")
    open_index: int | None = None
    next_index = 0
    for e in events:
        if e["type"] == "content_block_start":
            assert open_index is None and e["index"] == next_index
            open_index, next_index = e["index"], next_index + 1
        elif e["type"] in ("content_block_delta", "content_block_stop"):
            assert e["index"] == open_index, "delta/stop only for the open block"
            if e["type"] == "content_block_stop":
                open_index = None
        elif e["type"] == "message_delta":
            assert open_index is None and isinstance(e["usage"]["output_tokens"], int)
    if terminal == "message_stop":
        assert open_index is None
        tool_blocks = any(e["type"] == "content_block_start" and e["content_block"]["type"] == "tool_use" for e in events)
        stop_reason = next(e for e in events if e["type"] == "message_delta")["delta"]["stop_reason"]
        assert (stop_reason == "tool_use") == tool_blocks or stop_reason == "max_tokens"
    return events


def anthropic_sdk_message(out: bytes) -> anthropic.types.Message:
    """The final message as the Anthropic SDK's MessageStream accumulates it."""
    transport = httpx2.MockTransport(
        lambda request: httpx2.Response(200, content=out, headers={"content-type": "text/event-stream"})
    )
    client = anthropic.Anthropic(
        api_key="k", base_url="http://gateway.test", http_client=httpx2.Client(transport=transport), max_retries=0
    )
    with client.messages.stream(model="junction-test", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
        return s.get_final_message()


# -- golden streams: OpenAI upstream -> Anthropic client -------------------------------------


def test_plain_text_stream_byte_exact() -> None:
    raw = sse(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hello"}),
        chunk({"content": " world"}),
        chunk({}, "stop"),
        chunk(choices=False, usage=USAGE),
    )
    out, stream = o2a(raw)
    message_id = re.search(rb'"id":"(msg_[0-9a-f]{24})"', out).group(1).decode()  # type: ignore[union-attr]
    expected = (
        'event: message_start\ndata: {"type":"message_start","message":{"id":"%s","type":"message","role":"assistant",'
        '"model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":900,'
        '"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}\n\n'
        'event: ping\ndata: {"type":"ping"}\n\n'
        'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}\n\n'
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" world"}}\n\n'
        'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
        '"usage":{"input_tokens":200,"output_tokens":40,"cache_creation_input_tokens":0,"cache_read_input_tokens":1000}}\n\n'
        'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    ) % message_id
    assert out.decode() == expected
    assert stream.done and not stream.saw_tool_use
    assert stream.usage == {"input_tokens": 200, "output_tokens": 40, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1000}


def test_reasoning_then_text_then_tool_deepseek() -> None:
    raw = sse(
        chunk({"role": "assistant", "content": None, "reasoning_content": ""}),
        chunk({"content": None, "reasoning_content": "The user wants"}),
        chunk({"content": None, "reasoning_content": " a.py."}),
        chunk({"content": "Reading it.", "reasoning_content": None}),
        tools(tool(0, "call_00_x", "Read", "")),
        tools(tool(0, args='{"file_path":')),
        tools(tool(0, args=' "/a.py"}')),
        chunk({}, "tool_calls", usage={"prompt_tokens": 500, "completion_tokens": 30, "prompt_cache_hit_tokens": 384}),
    )
    out, stream = o2a(raw)
    assert summary(out) == [
        "message_start in=900",
        "ping",
        "start 0 thinking",
        "0 thinking 'The user wants'",
        "0 thinking ' a.py.'",
        "0 signature",
        "stop 0",
        "start 1 text",
        "1 text 'Reading it.'",
        "stop 1",
        "start 2 tool_use call_00_x Read",
        "2 input_json '{\"file_path\":'",
        "2 input_json ' \"/a.py\"}'",
        "stop 2",
        "message_delta tool_use in=116 out=30 read=384 write=0",
        "message_stop",
    ]
    assert stream.saw_tool_use
    msg = anthropic_sdk_message(out)
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[0].signature == sign("The user wants a.py.")  # type: ignore[union-attr]
    assert msg.content[2].input == {"file_path": "/a.py"}  # type: ignore[union-attr]
    assert msg.stop_reason == "tool_use" and msg.usage.input_tokens == 116 and msg.usage.cache_read_input_tokens == 384


def test_interleaved_parallel_tool_calls_are_serialised() -> None:
    raw = sse(
        tools(tool(0, "call_a", "Read", "")),
        tools(tool(1, "call_b", "Read", "")),
        tools(tool(0, args='{"file_path":')),
        tools(tool(1, args='{"file_path":')),
        tools(tool(0, args='"/a.py"}')),
        tools(tool(1, args='"/b.py"}')),
        chunk({}, "tool_calls"),
    )
    out, _ = o2a(raw)
    check_grammar(out)
    assert summary(out)[2:] == [
        "start 0 tool_use call_a Read",
        "0 input_json '{\"file_path\":'",
        "0 input_json '\"/a.py\"}'",
        "stop 0",
        "start 1 tool_use call_b Read",
        "1 input_json '{\"file_path\":'",  # held while call_a was open, flushed at its turn
        "1 input_json '\"/b.py\"}'",
        "stop 1",
        "message_delta tool_use in=900 out=0 read=0 write=0",
        "message_stop",
    ]
    msg = anthropic_sdk_message(out)
    assert [(b.id, b.input) for b in msg.content] == [("call_a", {"file_path": "/a.py"}), ("call_b", {"file_path": "/b.py"})]  # type: ignore[union-attr]


def test_sequential_parallel_calls_stream_live() -> None:
    raw = sse(
        tools(tool(0, "call_a", "Read", '{"file_path": "/a.py"}')),
        tools(tool(1, "call_b", "Read", '{"file_path"')),
        tools(tool(1, args=': "/b.py"}')),
        chunk({}, "tool_calls"),
    )
    lines = summary(o2a(raw)[0])
    # call_b's first fragment goes out as soon as it arrives: call_a's JSON was already whole.
    assert lines[2:10] == [
        "start 0 tool_use call_a Read",
        "0 input_json '{\"file_path\": \"/a.py\"}'",
        "stop 0",
        "start 1 tool_use call_b Read",
        "1 input_json '{\"file_path\"'",
        "1 input_json ': \"/b.py\"}'",
        "stop 1",
        "message_delta tool_use in=900 out=0 read=0 write=0",
    ]


def test_arguments_only_in_the_last_chunk() -> None:
    raw = sse(
        chunk({"content": "Let me check."}),
        tools(tool(0, "call_a", "Glob", "")),
        tools(tool(1, "call_b", "Grep", "")),
        chunk({"tool_calls": [tool(0, args='{"pattern": "*.py"}'), tool(1, args='{"pattern": "TODO"}')]}, "tool_calls"),
        chunk(choices=False, usage=USAGE),
    )
    out, _ = o2a(raw)
    assert summary(out)[2:] == [
        "start 0 text",
        "0 text 'Let me check.'",
        "stop 0",
        "start 1 tool_use call_a Glob",
        "1 input_json '{\"pattern\": \"*.py\"}'",
        "stop 1",
        "start 2 tool_use call_b Grep",
        "2 input_json '{\"pattern\": \"TODO\"}'",
        "stop 2",
        "message_delta tool_use in=200 out=40 read=1000 write=0",
        "message_stop",
    ]


def test_whole_call_in_the_finish_chunk() -> None:
    raw = sse(chunk({"tool_calls": [tool(0, "c1", "Bash", '{"command": "ls"}')]}, "tool_calls"))
    assert summary(o2a(raw)[0])[2:6] == ["start 0 tool_use c1 Bash", "0 input_json '{\"command\": \"ls\"}'", "stop 0", "message_delta tool_use in=900 out=0 read=0 write=0"]


def test_index_reuse_with_a_new_id_is_a_new_call() -> None:
    raw = sse(
        tools(tool(0, "call_a", "Read", '{"file_path": "/a.py"}')),
        tools(tool(0, "call_b", "Read", '{"file_path": "/b.py"}')),
        chunk({}, "tool_calls"),
    )
    out, _ = o2a(raw)
    assert summary(out)[2:8] == [
        "start 0 tool_use call_a Read",
        "0 input_json '{\"file_path\": \"/a.py\"}'",
        "stop 0",
        "start 1 tool_use call_b Read",
        "1 input_json '{\"file_path\": \"/b.py\"}'",
        "stop 1",
    ]


def test_call_tail_on_a_fresh_index_continues_the_latest_call() -> None:
    # deepseek-v4-flash: call #2's head arrives on index 0, its tail on index 1.
    raw = sse(
        tools(tool(0, "call_a", "Read", '{"file_path": "/a.py"}')),
        tools(tool(0, "call_b", "Read", '{"file_path": ')),
        tools(tool(1, args='"/b.py"}')),
        chunk({}, "tool_calls"),
    )
    msg = anthropic_sdk_message(o2a(raw)[0])
    assert [(b.id, b.input) for b in msg.content] == [("call_a", {"file_path": "/a.py"}), ("call_b", {"file_path": "/b.py"})]  # type: ignore[union-attr]


def test_calls_without_ids_all_on_index_zero() -> None:
    raw = sse(
        tools(tool(0, name="Read", args='{"file_path": "/a.py"}')),
        tools(tool(0, name="Read", args='{"file_path": "/b.py"}')),
        chunk({}, "tool_calls"),
    )
    msg = anthropic_sdk_message(o2a(raw)[0])
    assert [b.input for b in msg.content] == [{"file_path": "/a.py"}, {"file_path": "/b.py"}]  # type: ignore[union-attr]
    assert all(re.fullmatch(r"toolu_[0-9a-f]{24}", b.id) for b in msg.content)  # type: ignore[union-attr]
    assert msg.content[0].id != msg.content[1].id  # type: ignore[union-attr]


def test_kimi_tool_ids_are_made_anthropic_safe() -> None:
    raw = sse(tools(tool(0, "functions.Read:0", "Read", '{"file_path": "/a.py"}')), chunk({}, "tool_calls"))
    msg = anthropic_sdk_message(o2a(raw)[0])
    assert msg.content[0].id == to_client_id("functions.Read:0")  # type: ignore[union-attr]
    assert re.fullmatch(r"[A-Za-z0-9_-]+", msg.content[0].id)  # type: ignore[union-attr]


def test_text_after_an_unfinished_call_waits_for_it() -> None:
    raw = sse(
        tools(tool(0, "c1", "Write", '{"content": "a')),
        chunk({"content": "Done."}),
        tools(tool(0, args='bc"}')),
        chunk({}, "tool_calls"),
    )
    assert summary(o2a(raw)[0])[2:9] == [
        "start 0 tool_use c1 Write",
        "0 input_json '{\"content\": \"a'",
        "0 input_json 'bc\"}'",
        "stop 0",
        "start 1 text",
        "1 text 'Done.'",
        "stop 1",
    ]


def test_whitespace_only_text_never_opens_a_block() -> None:
    raw = sse(
        chunk({"content": "\n\n"}),
        tools(tool(0, "c1", "Bash", '{"command": "ls"}')),
        chunk({"content": " "}),
        chunk({}, "tool_calls"),
    )
    assert summary(o2a(raw)[0])[2:5] == ["start 0 tool_use c1 Bash", "0 input_json '{\"command\": \"ls\"}'", "stop 0"]
    # ...but leading whitespace of real text is kept.
    lines = summary(o2a(sse(chunk({"content": "\n"}), chunk({"content": "Hi"}), chunk({}, "stop")))[0])
    assert lines[2:5] == ["start 0 text", "0 text '\\nHi'", "stop 0"]


def test_usage_after_finish_is_waited_for() -> None:
    raw = sse(chunk({"content": "x"}), chunk({}, "stop"), ": keep-alive", chunk(choices=False, usage=USAGE))
    assert summary(o2a(raw)[0])[-2] == "message_delta end_turn in=200 out=40 read=1000 write=0"


def test_kimi_usage_inside_the_choice() -> None:
    kimi_usage = {"prompt_tokens": 5000, "completion_tokens": 12, "total_tokens": 5012, "cached_tokens": 4608}
    raw = sse(chunk({"content": "ok"}), chunk({}, "stop", choice_usage=kimi_usage))
    out, stream = o2a(raw)
    assert summary(out)[-2] == "message_delta end_turn in=392 out=12 read=4608 write=0"
    assert anthropic_sdk_message(out).usage.cache_read_input_tokens == 4608


def test_missing_usage_keeps_the_estimate() -> None:
    out, stream = o2a(sse(chunk({"content": "ok"}), chunk({}, "stop")), estimate=4321)
    assert summary(out)[-2] == "message_delta end_turn in=4321 out=0 read=0 write=0"
    assert anthropic_sdk_message(out).usage.input_tokens == 4321


def test_keep_alive_comments_become_pings() -> None:
    raw = sse(": keep-alive", ": keep-alive", chunk({"content": "x"}), ": keep-alive", chunk({}, "stop"))
    assert summary(o2a(raw)[0]) == [
        "message_start in=900",
        "ping",
        "ping",
        "ping",
        "start 0 text",
        "0 text 'x'",
        "ping",
        "stop 0",
        "message_delta end_turn in=900 out=0 read=0 write=0",
        "message_stop",
    ]


def test_stream_ending_without_finish_is_an_error_not_a_success() -> None:
    out, stream = o2a(sse(chunk({"content": "The answer is"}), done=False))
    assert summary(out) == [
        "message_start in=900",
        "ping",
        "start 0 text",
        "0 text 'The answer is'",
        "error api_error: upstream stream ended before the response was complete",
    ]
    assert stream.done and stream.finish() == b"" and stream.ping() == b""
    with pytest.raises(anthropic.APIStatusError):
        anthropic_sdk_message(out)


def test_clean_eof_after_finish_reason_without_done() -> None:
    out, _ = o2a(sse(chunk({"content": "x"}), chunk({}, "stop"), done=False))
    assert summary(out)[-2:] == ["message_delta end_turn in=900 out=0 read=0 write=0", "message_stop"]


def test_done_without_finish_reason_still_ends_properly() -> None:
    out, _ = o2a(sse(tools(tool(0, "c1", "Bash", '{"command": "ls"}'))))
    assert summary(out)[-2:] == ["message_delta tool_use in=900 out=0 read=0 write=0", "message_stop"]


def test_upstream_error_chunk() -> None:
    raw = sse(chunk({"content": "par"}), {"error": {"message": "Server overloaded, please retry", "type": "server_overloaded"}}, done=False)
    out, stream = o2a(raw)
    assert summary(out)[-1] == "error overloaded_error: Server overloaded, please retry"
    assert stream.done
    with pytest.raises(anthropic.APIStatusError) as err:
        anthropic_sdk_message(out)
    assert err.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_deepseek_insufficient_system_resource_is_overloaded() -> None:
    out, _ = o2a(sse(chunk({"content": "par"}), chunk({}, "insufficient_system_resource")))
    lines = summary(out)
    assert lines[-1] == "error overloaded_error: upstream is overloaded (insufficient_system_resource)"
    assert "message_stop" not in lines


def test_empty_upstream_stream_with_done() -> None:
    assert summary(o2a(sse())[0]) == [
        "message_start in=900",
        "ping",
        "message_delta end_turn in=900 out=0 read=0 write=0",
        "message_stop",
    ]
    msg = anthropic_sdk_message(o2a(sse())[0])
    assert msg.content == [] and msg.stop_reason == "end_turn"


def test_split_utf8_across_network_reads() -> None:
    raw = sse(chunk({"reasoning_content": "思考中"}), chunk({"content": "héllo 🚀 世界"}), chunk({}, "stop"))
    cuts = [raw.index("考".encode()) + 1, raw.index("🚀".encode()) + 3, raw.index("界".encode()) + 2]
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    out, _ = o2a(pieces)
    msg = anthropic_sdk_message(out)
    assert msg.content[0].thinking == "思考中" and msg.content[1].text == "héllo 🚀 世界"  # type: ignore[union-attr]


def test_byte_by_byte_upstream() -> None:
    raw = sse(chunk({"content": "añ"}), tools(tool(0, "c", "Read", '{"p": "ü"}')), chunk({}, "tool_calls"), chunk(choices=False, usage=USAGE))
    whole = summary(o2a(raw)[0])
    assert summary(o2a([raw[i : i + 1] for i in range(len(raw))])[0]) == whole


def test_invalid_tool_arguments_are_an_error() -> None:
    out, _ = o2a(sse(tools(tool(0, "c1", "Write", '{"content": "abc')), chunk({}, "tool_calls")))
    assert summary(out)[-1] == "error api_error: upstream sent invalid JSON arguments for tool 'Write'"


def test_truncated_tool_arguments_with_length_pass_through() -> None:
    out, _ = o2a(sse(tools(tool(0, "c1", "Write", '{"content": "abc')), chunk({}, "length")))
    assert summary(out)[2:] == [
        "start 0 tool_use c1 Write",
        "0 input_json '{\"content\": \"abc'",
        "stop 0",
        "message_delta max_tokens in=900 out=0 read=0 write=0",
        "message_stop",
    ]


def test_thinking_interleaved_with_text_gets_separate_signed_blocks() -> None:
    raw = sse(chunk({"reasoning_content": "a"}), chunk({"content": "b"}), chunk({"reasoning_content": "c"}), chunk({"content": "d"}), chunk({}, "stop"))
    assert summary(o2a(raw)[0])[2:-2] == [
        "start 0 thinking", "0 thinking 'a'", "0 signature", "stop 0",
        "start 1 text", "1 text 'b'", "stop 1",
        "start 2 thinking", "2 thinking 'c'", "2 signature", "stop 2",
        "start 3 text", "3 text 'd'", "stop 3",
    ]  # fmt: skip


def test_reasoning_only_answer_cut_by_length() -> None:
    out, _ = o2a(sse(chunk({"reasoning_content": "long thought"}), chunk({}, "length")))
    assert summary(out)[2:] == ["start 0 thinking", "0 thinking 'long thought'", "0 signature", "stop 0",
                                "message_delta max_tokens in=900 out=0 read=0 write=0", "message_stop"]  # fmt: skip


def test_malformed_chunk_is_an_error() -> None:
    out, _ = o2a(b"data: {not json\n\n")
    assert summary(out)[-1] == "error api_error: upstream sent a malformed stream chunk"


def test_fail_emits_one_error_and_nothing_after() -> None:
    stream = OpenAIToAnthropicStream("m", 10)
    out = stream.start() + stream.feed(SSEDecoder().feed(encode(None, orjson.dumps(chunk({"content": "x"}))))[0])
    out += stream.fail(504, "upstream timed out")
    assert summary(out)[-1] == "error timeout_error: upstream timed out"
    assert stream.fail(500, "again") == b"" and stream.finish() == b"" and stream.ping() == b""
    assert stream.feed(SSEDecoder().feed(b"data: [DONE]\n\n")[0]) == b""


def test_start_is_sent_once_and_feed_starts_if_needed() -> None:
    stream = OpenAIToAnthropicStream("m", 10)
    out = stream.feed(SSEDecoder().feed(b"data: [DONE]\n\n")[0])
    assert stream.start() == b""
    assert summary(out) == ["message_start in=10", "ping", "message_delta end_turn in=10 out=0 read=0 write=0", "message_stop"]


def test_legacy_function_call_stream() -> None:
    raw = sse(chunk({"function_call": {"name": "Bash", "arguments": ""}}), chunk({"function_call": {"arguments": '{"command": "ls"}'}}), chunk({}, "function_call"))
    msg = anthropic_sdk_message(o2a(raw)[0])
    assert msg.content[0].name == "Bash" and msg.content[0].input == {"command": "ls"} and msg.stop_reason == "tool_use"  # type: ignore[union-attr]


# -- property: any valid upstream stream gives a valid client stream -------------------------

_word = st.text(alphabet="abc xyz-é世🚀\"\\", min_size=1, max_size=8).filter(lambda s: s.strip() != "")
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(alphabet="ab \"\\é世\n", max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet="xyz", min_size=1, max_size=3), inner, max_size=3),
    max_leaves=6,
)


def _split(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=4))) if len(text) > 1 else []
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@st.composite
def upstream_streams(draw: st.DrawFn) -> tuple[list[bytes], dict[str, Any]]:
    reasoning = draw(st.lists(_word, max_size=3))
    text = draw(st.lists(_word, max_size=3))
    calls = draw(st.lists(st.dictionaries(st.text(alphabet="pq", min_size=1, max_size=2), _json_value, max_size=3), max_size=4))
    interleave = draw(st.booleans())
    header_with_args = draw(st.booleans())
    chunks: list[dict[str, Any] | str] = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"reasoning_content": r}) for r in reasoning]
    if draw(st.booleans()):
        chunks.append(": keep-alive")
    chunks += [chunk({"content": t}) for t in text]
    # Each call: a header fragment, then its argument fragments; calls' fragments interleave.
    queues: list[list[dict[str, Any]]] = []
    for i, args in enumerate(calls):
        parts = _split(draw, json.dumps(args, ensure_ascii=False))
        head = tool(i, f"call_{i}", f"tool_{i}", parts.pop(0) if header_with_args else "")
        queues.append([head] + [tool(i, args=p) for p in parts])
    order: list[int] = []
    if interleave:
        remaining = [len(q) for q in queues]
        while any(remaining):
            i = draw(st.sampled_from([k for k, n in enumerate(remaining) if n]))
            order.append(i)
            remaining[i] -= 1
    else:
        order = [i for i, q in enumerate(queues) for _ in q]
    tool_chunks = [tools(queues[i].pop(0)) for i in order]
    late_text = draw(st.lists(_word, max_size=2))  # text between/after calls waits its turn
    spots = sorted(draw(st.lists(st.integers(0, len(tool_chunks)), min_size=len(late_text), max_size=len(late_text))))
    for shift, (spot, word) in enumerate(zip(spots, late_text, strict=True)):
        tool_chunks.insert(spot + shift, chunk({"content": word}))
    chunks += tool_chunks
    finish = "tool_calls" if calls else draw(st.sampled_from(["stop", "length"]))
    usage = {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 60}}
    placement = draw(st.sampled_from(["trailing", "finish", "choice", "none"]))
    chunks.append(chunk({}, finish, usage=usage if placement == "finish" else None, choice_usage=usage if placement == "choice" else None))
    if placement == "trailing":
        chunks.append(chunk(choices=False, usage=usage))
    raw = sse(*chunks, done=draw(st.booleans()))
    pieces = _split(draw, raw.decode("latin-1"))
    expected = {
        "thinking": "".join(reasoning),
        "text": "".join(text) + "".join(late_text),
        "calls": [(f"call_{i}", f"tool_{i}", args) for i, args in sorted(enumerate(calls), key=lambda c: order.index(c[0]))],
        "finish": finish,
        "usage": placement != "none",
    }
    return [p.encode("latin-1") for p in pieces], expected


@settings(max_examples=300, deadline=None)
@given(upstream_streams())
def test_any_valid_upstream_stream_gives_a_valid_client_stream(case: tuple[list[bytes], dict[str, Any]]) -> None:
    pieces, expected = case
    out, stream = o2a(pieces)
    events = check_grammar(out)
    assert events[-1]["type"] == "message_stop"
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for event in events:
        if event["type"] not in ("ping", "message_stop"):
            snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)  # type: ignore[arg-type]
    assert snapshot is not None
    blocks = snapshot.content
    assert "".join(b.thinking for b in blocks if b.type == "thinking") == expected["thinking"]
    assert all(b.signature == sign(b.thinking) for b in blocks if b.type == "thinking")
    assert "".join(b.text for b in blocks if b.type == "text") == expected["text"]
    calls = [(b.id, b.name, json.loads(json_bufs.get(i, b"{}") or b"{}")) for i, b in enumerate(blocks) if b.type == "tool_use"]
    assert calls == expected["calls"]
    assert snapshot.stop_reason == ("tool_use" if calls else {"stop": "end_turn", "length": "max_tokens"}[expected["finish"]])
    assert stream.saw_tool_use == bool(calls)
    usage = snapshot.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == ((40, 7, 60) if expected["usage"] else (900, 0, 0))


# -- Anthropic upstream -> OpenAI client -----------------------------------------------------


def aevent(payload: dict[str, Any]) -> bytes:
    return encode(payload["type"], orjson.dumps(payload))


def anthropic_upstream(*blocks: tuple[dict[str, Any], list[dict[str, Any]]], stop_reason: str = "end_turn",
                       stop: bool = True) -> bytes:  # fmt: skip
    out = aevent({"type": "message_start", "message": {
        "id": "msg_up", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 50, "output_tokens": 1, "cache_read_input_tokens": 400, "cache_creation_input_tokens": 30}}})  # fmt: skip
    out += aevent({"type": "ping"})
    for index, (start, deltas) in enumerate(blocks):
        out += aevent({"type": "content_block_start", "index": index, "content_block": start})
        for delta in deltas:
            out += aevent({"type": "content_block_delta", "index": index, "delta": delta})
        out += aevent({"type": "content_block_stop", "index": index})
    out += aevent({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": {"output_tokens": 25}})
    return out + (aevent({"type": "message_stop"}) if stop else b"")


def a2o(raw: bytes, include_usage: bool = True, eof: bool = True) -> tuple[bytes, AnthropicToOpenAIStream]:
    stream = AnthropicToOpenAIStream("gpt-4o", include_usage)
    decoder = SSEDecoder()
    out = stream.start()
    for event in decoder.feed(raw) + decoder.flush():
        out += stream.feed(event)
    if eof:
        out += stream.finish()
    return out, stream


def openai_chunks(out: bytes) -> list[Any]:
    """Client chunks (dicts), `[DONE]`, and comments as ('comment', text)."""
    result: list[Any] = []
    for event in SSEDecoder().feed(out):
        assert event.event is None, "OpenAI frames are data-only"
        result.append(("comment", event.data) if event.comment else (event.data if event.data == "[DONE]" else orjson.loads(event.data)))
    return result


def deltas(out: bytes) -> list[Any]:
    """The choice part of each chunk: (delta, finish_reason), usage chunks, [DONE], errors."""
    rendered: list[Any] = []
    ids = set()
    for c in openai_chunks(out):
        if isinstance(c, dict) and "choices" in c:
            ids.add(c["id"])
            assert c["object"] == "chat.completion.chunk" and c["model"] == "gpt-4o"
            rendered.append(("usage", c["usage"]) if not c["choices"] else (c["choices"][0]["delta"], c["choices"][0]["finish_reason"]))
        else:
            rendered.append(c)
    assert len(ids) <= 1, "one id for all chunks"
    return rendered


TEXT_BLOCK = ({"type": "text", "text": ""}, [{"type": "text_delta", "text": "Hel"}, {"type": "text_delta", "text": "lo"}])


def test_anthropic_text_stream_to_openai() -> None:
    out, stream = a2o(anthropic_upstream(TEXT_BLOCK))
    assert deltas(out) == [
        ({"role": "assistant", "content": ""}, None),
        ("comment", "ping"),
        ({"content": "Hel"}, None),
        ({"content": "lo"}, None),
        ({}, "stop"),
        ("usage", {"prompt_tokens": 480, "completion_tokens": 25, "total_tokens": 505, "prompt_tokens_details": {"cached_tokens": 400}}),
        "[DONE]",
    ]
    assert stream.done and not stream.saw_tool_use


def test_anthropic_thinking_and_tools_to_openai() -> None:
    raw = anthropic_upstream(
        ({"type": "thinking", "thinking": "", "signature": ""},
         [{"type": "thinking_delta", "thinking": "Need files."}, {"type": "signature_delta", "signature": "EqQB"}]),
        ({"type": "text", "text": ""}, [{"type": "text_delta", "text": "Reading."}]),
        ({"type": "tool_use", "id": "toolu_a", "name": "Read", "input": {}},
         [{"type": "input_json_delta", "partial_json": ""}, {"type": "input_json_delta", "partial_json": '{"file_path":'},
          {"type": "input_json_delta", "partial_json": ' "/a.py"}'}]),
        ({"type": "tool_use", "id": "toolu_b", "name": "Bash", "input": {}}, []),
        stop_reason="tool_use",
    )  # fmt: skip
    out, stream = a2o(raw, include_usage=False)
    assert deltas(out) == [
        ({"role": "assistant", "content": ""}, None),
        ("comment", "ping"),
        ({"reasoning_content": "Need files."}, None),
        ({"reasoning_signature": "EqQB"}, None),  # the block's signature travels with it
        ({"content": "Reading."}, None),
        ({"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "Read", "arguments": ""}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"file_path":'}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": ' "/a.py"}'}}]}, None),
        ({"tool_calls": [{"index": 1, "id": "toolu_b", "type": "function", "function": {"name": "Bash", "arguments": ""}}]}, None),
        ({}, "tool_calls"),
        "[DONE]",
    ]
    assert stream.saw_tool_use
    assert all("usage" not in c for c in openai_chunks(out) if isinstance(c, dict))


def test_tool_input_given_whole_in_the_start_event() -> None:
    raw = anthropic_upstream(({"type": "tool_use", "id": "t", "name": "Bash", "input": {"command": "ls"}}, []), stop_reason="tool_use")
    assert ({"tool_calls": [{"index": 0, "function": {"arguments": '{"command":"ls"}'}}]}, None) in deltas(a2o(raw)[0])


def test_anthropic_error_event_to_openai_error_chunk() -> None:
    raw = anthropic_upstream(TEXT_BLOCK, stop=False).split(b"event: message_delta")[0]
    raw += aevent({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    out, stream = a2o(raw)
    rendered = deltas(out)
    # OpenAI clients get OpenAI's type for the status; the upstream's message is kept.
    assert rendered[-1] == {"error": {"message": "Overloaded", "type": "api_error", "param": None, "code": None}}
    assert "[DONE]" not in rendered and stream.done


def test_anthropic_eof_before_message_stop_is_an_error() -> None:
    out, _ = a2o(anthropic_upstream(TEXT_BLOCK, stop=False))
    rendered = deltas(out)
    assert rendered[-1] == {"error": {"message": "upstream stream ended before the response was complete", "type": "api_error", "param": None, "code": None}}
    assert "[DONE]" not in rendered
    assert ({}, "stop") not in rendered


def test_anthropic_max_tokens_and_nothing_after_done() -> None:
    out, stream = a2o(anthropic_upstream(TEXT_BLOCK, stop_reason="max_tokens"))
    assert ({}, "length") in deltas(out)
    assert stream.feed(SSEDecoder().feed(aevent({"type": "message_stop"}))[0]) == b""
    assert stream.fail(500, "x") == b"" and stream.ping() == b""


def openai_sdk_final(out: bytes) -> Any:
    transport = httpx2.MockTransport(lambda request: httpx2.Response(200, content=out, headers={"content-type": "text/event-stream"}))
    client = openai.OpenAI(api_key="k", base_url="http://gateway.test/v1", http_client=httpx2.Client(transport=transport), max_retries=0)
    with client.chat.completions.stream(model="gpt-4o", messages=[{"role": "user", "content": "hi"}]) as s:
        for _ in s:
            pass
        return s.get_final_completion()


def test_openai_sdk_accumulates_the_translation() -> None:
    raw = anthropic_upstream(
        TEXT_BLOCK,
        ({"type": "tool_use", "id": "toolu_a", "name": "Read", "input": {}}, [{"type": "input_json_delta", "partial_json": '{"p": '}, {"type": "input_json_delta", "partial_json": "1}"}]),
        ({"type": "tool_use", "id": "toolu_b", "name": "Grep", "input": {}}, [{"type": "input_json_delta", "partial_json": '{"q": "x"}'}]),
        stop_reason="tool_use",
    )
    final = openai_sdk_final(a2o(raw)[0])
    choice = final.choices[0]
    assert choice.message.content == "Hello" and choice.finish_reason == "tool_calls"
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls] == [
        ("toolu_a", "Read", {"p": 1}),
        ("toolu_b", "Grep", {"q": "x"}),
    ]
    assert final.usage.prompt_tokens == 480 and final.usage.prompt_tokens_details.cached_tokens == 400


def test_openai_sdk_raises_on_the_error_chunk() -> None:
    out, _ = a2o(anthropic_upstream(TEXT_BLOCK, stop=False))
    with pytest.raises(openai.APIError, match="ended before the response was complete"):
        openai_sdk_final(out)


def test_openai_state_accumulator_on_thinking_chunks() -> None:
    raw = anthropic_upstream(({"type": "thinking", "thinking": "", "signature": ""}, [{"type": "thinking_delta", "thinking": "hmm"}]), TEXT_BLOCK)
    state = ChatCompletionStreamState()
    for c in openai_chunks(a2o(raw)[0]):
        if isinstance(c, dict):
            state.handle_chunk(ChatCompletionChunk.model_validate(c))
    final = state.get_final_completion()
    assert final.choices[0].message.content == "Hello"
    assert getattr(final.choices[0].message, "reasoning_content", None) == "hmm"


@st.composite
def anthropic_streams(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    text, thinking, calls = "", "", []
    for n in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["text", "thinking", "tool_use"]))
        if kind == "tool_use":
            args = draw(st.dictionaries(st.text(alphabet="pq", min_size=1, max_size=2), _json_value, max_size=3))
            parts = _split(draw, json.dumps(args, ensure_ascii=False))
            calls.append((f"toolu_{n}", f"tool_{n}", args))
            blocks.append(({"type": "tool_use", "id": f"toolu_{n}", "name": f"tool_{n}", "input": {}},
                           [{"type": "input_json_delta", "partial_json": p} for p in parts]))  # fmt: skip
        else:
            words = draw(st.lists(_word, min_size=1, max_size=3))
            if kind == "text":
                text += "".join(words)
                blocks.append(({"type": "text", "text": ""}, [{"type": "text_delta", "text": w} for w in words]))
            else:
                thinking += "".join(words)
                deltas_ = [{"type": "thinking_delta", "thinking": w} for w in words] + [{"type": "signature_delta", "signature": "s"}]
                blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas_))
    stop_reason = "tool_use" if calls else draw(st.sampled_from(["end_turn", "max_tokens"]))
    return anthropic_upstream(*blocks, stop_reason=stop_reason), {"text": text, "thinking": thinking, "calls": calls, "stop": stop_reason}


@settings(max_examples=150, deadline=None)
@given(anthropic_streams())
def test_any_anthropic_stream_accumulates_in_the_openai_sdk(case: tuple[bytes, dict[str, Any]]) -> None:
    raw, expected = case
    out, stream = a2o(raw)
    chunks = openai_chunks(out)
    assert chunks[-1] == "[DONE]" and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    state = ChatCompletionStreamState()
    for c in chunks:
        if isinstance(c, dict):
            state.handle_chunk(ChatCompletionChunk.model_validate(c))
    final = state.current_completion_snapshot  # get_final_completion() refuses "length" finishes
    message = final.choices[0].message
    assert (message.content or "") == expected["text"]
    assert (getattr(message, "reasoning_content", None) or "") == expected["thinking"]
    got = [(c.id, c.function.name, json.loads(c.function.arguments or "{}")) for c in message.tool_calls or []]
    assert got == expected["calls"]
    assert final.choices[0].finish_reason == {"tool_use": "tool_calls", "end_turn": "stop", "max_tokens": "length"}[expected["stop"]]
    assert final.usage is not None and final.usage.completion_tokens == 25 and final.usage.prompt_tokens == 480
    assert stream.saw_tool_use == bool(expected["calls"])
