"""Route-by-preference layer.

Present as an explicit step of the chain; the embedding router fills it in. Until then every
request keeps the model chosen by alias resolution and reports the route `none`.
"""

from __future__ import annotations

from typing import Any


class Routing:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
