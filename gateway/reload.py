"""Config reload: SIGHUP re-reads the config file; a valid one swaps in a new gateway app
atomically, an invalid one is logged and the old config keeps serving.

Requests already in flight finish on the app that accepted them; the old app's upstream clients
are closed once the drain time has passed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from starlette.applications import Starlette

from gateway import redact
from gateway.app import build_app, build_ledgers
from gateway.config import Config, ConfigError, load
from gateway.lifecycle import Lifecycle
from gateway.observe import Metrics

log = logging.getLogger("junction")


class Reloadable:
    """The ASGI app the server runs: forwards every request to the current gateway app."""

    def __init__(self, path: str, config: Config) -> None:
        self.path = path
        self.lifecycle = Lifecycle()
        self.metrics = Metrics()  # counters survive reloads
        # and so do per-key limits and spend (the `state:` backend is chosen once, at start)
        self.ledgers = build_ledgers(config, self.metrics)
        self.current: Starlette = build_app(config, self.lifecycle, self.metrics, self.ledgers)
        self.responses = self.current.state.responses  # and stored Responses
        self._retired: set[asyncio.Task[None]] = set()

    @property
    def state(self) -> Any:
        return self.current.state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.current(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.current.state.start()
                loop = asyncio.get_running_loop()
                try:
                    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
                except (NotImplementedError, RuntimeError):  # not the main thread, or no SIGHUP here
                    log.warning("config reload on SIGHUP is not available in this process")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.current.state.stop()
                await self.ledgers.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def reload(self) -> bool:
        """Load the config file again; True when the new config now serves."""
        try:
            config = await asyncio.to_thread(load, self.path)
        except ConfigError as exc:
            log.error("config reload refused, the previous config keeps serving: %s", "; ".join(exc.problems))
            return False
        redact.install(redact.Redactor(config.secrets()))
        new = build_app(config, self.lifecycle, self.metrics, self.ledgers, self.responses)
        await new.state.start()
        old, self.current = self.current, new
        log.info("config reloaded from %s: %d providers", self.path, len(config.providers))
        task = asyncio.ensure_future(self._retire(old, config.drain_s))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)
        return True

    @staticmethod
    async def _retire(app: Starlette, after: float) -> None:
        await asyncio.sleep(after)  # in-flight requests of the old config finish meanwhile
        await app.state.stop()
