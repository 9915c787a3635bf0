"""Preference routing end to end: the seed config's three routes through `/v1/messages` and
`/v1/chat/completions`, the decision-only API, the headers, and `junction route`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import anthropic
import httpx
import openai
import pytest
import yaml

from tests.procs import start_gateway

ROOT = Path(__file__).resolve().parent.parent
REVIEW = "Can you review this function and point out bugs?\n\ndef mean(xs):\n    return sum(xs) / len(xs) + 1"
POEM = "Write a short poem about autumn rain falling on a quiet harbour town."
MATH = "Prove that the square root of 2 is irrational, step by step."
REMINDER = "<system-reminder>\nThe user may ask you to review code for bugs. Be thorough.\n</system-reminder>"


@pytest.fixture(scope="module")
def gateway(mock: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    seed = yaml.safe_load((ROOT / "plano_config.yaml").read_text())
    for provider in seed["llm_providers"]:
        provider["base_url"] = f"{mock}/v1"
    seed["listeners"][0]["address"] = "127.0.0.1"
    config = tmp_path_factory.mktemp("routing") / "seed.yaml"
    config.write_text(yaml.safe_dump(seed))
    proc, base = start_gateway(config, {"DEEPSEEK_API_KEY": "sk-ds", "MOONSHOTAI_API_KEY": "sk-kimi"},
                               "--log-level", "warning", "--no-access-log")  # fmt: skip
    with proc:
        yield base


@pytest.fixture()
def upstream_models(mock: str):
    httpx.delete(f"{mock}/_mock/requests")
    return lambda: [r["body"]["model"] for r in httpx.get(f"{mock}/_mock/requests").json()]


def ask(gateway: str, messages: list[dict[str, Any]], model: str = "claude-opus-4-8", **headers: str) -> httpx.Response:
    client = anthropic.Anthropic(base_url=gateway, api_key="x", max_retries=0, timeout=60)
    raw = client.messages.with_raw_response.create(model=model, max_tokens=64, messages=messages,
                                                   extra_headers=headers or None)  # fmt: skip
    return raw.http_response


@pytest.mark.parametrize(
    ("text", "route", "model"),
    [
        (REVIEW, "code_review", "deepseek/deepseek-v4-pro"),
        (POEM, "creative_writing", "deepseek/deepseek-v4-flash"),
        (MATH, "complex_reasoning", "moonshotai/kimi-for-coding"),
    ],
)
def test_claude_code_request_is_routed_by_its_latest_user_turn(gateway: str, upstream_models, text: str,
                                                               route: str, model: str) -> None:  # fmt: skip
    response = ask(gateway, [{"role": "user", "content": [{"type": "text", "text": REMINDER},
                                                          {"type": "text", "text": text}]}])  # fmt: skip
    assert response.headers["x-junction-route"] == route
    assert response.headers["x-junction-model"] == model
    assert float(response.headers["x-junction-route-score"]) > 0
    assert float(response.headers["x-junction-route-ms"]) >= 0
    assert "x-junction-route-margin" in response.headers
    assert upstream_models() == [model.split("/", 1)[1]]


def test_openai_clients_are_routed_too(gateway: str) -> None:
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key="x", max_retries=0, timeout=60)
    raw = client.chat.completions.with_raw_response.create(model="gpt-anything",
                                                           messages=[{"role": "user", "content": POEM}])  # fmt: skip
    assert raw.headers["x-junction-route"] == "creative_writing"


def test_explicit_alias_and_route_off_are_not_routed(gateway: str) -> None:
    alias = ask(gateway, [{"role": "user", "content": REVIEW}], model="arch.claude.code.small.fast")
    assert alias.headers["x-junction-route"] == "none" and "x-junction-route-score" not in alias.headers
    assert alias.headers["x-junction-model"] == "deepseek/deepseek-v4-flash"
    off = ask(gateway, [{"role": "user", "content": REVIEW}], **{"x-junction-route": "off"})
    assert off.headers["x-junction-route"] == "none"
    assert off.headers["x-junction-model"] == "deepseek/deepseek-v4-flash"  # the default model


def test_unrelated_request_gets_no_route_and_the_default_model(gateway: str) -> None:
    response = ask(gateway, [{"role": "user", "content": "Hi! How are you doing today?"}])
    assert response.headers["x-junction-route"] == "none"
    assert response.headers["x-junction-model"] == "deepseek/deepseek-v4-flash"
    assert response.headers["x-junction-route-reason"] != "matched"


def test_tool_loop_turn_keeps_the_sessions_route(gateway: str) -> None:
    first = [{"role": "user", "content": REVIEW}]
    assert ask(gateway, first).headers["x-junction-route"] == "code_review"
    loop = first + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read",
                                           "input": {"file_path": "stats.py"}}]},  # fmt: skip
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": "Once upon a time, a poem about the sea..."}]},  # fmt: skip
    ]
    response = ask(gateway, loop)
    assert response.headers["x-junction-route"] == "code_review"
    assert response.headers["x-junction-route-reason"] in ("tool_loop", "sticky", "no_text")


def test_routing_api_answers_without_an_llm_call(gateway: str, upstream_models) -> None:
    body = {"model": "x", "messages": [{"role": "user", "content": [{"type": "text", "text": REMINDER},
                                                                    {"type": "text", "text": POEM}]}]}  # fmt: skip
    decision = httpx.post(f"{gateway}/routing/v1/messages", json=body, timeout=30).json()
    assert decision["route"] == "creative_writing" and decision["models"] == ["deepseek/deepseek-v4-flash"]
    assert set(decision["scores"]) == {"complex_reasoning", "code_review", "creative_writing"}
    assert decision["text"] == POEM and decision["latency_ms"] >= 0
    chat = httpx.post(f"{gateway}/routing/v1/chat/completions", timeout=30,
                      json={"model": "x", "messages": [{"role": "user", "content": REVIEW}]}).json()  # fmt: skip
    assert chat["route"] == "code_review"
    assert upstream_models() == []


def test_route_cli_prints_the_decision() -> None:
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "route", "--json", "--config", "plano_config.yaml",
                          POEM], capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    decision = json.loads(out.stdout)
    assert decision["route"] == "creative_writing" and decision["models"] == ["deepseek/deepseek-v4-flash"]
    piped = subprocess.run([sys.executable, "-m", "gateway.cli", "route", "--config", "plano_config.yaml"],
                           input=json.dumps([{"role": "user", "content": REVIEW}]), capture_output=True,
                           text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert piped.returncode == 0 and "route:   code_review" in piped.stdout
