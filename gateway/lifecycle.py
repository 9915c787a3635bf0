"""Start-up and shutdown state shared by the app and the server: readiness and drain."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass
class Lifecycle:
    draining: bool = False  # a stop signal arrived: readiness fails, new LLM calls are refused
    requests: int = 0  # LLM calls being served (the drain waits for these)
    streams: int = 0  # of which streams being relayed

    async def wait_idle(self, timeout: float) -> None:
        """Give interrupted streams a moment to write their final error frame."""
        deadline = time.monotonic() + timeout
        while self.streams and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
