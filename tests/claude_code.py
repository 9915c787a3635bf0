"""Running the real Claude Code CLI (pinned in tests/e2e/package.json, installed by `make claude-code`)
in print mode, offline, against a local base URL.

What a print-mode run needs to stay off the network and never prompt:

* a throwaway HOME (Claude Code keeps its settings, device id and session files under ~/.claude*);
* CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 (no telemetry or other background traffic; without it the
  CLI also sends a `HEAD /api/hello` probe to the base URL) and DISABLE_AUTOUPDATER=1;
* CLAUDE_CODE_MAX_RETRIES=0 so that an error reaches the test at once instead of being retried with
  back-off (a retry would also replay a scripted upstream response);
* `--permission-mode acceptEdits`, which lets Write/Edit run inside the working directory without a
  prompt. `--dangerously-skip-permissions` (bypassPermissions) is refused when running as root
  ("cannot be used with root/sudo privileges") unless IS_SANDBOX=1 is set; acceptEdits needs neither.

The npm package declares node >= 22, but what runs is the native binary its postinstall step puts in
place, so an older node only makes npm warn. The environment is built from scratch, so no ANTHROPIC_* variable, proxy setting or credential of the
machine running the tests reaches the CLI.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tests.procs import run_bounded

E2E_DIR = Path(__file__).resolve().parent / "e2e"
PACKAGE = "@anthropic-ai/claude-code"
PACKAGE_DIR = E2E_DIR / "node_modules" / "@anthropic-ai" / "claude-code"
TIMEOUT = 120.0

# Print-mode flags used by every run: one JSON result object on stdout, file edits allowed in the
# working directory, a bounded number of agent turns, nothing written for `--resume`.
PRINT_ARGS = ("--output-format", "json", "--permission-mode", "acceptEdits", "--allowedTools", "Write",
              "--max-turns", "4", "--no-session-persistence")  # fmt: skip


def pinned_version() -> str:
    manifest = json.loads((E2E_DIR / "package.json").read_text())
    return manifest["dependencies"][PACKAGE]


def _candidates() -> list[list[str]]:
    found = [[str(E2E_DIR / "node_modules" / ".bin" / "claude")]]
    node = shutil.which("node")
    if node:
        # The package's fallback launcher, for installs where its postinstall step did not run
        # (npm --ignore-scripts) and bin/claude.exe is still the placeholder.
        found.append([node, str(PACKAGE_DIR / "cli-wrapper.cjs")])
    return found


@functools.lru_cache(maxsize=1)
def claude_command() -> tuple[str, ...] | None:
    """The command that runs the pinned CLI, or None when it is not installed (or not runnable)."""
    version = pinned_version()
    with tempfile.TemporaryDirectory(prefix="claude-home-") as home:
        for command in _candidates():
            if not Path(command[-1]).exists():
                continue
            try:
                out = subprocess.run([*command, "--version"], env=base_env(Path(home)), capture_output=True,
                                     text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
            except (OSError, subprocess.TimeoutExpired):
                continue
            if out.returncode == 0 and out.stdout.strip().startswith(version):
                return tuple(command)
    return None


def missing_reason() -> str | None:
    """Why the Claude Code tests cannot run here, or None when they can."""
    if not shutil.which("node") or not shutil.which("npm"):
        return "node/npm not found: the Claude Code CLI cannot be installed"
    if claude_command() is None:
        return (f"{PACKAGE}@{pinned_version()} is not installed in {E2E_DIR} "
                "(run `make claude-code`)")  # fmt: skip
    return None


def base_env(home: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    if "TMPDIR" in os.environ:
        env["TMPDIR"] = os.environ["TMPDIR"]
    return env


def claude_env(base_url: str, api_key: str, home: Path, *, model: str, small_fast_model: str,
               extra: dict[str, str] | None = None) -> dict[str, str]:  # fmt: skip
    """The environment for one run against `base_url` (the gateway, or an upstream directly).

    `model` is the main-loop model; `small_fast_model` is the Haiku tier that background requests
    (titles, summaries, sub-agents) use, set under both its current and its older variable name.
    """
    env = base_env(home)
    env.update({
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": api_key,  # sent as x-api-key
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": small_fast_model,
        "ANTHROPIC_SMALL_FAST_MODEL": small_fast_model,
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "API_TIMEOUT_MS": str(int(TIMEOUT * 1000 * 0.75)),  # the CLI gives up before the test kills it
    })
    env.update(extra or {})
    return env


@dataclass(repr=False)
class ClaudeRun:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def result(self) -> dict[str, Any]:
        """The `--output-format json` result object (the last JSON line on stdout)."""
        for line in reversed(self.stdout.strip().splitlines()):
            line = line.strip()
            if line.startswith("{"):
                value = json.loads(line)
                if isinstance(value, dict) and value.get("type") == "result":
                    return value
        raise AssertionError(f"no result object in Claude Code's output\n{self}")

    def __repr__(self) -> str:  # what assertion messages show
        summary = ""
        try:
            result = self.result
            summary = "".join(f"\n{key}: {result.get(key)!r}" for key in
                              ("is_error", "terminal_reason", "api_error_status", "num_turns", "result"))
        except (AssertionError, ValueError):
            pass
        return (f"claude exited {self.returncode}{summary}\n--- stdout ---\n{self.stdout[-4000:]}\n"
                f"--- stderr ---\n{self.stderr[-4000:]}")  # fmt: skip


def run_claude(prompt: str, *, cwd: Path, env: dict[str, str], args: Sequence[str] = PRINT_ARGS,
               timeout: float = TIMEOUT) -> ClaudeRun:  # fmt: skip
    """Run `claude -p <prompt>` to completion, in its own process group, killed after `timeout`."""
    command = claude_command()
    if command is None:
        raise RuntimeError(missing_reason() or "Claude Code CLI not runnable")
    argv = [*command, "-p", prompt, *args]
    try:
        returncode, stdout, stderr = run_bounded(argv, cwd=cwd, env=env, timeout=timeout)
    except TimeoutError as exc:
        raise AssertionError(f"claude did not finish within {timeout:.0f}s\n{ClaudeRun(argv, *exc.args)}") from None
    return ClaudeRun(argv, returncode, stdout, stderr)
