"""Non-streaming responses between Chat Completions and Messages (protocol-conformance §5.3, §5.5,
§5.6, §5.9), plus the small mappings the stream state machines share.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson

from models.translate.errors import UpstreamResponseError
from models.translate.ids import to_client_id
from models.translate.thinking import sign
from models.usage import openai_cache

# OpenAI / DeepSeek / Kimi finish_reason -> Anthropic stop_reason (§5.5). DeepSeek's
# `insufficient_system_resource` is not here: it is an overload error, not a way to stop.
STOP_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# Anthropic stop_reason -> OpenAI finish_reason.
FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

OVERLOADED_FINISH = "insufficient_system_resource"


def new_message_id() -> str:
    # Unique per response: concurrent calls with a shared id confuse clients and logs.
    return "msg_" + secrets.token_hex(12)


def new_tool_id() -> str:
    return "toolu_" + secrets.token_hex(12)


def new_completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def anthropic_usage(usage: object, input_estimate: int | None = None) -> dict[str, int]:
    """Anthropic usage from an OpenAI-style usage object (§5.6); always complete integers.

    OpenAI-style prompt counts include cached tokens, Anthropic's `input_tokens` does not, so the
    cached (and cache-write) part is moved out. A missing or zero prompt count falls back to the
    gateway's estimate: a real prompt is never empty, and 0 blinds Claude Code's context meter.
    """
    u = usage if isinstance(usage, dict) else {}
    read, write = openai_cache(u)
    cache_read, cache_write = read or 0, write or 0
    prompt = _int(u.get("prompt_tokens")) or input_estimate or 0
    return {
        "input_tokens": max(prompt - cache_read - cache_write, 0),
        "output_tokens": _int(u.get("completion_tokens")) or 0,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
    }


def openai_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage from Anthropic usage: prompt = input + cache writes + cache reads (§5.6)."""
    cache_read = _int(usage.get("cache_read_input_tokens")) or 0
    prompt = (
        (_int(usage.get("input_tokens")) or 0)
        + (_int(usage.get("cache_creation_input_tokens")) or 0)
        + cache_read
    )
    completion = _int(usage.get("output_tokens")) or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


def stop_reason_for(finish_reason: str | None, *, has_tool_blocks: bool, truncated_tool: bool = False) -> str:
    """Anthropic stop_reason; `tool_use` whenever tool blocks were emitted (Claude Code runs
    tools only then), except a call cut off mid-arguments, which is reported as `max_tokens`."""
    if truncated_tool:
        return "max_tokens"
    if has_tool_blocks:
        return "tool_use"
    reason = STOP_REASONS.get(finish_reason or "stop", "end_turn")
    # `tool_calls` with every call dropped: claiming tool_use would leave the client waiting.
    return "end_turn" if reason == "tool_use" else reason


def reasoning_of(message: dict[str, Any]) -> str:
    """Reasoning text of a message or delta: `reasoning_content` (DeepSeek, Kimi) or `reasoning`
    (vLLM, OpenRouter)."""
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def text_of(content: object) -> str:
    """Message content as text: a string, or the text of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def arguments_text(arguments: object) -> str:
    """Tool arguments as a JSON string (some servers send an object instead of a string)."""
    if isinstance(arguments, str):
        return arguments
    if arguments is None:
        return ""
    return orjson.dumps(arguments).decode("utf-8")


def parse_arguments(arguments: str) -> dict[str, Any] | None:
    """The tool input object, `{}` for empty arguments, None when not a JSON object."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def tool_calls_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    """`tool_calls`, with a legacy `function_call` read as a single call."""
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        return [c for c in calls if isinstance(c, dict)]
    legacy = message.get("function_call")
    return [{"function": legacy}] if isinstance(legacy, dict) else []


def openai_to_anthropic(
    resp: dict[str, Any], *, client_model: str, input_estimate: int | None = None
) -> dict[str, Any]:
    """An Anthropic Messages response for an OpenAI Chat Completions response (§5.3).

    Raises UpstreamResponseError when the answer cannot be passed on honestly: DeepSeek's
    overload finish, or tool arguments that are not JSON without a `length` cut to explain them.
    """
    choices = resp.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    finish = choice.get("finish_reason")
    if finish == OVERLOADED_FINISH:
        raise UpstreamResponseError("upstream is overloaded (insufficient_system_resource); retry later", 529)

    content: list[dict[str, Any]] = []
    reasoning = reasoning_of(message)
    if reasoning.strip():
        content.append({"type": "thinking", "thinking": reasoning, "signature": sign(reasoning)})
    text = text_of(message.get("content")) or text_of(message.get("refusal"))
    if text.strip():  # Anthropic rejects empty and whitespace-only text blocks on replay
        content.append({"type": "text", "text": text})
    truncated = False
    for call in tool_calls_of(message):
        function = call.get("function") or {}
        name = function.get("name")
        if not name:
            continue  # nothing a client could run
        arguments = parse_arguments(arguments_text(function.get("arguments")))
        if arguments is None:
            if finish != "length":
                raise UpstreamResponseError(f"upstream returned invalid JSON arguments for tool '{name}'")
            truncated = True  # cut off mid-call: drop the unrunnable call, report max_tokens
            continue
        call_id = call.get("id")
        content.append({
            "type": "tool_use",
            "id": to_client_id(call_id) if isinstance(call_id, str) and call_id else new_tool_id(),
            "name": name,
            "input": arguments,
        })  # fmt: skip

    has_tools = any(block["type"] == "tool_use" for block in content)
    stop_reason = stop_reason_for(finish, has_tool_blocks=has_tools, truncated_tool=truncated)
    # vLLM reports the matched stop string as `stop_reason`.
    matched = choice.get("stop_reason")
    stop_sequence = matched if stop_reason == "end_turn" and isinstance(matched, str) and matched else None
    if stop_sequence is not None:
        stop_reason = "stop_sequence"
    return {
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": client_model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        # Kimi can put usage inside the choice.
        "usage": anthropic_usage(resp.get("usage") or choice.get("usage"), input_estimate),
    }


def anthropic_to_openai(resp: dict[str, Any], *, client_model: str) -> dict[str, Any]:
    """An OpenAI Chat Completions response for an Anthropic Messages response (§5.9)."""
    texts: list[str] = []
    thinking: list[str] = []
    signatures: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in resp.get("content") or []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            thinking.append(block.get("thinking") or "")
            if isinstance(block.get("signature"), str) and block["signature"]:
                signatures.append(block["signature"])
        elif kind == "tool_use":
            tool_calls.append({
                "id": block.get("id") or new_tool_id(),
                "type": "function",
                "function": {"name": block.get("name") or "", "arguments": arguments_text(block.get("input") or {})},
            })  # fmt: skip
        # redacted_thinking and server-tool blocks have no Chat Completions form.
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not tool_calls else None}
    if any(thinking):
        message["reasoning_content"] = "".join(thinking)
        if len(thinking) == 1 and len(signatures) == 1:  # a signature signs one block's text
            message["reasoning_signature"] = signatures[0]
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": client_model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason_for(resp.get("stop_reason"), has_tool_calls=bool(tool_calls)),
            "logprobs": None,
        }],  # fmt: skip
        "usage": openai_usage(resp.get("usage") or {}),
    }


def finish_reason_for(stop_reason: object, *, has_tool_calls: bool) -> str:
    reason = FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    if has_tool_calls and reason != "length":
        return "tool_calls"
    return reason
