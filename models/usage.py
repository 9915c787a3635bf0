"""Token usage as reported by an upstream, in any of its wire protocols (pure)."""

from __future__ import annotations

from typing import Any, NamedTuple

from models.providers import ApiStyle


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Usage(NamedTuple):
    """Token figures an upstream reported; None for what it did not report. `input` includes the
    cached part (read from or written to a prompt cache), in every protocol."""

    input: int | None = None
    output: int | None = None
    cache_read: int | None = None
    cache_write: int | None = None


def openai_cache(usage: dict[str, Any]) -> tuple[int | None, int | None]:
    """(cache-read, cache-write) tokens of an OpenAI-style usage object, by any provider's spelling:
    OpenAI `prompt_tokens_details.cached_tokens`, DeepSeek `prompt_cache_hit_tokens`, Kimi
    `cached_tokens`; writes as `prompt_tokens_details.cache_write_tokens` (what this gateway sends)."""
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    read = next((n for n in (_int(details.get("cached_tokens")), _int(usage.get("prompt_cache_hit_tokens")),
                             _int(usage.get("cached_tokens"))) if n is not None), None)  # fmt: skip
    return read, _int(details.get("cache_write_tokens"))


def usage_of(api: ApiStyle, payload: Any) -> Usage:
    """The usage found in a response body or stream event (all Nones when there is none)."""
    if not isinstance(payload, dict):
        return Usage()
    if api is ApiStyle.RESPONSES:
        # A Response object, or a stream event carrying one (its usage arrives with the terminal event).
        response = payload.get("response") if isinstance(payload.get("response"), dict) else payload
        usage = response.get("usage")
        if not isinstance(usage, dict):
            return Usage()
        details = usage.get("input_tokens_details")
        details = details if isinstance(details, dict) else {}
        return Usage(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")),
                     _int(details.get("cached_tokens")), _int(details.get("cache_write_tokens")))  # fmt: skip
    if api is ApiStyle.ANTHROPIC:
        usage = payload.get("usage")
        if not isinstance(usage, dict) and isinstance(payload.get("message"), dict):
            usage = payload["message"].get("usage")  # message_start
        if not isinstance(usage, dict):
            return Usage()
        fresh, read, write = (_int(usage.get(k)) for k in ("input_tokens", "cache_read_input_tokens",
                                                           "cache_creation_input_tokens"))  # fmt: skip
        total_in = fresh + (read or 0) + (write or 0) if fresh is not None else None
        return Usage(total_in, _int(usage.get("output_tokens")), read if fresh is not None else None,
                     write if fresh is not None else None)  # fmt: skip
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        choices = payload.get("choices")
        first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        usage = first.get("usage")  # Kimi puts stream usage inside choices[0]
    if not isinstance(usage, dict):
        return Usage()
    return Usage(_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")), *openai_cache(usage))


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
