"""`junction claude` and `junction codex` with the real agents (pinned in tests/e2e) against the mock
upstream: with no gateway answering, the launcher starts one for the session and stops it afterwards;
with one running (`--url`), it is used and left running. The agents' own flags pass through."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import claude_code, codex_cli
from tests.claude_code import PRINT_ARGS
from tests.procs import ROOT, free_port, run_bounded, start_gateway, write_config

KEY = "gw-launch-key-0123456789"
CONFIG = """
version: v0.4.0
llm_providers:
  - model: mock/launched
    base_url: {mock}/v1
    default: true
gateway_keys:
  - {{name: me, key: {key}}}
listeners: [{{type: model, name: local, address: 0.0.0.0, port: {port}}}]
"""


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def launcher(agent: str, args: list[str], env: dict[str, str], cwd: Path, timeout: float = 150) -> tuple[int, str, str]:
    argv = [sys.executable, "-m", "gateway.cli", agent, *args]
    return run_bounded(argv, cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)}, timeout=timeout)


@pytest.fixture()
def config(mock: str, tmp_path: Path) -> tuple[Path, int]:
    port = free_port()
    return write_config(tmp_path, CONFIG.format(mock=mock, key=KEY, port=port)), port


def claude_env(tmp_path: Path) -> dict[str, str]:
    reason = claude_code.missing_reason()
    if reason:
        pytest.skip(f"the Claude Code launcher test needs the CLI: {reason}")
    command = claude_code.claude_command()
    assert command is not None
    if len(command) != 1:
        pytest.skip("the Claude Code CLI runs only through node's wrapper here (its native binary is missing)")
    home = tmp_path / "home"
    home.mkdir()
    return {**claude_code.base_env(home), "JUNCTION_CLAUDE_BIN": command[0], "CLAUDE_CODE_MAX_RETRIES": "0",
            "JUNCTION_API_KEY": KEY}  # fmt: skip


def test_junction_claude_starts_a_gateway_for_the_session_and_stops_it(config: tuple[Path, int], tmp_path: Path,
                                                                        upstream: Any) -> None:  # fmt: skip
    path, port = config
    env = claude_env(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    assert not listening(port)
    code, out, err = launcher("claude", ["--config", str(path), "-p", "say hello", *PRINT_ARGS], env, work)
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["is_error"] is False and "Mock reply to" in result["result"]
    assert "started a gateway for this session" in err and "stopped" in err
    assert not listening(port)  # gone with the session
    assert any(body.get("model") == "launched" for body in upstream())  # through the gateway, to the mock


def test_junction_claude_uses_a_running_gateway_and_leaves_it_running(config: tuple[Path, int],
                                                                      tmp_path: Path) -> None:  # fmt: skip
    path, _ = config
    env = claude_env(tmp_path)
    gateway, base = start_gateway(path, None, "--log-level", "warning")
    with gateway:
        code, out, err = launcher("claude", ["--url", base, "--key", KEY, "--config", str(path), "-p", "hi there",
                                             *PRINT_ARGS], {k: v for k, v in env.items() if k != "JUNCTION_API_KEY"},
                                  tmp_path)  # fmt: skip
        assert code == 0, err
        assert "Mock reply to" in json.loads(out.strip().splitlines()[-1])["result"]
        assert "started a gateway" not in err
        assert httpx.get(f"{base}/healthz").status_code == 200


def test_a_missing_key_is_said_plainly(config: tuple[Path, int], tmp_path: Path) -> None:
    path, _ = config
    env = {k: v for k, v in claude_env(tmp_path).items() if k != "JUNCTION_API_KEY"}
    code, _, err = launcher("claude", ["--config", str(path), "-p", "hi"], env, tmp_path)
    assert code == 2 and "pass --key or set JUNCTION_API_KEY" in err


def test_junction_codex_exec_through_a_session_gateway(config: tuple[Path, int], tmp_path: Path) -> None:
    reason = codex_cli.missing_reason()
    if reason:
        pytest.skip(f"the Codex launcher test needs the CLI: {reason}")
    path, port = config
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    # The user's own Codex settings (here: offline ones) stay; the launcher only adds its provider.
    (home / ".codex" / "config.toml").write_text(
        "[analytics]\nenabled = false\n\n[features]\nplugins = false\nunbounded_connection_retries = false\n")
    env = {**codex_cli.base_env(home), "JUNCTION_CODEX_BIN": str(codex_cli.BINARY), "JUNCTION_API_KEY": KEY}
    code, out, err = launcher("codex", ["--config", str(path), "exec", "--json", "--skip-git-repo-check",
                                        "--ephemeral", "say hello"], env, tmp_path)  # fmt: skip
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    texts = [e["item"].get("text", "") for e in events if e.get("type") == "item.completed"]
    assert any("Mock reply to" in t for t in texts), out
    assert not listening(port)
