"""Running the real Codex CLI (npm `@openai/codex`, pinned in tests/e2e/package.json, installed by
`make agents`) with `codex exec`, offline, against a local base URL.

What a run needs to stay off the network and never wait:

* a throwaway CODEX_HOME whose config.toml names a custom provider at the gateway (`wire_api =
  "responses"`: Codex posts to `{base_url}/responses`), with the key read from an environment variable;
* retries off (`request_max_retries`, `stream_max_retries` = 0) so an error reaches the test at once
  and a scripted upstream answer is never replayed, and a short idle timeout so a stalled stream fails
  the test instead of hanging it;
* analytics and plugins off, and `unbounded_connection_retries = false`: otherwise Codex looks up
  ab.chatgpt.com, clones its plugin list from GitHub, and retries a dead gateway for ever;
* `--dangerously-bypass-approvals-and-sandbox`, so the tool command runs without a sandbox (the bundled
  bubblewrap needs namespaces a CI container may not give), in a temporary working folder.

The environment is built from scratch, so no OPENAI_* variable, proxy or credential of the machine
running the tests reaches the CLI.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.claude_code import base_env as clean_env
from tests.procs import run_bounded

E2E_DIR = Path(__file__).resolve().parent / "e2e"
PACKAGE = "@openai/codex"
BINARY = E2E_DIR / "node_modules" / ".bin" / "codex"
TIMEOUT = 120.0
KEY_VARIABLE = "JUNCTION_CODEX_KEY"

CONFIG_TOML = """\
model = "{model}"
model_provider = "junction"

[model_providers.junction]
name = "Junction"
base_url = "{base_url}/v1"
env_key = "{key_variable}"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = {idle_ms}

[analytics]
enabled = false

[features]
plugins = false
unbounded_connection_retries = false
"""


def pinned_version() -> str:
    return json.loads((E2E_DIR / "package.json").read_text())["dependencies"][PACKAGE]


def base_env(home: Path) -> dict[str, str]:
    """A clean environment (the same as Claude Code's runs) with Codex's home inside `home`."""
    return clean_env(home) | {"CODEX_HOME": str(home / ".codex")}


@functools.lru_cache(maxsize=1)
def codex_installed() -> bool:
    if not BINARY.exists():
        return False
    with tempfile.TemporaryDirectory(prefix="codex-home-") as home:
        try:
            out = subprocess.run([str(BINARY), "--version"], env=base_env(Path(home)), capture_output=True,
                                 text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return False
    return out.returncode == 0 and out.stdout.strip() == f"codex-cli {pinned_version()}"


def missing_reason() -> str | None:
    """Why the Codex CLI tests cannot run here, or None when they can."""
    if not shutil.which("node") or not shutil.which("npm"):
        return "node/npm not found: the Codex CLI cannot be installed"
    if not codex_installed():
        return f"{PACKAGE}@{pinned_version()} is not installed in {E2E_DIR} (run `make agents`)"
    return None


@dataclass(repr=False)
class CodexRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        """The `--json` event lines (thread.started, item.completed, turn.completed, ...)."""
        out = []
        for line in self.stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def items(self, kind: str) -> list[dict[str, Any]]:
        return [e["item"] for e in self.events if e.get("type") == "item.completed" and e["item"].get("type") == kind]

    def __repr__(self) -> str:
        return (f"codex exited {self.returncode}\n--- stdout ---\n{self.stdout[-4000:]}\n"
                f"--- stderr ---\n{self.stderr[-4000:]}")  # fmt: skip


def run_codex(prompt: str, *, base_url: str, key: str, cwd: Path, home: Path, model: str = "gpt-mock",
              timeout: float = TIMEOUT, idle_ms: int = 30000) -> CodexRun:  # fmt: skip
    """`codex exec --json <prompt>` against the gateway at `base_url`, to completion (killed after `timeout`)."""
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    (home / ".codex" / "config.toml").write_text(CONFIG_TOML.format(model=model, base_url=base_url,
                                                                    key_variable=KEY_VARIABLE, idle_ms=idle_ms))  # fmt: skip
    env = base_env(home) | {KEY_VARIABLE: key}
    argv = [str(BINARY), "exec", "--json", "--skip-git-repo-check", "--ephemeral",
            "--dangerously-bypass-approvals-and-sandbox", prompt]  # fmt: skip
    try:
        returncode, stdout, stderr = run_bounded(argv, cwd=cwd, env=env, timeout=timeout)
    except TimeoutError as exc:
        raise AssertionError(f"codex did not finish within {timeout:.0f}s\n{CodexRun(*exc.args)}") from None
    return CodexRun(returncode, stdout, stderr)
