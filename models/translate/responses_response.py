"""Non-streaming Chat Completions answers -> OpenAI Responses objects (responses-reference §1.4, §2.3),
plus the Response and output-item shapes the Responses stream state machine shares.

The client asked the Responses API; the upstream answered in Chat Completions. One Chat message
becomes up to three kinds of output items, in the order a Responses model produces them: a
`reasoning` item (from `reasoning_content`, with the text sealed into `encrypted_content` so the
next turn can hand it back to the upstream), a `message` item with one `output_text` part, then one
item per tool call. Which client tool a call belongs to is the `ToolTable`'s to say: a plain or
namespaced function becomes a `function_call`, a custom tool a `custom_tool_call` whose `input` is
unwrapped from the `{"input": ...}` object the upstream was asked for.
"""

from __future__ import annotations

import re

import secrets
import time
from typing import Any

from models.translate.errors import UpstreamResponseError
from models.translate.response import (
    OVERLOADED_FINISH,
    anthropic_usage,
    arguments_text,
    parse_arguments,
    reasoning_of,
    text_of,
    tool_calls_of,
)
from models.translate.responses_tools import CUSTOM_INPUT, ToolSpec, ToolTable
from models.translate.thinking import seal_reasoning

# Chat finish_reason -> Responses `incomplete_details.reason`; every other reason (stop,
# tool_calls, none at all) completes the response (§2.3).
INCOMPLETE_REASONS: dict[str, str] = {
    "length": "max_output_tokens",
    "content_filter": "content_filter",
}

# -- ids -------------------------------------------------------------------------------------


# Ids the gateway mints carry this mark after their prefix (`msg_jx...`), so that an item replayed
# from a translated answer can be told from one a native Responses upstream issued: such an upstream
# looks ids up and refuses ones it never made.
GATEWAY_ID_MARK = "jx"


def _token(prefix: str) -> str:
    # Unique per object: clients key history and `previous_response_id` on these.
    return prefix + GATEWAY_ID_MARK + secrets.token_hex(15)


def is_gateway_id(value: object) -> bool:
    """Whether an item id was minted by this gateway (`_token`)."""
    if not isinstance(value, str):
        return False
    prefix, sep, rest = value.partition("_")
    return bool(prefix and sep) and rest.startswith(GATEWAY_ID_MARK)


def new_response_id() -> str:
    return _token("resp_")


def new_message_item_id() -> str:
    return _token("msg_")


def new_function_call_item_id() -> str:
    # OpenAI validates the `fc_` prefix when such an item is replayed to it (§1.4).
    return _token("fc_")


def new_custom_call_item_id() -> str:
    return _token("ctc_")


def new_reasoning_item_id() -> str:
    return _token("rs_")


def new_call_id() -> str:
    """A `call_id` for an upstream tool call that came without an id."""
    return _token("call_")


def call_item_id(spec: ToolSpec) -> str:
    return new_custom_call_item_id() if spec.kind == "custom" else new_function_call_item_id()


# -- the Response object ---------------------------------------------------------------------


def _pick(request: dict[str, Any], key: str, kinds: type | tuple[type, ...], default: Any) -> Any:
    """A request field echoed back when it has the expected type, else the API's default."""
    value = request.get(key)
    if isinstance(value, bool) and kinds in (int, float, (int, float)):
        return default  # bool is an int to Python, not to JSON clients
    return value if isinstance(value, kinds) else default


def response_skeleton(request: dict[str, Any], response_id: str, created_at: int, model: str) -> dict[str, Any]:
    """The Response object as `response.created` announces it: in progress, no output, no usage.

    Request settings are echoed back as sent (tools, tool_choice, text, reasoning...) because clients
    and the Open Responses schema expect every field; `model` is the name the client asked for.
    """
    reasoning = request.get("reasoning")
    text = request.get("text")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": False,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": _pick(request, "instructions", (str, list), None),
        "max_output_tokens": _pick(request, "max_output_tokens", int, None),
        "max_tool_calls": _pick(request, "max_tool_calls", int, None),
        "model": model,
        "output": [],
        "parallel_tool_calls": _pick(request, "parallel_tool_calls", bool, True),
        "previous_response_id": _pick(request, "previous_response_id", str, None),
        "prompt_cache_key": _pick(request, "prompt_cache_key", str, None),
        "reasoning": {"effort": None, "summary": None, **(reasoning if isinstance(reasoning, dict) else {})},
        "safety_identifier": _pick(request, "safety_identifier", str, None),
        "service_tier": "default",
        "store": _pick(request, "store", bool, True),
        "temperature": _pick(request, "temperature", (int, float), 1.0),
        "text": {"format": {"type": "text"}, **(text if isinstance(text, dict) else {})},
        "tool_choice": _pick(request, "tool_choice", (str, dict), "auto"),
        "tools": _pick(request, "tools", list, []),
        "top_logprobs": _pick(request, "top_logprobs", int, 0),
        "top_p": _pick(request, "top_p", (int, float), 1.0),
        "presence_penalty": _pick(request, "presence_penalty", (int, float), 0.0),
        "frequency_penalty": _pick(request, "frequency_penalty", (int, float), 0.0),
        "truncation": _pick(request, "truncation", str, "disabled"),
        "usage": None,
        "user": _pick(request, "user", str, None),
        "metadata": _pick(request, "metadata", dict, {}),
    }


def outcome(finish_reason: str | None) -> tuple[str, dict[str, str] | None]:
    """(status, incomplete_details) for a Chat finish_reason."""
    reason = INCOMPLETE_REASONS.get(finish_reason or "")
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def finished_response(
    skeleton: dict[str, Any], output: list[dict[str, Any]], finish_reason: str | None, usage: dict[str, Any] | None
) -> dict[str, Any]:
    """The terminal Response: completed or incomplete, with every output item and the usage."""
    status, details = outcome(finish_reason)
    return {
        **skeleton,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "incomplete_details": details,
        "output": output,
        "usage": usage,
    }


# Nested error `type` for the codes a failed stream carries; anything else is a server error.
_ERROR_TYPES: dict[str, str] = {
    "context_length_exceeded": "invalid_request_error",
    "invalid_prompt": "invalid_request_error",
    "rate_limit_exceeded": "rate_limit_error",
    "insufficient_quota": "insufficient_quota",
}


def error_event_fields(code: str, message: str) -> dict[str, Any]:
    """The fields of a stream's `error` event: flat for the SDK's event type, nested as OpenAI sends
    them (the SDK raises on the nested object)."""
    error = {"type": _ERROR_TYPES.get(code, "server_error"), "code": code, "message": message, "param": None}
    return {"code": code, "message": message, "param": None, "error": error}


def failed_response(
    skeleton: dict[str, Any], output: list[dict[str, Any]], code: str, message: str, usage: dict[str, Any] | None
) -> dict[str, Any]:
    """The Response of `response.failed`: Codex reads `error.code` to decide whether to retry."""
    return {**skeleton, "status": "failed", "error": {"code": code, "message": message}, "output": output,
            "usage": usage}  # fmt: skip


def as_dict(value: object) -> dict[str, Any]:
    """A JSON object from an upstream, or {} for anything else (null, a list, a string)."""
    return value if isinstance(value, dict) else {}


# -- usage -----------------------------------------------------------------------------------


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def responses_usage(chat_usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Responses usage for a Chat usage object, all integers (§2.3); None when there is none.

    `input_tokens` keeps the Chat meaning (cached tokens included). Where each provider reports
    cache hits (OpenAI `prompt_tokens_details.cached_tokens`, DeepSeek `prompt_cache_hit_tokens`,
    Kimi `cached_tokens`) is read by the one helper that already knows it.
    """
    if not isinstance(chat_usage, dict):
        return None
    cache = anthropic_usage(chat_usage)
    details = as_dict(chat_usage.get("completion_tokens_details"))
    input_tokens = _count(chat_usage.get("prompt_tokens"))
    output_tokens = _count(chat_usage.get("completion_tokens"))
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": cache["cache_read_input_tokens"],
            "cache_write_tokens": cache["cache_creation_input_tokens"],
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": _count(details.get("reasoning_tokens"))},
        "total_tokens": input_tokens + output_tokens,
    }


# -- output items ----------------------------------------------------------------------------


def summary_part(text: str) -> dict[str, Any]:
    return {"type": "summary_text", "text": text}


def reasoning_item(item_id: str, text: str, signature: str | None = None) -> dict[str, Any]:
    """A finished reasoning item: the upstream's reasoning as its summary (what Codex shows; Codex
    drops reasoning items without `summary`), and sealed so the gateway can restore it on the next
    turn."""
    return {
        "id": item_id,
        "type": "reasoning",
        "summary": [summary_part(text)],
        "encrypted_content": seal_reasoning(text, signature),
    }


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": [output_text_part(text)]}  # fmt: skip


def custom_input(arguments: str) -> str:
    """A custom tool's raw input: the string the upstream wrapped as `{"input": ...}`, else the
    arguments exactly as they came (a model that ignored the wrapper still gets its text through)."""
    value = parse_arguments(arguments)
    inner = value.get(CUSTOM_INPUT) if value else None
    return inner if isinstance(inner, str) else arguments


_WRAPPER_OPEN = re.compile(r'\s*\{\s*"input"\s*:\s*"')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def wrapped_input_prefix(arguments: str) -> str | None:
    """As much of a custom tool's input as the arguments streamed so far give, while they look like the
    `{"input": "..."}` wrapper: the JSON string decoded up to its closing quote or to the last complete
    character (a half-received escape waits). None once they cannot be the wrapper (the input then goes
    out whole at the end)."""
    opening = _WRAPPER_OPEN.match(arguments)
    if opening is None:
        squeezed = "".join(arguments.split())
        return "" if '{"input":"'.startswith(squeezed) else None
    out: list[str] = []
    i, text = opening.end(), arguments
    while i < len(text):
        char = text[i]
        if char == '"':
            break
        if char != "\\":
            out.append(char)
            i += 1
            continue
        if i + 1 >= len(text):
            break  # the escape's second half has not arrived
        kind = text[i + 1]
        if kind == "u":
            digits = text[i + 2 : i + 6]
            if len(digits) < 4:
                break
            code = _hex(digits)
            if 0xD800 <= code < 0xDC00:  # a surrogate pair: wait for, then join, its low half
                low = text[i + 6 : i + 12]
                if len(low) < 6:
                    break
                if low.startswith("\\u") and 0xDC00 <= _hex(low[2:]) < 0xE000:
                    out.append(chr(0x10000 + ((code - 0xD800) << 10) + (_hex(low[2:]) - 0xDC00)))
                    i += 12
                    continue
            out.append("\ufffd" if 0xD800 <= code < 0xE000 else chr(code))  # a lone surrogate cannot be sent
            i += 6
            continue
        out.append(_ESCAPES.get(kind, kind))
        i += 2
    return "".join(out)


def _hex(digits: str) -> int:
    """Four hex digits of a \\u escape; anything else reads as U+FFFD."""
    try:
        return int(digits, 16) if len(digits) == 4 else 0xFFFD
    except ValueError:
        return 0xFFFD


def call_item(item_id: str, spec: ToolSpec, call_id: str, arguments: str, status: str) -> dict[str, Any]:
    """A `function_call` or `custom_tool_call` item for the client tool `spec`."""
    item: dict[str, Any]
    if spec.kind == "custom":
        item = {"id": item_id, "type": "custom_tool_call", "call_id": call_id, "name": spec.name,
                "input": custom_input(arguments)}  # fmt: skip
    else:
        item = {"id": item_id, "type": "function_call", "call_id": call_id, "name": spec.name,
                "arguments": arguments, "status": status}  # fmt: skip
    if spec.namespace:
        item["namespace"] = spec.namespace
    return item


def function_arguments(arguments: str) -> str:
    """Empty arguments become `{}`: a call without parameters is still a call (§6 case 8)."""
    return arguments if arguments.strip() else "{}"


def mark_incomplete(output: list[dict[str, Any]]) -> None:
    """A truncated response: the last item, the one cut off, is incomplete where it has a status."""
    if output and "status" in output[-1]:
        output[-1]["status"] = "incomplete"


# -- the non-streaming translation -----------------------------------------------------------


def _tool_items(message: dict[str, Any], tools: ToolTable, finish: str | None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for call in tool_calls_of(message):
        function = as_dict(call.get("function"))
        name = function.get("name")
        if not isinstance(name, str) or not name:
            continue  # nothing a client could run
        spec = tools.lookup(name)
        arguments = arguments_text(function.get("arguments"))
        if spec.kind == "function":
            arguments = function_arguments(arguments)
            if parse_arguments(arguments) is None and finish != "length":
                # Never pass a corrupted call on as a success; a `length` cut explains it.
                raise UpstreamResponseError(f"upstream returned invalid JSON arguments for tool '{name}'")
        upstream_id = call.get("id")
        call_id = upstream_id if isinstance(upstream_id, str) and upstream_id else new_call_id()
        items.append(call_item(call_item_id(spec), spec, call_id, arguments, "completed"))
    return items


def chat_to_responses(
    chat: dict[str, Any], request: dict[str, Any], tools: ToolTable, response_id: str, created_at: int, model: str
) -> dict[str, Any]:
    """A complete Response object for a non-streaming Chat completion.

    Raises UpstreamResponseError for answers that cannot be passed on honestly: DeepSeek's
    overload finish, or function arguments that are not JSON without a `length` cut to explain them.
    """
    choices = chat.get("choices")
    choice = as_dict(choices[0]) if isinstance(choices, list) and choices else {}
    message = as_dict(choice.get("message"))
    finish = choice.get("finish_reason")
    finish = finish if isinstance(finish, str) else None
    if finish == OVERLOADED_FINISH:
        raise UpstreamResponseError("upstream is overloaded (insufficient_system_resource); retry later", 529)

    output: list[dict[str, Any]] = []
    reasoning = reasoning_of(message)
    if reasoning.strip():
        signature = message.get("reasoning_signature")
        output.append(reasoning_item(new_reasoning_item_id(), reasoning, signature if isinstance(signature, str) else None))
    # A refusal is shown as text: Codex cannot parse a `refusal` part and would drop the message.
    text = text_of(message.get("content")) or text_of(message.get("refusal"))
    if text.strip():
        output.append(message_item(new_message_item_id(), text, "completed"))
    output.extend(_tool_items(message, tools, finish))

    if outcome(finish)[0] == "incomplete":
        mark_incomplete(output)
    usage = responses_usage(chat.get("usage") or choice.get("usage"))  # Kimi can put usage in the choice
    return finished_response(response_skeleton(request, response_id, created_at, model), output, finish, usage)
