"""Config reload: SIGHUP re-reads the config file; a valid one swaps in a new gateway app
atomically, an invalid one is logged and the old config keeps serving.

Requests already in flight finish on the app that accepted them; the old app's upstream clients
are closed once the drain time has passed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from gateway import redact
from gateway.app import build_app, build_ledgers
from gateway.config import Config, ConfigError, load, text_digest
from gateway.lifecycle import Lifecycle
from gateway.observe import Metrics

log = logging.getLogger("junction")


def file_digest(path: str) -> str:
    return text_digest(Path(path).read_text(encoding="utf-8"))


class Reloadable:
    """The ASGI app the server runs: forwards every request to the current gateway app."""

    def __init__(self, path: str, config: Config) -> None:
        self.path = path
        self.digest = config.digest  # of the config text this process serves
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
                # Another process reloaded (a SIGHUP reached it): this one's file may have changed too.
                self.ledgers.state.follow_reloads(lambda: asyncio.ensure_future(self.reload(if_changed=True)))
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

    async def reload(self, if_changed: bool = False) -> bool:
        """Load the config file again; True when the new config now serves. A reload asked for by a
        signal is announced to the other processes sharing the state store; one they announce reloads
        here only `if_changed` (the file's content differs from what serves)."""
        try:
            digest = await asyncio.to_thread(file_digest, self.path)
            if if_changed and digest == self.digest:
                return False
            config = await asyncio.to_thread(load, self.path)
        except OSError as exc:
            log.error("config reload refused, the previous config keeps serving: cannot read %s (%s)", self.path, exc)
            return False
        except ConfigError as exc:
            log.error("config reload refused, the previous config keeps serving: %s", "; ".join(exc.problems))
            return False
        redact.install(redact.Redactor(config.secrets()))
        new = build_app(config, self.lifecycle, self.metrics, self.ledgers, self.responses)
        await new.state.start()
        old, self.current = self.current, new
        self.digest = config.digest  # the text actually loaded (the file may have changed again since)
        log.info("config reloaded from %s: %d providers%s", self.path, len(config.providers),
                 " (announced by another process)" if if_changed else "")  # fmt: skip
        if not if_changed:
            self.ledgers.state.announce_reload()
        task = asyncio.ensure_future(self._retire(old, config.drain_s))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)
        return True

    @staticmethod
    async def _retire(app: Starlette, after: float) -> None:
        await asyncio.sleep(after)  # in-flight requests of the old config finish meanwhile
        await app.state.stop()
