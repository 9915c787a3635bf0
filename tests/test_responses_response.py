"""Non-streaming Chat Completions -> Responses golden tests (responses-reference §1.4, §2.3).

Every translated object is also validated by the OpenAI SDK's own `Response` model, the type a
strict client parses the body into.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from openai.types.responses import Response

from models.translate.errors import UpstreamResponseError
from models.translate.responses_response import (
    chat_to_responses,
    custom_input,
    new_custom_call_item_id,
    new_function_call_item_id,
    new_message_item_id,
    new_reasoning_item_id,
    new_response_id,
    response_skeleton,
    responses_usage,
)
from models.translate.responses_tools import ToolSpec, ToolTable
from models.translate.thinking import open_reasoning, seal_reasoning

RESPONSE_ID = "resp_test"
CREATED = 1_760_000_000
MODEL = "kimi"  # the name the client asked for, not the upstream's
REQUEST: dict[str, Any] = {"model": MODEL, "input": "hi"}
USAGE = {"prompt_tokens": 328, "completion_tokens": 52, "total_tokens": 380,
         "prompt_tokens_details": {"cached_tokens": 300}}  # fmt: skip
RESPONSES_USAGE = {
    "input_tokens": 328, "input_tokens_details": {"cached_tokens": 300, "cache_write_tokens": 0},
    "output_tokens": 52, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 380,
}  # fmt: skip


def chat(message: dict[str, Any], finish: str | None = "stop", usage: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": "kimi-k2-upstream",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
    }  # fmt: skip
    if usage is not None:
        body["usage"] = usage
    return body


def call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def translate(
    body: dict[str, Any], request: dict[str, Any] = REQUEST, tools: ToolTable | None = None
) -> dict[str, Any]:
    """Translate and check what every answer must satisfy; return the object with ids normalised."""
    resp = chat_to_responses(body, request, tools or ToolTable(), RESPONSE_ID, CREATED, MODEL)
    Response.model_validate(resp)  # a strict client can parse it
    assert resp["id"] == RESPONSE_ID and resp["created_at"] == CREATED and resp["model"] == MODEL
    assert resp["object"] == "response"
    if resp["status"] == "completed":
        assert isinstance(resp["completed_at"], int) and resp["completed_at"] >= CREATED
    else:
        assert resp["completed_at"] is None
    return normalise(resp)


_PREFIXES = {"message": "msg_", "reasoning": "rs_", "function_call": "fc_", "custom_tool_call": "ctc_"}


def normalise(resp: dict[str, Any]) -> dict[str, Any]:
    """Random item ids -> `<type>`, after checking their prefix; completed_at -> 0."""
    ids = [item["id"] for item in resp["output"]]
    assert len(set(ids)) == len(ids)
    output = []
    for item in resp["output"]:
        assert re.fullmatch(_PREFIXES[item["type"]] + "jx[0-9a-f]{30}", item["id"])
        output.append({**item, "id": f"<{item['type']}>"})
    return {**resp, "output": output, "completed_at": 0 if resp["completed_at"] is not None else None}


def msg(text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": "<message>", "type": "message", "role": "assistant", "status": status,
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}  # fmt: skip


def fn(call_id: str, name: str, arguments: str, status: str = "completed", **extra: Any) -> dict[str, Any]:
    return {"id": "<function_call>", "type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, "status": status, **extra}  # fmt: skip


# -- golden objects ---------------------------------------------------------------------------


def test_text_answer_is_the_full_response_object() -> None:
    resp = translate(chat({"content": "Hello"}, usage=USAGE))
    assert resp == {
        "id": RESPONSE_ID, "object": "response", "created_at": CREATED, "status": "completed",
        "background": False, "completed_at": 0, "error": None, "incomplete_details": None,
        "instructions": None, "max_output_tokens": None, "max_tool_calls": None, "model": MODEL,
        "output": [msg("Hello")], "parallel_tool_calls": True, "previous_response_id": None,
        "prompt_cache_key": None, "reasoning": {"effort": None, "summary": None}, "safety_identifier": None,
        "service_tier": "default", "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}},
        "tool_choice": "auto", "tools": [], "top_logprobs": 0, "top_p": 1.0, "presence_penalty": 0.0,
        "frequency_penalty": 0.0, "truncation": "disabled", "usage": RESPONSES_USAGE, "user": None, "metadata": {},
    }  # fmt: skip
    assert Response.model_validate(resp).output_text == "Hello"


def test_reasoning_comes_first_with_sealed_text() -> None:
    resp = translate(chat({"reasoning_content": "The user greets.", "content": "Hello"}))
    reasoning = "The user greets."
    assert resp["output"] == [
        {"id": "<reasoning>", "type": "reasoning", "summary": [{"type": "summary_text", "text": reasoning}],
         "encrypted_content": seal_reasoning(reasoning)},
        msg("Hello"),
    ]  # fmt: skip
    assert open_reasoning(resp["output"][0]["encrypted_content"]) == (reasoning, None)


def test_vllm_reasoning_field_is_read_too() -> None:
    resp = translate(chat({"reasoning": "thinking", "content": "ok"}))
    assert [item["type"] for item in resp["output"]] == ["reasoning", "message"]


def test_whitespace_only_reasoning_and_text_make_no_items() -> None:
    resp = translate(chat({"reasoning_content": "\n", "content": "\n\n", "tool_calls": [call("c1", "ping", "{}")]},
                          finish="tool_calls"))  # fmt: skip
    assert resp["output"] == [fn("c1", "ping", "{}")]


def test_parallel_tool_calls_after_text() -> None:
    body = chat({"content": "Let me check.", "tool_calls": [
        call("call_1", "get_weather", '{"city": "Paris"}'),
        call("call_2", "get_weather", '{"city": "Rome"}'),
    ]}, finish="tool_calls", usage=USAGE)  # fmt: skip
    resp = translate(body)
    assert resp["status"] == "completed"
    assert resp["output"] == [
        msg("Let me check."),
        fn("call_1", "get_weather", '{"city": "Paris"}'),
        fn("call_2", "get_weather", '{"city": "Rome"}'),
    ]


def test_tool_call_ids_are_kept_verbatim_and_missing_ones_minted() -> None:
    # Kimi ids such as `functions.Read:0` must come back unchanged on the next turn.
    body = chat({"content": None, "tool_calls": [
        call("functions.Read:0", "Read", "{}"),
        {"type": "function", "function": {"name": "Read", "arguments": "{}"}},
    ]}, finish="tool_calls")  # fmt: skip
    first, second = translate(body)["output"]
    assert first["call_id"] == "functions.Read:0"
    assert re.fullmatch(r"call_jx[0-9a-f]{30}", second["call_id"])


def test_object_arguments_become_a_json_string_and_empty_ones_an_empty_object() -> None:
    body = chat({"tool_calls": [call("c1", "f", {"a": 1}), call("c2", "ping", ""), call("c3", "", "{}")]},
                finish="tool_calls")  # fmt: skip
    assert translate(body)["output"] == [fn("c1", "f", '{"a":1}'), fn("c2", "ping", "{}")]  # nameless call dropped


def test_legacy_function_call_is_read_as_one_call() -> None:
    body = chat({"function_call": {"name": "f", "arguments": '{"x": 1}'}}, finish="function_call")
    resp = translate(body)
    assert resp["status"] == "completed"
    assert resp["output"][0]["name"] == "f" and resp["output"][0]["arguments"] == '{"x": 1}'


def custom_table() -> ToolTable:
    table = ToolTable()
    assert table.add(ToolSpec("custom", "apply_patch")) == "apply_patch"
    return table


PATCH = "*** Begin Patch\n*** Add File: a.txt\n+hello \"world\"\n*** End Patch"


def test_custom_tool_call_gets_its_input_unwrapped() -> None:
    body = chat({"tool_calls": [call("call_p", "apply_patch", json.dumps({"input": PATCH}))]}, finish="tool_calls")
    resp = translate(body, tools=custom_table())
    assert resp["output"] == [
        {"id": "<custom_tool_call>", "type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch",
         "input": PATCH},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"input": "raw"}', "raw"),
        ("*** Begin Patch", "*** Begin Patch"),  # the model ignored the wrapper
        ('{"patch": "x"}', '{"patch": "x"}'),  # not the wrapper: passed as it came
        ('{"input": 3}', '{"input": 3}'),
        ('["input"]', '["input"]'),
        ("", ""),
    ],
)
def test_custom_input_unwraps_only_the_input_object(arguments: str, expected: str) -> None:
    assert custom_input(arguments) == expected


def test_custom_tool_with_arguments_that_are_not_the_wrapper_passes_them_raw() -> None:
    body = chat({"tool_calls": [call("call_p", "apply_patch", PATCH)]}, finish="tool_calls")
    assert translate(body, tools=custom_table())["output"][0]["input"] == PATCH


def test_namespace_tool_call_carries_namespace_and_client_name() -> None:
    table = ToolTable()
    upstream = table.add(ToolSpec("function", "read", "mcp__files__"))
    body = chat({"tool_calls": [call("c1", upstream, '{"path": "a"}')]}, finish="tool_calls")
    resp = translate(body, tools=table)
    assert resp["output"] == [fn("c1", "read", '{"path": "a"}', namespace="mcp__files__")]
    assert Response.model_validate(resp).output[0].namespace == "mcp__files__"  # type: ignore[union-attr]


def test_unknown_tool_name_is_a_plain_function_call() -> None:
    resp = translate(chat({"tool_calls": [call("c1", "other", "{}")]}, finish="tool_calls"), tools=custom_table())
    assert resp["output"] == [fn("c1", "other", "{}")]


# -- terminal states --------------------------------------------------------------------------


def test_length_is_incomplete_max_output_tokens_and_the_cut_item_incomplete() -> None:
    resp = translate(chat({"reasoning_content": "r", "content": "Hello wor"}, finish="length", usage=USAGE))
    assert resp["status"] == "incomplete"
    assert resp["incomplete_details"] == {"reason": "max_output_tokens"}
    assert resp["output"][1] == msg("Hello wor", status="incomplete")
    assert resp["usage"] == RESPONSES_USAGE


def test_length_cut_inside_a_tool_call_passes_the_call_on_incomplete() -> None:
    body = chat({"tool_calls": [call("c1", "write", '{"text": "abc')]}, finish="length")
    resp = translate(body)
    assert resp["status"] == "incomplete"
    assert resp["output"] == [fn("c1", "write", '{"text": "abc', status="incomplete")]


def test_content_filter_is_incomplete_content_filter() -> None:
    resp = translate(chat({"content": "I can"}, finish="content_filter"))
    assert resp["status"] == "incomplete" and resp["incomplete_details"] == {"reason": "content_filter"}


@pytest.mark.parametrize("finish", ["stop", "tool_calls", None])
def test_other_finish_reasons_complete(finish: str | None) -> None:
    resp = translate(chat({"content": "x"}, finish=finish))
    assert resp["status"] == "completed" and resp["incomplete_details"] is None


def test_refusal_is_shown_as_text() -> None:
    assert translate(chat({"content": None, "refusal": "I can't help with that."}))["output"] == [
        msg("I can't help with that.")
    ]


def test_invalid_function_arguments_are_an_upstream_error() -> None:
    with pytest.raises(UpstreamResponseError, match="invalid JSON arguments for tool 'f'"):
        chat_to_responses(chat({"tool_calls": [call("c1", "f", "{oops")]}, finish="tool_calls"),
                          REQUEST, ToolTable(), RESPONSE_ID, CREATED, MODEL)  # fmt: skip


def test_overloaded_finish_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamResponseError) as err:
        chat_to_responses(chat({"content": ""}, finish="insufficient_system_resource"),
                          REQUEST, ToolTable(), RESPONSE_ID, CREATED, MODEL)  # fmt: skip
    assert err.value.status == 529


def test_empty_answer_is_a_completed_response_without_items() -> None:
    resp = translate({"choices": []})
    assert resp["output"] == [] and resp["status"] == "completed" and resp["usage"] is None


# -- usage ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "cached"),
    [
        ({"prompt_tokens": 100, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 60}}, 60),  # OpenAI
        ({"prompt_tokens": 100, "completion_tokens": 10, "prompt_cache_hit_tokens": 70,
          "prompt_cache_miss_tokens": 30}, 70),  # DeepSeek
        ({"prompt_tokens": 100, "completion_tokens": 10, "cached_tokens": 80}, 80),  # Kimi
        ({"prompt_tokens": 100, "completion_tokens": 10}, 0),
    ],
)  # fmt: skip
def test_usage_reads_each_providers_cache_hits(usage: dict[str, Any], cached: int) -> None:
    assert responses_usage(usage) == {
        "input_tokens": 100, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": 10, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 110,
    }  # fmt: skip


def test_usage_reasoning_tokens_and_cache_writes() -> None:
    usage = {"prompt_tokens": 50, "completion_tokens": 30, "completion_tokens_details": {"reasoning_tokens": 20},
             "prompt_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 5}}  # fmt: skip
    assert responses_usage(usage) == {
        "input_tokens": 50, "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 5},
        "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 20}, "total_tokens": 80,
    }  # fmt: skip


def test_usage_is_always_integers() -> None:
    usage = responses_usage({"prompt_tokens": "12", "completion_tokens": True, "completion_tokens_details": None})
    assert usage == {
        "input_tokens": 0, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 0, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0,
    }  # fmt: skip
    assert responses_usage(None) is None
    assert responses_usage("x") is None  # type: ignore[arg-type]


def test_kimi_usage_inside_the_choice_is_used() -> None:
    body = chat({"content": "x"})
    body["choices"][0]["usage"] = {"prompt_tokens": 7, "completion_tokens": 3, "cached_tokens": 5}
    usage = translate(body)["usage"]
    assert usage["input_tokens"] == 7 and usage["input_tokens_details"]["cached_tokens"] == 5


# -- skeleton and ids -------------------------------------------------------------------------


CODEX_TOOLS: list[dict[str, Any]] = [
    {"type": "function", "name": "shell_command", "description": "Run a command", "strict": False,
     "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}},
    {"type": "custom", "name": "apply_patch", "description": "Edit files",
     "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
    {"type": "namespace", "name": "mcp__files__", "description": "Files",
     "tools": [{"type": "function", "name": "read", "parameters": {"type": "object", "properties": {}}}]},
]  # fmt: skip


def test_skeleton_echoes_the_request_settings() -> None:
    request = {
        "model": "gpt-5-codex", "input": "x", "instructions": "Be brief.", "tools": CODEX_TOOLS,
        "tool_choice": "required", "parallel_tool_calls": False, "reasoning": {"effort": "high", "summary": "auto"},
        "store": False, "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"},
                                            "strict": True}, "verbosity": "low"},
        "temperature": 0.2, "top_p": 0.9, "max_output_tokens": 1000, "metadata": {"k": "v"},
        "prompt_cache_key": "thread-1", "previous_response_id": "resp_prev", "user": "u1",
    }  # fmt: skip
    skeleton = response_skeleton(request, "resp_1", CREATED, "alias")
    parsed = Response.model_validate(skeleton)
    assert skeleton["status"] == "in_progress" and skeleton["output"] == [] and skeleton["usage"] is None
    assert skeleton["model"] == "alias"
    for key in ("instructions", "tools", "tool_choice", "parallel_tool_calls", "store", "text", "temperature", "top_p",
                "max_output_tokens", "metadata", "prompt_cache_key", "previous_response_id", "user"):  # fmt: skip
        assert skeleton[key] == request[key], key
    assert skeleton["reasoning"] == {"effort": "high", "summary": "auto"}
    assert [t.type for t in parsed.tools] == ["function", "custom", "namespace"]


def test_skeleton_defaults_for_a_minimal_or_odd_request() -> None:
    odd = {"temperature": True, "tools": "x", "reasoning": None, "store": "no"}
    skeleton = response_skeleton(odd, "resp_1", 0, "m")
    Response.model_validate(skeleton)
    assert skeleton["temperature"] == 1.0 and skeleton["tools"] == [] and skeleton["store"] is True
    assert skeleton["reasoning"] == {"effort": None, "summary": None}


def test_ids_have_their_prefixes_and_are_unique() -> None:
    for make, prefix in ((new_response_id, "resp_"), (new_message_item_id, "msg_"), (new_function_call_item_id, "fc_"),
                         (new_custom_call_item_id, "ctc_"), (new_reasoning_item_id, "rs_")):  # fmt: skip
        a, b = make(), make()
        assert a.startswith(prefix) and b.startswith(prefix) and a != b
