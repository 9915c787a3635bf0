"""Stored Responses, for `previous_response_id`: a response created with `store` not false is kept as
the conversation it ends (its input items, the stored chain before it included, then its output items),
so a later request can continue it by id instead of resending the history.

`ResponseStore`: per process, bounded (entries, bytes) and expiring (TTL), least recently used first out.
`SharedResponseStore`: the same methods over the shared state store (Redis), for several workers and
replicas.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

Item = dict[str, Any]


def input_items(value: Any) -> list[Item]:
    """A Responses `input` as a list of items (a string is one user message)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


class StoredResponses(Protocol):
    """What the Responses endpoints need of a store: `ResponseStore` or `SharedResponseStore`."""

    async def get(self, response_id: str, now: float | None = None) -> list[Item] | None: ...
    async def response(self, response_id: str, now: float | None = None) -> Item | None: ...
    async def delete(self, response_id: str) -> bool: ...
    async def put(self, response_id: str, items: list[Item], now: float | None = None,
                  response: Item | None = None) -> None: ...  # fmt: skip


@dataclass
class _Entry:
    items: list[Item]
    size: int
    expires: float
    response: Item | None = None  # the Response object itself, for GET /v1/responses/{id}


class ResponseStore:
    def __init__(self, max_entries: int = 1000, ttl_s: float = 3600.0, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _live(self, response_id: str, now: float | None) -> _Entry | None:
        """The entry, marked recently used; None when unknown, expired (then dropped) or evicted."""
        entry = self._entries.get(response_id)
        if entry is None:
            return None
        if entry.expires <= (time.monotonic() if now is None else now):
            self._drop(response_id)
            return None
        self._entries.move_to_end(response_id)
        return entry

    async def get(self, response_id: str, now: float | None = None) -> list[Item] | None:
        """The conversation a stored response ends, or None (unknown, expired or evicted)."""
        entry = self._live(response_id, now)
        return [dict(item) for item in entry.items] if entry is not None else None

    async def response(self, response_id: str, now: float | None = None) -> Item | None:
        """The stored Response object, or None."""
        entry = self._live(response_id, now)
        return entry.response if entry is not None else None

    async def delete(self, response_id: str) -> bool:
        if response_id not in self._entries:
            return False
        self._drop(response_id)
        return True

    async def put(self, response_id: str, items: list[Item], now: float | None = None,
                  response: Item | None = None) -> None:  # fmt: skip
        now = time.monotonic() if now is None else now
        size = len(orjson.dumps(items)) + (len(orjson.dumps(response)) if response is not None else 0)
        if size > self.max_bytes:
            return  # larger than the whole store: not kept (a later request naming it gets a clear 400)
        if response_id in self._entries:
            self._drop(response_id)
        self._entries[response_id] = _Entry(items, size, now + self.ttl_s, response)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, response_id: str) -> None:
        entry = self._entries.pop(response_id)
        self._bytes -= entry.size


class SharedResponseStore:
    """Stored Responses in the shared state store (`state: {backend: redis}`), so a conversation continues
    on whichever replica the next request reaches: one JSON value per response, expiring after `ttl_s`
    (Redis bounds the memory with its own eviction policy; responses larger than `max_bytes` are not
    kept). While Redis is unreachable, responses are kept and looked up in this process (`local`)."""

    def __init__(self, state: Any, ttl_s: float = 3600.0, max_bytes: int = 64 * 1024 * 1024,
                 local: ResponseStore | None = None) -> None:  # fmt: skip
        self.state = state  # gateway.state.shared.SharedState: its connection and breaker
        self.ttl_ms = max(1000, int(ttl_s * 1000))
        self.max_bytes = max_bytes
        self.local = local or ResponseStore(ttl_s=ttl_s, max_bytes=max_bytes)

    def _key(self, response_id: str) -> str:
        return f"{self.state.config.prefix}:response:{response_id}"

    async def _call(self, command: str, *args: Any, **options: Any) -> Any:
        return await self.state.command(command, *args, timeout_scale=10, **options)

    async def _entry(self, response_id: str) -> dict[str, Any] | None:
        raw = await self._call("get", self._key(response_id))
        if isinstance(raw, bytes):
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
        return None

    async def get(self, response_id: str, now: float | None = None) -> list[Item] | None:
        entry = await self._entry(response_id)
        if entry is None:
            return await self.local.get(response_id, now)
        items = entry.get("items")
        return [dict(item) for item in items if isinstance(item, dict)] if isinstance(items, list) else None

    async def response(self, response_id: str, now: float | None = None) -> Item | None:
        entry = await self._entry(response_id)
        if entry is None:
            return await self.local.response(response_id, now)
        response = entry.get("response")
        return response if isinstance(response, dict) else None

    async def delete(self, response_id: str) -> bool:
        removed = await self._call("delete", self._key(response_id))
        return bool(removed) | await self.local.delete(response_id)

    async def put(self, response_id: str, items: list[Item], now: float | None = None,
                  response: Item | None = None) -> None:  # fmt: skip
        value = orjson.dumps({"items": items, "response": response})
        if len(value) > self.max_bytes:
            return
        if await self._call("set", self._key(response_id), value, px=self.ttl_ms) is None:
            await self.local.put(response_id, items, now, response)  # Redis unreachable: kept here meanwhile
