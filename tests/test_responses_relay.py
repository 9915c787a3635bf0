"""The native Responses stream follower (pure) and the request a native upstream receives."""

from __future__ import annotations

from typing import Any

import orjson

from models.providers import ApiStyle
from models.sse import SSEDecoder
from models.translate.responses_relay import ResponsesRelay
from models.translate.responses_request import responses_passthrough
from models.translate.responses_response import is_gateway_id, new_message_item_id
from models.translate.thinking import seal_reasoning
from models.usage import Usage, delta_chars, usage_of


def decode(frames: list[bytes] | bytes) -> list[dict[str, Any]]:
    data = b"".join(frames) if isinstance(frames, list) else frames
    return [orjson.loads(e.data) for e in SSEDecoder().feed(data)]


def created(seq: int = 0) -> dict[str, Any]:
    return {"type": "response.created", "sequence_number": seq,
            "response": {"id": "resp_up", "object": "response", "created_at": 5, "model": "gpt-x", "status": "in_progress",
                         "output": [], "usage": None}}  # fmt: skip


def test_failure_continues_the_upstreams_numbering_and_lists_finished_items() -> None:
    relay = ResponsesRelay("alias")
    item = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": []}
    for payload in (created(), {"type": "response.output_item.done", "sequence_number": 7, "output_index": 0, "item": item},
                    {"type": "response.output_text.delta", "sequence_number": 9, "delta": "x"}):
        relay.see(payload)
    events = decode(relay.fail("server_error", "upstream stream ended before the response was complete"))
    assert [e["type"] for e in events] == ["error", "response.failed"]
    assert [e["sequence_number"] for e in events] == [10, 11]
    failed = events[1]["response"]
    assert failed["id"] == "resp_up" and failed["model"] == "gpt-x" and failed["status"] == "failed"
    assert failed["output"] == [item] and failed["error"]["code"] == "server_error"
    assert events[0]["error"]["type"] == "server_error" and relay.done
    assert relay.fail("server_error", "again") == [] and relay.keepalive() == b""  # once, and nothing after


def test_failure_before_the_upstream_announced_its_response_opens_one() -> None:
    events = decode(ResponsesRelay("alias").fail("rate_limit_exceeded", "slow down"))
    assert [e["type"] for e in events] == ["response.created", "error", "response.failed"]
    assert [e["sequence_number"] for e in events] == [0, 1, 2]
    assert events[0]["response"]["model"] == "alias" and events[2]["response"]["id"] == events[0]["response"]["id"]
    assert events[1]["error"]["type"] == "rate_limit_error"


def test_keepalive_repeats_the_last_number_and_terminal_events_end_the_stream() -> None:
    relay = ResponsesRelay("alias")
    relay.see(created(0))
    relay.see({"type": "response.in_progress", "sequence_number": 1, "response": created()["response"]})
    assert decode(relay.keepalive()) == [{"type": "keepalive", "sequence_number": 1}]
    final = {**created()["response"], "status": "completed", "output": []}
    relay.see({"type": "response.completed", "sequence_number": 2, "response": final})
    assert relay.done and relay.final == final and relay.fail("x", "y") == []
    failed = ResponsesRelay("alias")
    failed.see({"type": "response.failed", "sequence_number": 0, "response": {**final, "status": "failed"}})
    assert failed.done and failed.final is None  # a failed response is not kept


def test_passthrough_keeps_the_body_but_what_only_the_gateway_reads() -> None:
    minted = new_message_item_id()
    assert is_gateway_id(minted) and not is_gateway_id("msg_67ccd3acc8d48190a77525dc6de64b41") and not is_gateway_id(None)
    body = {"model": "alias", "store": False, "include": ["reasoning.encrypted_content"], "api_base": "http://evil",
            "tools": [{"type": "web_search"}], "input": [
                {"role": "user", "content": "hi"},
                {"type": "reasoning", "id": "rs_jx" + "0" * 30, "summary": [], "encrypted_content": seal_reasoning("t")},
                {"type": "reasoning", "id": "rs_openai", "summary": [], "encrypted_content": "gAAAA-openai"},
                {"type": "reasoning", "summary": [], "encrypted_content": seal_reasoning("no id")},
                {"type": "message", "id": minted, "role": "assistant", "content": [{"type": "output_text", "text": "a"}]},
                {"type": "function_call", "id": "fc_openai1", "call_id": "c", "name": "f", "arguments": "{}"}]}  # fmt: skip
    out = responses_passthrough(body, "gpt-5", frozenset({"api_base"}))
    assert out["model"] == "gpt-5" and "api_base" not in out and out["tools"] == body["tools"]
    assert out["store"] is False and out["include"] == body["include"]
    assert out["input"] == [body["input"][0], body["input"][2],
                            {k: v for k, v in body["input"][4].items() if k != "id"}, body["input"][5]]  # fmt: skip
    assert body["input"][4]["id"] == minted  # the client's body is not mutated
    assert responses_passthrough({"input": "hi"}, "m") == {"input": "hi", "model": "m"}


def test_usage_and_output_characters_of_responses_events() -> None:
    completed = {"type": "response.completed", "response": {"usage": {"input_tokens": 12, "output_tokens": 3}}}
    assert usage_of(ApiStyle.RESPONSES, completed) == Usage(12, 3)
    assert usage_of(ApiStyle.RESPONSES, {"usage": {"input_tokens": 1, "output_tokens": 2}}) == Usage(1, 2)  # a whole body
    assert usage_of(ApiStyle.RESPONSES, created()) == Usage()
    cached = {"usage": {"input_tokens": 10, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 6}}}
    assert usage_of(ApiStyle.RESPONSES, cached) == Usage(10, 2, 6, None)
    assert delta_chars(ApiStyle.RESPONSES, {"type": "response.output_text.delta", "delta": "héllo"}) == 5
    assert delta_chars(ApiStyle.RESPONSES, {"type": "response.function_call_arguments.delta", "delta": "{}"}) == 2
    assert delta_chars(ApiStyle.RESPONSES, {"type": "response.output_text.done", "text": "héllo"}) == 0
