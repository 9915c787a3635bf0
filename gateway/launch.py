"""`junction claude` and `junction codex`: run a coding agent pointed at the gateway.

The agent's own arguments pass through untouched; only the environment (Claude Code) or config overrides
on its command line (Codex, which keeps the user's own `~/.codex`) point it at the gateway. When nothing
answers at the gateway's address, a gateway is started in the background for the agent's session, with
the config, and stopped when the agent exits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from gateway.config import LOOPBACK, Config

KEY_VARIABLE = "JUNCTION_API_KEY"  # the gateway key, for the launcher and (under this name) for Codex
START_TIMEOUT_S = 120.0  # a gateway with routes loads its encoder before answering
AGENTS = {"claude": "JUNCTION_CLAUDE_BIN", "codex": "JUNCTION_CODEX_BIN"}  # the binary, unless on PATH


class LaunchError(Exception):
    pass


@dataclass(frozen=True)
class Options:
    url: str | None
    key: str | None
    config: str
    agent_args: list[str]


def split_args(argv: Sequence[str], default_config: str) -> Options:
    """The launcher's own `--url`, `--key` and `--config` come first (long forms only: Codex's `-c` is its
    own); everything from the first other argument, or after `--`, is the agent's."""
    url = key = None
    config = default_config
    rest = list(argv)
    while rest:
        head = rest[0]
        if head == "--":
            rest.pop(0)
            break
        name, eq, value = head.partition("=")
        if name not in ("--url", "--key", "--config"):
            break
        rest.pop(0)
        if not eq:
            if not rest:
                raise LaunchError(f"{name} needs a value")
            value = rest.pop(0)
        if name == "--url":
            url = value.rstrip("/")
        elif name == "--key":
            key = value
        else:
            config = value
    return Options(url, key, config, rest)


def listener_url(config: Config) -> tuple[str, int]:
    """Where the config's listener is reachable from this machine: (host, port)."""
    host, port = config.listen_address()
    return (LOOPBACK if host in ("0.0.0.0", "::", "") else host), port


def answering(base: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=timeout) as reply:  # noqa: S310 - our own gateway
            return reply.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def gateway_key(config: Config, given: str | None) -> str:
    key = given or os.environ.get(KEY_VARIABLE)
    if key:
        return key
    if config.auth_enabled:
        raise LaunchError(f"the gateway needs a key: pass --key or set {KEY_VARIABLE}")
    return "junction"  # no gateway_keys: any value passes (the agents insist on one)


def agent_binary(agent: str) -> str:
    found = os.environ.get(AGENTS[agent]) or shutil.which(agent)
    if not found:
        package = "@anthropic-ai/claude-code" if agent == "claude" else "@openai/codex"
        raise LaunchError(f"`{agent}` not found on PATH: install it (npm install -g {package}) or set {AGENTS[agent]}")
    return found


SMALL_FAST_ALIAS = "arch.claude.code.small.fast"  # Plano's alias for Claude Code's background model


def claude_command(binary: str, base: str, key: str, args: list[str], config: Config) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env.pop("ANTHROPIC_API_KEY", None)  # with both set, Claude Code asks which to use
    env.update({"ANTHROPIC_BASE_URL": base, "ANTHROPIC_AUTH_TOKEN": key})
    env.setdefault("API_TIMEOUT_MS", "600000")  # reasoning models may think for minutes before a byte
    if SMALL_FAST_ALIAS in config.aliases:  # background work (titles, summaries) to the config's small model
        for name in ("ANTHROPIC_DEFAULT_HAIKU_MODEL", "ANTHROPIC_SMALL_FAST_MODEL"):
            env.setdefault(name, SMALL_FAST_ALIAS)
    return [binary, *args], env


def codex_command(binary: str, base: str, key: str, args: list[str], config: Config) -> tuple[list[str], dict[str, str]]:
    """Codex reads providers from its config; `-c` overrides add one for the gateway without touching
    the user's ~/.codex (its Responses API at `{base}/v1/responses`, the key from KEY_VARIABLE)."""
    provider = "model_providers.junction"
    overrides = ['model_provider="junction"', f'{provider}.name="Junction"', f'{provider}.base_url="{base}/v1"',
                 f'{provider}.env_key="{KEY_VARIABLE}"', f'{provider}.wire_api="responses"']  # fmt: skip
    return [binary, *(part for o in overrides for part in ("-c", o)), *args], {**os.environ, KEY_VARIABLE: key}


class SessionGateway:
    """A gateway started for one agent session: `junction serve` in the background, its output in a log
    file (the agent owns the terminal), stopped with SIGTERM when the session ends."""

    def __init__(self, config_path: str, host: str, port: int) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="junction-session-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", config_path,
                                      "--host", host, "--port", str(port), "--log-level", "warning"],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)  # fmt: skip
        self.base = f"http://{host}:{port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answering(self.base):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise LaunchError(f"the gateway did not start (its log: {self.log.name}):\n"
                                  + Path(self.log.name).read_text(errors="replace")[-2000:])  # fmt: skip
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def launch(agent: str, options: Options, config: Config) -> int:
    """Run `agent` against the gateway (started for the session when none answers); its exit code."""
    key = gateway_key(config, options.key)
    binary = agent_binary(agent)
    session: SessionGateway | None = None
    base = options.url
    if base is None:
        host, port = listener_url(config)
        base = f"http://{host}:{port}"
        if not answering(base):
            session = SessionGateway(options.config, host, port)
            print(f"junction: started a gateway for this session at {base} (log: {session.log.name})",
                  file=sys.stderr)  # fmt: skip
            session.wait_ready()
    elif not answering(base):
        raise LaunchError(f"no gateway answers at {base}")
    try:
        build = claude_command if agent == "claude" else codex_command
        command, env = build(binary, base, key, options.agent_args, config)
        try:
            return subprocess.call(command, env=env)
        except KeyboardInterrupt:  # the agent got the same Ctrl-C and ends on its own
            return 130
    finally:
        if session is not None:
            session.stop()
            print("junction: the session's gateway stopped", file=sys.stderr)
