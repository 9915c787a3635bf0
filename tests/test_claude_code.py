"""The real Claude Code CLI, in print mode, through a `junction serve` process to the mock upstream.

The scenario is one agent step: the upstream first answers with a `Write` tool call, Claude Code
executes it (a file appears in the run's working directory), sends the tool result back, and the
upstream's second answer is the final text that Claude Code prints.

Scripted upstream responses are matched on the upstream model name, so only main-loop requests
consume them: the main model (an unknown `claude-*` name) reaches the gateway's default provider, and
the small/fast tier (`ANTHROPIC_SMALL_FAST_MODEL`, used for background requests such as titles)
is an alias of a different upstream model, which the mock answers on its own.
"""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.claude_code import claude_env, missing_reason, run_claude
from tests.procs import free_port, start_process

GATEWAY_KEY = "gw-e2e-key-0123456789abcdef"
UPSTREAM_SECRET = "sk-e2e-upstream-secret-abcdef"
MAIN_MODEL = "claude-sonnet-5-5"  # not in the config: routed to the default provider
SMALL_FAST = "arch.claude.code.small.fast"
ANTHROPIC_UPSTREAM = "claude-upstream"
OPENAI_UPSTREAM = "openai-upstream"
SMALL_FAST_UPSTREAM = "claude-small-fast"

CONFIG = """
version: v0.4.0
llm_providers:
  - model: mock/{anthropic}
    base_url: {mock}
    provider_interface: anthropic
    access_key: $E2E_UPSTREAM_SECRET
    default: {anthropic_default}
  - model: mock/{openai}
    base_url: {mock}/v1
    access_key: $E2E_UPSTREAM_SECRET
    default: {openai_default}
  - model: mock/{small_fast}
    base_url: {mock}
    provider_interface: anthropic
    access_key: $E2E_UPSTREAM_SECRET
model_aliases:
  {alias}: {{target: mock/{small_fast}}}
gateway_keys:
  - {{name: e2e, key: $JUNCTION_E2E_KEY}}
listeners: [{{type: model, name: e2e, address: 127.0.0.1, port: {port}}}]
"""


@pytest.fixture(scope="module", autouse=True)
def claude_cli() -> None:
    reason = missing_reason()
    if reason:
        print(f"\nskipping the Claude Code end-to-end tests: {reason}")
        pytest.skip(reason)


def _serve(mock: str, tmp: Path, default: str) -> Any:
    port = free_port()
    config = tmp / "config.yaml"
    config.write_text(textwrap.dedent(CONFIG).format(
        mock=mock, port=port, anthropic=ANTHROPIC_UPSTREAM, openai=OPENAI_UPSTREAM,
        small_fast=SMALL_FAST_UPSTREAM, alias=SMALL_FAST,
        anthropic_default=str(default == ANTHROPIC_UPSTREAM).lower(),
        openai_default=str(default == OPENAI_UPSTREAM).lower()))  # fmt: skip
    args = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config),
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    env = dict(os.environ, E2E_UPSTREAM_SECRET=UPSTREAM_SECRET, JUNCTION_E2E_KEY=GATEWAY_KEY)
    return start_process(args, f"http://127.0.0.1:{port}/healthz", env=env), f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def gateway_to_anthropic(mock: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, base = _serve(mock, tmp_path_factory.mktemp("gw-anthropic"), ANTHROPIC_UPSTREAM)
    with proc:
        yield base


@pytest.fixture(scope="module")
def gateway_to_openai(mock: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, base = _serve(mock, tmp_path_factory.mktemp("gw-openai"), OPENAI_UPSTREAM)
    with proc:
        yield base


@pytest.fixture()
def recorded(mock: str):
    """Requests the mock received during the test (with no scripted responses left from others)."""
    httpx.delete(f"{mock}/_mock/requests", timeout=10)
    httpx.delete(f"{mock}/_mock/script", timeout=10)

    def get() -> list[dict]:
        return httpx.get(f"{mock}/_mock/requests", timeout=10).json()

    return get


def model_of(request: dict) -> Any:
    body = request["body"]
    return body.get("model") if isinstance(body, dict) else None


def script(mock: str, model: str, *responses: list[str]) -> None:
    """Queue streamed responses (raw SSE text chunks) for requests to upstream `model`."""
    body = {"responses": [{"match_model": model, "status": 200, "headers": {"content-type": "text/event-stream"},
                           "chunks": chunks, "gap_ms": 0} for chunks in responses]}  # fmt: skip
    httpx.post(f"{mock}/_mock/script", json=body, timeout=10).raise_for_status()


# --- upstream wire formats ---------------------------------------------------------------------


def anthropic_event(data: dict[str, Any]) -> str:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n"


def anthropic_turn(*, model: str, text: str, tool: tuple[str, str, dict] | None = None) -> list[str]:
    """An Anthropic Messages stream: a text block, then optionally a tool_use block (its input JSON
    split over two deltas), then stop_reason tool_use/end_turn."""
    msg_id = f"msg_{uuid.uuid4().hex[:24]}"
    chunks = [
        anthropic_event({"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 1200, "output_tokens": 1}}}),
        anthropic_event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        anthropic_event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        anthropic_event({"type": "content_block_stop", "index": 0}),
    ]  # fmt: skip
    if tool:
        tool_id, name, tool_input = tool
        arguments = json.dumps(tool_input)
        half = len(arguments) // 2
        chunks += [
            anthropic_event({"type": "content_block_start", "index": 1,
                             "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}),
            anthropic_event({"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": arguments[:half]}}),
            anthropic_event({"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": arguments[half:]}}),
            anthropic_event({"type": "content_block_stop", "index": 1}),
        ]  # fmt: skip
    chunks += [
        anthropic_event({"type": "message_delta", "delta": {"stop_reason": "tool_use" if tool else "end_turn",
                                                            "stop_sequence": None},
                         "usage": {"output_tokens": 42}}),
        anthropic_event({"type": "message_stop"}),
    ]  # fmt: skip
    return chunks


def openai_turn(*, model: str, text: str, tool: tuple[str, str, dict] | None = None) -> list[str]:
    """An OpenAI Chat Completions stream: text content, then optionally a tool call (arguments split
    over two chunks), finish_reason tool_calls/stop, a trailing usage chunk, and [DONE]."""
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"

    def chunk(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> str:
        data: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": 1700000000,
                                "model": model,
                                "choices": [] if delta is None else
                                [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
        if usage is not None:
            data["usage"] = usage
        return f"data: {json.dumps(data)}\n\n"

    chunks = [chunk({"role": "assistant", "content": ""}), chunk({"content": text})]
    if tool:
        tool_id, name, tool_input = tool
        arguments = json.dumps(tool_input)
        half = len(arguments) // 2
        chunks += [
            chunk({"tool_calls": [{"index": 0, "id": tool_id, "type": "function",
                                   "function": {"name": name, "arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[:half]}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]}),
        ]  # fmt: skip
    chunks += [
        chunk({}, finish="tool_calls" if tool else "stop"),
        chunk(None, usage={"prompt_tokens": 1200, "completion_tokens": 42, "total_tokens": 1242}),
        "data: [DONE]\n\n",
    ]
    return chunks


# --- the scenario ------------------------------------------------------------------------------


class Scenario:
    """One print-mode run in a fresh HOME and working directory that should create `target`."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.work = tmp_path / "work"
        self.home.mkdir()
        self.work.mkdir()
        self.target = self.work / "greeting.txt"
        self.content = "Hello from Claude Code through Junction.\nSecond line.\n"
        self.tool_input = {"file_path": str(self.target), "content": self.content}
        self.final_text = "Created greeting.txt with the greeting."
        self.prompt = f"Create the file {self.target} with a short greeting."

    def run(self, gateway: str):
        env = claude_env(gateway, GATEWAY_KEY, self.home, model=MAIN_MODEL, small_fast_model=SMALL_FAST)
        return run_claude(self.prompt, cwd=self.work, env=env)

    def check_outcome(self, run) -> None:
        assert run.returncode == 0, run
        result = run.result
        assert result["is_error"] is False, run
        assert result["result"] == self.final_text, run
        assert result["num_turns"] == 2, run
        assert result.get("permission_denials") == [], run
        assert self.target.read_text() == self.content


def test_claude_code_write_tool_through_gateway_to_anthropic_upstream(
        mock: str, gateway_to_anthropic: str, recorded, tmp_path: Path) -> None:  # fmt: skip
    s = Scenario(tmp_path)
    tool_id = "toolu_01E2eWriteGreeting0001"
    tool = (tool_id, "Write", s.tool_input)
    script(mock, ANTHROPIC_UPSTREAM, anthropic_turn(model=ANTHROPIC_UPSTREAM, text="I'll create the file.", tool=tool),
           anthropic_turn(model=ANTHROPIC_UPSTREAM, text=s.final_text))  # fmt: skip

    run = s.run(gateway_to_anthropic)
    s.check_outcome(run)

    main = [r for r in recorded() if model_of(r) == ANTHROPIC_UPSTREAM]
    assert len(main) == 2, [(r["path"], model_of(r)) for r in recorded()]
    for req in main:
        assert req["path"] == "/v1/messages"
        assert req["body"]["stream"] is True  # no fallback to a non-streaming retry
        headers = req["headers"]
        assert headers["x-api-key"] == UPSTREAM_SECRET
        assert "claude-code-20250219" in headers["anthropic-beta"]
        assert GATEWAY_KEY not in json.dumps(headers)
    write = next(t for t in main[0]["body"]["tools"] if t["name"] == "Write")
    assert {"file_path", "content"} <= set(write["input_schema"]["properties"])
    # The second request replays the tool call and carries Claude Code's tool result for it.
    messages = main[1]["body"]["messages"]
    assistant = next(m for m in messages if m["role"] == "assistant")
    assert [b for b in assistant["content"] if b["type"] == "tool_use"] == [
        {"type": "tool_use", "id": tool_id, "name": "Write", "input": s.tool_input}]
    results = [b for b in messages[-1]["content"] if b["type"] == "tool_result"]
    assert [r["tool_use_id"] for r in results] == [tool_id]
    assert not results[0].get("is_error")


def test_gateway_relays_claude_code_request_unchanged(mock: str, gateway_to_anthropic: str, recorded,
                                                     tmp_path: Path) -> None:  # fmt: skip
    """Same protocol: what reaches an Anthropic upstream is what Claude Code sent, except the model."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    session = str(uuid.uuid4())
    args = ("--output-format", "json", "--max-turns", "1", "--no-session-persistence", "--session-id", session)
    bodies, headers = [], []
    for base_url in (mock, gateway_to_anthropic):
        recorded_before = len(recorded())
        env = claude_env(base_url, GATEWAY_KEY if base_url != mock else UPSTREAM_SECRET, home,
                         model=MAIN_MODEL, small_fast_model=SMALL_FAST)  # fmt: skip
        run = run_claude("Say hello.", cwd=work, env=env, args=args)
        assert run.returncode == 0 and run.result["is_error"] is False, run
        (req,) = [r for r in recorded()[recorded_before:] if model_of(r) in (MAIN_MODEL, ANTHROPIC_UPSTREAM)]
        bodies.append(req["body"])
        headers.append(req["headers"])
    direct, relayed = bodies
    assert direct["model"] == MAIN_MODEL and relayed["model"] == ANTHROPIC_UPSTREAM

    def comparable(body: dict) -> dict:  # the system prompt carries the date: the runs may straddle midnight
        return json.loads(re.sub(r"\d{4}-\d{2}-\d{2}", "<date>", json.dumps({**body, "model": None})))

    assert comparable(direct) == comparable(relayed)
    for name in ("anthropic-version", "anthropic-beta"):
        assert headers[0][name] == headers[1][name], name


def test_claude_code_write_tool_through_gateway_to_openai_upstream(
        mock: str, gateway_to_openai: str, recorded, tmp_path: Path) -> None:  # fmt: skip
    s = Scenario(tmp_path)
    call_id = "functions.Write:0"  # Kimi-style id: not a valid Anthropic tool_use id as it stands
    script(mock, OPENAI_UPSTREAM,
           openai_turn(model=OPENAI_UPSTREAM, text="I'll create the file.", tool=(call_id, "Write", s.tool_input)),
           openai_turn(model=OPENAI_UPSTREAM, text=s.final_text))  # fmt: skip

    run = s.run(gateway_to_openai)
    s.check_outcome(run)

    main = [r for r in recorded() if model_of(r) == OPENAI_UPSTREAM]
    assert len(main) == 2, [(r["path"], model_of(r)) for r in recorded()]
    for req in main:
        assert req["path"] == "/v1/chat/completions"
        assert req["body"]["stream"] is True
        assert req["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}"
        assert GATEWAY_KEY not in json.dumps(req["headers"])
    functions = {t["function"]["name"]: t["function"] for t in main[0]["body"]["tools"]}
    assert {"file_path", "content"} <= set(functions["Write"]["parameters"]["properties"])
    # The upstream's own call id comes back on both the replayed call and the tool message.
    messages = main[1]["body"]["messages"]
    (assistant,) = [m for m in messages if m["role"] == "assistant" and m.get("tool_calls")]
    (call,) = assistant["tool_calls"]
    assert call["id"] == call_id and call["function"]["name"] == "Write"
    assert json.loads(call["function"]["arguments"]) == s.tool_input
    tool_messages = [m for m in messages if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == [call_id]
