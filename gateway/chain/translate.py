"""Protocol translation layer: builds the request in the upstream's wire protocol.

Same-protocol traffic is relayed faithfully: the body is forwarded with every field intact, only
`model` is rewritten to the upstream's model id. Cross-protocol requests are refused with a
clear 501 in the client's protocol until translation between the two is available.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.call import get_call
from gateway.errors import NotImplementedYet


class Translate:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        call = get_call(scope)
        provider = call.provider
        assert provider is not None and call.body is not None
        if provider.api is not call.protocol:
            raise NotImplementedYet(
                f"model '{provider.model}' speaks the {provider.api.value} protocol and translation "
                f"from {call.protocol.value} requests is not available yet"
            )
        body = call.body
        if body.get("model") != provider.model_id:
            body = dict(body, model=provider.model_id)
        call.upstream_body = orjson.dumps(body)
        await self.app(scope, receive, send)
