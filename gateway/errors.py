"""One error mapper: typed gateway errors -> Anthropic or OpenAI error bodies.

Layers raise `GatewayError` subclasses; only this module decides the status, the error type
names of each protocol, and the body shape. Nothing here ever includes a stack trace.
"""

from __future__ import annotations

import orjson

from models.providers import ApiStyle

# Anthropic's error type for each status (protocol-conformance §1.6).
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    501: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# OpenAI's `type` for each status.
_OPENAI_TYPES = {
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


class GatewayError(Exception):
    """An error with a client-facing message; `status` picks the protocol error type."""

    status = 500
    code: str | None = None
    retryable = False

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})


class InvalidRequest(GatewayError):
    status = 400
    code = "invalid_request"


class Unauthorized(GatewayError):
    status = 401
    code = "invalid_api_key"


class Forbidden(GatewayError):
    status = 403
    code = "model_not_allowed"


class NotFound(GatewayError):
    status = 404
    code = "model_not_found"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "request_too_large"


class NotImplementedYet(GatewayError):
    status = 501
    code = "not_implemented"


class ProviderUnavailable(GatewayError):
    """The chosen provider cannot be called (e.g. its key variable is unset)."""

    status = 503
    code = "provider_unavailable"

    def __init__(self, message: str) -> None:
        # Retrying will not set an environment variable: tell the SDKs not to.
        super().__init__(message, headers={"x-should-retry": "false"})


class UpstreamError(GatewayError):
    """The upstream could not be reached or failed without a usable answer."""

    status = 502
    code = "upstream_error"
    retryable = True


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


def error_type(api: ApiStyle, status: int) -> str:
    if api is ApiStyle.ANTHROPIC:
        return _ANTHROPIC_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return _OPENAI_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def error_body(api: ApiStyle, status: int, message: str, code: str | None = None,
               request_id: str | None = None) -> dict[str, object]:  # fmt: skip
    if api is ApiStyle.ANTHROPIC:
        body: dict[str, object] = {"type": "error", "error": {"type": error_type(api, status), "message": message}}
        if request_id:
            body["request_id"] = request_id
        return body
    return {"error": {"message": message, "type": error_type(api, status), "param": None, "code": code}}


def render(api: ApiStyle, exc: GatewayError, request_id: str | None = None) -> tuple[int, bytes]:
    """Status and JSON body for an error raised before the response started."""
    return exc.status, orjson.dumps(error_body(api, exc.status, exc.message, exc.code, request_id))


def stream_error_frame(api: ApiStyle, status: int, message: str) -> bytes:
    """The terminal SSE frame that tells a streaming client the response failed."""
    body = error_body(api, status, message)
    if api is ApiStyle.ANTHROPIC:
        return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"
    # The OpenAI SDK raises on a chunk carrying a top-level `error`; no [DONE] follows.
    return b"data: " + orjson.dumps(body) + b"\n\n"
