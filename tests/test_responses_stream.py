"""Chat Completions chunks -> Responses SSE stream tests (responses-reference §2.1-§2.4, §6).

Upstream chunk sequences are written the way Kimi, DeepSeek and OpenAI send them. Every stream is
checked three ways: `check_grammar` asserts each rule of the reference grammar on the event list;
each event is parsed by the OpenAI SDK's `ResponseStreamEvent` union; and the events are fed to
the SDK's own accumulator (`ResponseStreamState`), whose final response must be ours.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import httpx2
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from models.sse import SSEDecoder
from models.translate.responses_response import chat_to_responses
from models.translate.responses_stream import ChatToResponsesStream
from models.translate.responses_tools import ToolSpec, ToolTable
from tests.test_translate_stream import tool  # one Chat tool-call fragment builder
from models.translate.thinking import open_reasoning

RESPONSE_ID = "resp_stream"
CREATED = 1_760_000_000
MODEL = "kimi"
REQUEST: dict[str, Any] = {"model": MODEL, "input": "hi", "stream": True}
USAGE = {
    "prompt_tokens": 1200, "completion_tokens": 40, "total_tokens": 1240,
    "prompt_tokens_details": {"cached_tokens": 1000}, "completion_tokens_details": {"reasoning_tokens": 12},
}  # fmt: skip
RESPONSES_USAGE = {
    "input_tokens": 1200, "input_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 0},
    "output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 12}, "total_tokens": 1240,
}  # fmt: skip
KEEPALIVE = "keepalive"  # in a chunk list: call keepalive() here

# -- upstream (Chat Completions) side --------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, *, usage: dict[str, Any] | None = None,
          choices: bool = True, choice_usage: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    body: dict[str, Any] = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "up"}
    body["choices"] = []
    if choices:
        choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "finish_reason": finish}
        if choice_usage is not None:
            choice["usage"] = choice_usage
        body["choices"] = [choice]
    if usage is not None:
        body["usage"] = usage
    return body


def tools(*fragments: dict[str, Any]) -> dict[str, Any]:
    return chunk({"tool_calls": list(fragments)})


def usage_chunk(usage: dict[str, Any] = USAGE) -> dict[str, Any]:
    return chunk(choices=False, usage=usage)


# -- running the state machine ---------------------------------------------------------------


def new_stream(request: dict[str, Any] = REQUEST, table: ToolTable | None = None) -> ChatToResponsesStream:
    return ChatToResponsesStream(request, table or ToolTable(), MODEL, RESPONSE_ID, CREATED)


def frames_of(chunks: Iterable[dict[str, Any] | str], request: dict[str, Any] = REQUEST,
              table: ToolTable | None = None, *, end: bool = True) -> list[bytes]:  # fmt: skip
    """All frames for upstream chunks; `KEEPALIVE` entries call keepalive(), `end` calls finish()."""
    stream = new_stream(request, table)
    frames = stream.start()
    for item in chunks:
        frames += [stream.keepalive()] if item == KEEPALIVE else stream.feed(item)  # type: ignore[arg-type]
    if end:
        frames += stream.finish()
        assert stream.done
    return frames


def decode(frames: list[bytes]) -> list[dict[str, Any]]:
    """Each frame is exactly one SSE event whose `event:` name equals its data's `type`."""
    events = []
    for frame in frames:
        decoder = SSEDecoder()
        parsed = decoder.feed(frame) + decoder.flush()
        assert len(parsed) == 1 and not parsed[0].comment, frame
        data = json.loads(parsed[0].data)
        assert parsed[0].event == data["type"]
        events.append(data)
    return events


def run(chunks: Iterable[dict[str, Any] | str], request: dict[str, Any] = REQUEST, table: ToolTable | None = None,
        *, sdk: bool = True) -> list[dict[str, Any]]:  # fmt: skip
    """Events for upstream chunks, checked against the grammar and (unless `sdk=False`) the SDK."""
    events = decode(frames_of(chunks, request, table))
    check_grammar(events)
    if sdk:
        check_with_sdk(events, request.get("tools", omit))
    return events


# -- the grammar checker (reference §2.1, §2.2, §2.3) -----------------------------------------

TERMINAL = ("response.completed", "response.incomplete", "response.failed")
_ITEM_PATTERNS = {
    "message": r"(content_part\.added (output_text\.delta )*output_text\.done content_part\.done )+",
    "reasoning": r"(reasoning_summary_part\.added (reasoning_summary_text\.delta )*reasoning_summary_text\.done "
                 r"reasoning_summary_part\.done )*",
    "function_call": r"(function_call_arguments\.delta )*function_call_arguments\.done ",
    "custom_tool_call": r"(custom_tool_call_input\.delta )*custom_tool_call_input\.done ",
}
_ID_PREFIXES = {"message": "msg_", "reasoning": "rs_", "function_call": "fc_", "custom_tool_call": "ctc_"}


def check_grammar(events: list[dict[str, Any]]) -> None:
    """Assert every stream rule a strict client relies on, for any event list of ours."""
    assert [e["sequence_number"] for e in events] == list(range(len(events))), "sequence numbers 0, 1, 2..."
    assert events[0]["type"] == "response.created", "response.created first"
    created = events[0]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    assert [i for i, e in enumerate(events) if e["type"] in TERMINAL] == [len(events) - 1], "one terminal, last"
    assert all(e["type"] != "response.in_progress" for e in events[2:]), "in_progress right after created"
    identity = (created["id"], created["created_at"], created["model"])
    for e in events:
        if "response" in e:
            assert (e["response"]["id"], e["response"]["created_at"], e["response"]["model"]) == identity
        if e["type"] == "keepalive":
            assert set(e) == {"type", "sequence_number"}
    terminal = events[-1]
    errors = [i for i, e in enumerate(events) if e["type"] == "error"]
    assert errors == ([len(events) - 2] if terminal["type"] == "response.failed" else []), "error only before failed"

    done, still_open = _check_items(events[1:-1])
    response = terminal["response"]
    assert response["output"] == done, "terminal output = the done items in output_index order"
    if terminal["type"] == "response.failed":
        _check_failure(events[-2], response)
        return
    assert still_open is None, "every item gets output_item.done"
    _check_outcome(terminal["type"], response)


def _check_items(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Items one at a time, indexes 0, 1, 2... in added order; returns (done items, the open item)."""
    done: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None  # the open item as added
    inner: list[dict[str, Any]] = []  # its events since added
    for e in events:
        kind = e["type"]
        if kind in ("response.in_progress", "keepalive", "error"):
            continue
        if kind == "response.output_item.added":
            assert current is None, "items never interleave: one open at a time"
            assert e["output_index"] == len(done), "output_index 0, 1, 2... without gaps"
            current, inner = e["item"], []
            _check_added(current)
            continue
        assert current is not None, f"{kind} before output_item.added"
        assert e["output_index"] == len(done), f"{kind} for an item that is not the open one"
        if kind == "response.output_item.done":
            _check_item(current, inner, e["item"])
            done.append(e["item"])
            current = None
            continue
        assert e["item_id"] == current["id"]
        inner.append(e)
    ids = [item["id"] for item in done] + ([current["id"]] if current else [])
    call_ids = [item["call_id"] for item in done if "call_id" in item]
    assert len(set(ids)) == len(ids) and len(set(call_ids)) == len(call_ids), "ids are unique"
    return done, current


def _check_added(item: dict[str, Any]) -> None:
    assert item["id"].startswith(_ID_PREFIXES[item["type"]])
    if item["type"] == "message":
        assert item["role"] == "assistant" and item["status"] == "in_progress" and item["content"] == []
    elif item["type"] == "reasoning":
        assert item["summary"] == []
    elif item["type"] == "function_call":
        assert item["arguments"] == "" and item["status"] == "in_progress" and item["call_id"] and item["name"]
    else:
        assert item["input"] == "" and item["call_id"] and item["name"]


def _check_item(added: dict[str, Any], inner: list[dict[str, Any]], final: dict[str, Any]) -> None:
    """One item's events follow its grammar, and its done item carries exactly what was streamed."""
    kind = added["type"]
    types = "".join(e["type"].removeprefix("response.") + " " for e in inner)
    assert re.fullmatch(_ITEM_PATTERNS[kind], types), f"{kind}: {types}"
    assert final["id"] == added["id"] and final["type"] == kind
    if kind == "message":
        _check_parts(inner, final)
    elif kind == "reasoning":
        _check_summary(inner, final)
    elif kind == "function_call":
        arguments = "".join(e["delta"] for e in inner[:-1])
        assert inner[-1]["arguments"] == arguments and inner[-1]["name"] == added["name"]
        assert final["arguments"] == arguments and isinstance(final["arguments"], str)
        assert final["status"] in ("completed", "incomplete")
        assert all(final.get(k) == added.get(k) for k in ("call_id", "name", "namespace"))
    else:
        value = "".join(e["delta"] for e in inner[:-1])
        assert inner[-1]["input"] == value and final["input"] == value
        assert all(final.get(k) == added.get(k) for k in ("call_id", "name", "namespace"))


def _check_summary(inner: list[dict[str, Any]], final: dict[str, Any]) -> None:
    """reasoning_summary_part.added (empty) -> deltas -> text done -> part done, per summary_index; the done
    item's summary is what was streamed, and its sealed token holds the same text."""
    texts: list[str] = []
    for e in inner:
        if e["type"] == "response.reasoning_summary_part.added":
            assert e["summary_index"] == len(texts) and e["part"] == {"type": "summary_text", "text": ""}
            texts.append("")
            continue
        assert e["summary_index"] == len(texts) - 1
        if e["type"].endswith(".delta"):
            texts[-1] += e["delta"]
        elif e["type"].endswith("text.done"):
            assert e["text"] == texts[-1]
        else:  # reasoning_summary_part.done
            assert e["part"] == {"type": "summary_text", "text": texts[-1]}
    assert final["summary"] == [{"type": "summary_text", "text": t} for t in texts] and "content" not in final
    sealed = open_reasoning(final["encrypted_content"])
    assert sealed is not None and sealed[0] == "".join(texts)


def _check_parts(inner: list[dict[str, Any]], final: dict[str, Any]) -> None:
    """content_part.added (empty) -> deltas -> text done -> content_part.done, per content_index."""
    part_type = "output_text"
    texts: list[str] = []
    for e in inner:
        if e["type"] == "response.content_part.added":
            assert e["content_index"] == len(texts) and e["part"]["type"] == part_type and e["part"]["text"] == ""
            assert e["part"]["annotations"] == []
            texts.append("")
            continue
        assert e["content_index"] == len(texts) - 1
        if e["type"].endswith(".delta"):
            texts[-1] += e["delta"]
        elif e["type"].endswith("text.done"):
            assert e["text"] == texts[-1]
        else:  # content_part.done
            assert e["part"]["type"] == part_type and e["part"]["text"] == texts[-1]
        if e["type"] in ("response.output_text.delta", "response.output_text.done"):
            assert e["logprobs"] == [], "logprobs: [] on output_text delta/done"
    assert [p["text"] for p in final["content"]] == texts and all(p["type"] == part_type for p in final["content"])
    assert final["role"] == "assistant" and final["status"] in ("completed", "incomplete")
    assert all(p["annotations"] == [] for p in final["content"])


def _check_outcome(kind: str, response: dict[str, Any]) -> None:
    usage = response["usage"]
    if kind == "response.completed":
        assert response["status"] == "completed" and response["incomplete_details"] is None
    else:
        assert response["status"] == "incomplete"
        assert response["incomplete_details"]["reason"] in ("max_output_tokens", "content_filter")
    if usage is not None:
        numbers = [usage["input_tokens"], usage["output_tokens"], usage["total_tokens"],
                   usage["input_tokens_details"]["cached_tokens"], usage["output_tokens_details"]["reasoning_tokens"]]
        assert all(type(n) is int for n in numbers)  # fmt: skip
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def _check_failure(error: dict[str, Any], response: dict[str, Any]) -> None:
    nested = error["error"]
    assert set(nested) == {"type", "code", "message", "param"}
    assert (error["code"], error["message"]) == (nested["code"], nested["message"])
    assert response["status"] == "failed"
    assert response["error"] == {"code": nested["code"], "message": nested["message"]}


# -- the strict client: the OpenAI SDK's event types and accumulator ----------------------------

_EVENT = TypeAdapter(ResponseStreamEvent)


def sdk_events(events: list[dict[str, Any]]) -> list[Any]:
    """Every event parsed by the SDK's union (keepalive is not in it; Codex and the SDK skip it)."""
    parsed = []
    for e in events:
        if e["type"] == "keepalive":
            continue
        model = _EVENT.validate_python(e)
        assert model.type == e["type"]
        parsed.append(model)
    return parsed


def check_with_sdk(events: list[dict[str, Any]], input_tools: Any = omit) -> Any:
    """Feed the events to the SDK's ResponseStreamState; the response it ends with must be ours.
    Returns the SDK's final response (completed) or terminal event response (incomplete/failed)."""
    state: ResponseStreamState[object] = ResponseStreamState(input_tools=input_tools, text_format=omit)
    fired: list[Any] = []  # what the SDK's stream would yield to the application
    for model in sdk_events(events):
        fired += state.handle_event(model)
    terminal = events[-1]
    expected = terminal["response"]
    final: Any
    if terminal["type"] == "response.completed":
        final = state._completed_response
        assert final is not None
    else:
        final = fired[-1].response
        assert fired[-1].type == terminal["type"]
    assert final.id == RESPONSE_ID and final.status == expected["status"]
    assert len(final.output) == len(expected["output"])
    for got, want in zip(final.output, expected["output"], strict=True):
        assert subset(got.to_dict(), want), (got, want)
    assert Response.model_validate(expected).output_text == final.output_text
    return final


def subset(got: Any, want: Any) -> bool:
    """`got` has everything `want` has (the SDK adds its own parsed fields, e.g. `parsed`)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and subset(got[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(subset, got, want))
    return bool(got == want)


def sdk_client_stream(frames: list[bytes], request: dict[str, Any] = REQUEST) -> tuple[list[Any], Any]:
    """The SDK's real `client.responses.stream(...)` over our bytes: (events, final response)."""
    body = b"".join(frames)
    transport = httpx2.MockTransport(
        lambda _: httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})
    )
    client = openai.OpenAI(
        api_key="k", base_url="http://gateway.test/v1", http_client=httpx2.Client(transport=transport), max_retries=0
    )
    kwargs: dict[str, Any] = {"tools": request["tools"]} if "tools" in request else {}
    with client.responses.stream(model=MODEL, input="hi", **kwargs) as stream:
        events = list(stream)
        return events, stream.get_final_response()


def types_of(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"].removeprefix("response.") for e in events]


def output_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(events[-1]["response"]["output"])


# -- golden streams ----------------------------------------------------------------------------


def test_text_stream_is_the_reference_sequence() -> None:
    events = run([chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
                  chunk({}, "stop"), usage_chunk()])  # fmt: skip
    assert types_of(events) == [
        "created", "in_progress", "output_item.added", "content_part.added", "output_text.delta",
        "output_text.delta", "output_text.done", "content_part.done", "output_item.done", "completed",
    ]  # fmt: skip
    msg_id = events[2]["item"]["id"]
    assert events[4] == {"type": "response.output_text.delta", "sequence_number": 4, "item_id": msg_id,
                         "output_index": 0, "content_index": 0, "delta": "Hel", "logprobs": []}  # fmt: skip
    assert events[6]["text"] == "Hello" and events[6]["logprobs"] == []
    message = {"id": msg_id, "type": "message", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}]}  # fmt: skip
    assert events[8]["item"] == message
    completed = events[-1]["response"]
    assert completed["id"] == RESPONSE_ID and completed["created_at"] == CREATED and completed["model"] == MODEL
    assert completed["status"] == "completed" and completed["output"] == [message]
    assert completed["usage"] == RESPONSES_USAGE and isinstance(completed["completed_at"], int)


def test_text_stream_through_the_real_sdk_client() -> None:
    frames = frames_of([chunk({"content": "Hel"}), chunk({"content": "lo"}, "stop"), usage_chunk()])
    events, final = sdk_client_stream(frames)
    assert final.output_text == "Hello" and final.id == RESPONSE_ID
    assert final.usage is not None and final.usage.input_tokens_details.cached_tokens == 1000
    assert [e.type for e in events][-1] == "response.completed"


def test_reasoning_then_text() -> None:
    events = run([chunk({"reasoning_content": "The user "}), chunk({"reasoning_content": "greets."}),
                  chunk({"content": "Hello"}), chunk({}, "stop"), usage_chunk()])  # fmt: skip
    assert types_of(events) == [
        "created", "in_progress",
        "output_item.added", "reasoning_summary_part.added", "reasoning_summary_text.delta",
        "reasoning_summary_text.delta", "reasoning_summary_text.done", "reasoning_summary_part.done", "output_item.done",
        "output_item.added", "content_part.added", "output_text.delta", "output_text.done", "content_part.done",
        "output_item.done", "completed",
    ]  # fmt: skip
    assert events[2]["item"] == {"id": events[2]["item"]["id"], "type": "reasoning", "summary": []}
    assert events[3]["part"] == {"type": "summary_text", "text": ""} and events[3]["summary_index"] == 0
    reasoning, message = output_of(events)
    assert reasoning["summary"] == [{"type": "summary_text", "text": "The user greets."}]
    assert open_reasoning(reasoning["encrypted_content"]) == ("The user greets.", None)
    assert message["content"][0]["text"] == "Hello"
    assert events[-1]["response"]["usage"]["output_tokens_details"]["reasoning_tokens"] == 12


def test_reasoning_then_tool_call_deepseek_thinking_with_tools() -> None:
    events = run([chunk({"reasoning_content": "Need the weather."}), chunk({"content": "\n\n"}),
                  tools(tool(0, "call_0", "get_weather", "")), tools(tool(0, args='{"city":')),
                  tools(tool(0, args=' "Paris"}')), chunk({}, "tool_calls")])  # fmt: skip
    assert [item["type"] for item in output_of(events)] == ["reasoning", "function_call"]  # whitespace text: no item
    assert output_of(events)[1]["arguments"] == '{"city": "Paris"}'


def test_tool_call_stream_reference_case() -> None:
    events = run([tools(tool(0, "call_1", "get_weather", "")), tools(tool(0, args='{"ci')),
                  tools(tool(0, args='ty": "Pa')), tools(tool(0, args='ris"}')),
                  chunk({}, "tool_calls"), usage_chunk()])  # fmt: skip
    assert types_of(events) == [
        "created", "in_progress", "output_item.added", "function_call_arguments.delta",
        "function_call_arguments.delta", "function_call_arguments.delta", "function_call_arguments.done",
        "output_item.done", "completed",
    ]  # fmt: skip
    added = events[2]["item"]
    assert added == {"id": added["id"], "type": "function_call", "call_id": "call_1", "name": "get_weather",
                     "arguments": "", "status": "in_progress"}  # fmt: skip
    assert events[6]["arguments"] == '{"city": "Paris"}' and events[6]["name"] == "get_weather"
    assert events[7]["item"] == {**added, "arguments": '{"city": "Paris"}', "status": "completed"}
    assert events[-1]["type"] == "response.completed"


def test_text_then_parallel_calls_each_closed_before_the_next() -> None:
    events = run([
        chunk({"content": "Let me check."}),
        tools(tool(0, "call_a", "get_weather", '{"city": "Paris"}')),
        tools(tool(1, "call_b", "get_weather", '{"city": "Rome"}')),
        chunk({}, "tool_calls"),
    ])  # fmt: skip
    output = output_of(events)
    assert [(o["type"], o.get("call_id")) for o in output] == [
        ("message", None), ("function_call", "call_a"), ("function_call", "call_b")
    ]
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    assert added == [0, 1, 2]


def test_interleaved_parallel_call_fragments_are_not_mixed() -> None:
    events = run([
        tools(tool(0, "call_a", "get_weather", ""), tool(1, "call_b", "get_time", "")),
        tools(tool(0, args='{"city": ')), tools(tool(1, args='{"tz": ')),
        tools(tool(0, args='"Paris"}')), tools(tool(1, args='"CET"}')),
        chunk({}, "tool_calls"), usage_chunk(),
    ], {**REQUEST, "tools": [
        {"type": "function", "name": "get_weather", "strict": True, "parameters": {"type": "object"}},
        {"type": "function", "name": "get_time", "strict": True, "parameters": {"type": "object"}},
    ]})  # fmt: skip
    first, second = output_of(events)
    assert (first["call_id"], first["name"], first["arguments"]) == ("call_a", "get_weather", '{"city": "Paris"}')
    assert (second["call_id"], second["name"], second["arguments"]) == ("call_b", "get_time", '{"tz": "CET"}')


def test_held_call_is_not_announced_while_another_is_open() -> None:
    stream = new_stream()
    stream.start()
    frames = stream.feed(tools(tool(0, "call_a", "a", '{"x": '), tool(1, "call_b", "b", '{"y": 1}')))
    announced = [e for e in decode(frames) if e["type"] == "response.output_item.added"]
    assert [e["item"]["call_id"] for e in announced] == ["call_a"]  # b's complete args wait for a
    frames = stream.feed(tools(tool(0, args="1}")))  # a is complete now, and b follows it
    types = types_of(decode(frames))
    assert types == ["function_call_arguments.delta", "function_call_arguments.done", "output_item.done",
                     "output_item.added", "function_call_arguments.delta"]  # fmt: skip


def test_text_and_arguments_stream_live() -> None:
    stream = new_stream()
    stream.start()
    assert types_of(decode(stream.feed(chunk({"content": "Hi"})))) == [
        "output_item.added", "content_part.added", "output_text.delta"
    ]
    assert types_of(decode(stream.feed(chunk({"content": " there"})))) == ["output_text.delta"]
    text_close = types_of(decode(stream.feed(tools(tool(0, "c", "f", '{"a"')))))
    assert text_close == ["output_text.done", "content_part.done", "output_item.done", "output_item.added",
                          "function_call_arguments.delta"]  # fmt: skip
    assert types_of(decode(stream.feed(tools(tool(0, args=": 1}"))))) == ["function_call_arguments.delta"]


def test_all_calls_on_index_zero_without_ids() -> None:
    # Some servers send every call on index 0; a new header after a complete object is a new call.
    events = run([
        tools(tool(0, None, "read", '{"path": "a"}')),
        tools(tool(0, None, "read", '{"path": "b"}')),
        chunk({}, "tool_calls"),
    ])  # fmt: skip
    output = output_of(events)
    assert [o["arguments"] for o in output] == ['{"path": "a"}', '{"path": "b"}']
    assert output[0]["call_id"] != output[1]["call_id"]
    assert all(re.fullmatch(r"call_jx[0-9a-f]{30}", o["call_id"]) for o in output)


def test_index_reused_by_a_new_call_before_the_first_completed_fails() -> None:
    events = run([
        tools(tool(0, "call_a", "read", '{"path": "a"')),
        tools(tool(0, "call_b", "read", '{"path": "b"}')),
        tools(tool(0, args="")),
        chunk({}, "tool_calls"),
    ], sdk=False)  # fmt: skip
    # call_a's arguments never completed: the stream fails rather than pass a broken call on.
    assert events[-1]["type"] == "response.failed"
    assert [o["call_id"] for o in output_of(events)] == []


def test_index_reused_with_new_ids_and_complete_arguments() -> None:
    events = run([
        tools(tool(0, "call_a", "read", '{"path": "a"}')),
        tools(tool(0, "call_b", "write", "")),
        tools(tool(0, args='{"path": "b"}')),
        chunk({}, "tool_calls"),
    ])  # fmt: skip
    assert [(o["call_id"], o["name"], o["arguments"]) for o in output_of(events)] == [
        ("call_a", "read", '{"path": "a"}'), ("call_b", "write", '{"path": "b"}')
    ]


def test_headerless_tail_on_a_fresh_index_continues_the_latest_call() -> None:
    events = run([tools(tool(0, "call_a", "read", '{"pa')), tools(tool(1, args='th": "x"}')), chunk({}, "tool_calls")])
    assert [o["arguments"] for o in output_of(events)] == ['{"path": "x"}']


def test_empty_arguments_become_an_empty_object() -> None:
    events = run([tools(tool(0, "call_p", "ping", "")), chunk({}, "tool_calls")])
    assert types_of(events)[2:5] == [
        "output_item.added", "function_call_arguments.delta", "function_call_arguments.done"
    ]
    assert events[3]["delta"] == "{}" and output_of(events)[0]["arguments"] == "{}"


def test_whitespace_arguments_become_an_empty_object() -> None:
    events = run([tools(tool(0, "call_p", "ping", " ")), tools(tool(0, args="\n")), chunk({}, "tool_calls")])
    assert output_of(events)[0]["arguments"] == "{}"


def test_nameless_call_is_dropped() -> None:
    stream = new_stream()
    events = decode(stream.start() + stream.feed(chunk({"content": "x"})) + stream.feed(tools(tool(0, "c", None, "{}")))
                    + stream.finish())  # fmt: skip
    check_grammar(events)
    assert [o["type"] for o in output_of(events)] == ["message"]
    assert stream.anomalies == ["a tool call without a name was dropped"]


def test_text_after_a_tool_call_is_a_new_message_item() -> None:
    events = run([chunk({"content": "A"}), tools(tool(0, "c", "f", "{}")), chunk({"content": "B"}), chunk({}, "stop")])
    assert [(o["type"], o.get("content", [{}])[0].get("text")) for o in output_of(events)] == [
        ("message", "A"), ("function_call", None), ("message", "B")
    ]


def test_legacy_function_call_streaming() -> None:
    events = run([chunk({"function_call": {"name": "f", "arguments": '{"a"'}}),
                  chunk({"function_call": {"arguments": ": 1}"}}), chunk({}, "function_call")])  # fmt: skip
    assert output_of(events)[0]["arguments"] == '{"a": 1}' and events[-1]["type"] == "response.completed"


# -- custom and namespace tools ----------------------------------------------------------------

PATCH = "*** Begin Patch\n*** Add File: a.txt\n+hello \"world\"\n*** End Patch"
CUSTOM_REQUEST = {**REQUEST, "tools": [{"type": "custom", "name": "apply_patch", "description": "Edit files"}]}


def custom_table() -> ToolTable:
    table = ToolTable()
    table.add(ToolSpec("custom", "apply_patch"))
    return table


def test_custom_tool_streams_as_custom_tool_call_with_unwrapped_input() -> None:
    arguments = json.dumps({"input": PATCH})
    pieces = [arguments[i : i + 7] for i in range(0, len(arguments), 7)]
    events = run([tools(tool(0, "call_p", "apply_patch", ""))] + [tools(tool(0, args=p)) for p in pieces]
                 + [chunk({}, "tool_calls")], CUSTOM_REQUEST, custom_table())  # fmt: skip
    kinds = types_of(events)
    deltas = [e for e in events if e["type"] == "response.custom_tool_call_input.delta"]  # exact spelling
    # The input streams live, unwrapped and unescaped, as the upstream's argument fragments arrive.
    assert kinds[:3] == ["created", "in_progress", "output_item.added"] and len(deltas) > 10
    assert kinds[3 : 3 + len(deltas)] == ["custom_tool_call_input.delta"] * len(deltas)
    assert kinds[3 + len(deltas) :] == ["custom_tool_call_input.done", "output_item.done", "completed"]
    added = events[2]["item"]
    assert added == {"id": added["id"], "type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch",
                     "input": ""}  # fmt: skip
    assert "".join(d["delta"] for d in deltas) == PATCH and events[-3]["input"] == PATCH
    assert events[-2]["item"] == {**added, "input": PATCH}


def test_custom_input_cut_inside_its_string_keeps_what_was_streamed() -> None:
    arguments = json.dumps({"input": PATCH})[:40]  # `length` stopped the model inside the string
    events = run([tools(tool(0, "call_p", "apply_patch", arguments)), chunk({}, "length")], CUSTOM_REQUEST,
                 custom_table())  # fmt: skip
    streamed = "".join(e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta")
    done = next(e for e in events if e["type"] == "response.output_item.done")["item"]
    assert streamed == done["input"] == json.loads(arguments + '"}')["input"]
    assert events[-1]["type"] == "response.incomplete"


def test_custom_tool_through_the_real_sdk_client() -> None:
    frames = frames_of([tools(tool(0, "call_p", "apply_patch", json.dumps({"input": PATCH}))), chunk({}, "tool_calls")],
                       CUSTOM_REQUEST, custom_table())  # fmt: skip
    _, final = sdk_client_stream(frames, CUSTOM_REQUEST)
    assert final.output[0].type == "custom_tool_call" and final.output[0].input == PATCH


def test_custom_tool_arguments_that_are_not_the_wrapper_pass_raw() -> None:
    chunks = [tools(tool(0, "call_p", "apply_patch", PATCH)), chunk({}, "tool_calls")]
    events = run(chunks, CUSTOM_REQUEST, custom_table())
    assert output_of(events)[0]["input"] == PATCH and events[-1]["type"] == "response.completed"


def test_custom_tool_with_empty_input_has_no_delta() -> None:
    events = run([tools(tool(0, "call_p", "apply_patch", '{"input": ""}')), chunk({}, "tool_calls")],
                 CUSTOM_REQUEST, custom_table())  # fmt: skip
    assert "custom_tool_call_input.delta" not in types_of(events) and output_of(events)[0]["input"] == ""


def test_namespace_tool_call_carries_its_namespace() -> None:
    table = ToolTable()
    upstream = table.add(ToolSpec("function", "read", "mcp__files__"))
    request = {**REQUEST, "tools": [{"type": "namespace", "name": "mcp__files__", "description": "Files", "tools": [
        {"type": "function", "name": "read", "strict": True, "parameters": {"type": "object"}}]}]}  # fmt: skip
    chunks = [tools(tool(0, "call_r", upstream, '{"path": "a"}')), chunk({}, "tool_calls")]
    events = run(chunks, request, table)
    added = events[2]["item"]
    assert (added["name"], added["namespace"]) == ("read", "mcp__files__")
    assert output_of(events)[0]["namespace"] == "mcp__files__" and output_of(events)[0]["name"] == "read"
    _, final = sdk_client_stream(frames_of(chunks, request, table), request)
    assert final.output[0].parsed_arguments == {"path": "a"}  # the SDK found the namespaced tool


# -- terminal states ---------------------------------------------------------------------------


def test_length_is_incomplete_with_the_cut_item_incomplete() -> None:
    events = run([chunk({"reasoning_content": "r"}), chunk({"content": "Hello wor"}), chunk({}, "length"),
                  usage_chunk()])  # fmt: skip
    assert events[-1]["type"] == "response.incomplete"
    response = events[-1]["response"]
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    message_done = [e for e in events if e["type"] == "response.output_item.done"][-1]
    assert message_done["item"]["status"] == "incomplete" and response["usage"] == RESPONSES_USAGE
    assert response["completed_at"] is None


def test_length_cut_inside_a_function_call_passes_it_on_incomplete() -> None:
    events = run([chunk({"content": "Writing."}), tools(tool(0, "c", "write", '{"text": "ab')), chunk({}, "length")])
    message, call = output_of(events)
    assert message["status"] == "completed" and call["status"] == "incomplete"
    assert call["arguments"] == '{"text": "ab' and events[-1]["type"] == "response.incomplete"


def test_content_filter_is_incomplete() -> None:
    events = run([chunk({"content": "I"}), chunk({}, "content_filter")])
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "content_filter"}


def test_no_finish_reason_still_completes_with_usage() -> None:
    events = run([chunk({"content": "Hi"}), usage_chunk()])
    assert events[-1]["type"] == "response.completed" and events[-1]["response"]["usage"] == RESPONSES_USAGE


def test_empty_stream_completes_without_items() -> None:
    events = run([])
    assert types_of(events) == ["created", "in_progress", "completed"] and output_of(events) == []


@pytest.mark.parametrize(
    ("usage_chunks", "cached"),
    [
        ([chunk({}, "stop", usage={"prompt_tokens": 10, "completion_tokens": 2, "prompt_cache_hit_tokens": 8})], 8),
        ([chunk({}, "stop", choice_usage={"prompt_tokens": 10, "completion_tokens": 2, "cached_tokens": 6})], 6),
        ([chunk({}, "stop"), usage_chunk({"prompt_tokens": 10, "completion_tokens": 2})], 0),
    ],
)  # DeepSeek in the finish chunk, Kimi inside the choice, OpenAI's include_usage chunk
def test_usage_from_the_final_chunks(usage_chunks: list[dict[str, Any]], cached: int) -> None:
    usage = run([chunk({"content": "x"}), *usage_chunks])[-1]["response"]["usage"]
    assert usage["input_tokens"] == 10 and usage["output_tokens"] == 2 and usage["total_tokens"] == 12
    assert usage["input_tokens_details"]["cached_tokens"] == cached


def test_no_usage_is_null() -> None:
    assert run([chunk({"content": "x"}, "stop")])[-1]["response"]["usage"] is None


# -- failures ----------------------------------------------------------------------------------


def test_fail_after_partial_text() -> None:
    stream = new_stream()
    frames = stream.start() + stream.feed(chunk({"content": "Hel"})) + stream.fail("server_error", "upstream cut")
    events = decode(frames)
    check_grammar(events)
    check_with_sdk(events)
    assert types_of(events) == ["created", "in_progress", "output_item.added", "content_part.added",
                                "output_text.delta", "error", "failed"]  # fmt: skip
    assert events[5] == {"type": "error", "sequence_number": 5, "code": "server_error", "message": "upstream cut",
                         "param": None, "error": {"type": "server_error", "code": "server_error",
                                                  "message": "upstream cut", "param": None}}  # fmt: skip
    failed = events[6]["response"]
    assert failed["status"] == "failed" and failed["error"] == {"code": "server_error", "message": "upstream cut"}
    assert failed["output"] == []  # the half-received message never ends as done
    assert stream.done and stream.finish() == [] and stream.feed(chunk({"content": "x"})) == []
    assert stream.fail("server_error", "again") == [] and stream.keepalive() == b"" and stream.start() == []


def test_fail_keeps_the_items_that_finished() -> None:
    stream = new_stream()
    frames = (stream.start() + stream.feed(chunk({"content": "Let me check."}))
              + stream.feed(tools(tool(0, "c", "f", '{"a": ')))
              + stream.fail("rate_limit_exceeded", "Rate limit reached. Please try again in 2s."))  # fmt: skip
    events = decode(frames)
    check_grammar(events)
    check_with_sdk(events)
    assert [o["type"] for o in output_of(events)] == ["message"]
    assert events[-2]["error"]["type"] == "rate_limit_error"


def test_fail_before_start_still_begins_with_created() -> None:
    stream = new_stream()
    events = decode(stream.fail("context_length_exceeded", "This model's maximum context length is 131072 tokens."))
    check_grammar(events)
    assert types_of(events) == ["created", "in_progress", "error", "failed"]
    assert events[-1]["response"]["error"]["code"] == "context_length_exceeded"
    assert events[-2]["error"]["type"] == "invalid_request_error"


def test_failed_stream_raises_in_the_real_sdk_client() -> None:
    stream = new_stream()
    frames = stream.start() + stream.feed(chunk({"content": "Hel"})) + stream.fail("server_error", "upstream cut")
    with pytest.raises(openai.APIError, match="upstream cut"):
        sdk_client_stream(frames)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ({"message": "This model's maximum context length is 131072 tokens", "type": "invalid_request_error"},
         "context_length_exceeded"),
        ({"message": "Rate limit reached", "type": "rate_limit_error", "code": 429}, "rate_limit_exceeded"),
        ({"message": "The engine is currently overloaded"}, "server_is_overloaded"),
        ({"message": "boom"}, "server_error"),
    ],
)  # fmt: skip
def test_upstream_error_chunk_fails_with_a_code_codex_understands(error: dict[str, Any], code: str) -> None:
    events = run([chunk({"content": "x"}), {"error": error}], sdk=code == "server_error")
    assert events[-1]["type"] == "response.failed" and events[-1]["response"]["error"]["code"] == code


def test_overloaded_finish_fails_as_server_is_overloaded() -> None:
    events = run([chunk({"content": ""}, "insufficient_system_resource")], sdk=False)
    assert events[-1]["response"]["error"]["code"] == "server_is_overloaded"


def test_invalid_function_arguments_fail_instead_of_completing() -> None:
    events = run([chunk({"content": "ok"}), tools(tool(0, "c", "f", "{oops")), chunk({}, "tool_calls")])
    assert events[-1]["type"] == "response.failed"
    assert "invalid JSON arguments for tool 'f'" in events[-1]["response"]["error"]["message"]
    assert [o["type"] for o in output_of(events)] == ["message"]  # the broken call never reached done


def test_arguments_after_a_call_closed_fail_the_stream() -> None:
    stream = new_stream()
    frames = stream.start() + stream.feed(tools(tool(0, "a", "f", "{}"), tool(1, "b", "g", "{}")))
    frames += stream.feed(tools(tool(0, args='{"late": 1}'))) + stream.feed(chunk({}, "tool_calls")) + stream.finish()
    events = decode(frames)
    check_grammar(events)
    assert events[-1]["type"] == "response.failed" and stream.anomalies


# -- keepalive ---------------------------------------------------------------------------------


def test_keepalive_takes_the_next_sequence_number() -> None:
    events = run([KEEPALIVE, chunk({"content": "Hel"}), KEEPALIVE, KEEPALIVE, chunk({"content": "lo"}, "stop")])
    keepalives = [e for e in events if e["type"] == "keepalive"]
    assert keepalives == [{"type": "keepalive", "sequence_number": 2}, {"type": "keepalive", "sequence_number": 6},
                          {"type": "keepalive", "sequence_number": 7}]  # fmt: skip
    assert Response.model_validate(events[-1]["response"]).output_text == "Hello"


def test_keepalive_before_start_sends_created_first() -> None:
    stream = new_stream()
    events = decode([frame for frame in re.split(rb"(?<=\n\n)", stream.keepalive()) if frame])
    assert types_of(events) == ["created", "in_progress", "keepalive"]
    assert events[2]["sequence_number"] == 2
    assert stream.keepalive().startswith(b"event: keepalive\ndata: {")


def test_start_is_sent_once_and_ids_default() -> None:
    stream = ChatToResponsesStream(REQUEST, ToolTable(), MODEL)
    first = decode(stream.start())
    assert stream.start() == []
    response_id = first[0]["response"]["id"]
    assert re.fullmatch(r"resp_jx[0-9a-f]{30}", response_id) and stream.response_id == response_id
    assert isinstance(first[0]["response"]["created_at"], int)
    events = first + decode(stream.feed(chunk({"content": "x"}, "stop")) + stream.finish())
    check_grammar(events)


def test_request_settings_are_echoed_in_every_lifecycle_event() -> None:
    request = {**CUSTOM_REQUEST, "instructions": "Be brief.", "store": False, "tool_choice": "auto",
               "parallel_tool_calls": False}  # fmt: skip
    events = run([chunk({"content": "x"}, "stop")], request)
    for e in (events[0], events[1], events[-1]):
        response = e["response"]
        assert (response["instructions"], response["store"]) == ("Be brief.", False)
        assert response["tools"] == request["tools"]
        assert response["parallel_tool_calls"] is False


# -- stream and non-stream agree; any chunking is well-formed ------------------------------------


def normalise(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "id"} for item in output]


def test_stream_output_equals_the_non_stream_translation() -> None:
    table = custom_table()
    message = {"role": "assistant", "reasoning_content": "Think.", "content": "Doing it.", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "read", "arguments": '{"path": "a"}'}},
        {"id": "c2", "type": "function",
         "function": {"name": "apply_patch", "arguments": json.dumps({"input": PATCH})}},
    ]}  # fmt: skip
    body = {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}], "usage": USAGE}
    whole = chat_to_responses(body, CUSTOM_REQUEST, table, RESPONSE_ID, CREATED, MODEL)
    events = run([chunk({"reasoning_content": "Think."}), chunk({"content": "Doing it."}),
                  tools(tool(0, "c1", "read", '{"path": "a"}')),
                  tools(tool(1, "c2", "apply_patch", json.dumps({"input": PATCH}))),
                  chunk({}, "tool_calls"), usage_chunk()], CUSTOM_REQUEST, table)  # fmt: skip
    assert normalise(output_of(events)) == normalise(whole["output"])
    assert events[-1]["response"]["usage"] == whole["usage"]


_text = st.text(alphabet="ab \n\"\\é😀{}", min_size=1, max_size=12)


@st.composite
def upstream_answers(draw: st.DrawFn) -> tuple[list[dict[str, Any]], str | None]:
    """Reasoning, text and 0-3 tool calls, split into random fragments, calls interleaved at random."""
    chunks: list[dict[str, Any]] = []
    for key in ("reasoning_content", "content"):
        if draw(st.booleans()):
            chunks += [chunk({key: part}) for part in draw(st.lists(_text, min_size=1, max_size=3))]
    calls = []
    for i in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["read", "apply_patch"]))
        arguments = json.dumps({"input" if name == "apply_patch" else "v": draw(_text)})
        cuts = sorted(draw(st.lists(st.integers(1, len(arguments) - 1), max_size=3, unique=True)))
        pieces = [arguments[a:b] for a, b in zip([0, *cuts], [*cuts, len(arguments)], strict=True)]
        calls.append([tool(i, f"call_{i}", name, pieces[0])] + [tool(i, args=p) for p in pieces[1:]])
    while any(calls):
        pending = [c for c in calls if c]
        chosen = pending[draw(st.integers(0, len(pending) - 1))]
        chunks.append(tools(chosen.pop(0)))
    if draw(st.booleans()):
        chunks.insert(draw(st.integers(0, len(chunks))), KEEPALIVE)  # type: ignore[arg-type]
    finish = draw(st.sampled_from(["stop", "tool_calls", "length", "content_filter", None]))
    return chunks + [chunk({}, finish), usage_chunk()], finish


@settings(max_examples=150, deadline=None)
@given(upstream_answers())
def test_any_chunking_gives_a_well_formed_stream(answer: tuple[list[dict[str, Any]], str | None]) -> None:
    chunks, finish = answer
    events = run(chunks, CUSTOM_REQUEST, custom_table())
    incomplete = finish in ("length", "content_filter")
    assert events[-1]["type"] == ("response.incomplete" if incomplete else "response.completed")


# -- the checker itself rejects broken streams -------------------------------------------------


def _renumber(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**e, "sequence_number": i} for i, e in enumerate(events)]


def _good() -> list[dict[str, Any]]:
    return decode(frames_of([chunk({"reasoning_content": "r"}), chunk({"content": "Hi"}),
                             tools(tool(0, "c", "f", "{}")), chunk({}, "tool_calls")]))  # fmt: skip


def _drop(kind: str, nth: int = 0) -> Any:
    def mutate(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        positions = [i for i, e in enumerate(events) if e["type"] == kind]
        return _renumber(events[: positions[nth]] + events[positions[nth] + 1 :])
    return mutate


def _swap(a: str, b: str) -> Any:
    def mutate(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        i = next(i for i, e in enumerate(events) if e["type"] == a)
        j = next(j for j, e in enumerate(events) if e["type"] == b)
        events[i], events[j] = events[j], events[i]
        return _renumber(events)
    return mutate


def _edit(kind: str, change: Any) -> Any:
    def mutate(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        change(next(e for e in events if e["type"] == kind))
        return events
    return mutate


@pytest.mark.parametrize(
    "mutate",
    [
        _drop("response.created"),
        _drop("response.output_item.done", 1),  # an item never done
        _drop("response.content_part.added"),  # delta before its part
        _drop("response.reasoning_summary_part.added"),  # summary delta before its part
        _edit("response.reasoning_summary_text.delta", lambda e: e.update(delta="X")),  # summary no longer matches
        _drop("response.output_item.added", 2),  # deltas before their item
        _swap("response.output_item.done", "response.output_item.added"),  # interleaved: index 1 added before 0 done
        _edit("response.output_text.delta", lambda e: e.update(sequence_number=99)),
        _edit("response.output_text.delta", lambda e: e.update(logprobs=None)),
        _edit("response.output_text.delta", lambda e: e.update(delta="X")),  # done text no longer matches
        _edit("response.output_item.added", lambda e: e.update(output_index=1)),
        _edit("response.function_call_arguments.done", lambda e: e.update(arguments='{"x": 1}')),
        _edit("response.completed", lambda e: e["response"].update(id="resp_other")),
        _edit("response.completed", lambda e: e["response"]["output"].reverse()),
        _edit("response.output_item.done", lambda e: e["item"].update(summary=None)),
    ],
)
def test_the_grammar_checker_rejects_broken_streams(mutate: Any) -> None:
    events = _good()
    check_grammar(events)
    with pytest.raises(AssertionError):
        check_grammar(mutate(events))


def test_each_signed_thinking_block_is_its_own_reasoning_item() -> None:
    events = run([chunk({"reasoning_content": "First."}), chunk({"reasoning_signature": "SIG1"}),
                  chunk({"reasoning_content": "Second."}), chunk({"reasoning_signature": "SIG2"}),
                  chunk({"content": "Done"}), chunk({}, "stop")])  # fmt: skip
    first, second, message = output_of(events)
    assert open_reasoning(first["encrypted_content"]) == ("First.", "SIG1")
    assert open_reasoning(second["encrypted_content"]) == ("Second.", "SIG2")
    assert message["content"][0]["text"] == "Done"
