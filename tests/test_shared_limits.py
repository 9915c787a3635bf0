"""Key limits shared by several gateway processes through one real redis-server (`state: {backend:
redis}`): two `junction serve` replicas, the mock upstream, and the scenarios of the scale-out
acceptance list that concern admission."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.procs import free_port, serve_workers, start_gateway, write_config

KEY = "gw-shared-key-0123456789"
CONFIG = """
version: v0.4.0
llm_providers:
  - model: mock/fast
    base_url: {mock}/v1
    default: true
  - model: mock/slow
    base_url: {mock}/v1
    headers: {{x-mock-chunks: "60", x-mock-gap_ms: "100"}}
    pricing: {{input: 1.0, output: 1.0}}
  - model: mock/priced
    base_url: {mock}/v1
    pricing: {{input: 1.0, output: 1.0}}
  - model: mock/flaky
    base_url: {mock}/v1
    headers: {{x-mock-status: "429", x-mock-retry_after: "3"}}
    fallbacks: [fast]
  - model: mock/broken
    base_url: {mock}/v1
    headers: {{x-mock-status: "500"}}
    fallbacks: [fast]
gateway_keys:
  - {{name: minute, key: {key}-rpm, rpm: 60}}
  - {{name: single, key: {key}-one, max_parallel: 1}}
  - {{name: budget, key: {key}-usd, budget_usd: 0.0001, models: [priced, slow]}}
  - {{name: tokens, key: {key}-tpm, tpm: 1000000}}
state:
  backend: redis
  url: {redis}
  timeout: 250ms  # four workers, Redis, the mock and eight client threads share two cores here
  retry_after: 500ms
  local_share: 0.5
timeouts:
  total: 2s
"""


@pytest.fixture(scope="module")
def config_file(mock: str, redis_service: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("shared"), CONFIG.format(mock=mock, redis=redis_service.url, key=KEY))


@pytest.fixture(scope="module")
def replicas(config_file: Path, redis_service: Any) -> Iterator[list[str]]:
    first, a = start_gateway(config_file, None, "--log-level", "warning")
    second, b = start_gateway(config_file, None, "--log-level", "warning")
    with first, second:
        yield [a, b]


def post(base: str, key: str, model: str = "fast", stream: bool = False, timeout: float = 10) -> httpx.Response:
    body = {"model": model, "max_tokens": 16, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=timeout)


def test_a_60_rpm_key_gets_exactly_60_across_two_replicas(replicas: list[str], redis_service: Any) -> None:
    redis_service.flush()
    statuses = [post(replicas[i % 2], f"{KEY}-rpm").status_code for i in range(200)]
    assert statuses.count(200) == 60 and statuses.count(429) == 140
    assert statuses[:60] == [200] * 60  # the first 60 of the minute, whichever replica took them


def test_a_cancelled_stream_frees_its_slot_on_every_replica(replicas: list[str], redis_service: Any) -> None:
    redis_service.flush()
    with httpx.stream("POST", f"{replicas[0]}/v1/chat/completions", timeout=10,
                      json={"model": "slow", "max_tokens": 16, "stream": True, "messages": [{"role": "user", "content": "x"}]},
                      headers={"authorization": f"Bearer {KEY}-one"}) as stream:  # fmt: skip
        chunks = stream.iter_bytes()  # kept: a dropped iterator would close the stream
        next(chunks)
        busy = post(replicas[1], f"{KEY}-one")
        assert busy.status_code == 429 and busy.json()["error"]["code"] == "too_many_parallel_requests"
        chunks.close()
    deadline = time.monotonic() + 1.0  # released just after the request ends, off its path
    while (answer := post(replicas[1], f"{KEY}-one")).status_code == 429 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answer.status_code == 200


def test_a_killed_replicas_slot_and_budget_hold_expire_on_their_own(config_file: Path, replicas: list[str],
                                                                     redis_service: Any) -> None:  # fmt: skip
    import redis

    redis_service.flush()
    doomed, base = start_gateway(config_file, None, "--log-level", "warning")
    with doomed:
        started = [threading.Event(), threading.Event()]

        def hold(key: str, started: threading.Event) -> None:
            try:
                with httpx.stream("POST", f"{base}/v1/chat/completions", timeout=10,
                                  json={"model": "slow", "max_tokens": 16, "stream": True,
                                        "messages": [{"role": "user", "content": "x"}]},
                                  headers={"authorization": f"Bearer {key}"}) as stream:  # fmt: skip
                    for _ in stream.iter_bytes():
                        started.set()
            except httpx.HTTPError:
                pass

        holders = [threading.Thread(target=hold, args=(key, event), daemon=True)
                   for key, event in zip((f"{KEY}-one", f"{KEY}-usd"), started)]  # fmt: skip
        for holder in holders:
            holder.start()
        assert all(event.wait(5) for event in started)
        doomed.kill()  # SIGKILL: no release, no settlement ever comes
        doomed.wait(5)
        killed_at = time.monotonic()
        holds = redis.Redis(port=redis_service.port)
        assert holds.zcard("junction:{budget}:holds-n:0") == 1 and holds.get("junction:{budget}:spent-n:0") == b"0"
        assert post(replicas[0], f"{KEY}-one").status_code == 429
        # the lease lives timeouts.total (2 s) + a 2 s margin from when it was taken
        deadline = killed_at + 6
        while (answer := post(replicas[0], f"{KEY}-one")).status_code == 429 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answer.status_code == 200 and time.monotonic() - killed_at > 1.0
        # the budget's hold expired the same way: gone with the next admission, and nothing was committed for it
        assert post(replicas[0], f"{KEY}-usd", model="priced").status_code == 200
        deadline = time.monotonic() + 2  # its own hold is settled just after the response
        while holds.zcard("junction:{budget}:holds-n:0") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert holds.zcard("junction:{budget}:holds-n:0") == 0 and holds.hlen("junction:{budget}:held-n:0") == 0
        assert 0 < int(holds.get("junction:{budget}:spent-n:0")) < 100_000  # only the request that finished
        for holder in holders:
            holder.join(5)


def test_redis_down_mid_load_degrades_without_errors_and_recovers(replicas: list[str], redis_service: Any) -> None:
    redis_service.flush()
    assert post(replicas[0], f"{KEY}-rpm").headers.get("x-junction-state") is None
    redis_service.stop()
    try:
        answers = [post(replicas[i % 2], f"{KEY}-rpm") for i in range(80)]
    finally:
        redis_service.start()
    assert all(a.status_code in (200, 429) for a in answers)  # nothing 5xx because Redis died
    assert all(a.headers.get("x-junction-state") == "degraded" for a in answers)
    # each replica admits at most its local share (30 of 60) on its own
    assert sum(a.status_code == 200 for a in answers) <= 60
    for base in replicas:
        assert sum(a.status_code == 200 for a in answers[replicas.index(base)::2]) <= 30
    time.sleep(0.6)  # the breaker's retry_after: then Redis is asked again
    again = [post(base, f"{KEY}-rpm") for base in replicas]
    assert [a.headers.get("x-junction-state") for a in again] == [None, None]
    metrics = httpx.get(f"{replicas[0]}/metrics").text
    assert 'junction_state_degraded_total{operation="admit"}' in metrics


def test_a_cooldown_set_by_one_replica_is_honoured_by_the_other(replicas: list[str], mock: str, upstream: Any) -> None:
    first = post(replicas[0], f"{KEY}-one", model="flaky")  # 429 with Retry-After: 3 cools it, the fallback answers
    assert first.status_code == 200 and first.headers["x-junction-fallback-from"] == "mock/flaky"
    time.sleep(0.3)  # the announcement crosses Redis
    second = post(replicas[1], f"{KEY}-one", model="flaky")
    assert second.status_code == 200 and second.headers["x-junction-model"] == "mock/fast"
    assert [body["model"] for body in upstream()] == ["flaky", "fast", "fast"]  # the other replica never tried it


def test_failures_are_counted_across_replicas(replicas: list[str], upstream: Any, redis_service: Any) -> None:
    """failures_to_cool is 3: two failures on replica A and one on B cool the model on both, though
    neither saw three. A healthy model's requests write nothing for it (Redis's command statistics)."""
    import redis

    redis_service.flush()
    for base in (replicas[0], replicas[1], replicas[0]):
        answer = post(base, f"{KEY}-one", model="broken")
        assert answer.status_code == 200 and answer.headers["x-junction-fallback-from"] == "mock/broken"
        time.sleep(0.3)  # the count goes to Redis after the response
    for base in replicas:
        assert post(base, f"{KEY}-one", model="broken").headers["x-junction-model"] == "mock/fast"
    assert [body["model"] for body in upstream()] == ["broken", "fast"] * 3 + ["fast", "fast"]
    stats = redis.Redis(port=redis_service.port)
    stats.config_resetstat()
    for base in replicas * 3:
        assert post(base, f"{KEY}-one").status_code == 200
    time.sleep(0.3)
    calls = {k: v["calls"] for k, v in stats.info("commandstats").items()}
    assert calls.get("cmdstat_evalsha", 0) == 2 * 6 and "cmdstat_del" not in calls and "cmdstat_incr" not in calls


def requests_total(base: str) -> float:
    lines = httpx.get(f"{base}/metrics").text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("junction_requests_total{"))


def test_two_replicas_of_two_workers_admit_exactly_60(config_file: Path, redis_service: Any) -> None:
    redis_service.flush()
    first, a = serve_workers(config_file, 2)
    second, b = serve_workers(config_file, 2)
    with first, second:
        bases = [a, b]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:  # concurrent, so every worker takes some
            answers = list(pool.map(lambda i: post(bases[i % 2], f"{KEY}-rpm"), range(200)))
        statuses = [answer.status_code for answer in answers]
        assert not [answer for answer in answers if answer.headers.get("x-junction-state")]  # all decided in Redis
        assert statuses.count(200) == 60 and statuses.count(429) == 140
        # any worker's /metrics adds up every worker of its replica
        assert (requests_total(a), requests_total(b)) == (100, 100)
        first.send_signal(signal.SIGTERM)
        assert first.wait(20) == 0  # the supervisor stops its workers and ends cleanly


def test_several_workers_without_a_shared_store_are_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, "version: v0.4.0\nllm_providers:\n  - model: mock/m\n    base_url: http://127.0.0.1:9/v1\n")
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port",
                           str(free_port()), "--workers", "2"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "state: {backend: redis" in done.stderr and "--allow-local-state" in done.stderr


def test_a_stored_response_continues_on_the_other_replica(replicas: list[str], upstream: Any) -> None:
    import openai

    def sdk(base: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{base}/v1", api_key=f"{KEY}-one", max_retries=0, timeout=20)

    first = sdk(replicas[0]).responses.create(model="fast", input="My name is Ada.")
    second = sdk(replicas[1]).responses.create(model="fast", input="What is my name?", previous_response_id=first.id)
    assert second.status == "completed"
    assert [m["role"] for m in upstream()[-1]["messages"]] == ["user", "assistant", "user"]  # the history came along
    assert sdk(replicas[1]).responses.retrieve(first.id).output_text == first.output_text
    sdk(replicas[1]).responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        sdk(replicas[0]).responses.retrieve(first.id)  # deleted for every replica


def test_a_budget_is_one_budget_across_replicas(replicas: list[str], redis_service: Any) -> None:
    redis_service.flush()
    # $0.0001 at $1 per million tokens: 100 tokens; each call costs ~15 and holds ~1,030 (max_tokens 16, input)
    answers = []
    for i in range(12):
        answers.append(post(replicas[i % 2], f"{KEY}-usd", model="priced"))
        time.sleep(0.05)  # settled off the response path
    served = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert served and refused and answers.index(refused[0]) == len(served)  # once reached, refused everywhere
    assert refused[0].json()["error"]["code"] == "insufficient_quota"
    remaining = [float(a.headers["x-junction-budget-remaining-usd"]) for a in served]
    assert remaining == sorted(remaining, reverse=True) and remaining[1] < remaining[0]  # both replicas' spend counts


def test_a_key_revoked_on_one_replica_stops_working_on_every_worker_of_the_other(
        config_file: Path, redis_service: Any, tmp_path: Path) -> None:  # fmt: skip
    """The config file loses a key and only replica A gets SIGHUP: it announces its reload, and every
    worker of replica B (two, answering on one port) reloads its own file, which changed too."""
    config = tmp_path / "revoke.yaml"
    config.write_text(config_file.read_text())
    first, a = start_gateway(config, None, "--log-level", "warning")
    second, b = serve_workers(config, 2)
    with first, second:
        assert all(post(base, f"{KEY}-one").status_code == 200 for base in (a, b, b, b))
        config.write_text(config_file.read_text().replace(f"  - {{name: single, key: {KEY}-one, max_parallel: 1}}\n", ""))
        first.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while post(a, f"{KEY}-one").status_code != 401 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the announcement crosses Redis at once; B's workers read their file in a thread
        # 20 requests reach both of B's workers (the kernel spreads connections): every one refuses the key
        assert [post(b, f"{KEY}-one").status_code for _ in range(20)] == [401] * 20
        assert post(b, f"{KEY}-rpm").status_code == 200  # the other keys still work


def test_token_reservations_settle_to_the_reported_usage_exactly_with_one_script_call_each_way(
        replicas: list[str], redis_service: Any) -> None:  # fmt: skip
    """Each request reserves its estimate (input + max_tokens) before the call and settles to the usage the
    upstream reported after it: the window's total in Redis is the clients' usage to the token. Admission
    and settlement are one script call each (Redis's own command statistics)."""
    import redis

    redis_service.flush()
    client = redis.Redis(port=redis_service.port)
    client.config_resetstat()
    reported = 0
    for i in range(20):
        body = {"model": "fast", "max_tokens": 500, "stream": i % 2 == 1,
                "messages": [{"role": "user", "content": f"count my tokens, request {i}"}]}  # fmt: skip
        if body["stream"]:
            body["stream_options"] = {"include_usage": True}
        answer = httpx.post(f"{replicas[i % 2]}/v1/chat/completions", json=body, timeout=30,
                            headers={"authorization": f"Bearer {KEY}-tpm"})  # fmt: skip
        assert answer.status_code == 200
        usage = [json.loads(line[5:])["usage"] for line in answer.text.splitlines()
                 if line.startswith("data: {") and '"usage":{' in line][-1] if body["stream"] else answer.json()["usage"]  # fmt: skip
        reported += usage["total_tokens"]
    time.sleep(0.3)  # settlements go after the response, off its path
    assert int(client.get("junction:{tokens}:tpmsum")) == reported
    scripts = client.info("commandstats")
    calls = sum(v["calls"] for k, v in scripts.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))
    assert calls == 2 * 20


def test_a_process_that_subscribes_after_a_change_still_reloads(redis_service: Any, tmp_path: Path) -> None:
    """A worker forked with the config its supervisor read, whose file then changed before the worker
    listened for announcements (it missed the one that was sent): it checks the file when it subscribes."""
    import asyncio

    from gateway.config import load
    from gateway.reload import Reloadable

    text = f"""version: v0.4.0
llm_providers:
  - model: mock/m
    base_url: http://127.0.0.1:9/v1
gateway_keys:
  - {{name: stays, key: {KEY}-stays}}
  - {{name: goes, key: {KEY}-goes}}
state: {{backend: redis, url: '{redis_service.url}'}}
ledger: {{backend: off}}
"""
    path = tmp_path / "late.yaml"
    path.write_text(text)
    read_before = load(path)
    path.write_text(text.replace(f"  - {{name: goes, key: {KEY}-goes}}\n", ""))

    async def main() -> list[str]:
        app = Reloadable(str(path), read_before)
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await inbox.put({"type": "lifespan.startup"})

        async def send(message: dict[str, Any]) -> None:
            return None

        lifespan = asyncio.create_task(app({"type": "lifespan"}, inbox.get, send))
        deadline = asyncio.get_running_loop().time() + 10
        while app.state.config is read_before and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        names = [k.name for k in app.state.config.gateway_keys]
        await inbox.put({"type": "lifespan.shutdown"})
        await lifespan
        return names

    assert asyncio.run(main()) == ["stays"]
