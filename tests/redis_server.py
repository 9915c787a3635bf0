"""A real `redis-server` on a free loopback port for the test run (no Docker): started by the suite,
stopped at the end; tests that need it are skipped, with the reason printed, when the binary is
missing (`make test` installs Debian's redis-server when it can)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time


from tests.procs import free_port, running


def redis_binary() -> str | None:
    return shutil.which("redis-server") or shutil.which("valkey-server")


class RedisServer:
    """One server process; `stop()` and `start()` again on the same port (a Redis outage)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.folder = tempfile.mkdtemp(prefix="junction-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.folder, "--protected-mode", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 10
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def ping(self) -> bool:
        import redis

        with contextlib.suppress(redis.RedisError, OSError):
            return bool(redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def flush(self) -> None:
        import redis

        redis.Redis(port=self.port).flushall()

    def keys(self) -> list[bytes]:
        import redis

        return list(redis.Redis(port=self.port).keys("*"))


def redis_server() -> contextlib.AbstractContextManager[RedisServer]:
    return running(redis_binary(), RedisServer, "redis-server not found: install Debian's redis-server (make test "
                   "does when it runs as root) to test the shared key state")  # fmt: skip
