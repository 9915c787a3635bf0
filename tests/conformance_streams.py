"""Upstream wire data for the socket-level conformance tests (tests/test_conformance.py).

Builders for OpenAI Chat Completions chunks and Anthropic Messages events as the raw SSE text a
provider writes, plus recorded-style streams shaped like DeepSeek, Kimi Code and Anthropic
answers (field order, `null`s, vendor fields and usage placement as those providers send them).
Every builder returns text; the mock upstream writes each string of a script as one body write.
"""

from __future__ import annotations

import json
from typing import Any

DONE = "data: [DONE]\n\n"
KEEP_ALIVE = ": keep-alive\n\n"
CREATED = 1767225600


def _json(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


# --- OpenAI Chat Completions ------------------------------------------------------------------


def oa_chunk(delta: dict[str, Any] | None = None, finish: str | None = None, *, model: str = "up",
             usage: dict[str, Any] | None = None, choice_usage: dict[str, Any] | None = None,
             extra: dict[str, Any] | None = None) -> str:  # fmt: skip
    """One `chat.completion.chunk` with a single choice (Kimi puts usage inside it: `choice_usage`)."""
    choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
    if choice_usage is not None:
        choice["usage"] = choice_usage
    chunk: dict[str, Any] = {"id": "chatcmpl-up-1", "object": "chat.completion.chunk", "created": CREATED,
                             "model": model, **(extra or {}), "choices": [choice]}  # fmt: skip
    if usage is not None:
        chunk["usage"] = usage
    return f"data: {_json(chunk)}\n\n"


def oa_usage_chunk(usage: dict[str, Any], model: str = "up") -> str:
    """The trailing `include_usage` chunk: `choices: []`."""
    chunk = {"id": "chatcmpl-up-1", "object": "chat.completion.chunk", "created": CREATED, "model": model,
             "choices": [], "usage": usage}  # fmt: skip
    return f"data: {_json(chunk)}\n\n"


def usage(prompt: int, completion: int, **extra: Any) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion, **extra}


def call(index: int | None = None, id: str | None = None, name: str | None = None,
         arguments: str | None = None) -> dict[str, Any]:  # fmt: skip
    """One `delta.tool_calls[]` fragment; fields left out are absent, as in real streams."""
    fragment: dict[str, Any] = {}
    if index is not None:
        fragment["index"] = index
    if id is not None:
        fragment.update(id=id, type="function")
    function = {k: v for k, v in (("name", name), ("arguments", arguments)) if v is not None}
    if function:
        fragment["function"] = function
    return fragment


def calls(*fragments: dict[str, Any]) -> dict[str, Any]:
    return {"tool_calls": list(fragments)}


def text(content: str) -> dict[str, Any]:
    return {"content": content}


ROLE = {"role": "assistant", "content": ""}


def oa_text_stream(*pieces: str, finish: str = "stop", model: str = "up",
                   final_usage: dict[str, Any] | None = None) -> list[str]:  # fmt: skip
    """Role chunk, one chunk per piece, finish chunk, usage chunk, [DONE]."""
    return [oa_chunk(ROLE, model=model), *(oa_chunk(text(p), model=model) for p in pieces),
            oa_chunk({}, finish, model=model), oa_usage_chunk(final_usage or usage(11, 3), model), DONE]  # fmt: skip


def oa_completion(message: dict[str, Any], finish: str, usage_: dict[str, Any] | None, model: str = "up") -> str:
    body: dict[str, Any] = {"id": "chatcmpl-up-2", "object": "chat.completion", "created": CREATED, "model": model,
                            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}]}  # fmt: skip
    if usage_ is not None:
        body["usage"] = usage_
    return _json(body)


def oa_error(message: str, type_: str | None, code: str | None = None) -> str:
    return _json({"error": {"message": message, "type": type_, "param": None, "code": code}})


# --- Anthropic Messages -----------------------------------------------------------------------
# Builders return event payloads (dicts); `an_sse` turns them into one body write per event.
# The same payloads describe what a gateway must emit to an Anthropic client.


def an_sse(payloads: list[dict[str, Any]]) -> list[str]:
    return [f"event: {p['type']}\ndata: {_json(p)}\n\n" for p in payloads]


def an_start(model: str = "claude-up", input_tokens: int = 21, **usage_extra: int) -> dict[str, Any]:
    message = {"id": "msg_01UpstreamAbc", "type": "message", "role": "assistant", "model": model, "content": [],
               "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage_extra}}  # fmt: skip
    return {"type": "message_start", "message": message}


def an_block(index: int, block: dict[str, Any], deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "content_block_start", "index": index, "content_block": block},
            *({"type": "content_block_delta", "index": index, "delta": d} for d in deltas),
            {"type": "content_block_stop", "index": index}]  # fmt: skip


def an_text(index: int, *pieces: str) -> list[dict[str, Any]]:
    return an_block(index, {"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in pieces])


def an_thinking(index: int, signature: str, *pieces: str) -> list[dict[str, Any]]:
    deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces]
    block = {"type": "thinking", "thinking": "", "signature": ""}
    return an_block(index, block, [*deltas, {"type": "signature_delta", "signature": signature}])


def an_tool(index: int, id: str, name: str, *json_pieces: str) -> list[dict[str, Any]]:
    block = {"type": "tool_use", "id": id, "name": name, "input": {}}
    return an_block(index, block, [{"type": "input_json_delta", "partial_json": p} for p in json_pieces])


def an_end(stop_reason: str, usage_: dict[str, int]) -> list[dict[str, Any]]:
    delta = {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": usage_}
    return [delta, {"type": "message_stop"}]


def an_text_stream(*pieces: str, model: str = "claude-up") -> list[str]:
    return an_sse([an_start(model), *an_text(0, *pieces), *an_end("end_turn", {"output_tokens": 5})])


def an_error_body(kind: str, message: str) -> str:
    return _json({"type": "error", "error": {"type": kind, "message": message}})


# --- recorded-style streams -------------------------------------------------------------------

# DeepSeek v4 in thinking mode: reasoning deltas carry `content: null`, content deltas
# `reasoning_content: null`; a `system_fingerprint` on every chunk; the usage-only chunk after the
# finish chunk counts cache hits as `prompt_cache_hit_tokens` and in `prompt_tokens_details`.
_DS = {"system_fingerprint": "fp_8802369eaa_prod0623"}
DEEPSEEK_USAGE = usage(1200, 90, prompt_cache_hit_tokens=1024, prompt_cache_miss_tokens=176,
                       prompt_tokens_details={"cached_tokens": 1024},
                       completion_tokens_details={"reasoning_tokens": 40})  # fmt: skip


def deepseek_reasoning_text_tool(model: str) -> list[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return oa_chunk(delta, finish, model=model, extra=_DS)

    return [
        chunk({"role": "assistant", "content": None, "reasoning_content": ""}),
        chunk({"content": None, "reasoning_content": "The user wants"}),
        chunk({"content": None, "reasoning_content": " a.py."}),
        chunk({"content": "Reading", "reasoning_content": None}),
        chunk({"content": " it.", "reasoning_content": None}),
        chunk(calls(call(0, "call_00_Xa9", "Read", ""))),
        chunk(calls(call(0, arguments='{"file_path":'))),
        chunk(calls(call(0, arguments=' "/a.py"}'))),
        chunk({"content": "", "reasoning_content": None}, "tool_calls"),
        oa_usage_chunk(DEEPSEEK_USAGE, model),
        DONE,
    ]


# Kimi (Moonshot / Kimi Code): tool-call ids `functions.<name>:<n>`, usage inside `choices[0]`
# of the finish chunk (with `cached_tokens` at the top of usage), no usage-only chunk.
KIMI_USAGE = usage(3000, 60, cached_tokens=2048)


def kimi_thinking_tool(model: str) -> list[str]:
    return [
        oa_chunk({"role": "assistant", "content": ""}, model=model),
        oa_chunk({"reasoning_content": "Need the file."}, model=model),
        oa_chunk(calls(call(0, "functions.Read:0", "Read", "")), model=model),
        oa_chunk(calls(call(0, arguments='{"file_path":"/k.py"}')), model=model),
        oa_chunk({}, "tool_calls", model=model, choice_usage=KIMI_USAGE),
        DONE,
    ]
