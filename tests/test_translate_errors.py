"""Upstream error bodies -> client-protocol errors (protocol-conformance §1.6, §5.7)."""

from __future__ import annotations

import orjson
import pytest

from models.providers import ApiStyle
from models.sse import SSEDecoder
from models.translate.errors import (
    anthropic_overflow_message,
    error_body,
    map_upstream_error,
    parse_error_body,
    stream_error_frame,
    upstream_stream_error_frame,
)

A = ApiStyle.ANTHROPIC
O = ApiStyle.OPENAI


def oai(message: str, type_: str | None = "invalid_request_error", code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


def anthropic_error(status: int, body: bytes, retry_after: str | None = None) -> tuple[int, str, str, dict[str, str]]:
    status, out, headers = map_upstream_error(status, body, A, retry_after)
    assert out["type"] == "error" and set(out) == {"type", "error"}
    return status, out["error"]["type"], out["error"]["message"], headers


# -- context overflow ------------------------------------------------------------------------

DEEPSEEK_PROMPT = (
    "This model's maximum context length is 131072 tokens. However, you requested 154963 tokens "
    "(150867 in the messages, 4096 in the completion). Please reduce the length of the messages or completion."
)
DEEPSEEK_MAX_TOKENS = (
    "This model's maximum context length is 131072 tokens. However, you requested 131134 tokens "
    "(122942 in the messages, 8192 in the completion). Please reduce the length of the messages or completion."
)
OPENAI_FUNCTIONS = (
    "This model's maximum context length is 8192 tokens. However, you requested 8213 tokens (7683 in the "
    "messages, 730 in the functions, and 800 in the completion). Please reduce the length of the messages, "
    "functions, or completion."
)
KIMI = "Invalid request: Your request exceeded model token limit: 262144 (requested: 269030)"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (DEEPSEEK_PROMPT, "prompt is too long: 150867 tokens > 131072 maximum"),
        (DEEPSEEK_MAX_TOKENS, "input length and `max_tokens` exceed context limit: 122942 + 8192 > 131072"),
        (OPENAI_FUNCTIONS, "prompt is too long: 8413 tokens > 8192 maximum"),
        (KIMI, "prompt is too long: 269030 tokens > 262144 maximum"),
        (
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130500 tokens.",
            "prompt is too long: 130500 tokens > 128000 maximum",
        ),
        (
            "The decoder prompt (length 40000) is longer than the maximum model length of 32768.",
            "prompt is too long: 40000 tokens > 32768 maximum",
        ),
        (
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            "prompt is too long: 1200000 tokens > 1048576 maximum",
        ),
        (
            "'max_tokens' is too large: 32000. This model's maximum context length is 32768 tokens and your "
            "request has 1000 input tokens (32000 > 32768 - 1000).",
            "input length and `max_tokens` exceed context limit: 1000 + 32000 > 32768",
        ),
        ("prompt is too long: 210000 tokens > 200000 maximum", "prompt is too long: 210000 tokens > 200000 maximum"),
        (
            "input length and `max_tokens` exceed context limit: 190000 + 32000 > 200000",
            "input length and `max_tokens` exceed context limit: 190000 + 32000 > 200000",
        ),
        ("model max length exceeded, max length:8192", "prompt is too long: model max length exceeded, max length:8192"),
    ],
)
def test_overflow_rewritten_for_anthropic_clients(message: str, expected: str) -> None:
    assert anthropic_error(400, oai(message)) == (400, "invalid_request_error", expected, {})


def test_overflow_detected_by_code_alone_still_starts_with_prompt_is_too_long() -> None:
    status, kind, message, _ = anthropic_error(400, oai("Request rejected", code="context_length_exceeded"))
    assert (status, kind) == (400, "invalid_request_error")
    assert message == "prompt is too long: Request rejected"


def test_overflow_as_413_or_422_is_still_an_overflow() -> None:
    assert anthropic_error(413, oai(DEEPSEEK_PROMPT))[:3] == (400, "invalid_request_error", anthropic_overflow_message(DEEPSEEK_PROMPT))
    assert anthropic_error(422, b'{"detail": "' + KIMI.encode() + b'"}')[2].startswith("prompt is too long: 269030")


def test_overflow_for_openai_clients_keeps_text_and_sets_code() -> None:
    status, body, headers = map_upstream_error(400, oai(KIMI), O, None)
    assert status == 400 and headers == {}
    assert body == {"error": {"message": KIMI, "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}


def test_anthropic_upstream_overflow_to_openai_client() -> None:
    upstream = orjson.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 210000 tokens > 200000 maximum"}})
    status, body, _ = map_upstream_error(400, upstream, O, None)
    assert status == 400 and body["error"]["code"] == "context_length_exceeded"
    assert body["error"]["message"] == "prompt is too long: 210000 tokens > 200000 maximum"


def test_rate_limit_message_is_not_mistaken_for_overflow() -> None:
    groq = "Request too large for model `kimi-k2` on tokens per minute (TPM): Limit 10000, Requested 15088"
    assert anthropic_error(429, oai(groq, "tokens"), "7") == (429, "rate_limit_error", groq, {"retry-after": "7"})


def test_max_tokens_parameter_error_is_not_an_overflow() -> None:
    message = "Invalid max_tokens value, the valid range of max_tokens is [1, 8192]"
    assert anthropic_error(400, oai(message)) == (400, "invalid_request_error", message, {})


# -- status mapping --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream", "status", "kind"),
    [
        (400, 400, "invalid_request_error"),
        (422, 400, "invalid_request_error"),
        (401, 401, "authentication_error"),
        (402, 402, "billing_error"),
        (403, 403, "permission_error"),
        (404, 404, "not_found_error"),
        (413, 413, "request_too_large"),
        (429, 429, "rate_limit_error"),
        (500, 500, "api_error"),
        (502, 500, "api_error"),
        (503, 529, "overloaded_error"),
        (529, 529, "overloaded_error"),
        (504, 504, "timeout_error"),
        (408, 504, "timeout_error"),
    ],
)
def test_status_mapping_for_anthropic_clients(upstream: int, status: int, kind: str) -> None:
    assert anthropic_error(upstream, oai("upstream says no"))[:3] == (status, kind, "upstream says no")


@pytest.mark.parametrize(
    ("upstream", "status"),
    [(400, 400), (422, 400), (401, 401), (402, 402), (403, 403), (404, 404), (429, 429), (500, 500), (502, 500), (503, 503), (504, 504)],
)
def test_status_mapping_for_openai_clients(upstream: int, status: int) -> None:
    mapped, body, _ = map_upstream_error(upstream, oai("upstream says no", None), O, None)
    assert mapped == status and body["error"]["message"] == "upstream says no"


def test_overloaded_500_becomes_529_for_anthropic() -> None:
    assert anthropic_error(500, oai("The engine is currently overloaded, please try again later", "engine_overloaded_error"))[:2] == (529, "overloaded_error")


def test_kimi_code_403_keeps_upstream_message() -> None:
    message = "Kimi For Coding is currently only available for Coding Agents such as Kimi CLI, Claude Code, Roo Code, Kilo Code, etc."
    assert anthropic_error(403, oai(message, "access_terminated_error")) == (403, "permission_error", message, {})
    status, body, _ = map_upstream_error(403, oai(message, "access_terminated_error"), O, None)
    assert status == 403 and body["error"] == {"message": message, "type": "access_terminated_error", "param": None, "code": None}


def test_deepseek_402_is_billing() -> None:
    assert anthropic_error(402, oai("Insufficient Balance", "unknown_error")) == (402, "billing_error", "Insufficient Balance", {})


def test_openai_quota_429_is_billing_for_anthropic_but_stays_429_for_openai() -> None:
    body = oai("You exceeded your current quota, please check your plan and billing details.", "insufficient_quota", "insufficient_quota")
    assert anthropic_error(429, body, "20")[:2] == (402, "billing_error")
    assert anthropic_error(429, body, "20")[3] == {}  # not retryable: no retry-after
    status, out, headers = map_upstream_error(429, body, O, "20")
    assert (status, out["error"]["type"], out["error"]["code"], headers) == (429, "insufficient_quota", "insufficient_quota", {"retry-after": "20"})


def test_retry_after_kept_for_retryable_statuses_only() -> None:
    assert anthropic_error(503, oai("busy"), "3")[3] == {"retry-after": "3"}
    assert anthropic_error(400, oai("bad"), "3")[3] == {}


# -- body shapes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', "Overloaded"),
        (b'{"error":"plain string error"}', "plain string error"),
        (b'{"object":"error","message":"vllm says","type":"BadRequestError","code":400}', "vllm says"),
        (b'{"detail":"fastapi says"}', "fastapi says"),
        (b'{"detail":[{"loc":["body"],"msg":"field required"}]}', '[{"loc":["body"],"msg":"field required"}]'),
        (b'[{"error":{"code":400,"message":"gemini says","status":"INVALID_ARGUMENT"}}]', "gemini says"),
        (b"upstream exploded", "upstream exploded"),
        (b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>", "502 Bad Gateway"),
        (b"", "upstream returned HTTP 502"),
        (b"{}", "upstream returned HTTP 502"),
        (b"null", "upstream returned HTTP 502"),
        (b'{"error":{"message":null}}', "upstream returned HTTP 502"),
    ],
)
def test_unusual_and_unparseable_bodies(body: bytes, message: str) -> None:
    assert parse_error_body(body, 502).message == message
    status, out, _ = map_upstream_error(502, body, A, None)
    assert status in (500, 529) and out["error"]["message"] == message


def test_vllm_numeric_code_is_read_as_status() -> None:
    assert parse_error_body(b'{"object":"error","message":"m","type":"BadRequestError","code":400}', 200).status == 400


def test_error_body_shapes_match_each_protocol() -> None:
    assert error_body(A, 404, "nope", request_id="req_1") == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "nope"},
        "request_id": "req_1",
    }
    assert error_body(O, 404, "nope", "model_not_found") == {
        "error": {"message": "nope", "type": "not_found_error", "param": None, "code": "model_not_found"}
    }


# -- mid-stream errors -----------------------------------------------------------------------


def decode_one(frame: bytes) -> tuple[str | None, dict[str, object]]:
    events = SSEDecoder().feed(frame)
    assert len(events) == 1
    return events[0].event, orjson.loads(events[0].data)


def test_stream_error_frames() -> None:
    assert decode_one(stream_error_frame(A, 529, "busy")) == ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    assert decode_one(stream_error_frame(O, 500, "boom")) == (None, {"error": {"message": "boom", "type": "api_error", "param": None, "code": None}})


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"error": {"message": "internal", "type": "server_error"}}, "api_error"),
        ({"error": {"message": "slow down", "type": "rate_limit_error", "code": 429}}, "rate_limit_error"),
        ({"error": {"message": "Server overloaded", "type": "server_overloaded"}}, "overloaded_error"),
        ({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "overloaded_error"),
        ({"error": {"message": DEEPSEEK_PROMPT, "code": "context_length_exceeded"}}, "invalid_request_error"),
    ],
)
def test_upstream_stream_error_for_anthropic_client(payload: dict[str, object], kind: str) -> None:
    name, body = decode_one(upstream_stream_error_frame(payload, A))
    assert name == "error" and body["type"] == "error" and body["error"]["type"] == kind  # type: ignore[index]


def test_upstream_stream_error_for_openai_client_keeps_message() -> None:
    payload = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    name, body = decode_one(upstream_stream_error_frame(payload, O))
    assert name is None and body["error"]["message"] == "Overloaded"  # type: ignore[index]
