"""One error mapper: typed gateway errors -> Anthropic or OpenAI error bodies.

Layers raise `GatewayError` subclasses; only this module decides the status, the error type
names of each protocol, and the body shape. Nothing here ever includes a stack trace.
"""

from __future__ import annotations

import orjson

from models.providers import ApiStyle
from models.translate.errors import error_body, error_type, stream_error_frame

__all__ = ["error_body", "error_type", "stream_error_frame"]

class GatewayError(Exception):
    """An error with a client-facing message; `status` picks the protocol error type."""

    status = 500
    code: str | None = None

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None, param: str | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.message = message
        self.param = param  # the request field at fault (OpenAI's `param`)
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

    def __init__(self, message: str) -> None:
        # A missing capability does not appear on retry.
        super().__init__(message, headers={"x-should-retry": "false"})


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


class UpstreamAuthError(UpstreamError):
    """The provider refused the gateway's own credentials (its 401/403 is not the client's)."""

    code = "upstream_auth_failed"

    def __init__(self, message: str) -> None:
        # Retrying cannot fix a provider key: tell the SDKs not to.
        super().__init__(message, headers={"x-should-retry": "false"})


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


def render(api: ApiStyle, exc: GatewayError, request_id: str | None = None) -> tuple[int, bytes]:
    """Status and JSON body for an error raised before the response started."""
    return exc.status, orjson.dumps(error_body(api, exc.status, exc.message, exc.code, request_id, exc.param))
