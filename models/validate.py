"""Shape checks for client requests, shared by both wire protocols.

Each check returns problems as `path: message` strings so a client learns exactly what is wrong.
Only what the gateway relies on is checked; everything else is left for the upstream to judge.
"""

from __future__ import annotations

from typing import Any

from models.providers import ApiStyle

_ROLES = {
    ApiStyle.ANTHROPIC: ("user", "assistant", "system"),
    ApiStyle.OPENAI: ("system", "developer", "user", "assistant", "tool", "function"),
}


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_request(api: ApiStyle, body: Any, *, count_tokens: bool = False) -> list[str]:
    """Problems with a Messages / Chat Completions request body (empty list: acceptable)."""
    if not isinstance(body, dict):
        return [f"request body: expected a JSON object, got {_kind(body)}"]
    problems: list[str] = []
    model = body.get("model")
    if model is None:
        problems.append("model: required")
    elif not isinstance(model, str) or not model.strip():
        problems.append(f"model: expected a non-empty string, got {_kind(model)}")
    problems += _check_messages(api, body.get("messages"))
    if "stream" in body and not isinstance(body["stream"], bool) and body["stream"] is not None:
        problems.append(f"stream: expected a boolean, got {_kind(body['stream'])}")
    if api is ApiStyle.ANTHROPIC:
        if not count_tokens:
            if "max_tokens" not in body:
                problems.append("max_tokens: required")
            elif not _is_int(body["max_tokens"]) or body["max_tokens"] < 1:
                problems.append(f"max_tokens: expected a positive integer, got {body['max_tokens']!r}")
        system = body.get("system")
        if system is not None and not isinstance(system, (str, list)):
            problems.append(f"system: expected a string or an array of text blocks, got {_kind(system)}")
    else:
        for name in ("max_tokens", "max_completion_tokens"):
            if body.get(name) is not None and (not _is_int(body[name]) or body[name] < 1):
                problems.append(f"{name}: expected a positive integer, got {body[name]!r}")
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            problems.append(f"stream_options: expected an object, got {_kind(options)}")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        problems.append(f"tools: expected an array, got {_kind(tools)}")
    return problems


def _check_messages(api: ApiStyle, messages: Any) -> list[str]:
    if messages is None:
        return ["messages: required"]
    if not isinstance(messages, list):
        return [f"messages: expected an array, got {_kind(messages)}"]
    if not messages:
        return ["messages: must contain at least one message"]
    roles = _ROLES[api]
    problems: list[str] = []
    for i, message in enumerate(messages):
        path = f"messages[{i}]"
        if not isinstance(message, dict):
            problems.append(f"{path}: expected an object, got {_kind(message)}")
            continue
        role = message.get("role")
        if role not in roles:
            problems.append(f"{path}.role: expected one of {', '.join(roles)}, got {role!r}")
        content = message.get("content")
        if isinstance(content, list):
            for j, block in enumerate(content):
                if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                    problems.append(f"{path}.content[{j}]: expected an object with a string 'type'")
        elif isinstance(content, str):
            pass
        elif content is None and api is ApiStyle.OPENAI and role == "assistant":
            pass  # an assistant turn that only calls tools
        else:
            problems.append(f"{path}.content: expected a string or an array of content blocks, got {_kind(content)}")
        if len(problems) >= 5:
            break
    return problems
