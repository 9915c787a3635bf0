"""The real Codex CLI (`codex exec`) through a `junction serve` process to the mock upstream.

One agent step each: the upstream first answers with a tool call, Codex runs it (a file appears in
the run's working folder), sends the tool output back, and the upstream's second answer is the final
message. Codex speaks only the Responses API, so every byte it reads went through the gateway's
Responses translation: from a Chat Completions upstream, and from a Messages upstream.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.codex_cli import CodexRun, missing_reason, run_codex
from tests.procs import gateway_with, script_streams
from tests.test_responses_native import event, response
from tests.upstream_frames import chat, chat_call, messages

pytestmark = pytest.mark.skipif(missing_reason() is not None, reason=missing_reason() or "")

KEY = "gw-codex-key-0123456789abcdef"
SECRET = "sk-codex-upstream-secret-abcdef"
COMMAND = "printf codex-ok > rig.txt"
PATCH = "*** Begin Patch\n*** Add File: rig.txt\n+codex-ok\n*** End Patch\n"

CONFIG = """
version: v0.4.0
llm_providers:
  - model: mock/gpt-mock
    base_url: {mock}/v1
    access_key: $CODEX_UPSTREAM_SECRET
    default: true
  - model: mock/claude-mock
    base_url: {mock}
    provider_interface: anthropic
    access_key: $CODEX_UPSTREAM_SECRET
  - model: deepseek/deepseek-reasoner
    base_url: {mock}/v1
    access_key: $CODEX_UPSTREAM_SECRET
  - model: native/gpt-native
    base_url: {mock}/v1
    provider_interface: responses
    access_key: $CODEX_UPSTREAM_SECRET
gateway_keys:
  - {{name: codex, key: $CODEX_GATEWAY_KEY}}
streaming:
  ping_interval: 0.3s
"""


@pytest.fixture(scope="module")
def gateway(mock: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with gateway_with(tmp_path_factory.mktemp("codex"), CONFIG.format(mock=mock), {"CODEX_UPSTREAM_SECRET": SECRET, "CODEX_GATEWAY_KEY": KEY}) as base:
        yield base


def codex_turn(gateway: str, tmp_path: Path, prompt: str, rig: str | None = "codex-ok", **options: Any) -> CodexRun:
    """One `codex exec` in a fresh working folder that must succeed (and, with `rig`, have written
    rig.txt with that content)."""
    work = tmp_path / "work"
    work.mkdir()
    run = run_codex(prompt, base_url=gateway, key=KEY, cwd=work, home=tmp_path / "home", **options)
    assert run.returncode == 0, run
    if rig is not None:
        assert (work / "rig.txt").read_text() == rig, run
    return run


def test_codex_runs_a_shell_tool_through_a_chat_upstream(gateway: str, mock: str, upstream: Any, tmp_path: Path) -> None:
    script_streams(mock, "gpt-mock", chat_call("exec_command", {"cmd": COMMAND}), chat({"content": "DONE-RIG"}, finish="stop"))
    run = codex_turn(gateway, tmp_path, "Create rig.txt")
    assert [m["text"] for m in run.items("agent_message")] == ["DONE-RIG"], run
    (command,) = run.items("command_execution")
    assert command["exit_code"] == 0 and "codex-ok" in command["command"], run
    first, second = upstream()
    assert first["stream"] is True and "exec_command" in [t["function"]["name"] for t in first["tools"]]
    assert not any("environment_context" in json.dumps(m) for m in first["messages"] if m["role"] == "system")
    tool = [m for m in second["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool] == ["call_rig_1"]
    usage = next(e for e in run.events if e.get("type") == "turn.completed")["usage"]
    assert usage["input_tokens"] == 240 and usage["output_tokens"] == 12  # two requests' usage, as integers


def test_codex_applies_a_patch_through_the_custom_tool_round_trip(gateway: str, mock: str, upstream: Any,
                                                                    tmp_path: Path) -> None:  # fmt: skip
    # A catalog model: Codex then offers apply_patch as a custom (free-form) tool, which reaches the
    # upstream as a one-string function and must come back as a custom_tool_call for Codex to run it.
    script_streams(mock, "gpt-mock", chat_call("apply_patch", {"input": PATCH}), chat({"content": "DONE-RIG"}, finish="stop"))
    run = codex_turn(gateway, tmp_path, "Add rig.txt", rig="codex-ok\n", model="gpt-5.5")
    first, second = upstream()
    patch_tool = next(t for t in first["tools"] if t["function"]["name"] == "apply_patch")
    assert patch_tool["function"]["parameters"]["required"] == ["input"]
    assistant = next(m for m in second["messages"] if m.get("tool_calls"))
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"input": PATCH}


def test_codex_runs_a_shell_tool_through_a_messages_upstream(gateway: str, mock: str, upstream: Any,
                                                             tmp_path: Path) -> None:  # fmt: skip
    call = ({"type": "tool_use", "id": "toolu_rig_1", "name": "exec_command", "input": {}},
            [{"type": "input_json_delta", "partial_json": json.dumps({"cmd": COMMAND})}])
    done = ({"type": "text", "text": ""}, [{"type": "text_delta", "text": "DONE-RIG"}])
    script_streams(mock, "claude-mock", messages(call, stop="tool_use"), messages(done, stop="end_turn"))
    run = codex_turn(gateway, tmp_path, "Create rig.txt", model="claude-mock")
    assert [m["text"] for m in run.items("agent_message")] == ["DONE-RIG"], run
    first, second = upstream()
    assert first["system"] and first["max_tokens"] > 0 and first["stream"] is True  # a Messages body
    results = [b for m in second["messages"] if isinstance(m["content"], list) for b in m["content"]
               if b.get("type") == "tool_result"]  # fmt: skip
    assert [r["tool_use_id"] for r in results] == ["toolu_rig_1"]


def test_keepalives_hold_codex_through_upstream_silence(gateway: str, mock: str, upstream: Any, tmp_path: Path) -> None:
    # Codex gives up on a stream after `stream_idle_timeout_ms` without a data event (SSE comments do not
    # count). Here 1 s against 1.5 s gaps between the upstream's chunks: only keepalive events keep it going.
    slow = chat({"role": "assistant", "content": "DONE-"}, {"content": "RIG"}, finish="stop")
    script_streams(mock, "gpt-mock", slow, gap_ms=1500)
    run = codex_turn(gateway, tmp_path, "Say it slowly", rig=None, idle_ms=1000)
    assert [m["text"] for m in run.items("agent_message")] == ["DONE-RIG"], run
    assert len(upstream()) == 1  # no retry: the stream was never dropped


def test_codex_shows_deepseek_reasoning_and_hands_it_back_on_the_tool_turn(gateway: str, mock: str, upstream: Any,
                                                                           tmp_path: Path) -> None:  # fmt: skip
    # A DeepSeek-style reasoner (its catalog quirks: the reasoning of a tool-call turn must come back).
    # Codex shows the reasoning as a summary and resends the item; the gateway restores the text.
    think = {"role": "assistant", "reasoning_content": "The user wants rig.txt; a shell command writes it."}
    first = chat(think, {"tool_calls": [{"index": 0, "id": "call_rig_1", "type": "function",
                                         "function": {"name": "exec_command", "arguments": json.dumps({"cmd": COMMAND})}}]},
                 finish="tool_calls")  # fmt: skip
    script_streams(mock, "deepseek-reasoner", first, chat({"content": "DONE-RIG"}, finish="stop"))
    run = codex_turn(gateway, tmp_path, "Create rig.txt", model="deepseek-reasoner")
    assert [r["text"] for r in run.items("reasoning")] == [think["reasoning_content"]], run
    _, second = upstream()
    assistant = next(m for m in second["messages"] if m.get("tool_calls"))
    assert assistant["reasoning_content"] == think["reasoning_content"]


def test_codex_through_an_upstream_that_serves_responses_natively(gateway: str, mock: str, upstream: Any,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    call = {"type": "function_call", "id": "fc_up1", "call_id": "call_rig_1", "name": "exec_command",
            "arguments": json.dumps({"cmd": COMMAND}), "status": "completed"}  # fmt: skip
    message = {"type": "message", "id": "msg_up2", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": "DONE-RIG", "annotations": []}]}  # fmt: skip
    usage = {"input_tokens": 100, "output_tokens": 5, "total_tokens": 105}

    def answer(item: dict[str, Any]) -> list[str]:
        return [event("response.created", 0, response=response("in_progress", [])),
                event("response.output_item.added", 1, output_index=0, item=item),
                event("response.output_item.done", 2, output_index=0, item=item),
                event("response.completed", 3, response=response("completed", [item], usage))]  # fmt: skip

    script_streams(mock, "gpt-native", answer(call), answer(message))
    run = codex_turn(gateway, tmp_path, "Create rig.txt", model="gpt-native")
    assert [m["text"] for m in run.items("agent_message")] == ["DONE-RIG"], run
    first, second = upstream()
    assert first["stream"] is True and first["store"] is False and "input" in first  # Codex's own body, relayed
    outputs = [i for i in second["input"] if i.get("type") == "function_call_output"]
    assert [o["call_id"] for o in outputs] == ["call_rig_1"]
