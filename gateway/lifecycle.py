"""Start-up and shutdown state shared by the app and the server: readiness and drain."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass
class Lifecycle:
    draining: bool = False  # a stop signal arrived: readiness fails, streams are draining
    in_flight: int = 0  # LLM calls being served

    async def wait_idle(self, timeout: float) -> None:
        """Give interrupted streams a moment to write their final error frame."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
