"""The mock upstream as a real process, driven by the official SDKs pointed straight at it: its
output must be byte-correct for strict clients before it can stand in for a provider."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest


pytestmark = pytest.mark.timeout(30)

USER = [{"role": "user", "content": "hello there"}]
SCHEMA = {"type": "object", "required": ["city", "days", "metric", "tags", "extra"],
          "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"},
                         "tags": {"type": "array"}, "extra": {"type": "object"}, "unused": {"type": "string"}}}  # fmt: skip
ARGS = {"city": "mock", "days": 1, "metric": True, "tags": [], "extra": {}}
OPENAI_TOOLS = [{"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}},
                {"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]  # fmt: skip
ANTHROPIC_TOOLS = [{"name": "other", "input_schema": {"type": "object"}},
                   {"name": "get_weather", "input_schema": SCHEMA}]  # fmt: skip


def oa(mock: str, timeout: float = 10) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{mock}/v1", api_key="k", max_retries=0, timeout=timeout)


def an(mock: str, timeout: float = 10) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=mock, api_key="k", max_retries=0, timeout=timeout)


def stats(mock: str) -> dict[str, int]:
    return httpx.get(f"{mock}/_mock/stats").json()


def recorded(mock: str) -> list[dict[str, Any]]:
    return httpx.get(f"{mock}/_mock/requests").json()


def wait_for(check: Any, timeout: float = 3) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# --- text -------------------------------------------------------------------------------------------


def test_openai_text_non_stream(mock: str) -> None:
    completion = oa(mock).chat.completions.create(model="gpt-x", messages=USER)
    assert completion.choices[0].message.content == "Mock reply to: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-x" and completion.id.startswith("chatcmpl-mock-")
    assert completion.usage is not None and completion.usage.prompt_tokens >= 1
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 5


def test_openai_stream_with_usage(mock: str) -> None:
    chunks = list(oa(mock).chat.completions.create(model="gpt-x", messages=USER, stream=True,
                                                   stream_options={"include_usage": True}))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Mock reply to: hello there"
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    with oa(mock).chat.completions.stream(model="gpt-x", messages=USER) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Mock reply to: hello there" and final.usage is None


def test_anthropic_text_non_stream_and_stream(mock: str) -> None:
    message = an(mock).messages.create(model="claude-x", max_tokens=64, messages=USER)
    assert message.content[0].type == "text" and message.content[0].text == "Mock reply to: hello there"
    assert message.stop_reason == "end_turn" and message.model == "claude-x" and message.id.startswith("msg_mock")
    assert message.usage.input_tokens >= 1 and message.usage.output_tokens == 5
    with an(mock).messages.stream(model="claude-x", max_tokens=64, messages=USER) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert final.content[0].text == "Mock reply to: hello there" and final.stop_reason == "end_turn"
    assert final.usage.input_tokens == message.usage.input_tokens and final.usage.output_tokens == 5
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert events.count("content_block_start") == 1 and events.count("content_block_stop") == 1


def test_anthropic_frames_carry_event_names(mock: str) -> None:
    body = {"model": "m", "max_tokens": 5, "stream": True, "messages": USER}
    text = httpx.post(f"{mock}/v1/messages", json=body).text
    frames = [f for f in text.split("\n\n") if f]
    for frame in frames:
        event, data = frame.split("\n")
        assert event == f"event: {json.loads(data.removeprefix('data: '))['type']}"
    names = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    assert names == ["message_start", "ping", "content_block_start", *["content_block_delta"] * 5,
                     "content_block_stop", "message_delta", "message_stop"]  # fmt: skip


def test_content_as_blocks_any_base_path_and_models(mock: str) -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "image_url", "image_url": {}},
                                           {"type": "text", "text": "second"}]}]  # fmt: skip
    for prefix in ("/coding/v1", "/openai/v1", ""):
        response = httpx.post(f"{mock}{prefix}/chat/completions", json={"model": "m", "messages": parts})
        assert response.json()["choices"][0]["message"]["content"] == "Mock reply to: first second"
    assert [m.id for m in oa(mock).models.list()] == ["gpt-mock", "claude-mock"]
    assert [m.id for m in an(mock).models.list()] == ["gpt-mock", "claude-mock"]
    assert an(mock).messages.count_tokens(model="m", messages=USER).input_tokens >= 1


def test_knobs_words_reply_chunks_and_header_precedence(mock: str) -> None:
    client = oa(mock)
    words = client.chat.completions.create(model="m", messages=USER, extra_headers={"x-mock-words": "7"})
    assert words.choices[0].message.content == "w1 w2 w3 w4 w5 w6 w7" and words.usage.completion_tokens == 7
    chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True,
                                                 extra_query={"reply": "abcdefgh", "chunks": "3"}))  # fmt: skip
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert pieces == ["ab", "cde", "fgh"]
    both = client.chat.completions.create(model="m", messages=USER, extra_query={"reply": "from query"},
                                          extra_headers={"x-mock-reply": "from header"})  # fmt: skip
    assert both.choices[0].message.content == "from header"


def test_delay_ttft_and_gap_are_applied(mock: str) -> None:
    started = time.perf_counter()
    an(mock).messages.create(model="m", max_tokens=5, messages=USER, extra_headers={"x-mock-delay_ms": "300"})
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    with httpx.stream("POST", f"{mock}/v1/chat/completions?ttft_ms=300&gap_ms=100&chunks=3",
                      json={"model": "m", "messages": USER, "stream": True}) as response:  # fmt: skip
        headers_at = time.perf_counter() - started
        arrivals = [time.perf_counter() - started for _ in response.iter_raw()]
    assert headers_at < 0.25 and arrivals[0] >= 0.3 and arrivals[-1] >= 0.6


# --- tools ------------------------------------------------------------------------------------------


def test_openai_tool_call_non_stream_and_stream(mock: str) -> None:
    forced = {"type": "function", "function": {"name": "get_weather"}}
    completion = oa(mock).chat.completions.create(model="m", messages=USER, tools=OPENAI_TOOLS, tool_choice=forced)
    (call,) = completion.choices[0].message.tool_calls
    assert completion.choices[0].finish_reason == "tool_calls" and completion.choices[0].message.content is None
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == ARGS
    with oa(mock).chat.completions.stream(model="m", tools=OPENAI_TOOLS, tool_choice=forced,
                                          messages=USER) as stream:  # fmt: skip
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == ARGS
    chunks = list(oa(mock).chat.completions.create(model="m", tools=OPENAI_TOOLS, stream=True, messages=[
        {"role": "user", "content": "please Use Tool now"}]))  # fmt: skip
    deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    head, *fragments = deltas
    assert head.index == 0 and head.id and head.type == "function" and head.function.name == "other"
    assert head.function.arguments == "" and len(fragments) >= 2 and all(f.id is None for f in fragments)
    assert json.loads("".join(f.function.arguments for f in fragments)) == {}


def test_anthropic_tool_call_non_stream_and_stream(mock: str) -> None:
    message = an(mock).messages.create(model="m", max_tokens=64, tools=ANTHROPIC_TOOLS,
                                       tool_choice={"type": "tool", "name": "get_weather"}, messages=USER)  # fmt: skip
    (block,) = message.content
    assert message.stop_reason == "tool_use" and block.type == "tool_use"
    assert block.name == "get_weather" and block.input == ARGS and block.id.startswith("toolu_")
    with an(mock).messages.stream(model="m", max_tokens=64, tools=ANTHROPIC_TOOLS,
                                  messages=[{"role": "user", "content": "call tool get_weather"}]) as stream:  # fmt: skip
        json_deltas = [e for e in stream if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[0].name == "other" and final.content[0].input == {}
    assert len(json_deltas) >= 2
    with an(mock).messages.stream(model="m", max_tokens=64, tools=ANTHROPIC_TOOLS, tool_choice={"type": "any"},
                                  messages=USER) as stream:  # fmt: skip
        assert stream.get_final_message().content[0].input == {}
    none = an(mock).messages.create(model="m", max_tokens=64, tools=ANTHROPIC_TOOLS, tool_choice={"type": "none"},
                                    messages=[{"role": "user", "content": "use tool"}])  # fmt: skip
    assert none.stop_reason == "end_turn" and none.content[0].type == "text"


def test_tool_result_follow_up_both_protocols(mock: str) -> None:
    openai_messages = [
        {"role": "user", "content": "use tool"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"},
    ]  # fmt: skip
    completion = oa(mock).chat.completions.create(model="m", messages=openai_messages, tools=OPENAI_TOOLS)
    assert completion.choices[0].message.content == "Tool result received: sunny, 21C"
    assert completion.choices[0].message.tool_calls is None
    anthropic_messages = [
        {"role": "user", "content": "use tool"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": [{"type": "text", "text": "x" * 300}]}]},
    ]  # fmt: skip
    with an(mock).messages.stream(model="m", max_tokens=64, tools=ANTHROPIC_TOOLS,
                                  messages=anthropic_messages) as stream:  # fmt: skip
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn" and final.content[0].text == "Tool result received: " + "x" * 200


# --- errors and faults ------------------------------------------------------------------------------


def test_status_knob_raises_the_sdk_error_class(mock: str) -> None:
    with pytest.raises(openai.RateLimitError) as o_info:
        oa(mock).chat.completions.create(model="m", messages=USER,
                                         extra_headers={"x-mock-status": "429", "x-mock-retry_after": "7"})  # fmt: skip
    assert o_info.value.response.headers["retry-after"] == "7"
    assert o_info.value.body["code"] == "rate_limit_exceeded" and o_info.value.body["message"]
    with pytest.raises(openai.InternalServerError):
        oa(mock).chat.completions.create(model="m", messages=USER, stream=True, extra_query={"status": "500"})
    with pytest.raises(anthropic.OverloadedError) as a_info:
        an(mock).messages.create(model="m", max_tokens=5, messages=USER, extra_headers={"x-mock-status": "529"})
    assert a_info.value.body == {"type": "error", "error": {"type": "overloaded_error",
                                                            "message": "mock: status 529 requested"}}  # fmt: skip
    with pytest.raises(anthropic.RateLimitError) as a_info:
        an(mock).messages.create(model="m", max_tokens=5, messages=USER, extra_query={"status": "429"})
    assert a_info.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.InternalServerError) as a_info:
        an(mock).messages.create(model="m", max_tokens=5, messages=USER, extra_query={"status": "500"})
    assert a_info.value.body["error"]["type"] == "api_error"


def test_fault_reset_is_a_connection_error(mock: str) -> None:
    before = stats(mock)
    with pytest.raises(openai.APIConnectionError) as o_info:
        oa(mock).chat.completions.create(model="m", messages=USER, extra_headers={"x-mock-fault": "reset"})
    assert not isinstance(o_info.value, openai.APITimeoutError)
    with pytest.raises(anthropic.APIConnectionError):
        an(mock).messages.create(model="m", max_tokens=5, messages=USER, extra_query={"fault": "reset"})
    with pytest.raises(httpx.TransportError):  # no response at all, not a 500
        httpx.post(f"{mock}/v1/chat/completions?fault=reset", json={"model": "m", "messages": USER})
    after = stats(mock)
    assert after["received"] == before["received"] + 3 and after["aborted"] == before["aborted"]


def test_fault_hang_counts_the_abort(mock: str) -> None:
    before = stats(mock)
    with pytest.raises(openai.APITimeoutError):
        oa(mock, timeout=0.5).chat.completions.create(model="m", messages=USER, extra_query={"fault": "hang"})
    wait_for(lambda: stats(mock)["aborted"] == before["aborted"] + 1)
    assert stats(mock)["open"] == 0


def test_fault_stall_and_close_mid_stream(mock: str) -> None:
    body = {"model": "m", "max_tokens": 5, "stream": True, "messages": USER}
    received = b""
    with pytest.raises(httpx.ReadTimeout):
        with httpx.stream("POST", f"{mock}/v1/messages", json=body, headers={"x-mock-fault": "stall"},
                          timeout=httpx.Timeout(5, read=0.5)) as response:  # fmt: skip
            assert response.status_code == 200
            for piece in response.iter_raw():
                received += piece
    assert received.count(b"event: content_block_delta") == 2 and b"message_stop" not in received
    closed = httpx.post(f"{mock}/v1/chat/completions?fault=close&stall_after=3",
                        json={"model": "m", "messages": USER, "stream": True}).text  # fmt: skip
    deltas = [json.loads(f.removeprefix("data: "))["choices"][0]["delta"] for f in closed.split("\n\n") if f]
    assert [d["content"] for d in deltas] == ["", "Mock", " reply", " to:"]  # 3 writes; no finish, no [DONE]
    with an(mock).messages.stream(model="m", max_tokens=5, messages=USER, extra_query={"fault": "close"}) as stream:
        partial = stream.get_final_message()  # the SDK tolerates the early end: a snapshot with no stop_reason
    assert partial.stop_reason is None and partial.content[0].text == "Mock reply"
    wait_for(lambda: stats(mock)["open"] == 0)


# --- recording and scripts --------------------------------------------------------------------------


def test_requests_are_recorded_and_bounded(mock: str) -> None:
    httpx.delete(f"{mock}/_mock/requests")
    an(mock).messages.create(model="m", max_tokens=5, messages=USER, extra_headers={"X-Custom": "v"},
                             extra_query={"beta": "true"})  # fmt: skip
    (req,) = recorded(mock)
    assert req["method"] == "POST" and req["path"] == "/v1/messages" and req["query"] == "beta=true"
    assert req["headers"]["x-custom"] == "v" and "anthropic-version" in req["headers"]
    assert req["body"] == {"model": "m", "max_tokens": 5, "messages": USER}
    with httpx.Client(base_url=mock) as client:
        for i in range(1005):
            client.post("/v1/nothing", content=f"not json {i}")
    requests = recorded(mock)
    assert len(requests) == 1000 and requests[-1]["body"] is None and requests[-1]["path"] == "/v1/nothing"
    httpx.delete(f"{mock}/_mock/requests")
    assert recorded(mock) == []


def test_scripted_responses_served_verbatim(mock: str) -> None:
    chunks = ["data: {\"a\": \"h\xc3", "\xa9llo\"}\n\n", "data: [DONE]\n\n"]  # é split between two writes
    script = {"responses": [
        {"match_model": "scripted", "status": 200, "headers": {"Content-Type": "text/event-stream", "X-Tag": "1"},
         "chunks": chunks, "encoding": "latin1", "gap_ms": 50},
        {"status": 503, "headers": {"content-type": "application/json"}, "chunks": ['{"error": {"message": "x"}}']},
        {"match_model": "gz", "chunks": ["one ", "two ", "three"], "gzip": True, "close_early": True},
    ]}  # fmt: skip
    assert httpx.post(f"{mock}/_mock/script", json=script).json()["queued"] == 3
    # The unmatched-model entry is first in line for any other model.
    with pytest.raises(openai.InternalServerError):
        oa(mock).chat.completions.create(model="anything", messages=USER)
    response = httpx.post(f"{mock}/v1/messages", json={"model": "scripted", "messages": USER})
    assert response.headers["x-tag"] == "1" and response.content == "".join(chunks).encode("latin-1")
    assert response.text == 'data: {"a": "héllo"}\n\ndata: [DONE]\n\n'
    with httpx.stream("POST", f"{mock}/v1/chat/completions", json={"model": "gz", "messages": USER}) as gz:
        assert gz.headers["content-encoding"] == "gzip"
        compressed = b"".join(gz.iter_raw())
    whole = gzip.compress(b"one two three")
    assert gzip.decompress(compressed + whole[len(compressed) :]) == b"one two three"  # only the tail is missing
    with pytest.raises(EOFError):
        gzip.decompress(compressed)
    # The queue is empty again: back to generated replies.
    assert oa(mock).chat.completions.create(model="gz", messages=USER).choices[0].message.content.startswith("Mock")
    httpx.post(f"{mock}/_mock/script", json={"responses": [{"chunks": ["x"]}]})
    httpx.delete(f"{mock}/_mock/script")
    assert an(mock).messages.create(model="m", max_tokens=5, messages=USER).content[0].text.startswith("Mock")
    assert httpx.post(f"{mock}/_mock/script", json={"nope": 1}).status_code == 400
