"""`POST /v1/responses` to an upstream that serves the Responses API itself (OpenAI, or one marked
`provider_interface: responses`): relayed, not translated. Over real sockets: a `junction serve`
process, the mock upstream speaking Responses (its generated answers, or scripted raw frames), and the
official OpenAI SDK as the strict client."""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
import openai
import pytest

from tests.procs import gateway_with, script_streams
from tests.test_responses_gateway import APPLY_PATCH, EXEC, chunk, events_of, sse

KEY = "gw-native-key-0123456789"
SECRET = "sk-native-upstream-secret-abc"

CONFIG = """
version: v0.4.0
llm_providers:
  - model: native/gpt-native
    base_url: {mock}/v1
    provider_interface: responses
    access_key: $TEST_UPSTREAM_SECRET
    default: true
  - model: native/limited
    base_url: {mock}/v1
    provider_interface: responses
    access_key: $TEST_UPSTREAM_SECRET
    headers: {{x-mock-status: "429", x-mock-retry_after: "3"}}
  - model: native/overloaded
    base_url: {mock}/v1
    provider_interface: responses
    access_key: $TEST_UPSTREAM_SECRET
    headers: {{x-mock-status: "503"}}
    fallbacks: [chat-mock]
  - model: mock/chat-mock
    base_url: {mock}/v1
    access_key: $TEST_UPSTREAM_SECRET
gateway_keys:
  - name: tests
    key: $TEST_GATEWAY_KEY
streaming:
  ping_interval: 0.3s
"""


@pytest.fixture(scope="module")
def gateway(mock: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"TEST_UPSTREAM_SECRET": SECRET, "TEST_GATEWAY_KEY": KEY}
    with gateway_with(tmp_path_factory.mktemp("native"), CONFIG.format(mock=mock), env) as base:
        yield base


def client(gateway: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=KEY, max_retries=0, timeout=20)


def recorded(mock: str) -> list[dict[str, Any]]:
    """The requests the mock received (path, headers, body), oldest first."""
    return list(httpx.get(f"{mock}/_mock/requests").json())


def event(kind: str, seq: int, **fields: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': seq, **fields}, ensure_ascii=False)}\n\n"


def response(status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": "resp_upstream1", "object": "response", "created_at": 1, "model": "gpt-upstream", "status": status,
            "output": output, "usage": usage, "error": None, "incomplete_details": None, "tools": [],
            "parallel_tool_calls": True, "tool_choice": "auto"}  # fmt: skip


USAGE = {"input_tokens": 21, "input_tokens_details": {"cached_tokens": 8}, "output_tokens": 5,
         "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 26}  # fmt: skip


def text_stream(text: str, pieces: int = 2, extra: tuple[str, ...] = ()) -> list[str]:
    """A native upstream's stream of one message (`extra` frames go after the first delta)."""
    message = {"type": "message", "id": "msg_up1", "role": "assistant", "status": "in_progress", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    cut = [text[i * len(text) // pieces : (i + 1) * len(text) // pieces] for i in range(pieces)]
    done = {**message, "status": "completed", "content": [{**part, "text": text}]}
    frames = [event("response.created", 0, response=response("in_progress", [])),
              event("response.in_progress", 1, response=response("in_progress", [])),
              event("response.output_item.added", 2, output_index=0, item=message),
              event("response.content_part.added", 3, item_id="msg_up1", output_index=0, content_index=0, part=part)]  # fmt: skip
    seq = 4
    for i, piece in enumerate(cut):
        frames.append(event("response.output_text.delta", seq, item_id="msg_up1", output_index=0, content_index=0,
                            delta=piece, logprobs=[]))  # fmt: skip
        seq += 1
        if i == 0:
            frames += list(extra)
    frames += [event("response.output_text.done", seq, item_id="msg_up1", output_index=0, content_index=0, text=text,
                     logprobs=[]),
               event("response.content_part.done", seq + 1, item_id="msg_up1", output_index=0, content_index=0,
                     part={**part, "text": text}),
               event("response.output_item.done", seq + 2, output_index=0, item=done),
               event("response.completed", seq + 3, response=response("completed", [done], USAGE))]  # fmt: skip
    return frames


def raw(gateway: str, body: dict[str, Any]) -> httpx.Response:
    with httpx.stream("POST", f"{gateway}/v1/responses", json={**body, "stream": True},
                      headers={"authorization": f"Bearer {KEY}"}, timeout=20) as answer:  # fmt: skip
        answer.read()
    return answer


def test_text_is_relayed_from_the_upstreams_responses_endpoint(gateway: str, mock: str, upstream: Any) -> None:
    sdk = client(gateway)
    answer = sdk.responses.create(model="gpt-native", instructions="Be brief.", input="say hello", store=False,
                                  metadata={"team": "a"}, include=["reasoning.encrypted_content"])  # fmt: skip
    assert answer.status == "completed" and answer.output_text == "Mock reply to: say hello"
    assert answer.id.startswith("resp_mock") and answer.usage is not None  # the upstream's own response
    (sent,) = recorded(mock)
    assert sent["path"] == "/v1/responses" and sent["headers"]["authorization"] == f"Bearer {SECRET}"
    body = sent["body"]
    assert body["instructions"] == "Be brief." and body["input"] == "say hello" and body["store"] is False
    assert body["metadata"] == {"team": "a"} and body["include"] == ["reasoning.encrypted_content"]
    assert body["model"] == "gpt-native" and "messages" not in body  # a Responses body, not a Chat one
    with sdk.responses.stream(model="gpt-native", input="stream please") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert final.output_text == "Mock reply to: stream please" and kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"


def test_the_stream_reaches_the_client_byte_for_byte(gateway: str, mock: str, upstream: Any) -> None:
    # OpenAI's own keepalive and metadata events, an event split across writes, a multi-byte character
    # cut in two: the client reads exactly the upstream's bytes, whatever the gateway's own framing is.
    frames = text_stream("naïve café ✓ 思考", extra=(event("keepalive", 5), event("response.metadata", 5, metadata={"a": 1})))
    data = "".join(frames).encode()
    cut = data.index("✓".encode()) + 1
    writes = [data[:17], data[17:cut], data[cut:]]
    script_streams(mock, "gpt-native", [w.decode("latin-1") for w in writes], encoding="latin1",
                   headers={"content-type": "text/event-stream", "openai-model": "gpt-upstream-2025"})  # fmt: skip
    answer = raw(gateway, {"model": "gpt-native", "input": "unicode"})
    assert answer.status_code == 200 and answer.content == data
    assert "content-encoding" not in answer.headers and "openai-model" not in answer.headers
    script_streams(mock, "gpt-native", text_stream("packed"), gzip=True)
    answer = raw(gateway, {"model": "gpt-native", "input": "compressed"})
    # the mock sent it gzip-compressed: the client gets it decoded, without the header
    assert answer.content == "".join(text_stream("packed")).encode() and "content-encoding" not in answer.headers


def test_usage_reaches_the_sdk_and_the_access_log(gateway: str, mock: str) -> None:
    script_streams(mock, "gpt-native", text_stream("counted"))
    with client(gateway).responses.stream(model="gpt-native", input="count") as stream:
        final = stream.get_final_response()
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (21, 5)
    assert final.usage.input_tokens_details.cached_tokens == 8 and final.usage.output_tokens_details.reasoning_tokens == 2


def test_parallel_calls_and_a_custom_tool_pass_both_ways(gateway: str, mock: str, upstream: Any) -> None:
    patch = "*** Begin Patch\n*** Add File: a.txt\n+a\n*** End Patch\n"
    calls = [{"type": "function_call", "id": "fc_up1", "call_id": "call_1", "name": "exec_command",
              "arguments": '{"cmd":"ls"}', "status": "completed"},
             {"type": "function_call", "id": "fc_up2", "call_id": "call_2", "name": "exec_command",
              "arguments": '{"cmd":"pwd"}', "status": "completed"},
             {"type": "custom_tool_call", "id": "ctc_up3", "call_id": "call_3", "name": "apply_patch", "input": patch}]  # fmt: skip
    frames = [event("response.created", 0, response=response("in_progress", []))]
    seq = 1
    for index, item in enumerate(calls):
        empty = {**item, "arguments": ""} if item["type"] == "function_call" else {**item, "input": ""}
        frames.append(event("response.output_item.added", seq, output_index=index, item=empty))
        if item["type"] == "function_call":
            frames.append(event("response.function_call_arguments.delta", seq + 1, item_id=item["id"],
                                output_index=index, delta=item["arguments"]))  # fmt: skip
        else:
            frames.append(event("response.custom_tool_call_input.delta", seq + 1, item_id=item["id"],
                                output_index=index, delta=patch))  # fmt: skip
        frames.append(event("response.output_item.done", seq + 2, output_index=index, item=item))
        seq += 3
    frames.append(event("response.completed", seq, response=response("completed", calls, USAGE)))
    script_streams(mock, "gpt-native", frames)
    hosted = {"type": "web_search", "external_web_access": False}
    tools = [EXEC, APPLY_PATCH, hosted]
    with client(gateway).responses.stream(model="gpt-native", input="go", tools=tools) as stream:  # type: ignore[arg-type]
        final = stream.get_final_response()
    assert [item.type for item in final.output] == ["function_call", "function_call", "custom_tool_call"]
    assert final.output[2].input == patch  # type: ignore[union-attr]
    assert recorded(mock)[-1]["body"]["tools"] == tools  # hosted tools reach an upstream that has them
    history = [{"role": "user", "content": "go"}, *[item.model_dump(exclude_none=True) for item in final.output],
               {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
               {"type": "function_call_output", "call_id": "call_2", "output": "/tmp"},
               {"type": "custom_tool_call_output", "call_id": "call_3", "output": "Done!"},
               {"type": "tool_search_call", "id": "tsc_1", "arguments": {}}]  # fmt: skip
    client(gateway).responses.create(model="gpt-native", input=history, tools=tools)  # type: ignore[arg-type]
    assert recorded(mock)[-1]["body"]["input"] == json.loads(json.dumps(history))  # forwarded as sent


def test_reasoning_the_gateway_sealed_never_reaches_a_native_upstream(gateway: str, mock: str, upstream: Any) -> None:
    # A turn answered through the Chat path (a DeepSeek-style reasoning upstream) ...
    script_streams(mock, "chat-mock", sse(chunk({"role": "assistant", "reasoning_content": "think"}),
                                          chunk({"content": "42"}), chunk({}, "stop")))  # fmt: skip
    with client(gateway).responses.stream(model="chat-mock", input="the answer?", store=False) as stream:
        first = stream.get_final_response()
    items = [item.model_dump(exclude_none=True) for item in first.output]
    assert [i["type"] for i in items] == ["reasoning", "message"]
    openai_reasoning = {"type": "reasoning", "id": "rs_openai1", "summary": [], "encrypted_content": "gAAAAB-openai"}
    # ... continued on the native upstream: its reasoning and gateway-made ids stay behind, OpenAI's go on
    history = [{"role": "user", "content": "the answer?"}, *items, openai_reasoning, {"role": "user", "content": "why?"}]
    client(gateway).responses.create(model="gpt-native", input=history, store=False)
    sent = recorded(mock)[-1]["body"]["input"]
    assert [i.get("type", "message") for i in sent] == ["message", "message", "reasoning", "message"]
    assert sent[1]["content"] == items[1]["content"] and "id" not in sent[1]  # the gateway's msg_jx... id
    assert sent[2] == openai_reasoning


def test_a_rate_limit_keeps_its_status_and_an_outage_fails_over_to_the_chat_path(gateway: str, upstream: Any) -> None:
    with pytest.raises(openai.RateLimitError) as limited:
        client(gateway).responses.create(model="limited", input="hi")
    assert limited.value.status_code == 429 and limited.value.response.headers.get("retry-after") == "3"
    with client(gateway).responses.stream(model="overloaded", input="hello") as stream:
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text == "Mock reply to: hello"
    bodies = upstream()
    assert [b["model"] for b in bodies[-2:]] == ["overloaded", "chat-mock"] and "messages" in bodies[-1]


def test_an_upstream_that_dies_mid_stream_ends_in_response_failed(gateway: str, mock: str) -> None:
    frames = text_stream("never finished", pieces=3)[:6]
    script_streams(mock, "gpt-native", frames, close_early=True)
    answer = raw(gateway, {"model": "gpt-native", "input": "tell me"})
    events = events_of(answer.text)
    assert answer.text.startswith("".join(frames[:-1]))  # the upstream's events as sent
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))  # ours continue its numbering
    failed = events[-1]["response"]
    assert failed["id"] == "resp_upstream1" and failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    script_streams(mock, "gpt-native", frames, close_early=True)
    with pytest.raises(openai.APIError):
        with client(gateway).responses.stream(model="gpt-native", input="again") as stream:
            stream.get_final_response()
    script_streams(mock, "gpt-native", [*frames[:3], "data: {not json\n\n"])
    events = events_of(raw(gateway, {"model": "gpt-native", "input": "garbage"}).text.replace("data: {not json\n\n", ""))
    assert events[-1]["type"] == "response.failed" and "malformed" in events[-2]["message"]


def test_context_overflow_is_a_400_with_its_code(gateway: str, mock: str) -> None:
    error = {"error": {"message": "Your input exceeds the context window of this model.", "type": "invalid_request_error",
                       "param": "input", "code": "context_length_exceeded"}}  # fmt: skip
    httpx.post(f"{mock}/_mock/script", json={"responses": [{"match_model": "gpt-native", "status": 400,
               "headers": {"content-type": "application/json"}, "chunks": [json.dumps(error)]}]}).raise_for_status()  # fmt: skip
    with pytest.raises(openai.BadRequestError) as overflow:
        client(gateway).responses.create(model="gpt-native", input="a very long prompt")
    assert overflow.value.code == "context_length_exceeded"


def test_keepalive_data_events_during_upstream_silence(gateway: str, mock: str) -> None:
    frames = text_stream("slow answer")
    script_streams(mock, "gpt-native", frames, gap_ms=700)
    events = events_of(raw(gateway, {"model": "gpt-native", "input": "take your time"}).text)
    own = [e for e in events if e["type"] != "keepalive"]
    assert own == events_of("".join(frames))  # the upstream's events untouched, in order
    keepalives = [i for i, e in enumerate(events) if e["type"] == "keepalive"]
    assert len(keepalives) >= 4 and events[-1]["type"] == "response.completed"
    for i in keepalives:  # each repeats the number before it: the upstream's numbering stays as sent
        assert events[i]["sequence_number"] == events[i - 1]["sequence_number"]


def test_stored_native_answers_continue_on_either_path(gateway: str, mock: str, upstream: Any) -> None:
    sdk = client(gateway)
    first = sdk.responses.create(model="gpt-native", input="My name is Ada.")
    second = sdk.responses.create(model="gpt-native", input="What is my name?", previous_response_id=first.id)
    body = recorded(mock)[-1]["body"]
    assert "previous_response_id" not in body and [i.get("role") for i in body["input"]] == ["user", "assistant", "user"]
    assert sdk.responses.retrieve(second.id).output_text == second.output_text
    sdk.responses.create(model="chat-mock", input="Again?", previous_response_id=second.id)
    assert [m["role"] for m in upstream()[-1]["messages"]] == ["user", "assistant", "user", "assistant", "user"]


def test_bad_input_is_refused_before_any_upstream_call(gateway: str, mock: str, upstream: Any) -> None:
    answer = httpx.post(f"{gateway}/v1/responses", json={"model": "gpt-native", "input": [{"type": "message", "role": 5}]},
                        headers={"authorization": f"Bearer {KEY}"})  # fmt: skip
    assert answer.status_code == 400 and answer.json()["error"]["message"].startswith("input[0].role")
    assert upstream() == []
