"""Model health (gateway/cooldown.py): when the shared store hears of failures and recoveries."""

from __future__ import annotations

from gateway.config import Failover
from gateway.cooldown import Health


def test_the_store_hears_of_failures_and_of_the_first_success_after_them_only() -> None:
    heard: list[tuple[str, str]] = []
    health = Health(Failover(failures_to_cool=3), clock=lambda: 0.0,
                    on_cool=lambda m, s: heard.append(("cool", m)), on_fail=lambda m: heard.append(("fail", m)),
                    on_recover=lambda m: heard.append(("recover", m)))  # fmt: skip
    health.success("a")  # healthy: nothing to say
    assert not health.failure("a") and not health.failure("a")
    health.success("a")
    health.success("a")
    assert health.failure("b") is False and health.failure("b") is False and health.failure("b") is True
    assert heard == [("fail", "a"), ("fail", "a"), ("recover", "a"), ("fail", "b"), ("fail", "b"), ("cool", "b")]
