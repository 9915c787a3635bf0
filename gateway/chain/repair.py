"""Stream repair layer.

Present as an explicit step of the chain so the response path has one place that guarantees
well-formed streams. It passes messages through unchanged until stream repair is added; the
boundary already ends a stream that fails mid-way with a protocol error frame.
"""

from __future__ import annotations

from typing import Any


class Repair:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
