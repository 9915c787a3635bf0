"""Non-streaming response translation (protocol-conformance §1.4, §5.3, §5.5, §5.6, §5.9)."""

from __future__ import annotations

import re
from typing import Any

import anthropic
import httpx2
import openai
import orjson
import pytest

from models.translate.errors import UpstreamResponseError
from models.translate.ids import to_client_id
from models.translate.response import anthropic_to_openai, openai_to_anthropic
from models.translate.thinking import sign


def completion(message: dict[str, Any], finish: str | None = "stop", usage: dict[str, Any] | None = None,
               **choice_extra: Any) -> dict[str, Any]:  # fmt: skip
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "deepseek-v4-pro",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish, **choice_extra}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


USAGE = {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050}
ZERO_CACHE = {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


# -- OpenAI -> Anthropic ---------------------------------------------------------------------


def test_plain_text() -> None:
    out = openai_to_anthropic(completion({"content": "Hello"}, usage=USAGE), client_model="claude-sonnet-4-5")
    assert re.fullmatch(r"msg_[0-9a-f]{24}", out.pop("id"))
    assert out == {
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hello"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1000, "output_tokens": 50, **ZERO_CACHE},
    }


def test_ids_are_unique_per_response() -> None:
    ids = {openai_to_anthropic(completion({"content": "x"}), client_model="m")["id"] for _ in range(50)}
    assert len(ids) == 50


def test_reasoning_text_and_tools_in_order() -> None:
    message = {
        "reasoning_content": "Need both files.",
        "content": "Reading both.",
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "Read", "arguments": '{"file_path": "/a.py"}'}},
            {"id": "functions.Read:1", "type": "function", "function": {"name": "Read", "arguments": '{"file_path": "/b.py"}'}},
        ],
    }
    out = openai_to_anthropic(completion(message, "tool_calls", USAGE), client_model="m")
    assert out["content"] == [
        {"type": "thinking", "thinking": "Need both files.", "signature": sign("Need both files.")},
        {"type": "text", "text": "Reading both."},
        {"type": "tool_use", "id": "call_a", "name": "Read", "input": {"file_path": "/a.py"}},
        {"type": "tool_use", "id": to_client_id("functions.Read:1"), "name": "Read", "input": {"file_path": "/b.py"}},
    ]
    assert out["stop_reason"] == "tool_use"


@pytest.mark.parametrize("finish", ["stop", "length", None, "tool_calls"])
def test_stop_reason_forced_to_tool_use_when_tools_exist(finish: str | None) -> None:
    message = {"content": None, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "Bash", "arguments": "{}"}}]}
    assert openai_to_anthropic(completion(message, finish), client_model="m")["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal"), (None, "end_turn"), ("weird", "end_turn")],
)
def test_finish_reason_mapping(finish: str | None, stop_reason: str) -> None:
    assert openai_to_anthropic(completion({"content": "x"}, finish), client_model="m")["stop_reason"] == stop_reason


def test_tool_calls_finish_without_any_tool_is_not_tool_use() -> None:
    assert openai_to_anthropic(completion({"content": "x"}, "tool_calls"), client_model="m")["stop_reason"] == "end_turn"


def test_empty_and_whitespace_text_never_becomes_a_block() -> None:
    message = {"content": "\n\n", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "Bash", "arguments": ""}}]}
    out = openai_to_anthropic(completion(message, "tool_calls"), client_model="m")
    assert out["content"] == [{"type": "tool_use", "id": "c", "name": "Bash", "input": {}}]
    empty = openai_to_anthropic(completion({"content": ""}), client_model="m")
    assert empty["content"] == [] and empty["stop_reason"] == "end_turn"


def test_arguments_given_as_object_and_missing_id() -> None:
    message = {"tool_calls": [{"type": "function", "function": {"name": "Glob", "arguments": {"pattern": "*.py"}}}]}
    block = openai_to_anthropic(completion(message, "tool_calls"), client_model="m")["content"][0]
    assert block["input"] == {"pattern": "*.py"} and re.fullmatch(r"toolu_[0-9a-f]{24}", block["id"])


def test_legacy_function_call() -> None:
    message = {"function_call": {"name": "Bash", "arguments": '{"command": "ls"}'}}
    out = openai_to_anthropic(completion(message, "function_call"), client_model="m")
    assert out["content"][0]["input"] == {"command": "ls"} and out["stop_reason"] == "tool_use"


def test_invalid_arguments_raise_unless_truncated_by_length() -> None:
    message = {"tool_calls": [{"id": "c", "type": "function", "function": {"name": "Write", "arguments": '{"content": "abc'}}]}
    with pytest.raises(UpstreamResponseError) as err:
        openai_to_anthropic(completion(message, "tool_calls"), client_model="m")
    assert err.value.status == 502 and "Write" in err.value.message
    out = openai_to_anthropic(completion({"content": "Writing", **message}, "length"), client_model="m")
    assert out["content"] == [{"type": "text", "text": "Writing"}] and out["stop_reason"] == "max_tokens"


def test_deepseek_insufficient_system_resource_is_overloaded() -> None:
    with pytest.raises(UpstreamResponseError) as err:
        openai_to_anthropic(completion({"content": "partial"}, "insufficient_system_resource"), client_model="m")
    assert err.value.status == 529


def test_vllm_matched_stop_string_is_reported() -> None:
    out = openai_to_anthropic(completion({"content": "x"}, "stop", stop_reason="###"), client_model="m")
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "###")


def test_refusal_text_is_kept() -> None:
    out = openai_to_anthropic(completion({"content": None, "refusal": "I can't help with that."}, "stop"), client_model="m")
    assert out["content"] == [{"type": "text", "text": "I can't help with that."}]


def test_content_as_list_of_parts() -> None:
    out = openai_to_anthropic(completion({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}), client_model="m")
    assert out["content"] == [{"type": "text", "text": "ab"}]


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (  # OpenAI
            {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 800}},
            {"input_tokens": 200, "output_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 800},
        ),
        (  # DeepSeek
            {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_cache_hit_tokens": 600, "prompt_cache_miss_tokens": 400},
            {"input_tokens": 400, "output_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 600},
        ),
        (  # Kimi
            {"prompt_tokens": 1000, "completion_tokens": 10, "cached_tokens": 300},
            {"input_tokens": 700, "output_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 300},
        ),
        (  # cache writes reported by the upstream
            {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 200}},
            {"input_tokens": 700, "output_tokens": 10, "cache_creation_input_tokens": 200, "cache_read_input_tokens": 100},
        ),
        (  # explicit nulls
            {"prompt_tokens": 5, "completion_tokens": None, "prompt_tokens_details": None},
            {"input_tokens": 5, "output_tokens": 0, **ZERO_CACHE},
        ),
    ],
)
def test_usage_mapping(usage: dict[str, Any], expected: dict[str, int]) -> None:
    assert openai_to_anthropic(completion({"content": "x"}, usage=usage), client_model="m")["usage"] == expected


def test_missing_usage_uses_estimate_and_integers() -> None:
    out = openai_to_anthropic(completion({"content": "x"}), client_model="m", input_estimate=321)
    assert out["usage"] == {"input_tokens": 321, "output_tokens": 0, **ZERO_CACHE}
    out = openai_to_anthropic(completion({"content": "x"}), client_model="m")
    assert out["usage"] == {"input_tokens": 0, "output_tokens": 0, **ZERO_CACHE}


def test_kimi_usage_inside_choice() -> None:
    body = completion({"content": "x"})
    body["choices"][0]["usage"] = {"prompt_tokens": 40, "completion_tokens": 2, "cached_tokens": 10}
    assert openai_to_anthropic(body, client_model="m")["usage"]["cache_read_input_tokens"] == 10


def test_no_choices_is_an_empty_but_valid_message() -> None:
    out = openai_to_anthropic({"id": "x", "choices": []}, client_model="m", input_estimate=9)
    assert out["content"] == [] and out["stop_reason"] == "end_turn" and out["usage"]["input_tokens"] == 9


def anthropic_sdk_parse(body: dict[str, Any]) -> anthropic.types.Message:
    transport = httpx2.MockTransport(lambda request: httpx2.Response(200, json=body))
    client = anthropic.Anthropic(api_key="k", base_url="http://gateway.test", http_client=httpx2.Client(transport=transport))
    return client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])


def test_anthropic_sdk_accepts_the_translation() -> None:
    message = {
        "reasoning_content": "hmm",
        "content": "ok",
        "tool_calls": [{"id": "functions.Read:0", "type": "function", "function": {"name": "Read", "arguments": '{"p": 1}'}}],
    }
    parsed = anthropic_sdk_parse(openai_to_anthropic(completion(message, "tool_calls", USAGE), client_model="m"))
    assert [b.type for b in parsed.content] == ["thinking", "text", "tool_use"]
    assert parsed.content[2].input == {"p": 1} and re.fullmatch(r"[A-Za-z0-9_-]+", parsed.content[2].id)
    assert parsed.usage.input_tokens == 1000 and parsed.usage.output_tokens == 50


# -- Anthropic -> OpenAI ---------------------------------------------------------------------


def message(content: list[dict[str, Any]], stop_reason: str = "end_turn", **usage: int) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


def test_anthropic_text_to_openai() -> None:
    out = anthropic_to_openai(message([{"type": "text", "text": "Hi"}]), client_model="gpt-x")
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{24}", out.pop("id")) and isinstance(out.pop("created"), int)
    assert out == {
        "object": "chat.completion",
        "model": "gpt-x",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "prompt_tokens_details": {"cached_tokens": 0}},
    }


def test_anthropic_thinking_text_tools_to_openai() -> None:
    content = [
        {"type": "thinking", "thinking": "Let me look.", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Reading "},
        {"type": "text", "text": "two files."},
        {"type": "tool_use", "id": "toolu_a", "name": "Read", "input": {"file_path": "/a.py"}},
        {"type": "tool_use", "id": "toolu_b", "name": "Read", "input": {}},
    ]
    out = anthropic_to_openai(message(content, "tool_use", cache_read_input_tokens=100, cache_creation_input_tokens=20), client_model="m")
    msg = out["choices"][0]["message"]
    assert msg == {
        "role": "assistant",
        "content": "Reading two files.",
        "reasoning_content": "Let me look.",
        "reasoning_signature": "sig",  # Anthropic's signature of that one thinking block, for the way back
        "tool_calls": [
            {"id": "toolu_a", "type": "function", "function": {"name": "Read", "arguments": '{"file_path":"/a.py"}'}},
            {"id": "toolu_b", "type": "function", "function": {"name": "Read", "arguments": "{}"}},
        ],
    }
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"] == {"prompt_tokens": 130, "completion_tokens": 5, "total_tokens": 135, "prompt_tokens_details": {"cached_tokens": 100}}


def test_tool_only_message_has_null_content() -> None:
    out = anthropic_to_openai(message([{"type": "tool_use", "id": "t", "name": "Bash", "input": {"command": "ls"}}], "tool_use"), client_model="m")
    assert out["choices"][0]["message"]["content"] is None


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"), ("max_tokens", "length"),
     ("model_context_window_exceeded", "length"), ("refusal", "content_filter"), (None, "stop")],
)  # fmt: skip
def test_anthropic_stop_reason_mapping(stop_reason: str | None, finish: str) -> None:
    out = anthropic_to_openai(message([{"type": "text", "text": "x"}], stop_reason), client_model="m")  # type: ignore[arg-type]
    assert out["choices"][0]["finish_reason"] == finish


def test_openai_sdk_accepts_the_translation() -> None:
    body = anthropic_to_openai(message([{"type": "text", "text": "ok"}, {"type": "tool_use", "id": "t1", "name": "Read", "input": {"p": 1}}], "tool_use"), client_model="m")
    transport = httpx2.MockTransport(lambda request: httpx2.Response(200, content=orjson.dumps(body), headers={"content-type": "application/json"}))
    client = openai.OpenAI(api_key="k", base_url="http://gateway.test/v1", http_client=httpx2.Client(transport=transport))
    parsed = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    call = parsed.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "Read" and orjson.loads(call.function.arguments) == {"p": 1}
    assert parsed.usage is not None and parsed.usage.prompt_tokens == 10
