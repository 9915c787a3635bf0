"""Failover, cooldown, timeouts and disconnects over real sockets (scenarios R1-R14 of the
gateway's reliability table), against the fault-injecting mock upstream."""

from __future__ import annotations

import textwrap
import time
from typing import Iterator

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.procs import access_log, free_port, start_gateway, write_config

USER = [{"role": "user", "content": "hello there"}]
REPLY = "Mock reply to: hello there"

CONFIG = """
version: v0.4.0
llm_providers:
  - model: mock/healthy
    base_url: {mock}/v1
  - model: mock/claude-healthy
    base_url: {mock}
    provider_interface: anthropic
  - model: mock/limited
    base_url: {mock}/v1
    headers: {{x-mock-status: "429", x-mock-retry_after: "5"}}
    fallbacks: [healthy]
  - model: mock/broken
    base_url: {mock}/v1
    headers: {{x-mock-status: "500"}}
    fallbacks: [healthy]
  - model: mock/overloaded-to-claude
    base_url: {mock}/v1
    headers: {{x-mock-status: "503"}}
    fallbacks: [claude-healthy]
  - model: mock/client-error
    base_url: {mock}/v1
    headers: {{x-mock-status: "400"}}
    fallbacks: [healthy]
  - model: mock/refused
    base_url: http://127.0.0.1:{dead}/v1
    fallbacks: [healthy]
  - model: mock/hangs
    base_url: {mock}/v1
    headers: {{x-mock-fault: hang}}
    fallbacks: [healthy]
  - model: mock/hangs-alone
    base_url: {mock}
    provider_interface: anthropic
    headers: {{x-mock-fault: hang}}
  - model: mock/stalls
    base_url: {mock}/v1
    headers: {{x-mock-fault: stall, x-mock-stall_after: "2"}}
    fallbacks: [healthy]
  - model: mock/closes
    base_url: {mock}
    provider_interface: anthropic
    headers: {{x-mock-fault: close, x-mock-stall_after: "2"}}
  - model: mock/flaky
    base_url: {mock}/v1
    headers: {{x-mock-status: "500"}}
    fallbacks: [healthy]
  - model: mock/lonely
    base_url: {mock}/v1
    headers: {{x-mock-status: "503"}}
  - model: mock/storm
    base_url: {mock}/v1
    headers: {{x-mock-status: "503"}}
  - model: mock/scripted
    base_url: {mock}/v1
  - model: mock/moved
    base_url: {mock}/v1
  - model: mock/slow
    base_url: {mock}/v1
    headers: {{x-mock-delay_ms: "30000"}}
timeouts:
  first_byte: 1s
  idle: 1s
failover:
  retries: 1
  max_retry_after: 1.5s
  failures_to_cool: 2
  cooldown: 1.5s
"""


@pytest.fixture(scope="module")
def gateway(mock: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = tmp_path_factory.mktemp("rel") / "config.yaml"
    config.write_text(textwrap.dedent(CONFIG.format(mock=mock, dead=free_port())))
    proc, base_url = start_gateway(config, None, "--log-level", "warning", "--no-access-log")
    with proc:
        yield base_url


@pytest.fixture()
def upstream_calls(mock: str):
    httpx.delete(f"{mock}/_mock/requests")

    def models() -> list[str]:
        return [r["body"]["model"] for r in httpx.get(f"{mock}/_mock/requests").json() if r["body"]]

    return models


def metric_lines(exposition: str, name: str) -> dict[str, float]:
    """`{labels}` -> value for every sample of metric `name` in a Prometheus text exposition."""
    return {line[len(name):].rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in exposition.splitlines() if line.startswith(name + "{")}  # fmt: skip


def oa(gateway: str, timeout: float = 20) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key="x", max_retries=0, timeout=timeout)


def chat(gateway: str, model: str, **kw) -> httpx.Response:
    return httpx.post(f"{gateway}/v1/chat/completions", json={"model": model, "messages": USER, **kw}, timeout=20)


def test_r1_rate_limited_model_fails_over_without_waiting(gateway: str, upstream_calls) -> None:
    started = time.perf_counter()
    response = chat(gateway, "limited")
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == REPLY
    assert time.perf_counter() - started < 1.5  # Retry-After 5 s exceeds max_retry_after: no wait
    assert response.headers["x-junction-attempts"] == "2"
    assert response.headers["x-junction-fallback-from"] == "mock/limited"
    assert response.headers["x-junction-model"] == "mock/healthy"
    assert upstream_calls() == ["limited", "healthy"]
    # The 429's Retry-After cooled the model: the next request goes straight to the fallback.
    again = chat(gateway, "limited")
    assert again.headers["x-junction-attempts"] == "1" and upstream_calls()[-1] == "healthy"


def test_r2_single_model_retry_after_is_honoured(gateway: str, mock: str, upstream_calls) -> None:
    limited = '{"error":{"message":"slow down","type":"rate_limit_error","code":null}}'
    ok = ('{"id":"c1","object":"chat.completion","created":0,"model":"scripted","choices":[{"index":0,'
          '"message":{"role":"assistant","content":"after the wait"},"finish_reason":"stop"}],'
          '"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}')  # fmt: skip
    httpx.post(f"{mock}/_mock/script", json={"responses": [
        {"match_model": "scripted", "status": 429, "headers": {"content-type": "application/json", "retry-after": "1"},
         "chunks": [limited]},
        {"match_model": "scripted", "status": 200, "headers": {"content-type": "application/json"}, "chunks": [ok]},
    ]})  # fmt: skip
    started = time.perf_counter()
    response = chat(gateway, "scripted")
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "after the wait"
    assert time.perf_counter() - started >= 1.0
    assert response.headers["x-junction-attempts"] == "2"
    assert upstream_calls() == ["scripted", "scripted"]
    # A Retry-After beyond max_retry_after: no wait; the 429 and its Retry-After reach the client at
    # once in its own protocol, and the model then cools for that long (the next request fails fast).
    long_wait = {"match_model": "scripted", "status": 429, "chunks": [limited],
                 "headers": {"content-type": "application/json", "retry-after": "120"}}  # fmt: skip
    httpx.post(f"{mock}/_mock/script", json={"responses": [long_wait]})
    started = time.perf_counter()
    with pytest.raises(anthropic.RateLimitError) as an_info:
        anthropic.Anthropic(base_url=gateway, api_key="x", max_retries=0).messages.create(
            model="scripted", max_tokens=5, messages=USER)
    assert an_info.value.response.headers["retry-after"] == "120"
    assert an_info.value.body["error"] == {"type": "rate_limit_error", "message": "slow down"}
    with pytest.raises(openai.InternalServerError) as oa_info:
        oa(gateway).chat.completions.create(model="scripted", messages=USER)
    assert oa_info.value.status_code == 503 and 119 <= int(oa_info.value.response.headers["retry-after"]) <= 120
    assert time.perf_counter() - started < 1.0
    assert upstream_calls() == ["scripted", "scripted", "scripted"]


def test_r3_server_errors_retry_then_fall_back(gateway: str, upstream_calls) -> None:
    response = chat(gateway, "broken")
    assert response.status_code == 200 and response.headers["x-junction-model"] == "mock/healthy"
    assert upstream_calls() == ["broken", "broken", "healthy"]  # retries: 1, then the fallback
    assert response.headers["x-junction-attempts"] == "3"


def test_r4_client_errors_are_not_retried(gateway: str, upstream_calls) -> None:
    with pytest.raises(openai.BadRequestError):
        oa(gateway).chat.completions.create(model="client-error", messages=USER)
    assert upstream_calls() == ["client-error"]


def test_r6_refused_connection_fails_over_immediately(gateway: str, upstream_calls) -> None:
    started = time.perf_counter()
    response = chat(gateway, "refused")
    assert response.status_code == 200 and response.headers["x-junction-model"] == "mock/healthy"
    assert time.perf_counter() - started < 1.0
    assert upstream_calls() == ["healthy"]
    errors = metric_lines(httpx.get(f"{gateway}/metrics").text, "junction_upstream_errors_total")
    assert errors['{error_type="connect",model="mock/refused"}'] >= 1

def test_r7_hanging_upstream_hits_first_byte_timeout_then_falls_back(gateway: str, upstream_calls) -> None:
    started = time.perf_counter()
    response = chat(gateway, "hangs", stream=True)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and response.headers["x-junction-fallback-from"] == "mock/hangs"
    assert 1.0 <= elapsed < 4.0
    assert "data: [DONE]" in response.text
    assert upstream_calls() == ["hangs", "healthy"]


def test_upstream_timeout_without_fallback_is_504_timeout_error(gateway: str) -> None:
    started = time.perf_counter()
    with pytest.raises(anthropic.APIStatusError) as info:
        anthropic.Anthropic(base_url=gateway, api_key="x", max_retries=0, timeout=20).messages.create(
            model="hangs-alone", max_tokens=5, messages=USER)
    assert info.value.status_code == 504 and info.value.body["error"]["type"] == "timeout_error"
    assert 1.0 <= time.perf_counter() - started < 5


def test_r8_stall_mid_stream_ends_with_error_and_no_fallback(gateway: str, upstream_calls) -> None:
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", timeout=10,
                      json={"model": "stalls", "messages": USER, "stream": True}) as response:  # fmt: skip
        assert response.status_code == 200
        text = response.read().decode()
    assert '"error"' in text and "idle timeout" in text
    assert "[DONE]" not in text
    assert upstream_calls() == ["stalls"]  # bytes had reached the client: no failover
    errors = metric_lines(httpx.get(f"{gateway}/metrics").text, "junction_upstream_errors_total")
    assert errors['{error_type="stream_idle_timeout",model="mock/stalls"}'] >= 1


def test_r9_upstream_closing_mid_stream_is_an_error_not_a_success(gateway: str) -> None:
    with httpx.stream("POST", f"{gateway}/v1/messages", timeout=10,
                      json={"model": "closes", "max_tokens": 10, "messages": USER, "stream": True}) as response:
        text = response.read().decode()
    assert "event: error" in text and "event: message_stop" not in text


def test_r13_repeated_failures_cool_a_model_then_a_probe_reopens_it(gateway: str, upstream_calls) -> None:
    first = chat(gateway, "flaky")  # two failures (attempt + retry): cooled
    assert first.headers["x-junction-model"] == "mock/healthy"
    assert upstream_calls() == ["flaky", "flaky", "healthy"]
    second = chat(gateway, "flaky")
    assert second.headers["x-junction-attempts"] == "1"  # skipped while cooling
    assert upstream_calls()[-1] == "healthy"
    time.sleep(1.6)
    third = chat(gateway, "flaky")  # cooldown over: one probe
    assert third.headers["x-junction-model"] == "mock/healthy"
    # The failed probe cools the model again at once: no second try of it.
    assert upstream_calls() == ["flaky", "flaky", "healthy", "healthy", "flaky", "healthy"]


def test_r14_every_candidate_cooling_fails_fast_with_retry_after(gateway: str) -> None:
    for _ in range(2):
        chat(gateway, "lonely")  # 503 answered as is (last candidate) and counted as failures
    started = time.perf_counter()
    response = chat(gateway, "lonely")
    assert time.perf_counter() - started < 0.5
    assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
    assert "cooling down" in response.json()["error"]["message"]
    anthropic_style = httpx.post(f"{gateway}/v1/messages", json={"model": "lonely", "max_tokens": 5, "messages": USER})
    assert anthropic_style.status_code == 529
    assert anthropic_style.json()["error"]["type"] == "overloaded_error"


def test_failover_across_protocols_translates_for_the_fallback(gateway: str, upstream_calls) -> None:
    client = oa(gateway)
    with client.chat.completions.stream(model="overloaded-to-claude", messages=USER) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == REPLY
    assert upstream_calls() == ["overloaded-to-claude", "overloaded-to-claude", "claude-healthy"]


def test_r11_client_leaving_during_a_long_wait_cancels_the_upstream(gateway: str, mock: str) -> None:
    before = httpx.get(f"{mock}/_mock/stats").json()
    with pytest.raises(anthropic.APITimeoutError):
        anthropic.Anthropic(base_url=gateway, api_key="x", max_retries=0, timeout=0.5).messages.create(
            model="slow", max_tokens=5, messages=USER, stream=False)
    deadline = time.monotonic() + 3
    stats = before
    while time.monotonic() < deadline:
        stats = httpx.get(f"{mock}/_mock/stats").json()
        if stats["aborted"] > before["aborted"]:
            break
        time.sleep(0.05)
    assert stats["aborted"] == before["aborted"] + 1


def test_r10_client_leaving_mid_stream_closes_the_upstream(gateway: str, mock: str) -> None:
    before = httpx.get(f"{mock}/_mock/stats").json()
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", timeout=10,
                      json={"model": "stalls", "messages": USER, "stream": True}) as response:
        next(response.iter_raw())  # the first bytes, then hang up
    deadline = time.monotonic() + 3
    stats = before
    while time.monotonic() < deadline:
        stats = httpx.get(f"{mock}/_mock/stats").json()
        if stats["aborted"] > before["aborted"] and stats["open"] == 0:
            break
        time.sleep(0.05)
    assert stats["aborted"] == before["aborted"] + 1 and stats["open"] == 0


def test_r21_sigterm_drains_streams_then_interrupts_the_rest(mock: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    import signal
    import threading

    config = write_config(tmp_path_factory.mktemp("drain"), f"""
        version: v0.4.0
        llm_providers:
          - model: mock/short
            base_url: {mock}/v1
            headers: {{x-mock-chunks: "5", x-mock-gap_ms: "200"}}
          - model: mock/long
            base_url: {mock}
            provider_interface: anthropic
            headers: {{x-mock-chunks: "60", x-mock-gap_ms: "200", x-mock-words: "60"}}
        shutdown:
          drain: 2s
    """)
    proc, base = start_gateway(config, None, "--log-level", "warning")
    results: dict[str, str] = {}

    def stream(name: str, path: str, body: dict) -> None:
        with httpx.stream("POST", f"{base}{path}", json=body, timeout=20) as response:
            results[name] = response.read().decode()

    with proc:
        assert httpx.get(f"{base}/health/ready").json() == {"status": "ready"}
        threads = [
            threading.Thread(target=stream, args=("short", "/v1/chat/completions",
                                                  {"model": "short", "messages": USER, "stream": True})),
            threading.Thread(target=stream, args=("long", "/v1/messages", {"model": "long", "max_tokens": 5,
                                                                          "messages": USER, "stream": True})),
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        started = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # Draining: still listening; readiness fails, liveness holds, new calls are turned away.
        ready = httpx.get(f"{base}/health/ready")
        assert ready.status_code == 503 and ready.json() == {"status": "draining"}
        assert httpx.get(f"{base}/health/live").status_code == 200
        refused = chat(base, "short")
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
        assert refused.headers["retry-after"] == "1"
        refused_an = httpx.post(f"{base}/v1/messages", json={"model": "long", "max_tokens": 5, "messages": USER})
        assert refused_an.status_code == 529 and refused_an.json()["error"]["type"] == "overloaded_error"
        code = proc.wait(timeout=15)
        elapsed = time.perf_counter() - started
        for thread in threads:
            thread.join(timeout=10)
        output = proc.output()
    assert code == 0
    assert 2.0 <= elapsed < 8  # the 2 s drain, then a 1 s grace for the stream it could not finish
    assert "Traceback" not in output, output
    assert results["short"].rstrip().endswith("data: [DONE]")  # finished within the drain
    long = results["long"]
    assert "event: error" in long and "shutting down" in long and "event: message_stop" not in long


def test_r21_an_idle_gateway_stops_at_once(mock: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The drain ends as soon as nothing is in flight: no waiting out `shutdown.drain` for nothing."""
    import signal

    config = write_config(tmp_path_factory.mktemp("idle-stop"), f"""
        version: v0.4.0
        llm_providers:
          - model: mock/quick
            base_url: {mock}/v1
        shutdown:
          drain: 30s
    """)
    proc, base = start_gateway(config, None, "--log-level", "warning")
    with proc:
        assert chat(base, "quick").status_code == 200
        started = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert time.perf_counter() - started < 3


def test_r20_parallel_requests_per_key(mock: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """max_parallel: 2, then 5 concurrent streams: 3 refused at once with 429; slots come back
    when streams end, also when the client disconnects."""
    import concurrent.futures

    config = write_config(tmp_path_factory.mktemp("parallel"), f"""
        version: v0.4.0
        llm_providers:
          - model: mock/slowstream
            base_url: {mock}/v1
            headers: {{x-mock-chunks: "4", x-mock-gap_ms: "300"}}
        gateway_keys:
          - {{name: two, key: two-at-a-time-key, max_parallel: 2}}
    """)
    proc, base = start_gateway(config, None, "--log-level", "warning", "--no-access-log")

    def stream() -> tuple[int, str]:
        response = httpx.post(f"{base}/v1/chat/completions", headers={"x-api-key": "two-at-a-time-key"},
                              json={"model": "slowstream", "messages": USER, "stream": True}, timeout=20)
        return response.status_code, response.text

    with proc:
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            results = list(pool.map(lambda _: stream(), range(5)))
        statuses = sorted(code for code, _ in results)
        assert statuses == [200, 200, 429, 429, 429]
        assert all("[DONE]" in text for code, text in results if code == 200)
        # A client that hangs up mid-stream frees its slot too.
        with httpx.stream("POST", f"{base}/v1/chat/completions", headers={"x-api-key": "two-at-a-time-key"},
                          json={"model": "slowstream", "messages": USER, "stream": True}, timeout=20) as response:
            next(response.iter_raw())
        time.sleep(0.5)
        assert [stream()[0] for _ in range(2)] == [200, 200]


def test_r15_retry_storm_is_bounded_by_attempts_and_cooldown(gateway: str, upstream_calls) -> None:
    """Every request to an always-failing model: the upstream sees at most (1 + retries) calls per
    client request, and far fewer once the model is cooling down."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: chat(gateway, "storm").status_code, range(40)))
    assert set(statuses) <= {503}
    calls = upstream_calls().count("storm")
    assert calls <= 2 * 40
    assert calls < 20  # the cooldown (failures_to_cool: 2) stops the storm early


def test_r22_sighup_reloads_a_valid_config_and_keeps_serving_on_an_invalid_one(
        mock: str, tmp_path_factory: pytest.TempPathFactory) -> None:  # fmt: skip
    import signal
    import threading

    config = tmp_path_factory.mktemp("reload") / "config.yaml"
    first = f"""
        version: v0.4.0
        llm_providers:
          - model: mock/before
            base_url: {mock}/v1
            default: true
            headers: {{x-mock-chunks: "6", x-mock-gap_ms: "250"}}
    """
    config.write_text(textwrap.dedent(first))
    proc, base = start_gateway(config, None, "--log-level", "info", "--no-access-log")
    in_flight: dict[str, str] = {}

    def long_stream() -> None:
        in_flight["text"] = httpx.post(f"{base}/v1/chat/completions", timeout=20,
                                       json={"model": "before", "messages": USER, "stream": True}).text

    with proc:
        worker = threading.Thread(target=long_stream)
        worker.start()
        time.sleep(0.3)
        config.write_text(textwrap.dedent(first + f"""
          - model: mock/added
            base_url: {mock}/v1
        """))
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and chat(base, "added").headers.get("x-junction-model") != "mock/added":
            time.sleep(0.1)
        assert chat(base, "added").headers["x-junction-model"] == "mock/added"
        worker.join(timeout=10)
        assert in_flight["text"].rstrip().endswith("data: [DONE]")  # the stream begun before the reload
        config.write_text("version: v0.4.0\nllm_providers:\n  - model: not-a-model\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert chat(base, "added").headers["x-junction-model"] == "mock/added"
        assert proc.poll() is None
        time.sleep(0.2)
        output = proc.output()
    assert "config reloaded" in output and "config reload refused" in output
    assert "llm_providers[0].model" in output


def test_r18_token_limit_reserves_before_the_call(mock: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """tpm: 100, then 5 concurrent requests of about 175 tokens each: one may overshoot (it found the
    window empty), the others are refused at once with 429 and nothing is sent upstream for them."""
    import concurrent.futures

    config = write_config(tmp_path_factory.mktemp("tpm"), f"""
        version: v0.4.0
        llm_providers:
          - model: mock/metered
            base_url: {mock}/v1
            headers: {{x-mock-delay_ms: "300"}}
        gateway_keys:
          - {{name: small, key: small-tpm-key-123, tpm: 100}}
    """)
    proc, base = start_gateway(config, None, "--log-level", "warning", "--no-access-log")
    text = " ".join(["tokens"] * 140)

    def request(_: int) -> httpx.Response:
        return httpx.post(f"{base}/v1/chat/completions", headers={"x-api-key": "small-tpm-key-123"}, timeout=20,
                          json={"model": "metered", "max_tokens": 30, "messages": [{"role": "user", "content": text}]})

    httpx.delete(f"{mock}/_mock/requests")
    with proc:
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            responses = list(pool.map(request, range(5)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 429, 429, 429, 429]
    refused = next(r for r in responses if r.status_code == 429)
    assert "token limit of 100 per minute" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert len(httpx.get(f"{mock}/_mock/requests").json()) == 1


def test_r5_provider_refusing_the_gateway_key(mock: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Upstream 401/403 to the gateway's own key: not retried on that key, the next model (another
    key) is tried, and with nothing left the client gets a generic 502 in its protocol; the key
    never shows in bodies, headers or logs, and an alert metric counts it. A passthrough provider
    (the client's own credential) keeps the upstream's 401, which the client can act on."""
    secret = "sk-r5-upstream-secret-0123456789abcdef"
    config = write_config(tmp_path_factory.mktemp("r5"), f"""
        version: v0.4.0
        llm_providers:
          - model: mock/healthy
            base_url: {mock}/v1
          - model: mock/badkey
            base_url: {mock}/v1
            access_key: {secret}
            fallbacks: [healthy]
          - model: mock/badkey-alone
            base_url: {mock}
            provider_interface: anthropic
            access_key: {secret}
          - model: mock/own-key
            base_url: {mock}/v1
            passthrough_auth: true
        failover:
          retries: 2
    """)
    echo = orjson.dumps({"error": {"message": f"Incorrect API key provided: {secret}", "type": "invalid_request_error",
                                   "code": "invalid_api_key"}}).decode()  # fmt: skip
    refusals = [{"match_model": model, "status": status, "headers": {"content-type": "application/json"},
                 "chunks": [echo]} for model, status in (("badkey", 401), ("badkey-alone", 403), ("own-key", 401))]
    proc, base = start_gateway(config, None, "--log-level", "debug")
    with proc:
        httpx.delete(f"{mock}/_mock/requests")
        httpx.post(f"{mock}/_mock/script", json={"responses": refusals[:1]})
        served = chat(base, "badkey")
        assert served.status_code == 200 and served.headers["x-junction-model"] == "mock/healthy"
        assert served.headers["x-junction-attempts"] == "2"  # retries: 2, yet the refused key is not retried
        assert [r["body"]["model"] for r in httpx.get(f"{mock}/_mock/requests").json()] == ["badkey", "healthy"]

        httpx.post(f"{mock}/_mock/script", json={"responses": refusals[1:2]})
        with pytest.raises(anthropic.APIStatusError) as info:
            anthropic.Anthropic(base_url=base, api_key="x", max_retries=0).messages.create(
                model="badkey-alone", max_tokens=5, messages=USER)
        refused = info.value
        assert refused.status_code == 502 and refused.body["error"]["type"] == "api_error"
        assert "refused the gateway's credentials" in refused.body["error"]["message"]
        assert refused.response.headers["x-should-retry"] == "false"
        leaked = [refused.response.text, str(refused.response.headers), served.text, str(served.headers)]

        httpx.post(f"{mock}/_mock/script", json={"responses": refusals[2:]})
        own = httpx.post(f"{base}/v1/chat/completions", headers={"authorization": "Bearer client-own-key"},
                         json={"model": "own-key", "messages": USER}, timeout=20)
        assert own.status_code == 401 and "Incorrect API key provided" in own.json()["error"]["message"]

        metrics = httpx.get(f"{base}/metrics").text
        errors = metric_lines(metrics, "junction_upstream_errors_total")
        assert errors['{error_type="auth_refused_401",model="mock/badkey"}'] == 1.0
        assert errors['{error_type="auth_refused_403",model="mock/badkey-alone"}'] == 1.0
        assert not any("own-key" in labels for labels in errors)
        proc.stop()
        output = proc.output()
    assert "refused the gateway's credentials (HTTP 401)" in output and "Incorrect API key provided: [redacted]" in output
    for text in leaked + [output, metrics]:
        assert secret[:8] not in text


def test_r19_budget_reserves_before_the_call(mock: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """budget_usd 0.01, requests priced by the mock's reported usage, a concurrent burst of 20:
    refused once spend plus reservations reach the budget; the overspend is at most one request's
    maximum cost; the refusal is in each protocol's own terms; a reload keeps the books."""
    import concurrent.futures
    import signal

    from gateway.chain.quota import estimate

    price = 100.0  # USD per million tokens, input and output alike: $0.0001 a token
    config = write_config(tmp_path_factory.mktemp("budget"), f"""
        version: v0.4.0
        llm_providers:
          - model: mock/priced
            base_url: {mock}/v1
            headers: {{x-mock-delay_ms: "300"}}
            pricing: {{input: {price}, output: {price}}}
          - model: mock/claude-priced
            base_url: {mock}
            provider_interface: anthropic
            pricing: {{input: {price}, output: {price}}}
        gateway_keys:
          - {{name: capped, key: capped-budget-key-1, budget_usd: 0.01}}
          - {{name: renewing, key: renewing-budget-key-1, budget_usd: 0.002, budget_window: 2s}}
    """)
    proc, base = start_gateway(config, None, "--log-level", "info", "--no-access-log")
    body = {"model": "priced", "max_tokens": 8, "messages": USER}

    def request(_: int) -> httpx.Response:
        return httpx.post(f"{base}/v1/chat/completions", headers={"x-api-key": "capped-budget-key-1"}, json=body,
                          timeout=20)  # fmt: skip

    def cost(response: httpx.Response) -> float:
        usage = response.json()["usage"]
        return (usage["prompt_tokens"] + usage["completion_tokens"]) * price / 1e6

    with proc:
        httpx.delete(f"{mock}/_mock/requests")
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            burst = list(pool.map(request, range(20)))
        served = [r for r in burst if r.status_code == 200]
        refused = [r for r in burst if r.status_code != 200]
        assert served and refused and {r.status_code for r in refused} == {429}
        assert len(httpx.get(f"{mock}/_mock/requests").json()) == len(served)  # refusals cost nothing upstream
        error = refused[0].json()["error"]
        assert error["code"] == "insufficient_quota" and "budget of $0.01 reached for key 'capped'" in error["message"]
        assert refused[0].headers["x-should-retry"] == "false"
        # Spend the rest one at a time, then the budget holds.
        for _ in range(40):
            response = request(0)
            if response.status_code != 200:
                break
            served.append(response)
        assert response.status_code == 429
        remaining = float(served[0].headers["x-junction-budget-remaining-usd"])
        assert 0 < remaining <= 0.01
        spent = sum(cost(r) for r in served)
        max_cost = sum(estimate(body, len(orjson.dumps(body)))) * price / 1e6  # one request's reservation
        assert 0.01 <= spent <= 0.01 + max_cost
        assert len(served) < 0.01 / cost(served[0]) + 2  # the books count every served request
        metrics = httpx.get(f"{base}/metrics").text
        assert abs(metric_lines(metrics, "junction_key_spend_usd_total")['{key="capped"}'] - spent) < 1e-9
        # Anthropic clients are told in their own terms (402 billing_error).
        with pytest.raises(anthropic.APIStatusError) as info:
            anthropic.Anthropic(base_url=base, api_key="capped-budget-key-1", max_retries=0).messages.create(
                model="claude-priced", max_tokens=5, messages=USER)
        assert info.value.status_code == 402 and info.value.body["error"]["type"] == "billing_error"
        # A reload does not reset the books.
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "config reloaded" not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "config reloaded" in proc.output() and request(0).status_code == 429
        # A windowed budget renews at the window's end, as its retry-after says.
        renewing = {"x-api-key": "renewing-budget-key-1"}
        for _ in range(20):
            last = httpx.post(f"{base}/v1/chat/completions", headers=renewing, json=body, timeout=20)
            if last.status_code != 200:
                break
        assert last.status_code == 429 and 1 <= int(last.headers["retry-after"]) <= 2
        time.sleep(int(last.headers["retry-after"]) + 0.1)
        assert httpx.post(f"{base}/v1/chat/completions", headers=renewing, json=body, timeout=20).status_code == 200


def test_r17_requests_per_minute_exact_under_a_burst(mock: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """rpm: 60, then 61 concurrent requests: exactly 60 served, one 429 with retry-after and
    x-ratelimit-* headers, and the upstream saw 60."""
    import concurrent.futures

    config = write_config(tmp_path_factory.mktemp("rpm"), f"""
        version: v0.4.0
        llm_providers:
          - model: mock/counted
            base_url: {mock}/v1
        gateway_keys:
          - {{name: sixty, key: sixty-per-minute-key, rpm: 60}}
    """)
    proc, base = start_gateway(config, None, "--log-level", "warning", "--no-access-log")

    def request(_: int) -> httpx.Response:
        return httpx.post(f"{base}/v1/chat/completions", headers={"authorization": "Bearer sixty-per-minute-key"},
                          json={"model": "counted", "messages": USER}, timeout=20)  # fmt: skip

    with proc:
        httpx.delete(f"{mock}/_mock/requests")
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(request, range(61)))
        upstream = len(httpx.get(f"{mock}/_mock/requests").json())
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 60 and statuses.count(429) == 1 and upstream == 60
    refused = next(r for r in responses if r.status_code == 429)
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-limit-requests"] == "60"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"


def test_r10_a_hundred_mid_stream_hang_ups_leave_nothing_behind(mock: str,
                                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    """100 clients hang up mid-stream: each upstream request is closed, the in-flight gauges and the
    key's parallel slots come back to zero, the partial answers are accounted (access log), file
    descriptors return to their baseline, and no task is left pending."""
    import os
    import socket

    config = write_config(tmp_path_factory.mktemp("r10"), f"""
        version: v0.4.0
        llm_providers:
          - model: mock/long
            base_url: {mock}/v1
            headers: {{x-mock-chunks: "40", x-mock-gap_ms: "50"}}
        gateway_keys:
          - {{name: leaver, key: leaver-key-0123456789, max_parallel: 2, tpm: 1000000}}
    """)
    proc, base = start_gateway(config, None, "--log-level", "info")
    port = int(base.rsplit(":", 1)[1])
    request = orjson.dumps({"model": "long", "messages": USER, "stream": True})
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: leaver-key-0123456789\r\n"
            f"content-type: application/json\r\ncontent-length: {len(request)}\r\n\r\n").encode() + request

    def fds() -> int:
        return len(os.listdir(f"/proc/{proc.pid}/fd"))

    def hang_up_after_first_bytes() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(head)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")

    with proc:
        assert chat(base, "long", stream=True).status_code == 401  # no key: refused before the upstream
        hang_up_after_first_bytes()
        time.sleep(0.5)
        baseline = fds()
        before = httpx.get(f"{mock}/_mock/stats").json()
        for _ in range(100):
            hang_up_after_first_bytes()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            stats = httpx.get(f"{mock}/_mock/stats").json()
            if stats["aborted"] - before["aborted"] == 100 and stats["open"] == 0:
                break
            time.sleep(0.1)
        assert stats["aborted"] - before["aborted"] == 100 and stats["open"] == 0
        metrics = httpx.get(f"{base}/metrics").text
        assert "junction_streams_in_flight 0.0" in metrics and "junction_requests_in_flight 0.0" in metrics
        assert 'junction_client_disconnects_total{model="mock/long"} 101.0' in metrics
        # Both parallel slots are free again: two streams at once are served.
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            done = list(pool.map(lambda _: httpx.post(f"{base}/v1/chat/completions", timeout=20,
                                                      headers={"x-api-key": "leaver-key-0123456789"},
                                                      json={"model": "long", "messages": USER, "stream": True}),
                                 range(2)))  # fmt: skip
        assert [r.status_code for r in done] == [200, 200] and all("[DONE]" in r.text for r in done)
        time.sleep(0.5)
        assert fds() <= baseline + 4  # pooled upstream connections may differ by a few
        proc.stop()
        output = proc.output()
    lines = access_log(output)
    gone = [x for x in lines if x["client_gone"]]
    assert len(gone) == 101 and all(x["status"] == 200 and x["ttft_ms"] is not None for x in gone)
    # The partial answers are accounted: output estimated from what was streamed before the hang-up.
    assert all(x["output_tokens"] >= 1 and x["usage_estimated"] for x in gone)
    assert "Task was destroyed but it is pending" not in output and "Traceback" not in output


def test_upstream_redirects_are_not_followed(gateway: str, mock: str, upstream_calls) -> None:
    """S6: an upstream answering 3xx with a Location elsewhere: the gateway does not follow it (an
    "attacker" listener receives nothing, the key goes nowhere), fails over, and without a fallback
    answers 502 in the client's protocol."""
    from tests.procs import start_mock_upstream

    with start_mock_upstream() as (_, attacker):
        moved = {"match_model": "moved", "status": 307, "chunks": ["moved"],
                 "headers": {"location": f"{attacker}/v1/chat/completions", "content-type": "text/plain"}}  # fmt: skip
        httpx.post(f"{mock}/_mock/script", json={"responses": [moved, moved]})
        with pytest.raises(openai.APIStatusError) as info:
            oa(gateway).chat.completions.create(model="moved", messages=USER)
        assert info.value.status_code == 502 and "redirect (HTTP 307)" in info.value.body["message"]
        assert "location" not in info.value.response.headers
        with pytest.raises(anthropic.APIStatusError) as an_info:
            anthropic.Anthropic(base_url=gateway, api_key="x", max_retries=0).messages.create(
                model="moved", max_tokens=5, messages=USER)
        assert an_info.value.status_code == 502 and an_info.value.body["error"]["type"] == "api_error"
        assert httpx.get(f"{attacker}/_mock/stats").json()["received"] == 0
    assert upstream_calls() == ["moved", "moved"]
