"""The key state's semantics, one suite for both backends: `LocalState` (memory) and `SharedState`
against a real redis-server; then what only the shared one does (leases that expire, the breaker)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from typing import Any, Awaitable, Callable

import pytest

from gateway.config import SharedState as StateConfig
from gateway.state import KeyState, Limits
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
        verdicts = [await state.admit("k", Limits(rpm=5), 0, f"r{i}") for i in range(8)]
        assert [v.ok for v in verdicts] == [True] * 5 + [False] * 3
        assert [v.count for v in verdicts[:5]] == [1, 2, 3, 4, 5]
        assert verdicts[5].refused == "rpm" and 55 < verdicts[5].reset_s <= 60 and verdicts[5].retry_after >= 55
        assert (await state.admit("other", Limits(rpm=5), 0, "x")).ok  # per key

    run(body, make_state())


def test_parallel_slots_are_taken_and_given_back(make_state: Callable[[], KeyState]) -> None:
    async def body(state: KeyState) -> None:
        two = Limits(max_parallel=2)
        first, second = await state.admit("k", two, 0, "a"), await state.admit("k", two, 0, "b")
        third = await state.admit("k", two, 0, "c")
        assert first.ok and second.ok and not third.ok and third.refused == "parallel" and third.count == 2
        await state.settle("k", first, 0)
        await asyncio.sleep(0.05)  # the shared backend settles off the response path
        assert (await state.admit("k", two, 0, "d")).ok
        # a request refused by one limit takes nothing under the others
        limited = [await state.admit("j", Limits(rpm=1, max_parallel=5), 0, f"j{i}") for i in range(3)]
        assert [v.refused for v in limited] == [None, "rpm", "rpm"]
        assert (await state.admit("j", two, 0, "j9")).ok and not (await state.admit("j", two, 0, "j10")).ok

    run(body, make_state())


def test_tokens_are_reserved_then_settled_exactly(make_state: Callable[[], KeyState]) -> None:
    async def body(state: KeyState) -> None:
        limit = Limits(tpm=1000)
        first = await state.admit("k", limit, 700, "a")
        assert first.ok and first.used == 0 and first.entry is not None
        assert (await state.admit("k", limit, 400, "b")).refused == "tpm"  # 700 reserved + 400 > 1000
        await state.settle("k", first, 123)  # the answer used less than reserved
        await asyncio.sleep(0.05)
        second = await state.admit("k", limit, 877, "c")  # 123 + 877 = 1000: exactly the limit
        assert second.ok and second.used == 123
        refused = await state.admit("k", limit, 1, "d")
        assert refused.refused == "tpm" and refused.used == 1000 and refused.retry_after >= 55
        lonely = await state.admit("big", Limits(tpm=10), 50, "e")  # an empty window admits one oversized request
        assert lonely.ok and not (await state.admit("big", Limits(tpm=10), 1, "f")).ok
        # refused by tokens: the request is not counted against the minute either
        both = Limits(rpm=2, tpm=10)
        assert (await state.admit("m", both, 8, "m1")).ok and (await state.admit("m", both, 8, "m2")).refused == "tpm"
        assert (await state.admit("m", both, 1, "m3")).count == 2

    run(body, make_state())


def test_a_dead_workers_lease_expires_on_its_own(redis_service: Any) -> None:
    async def body(state: KeyState) -> None:
        one = Limits(max_parallel=1)
        held = await state.admit("k", one, 0, "dies-with-its-worker")  # never settled
        assert held.ok and not (await state.admit("k", one, 0, "b")).ok
        await asyncio.sleep(1.3)
        assert (await state.admit("k", one, 0, "c")).ok

    run(body, shared(redis_service, lease_ttl_s=1.0))


def test_an_unreachable_redis_degrades_to_a_local_share_and_recovers(redis_service: Any) -> None:
    degraded: list[str] = []

    async def body(state: Any) -> None:
        state.on_degraded = degraded.append
        await state.warm()  # connected and scripts loaded, as at a gateway's start
        four = Limits(rpm=4)
        assert not (await state.admit("k", four, 0, "a")).degraded
        redis_service.stop()
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            verdicts = [await state.admit("k", four, 0, f"b{i}") for i in range(4)]
            # one short timeout, then the breaker answers locally without waiting
            assert loop.time() - started < 0.5
            assert all(v.degraded for v in verdicts) and [v.ok for v in verdicts] == [True, True, False, False]
            assert degraded == ["admit"] * 4
        finally:
            redis_service.start()
        await asyncio.sleep(0.35)  # the breaker's retry_after
        back = await state.admit("k", four, 0, "c")
        assert back.ok and not back.degraded

    run(body, shared(redis_service, timeout_s=0.1, retry_s=0.3, local_share=0.5))


def test_a_stall_of_the_gateway_itself_is_not_taken_for_a_slow_redis(redis_service: Any) -> None:
    """Redis answers after 50 ms, but this process stalls from 10 ms to 310 ms (three timeouts): the
    reply waits in the socket, so the decision is still Redis's. A Redis that really does not answer
    (stopped with SIGSTOP) is late."""
    degraded: list[str] = []

    async def body(state: Any) -> None:
        state.on_degraded = degraded.append
        await state.warm()
        redis = redis_service.proc
        redis.send_signal(signal.SIGSTOP)
        threading.Timer(0.05, redis.send_signal, (signal.SIGCONT,)).start()
        asyncio.get_running_loop().call_later(0.01, time.sleep, 0.3)
        assert not (await state.admit("k", Limits(rpm=4), 0, "a")).degraded and degraded == []
        redis.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            assert (await state.admit("k", Limits(rpm=4), 0, "b")).degraded
            assert time.monotonic() - started < 0.5 and degraded == ["admit"]
        finally:
            redis.send_signal(signal.SIGCONT)

    run(body, shared(redis_service, timeout_s=0.1, retry_s=0.3))


def test_budget_holds_are_apart_from_committed_spend(make_state: Callable[[], KeyState]) -> None:
    async def body(state: KeyState) -> None:
        limit = Limits(budget=1000)  # nano-dollars
        await state.seed("k", 0, 0.0, 0)  # nothing spent before (see the seeding test)
        first = await state.admit("k", limit, 0, "a", hold=600)
        second = await state.admit("k", limit, 0, "b", hold=600)  # 600 held < 1000: admitted, may overshoot once
        assert first.ok and second.ok and second.held == 600 and second.spent == 0
        third = await state.admit("k", limit, 0, "c", hold=1)
        assert third.refused == "budget" and third.held == 1200  # holds count until settled
        await state.settle("k", first, 0, 250)  # the hold becomes the real cost
        await state.settle("k", second, 0, 0)  # a failed call costs nothing
        await asyncio.sleep(0.05)
        fourth = await state.admit("k", limit, 0, "d", hold=100)
        assert fourth.ok and (fourth.spent, fourth.held) == (250, 0)
        await state.settle("k", fourth, 0, 750)
        await asyncio.sleep(0.05)
        spent = await state.admit("k", limit, 0, "e", hold=1)
        assert spent.refused == "budget" and spent.spent == 1000 and spent.window_end == 0  # never renews
        windowed = Limits(budget=10, budget_window_s=3600)
        unseeded = await state.admit("w", windowed, 0, "f", hold=5)
        await state.seed("w", unseeded.window, unseeded.window_end, 0)
        assert (await state.admit("w", windowed, 0, "f", hold=5)).window_end > 0

    run(body, make_state())


def test_a_budget_window_unknown_to_the_store_is_seeded_and_only_ever_raised(make_state: Callable[[], KeyState]) -> None:
    """A budget window the store holds no spend for (a process that just started, a Redis that lost its
    data) refuses with "unseeded" and counts nothing, until the gateway seeds it from the usage ledger."""

    async def body(state: KeyState) -> None:
        limit = Limits(rpm=10, budget=1000, budget_window_s=3600)
        first = await state.admit("k", limit, 0, "a", hold=10)
        assert first.refused == "unseeded" and first.window == limit.window_start(time.time()) and first.window_end
        await state.settle("k", first, 0, 0)  # nothing to settle: nothing was taken
        await state.seed("k", first.window, first.window_end, 990)  # the ledger's sum
        admitted = await state.admit("k", limit, 0, "b", hold=10)
        assert admitted.ok and admitted.spent == 990 and admitted.count == 1  # the refusal was not counted
        await state.settle("k", admitted, 0, 4)
        await asyncio.sleep(0.05)
        await state.seed("k", first.window, first.window_end, 500)  # a lower (staler) sum lowers nothing
        assert (await state.admit("k", limit, 0, "c", hold=10)).spent == 994

    run(body, make_state())


def test_spend_lost_by_redis_is_seeded_again(redis_service: Any) -> None:
    async def body(state: Any) -> None:
        limit = Limits(budget=1000)
        await state.seed("k", 0, 0.0, 700)
        taken = await state.admit("k", limit, 0, "a", hold=10)
        assert taken.ok and taken.spent == 700
        redis_service.flush()  # Redis restarted without persistence
        await state.settle("k", taken, 0, 50)  # settled into nothing: the ledger will have it
        await asyncio.sleep(0.05)
        again = await state.admit("k", limit, 0, "b", hold=10)
        assert again.refused == "unseeded" and not again.degraded
        await state.seed("k", 0, 0.0, 750)
        assert (await state.admit("k", limit, 0, "b", hold=10)).spent == 750

    run(body, shared(redis_service))


def test_one_late_call_does_not_open_the_breaker(redis_service: Any) -> None:
    async def body(state: Any) -> None:
        state.failed(TimeoutError("a busy loop made one call late"))
        state.failed(TimeoutError("and another"))
        assert state.available  # two in a row: still asking Redis
        assert not (await state.admit("k", Limits(rpm=5), 0, "a")).degraded  # and a success resets the count
        for _ in range(3):
            state.failed(TimeoutError("late again"))
        assert not state.available and (await state.admit("k", Limits(rpm=5), 0, "b")).degraded

    run(body, shared(redis_service))


def test_a_closed_budget_refuses_while_redis_is_unreachable(redis_service: Any) -> None:
    async def body(state: Any) -> None:
        redis_service.stop()
        try:
            budgeted = await state.admit("k", Limits(budget=1000), 0, "a", hold=10)
            limited = await state.admit("k", Limits(rpm=5), 0, "b")
        finally:
            redis_service.start()
        assert budgeted.refused == "unavailable" and budgeted.degraded and budgeted.retry_after >= 1
        assert limited.ok and limited.degraded  # the other limits still take their local share

    run(body, shared(redis_service, budget_fail_mode="closed"))


def test_closed_limits_refuse_while_redis_is_unreachable(redis_service: Any) -> None:
    async def body(state: Any) -> None:
        redis_service.stop()
        try:
            limited = await state.admit("k", Limits(rpm=5, tpm=1000), 10, "a")
            budget_only = await state.admit("k", Limits(budget=1000), 0, "b", hold=10)
        finally:
            redis_service.start()
        assert limited.refused == "limits_unavailable" and limited.degraded and limited.retry_after >= 1
        assert budget_only.refused == "unseeded"  # a budget keeps its own (local) mode: seeded, then decided

    run(body, shared(redis_service, limits_fail_mode="closed"))
