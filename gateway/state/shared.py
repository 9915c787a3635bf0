"""`SharedState`: per-key limits in one Redis (>= 7, or Valkey) for every worker and replica.

Each decision is one atomic Lua script on the server, timed by the server's clock (replicas' clocks
may differ).

* Requests per minute: a sorted set of request ids scored by time, trimmed to the last minute.
* In flight: a sorted set of leases scored by their expiry. A worker that dies never releases its
  leases; they expire on their own after the longest a request may live (`lease_ttl_s`), so slots heal.
* Tokens per minute: reservations in a sorted set (by time) with their amounts in a hash; settling
  overwrites the amount, exact to the token.
* Model cooldowns: announced on a pub/sub channel (`<prefix>:events`) and applied by every other
  process's `Health` (a process that starts later learns of cooldowns from then on). Config reloads
  too: every other process then reloads its own config file if it changed (a revoked key stops
  working everywhere).
* Routing sessions: a conversation's route binding as a small JSON value with the session TTL, read
  before a decision and written after it, under a digest of the configured routes (a reload that
  changes them starts every conversation afresh); a new conversation's first binding is written only if
  none exists (first writer wins), so two replicas deciding its first turn at once agree on the next.

A request's admission under all of its key's limits is one script (one round trip); its settlement
(the slot given back, the reservation replaced by the usage) another, sent after the response.

Redis unreachable or slow (`state.timeout`, counted while this process could run: a deadline that
comes due while the process was stalled, by a busy event loop or a starved CPU, is extended once, as
the reply may be waiting unread in the socket): the decision is taken by a `LocalState` holding
`local_share` of each limit and marked `degraded`; a refused connection, or three late calls in a row,
leave Redis alone for `retry_after` (a circuit breaker: a dead Redis costs a few short timeouts per
interval, not one per request); then the next decision tries Redis again, so recovery needs no restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from dataclasses import replace
from typing import Any, Callable

import orjson

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.config import SharedState as StateConfig
from gateway.state import WINDOW_S, Admission, Limits
from gateway.state.local import LocalState

log = logging.getLogger("junction.state")
SLOW_TO_OPEN = 3  # timed-out calls in a row that open the breaker (a refused connection opens it at once)


class Deadline:
    """`asyncio.timeout(seconds)` that forgives this process's own stalls: when the timer runs more than
    half a timeout late, the process (not Redis) was held up, and the reply may already sit unread in
    the socket; the call then gets one more `seconds` before it counts as late."""

    def __init__(self, timer: asyncio.Timeout, seconds: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.timer, self.seconds, self.forgiven = timer, seconds, False
        self.due = self.loop.time() + seconds
        self.handle = self.loop.call_at(self.due, self.expire)

    def expire(self) -> None:
        now = self.loop.time()
        if not self.forgiven and now - self.due > self.seconds / 2:
            self.forgiven, self.due = True, now + self.seconds
            self.handle = self.loop.call_at(self.due, self.expire)
        else:
            self.timer.reschedule(now)  # fires: the work is cancelled, TimeoutError raised

    def cancel(self) -> None:
        self.handle.cancel()

# KEYS: requests-per-minute set, leases set, reservation times (sorted set), reservation amounts (hash), the
# budget window's committed spend (integer nano-dollars), its holds (sorted set by expiry), their amounts (hash),
# the token window's total.
# ARGV: rpm, max_parallel, tpm (-1: none), tokens, request id, lease ttl ms, window ms, budget (-1: none), hold.
# Every limit is checked before anything is counted, so a refusal leaves no trace. Holds expire like leases (a
# killed worker's hold heals); committed spend stays for the window.
# Returns {admitted, refused, count, reset_ms, used, spent, held}; `used` as a string (replies truncate floats).
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, par, tpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, id, ttl, window = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local budget, hold = tonumber(ARGV[8]), tonumber(ARGV[9])
if par >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local running = redis.call('ZCARD', KEYS[2])
  if running >= par then return {0, 'parallel', running, 0, '0', 0, 0} end
end
local count, reset = 0, window
if rpm >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  count = redis.call('ZCARD', KEYS[1])
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #oldest > 0 then reset = tonumber(oldest[2]) + window - now end
  if count >= rpm then return {0, 'rpm', count, reset, '0', 0, 0} end
end
local used = 0
if tpm >= 0 then
  -- the window's total is kept in KEYS[8]: expired reservations are taken off it (at most 1,000 a call), so an
  -- admission costs the same at a million tokens a minute as at a thousand
  local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - window, 'LIMIT', 0, 1000)
  if #old > 0 then
    local gone = 0
    for _, v in ipairs(redis.call('HMGET', KEYS[4], unpack(old))) do gone = gone + (tonumber(v) or 0) end
    redis.call('ZREM', KEYS[3], unpack(old))
    redis.call('HDEL', KEYS[4], unpack(old))
    redis.call('DECRBY', KEYS[8], gone)
  end
  used = math.max(0, tonumber(redis.call('GET', KEYS[8]) or '0'))
  if redis.call('ZCARD', KEYS[3]) > 0 and used + tokens > tpm then
    local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    return {0, 'tpm', count, tonumber(oldest[2]) + window - now, tostring(used), 0, 0}
  end
end
local spent, held = 0, 0
if budget >= 0 then
  -- no spend recorded for the window: Redis lost it (or never had it); the gateway seeds it from the ledger
  if redis.call('EXISTS', KEYS[5]) == 0 then return {0, 'unseeded', count, reset, tostring(used), 0, 0} end
  local gone = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now)
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
    redis.call('HDEL', KEYS[7], unpack(gone))
  end
  spent = tonumber(redis.call('GET', KEYS[5]) or '0')
  for _, v in ipairs(redis.call('HVALS', KEYS[7])) do held = held + tonumber(v) end
  if spent + held >= budget then return {0, 'budget', count, reset, tostring(used), spent, held} end
end
if rpm >= 0 then
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('PEXPIRE', KEYS[1], window)
  count = count + 1
end
if tpm >= 0 then
  redis.call('ZADD', KEYS[3], now, id)
  redis.call('HSET', KEYS[4], id, tokens)
  redis.call('INCRBY', KEYS[8], tokens)
  redis.call('PEXPIRE', KEYS[3], window)
  redis.call('PEXPIRE', KEYS[4], window)
  redis.call('PEXPIRE', KEYS[8], window)
end
if par >= 0 then
  redis.call('ZADD', KEYS[2], now + ttl, id)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
if budget >= 0 then
  redis.call('ZADD', KEYS[6], now + ttl, id)
  redis.call('HSET', KEYS[7], id, hold)
  redis.call('PEXPIRE', KEYS[6], ttl)
  redis.call('PEXPIRE', KEYS[7], ttl)
end
return {1, '', count, reset, tostring(used), spent, held}
"""

# KEYS: leases set, reservation amounts (hash), budget spend, holds, hold amounts, the window's token total.
# ARGV: request id, give back the lease (1/0), tokens (-1: no reservation), cost (-1: no hold), spend ttl ms (0:
# kept). A reservation already out of the window stays out.
_SETTLE = """
if ARGV[2] == '1' then redis.call('ZREM', KEYS[1], ARGV[1]) end
if tonumber(ARGV[3]) >= 0 then
  local before = redis.call('HGET', KEYS[2], ARGV[1])
  if before then
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
    redis.call('INCRBY', KEYS[6], tonumber(ARGV[3]) - tonumber(before))
  end
end
if tonumber(ARGV[4]) >= 0 then
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('HDEL', KEYS[5], ARGV[1])
  -- spend lost with Redis's data stays lost here: the next admission seeds it from the ledger, this one included
  if redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('INCRBY', KEYS[3], ARGV[4])
    if tonumber(ARGV[5]) > 0 then redis.call('PEXPIRE', KEYS[3], ARGV[5]) end
  end
end
return 1
"""

# KEYS: a model's failure count. ARGV: window ms. The count of the window that the first failure opened.
_FAIL = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""

# KEYS: the budget window's committed spend. ARGV: spend (nano-dollars), keep ms (0: for good). Only ever raised.
_SEED = """
local now = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > now then redis.call('SET', KEYS[1], ARGV[1]) end
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


def _keep_ms(window_end: float) -> int:
    """A windowed budget's spend is kept a day past its window (for reports), a lifetime budget's for good (0)."""
    return max(1000, int((window_end - time.time() + 86400) * 1000)) if window_end else 0


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
        self._slow = 0  # consecutive timed-out calls
        self._pending: set[asyncio.Task[None]] = set()
        self.origin = f"{os.getpid()}-{secrets.token_hex(4)}"  # this process, on the event channel
        self._apply: Callable[[str, float], None] | None = None
        self._on_reload: Callable[[], None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._closed = False

    # -- the connection and the breaker --------------------------------------------------------
    def _redis(self) -> Any:
        if self._client is None:  # created on first use, inside the serving event loop
            # No socket timeouts of the client's own: `call` times every command (see `Deadline`).
            self._client = aioredis.Redis.from_url(self.config.url, retry_on_timeout=False)
            self._scripts = {name: self._client.register_script(code) for name, code in (("admit", _ADMIT), ("settle", _SETTLE), ("seed", _SEED),
                                                                    ("fail", _FAIL))}  # fmt: skip
        return self._client

    @property
    def available(self) -> bool:
        """False while the breaker is open (decisions are local meanwhile)."""
        return self.clock() >= self._down_until

    def failed(self, exc: BaseException) -> None:
        """A call failed: a refused or broken connection opens the breaker at once; timeouts only after
        `SLOW_TO_OPEN` in a row, since a busy event loop (not Redis) can make one call late."""
        if isinstance(exc, (TimeoutError, RedisTimeoutError)):
            self._slow += 1
            if self._slow < SLOW_TO_OPEN:
                return
        if self.available:
            log.warning("state: redis unreachable (%s: %s); limits are enforced per process with %.0f%% of each "
                        "for %.1f s", type(exc).__name__, exc, self.config.local_share * 100, self.config.retry_s)  # fmt: skip
        self._slow = 0
        self._down_until = self.clock() + self.config.retry_s

    async def call(self, work: Callable[[Any], Any], timeout_scale: float = 1.0) -> Any:
        """`await work(client)` under the breaker and the timeout; None when Redis failed or is left alone."""
        if not self.available:
            return None
        try:
            client = self._redis()
            async with asyncio.timeout(None) as timer:
                deadline = Deadline(timer, self.config.timeout_s * timeout_scale)
                try:
                    result = await work(client)
                finally:
                    deadline.cancel()
        except (RedisError, OSError, TimeoutError) as exc:
            self.failed(exc)
            return None
        self._slow = 0
        return result

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """One script call; None when Redis failed or timed out."""
        return await self.call(lambda _client: self._scripts[name](keys=keys, args=args))

    async def command(self, name: str, *args: Any, timeout_scale: float = 1.0, **options: Any) -> Any:
        """One plain Redis command (GET, SET, DEL...); None when Redis failed."""
        return await self.call(lambda client: getattr(client, name)(*args, **options), timeout_scale)

    async def warm(self) -> None:
        """Connect and load the scripts at start-up, so the first requests do not pay for it (a first call
        slower than `timeout` would be decided locally)."""
        try:
            client = self._redis()
            async with asyncio.timeout(max(1.0, self.config.timeout_s * 20)):
                for script in self._scripts.values():
                    await client.script_load(script.script)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("state: redis not reachable at start-up (%s); limits are per process until it is", exc)

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
    def _budget_keys(self, key: str, window: int) -> list[str]:
        # "-n": amounts in nano-dollars (a window kept in other units under other names is seeded afresh)
        return [self._key(f"{kind}-n:{window}", key) for kind in ("spent", "holds", "held")]

    async def admit(self, key: str, limits: Limits, tokens: int, request_id: str, hold: int = 0) -> Admission:
        def arg(value: int | None) -> int:
            return -1 if value is None else value

        window = limits.window_start(time.time())  # epoch-aligned budget windows
        keys = [self._key(kind, key) for kind in ("rpm", "run", "tpm", "tpmv")] + self._budget_keys(key, window) + \
            [self._key("tpmsum", key)]  # fmt: skip
        args = [arg(limits.rpm), arg(limits.max_parallel), arg(limits.tpm), tokens, request_id, self.lease_ttl_ms,
                int(WINDOW_S * 1000), arg(limits.budget), hold]  # fmt: skip
        reply = await self._run("admit", keys, args)
        if reply is None:
            self._degraded("admit")
            if limits.budget is not None and self.config.budget_fail_mode == "closed":
                return Admission(False, "unavailable", reset_s=self.config.retry_s, degraded=True)
            if self.config.limits_fail_mode == "closed" and \
                    (limits.rpm is not None or limits.max_parallel is not None or limits.tpm is not None):  # fmt: skip
                return Admission(False, "limits_unavailable", reset_s=self.config.retry_s, degraded=True)
            return replace(await self.local.admit(key, limits, tokens, request_id, hold), degraded=True)
        ok, refused, count, reset_ms, used, spent, held = reply
        refused = refused.decode() if isinstance(refused, bytes) else refused
        return Admission(bool(ok), refused or None, int(count), int(reset_ms) / 1000, float(used),
                         request_id if ok and limits.max_parallel is not None else None,
                         request_id if ok and limits.tpm is not None else None, spent=int(spent), held=int(held),
                         hold=request_id if ok and limits.budget is not None else None, window=window,
                         window_end=limits.window_end(window))  # fmt: skip

    async def settle(self, key: str, admission: Admission, tokens: int, cost: int = 0) -> None:
        if admission.lease is None and admission.entry is None and admission.hold is None:
            return
        if admission.degraded:
            await self.local.settle(key, admission, tokens, cost)
            return
        request_id = admission.lease or admission.entry or admission.hold
        keep_ms = _keep_ms(admission.window_end)
        args = [request_id, 1 if admission.lease else 0, tokens if admission.entry else -1,
                cost if admission.hold else -1, keep_ms]  # fmt: skip
        keys = [self._key("run", key), self._key("tpmv", key)] + self._budget_keys(key, admission.window) + \
            [self._key("tpmsum", key)]  # fmt: skip
        self._later(self._run("settle", keys, args))

    async def seed(self, key: str, window: int, window_end: float, spent: int) -> None:
        await self.local.seed(key, window, window_end, spent)  # for decisions while Redis is unreachable
        if await self._run("seed", [self._budget_keys(key, window)[0]], [spent, _keep_ms(window_end)]) is None:
            self._degraded("seed")

    # -- routing sessions ---------------------------------------------------------------------------
    def sessions(self, ttl_s: float, routes: str = "") -> "RemoteSessions":
        return RemoteSessions(self, ttl_s, routes)

    # -- cooldowns over pub/sub -----------------------------------------------------------------
    @property
    def channel(self) -> str:
        return f"{self.config.prefix}:events"

    def announce_cooldown(self, model: str, seconds: float) -> None:
        self._announce({"type": "cool", "model": model, "seconds": seconds})

    def announce_reload(self) -> None:
        self._announce({"type": "reload"})

    def count_failure(self, model: str, threshold: int, cooldown: float) -> None:
        self._later(self._count_failure(model, threshold, cooldown))

    async def _count_failure(self, model: str, threshold: int, cooldown: float) -> None:
        key = f"{self.config.prefix}:fails:{model}"
        count = await self._run("fail", [key], [int(WINDOW_S * 1000)])
        if count is not None and int(count) >= threshold:
            await self.command("delete", key)
            log.warning("model %s failed %d times across the fleet within a minute: cooling it for %g s everywhere",
                        model, int(count), cooldown)  # fmt: skip
            if self._apply is not None:
                self._apply(model, cooldown)  # this process's Health
            self.announce_cooldown(model, cooldown)

    def clear_failures(self, model: str) -> None:
        self._later(self.command("delete", f"{self.config.prefix}:fails:{model}"))

    def _announce(self, event: dict[str, Any]) -> None:
        if self.available:
            self._later(self._publish(orjson.dumps({**event, "origin": self.origin})))

    def follow_reloads(self, apply: Callable[[], None]) -> None:
        self._on_reload = apply

    async def _publish(self, event: bytes) -> None:
        await self.command("publish", self.channel, event, timeout_scale=4)

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
                    # Announcements made before this subscription (this process starting, or Redis coming back)
                    # were missed: the reload check runs once now (it reloads only if the config file changed).
                    if self._on_reload is not None:
                        self._on_reload()
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
        if not isinstance(event, dict) or event.get("origin") == self.origin:
            return
        seconds = event.get("seconds")
        if event.get("type") == "cool" and isinstance(event.get("model"), str) and isinstance(seconds, (int, float)):
            if self._apply is not None:
                self._apply(event["model"], float(seconds))
        elif event.get("type") == "reload" and self._on_reload is not None:
            self._on_reload()

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

    def __init__(self, state: SharedState, ttl_s: float, routes: str = "") -> None:
        self.state = state
        self.ttl_ms = max(1000, int(ttl_s * 1000))
        self.routes = routes  # a digest of the routes: a config that changes them leaves old bindings behind

    def _key(self, session: str) -> str:
        return f"{self.state.config.prefix}:session:{self.routes}:{session}"

    async def load(self, session: str) -> Any:
        from router.preferences import SessionState

        raw = await self.state.command("get", self._key(session))
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
        await self.state.command("set", key, value, px=self.ttl_ms, nx=first, timeout_scale=4)
