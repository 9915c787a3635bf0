"""`POST /v1/responses` over real sockets: a `junction serve` process, the mock upstream speaking Chat
Completions or Messages, and the official OpenAI SDK (`responses.create`, the `responses.stream`
accumulator) as the strict client."""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
import openai
import pytest

from tests.procs import gateway_with, script_streams
from tests.upstream_frames import messages

KEY = "gw-responses-key-0123456789"
SECRET = "sk-responses-upstream-secret-abc"

CONFIG = """
version: v0.4.0
llm_providers:
  - model: mock/gpt-mock
    base_url: {mock}/v1
    access_key: $TEST_UPSTREAM_SECRET
    default: true
  - model: mock/claude-mock
    base_url: {mock}
    provider_interface: anthropic
    access_key: $TEST_UPSTREAM_SECRET
  - model: mock/claude-limited
    base_url: {mock}
    provider_interface: anthropic
    access_key: $TEST_UPSTREAM_SECRET
    headers: {{x-mock-status: "429", x-mock-retry_after: "3"}}
  - model: mock/claude-overloaded
    base_url: {mock}
    provider_interface: anthropic
    access_key: $TEST_UPSTREAM_SECRET
    headers: {{x-mock-status: "529"}}
    fallbacks: [claude-mock]
  - model: mock/rate-limited
    base_url: {mock}/v1
    access_key: $TEST_UPSTREAM_SECRET
    headers: {{x-mock-status: "429", x-mock-retry_after: "3"}}
  - model: mock/overloaded
    base_url: {mock}/v1
    access_key: $TEST_UPSTREAM_SECRET
    headers: {{x-mock-status: "503"}}
    fallbacks: [gpt-mock]
gateway_keys:
  - name: tests
    key: $TEST_GATEWAY_KEY
streaming:
  ping_interval: 0.3s
"""

APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Apply a patch to files.",
               "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/s"}}  # fmt: skip
EXEC = {"type": "function", "name": "exec_command", "description": "Run a shell command.", "strict": False,
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}  # fmt: skip


@pytest.fixture(scope="module")
def gateway(mock: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with gateway_with(tmp_path_factory.mktemp("responses"), CONFIG.format(mock=mock), {"TEST_UPSTREAM_SECRET": SECRET, "TEST_GATEWAY_KEY": KEY}) as base:
        yield base


def client(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=KEY, max_retries=0, timeout=20)


def sse(*chunks: dict[str, Any], done: bool = True) -> list[str]:
    return [f"data: {json.dumps(c, ensure_ascii=False)}\n\n" for c in chunks] + (["data: [DONE]\n\n"] if done else [])


def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-mock",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    if usage is not None:
        out["usage"] = usage
    return out


def events_of(raw: str) -> list[dict[str, Any]]:
    out = []
    for block in raw.split("\n\n"):
        data = [line[5:].strip() for line in block.splitlines() if line.startswith("data:")]
        if data:
            out.append(json.loads("\n".join(data)))
    return out


def raw_stream(gateway: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream("POST", f"{gateway}/v1/responses", json={**body, "stream": True},
                      headers={"authorization": f"Bearer {KEY}"}, timeout=20) as response:  # fmt: skip
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        return events_of(response.read().decode())


def test_text_answer_from_a_chat_upstream(gateway: str, upstream: Any) -> None:
    answer = client(gateway).responses.create(model="gpt-mock", instructions="Be brief.", input="say hello", store=False)
    assert answer.status == "completed" and answer.output_text and answer.id.startswith("resp_")
    assert answer.model == "gpt-mock" and answer.usage is not None and answer.usage.total_tokens > 0
    (sent,) = upstream()
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][-1]["role"] == "user" and "say hello" in json.dumps(sent["messages"][-1])
    assert not {"input", "instructions", "store"} & set(sent)  # a Chat body, nothing of the Responses shape


def test_streamed_text_through_the_sdk_accumulator(gateway: str, mock: str, upstream: Any) -> None:
    script_streams(mock, "gpt-mock", sse(chunk({"role": "assistant", "content": "Hel"}), chunk({"content": "lo, wörld"}),
                                 chunk({}, "stop"), {**chunk({}), "choices": [], "usage": {
                                     "prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14,
                                     "prompt_tokens_details": {"cached_tokens": 4}}}))  # fmt: skip
    with client(gateway).responses.stream(model="gpt-mock", input="greet the world") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert final.output_text == "Hello, wörld" and final.status == "completed"
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (11, 3)
    assert final.usage.input_tokens_details.cached_tokens == 4
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.index("response.output_item.added") < kinds.index("response.output_text.delta") < \
        kinds.index("response.output_item.done")  # fmt: skip
    assert upstream()[0]["stream"] is True


def test_custom_and_function_tools_round_trip(gateway: str, mock: str, upstream: Any) -> None:
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n"
    script_streams(mock, "gpt-mock", sse(
        chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                                    "function": {"name": "exec_command", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                               "function": {"name": "apply_patch", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"cmd": "ls"}'}}]}),  # interleaved
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": json.dumps({"input": patch})}}]}),
        chunk({}, "tool_calls")))  # fmt: skip
    body = {"model": "gpt-mock", "input": [{"type": "message", "role": "user",
                                            "content": [{"type": "input_text", "text": "add hello.txt"}]}],
            "tools": [EXEC, APPLY_PATCH], "tool_choice": "auto", "parallel_tool_calls": True}  # fmt: skip
    with client(gateway).responses.stream(**body) as stream:
        final = stream.get_final_response()
    calls = [item for item in final.output if item.type in ("function_call", "custom_tool_call")]
    assert [(c.type, c.name) for c in calls] == [("function_call", "exec_command"), ("custom_tool_call", "apply_patch")]
    assert json.loads(calls[0].arguments) == {"cmd": "ls"} and calls[1].input == patch  # unwrapped for Codex
    (sent,) = upstream()
    assert [t["function"]["name"] for t in sent["tools"]] == ["exec_command", "apply_patch"]
    # The next turn replays both calls and their outputs: one assistant message, then the tool messages.
    follow = [*body["input"], *(c.model_dump(exclude_none=True) for c in calls),
              {"type": "function_call_output", "call_id": calls[0].call_id, "output": "README.md"},
              {"type": "custom_tool_call_output", "call_id": calls[1].call_id, "output": "Success."}]  # fmt: skip
    answer = client(gateway).responses.create(**{**body, "input": follow})
    assert answer.status == "completed"
    sent = upstream()[-1]["messages"]
    assistant = next(m for m in sent if m["role"] == "assistant")
    assert [c["id"] for c in assistant["tool_calls"]] == [calls[0].call_id, calls[1].call_id]
    assert json.loads(assistant["tool_calls"][1]["function"]["arguments"]) == {"input": patch}
    assert [(m["role"], m["tool_call_id"]) for m in sent if m["role"] == "tool"] == \
        [("tool", calls[0].call_id), ("tool", calls[1].call_id)]  # fmt: skip


def test_reasoning_round_trip_is_gateway_signed(gateway: str, mock: str, upstream: Any) -> None:
    script_streams(mock, "gpt-mock", sse(chunk({"role": "assistant", "reasoning_content": "think about it"}),
                                 chunk({"content": "42"}), chunk({}, "stop")))  # fmt: skip
    with client(gateway).responses.stream(model="gpt-mock", input="the answer?") as stream:
        final = stream.get_final_response()
    reasoning = next(item for item in final.output if item.type == "reasoning")
    assert reasoning.encrypted_content and "think about it" not in reasoning.encrypted_content
    assert final.output_text == "42"
    forged = reasoning.model_dump(exclude_none=True)
    forged["encrypted_content"] = reasoning.encrypted_content[:-4] + "AAAA"
    with pytest.raises(openai.BadRequestError) as refused:
        client(gateway).responses.create(model="gpt-mock", input=[forged, {"role": "user", "content": "more"}])
    assert "encrypted_content" in str(refused.value) and refused.value.param == "input[0].encrypted_content"


def test_an_anthropic_upstream_answers_in_responses_shape(gateway: str, upstream: Any) -> None:
    answer = client(gateway).responses.create(model="claude-mock", instructions="Be brief.", input="hello")
    assert answer.status == "completed" and answer.output_text and answer.model == "claude-mock"
    (sent,) = upstream()
    assert sent["system"] and sent["messages"][0]["role"] == "user" and sent["max_tokens"] > 0  # a Messages body
    with client(gateway).responses.stream(model="claude-mock", input="hello again") as stream:
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text


def test_bad_input_is_a_400_naming_the_field(gateway: str) -> None:
    response = httpx.post(f"{gateway}/v1/responses", json={"model": "gpt-mock", "input": 5},
                          headers={"authorization": f"Bearer {KEY}"})  # fmt: skip
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"].startswith("input:")
    with pytest.raises(openai.BadRequestError) as missing:
        client(gateway).responses.create(model="gpt-mock", input="again", previous_response_id="resp_unknown")
    assert missing.value.code == "previous_response_not_found"


def test_upstream_errors_keep_their_status(gateway: str) -> None:
    with pytest.raises(openai.RateLimitError) as limited:
        client(gateway).responses.create(model="rate-limited", input="hi")
    assert limited.value.status_code == 429 and limited.value.response.headers.get("retry-after") == "3"


def test_an_upstream_that_dies_mid_stream_ends_in_response_failed(gateway: str, mock: str) -> None:
    script_streams(mock, "gpt-mock", sse(chunk({"role": "assistant", "content": "partial "}), chunk({"content": "answer"}),
                                 done=False), close_early=True)  # fmt: skip
    events = raw_stream(gateway, {"model": "gpt-mock", "input": "tell me"})
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-1]["response"]["status"] == "failed" and events[-1]["response"]["error"]["code"] == "server_error"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    with pytest.raises(openai.APIError):
        script_streams(mock, "gpt-mock", sse(chunk({"role": "assistant", "content": "x"}), done=False), close_early=True)
        with client(gateway).responses.stream(model="gpt-mock", input="again") as stream:
            stream.get_final_response()


def test_a_websocket_upgrade_gets_426(gateway: str) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = gateway.replace("http://", "ws://") + "/v1/responses"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers={"authorization": f"Bearer {KEY}"}, open_timeout=5)
    assert refused.value.response.status_code == 426


def test_routing_api_reads_responses_bodies(gateway: str) -> None:
    body = {"input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}
    response = httpx.post(f"{gateway}/routing/v1/responses", json=body, headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code == 200 and response.json()["reason"] == "no_preferences"



def test_an_overloaded_model_fails_over_and_the_client_never_knows(gateway: str, upstream: Any) -> None:
    answer = client(gateway).responses.create(model="overloaded", input="hello")
    assert answer.status == "completed" and answer.output_text and answer.model == "overloaded"
    assert [body["model"] for body in upstream()] == ["overloaded", "gpt-mock"]


def test_keepalive_data_events_flow_during_upstream_silence(gateway: str, mock: str) -> None:
    # 1.2 s of silence between chunks against a 0.3 s ping interval: Codex's idle timer only sees data events.
    script_streams(mock, "gpt-mock", sse(chunk({"role": "assistant", "content": "slow "}), chunk({"content": "answer"}),
                                         chunk({}, "stop")), gap_ms=1200)  # fmt: skip
    events = raw_stream(gateway, {"model": "gpt-mock", "input": "take your time"})
    kinds = [e["type"] for e in events]
    assert kinds.count("keepalive") >= 3 and kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "slow answer"


def test_gzip_and_utf8_split_across_chunks(gateway: str, mock: str) -> None:
    frames = "".join(sse(chunk({"role": "assistant", "content": "naïve café ✓ 思考"}), chunk({}, "stop")))
    raw = frames.encode()
    cut = raw.index("✓".encode()) + 1  # inside the three bytes of one character
    script_streams(mock, "gpt-mock", [raw[:cut].decode("latin-1"), raw[cut:].decode("latin-1")], encoding="latin1")
    events = raw_stream(gateway, {"model": "gpt-mock", "input": "unicode please"})
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "naïve café ✓ 思考"
    script_streams(mock, "gpt-mock", sse(chunk({"role": "assistant", "content": "packed"}), chunk({}, "stop")), gzip=True)
    with client(gateway).responses.stream(model="gpt-mock", input="compressed") as stream:
        assert stream.get_final_response().output_text == "packed"


def test_context_overflow_mid_stream_tells_codex_not_to_retry(gateway: str, mock: str) -> None:
    error = {"error": {"message": "This model's maximum context length is 131072 tokens", "type": "invalid_request_error",
                       "code": "context_length_exceeded"}}  # fmt: skip
    script_streams(mock, "gpt-mock", [*sse(chunk({"role": "assistant", "content": "x"}), done=False),
                                      f"data: {json.dumps(error)}\n\n"])  # fmt: skip
    events = raw_stream(gateway, {"model": "gpt-mock", "input": "a very long prompt"})
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-1]["response"]["error"]["code"] == "context_length_exceeded"


def test_previous_response_id_continues_a_stored_conversation(gateway: str, mock: str, upstream: Any) -> None:
    first = client(gateway).responses.create(model="gpt-mock", instructions="Be brief.", input="My name is Ada.")
    second = client(gateway).responses.create(model="gpt-mock", input="What is my name?", previous_response_id=first.id)
    assert second.status == "completed" and second.id != first.id
    sent = upstream()[-1]["messages"]
    texts = [json.dumps(m.get("content")) for m in sent]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]  # instructions are not carried over
    assert "My name is Ada." in texts[0] and first.output_text in texts[1] and "What is my name?" in texts[2]
    # a streamed answer is stored too, and chains: the third request carries all five turns
    script_streams(mock, "gpt-mock", sse(chunk({"role": "assistant", "content": "Ada."}), chunk({}, "stop")))
    with client(gateway).responses.stream(model="gpt-mock", input="Say it again", previous_response_id=second.id) as s:
        third = s.get_final_response()
    client(gateway).responses.create(model="gpt-mock", input="Thanks", previous_response_id=third.id)
    assert [m["role"] for m in upstream()[-1]["messages"]] == ["user", "assistant", "user", "assistant", "user",
                                                               "assistant", "user"]  # fmt: skip


def test_store_false_keeps_nothing(gateway: str) -> None:
    answer = client(gateway).responses.create(model="gpt-mock", input="secret plans", store=False)
    with pytest.raises(openai.BadRequestError) as missing:
        client(gateway).responses.create(model="gpt-mock", input="and then?", previous_response_id=answer.id)
    assert missing.value.code == "previous_response_not_found" and answer.id in str(missing.value)
    assert missing.value.param == "previous_response_id"


def test_a_request_without_model_reaches_the_default_model(gateway: str, upstream: Any) -> None:
    response = httpx.post(f"{gateway}/v1/responses", json={"input": "hi"}, headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code == 200 and response.json()["status"] == "completed"
    assert [body["model"] for body in upstream()] == ["gpt-mock"]


def test_context_overflow_before_the_stream_is_a_400_with_its_code(gateway: str, mock: str) -> None:
    error = {"error": {"message": "This model's maximum context length is 131072 tokens. However, you requested "
                                  "140000 tokens.", "type": "invalid_request_error", "code": "context_length_exceeded"}}  # fmt: skip
    httpx.post(f"{mock}/_mock/script", json={"responses": [{"match_model": "gpt-mock", "status": 400,
               "headers": {"content-type": "application/json"}, "chunks": [json.dumps(error)]}]}).raise_for_status()  # fmt: skip
    with pytest.raises(openai.BadRequestError) as overflow:
        client(gateway).responses.create(model="gpt-mock", input="a very long prompt")
    assert overflow.value.code == "context_length_exceeded"


# --- the Anthropic-style upstream path: Responses -> Chat -> Messages and back -------------------------


def test_tools_through_an_anthropic_upstream(gateway: str, mock: str, upstream: Any) -> None:
    patch = "*** Begin Patch\n*** Add File: a.txt\n+a\n*** End Patch\n"
    script_streams(mock, "claude-mock", messages(
        ({"type": "text", "text": ""}, [{"type": "text_delta", "text": "Running it."}]),
        ({"type": "tool_use", "id": "toolu_1", "name": "exec_command", "input": {}},
         [{"type": "input_json_delta", "partial_json": '{"cmd": '}, {"type": "input_json_delta", "partial_json": '"ls"}'}]),
        ({"type": "tool_use", "id": "toolu_3", "name": "exec_command", "input": {}},
         [{"type": "input_json_delta", "partial_json": '{"cmd": "pwd"}'}]),
        ({"type": "tool_use", "id": "toolu_2", "name": "apply_patch", "input": {}},
         [{"type": "input_json_delta", "partial_json": json.dumps({"input": patch})}]),
        stop="tool_use"))  # fmt: skip
    with client(gateway).responses.stream(model="claude-mock", input="go", tools=[EXEC, APPLY_PATCH]) as stream:
        final = stream.get_final_response()
    assert [item.type for item in final.output] == ["message", "function_call", "function_call", "custom_tool_call"]
    assert final.output_text == "Running it." and json.loads(final.output[1].arguments) == {"cmd": "ls"}
    assert json.loads(final.output[2].arguments) == {"cmd": "pwd"} and final.output[2].call_id == "toolu_3"
    assert final.output[3].input == patch and final.output[1].call_id == "toolu_1"
    sent = upstream()[-1]
    assert [t["name"] for t in sent["tools"]] == ["exec_command", "apply_patch"]  # Messages tools
    assert sent["tools"][1]["input_schema"]["required"] == ["input"]


def test_an_anthropic_upstream_that_dies_mid_stream_ends_in_response_failed(gateway: str, mock: str) -> None:
    frames = messages(({"type": "text", "text": ""}, [{"type": "text_delta", "text": "partial"}]), stop="end_turn")
    script_streams(mock, "claude-mock", frames[:3], close_early=True)
    events = raw_stream(gateway, {"model": "claude-mock", "input": "tell me"})
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    script_streams(mock, "claude-mock", [*frames[:3], f"event: error\ndata: {json.dumps(overloaded)}\n\n"])
    events = raw_stream(gateway, {"model": "claude-mock", "input": "again"})
    assert events[-1]["type"] == "response.failed" and events[-1]["response"]["error"]["code"] == "server_is_overloaded"


def test_stored_responses_can_be_retrieved_and_deleted(gateway: str) -> None:
    sdk = client(gateway)
    answer = sdk.responses.create(model="gpt-mock", input="remember me")
    again = sdk.responses.retrieve(answer.id)
    assert again.id == answer.id and again.output_text == answer.output_text and again.status == "completed"
    sdk.responses.delete(answer.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(answer.id)
    with pytest.raises(openai.BadRequestError):  # a deleted response cannot be continued either
        sdk.responses.create(model="gpt-mock", input="and?", previous_response_id=answer.id)
    unstored = sdk.responses.create(model="gpt-mock", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(unstored.id)
    assert httpx.get(f"{gateway}/v1/responses/{answer.id}").status_code == 401  # behind the gateway keys


def test_keepalive_flows_while_a_custom_tool_input_is_held(gateway: str, mock: str) -> None:
    # The upstream keeps streaming a patch (so the repair layer sees no silence) but, having ignored the
    # `{"input": ...}` wrapper, as raw text: such input reaches the client only when the call is complete,
    # so the client side still needs data events meanwhile.
    raw_patch = "*** Begin Patch\n*** Add File: b.txt\n" + "+line\n" * 40 + "*** End Patch\n"
    pieces = [raw_patch[i : i + 12] for i in range(0, len(raw_patch), 12)]
    frames = sse(chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_p", "type": "function",
                                                             "function": {"name": "apply_patch", "arguments": ""}}]}),
                 *(chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces),
                 chunk({}, "tool_calls"))  # fmt: skip
    script_streams(mock, "gpt-mock", frames, gap_ms=60)
    events = raw_stream(gateway, {"model": "gpt-mock", "input": "patch it", "tools": [APPLY_PATCH]})
    kinds = [e["type"] for e in events]
    added = kinds.index("response.output_item.added")
    assert kinds[added:].count("keepalive") >= 3 and kinds[-1] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    done = next(e for e in events if e["type"] == "response.output_item.done")
    assert done["item"]["type"] == "custom_tool_call" and done["item"]["input"] == raw_patch


def test_anthropic_thinking_round_trip_keeps_its_signature(gateway: str, mock: str, upstream: Any) -> None:
    # Anthropic requires a tool-use turn's thinking block, with its own signature, when thinking stays on.
    script_streams(mock, "claude-mock", messages(
        ({"type": "thinking", "thinking": "", "signature": ""},
         [{"type": "thinking_delta", "thinking": "Plan: list "}, {"type": "thinking_delta", "thinking": "the files."},
          {"type": "signature_delta", "signature": "EqSIG-anthropic-123"}]),
        ({"type": "tool_use", "id": "toolu_9", "name": "exec_command", "input": {}},
         [{"type": "input_json_delta", "partial_json": '{"cmd": "ls"}'}]),
        stop="tool_use"))  # fmt: skip
    sdk = client(gateway)
    with sdk.responses.stream(model="claude-mock", input="go", tools=[EXEC], reasoning={"effort": "high"}) as stream:
        first = stream.get_final_response()
    assert [item.type for item in first.output] == ["reasoning", "function_call"]
    assert first.output[0].summary[0].text == "Plan: list the files."  # type: ignore[union-attr]
    assert "EqSIG" not in (first.output[0].encrypted_content or "")  # type: ignore[union-attr]
    history = [{"role": "user", "content": "go"}, *[item.model_dump(exclude_none=True) for item in first.output],
               {"type": "function_call_output", "call_id": "toolu_9", "output": "a.txt"}]  # fmt: skip
    sdk.responses.create(model="claude-mock", input=history, tools=[EXEC], reasoning={"effort": "high"})  # type: ignore[arg-type]
    opening, continued = upstream()
    assert opening["thinking"]["type"] == "enabled" and continued["thinking"]["type"] == "enabled"
    assistant = next(m for m in continued["messages"] if m["role"] == "assistant")
    assert assistant["content"][0] == {"type": "thinking", "thinking": "Plan: list the files.",
                                       "signature": "EqSIG-anthropic-123"}  # fmt: skip
    assert assistant["content"][1]["type"] == "tool_use" and assistant["content"][1]["id"] == "toolu_9"


def test_anthropic_upstream_usage_limits_failover_and_overflow(gateway: str, mock: str, upstream: Any) -> None:
    sdk = client(gateway)
    script_streams(mock, "claude-mock", messages(({"type": "text", "text": ""}, [{"type": "text_delta", "text": "hi"}]),
                                                 stop="end_turn"))  # fmt: skip
    with sdk.responses.stream(model="claude-mock", input="hello") as stream:
        usage = stream.get_final_response().usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (120, 6, 126)
    with pytest.raises(openai.RateLimitError) as limited:
        sdk.responses.create(model="claude-limited", input="hi")
    assert limited.value.response.headers.get("retry-after") == "3"
    answer = sdk.responses.create(model="claude-overloaded", input="hi")  # 529, then its fallback
    assert answer.status == "completed" and [b["model"] for b in upstream()[-2:]] == ["claude-overloaded", "claude-mock"]
    overflow = {"type": "error", "error": {"type": "invalid_request_error",
                                           "message": "prompt is too long: 210000 tokens > 200000 maximum"}}  # fmt: skip
    httpx.post(f"{mock}/_mock/script", json={"responses": [{"match_model": "claude-mock", "status": 400,
               "headers": {"content-type": "application/json"}, "chunks": [json.dumps(overflow)]}]}).raise_for_status()  # fmt: skip
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(model="claude-mock", input="a very long prompt")
    assert refused.value.code == "context_length_exceeded"


def test_anthropic_upstream_keepalive_gzip_and_split_utf8(gateway: str, mock: str) -> None:
    slow = messages(({"type": "text", "text": ""}, [{"type": "text_delta", "text": "slow "},
                                                    {"type": "text_delta", "text": "answer"}]), stop="end_turn")  # fmt: skip
    script_streams(mock, "claude-mock", slow, gap_ms=500)
    events = raw_stream(gateway, {"model": "claude-mock", "input": "take your time"})
    assert [e["type"] for e in events].count("keepalive") >= 3 and events[-1]["type"] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    text = "naïve café ✓ 思考"
    raw = "".join(messages(({"type": "text", "text": ""}, [{"type": "text_delta", "text": text}]), stop="end_turn")).encode()
    cut = raw.index("✓".encode()) + 1
    script_streams(mock, "claude-mock", [raw[:cut].decode("latin-1"), raw[cut:].decode("latin-1")], encoding="latin1")
    events = raw_stream(gateway, {"model": "claude-mock", "input": "unicode please"})
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == text
    script_streams(mock, "claude-mock", messages(({"type": "text", "text": ""}, [{"type": "text_delta", "text": "packed"}]),
                                                 stop="end_turn"), gzip=True)  # fmt: skip
    with client(gateway).responses.stream(model="claude-mock", input="compressed") as stream:
        assert stream.get_final_response().output_text == "packed"
