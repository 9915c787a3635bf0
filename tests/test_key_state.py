"""The key state's semantics, one suite for both backends: `LocalState` (memory) and `SharedState`
against a real redis-server; then what only the shared one does (leases that expire, the breaker)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Awaitable, Callable

import pytest

from gateway.config import SharedState as StateConfig
from gateway.state import KeyState
from gateway.state.local import LocalState


def shared(redis_service: Any, lease_ttl_s: float = 30.0, **options: Any) -> Any:
    from gateway.state.shared import SharedState

    config = StateConfig("redis", redis_service.url, prefix=f"t-{uuid.uuid4().hex[:8]}", **options)
    return SharedState(config, lease_ttl_s)


@pytest.fixture(params=["memory", "redis"])
def make_state(request: pytest.FixtureRequest) -> Callable[[], KeyState]:
    if request.param == "memory":
        return LocalState
    server = request.getfixturevalue("redis_service")
    return lambda: shared(server)


def run(body: Callable[[KeyState], Awaitable[None]], state: KeyState) -> None:
    async def main() -> None:
        try:
            await body(state)
        finally:
            await state.close()

    asyncio.run(main())


def test_requests_per_minute_count_only_admitted_requests(make_state: Callable[[], KeyState]) -> None:
    async def body(state: KeyState) -> None:
        verdicts = [await state.admit("k", 5, None, f"r{i}") for i in range(8)]
        assert [v.ok for v in verdicts] == [True] * 5 + [False] * 3
        assert [v.count for v in verdicts[:5]] == [1, 2, 3, 4, 5]
        assert verdicts[5].refused == "rpm" and 55 < verdicts[5].reset_s <= 60 and verdicts[5].retry_after >= 55
        assert (await state.admit("other", 5, None, "x")).ok  # per key

    run(body, make_state())


def test_parallel_slots_are_taken_and_given_back(make_state: Callable[[], KeyState]) -> None:
    async def body(state: KeyState) -> None:
        first, second = await state.admit("k", None, 2, "a"), await state.admit("k", None, 2, "b")
        third = await state.admit("k", None, 2, "c")
        assert first.ok and second.ok and not third.ok and third.refused == "parallel" and third.count == 2
        await state.release("k", first)
        await asyncio.sleep(0.05)  # the shared backend releases off the response path
        assert (await state.admit("k", None, 2, "d")).ok
        # a request refused by its rate limit takes no slot
        limited = [await state.admit("j", 1, 5, f"j{i}") for i in range(3)]
        assert [v.refused for v in limited] == [None, "rpm", "rpm"]
        assert (await state.admit("j", None, 2, "j9")).ok and (await state.admit("j", None, 2, "j10")).ok is False

    run(body, make_state())


def test_tokens_are_reserved_then_settled_exactly(make_state: Callable[[], KeyState]) -> None:
    async def body(state: KeyState) -> None:
        first = await state.reserve("k", 1000, 700, "a")
        assert first.ok and first.used == 0
        assert not (await state.reserve("k", 1000, 400, "b")).ok  # 700 reserved + 400 > 1000
        await state.settle("k", first, 123)  # the answer used less than reserved
        await asyncio.sleep(0.05)
        second = await state.reserve("k", 1000, 877, "c")  # 123 + 877 = 1000: exactly the limit
        assert second.ok and second.used == 123
        refused = await state.reserve("k", 1000, 1, "d")
        assert not refused.ok and refused.used == 1000 and refused.retry_after >= 55
        lonely = await state.reserve("big", 10, 50, "e")  # an empty window admits one oversized request
        assert lonely.ok and not (await state.reserve("big", 10, 1, "f")).ok

    run(body, make_state())


def test_a_dead_workers_lease_expires_on_its_own(redis_service: Any) -> None:
    async def body(state: KeyState) -> None:
        held = await state.admit("k", None, 1, "dies-with-its-worker")  # never released
        assert held.ok and not (await state.admit("k", None, 1, "b")).ok
        await asyncio.sleep(1.3)
        assert (await state.admit("k", None, 1, "c")).ok

    run(body, shared(redis_service, lease_ttl_s=1.0))


def test_an_unreachable_redis_degrades_to_a_local_share_and_recovers(redis_service: Any) -> None:
    degraded: list[str] = []

    async def body(state: Any) -> None:
        state.on_degraded = degraded.append
        assert not (await state.admit("k", 4, None, "a")).degraded
        redis_service.stop()
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            verdicts = [await state.admit("k", 4, None, f"b{i}") for i in range(4)]
            # one short timeout, then the breaker answers locally without waiting
            assert loop.time() - started < 0.5
            assert all(v.degraded for v in verdicts) and [v.ok for v in verdicts] == [True, True, False, False]
            assert degraded == ["admit"] * 4
        finally:
            redis_service.start()
        await asyncio.sleep(0.35)  # the breaker's retry_after
        back = await state.admit("k", 4, None, "c")
        assert back.ok and not back.degraded

    run(body, shared(redis_service, timeout_s=0.1, retry_s=0.3, local_share=0.5))
