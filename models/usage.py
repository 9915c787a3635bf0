"""Token usage as reported by an upstream, in any of its wire protocols (pure)."""

from __future__ import annotations

from typing import Any

from models.providers import ApiStyle


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage_of(api: ApiStyle, payload: Any) -> tuple[int | None, int | None]:
    """(input tokens, output tokens) found in a response body or stream event, else Nones.

    Input counts include cached tokens in both protocols, so the figures are comparable.
    """
    if not isinstance(payload, dict):
        return None, None
    if api is ApiStyle.RESPONSES:
        # A Response object, or a stream event carrying one (its usage arrives with the terminal event).
        response = payload.get("response") if isinstance(payload.get("response"), dict) else payload
        usage = response.get("usage")
        if not isinstance(usage, dict):
            return None, None
        return _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
    if api is ApiStyle.ANTHROPIC:
        usage = payload.get("usage")
        if not isinstance(usage, dict) and isinstance(payload.get("message"), dict):
            usage = payload["message"].get("usage")  # message_start
        if not isinstance(usage, dict):
            return None, None
        parts = [_int(usage.get(k)) for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")]
        total_in = sum(p for p in parts if p is not None) if parts[0] is not None else None
        return total_in, _int(usage.get("output_tokens"))
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        choices = payload.get("choices")
        first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        usage = first.get("usage")  # Kimi puts stream usage inside choices[0]
    if not isinstance(usage, dict):
        return None, None
    return _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))


def delta_chars(api: ApiStyle, payload: Any) -> int:
    """Characters of generated output (text, reasoning, tool arguments) in one stream event: what
    an answer cut off before its usage report had produced so far."""
    if not isinstance(payload, dict):
        return 0
    if api is ApiStyle.RESPONSES:
        # response.output_text.delta, .function_call_arguments.delta, .reasoning_*.delta, ...
        delta = payload.get("delta")
        kind = payload.get("type")
        return len(delta) if isinstance(delta, str) and isinstance(kind, str) and kind.endswith(".delta") else 0
    if api is ApiStyle.ANTHROPIC:
        delta = payload.get("delta") if payload.get("type") == "content_block_delta" else None
        if not isinstance(delta, dict):
            return 0
        return sum(len(v) for k in ("text", "thinking", "partial_json") if isinstance(v := delta.get(k), str))
    total = 0
    for choice in payload.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        total += sum(len(v) for k in ("content", "reasoning_content") if isinstance(v := delta.get(k), str))
        for call in delta.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                total += len(function["arguments"])
    return total
