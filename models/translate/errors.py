"""Upstream errors in the client's protocol (protocol-conformance §1.6, §5.7).

Clients key on more than the status: Claude Code's auto-compaction fires on the message text
("prompt is too long"), the SDKs retry by status and `retry-after`, and users read the upstream's
own explanation. So the upstream message is kept verbatim except for context overflows, which
are reworded into the phrasing each client acts on.

`error_type`, `error_body` and `stream_error_frame` are the pure body-shape helpers the gateway's
error mapper can share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from models.providers import ApiStyle
from models.sse import encode

ANTHROPIC_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

OPENAI_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    501: "not_implemented",
    504: "timeout",
}

_ANTHROPIC_ONLY_TYPES = frozenset(ANTHROPIC_ERROR_TYPES.values()) - frozenset(OPENAI_ERROR_TYPES.values())

# Error `type` names (either protocol) -> the status they stand for, for errors that arrive
# without an HTTP status (mid-stream error events and chunks).
_STATUS_OF_TYPE: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "insufficient_quota": 429,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class UpstreamResponseError(Exception):
    """A 200 answer that cannot be translated honestly (the gateway reports it as `status`)."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def error_type(api: ApiStyle, status: int) -> str:
    table = ANTHROPIC_ERROR_TYPES if api is ApiStyle.ANTHROPIC else OPENAI_ERROR_TYPES
    return table.get(status, "invalid_request_error" if status < 500 else "api_error")


def error_body(api: ApiStyle, status: int, message: str, code: str | None = None,
               request_id: str | None = None, param: str | None = None) -> dict[str, Any]:  # fmt: skip
    if api is ApiStyle.ANTHROPIC:
        body: dict[str, Any] = {"type": "error", "error": {"type": error_type(api, status), "message": message}}
        if request_id:
            body["request_id"] = request_id
        return body
    return {"error": {"message": message, "type": error_type(api, status), "param": param, "code": code}}


def stream_error_frame(api: ApiStyle, status: int, message: str) -> bytes:
    """The terminal SSE frame of a failed stream: `event: error` (Anthropic) or an error chunk."""
    return _frame(api, error_body(api, status, message))


def _frame(api: ApiStyle, body: dict[str, Any]) -> bytes:
    # The OpenAI SDK raises on a chunk carrying a top-level `error`; no [DONE] may follow.
    return encode("error" if api is ApiStyle.ANTHROPIC else None, orjson.dumps(body))


# --- reading upstream error bodies ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpstreamErrorInfo:
    """What an upstream error body says, whatever its shape."""

    message: str
    type: str | None = None
    code: str | None = None
    param: str | None = None
    status: int | None = None  # a numeric `code` some servers put in the body (vLLM)


_HTML_TITLE = re.compile(rb"<title>\s*(.*?)\s*</title>", re.I | re.S)


def parse_error_body(body: bytes | str | None, status: int) -> UpstreamErrorInfo:
    """The message, type and code of an error body: OpenAI, Anthropic, vLLM, FastAPI or text."""
    raw = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    try:
        data: Any = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        return UpstreamErrorInfo(_text_message(raw, status))
    return error_info(data, status)


def error_info(data: Any, status: int | None = None) -> UpstreamErrorInfo:
    """`parse_error_body` for an already-decoded JSON value."""
    if isinstance(data, list) and data:
        data = data[0]  # Gemini wraps its error object in a list
    if isinstance(data, str) and data.strip():
        return UpstreamErrorInfo(data.strip())
    if not isinstance(data, dict):
        return UpstreamErrorInfo(_fallback_message(status))
    err = data.get("error")
    if isinstance(err, str) and err.strip():
        return UpstreamErrorInfo(err.strip(), _str(data.get("type")), _str(data.get("code")))
    source = err if isinstance(err, dict) else data
    message = source.get("message") or source.get("detail") or data.get("detail")
    if message is not None and not isinstance(message, str):
        message = orjson.dumps(message).decode("utf-8")
    code = source.get("code")
    return UpstreamErrorInfo(
        message=(message or "").strip() or _fallback_message(status),
        type=_str(source.get("type")),
        code=_str(code),
        param=_str(source.get("param")),
        status=code if isinstance(code, int) and 400 <= code <= 599 else None,
    )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _text_message(raw: bytes, status: int) -> str:
    title = _HTML_TITLE.search(raw)  # a proxy's HTML error page: its title is the message
    text = title.group(1) if title else raw
    message = " ".join(text.decode("utf-8", errors="replace").split())
    return message[:1000] or _fallback_message(status)


def _fallback_message(status: int | None) -> str:
    return f"upstream returned HTTP {status}" if status else "upstream error"


# --- classification -------------------------------------------------------------------------

# Context-overflow wordings: OpenAI, DeepSeek, vLLM, Kimi/Moonshot, Gemini, Qwen, Anthropic.
_OVERFLOW = re.compile(
    r"context_length_exceeded|context_window_exceeded|maximum context length|\bcontext length\b"
    r"|context window|prompt is too long|exceed context limit|model token limit"
    r"|max(?:imum)? length exceeded|maximum model length|input token count.{0,40}exceeds"
    r"|input tokens exceed|range of input length|reduce the length of the messages",
    re.I,
)
_OVERLOADED = re.compile(r"overload|insufficient_system_resource|server is busy|capacity", re.I)
_QUOTA = re.compile(r"insufficient_quota|exceeded your current quota|insufficient balance", re.I)
_RATE_LIMITED = re.compile(r"rate.?limit", re.I)

_N = r"(\d[\d,]*)"
_ANTHROPIC_LIMIT = re.compile(rf"exceed context limit: {_N} \+ {_N} > {_N}", re.I)


def _compile(*patterns: str) -> list[re.Pattern[str]]:
    return [re.compile(p, re.I) for p in patterns]


_LIMIT = _compile(
    rf"maximum context length is {_N}",
    rf"token limit:? {_N}",
    rf"max(?:imum)? length:? ?(?:of )?{_N}",
    rf"maximum model length of {_N}",
    rf"limit of {_N}",
    rf"tokens > {_N} maximum",
    rf"tokens allowed \({_N}\)",
    rf"context window of {_N}",
)
_PROMPT = _compile(
    rf"resulted in {_N} tokens",
    rf"has {_N} input tokens",
    rf"prompt \(length {_N}\)",
    rf"input token count \({_N}\)",
    rf"prompt is too long: {_N} tokens",
)
_MESSAGES = re.compile(rf"{_N} (?:tokens )?in the messages", re.I)
_FUNCTIONS = re.compile(rf"{_N} in the functions", re.I)
_COMPLETION = re.compile(rf"{_N} in the completion|too large: {_N}", re.I)
_REQUESTED = re.compile(rf"requested:? {_N}", re.I)


def _mentions(pattern: re.Pattern[str], info: UpstreamErrorInfo) -> bool:
    return any(pattern.search(text) for text in (info.message, info.type or "", info.code or ""))


def is_context_overflow(info: UpstreamErrorInfo) -> bool:
    return _mentions(_OVERFLOW, info)


def _number(pattern: re.Pattern[str], text: str) -> int | None:
    match = pattern.search(text)
    if match is None:
        return None
    digits = next(g for g in match.groups() if g is not None)
    return int(digits.replace(",", ""))


def _first_number(patterns: list[re.Pattern[str]], text: str) -> int | None:
    return next((n for n in (_number(p, text) for p in patterns) if n is not None), None)


def anthropic_overflow_message(message: str) -> str:
    """The overflow message in the wording Claude Code compacts on (§1.6).

    `prompt is too long: <in> tokens > <limit> maximum` when the prompt alone overflows;
    `input length and \\`max_tokens\\` exceed context limit: <in> + <max> > <limit>` when only the
    requested output does (Claude Code then retries with a smaller max_tokens); otherwise the
    upstream text behind the `prompt is too long` prefix.
    """
    exact = _ANTHROPIC_LIMIT.search(message)
    if exact or message.lower().startswith("prompt is too long"):
        return message  # already in Anthropic's own words
    limit = _first_number(_LIMIT, message)
    completion = _number(_COMPLETION, message)
    prompt = _first_number(_PROMPT, message)
    if prompt is None and (in_messages := _number(_MESSAGES, message)) is not None:
        prompt = in_messages + (_number(_FUNCTIONS, message) or 0)
    if prompt is None and (requested := _number(_REQUESTED, message)) is not None:
        prompt = requested - (completion or 0)
    if limit is not None and prompt is not None:
        if prompt > limit:
            return f"prompt is too long: {prompt} tokens > {limit} maximum"
        if completion:
            return f"input length and `max_tokens` exceed context limit: {prompt} + {completion} > {limit}"
    return f"prompt is too long: {message}"


# --- the mapping ----------------------------------------------------------------------------


def _client_status(upstream_status: int, info: UpstreamErrorInfo, client_api: ApiStyle) -> int:
    anthropic = client_api is ApiStyle.ANTHROPIC
    if upstream_status in (503, 529) or (upstream_status >= 500 and _mentions(_OVERLOADED, info)):
        return 529 if anthropic else 503
    if upstream_status == 429 and anthropic and _mentions(_QUOTA, info):
        return 402  # out of credit: billing_error, which the SDK does not retry forever
    if upstream_status in (408, 504):
        return 504
    if upstream_status == 422:
        return 400
    if 400 <= upstream_status < 500:
        return upstream_status
    if upstream_status >= 500:
        return 500
    return 502  # an error body behind a non-error status: the upstream misbehaved


def _retryable(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def map_upstream_error(
    upstream_status: int,
    upstream_body: bytes,
    client_api: ApiStyle,
    retry_after: str | None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, client-protocol error body and headers for an upstream error response."""
    info = parse_error_body(upstream_body, upstream_status)
    return _map(upstream_status, info, client_api, retry_after)


def _map(
    upstream_status: int, info: UpstreamErrorInfo, client_api: ApiStyle, retry_after: str | None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers: dict[str, str] = {}
    if upstream_status != 429 and is_context_overflow(info):
        if client_api is ApiStyle.ANTHROPIC:
            return 400, error_body(client_api, 400, anthropic_overflow_message(info.message)), headers
        body = error_body(client_api, 400, info.message, "context_length_exceeded")
        body["error"]["param"] = info.param or "messages"
        return 400, body, headers
    status = _client_status(upstream_status, info, client_api)
    if retry_after and _retryable(status):
        headers["retry-after"] = retry_after
    if client_api is ApiStyle.ANTHROPIC:
        return status, error_body(client_api, status, info.message), headers
    # OpenAI clients get the upstream's own type/code when it gave them (e.g. insufficient_quota).
    body = error_body(client_api, status, info.message, info.code)
    if info.type and info.type not in _ANTHROPIC_ONLY_TYPES:  # an Anthropic type means nothing to them
        body["error"]["type"] = info.type
    body["error"]["param"] = info.param
    return status, body, headers


def upstream_stream_error_frame(payload: Any, client_api: ApiStyle) -> bytes:
    """The client frame for an error the upstream sent inside a 200 stream.

    `payload` is the upstream's whole error event/chunk (`{"error": {...}}` or Anthropic's
    `{"type": "error", "error": {...}}`). With no HTTP status to go by, the status is read from
    a numeric `code` or the error type; unknown errors count as a retryable 500.
    """
    info = error_info(payload)
    status = info.status or _STATUS_OF_TYPE.get(info.type or "", 500)
    _, body, _ = _map(status, info, client_api, None)
    return _frame(client_api, body)


def responses_error_code(status: int | None, message: str, info: UpstreamErrorInfo | None = None) -> str:
    """The `code` of a Responses `response.failed` event, for a failure after the headers (the gateway's
    own, with its status, or an error the upstream sent inside its stream, with `info`), from the
    codes Codex understands: it retries overloads, rate limits and server errors, and stops on
    context overflow and invalid prompts."""
    info = info or UpstreamErrorInfo(message)
    status = status or info.status
    if is_context_overflow(info):
        return "context_length_exceeded"
    if _mentions(_QUOTA, info):
        return "insufficient_quota"
    if status == 429 or _mentions(_RATE_LIMITED, info):
        return "rate_limit_exceeded"
    if status in (503, 529) or _mentions(_OVERLOADED, info):
        return "server_is_overloaded"
    if status in (400, 413, 422):
        return "invalid_prompt"
    return "server_error"

