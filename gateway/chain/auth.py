"""Auth layer: gateway keys, checked before the body is read.

With `gateway_keys` configured every request must carry one of them as `x-api-key` or
`Authorization: Bearer`; otherwise it is refused with 401 and no upstream request is made.
Keys are stored as SHA-256 digests and compared in constant time against every key. The key's
limits are admitted later, by the quota layer, once the request's size is known.
"""

from __future__ import annotations

import hmac
from typing import Any

from gateway.call import get_call
from gateway.config import Config, GatewayKey, sha256
from gateway.errors import Unauthorized


def presented_credential(headers: dict[str, str]) -> str | None:
    """The client's credential: `x-api-key`, else an `Authorization: Bearer` token."""
    key = headers.get("x-api-key", "").strip()
    if key:
        return key
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def match_key(keys: tuple[GatewayKey, ...], credential: str | None) -> GatewayKey | None:
    """The matching key, comparing against all of them so timing does not reveal which."""
    digest = sha256(credential or "")
    found = None
    for key in keys:
        if hmac.compare_digest(key.sha256, digest) and credential is not None:
            found = key
    return found


class Auth:
    def __init__(self, app: Any, config: Config) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        call = get_call(scope)
        credential = presented_credential(call.headers)
        if self.config.auth_enabled:
            if credential is None:
                raise Unauthorized("missing gateway key: send it as x-api-key or Authorization: Bearer")
            call.key = match_key(self.config.gateway_keys, credential)
            if call.key is None:
                raise Unauthorized("invalid gateway key")
        else:
            # Without gateway keys the credential may belong to a passthrough_auth provider.
            call.credential = credential
        await self.app(scope, receive, send)
