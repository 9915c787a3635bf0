"""Raw upstream SSE frames for scripted mock answers: Chat Completions chunks and Anthropic Messages
events, as lists of frames the mock sends one by one (`tests.procs.script_streams`)."""

from __future__ import annotations

import json
from typing import Any


def chat(*deltas: dict[str, Any], finish: str) -> list[str]:
    chunks = [{"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-mock",
               "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]  # fmt: skip
    chunks.append({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-mock",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
                   "usage": {"prompt_tokens": 120, "completion_tokens": 6, "total_tokens": 126}})  # fmt: skip
    return [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]


def chat_call(name: str, arguments: dict[str, Any]) -> list[str]:
    return chat({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_rig_1", "type": "function",
                                                      "function": {"name": name, "arguments": ""}}]},
                {"tool_calls": [{"index": 0, "function": {"arguments": json.dumps(arguments)}}]},
                finish="tool_calls")  # fmt: skip


def messages(*blocks: tuple[dict[str, Any], list[dict[str, Any]]], stop: str) -> list[str]:
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-mock", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 120, "output_tokens": 0}}})]  # fmt: skip
    for i, (start, deltas) in enumerate(blocks):
        events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}) for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                     "usage": {"output_tokens": 6}}))  # fmt: skip
    events.append(("message_stop", {"type": "message_stop"}))
    return [f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n" for name, data in events]
