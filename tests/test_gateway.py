"""The gateway over real sockets: a `junction serve` process, the mock upstream as a separate
process, and the official SDKs as (strict) clients."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.procs import access_log, free_port, start_gateway, start_process, write_config

ROOT = Path(__file__).resolve().parent.parent
KEY = "gw-test-key-0123456789"
UPSTREAM_OPENAI_SECRET = "sk-oa-upstream-secret-abcdef"
UPSTREAM_ANTHROPIC_SECRET = "sk-an-upstream-secret-abcdef"

CONFIG = """
version: v0.4.0
llm_providers:
  - model: mock/gpt-mock
    base_url: {mock}/v1
    access_key: $TEST_OPENAI_SECRET
  - model: mock/claude-mock
    base_url: {mock}
    provider_interface: anthropic
    access_key: $TEST_ANTHROPIC_SECRET
  - model: mock/kimi-style
    base_url: {mock}/coding/v1
    access_key: $TEST_OPENAI_SECRET
    headers:
      User-Agent: "KimiCLI/1.3"
  - model: mock/rate-limited
    base_url: {mock}/v1
    access_key: $TEST_OPENAI_SECRET
    headers: {{x-mock-status: "429", x-mock-retry_after: "7"}}
  - model: mock/claude-third-party
    base_url: {mock}
    provider_interface: anthropic
    anthropic_betas: [interleaved-thinking-2025-05-14]
  - model: mock/claude-overloaded
    base_url: {mock}
    provider_interface: anthropic
    headers: {{x-mock-status: "529"}}
  - model: mock/hangs
    base_url: {mock}/v1
    headers: {{x-mock-fault: hang}}
  - model: mock/dead
    base_url: http://127.0.0.1:{dead_port}/v1
  - model: moonshotai/kimi-unset
    access_key: $JUNCTION_TEST_NEVER_SET
model_aliases:
  small-fast: {{target: claude-mock}}
  gpt-alias: {{target: mock/gpt-mock}}
gateway_keys:
  - name: tests
    key: $TEST_GATEWAY_KEY
  - name: narrow
    key: narrow-key-0123456789
    models: [gpt-mock]
    rpm: 5
limits:
  max_body_bytes: 65536
  max_messages: 50
metrics:
  require_key: true
"""


def serve(config: Path, env: dict[str, str] | None = None):
    return start_gateway(config, env, "--log-level", "warning")


@pytest.fixture(scope="module")
def gateway(mock: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("gw")
    config = write_config(tmp, CONFIG.format(mock=mock, dead_port=free_port()))
    env = {"TEST_OPENAI_SECRET": UPSTREAM_OPENAI_SECRET, "TEST_ANTHROPIC_SECRET": UPSTREAM_ANTHROPIC_SECRET,
           "TEST_GATEWAY_KEY": KEY}  # fmt: skip
    env_clean = {k: v for k, v in env.items()}
    proc, base = serve(config, env_clean)
    with proc:
        yield base


@pytest.fixture()
def recorded(mock: str):
    """Requests the mock received during the test."""
    httpx.delete(f"{mock}/_mock/requests")

    def get() -> list[dict]:
        return httpx.get(f"{mock}/_mock/requests").json()

    return get


def oa(gateway: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0, timeout=20)


def an(gateway: str, key: str = KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0, timeout=20)


USER = [{"role": "user", "content": "hello there"}]


# --- models and health ---------------------------------------------------------------------


def test_healthz_needs_no_key(gateway: str) -> None:
    assert httpx.get(f"{gateway}/healthz").json() == {"status": "ok"}


def test_models_list_through_both_sdks(gateway: str) -> None:
    ids = [m.id for m in oa(gateway).models.list()]
    assert "mock/gpt-mock" in ids and "small-fast" in ids and "gpt-alias" in ids
    anthropic_ids = [m.id for m in an(gateway).models.list()]
    assert anthropic_ids == ids


# --- same-protocol relay ---------------------------------------------------------------------


def test_anthropic_stream_same_protocol(gateway: str, recorded) -> None:
    client = an(gateway)
    with client.messages.stream(model="claude-mock", max_tokens=64, messages=USER) as stream:
        headers = stream.response.headers
        events = [event.type for event in stream]
        message = stream.get_final_message()
    assert message.content[0].text == "Mock reply to: hello there"
    assert message.stop_reason == "end_turn" and message.usage.output_tokens > 0
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert headers["x-junction-model"] == "mock/claude-mock"
    assert headers["x-junction-route"] == "none"
    assert float(headers["x-junction-upstream-ms"]) >= 0
    assert len(headers["x-junction-request-id"]) >= 16
    (req,) = recorded()
    assert req["path"] == "/v1/messages"
    assert req["body"]["model"] == "claude-mock" and req["body"]["stream"] is True


def test_openai_stream_same_protocol_with_usage(gateway: str) -> None:
    client = oa(gateway)
    with client.chat.completions.stream(model="mock/gpt-mock", messages=USER,
                                        stream_options={"include_usage": True}) as stream:  # fmt: skip
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Mock reply to: hello there"
    assert final.usage is not None and final.usage.completion_tokens > 0


def test_non_streaming_both_protocols(gateway: str) -> None:
    message = an(gateway).messages.create(model="claude-mock", max_tokens=64, messages=USER)
    assert message.content[0].text == "Mock reply to: hello there"
    completion = oa(gateway).chat.completions.create(model="gpt-mock", messages=USER)
    assert completion.choices[0].message.content == "Mock reply to: hello there"


def test_tool_calls_relay_both_protocols(gateway: str) -> None:
    tool = {"name": "get_weather", "description": "weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    with an(gateway).messages.stream(model="claude-mock", max_tokens=64, tools=[tool],
                                      messages=[{"role": "user", "content": "use tool please"}]) as s:  # fmt: skip
        message = s.get_final_message()
    assert message.stop_reason == "tool_use"
    assert message.content[-1].type == "tool_use" and message.content[-1].input == {"city": "mock"}
    fn = {"type": "function", "function": {"name": "get_weather", "parameters": tool["input_schema"]}}
    with oa(gateway).chat.completions.stream(model="gpt-mock", tools=[fn],
                                             messages=[{"role": "user", "content": "use tool"}]) as s:  # fmt: skip
        final = s.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and call.function.arguments == '{"city": "mock"}' or \
        call.function.arguments.replace(" ", "") == '{"city":"mock"}'


def test_stream_bytes_relayed_verbatim_and_unbuffered(gateway: str, mock: str) -> None:
    chunks = [
        'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
        '"role":"assistant","model":"claude-mock","content":[],"stop_reason":null,"stop_sequence":null,'
        '"usage":{"input_tokens":3,"output_tokens":0},"x_unknown_field":{"kept":true}}}\n\n',
        'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"héllo ✓"}}\n\n',
        'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
        'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}}\n\n',
        'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]
    httpx.post(f"{mock}/_mock/script", json={"responses": [{
        "match_model": "claude-mock", "status": 200, "headers": {"content-type": "text/event-stream"},
        "chunks": chunks, "gap_ms": 400}]})  # fmt: skip
    body = {"model": "claude-mock", "max_tokens": 10, "stream": True, "messages": USER}
    started = time.perf_counter()
    first_at = None
    received = b""
    with httpx.stream("POST", f"{gateway}/v1/messages?beta=true", json=body, headers={"x-api-key": KEY},
                      timeout=20) as response:  # fmt: skip
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for piece in response.iter_raw():
            if first_at is None:
                first_at = time.perf_counter() - started
            received += piece
    total = time.perf_counter() - started
    assert received == "".join(chunks).encode()
    # 6 chunks 400 ms apart: the first must arrive long before the stream ends.
    assert first_at is not None and first_at < total - 1.2


# --- model selection -------------------------------------------------------------------------


def test_alias_applied_and_rewritten_upstream(gateway: str, recorded) -> None:
    response = oa(gateway).chat.completions.with_raw_response.create(model="gpt-alias", messages=USER)
    assert response.headers["x-junction-alias"] == "gpt-alias"
    assert response.headers["x-junction-model"] == "mock/gpt-mock"
    assert recorded()[0]["body"]["model"] == "gpt-mock"


def test_unknown_claude_model_reaches_default(mock: str, tmp_path: Path, recorded) -> None:
    config = write_config(tmp_path, f"""
        version: v0.4.0
        llm_providers:
          - model: mock/other
            base_url: {mock}
            provider_interface: anthropic
          - model: mock/the-default
            base_url: {mock}
            provider_interface: anthropic
            default: true
    """)
    proc, base = serve(config)
    with proc:
        for name in ("claude-opus-4-8", "claude-haiku-4-5-20251001", "claude-opus-4-8[1m]"):
            raw = an(base, "unused").messages.with_raw_response.create(model=name, max_tokens=8, messages=USER)
            assert raw.headers["x-junction-model"] == "mock/the-default"
    assert {r["body"]["model"] for r in recorded()} == {"the-default"}


def test_unknown_model_without_default_is_404_in_protocol(mock: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, f"""
        version: v0.4.0
        llm_providers:
          - model: mock/only
            base_url: {mock}
    """)
    proc, base = serve(config)
    with proc:
        with pytest.raises(openai.NotFoundError) as info:
            oa(base, "x").chat.completions.create(model="gpt-9", messages=USER)
        assert "gpt-9" in info.value.message


# --- upstream request hygiene ----------------------------------------------------------------


def test_upstream_auth_headers_and_client_key_never_forwarded(gateway: str, recorded) -> None:
    httpx.post(f"{gateway}/v1/messages", json={"model": "claude-mock", "max_tokens": 8, "messages": USER},
               headers={"x-api-key": KEY, "anthropic-beta": "tools-2099-01-01", "cookie": "c=1", "x-custom": "1",
                        "anthropic-version": "2099-01-01", "user-agent": "client-agent/1"}).raise_for_status()
    oa(gateway).chat.completions.create(model="gpt-mock", messages=USER, extra_headers={"anthropic-beta": "x"})
    oa(gateway).chat.completions.create(model="kimi-style", messages=USER)
    to_anthropic, to_openai, to_kimi = recorded()
    h = to_anthropic["headers"]
    assert h["x-api-key"] == UPSTREAM_ANTHROPIC_SECRET and "authorization" not in h
    # The client's version and betas reach an Anthropic upstream unchanged.
    assert h["anthropic-version"] == "2099-01-01" and h["anthropic-beta"] == "tools-2099-01-01"
    assert "cookie" not in h and "x-custom" not in h and h.get("user-agent") != "client-agent/1"
    h = to_openai["headers"]
    assert h["authorization"] == f"Bearer {UPSTREAM_OPENAI_SECRET}"
    assert "x-api-key" not in h and "anthropic-beta" not in h
    assert to_kimi["path"] == "/coding/v1/chat/completions"
    assert to_kimi["headers"]["user-agent"] == "KimiCLI/1.3"
    for req in (to_anthropic, to_openai, to_kimi):
        assert KEY not in str(req["headers"])


def test_anthropic_betas_filtered_for_a_third_party_upstream(gateway: str, recorded) -> None:
    betas = "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27"
    for model in ("claude-third-party", "claude-mock"):
        httpx.post(f"{gateway}/v1/messages", json={"model": model, "max_tokens": 5, "messages": USER},
                   headers={"x-api-key": KEY, "anthropic-beta": betas}).raise_for_status()  # fmt: skip
    third_party, native_like = recorded()
    assert third_party["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert native_like["headers"]["anthropic-beta"] == betas


def test_anthropic_version_defaulted_when_client_sends_none(gateway: str, recorded) -> None:
    body = {"model": "claude-mock", "max_tokens": 5, "messages": USER}
    assert httpx.post(f"{gateway}/v1/messages", json=body, headers={"x-api-key": KEY}).status_code == 200
    assert recorded()[0]["headers"]["anthropic-version"] == "2023-06-01"


def test_metrics_can_require_a_gateway_key(gateway: str) -> None:
    assert httpx.get(f"{gateway}/metrics").status_code == 401
    protected = httpx.get(f"{gateway}/metrics", headers={"x-api-key": KEY})
    assert protected.status_code == 200 and "junction_requests_total" in protected.text


def test_key_model_allowlist_covers_names_and_aliases(gateway: str) -> None:
    narrow = oa(gateway, "narrow-key-0123456789")
    assert narrow.chat.completions.create(model="gpt-alias", messages=USER).choices[0].message.content
    for name in ("claude-mock", "small-fast"):
        with pytest.raises(openai.PermissionDeniedError) as info:
            narrow.chat.completions.create(model=name, messages=USER)
        assert "may not use model" in info.value.message


def test_key_requests_per_minute(gateway: str) -> None:
    """rpm: 5 -> exactly five requests pass in a burst; the rest get 429 with retry-after and
    x-ratelimit-* headers (the allowlist test above already spent some of the window)."""
    statuses, last = [], None
    for _ in range(7):
        last = httpx.post(f"{gateway}/v1/chat/completions", headers={"x-api-key": "narrow-key-0123456789"},
                          json={"model": "gpt-mock", "messages": USER})  # fmt: skip
        statuses.append(last.status_code)
    assert statuses.count(429) >= 2 and set(statuses) <= {200, 403, 429}
    assert statuses[-1] == 429 and last is not None
    assert int(last.headers["retry-after"]) >= 1 and last.headers["x-ratelimit-remaining-requests"] == "0"
    assert last.headers["x-ratelimit-limit-requests"] == "5"
    assert "rate limit of 5 requests per minute" in last.json()["error"]["message"]
    other = httpx.post(f"{gateway}/v1/chat/completions", headers={"x-api-key": KEY},
                       json={"model": "gpt-mock", "messages": USER})  # fmt: skip
    assert other.status_code == 200 and "x-ratelimit-limit-requests" not in other.headers


def test_unknown_body_fields_preserved(gateway: str, recorded) -> None:
    an(gateway).messages.create(model="claude-mock", max_tokens=8, messages=USER,
                                extra_body={"future_field": {"a": [1, 2]}, "context_management": {"edits": []}})
    body = recorded()[0]["body"]
    assert body["future_field"] == {"a": [1, 2]} and body["context_management"] == {"edits": []}


def test_client_supplied_upstream_overrides_are_removed(gateway: str, recorded) -> None:
    overrides = {"api_base": "http://127.0.0.1:1/steal", "base_url": "http://127.0.0.1:1", "api_key": "sk-x",
                 "extra_headers": {"x-evil": "1"}, "custom_llm_provider": "openai", "user_config": {}}
    oa(gateway).chat.completions.create(model="gpt-mock", messages=USER, extra_body=overrides)
    an(gateway).messages.create(model="claude-mock", max_tokens=5, messages=USER, extra_body=overrides)
    for request in recorded():
        assert not set(overrides) & set(request["body"]) and "x-evil" not in request["headers"]


def test_count_tokens_same_protocol(gateway: str) -> None:
    count = an(gateway).messages.count_tokens(model="claude-mock", messages=USER)
    assert count.input_tokens > 0


# --- errors in the client's protocol ---------------------------------------------------------


def test_missing_and_wrong_gateway_key(gateway: str, mock: str) -> None:
    before = httpx.get(f"{mock}/_mock/stats").json()["received"]
    with pytest.raises(anthropic.AuthenticationError) as a_info:
        an(gateway, "wrong-key").messages.create(model="claude-mock", max_tokens=8, messages=USER)
    assert a_info.value.body["type"] == "error" and a_info.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError) as o_info:
        oa(gateway, "wrong-key").chat.completions.create(model="gpt-mock", messages=USER)
    assert o_info.value.body["type"] == "authentication_error"
    raw = httpx.post(f"{gateway}/v1/messages", json={})
    assert raw.status_code == 401 and "missing gateway key" in raw.json()["error"]["message"]
    assert httpx.get(f"{gateway}/v1/models").status_code == 401
    bearer = httpx.get(f"{gateway}/v1/models", headers={"authorization": f"Bearer {KEY}"})
    assert bearer.status_code == 200
    assert httpx.get(f"{mock}/_mock/stats").json()["received"] == before


@pytest.mark.parametrize("value", [
    "Bearer ' OR '1'='1' --", 'Bearer {"$ne": null}', "Bearer ${JUNCTION_KEY}", "Bearer \\x00\\u0000",
    "Bearer " + KEY[:-1], "Bearer " + KEY + "0", "Bearer " + KEY.upper(), "Basic " + KEY, "Bearer", "bearer   " + KEY + " extra",
    "Bearer " + "A" * 8000, "Bearer " + "é" * 40, "Bearer 🔑-key", "Bearer a\tb",
], ids=["sql", "json", "variable", "escapes", "prefix", "longer", "case", "basic", "empty", "spaced", "8kb", "latin1",
        "utf8", "tab"])  # fmt: skip
def test_auth_header_injection_is_always_401(gateway: str, mock: str, value: str) -> None:
    """S14: metacharacters, near misses, non-ASCII bytes and oversized values in the credential:
    always 401 in the client's protocol, never a 5xx, nothing sent upstream."""
    before = httpx.get(f"{mock}/_mock/stats").json()["received"]
    raw = value.encode("utf-8")  # non-ASCII goes out as raw bytes, as a hostile client would send them
    for path, shape in (("/v1/messages", "anthropic"), ("/v1/chat/completions", "openai")):
        for name in (b"authorization", b"x-api-key"):
            header = raw if name == b"authorization" else raw.removeprefix(b"Bearer ")
            answer = httpx.post(f"{gateway}{path}", headers=[(name, header)], json={"model": "gpt-mock", "messages": USER})
            assert answer.status_code == 401, (path, name, answer.text)
            error = answer.json()
            assert (error["type"] == "error") if shape == "anthropic" else (error["error"]["type"] == "authentication_error")
    assert httpx.get(f"{mock}/_mock/stats").json()["received"] == before


def test_key_flood_is_refused_without_upstream_traffic(gateway: str, mock: str) -> None:
    import concurrent.futures
    import secrets

    before = httpx.get(f"{mock}/_mock/stats").json()["received"]
    with httpx.Client(base_url=gateway, timeout=10) as client:
        def attempt(_: int) -> int:
            key = secrets.token_urlsafe(24)
            return client.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                               json={"model": "gpt-mock", "messages": USER}).status_code  # fmt: skip

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(attempt, range(400)))
    assert statuses == [401] * 400
    assert httpx.get(f"{mock}/_mock/stats").json()["received"] == before


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/v1/messages", b"{not json", 400, "not valid JSON"),
        ("/v1/messages", b"", 400, "empty"),
        ("/v1/messages", b"[1,2]", 400, "expected a JSON object"),
        ("/v1/messages", b'{"messages":[{"role":"user","content":"x"}],"max_tokens":5}', 400, "model: required"),
        ("/v1/messages", b'{"model":"m","messages":[{"role":"user","content":"x"}]}', 400, "max_tokens: required"),
        ("/v1/messages", b'{"model":"m","max_tokens":5,"messages":"hi"}', 400, "messages: expected an array"),
        ("/v1/messages", b'{"model":"m","max_tokens":5,"messages":[{"role":"bot","content":"x"}]}', 400,
         "messages[0].role: expected one of user, assistant, system, got 'bot'"),
        ("/v1/chat/completions", b'{"model":7,"messages":[]}', 400, "model: expected a non-empty string"),
        ("/v1/chat/completions", b'{"model":"m","messages":[]}', 400, "messages: must contain at least one"),
        ("/v1/chat/completions", b'{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}',
         400, "stream: expected a boolean"),
        ("/v1/chat/completions", b'{"model":"m","messages":[{"role":"user","content":"' + b"x" * 70000 + b'"}]}',
         413, "exceeds the limit of 65536 bytes"),
    ],
)
def test_bad_requests_get_clear_protocol_errors(gateway: str, path: str, body: bytes, status: int,
                                                fragment: str) -> None:  # fmt: skip
    response = httpx.post(f"{gateway}{path}", content=body, headers={"x-api-key": KEY,
                                                                     "content-type": "application/json"})
    assert response.status_code == status
    payload = response.json()
    if path == "/v1/messages":
        assert payload["type"] == "error" and fragment in payload["error"]["message"]
        assert payload["error"]["type"] in ("invalid_request_error", "request_too_large")
    else:
        assert fragment in payload["error"]["message"] and payload["error"]["type"] == "invalid_request_error"
    assert response.headers["x-junction-request-id"]


def test_oversized_body_refused_before_it_is_read(gateway: str) -> None:
    """Content-Length over the limit: 413 at once, without waiting for (or reading) the body."""
    import socket

    host, port = gateway.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=3) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"x-api-key: " + KEY.encode() + b"\r\ncontent-length: 1000000000\r\n\r\n{\"model\":")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            piece = sock.recv(65536)  # bounded by the socket timeout
            if not piece:
                break
            reply += piece
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"exceeds the limit of 65536 bytes" in reply


def test_oversized_headers_deep_json_and_too_many_messages(gateway: str) -> None:
    big = httpx.post(f"{gateway}/v1/messages", headers={"x-api-key": KEY, "x-big": "a" * 40000}, json={})
    assert big.status_code == 431 and big.json()["type"] == "error"
    assert "request headers" in big.json()["error"]["message"]
    deep = b'{"model":"m","messages":' + b"[" * 5000 + b"]" * 5000 + b"}"
    nested = httpx.post(f"{gateway}/v1/chat/completions", content=deep, headers={"x-api-key": KEY})
    assert nested.status_code == 400 and "not valid JSON" in nested.json()["error"]["message"]
    many = [{"role": "user", "content": "x"}] * 51
    too_many = httpx.post(f"{gateway}/v1/chat/completions", headers={"x-api-key": KEY},
                          json={"model": "gpt-mock", "messages": many})  # fmt: skip
    assert too_many.status_code == 413 and "51 messages exceed the limit of 50" in too_many.json()["error"]["message"]


def test_unset_variable_named_in_protocol_error(gateway: str) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        oa(gateway).chat.completions.create(model="kimi-unset", messages=USER)
    assert info.value.status_code == 503
    assert "JUNCTION_TEST_NEVER_SET" in info.value.message
    assert info.value.response.headers["x-should-retry"] == "false"


TOOL = {"name": "get_weather", "description": "weather", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def test_anthropic_client_to_openai_upstream(gateway: str, recorded) -> None:
    client = an(gateway)
    message = client.messages.create(model="gpt-mock", max_tokens=64, messages=USER)
    assert message.content[0].text == "Mock reply to: hello there" and message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    with client.messages.stream(model="gpt-mock", max_tokens=64, tools=[TOOL],
                                messages=[{"role": "user", "content": "use tool now"}]) as stream:  # fmt: skip
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    (call,) = [b for b in final.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "mock"}
    sent = recorded()[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["stream"] is True and sent["body"]["stream_options"] == {"include_usage": True}
    assert sent["body"]["tools"][0]["function"]["name"] == "get_weather"


def test_openai_client_to_anthropic_upstream(gateway: str, recorded) -> None:
    client = oa(gateway)
    completion = client.chat.completions.create(model="claude-mock", messages=USER)
    assert completion.choices[0].message.content == "Mock reply to: hello there"
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    fn = {"type": "function", "function": {"name": "get_weather", "parameters": TOOL["input_schema"]}}
    with client.chat.completions.stream(model="claude-mock", tools=[fn], stream_options={"include_usage": True},
                                        messages=[{"role": "user", "content": "use tool"}]) as stream:  # fmt: skip
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.completion_tokens > 0
    sent = recorded()[-1]
    assert sent["path"] == "/v1/messages" and sent["body"]["max_tokens"] > 0
    assert sent["body"]["tools"][0]["input_schema"] == TOOL["input_schema"]


def test_upstream_errors_relayed_with_status_and_retry_after(gateway: str) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        oa(gateway).chat.completions.create(model="rate-limited", messages=USER)
    assert info.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic.APIStatusError) as a_info:
        an(gateway).messages.create(model="claude-overloaded", max_tokens=8, messages=USER)
    assert a_info.value.status_code == 529 and a_info.value.body["error"]["type"] == "overloaded_error"


def test_unreachable_upstream_is_502_in_protocol(gateway: str) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        oa(gateway).chat.completions.create(model="dead", messages=USER)
    assert info.value.status_code == 502 and "could not be reached" in info.value.message
    assert "127.0.0.1" not in info.value.message


def test_unknown_path_and_method_in_protocol(gateway: str) -> None:
    response = httpx.get(f"{gateway}/v1/messages", headers={"x-api-key": KEY})
    assert response.status_code == 405 and response.json()["type"] == "error"
    response = httpx.post(f"{gateway}/v1/nothing", headers={"x-api-key": KEY})
    assert response.status_code == 404 and "error" in response.json()


def test_client_disconnect_cancels_upstream(gateway: str, mock: str) -> None:
    before = httpx.get(f"{mock}/_mock/stats").json()
    with pytest.raises(openai.APITimeoutError):
        openai.OpenAI(base_url=f"{gateway}/v1", api_key=KEY, max_retries=0, timeout=0.5).chat.completions.create(
            model="hangs", messages=USER)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        stats = httpx.get(f"{mock}/_mock/stats").json()
        if stats["aborted"] > before["aborted"]:
            break
        time.sleep(0.05)
    assert stats["aborted"] == before["aborted"] + 1 and stats["open"] == 0


def test_passthrough_auth_forwards_client_credential_reshaped(mock: str, tmp_path: Path, recorded) -> None:
    config = write_config(tmp_path, f"""
        version: v0.4.0
        llm_providers:
          - model: mock/own-key
            base_url: {mock}
            provider_interface: anthropic
            passthrough_auth: true
            default: true
    """)
    proc, base = serve(config)
    with proc:
        openai_style = httpx.post(f"{base}/v1/messages", headers={"authorization": "Bearer client-provider-key"},
                                  json={"model": "x", "max_tokens": 5, "messages": USER})  # fmt: skip
        assert openai_style.status_code == 200
    (req,) = recorded()
    assert req["headers"]["x-api-key"] == "client-provider-key"
    assert "authorization" not in req["headers"]


def test_seed_config_serves_on_its_listener(tmp_path: Path) -> None:
    """`junction serve` with the seed config binds 0.0.0.0:12000 and lists every seed model."""
    import shutil
    import socket

    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 12000)) == 0:
            pytest.skip("port 12000 is already in use on this machine; cannot start the seed listener")
    seed = tmp_path / "plano_config.yaml"  # as written; a copy, so its usage ledger is not left in the checkout
    seed.write_text((ROOT / "plano_config.yaml").read_text())
    args = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(seed)]
    # No provider keys: nothing can leave the machine, and the error must name the variable.
    env = {k: v for k, v in os.environ.items() if k not in ("DEEPSEEK_API_KEY", "MOONSHOTAI_API_KEY")}
    with start_process(args, "http://127.0.0.1:12000/healthz", env=env) as proc:
        ids = [m["id"] for m in httpx.get("http://127.0.0.1:12000/v1/models").json()["data"]]
        assert ids == ["moonshotai/kimi-for-coding", "deepseek/deepseek-v4-pro", "deepseek/deepseek-v4-flash",
                       "arch.claude.code.small.fast"]  # fmt: skip
        if shutil.which("ss"):
            listening = subprocess.run(["ss", "-ltnH", "sport = :12000"], capture_output=True, text=True).stdout
            assert "0.0.0.0:12000" in listening
        alias = httpx.post("http://127.0.0.1:12000/v1/chat/completions",
                           json={"model": "arch.claude.code.small.fast", "messages": USER}, timeout=5)
        assert alias.status_code == 503 and "DEEPSEEK_API_KEY" in alias.json()["error"]["message"]
        assert alias.headers["x-junction-model"] == "deepseek/deepseek-v4-flash"
        assert alias.headers["x-junction-alias"] == "arch.claude.code.small.fast"
        # No gateway_keys: it serves, and says loudly who can reach it.
        assert "no gateway_keys configured: the gateway is open to ALL clients that reach 0.0.0.0" in proc.output()


def test_seed_config_alias_and_default_reach_deepseek_flash(mock: str, tmp_path: Path, recorded) -> None:
    """The seed config with its providers pointed at the mock: the small/fast alias and an unknown
    Claude model name both reach deepseek/deepseek-v4-flash."""
    import yaml

    seed = yaml.safe_load((ROOT / "plano_config.yaml").read_text())
    for provider in seed["llm_providers"]:
        provider["base_url"] = f"{mock}/v1"
    seed["listeners"][0]["address"] = "127.0.0.1"
    config = tmp_path / "seed.yaml"
    config.write_text(yaml.safe_dump(seed))
    proc, base = serve(config, {"DEEPSEEK_API_KEY": "sk-ds-test", "MOONSHOTAI_API_KEY": "sk-kimi-test"})
    with proc:
        client = oa(base, "unused")
        for name in ("arch.claude.code.small.fast", "claude-haiku-4-5-20251001"):
            raw = client.chat.completions.with_raw_response.create(model=name, messages=USER)
            assert raw.headers["x-junction-model"] == "deepseek/deepseek-v4-flash"
            assert raw.parse().choices[0].message.content == "Mock reply to: hello there"
    bodies = [r["body"]["model"] for r in recorded()]
    assert bodies == ["deepseek-v4-flash", "deepseek-v4-flash"]
    assert all(r["headers"]["authorization"] == "Bearer sk-ds-test" for r in recorded())


def test_metrics_and_json_access_log(mock: str, tmp_path: Path) -> None:

    config = write_config(tmp_path, f"""
        version: v0.4.0
        llm_providers:
          - model: mock/observed
            base_url: {mock}/v1
            default: true
    """)
    port = free_port()
    args = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip
    secret_prompt = "please keep this prompt text out of the logs"
    with start_process(args, f"http://127.0.0.1:{port}/healthz") as proc:
        client = oa(f"http://127.0.0.1:{port}", "x")
        client.chat.completions.create(model="observed", messages=[{"role": "user", "content": secret_prompt}])
        with client.chat.completions.stream(model="observed", messages=USER,
                                            stream_options={"include_usage": True}) as stream:  # fmt: skip
            stream.get_final_completion()
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        time.sleep(0.2)
        output = proc.output()
    assert 'junction_requests_total{endpoint="chat",model="mock/observed",protocol="openai",route="none",status="200"} 2.0' in text
    assert 'gen_ai_client_token_usage_total{model="mock/observed",type="output"}' in text
    assert "gen_ai_server_time_to_first_token_seconds_count" in text
    lines = access_log(output)
    assert len(lines) == 2
    first, second = lines
    assert first["model"] == "mock/observed" and first["status"] == 200 and first["stream"] is False
    assert first["attempts"] == 1 and first["fallback_from"] is None and first["key"] is None
    assert first["input_tokens"] > 0 and first["output_tokens"] > 0
    assert second["stream"] is True and second["ttft_ms"] is not None and second["output_tokens"] > 0
    assert secret_prompt not in output


def test_prompt_logging_is_opt_in_and_a_request_can_withhold_it(mock: str, tmp_path: Path) -> None:
    """S15: with `access_log.prompts: true` the access log carries the prompt (cut at
    prompt_max_chars, secrets still masked); `x-junction-no-log: true` withholds it for one request."""

    secret = "sk-s15-upstream-secret-0123456789"
    config = write_config(tmp_path, f"""
        version: v0.4.0
        llm_providers:
          - model: mock/logged
            base_url: {mock}/v1
            access_key: {secret}
            default: true
        access_log:
          prompts: true
          prompt_max_chars: 300
    """)
    logged, private = "explain the flaky test in module alpha", "my private medical question"
    proc, base = start_gateway(config, None)
    with proc:
        client = oa(base, "x")
        client.chat.completions.create(model="logged", messages=[{"role": "user", "content": logged}])
        client.chat.completions.create(model="logged", messages=[{"role": "user", "content": private}],
                                       extra_headers={"x-junction-no-log": "true"})  # fmt: skip
        long_text = f"the key is {secret} " + "x" * 1000
        httpx.post(f"{base}/v1/messages", json={"model": "logged", "max_tokens": 5, "system": "Be brief.",
                                                "messages": [{"role": "user", "content": long_text}]})  # fmt: skip
        time.sleep(0.2)
        output = proc.output()
    lines = access_log(output)
    assert len(lines) == 3
    assert logged in lines[0]["prompt"]
    assert lines[1]["prompt"] is None and lines[1]["prompt_withheld"] == "x-junction-no-log"
    assert private not in output
    assert '"system": "Be brief."'.replace(" ", "") in lines[2]["prompt"].replace(" ", "")
    assert len(lines[2]["prompt"]) <= 301 and "[redacted]" in lines[2]["prompt"]
    assert secret[:8] not in output


def test_provider_key_echoed_by_upstream_is_redacted_everywhere(mock: str, tmp_path: Path) -> None:
    secret = "sk-live-0123456789abcdefSECRET"
    gateway_key = "gw-key-abcdefghijklmnop"
    config = write_config(tmp_path, f"""
        version: v0.4.0
        llm_providers:
          - model: mock/leaky
            base_url: {mock}/v1
            access_key: $LEAKY_KEY
            default: true
        gateway_keys:
          - $LEAKY_GATEWAY_KEY
    """)
    echo = f'{{"error":{{"message":"Incorrect API key provided: {secret[:10]}***{secret[-4:]} (full: {secret})",' \
           '"type":"invalid_request_error","code":"invalid_api_key"}}'
    httpx.post(f"{mock}/_mock/script", json={"responses": [
        # A relayed error that echoes the key (redacted in the body), then a refusal of the key
        # (a generic 502 for the client; the upstream's words, redacted, only in the log).
        {"match_model": "leaky", "status": 400, "headers": {"content-type": "application/json"}, "chunks": [echo]},
        {"match_model": "leaky", "status": 401, "headers": {"content-type": "application/json"}, "chunks": [echo]},
    ]})  # fmt: skip
    port = free_port()
    args = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "debug"]  # fmt: skip
    env = dict(os.environ, LEAKY_KEY=secret, LEAKY_GATEWAY_KEY=gateway_key)
    with start_process(args, f"http://127.0.0.1:{port}/healthz", env=env) as proc:
        base = f"http://127.0.0.1:{port}"
        responses = [
            httpx.post(f"{base}/v1/chat/completions", headers={"authorization": f"Bearer {gateway_key}"},
                       json={"model": "leaky", "messages": USER}),
            httpx.post(f"{base}/v1/messages", headers={"x-api-key": gateway_key},
                       json={"model": "leaky", "max_tokens": 5, "messages": USER}),
        ]  # fmt: skip
        metrics = httpx.get(f"{base}/metrics").text
        time.sleep(0.2)
        output = proc.output()
    seen = "".join(r.text + str(r.headers) for r in responses) + metrics + output
    assert [r.status_code for r in responses] == [400, 502]
    assert "Incorrect API key provided: [redacted]" in responses[0].json()["error"]["message"]
    assert "Incorrect API key provided: [redacted]" in output
    for value in (secret, gateway_key):
        assert value[:8] not in seen


def test_internal_errors_are_generic_with_a_request_id(mock: str, tmp_path: Path) -> None:
    """S17: exceptions inside the gateway (forced here by tests/faulty_gateway.py) reach the client
    as a generic error with the request id, before the first byte as a 500 and mid-stream as an
    error event; no stack trace, internal URL or key. The log has the trace, with the key masked."""
    from tests.faulty_gateway import INTERNAL_URL

    secret = "sk-s17-provider-secret-0123456789"
    config = write_config(tmp_path, f"""
        version: v0.4.0
        llm_providers:
          - model: mock/explode-request
            base_url: {mock}/v1
            access_key: $FAULTY_PROVIDER_KEY
          - model: mock/explode-stream
            base_url: {mock}/v1
            access_key: $FAULTY_PROVIDER_KEY
            headers: {{x-mock-chunks: "6"}}
    """)
    port = free_port()
    args = [sys.executable, "-m", "tests.faulty_gateway", "serve", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip
    with start_process(args, f"http://127.0.0.1:{port}/healthz", env=dict(os.environ, FAULTY_PROVIDER_KEY=secret)) \
            as proc:  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        client = anthropic.Anthropic(base_url=base, api_key="x", max_retries=0)
        with pytest.raises(anthropic.InternalServerError) as info:
            client.messages.create(model="explode-request", max_tokens=5, messages=USER)
        failed = info.value.response
        request_id = failed.headers["x-junction-request-id"]
        assert info.value.body["error"] == {"type": "api_error",
                                            "message": f"internal gateway error (request id {request_id})"}
        with httpx.stream("POST", f"{base}/v1/messages", timeout=10,
                          json={"model": "explode-stream", "max_tokens": 50, "messages": USER, "stream": True}) as s:
            assert s.status_code == 200
            streamed, stream_id = s.read().decode(), s.headers["x-junction-request-id"]
        assert streamed.startswith("event: message_start")
        assert streamed.rstrip().endswith(
            f'event: error\ndata: {{"type":"error","error":{{"type":"api_error",'
            f'"message":"internal gateway error (request id {stream_id})"}}}}')
        with pytest.raises(anthropic.APIStatusError):  # the SDK raises on the error event
            with client.messages.stream(model="explode-stream", max_tokens=50, messages=USER) as stream:
                stream.get_final_message()
        time.sleep(0.2)
        output = proc.output()
    seen = failed.text + str(failed.headers) + streamed
    for needle in ("Traceback", "RuntimeError", "KeyError", INTERNAL_URL, "10.20.30.40", secret[:8], "faulty_gateway"):
        assert needle not in seen
    assert f"unhandled error in request {request_id}" in output and "Traceback" in output
    assert INTERNAL_URL in output and secret[:8] not in output


def test_no_admin_surface_and_revocation_by_reload(mock: str, tmp_path: Path) -> None:
    """S8: there is no admin API to reach (keys, config and reloads are the operator's, through the
    config file and SIGHUP), and a protected /metrics refuses a missing key. S10: keys may be stored
    only as SHA-256 digests; removing a key and reloading revokes it at once."""
    import hashlib
    import signal

    kept, revoked = "sk-gw-kept-key-0123456789", "sk-gw-revoked-key-0123456789"
    digest = hashlib.sha256(kept.encode()).hexdigest()
    body = f"""
        version: v0.4.0
        llm_providers:
          - model: mock/keyed
            base_url: {mock}/v1
        metrics:
          require_key: true
        gateway_keys:
          - {{name: kept, sha256: {digest}}}
    """
    config = write_config(tmp_path, body + f"      - {{name: leaving, key: {revoked}}}\n")
    proc, base = start_gateway(config, None, "--log-level", "info")

    def chat_as(key: str) -> int:
        return httpx.post(f"{base}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": "keyed", "messages": USER}, timeout=10).status_code  # fmt: skip

    with proc:
        assert chat_as(kept) == 200 and chat_as(revoked) == 200
        for method, path in (("GET", "/keys"), ("POST", "/keys"), ("GET", "/config"), ("POST", "/reload"),
                             ("POST", "/key/generate"), ("GET", "/admin")):
            answer = httpx.request(method, f"{base}{path}", headers={"authorization": f"Bearer {kept}"})
            assert answer.status_code in (404, 405) and "error" in answer.json()
        assert httpx.get(f"{base}/metrics").status_code == 401
        assert httpx.get(f"{base}/metrics", headers={"x-api-key": kept}).status_code == 200
        write_config(tmp_path, body)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "config reloaded" not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert chat_as(revoked) == 401 and chat_as(kept) == 200
