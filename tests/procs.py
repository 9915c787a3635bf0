"""Local server processes for integration tests: start, wait until healthy, always stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http_ok(url: str, timeout: float, proc: subprocess.Popen[Any] | None = None,
                 verify: ssl.SSLContext | bool = True) -> None:  # fmt: skip
    """Poll `url` until it answers 200; fail early if `proc` exits first. `verify`: what an
    https `url` is checked against (e.g. a context trusting a test CA)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout} s")
        time.sleep(0.05)


class RunRecord:
    """Every server process's output and every secret its config held, for the end-of-run check
    (tests/conftest.py) that no secret ever appeared in any output."""

    outputs: list[tuple[str, str]] = []  # (command, output)
    secrets: set[str] = set()

    @classmethod
    def note_config(cls, args: Sequence[str], env: dict[str, str] | None) -> None:
        """The secrets of the config a `serve --config PATH` process runs with (unreadable or
        deliberately broken configs have none to note)."""
        from gateway.config import ConfigError, load

        if "--config" not in args:
            return
        path = args[list(args).index("--config") + 1]
        with contextlib.suppress(ConfigError, OSError, IndexError):
            cls.secrets.update(s for s in load(path, env if env is not None else dict(os.environ)).secrets() if s)


class ServerProcess(subprocess.Popen[bytes]):
    """A Popen whose `with` block stops the process (SIGTERM, then SIGKILL) instead of waiting for it.
    Its combined output goes to a temporary file, readable with `output()`, and into `RunRecord`."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None, cwd: Path) -> None:
        self.log = tempfile.TemporaryFile()
        self.command = " ".join(args)
        self._env = env
        RunRecord.note_config(args, env)
        super().__init__(list(args), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self.log,
                         stderr=subprocess.STDOUT)  # fmt: skip

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self, grace: float = 5) -> None:
        if self.poll() is None:
            self.terminate()
            try:
                self.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
                self.wait()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
        super().__exit__(*exc_info)
        RunRecord.note_config(self.args, self._env)  # the config may have been rewritten (reload tests)
        RunRecord.outputs.append((self.command, self.output()))
        self.log.close()


def start_process(args: Sequence[str], health_url: str, env: dict[str, str] | None = None, timeout: float = 20,
                  cwd: Path = ROOT, verify: ssl.SSLContext | bool = True) -> ServerProcess:  # fmt: skip
    """Start `args` and return once `health_url` answers 200 (use the result in a `with` block)."""
    proc = ServerProcess(args, env, cwd)
    try:
        wait_http_ok(health_url, timeout, proc, verify)
    except Exception as exc:
        proc.stop()
        raise RuntimeError(f"{' '.join(args)}: {exc}\n--- output ---\n{proc.output()}") from None
    return proc


@contextlib.contextmanager
def start_mock_upstream(env: dict[str, str] | None = None, extra_args: Sequence[str] = (),
                        verify: ssl.SSLContext | bool = True) -> Iterator[tuple[ServerProcess, str]]:  # fmt: skip
    """A `gateway.mock_upstream` process on a free loopback port: yields (process, base URL).
    `extra_args` go to the mock (with `--certfile` it serves HTTPS, and `verify` must trust its CA)."""
    port = free_port()
    scheme = "https" if "--certfile" in extra_args else "http"
    base_url = f"{scheme}://127.0.0.1:{port}"
    args = [sys.executable, "-m", "gateway.mock_upstream", "--port", str(port), *extra_args]
    with start_process(args, f"{base_url}/_mock/health", env=env, verify=verify) as proc:
        yield proc, base_url


def write_config(folder: Path, text: str) -> Path:
    """`text` (indentation removed) as `folder/config.yaml`."""
    import textwrap

    path = folder / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def start_gateway(config: Path, env: dict[str, str] | None = None, *extra: str) -> tuple[ServerProcess, str]:
    """`junction serve` on a free loopback port with `config`: (process, base URL); use the
    process in a `with` block. `env` adds to the current environment."""
    port = free_port()
    args = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port), *extra]  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    return start_process(args, f"{base_url}/healthz", env=dict(os.environ, **(env or {}))), base_url


def serve_workers(config: Path, workers: int, *extra: str) -> tuple[ServerProcess, str]:
    """`junction serve --workers N` on a free loopback port: (supervisor process, base URL)."""
    port = free_port()
    args = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(workers), "--log-level", "warning", *extra]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    return start_process(args, f"{base}/healthz", env=dict(os.environ)), base


@contextlib.contextmanager
def gateway_with(folder: Path, config_text: str, env: dict[str, str]) -> Iterator[str]:
    """`junction serve` with `config_text` (written into `folder`) and `env`, quiet; yields its base URL."""
    proc, base = start_gateway(write_config(folder, config_text), env, "--log-level", "warning")
    with proc:
        yield base


def script_streams(mock: str, model: str, *streams: list[str], **extra: Any) -> None:
    """Queue SSE answers (each a list of raw frames) on the mock for requests to upstream `model`;
    `extra` adds script knobs to each (`close_early`, `gap_ms`, ...)."""
    entries = [{"match_model": model, "status": 200, "headers": {"content-type": "text/event-stream"}, "chunks": s,
                **extra} for s in streams]  # fmt: skip
    httpx.post(f"{mock}/_mock/script", json={"responses": entries}).raise_for_status()


def access_log(output: str) -> list[dict[str, Any]]:
    """The JSON access-log records in a gateway process's output, in order."""
    import json

    marker = "junction.access: "
    return [json.loads(line.split(marker, 1)[1]) for line in output.splitlines() if marker in line]


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """Kill a process started with start_new_session=True and whatever it left running."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.kill()


def run_bounded(argv: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, str, str]:
    """Run a command (stdin closed, its own process group) to completion: (exit code, stdout, stderr).
    After `timeout` it is killed and TimeoutError carries what it printed."""
    proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        stdout, stderr = proc.communicate(timeout=10)
        raise TimeoutError(-9, stdout, stderr) from None
    finally:
        kill_group(proc)  # tool subprocesses it may have left behind
    return proc.returncode, stdout, stderr


class LocalServer(Protocol):
    folder: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


@contextlib.contextmanager
def running(binary: str | None, server: Callable[[str], LocalServer], missing: str) -> Iterator[Any]:
    """A database server the suite starts on its own (Redis, PostgreSQL) from `binary`: stopped and its
    folder removed at the end; the test is skipped, saying `missing`, without the binary."""
    import shutil

    import pytest

    if binary is None:
        pytest.skip(missing)
    started = server(binary)
    started.start()
    try:
        yield started
    finally:
        started.stop()
        shutil.rmtree(started.folder, ignore_errors=True)
