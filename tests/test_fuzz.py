"""Hypothesis-generated request bodies against the three APIs of a running gateway: never a 5xx,
never a crash, always an error in the client's own protocol."""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.procs import start_gateway, write_config

KEY = "fuzz-key-0123456789"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
roles = st.sampled_from(["user", "assistant", "system", "tool", "developer", "bot", ""]) | json_values
block = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "tool_use", "tool_result", "thinking", "document", "x"]) | json_values},
    optional={"text": json_values, "id": json_values, "name": json_values, "input": json_values,
              "tool_use_id": json_values, "content": json_values, "source": json_values, "signature": json_values},
)  # fmt: skip
message = st.fixed_dictionaries(
    {"role": roles},
    optional={"content": st.text(max_size=30) | st.lists(block, max_size=3) | json_values,
              "tool_calls": json_values, "tool_call_id": json_values, "name": json_values},
)  # fmt: skip
body = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["fuzz", "fuzz-claude", "unknown-model", ""]) | json_values,
        "messages": st.lists(message, max_size=4) | json_values,
        "max_tokens": st.integers(-5, 10**7) | json_values,
        "stream": st.booleans() | json_values,
        "system": st.text(max_size=20) | st.lists(block, max_size=2) | json_values,
        "tools": st.lists(st.dictionaries(st.sampled_from(["name", "input_schema", "type", "function"]),
                                          json_values, max_size=3), max_size=2) | json_values,
        "tool_choice": json_values,
        "thinking": json_values,
        "stream_options": json_values,
        "metadata": json_values,
        "stop_sequences": json_values,
        "temperature": json_values,
    },
)  # fmt: skip


@pytest.fixture(scope="module")
def gateway(mock: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = write_config(tmp_path_factory.mktemp("fuzz"), f"""
        version: v0.4.0
        llm_providers:
          - model: mock/fuzz
            base_url: {mock}/v1
            default: true
          - model: mock/fuzz-claude
            base_url: {mock}
            provider_interface: anthropic
          - model: mock/fuzz-native
            base_url: {mock}/v1
            provider_interface: responses
        gateway_keys: [{KEY}]
    """)
    proc, base = start_gateway(config, None, "--log-level", "error", "--no-access-log")
    with proc:
        yield base


def check(response: httpx.Response, anthropic: bool) -> None:
    assert response.status_code < 500 or response.status_code in (502, 503, 504, 529), response.text
    if response.status_code < 400:
        return
    payload = response.json()
    if anthropic:
        assert payload["type"] == "error" and isinstance(payload["error"]["message"], str)
    else:
        assert isinstance(payload["error"]["message"], str) and isinstance(payload["error"]["type"], str)
    # Gateway-side failures must never be 500s; 502-529 could only come from the upstream here.
    assert response.status_code != 500


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions", "/v1/messages/count_tokens"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=body)
def test_fuzzed_bodies_get_protocol_errors_never_5xx(gateway: str, path: str, payload: dict[str, Any]) -> None:
    with httpx.Client(base_url=gateway, headers={"x-api-key": KEY}, timeout=10) as client:
        response = client.post(path, content=json.dumps(payload))
        check(response, anthropic="/messages" in path)
        if response.status_code == 200 and payload.get("stream") is True:
            assert response.headers["content-type"].startswith("text/event-stream")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200),
       header=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60))  # what HTTP allows
def test_fuzzed_bytes_and_auth_headers(gateway: str, raw: bytes, header: str) -> None:
    with httpx.Client(base_url=gateway, timeout=10) as client:
        check(client.post("/v1/messages", content=raw, headers={"x-api-key": KEY}), anthropic=True)
        unauthorized = client.post("/v1/chat/completions", content=b"{}",
                                   headers={"authorization": f"Bearer {header}".strip()})  # fmt: skip
        assert unauthorized.status_code == 401 and unauthorized.json()["error"]["type"] == "authentication_error"


part = st.fixed_dictionaries(
    {"type": st.sampled_from(["input_text", "output_text", "input_image", "input_file", "refusal", "x"]) | json_values},
    optional={"text": json_values, "image_url": json_values, "detail": json_values, "file_data": json_values},
)  # fmt: skip
item = st.fixed_dictionaries(
    {},
    optional={"type": st.sampled_from(["message", "function_call", "function_call_output", "custom_tool_call",
                                       "custom_tool_call_output", "reasoning", "web_search_call", "compaction",
                                       "additional_tools", "item_reference", "x"]) | json_values,
              "role": roles, "content": st.text(max_size=30) | st.lists(part, max_size=3) | json_values,
              "id": json_values, "call_id": st.sampled_from(["call_1", "call_2"]) | json_values,
              "name": st.sampled_from(["exec_command", "apply_patch"]) | json_values,
              "arguments": st.sampled_from(['{"cmd": "ls"}', "", "{", "[]"]) | json_values,
              "input": json_values, "output": st.text(max_size=20) | st.lists(part, max_size=2) | json_values,
              "summary": json_values, "encrypted_content": st.sampled_from([None, "junction-rs1.eA.AAAA", "gAAAA"]) | json_values,
              "tools": json_values},
)  # fmt: skip
responses_tool = st.fixed_dictionaries(
    {"type": st.sampled_from(["function", "custom", "namespace", "web_search", "x"]) | json_values},
    optional={"name": st.sampled_from(["exec_command", "apply_patch", "mcp"]) | json_values, "parameters": json_values,
              "description": json_values, "format": json_values, "tools": json_values, "strict": json_values},
)  # fmt: skip
responses_body = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["fuzz", "fuzz-claude", "fuzz-native", "unknown-model", ""]) | json_values,
        "input": st.text(max_size=30) | st.lists(item, max_size=5) | json_values,
        "instructions": st.text(max_size=20) | json_values,
        "tools": st.lists(responses_tool, max_size=3) | json_values,
        "tool_choice": st.sampled_from(["auto", "none", "required"]) | json_values,
        "stream": st.booleans() | json_values,
        "max_output_tokens": st.integers(-5, 10**7) | json_values,
        "reasoning": json_values, "text": json_values, "store": json_values, "include": json_values,
        "previous_response_id": st.none() | st.text(max_size=10) | json_values,
        "parallel_tool_calls": json_values, "temperature": json_values, "prompt_cache_key": json_values,
    },
)  # fmt: skip


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=responses_body)
def test_fuzzed_responses_bodies_get_openai_errors_never_5xx(gateway: str, payload: dict[str, Any]) -> None:
    with httpx.Client(base_url=gateway, headers={"authorization": f"Bearer {KEY}"}, timeout=10) as client:
        response = client.post("/v1/responses", content=json.dumps(payload))
        check(response, anthropic=False)
        if response.status_code == 200 and payload.get("stream") is True:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
            assert events[0]["type"] == "response.created"
            assert events[-1]["type"] in ("response.completed", "response.incomplete", "response.failed")
            assert [e["sequence_number"] for e in events] == list(range(len(events)))
        elif response.status_code == 200:
            assert response.json()["object"] == "response"
