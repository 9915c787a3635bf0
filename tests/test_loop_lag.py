"""The event-loop lag gauge (`junction_event_loop_lag_seconds`): it sees a blocked loop, and one
monitor runs per `Metrics` however many apps (config reloads) share it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.app import build_app
from gateway.config import load
from gateway.observe import LAG_INTERVAL, Metrics
from tests.procs import write_config

pytestmark = pytest.mark.timeout(30)

GAUGE = "junction_event_loop_lag_seconds"


def monitors() -> int:
    return sum(1 for task in asyncio.all_tasks() if task.get_name() == "junction-loop-lag" and not task.done())


def lag(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(GAUGE)
    assert value is not None
    return value


def test_gauge_reports_a_blocked_loop() -> None:
    async def scenario() -> None:
        metrics = Metrics()
        metrics.watch_loop()
        await asyncio.sleep(LAG_INTERVAL * 2)
        assert lag(metrics) < 0.2  # an idle loop
        # What a CPU-bound step on the loop would do. The monitor's timer was due at most one
        # interval after the block began, so it fires at least 0.5 s - LAG_INTERVAL late.
        time.sleep(0.5)  # noqa: ASYNC251
        await asyncio.sleep(LAG_INTERVAL * 1.5)
        assert lag(metrics) >= 0.5 - LAG_INTERVAL - 0.01
        # The gauge keeps the worst recent sample, so a scrape between stalls still sees it.
        await asyncio.sleep(LAG_INTERVAL * 2)
        assert lag(metrics) >= 0.5 - LAG_INTERVAL - 0.01
        metrics.unwatch_loop()

    asyncio.run(scenario())


def test_one_monitor_per_metrics_across_reloads(tmp_path: Path) -> None:
    config = load(str(write_config(tmp_path, """
        version: v0.4.0
        llm_providers:
          - model: mock/demo
            base_url: http://127.0.0.1:9/v1
            default: true
        """)))  # fmt: skip

    async def scenario() -> None:
        metrics = Metrics()
        first = build_app(config, metrics=metrics)
        await first.state.start()
        assert monitors() == 1
        # A reload: the new app starts on the same metrics, then the old one retires.
        second = build_app(config, metrics=metrics)
        await second.state.start()
        assert monitors() == 1
        await first.state.stop()
        await asyncio.sleep(0)
        assert monitors() == 1  # still measuring for the app that serves
        await second.state.stop()
        await asyncio.sleep(0)
        assert monitors() == 0

    asyncio.run(scenario())
