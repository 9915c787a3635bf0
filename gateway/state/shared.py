"""`SharedState`: per-key limits in one Redis (>= 7, or Valkey) for every worker and replica.

Each decision is one atomic Lua script on the server, timed by the server's clock (replicas' clocks
may differ): a request's admission (requests per minute and an in-flight lease) is one round trip, a
token reservation another, and releases and settlements go out after the response, off its path.

* Requests per minute: a sorted set of request ids scored by time, trimmed to the last minute.
* In flight: a sorted set of leases scored by their expiry. A worker that dies never releases its
  leases; they expire on their own after the longest a request may live (`lease_ttl_s`), so slots heal.
* Tokens per minute: reservations in a sorted set (by time) with their amounts in a hash; settling
  overwrites the amount, exact to the token.
* Model cooldowns: announced on a pub/sub channel (`<prefix>:events`) and applied by every other
  process's `Health` (a process that starts later learns of cooldowns from then on).
* Routing sessions: a conversation's route binding as a small JSON value with the session TTL, read
  before a decision and written after it; a new conversation's first binding is written only if
  none exists (first writer wins), so two replicas deciding its first turn at once agree on the next.

Redis unreachable or slow (`state.timeout`): the decision is taken by a `LocalState` holding
`local_share` of each limit, marked `degraded`, and Redis is left alone for `retry_after` (a circuit
breaker: a dead Redis costs one short timeout per interval, not one per request); then the next
decision tries Redis again, so recovery needs no restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from typing import Any, Callable

import orjson

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.config import SharedState as StateConfig
from gateway.state import WINDOW_S, Admission, Reservation
from gateway.state.local import LocalState

log = logging.getLogger("junction.state")

# KEYS: requests-per-minute set, leases set. ARGV: rpm (-1: none), max_parallel (-1: none), request id,
# lease ttl ms, window ms. Returns {admitted, refused, count, reset_ms}.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, par, id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local ttl, window = tonumber(ARGV[4]), tonumber(ARGV[5])
if par >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local running = redis.call('ZCARD', KEYS[2])
  if running >= par then return {0, 'parallel', running, 0} end
end
local count, reset = 0, window
if rpm >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  count = redis.call('ZCARD', KEYS[1])
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #oldest > 0 then reset = tonumber(oldest[2]) + window - now end
  if count >= rpm then return {0, 'rpm', count, reset} end
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('PEXPIRE', KEYS[1], window)
  count = count + 1
end
if par >= 0 then
  redis.call('ZADD', KEYS[2], now + ttl, id)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {1, '', count, reset}
"""

# KEYS: reservation times (sorted set), amounts (hash). ARGV: tpm, tokens, request id, window ms.
# Returns {admitted, used, reset_ms}; `used` as a string (Lua numbers lose nothing, replies would).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tpm, tokens, id, window = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - window)
if #old > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  redis.call('HDEL', KEYS[2], unpack(old))
end
local used = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do used = used + tonumber(v) end
local n = redis.call('ZCARD', KEYS[1])
if n > 0 and used + tokens > tpm then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tostring(used), tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, id)
redis.call('HSET', KEYS[2], id, tokens)
redis.call('PEXPIRE', KEYS[1], window)
redis.call('PEXPIRE', KEYS[2], window)
return {1, tostring(used), window}
"""

# KEYS: amounts (hash). ARGV: request id, tokens. A reservation already out of the window stays out.
_SETTLE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"""


class SharedState:
    def __init__(self, config: StateConfig, lease_ttl_s: float, on_degraded: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        assert config.url is not None
        self.config = config
        self.lease_ttl_ms = int(lease_ttl_s * 1000)
        self.on_degraded = on_degraded
        self.clock = clock
        self.local = LocalState(share=config.local_share)
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._down_until = 0.0
        self._pending: set[asyncio.Task[None]] = set()
        self.origin = f"{os.getpid()}-{secrets.token_hex(4)}"  # this process, on the event channel
        self._apply: Callable[[str, float], None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._closed = False

    # -- the connection and the breaker --------------------------------------------------------
    def _redis(self) -> Any:
        if self._client is None:  # created on first use, inside the serving event loop
            timeout = self.config.timeout_s
            self._client = aioredis.Redis.from_url(self.config.url, socket_timeout=timeout,
                                                   socket_connect_timeout=timeout, retry_on_timeout=False)  # fmt: skip
            self._scripts = {name: self._client.register_script(code)
                             for name, code in (("admit", _ADMIT), ("reserve", _RESERVE), ("settle", _SETTLE))}  # fmt: skip
        return self._client

    @property
    def available(self) -> bool:
        """False while the breaker is open (decisions are local meanwhile)."""
        return self.clock() >= self._down_until

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """One script call; None when Redis failed or timed out (the breaker then opens)."""
        if not self.available:
            return None
        try:
            self._redis()
            async with asyncio.timeout(self.config.timeout_s):
                return await self._scripts[name](keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            if self.available:
                log.warning("state: redis unreachable (%s: %s); limits are enforced per process with %.0f%% of "
                            "each for %.1f s", type(exc).__name__, exc, self.config.local_share * 100,
                            self.config.retry_s)  # fmt: skip
            self._down_until = self.clock() + self.config.retry_s
            return None

    def _degraded(self, operation: str) -> None:
        if self.on_degraded is not None:
            self.on_degraded(operation)

    def _key(self, kind: str, key: str) -> str:
        # One hash slot per gateway key (Redis Cluster keeps a script's keys together).
        return f"{self.config.prefix}:{{{key}}}:{kind}"

    def _later(self, work: Any) -> None:
        """Run a release or settlement after the response, off its path."""
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # -- KeyState --------------------------------------------------------------------------------
    async def admit(self, key: str, rpm: int | None, max_parallel: int | None, request_id: str) -> Admission:
        args = [-1 if rpm is None else rpm, -1 if max_parallel is None else max_parallel, request_id,
                self.lease_ttl_ms, int(WINDOW_S * 1000)]  # fmt: skip
        reply = await self._run("admit", [self._key("rpm", key), self._key("run", key)], args)
        if reply is None:
            self._degraded("admit")
            local = await self.local.admit(key, rpm, max_parallel, request_id)
            return Admission(local.ok, local.refused, local.count, local.reset_s, local.lease, degraded=True)
        ok, refused, count, reset_ms = reply
        refused = refused.decode() if isinstance(refused, bytes) else refused
        return Admission(bool(ok), refused or None, int(count), int(reset_ms) / 1000,
                         request_id if ok and max_parallel is not None else None)  # fmt: skip

    async def release(self, key: str, admission: Admission) -> None:
        if admission.lease is None:
            return
        if admission.degraded:
            await self.local.release(key, admission)
            return
        self._later(self._release(key, admission.lease))

    async def _release(self, key: str, lease: str) -> None:
        if not self.available:
            return  # the lease expires on its own
        try:
            async with asyncio.timeout(self.config.timeout_s * 4):
                await self._redis().zrem(self._key("run", key), lease)
        except (RedisError, OSError, TimeoutError):
            log.debug("state: a lease of %s was left to expire", key)

    async def reserve(self, key: str, tpm: int, tokens: int, request_id: str) -> Reservation:
        reply = await self._run("reserve", [self._key("tpm", key), self._key("tpmv", key)],
                                [tpm, tokens, request_id, int(WINDOW_S * 1000)])  # fmt: skip
        if reply is None:
            self._degraded("reserve")
            local = await self.local.reserve(key, tpm, tokens, request_id)
            return Reservation(local.ok, local.used, local.reset_s, local.entry, degraded=True)
        ok, used, reset_ms = reply
        return Reservation(bool(ok), float(used), int(reset_ms) / 1000, request_id if ok else None)

    async def settle(self, key: str, reservation: Reservation, tokens: int) -> None:
        if reservation.entry is None:
            return
        if reservation.degraded:
            await self.local.settle(key, reservation, tokens)
            return
        self._later(self._run("settle", [self._key("tpmv", key)], [reservation.entry, tokens]))

    # -- routing sessions ---------------------------------------------------------------------------
    def sessions(self, ttl_s: float) -> "RemoteSessions":
        return RemoteSessions(self, ttl_s)

    # -- cooldowns over pub/sub -----------------------------------------------------------------
    @property
    def channel(self) -> str:
        return f"{self.config.prefix}:events"

    def announce_cooldown(self, model: str, seconds: float) -> None:
        if not self.available:
            return
        event = orjson.dumps({"type": "cool", "model": model, "seconds": seconds, "origin": self.origin})
        self._later(self._publish(event))

    async def _publish(self, event: bytes) -> None:
        try:
            async with asyncio.timeout(self.config.timeout_s * 4):
                await self._redis().publish(self.channel, event)
        except (RedisError, OSError, TimeoutError):
            log.debug("state: a cooldown announcement was lost")

    def follow_cooldowns(self, apply: Callable[[str, float], None]) -> None:
        self._apply = apply  # the latest Health (a reload builds a new one)
        if self._listener is None:
            self._listener = asyncio.ensure_future(self._listen())

    async def _listen(self) -> None:
        """Apply other processes' cooldowns; reconnects after a Redis outage, for as long as this lives."""
        while not self._closed:
            client = aioredis.Redis.from_url(self.config.url, socket_connect_timeout=self.config.timeout_s * 4,
                                             health_check_interval=10)  # fmt: skip
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    while not self._closed:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None:
                            self._received(message.get("data"))
            except (RedisError, OSError, TimeoutError) as exc:
                log.debug("state: event channel lost (%s); retrying", exc)
                await asyncio.sleep(self.config.retry_s)
            finally:
                await client.aclose()

    def _received(self, data: Any) -> None:
        try:
            event = orjson.loads(data)
        except (orjson.JSONDecodeError, TypeError):
            return
        if not isinstance(event, dict) or event.get("origin") == self.origin or self._apply is None:
            return
        seconds = event.get("seconds")
        if event.get("type") == "cool" and isinstance(event.get("model"), str) and isinstance(seconds, (int, float)):
            self._apply(event["model"], float(seconds))

    async def close(self) -> None:
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=1.0)
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class RemoteSessions:
    """The router's view of shared session states (`Router.remote_sessions`)."""

    def __init__(self, state: SharedState, ttl_s: float) -> None:
        self.state = state
        self.ttl_ms = max(1000, int(ttl_s * 1000))

    def _key(self, session: str) -> str:
        return f"{self.state.config.prefix}:session:{session}"

    async def load(self, session: str) -> Any:
        from router.preferences import SessionState

        if not self.state.available:
            return None
        try:
            async with asyncio.timeout(self.state.config.timeout_s):
                raw = await self.state._redis().get(self._key(session))
        except (RedisError, OSError, TimeoutError):
            self.state._down_until = self.state.clock() + self.state.config.retry_s
            return None
        try:
            value = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("fingerprint"), str):
            return None
        return SessionState(value.get("route"), value.get("before"), value["fingerprint"])

    def save(self, session: str, state: Any, known: bool) -> None:
        value = orjson.dumps({"route": state.route, "before": state.before, "fingerprint": state.fingerprint})
        self.state._later(self._save(self._key(session), value, first=not known))

    async def _save(self, key: str, value: bytes, first: bool) -> None:
        if not self.state.available:
            return
        try:
            async with asyncio.timeout(self.state.config.timeout_s * 4):
                await self.state._redis().set(key, value, px=self.ttl_ms, nx=first)
        except (RedisError, OSError, TimeoutError):
            log.debug("state: a session binding was not saved")
