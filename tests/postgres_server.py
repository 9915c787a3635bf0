"""A real PostgreSQL server on a free loopback port for the test run (no Docker): a throwaway cluster
made with `initdb`, started by the suite and removed at the end. PostgreSQL refuses to run as root,
so under root the server runs as the `postgres` user. Tests that need it are skipped, with the reason
printed, when the binaries are missing (`make test` installs Debian's postgresql when it can)."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any


from tests.procs import free_port, running


def postgres_bindir() -> str | None:
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(os.path.realpath(found))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(versions[-1]) if versions else None


class PostgresServer:
    """One cluster; `stop()` and `start()` again on the same port and data (a database outage)."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.folder = tempfile.mkdtemp(prefix="junction-pg-")
        self.data = os.path.join(self.folder, "data")
        self.user: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self.user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        subprocess.run([os.path.join(bindir, "initdb"), "-D", self.data, "-A", "trust", "-U", "postgres",
                        "--no-sync", "-E", "UTF8"], check=True, capture_output=True, **self.user)  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self.proc = subprocess.Popen([os.path.join(self.bindir, "postgres"), "-D", self.data, "-p", str(self.port),
                                      "-k", self.folder, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                                      "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **self.user)  # fmt: skip
        deadline = time.monotonic() + 30
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start on port {self.port}")
            time.sleep(0.1)

    def query(self, sql: str, *args: Any) -> list[Any]:
        import asyncpg

        async def run() -> list[Any]:
            connection = await asyncpg.connect(self.dsn, timeout=2)
            try:
                return list(await connection.fetch(sql, *args))
            finally:
                await connection.close()

        return asyncio.run(run())

    def ready(self) -> bool:
        probe = [os.path.join(self.bindir, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"]
        return subprocess.run(probe, capture_output=True).returncode == 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: open connections are cut, as in an outage
            self.proc.wait(30)
        self.proc = None

    def reset(self) -> None:
        """An empty ledger for the next test."""
        self.query("DROP TABLE IF EXISTS usage_event, usage_daily")


def postgres_server() -> contextlib.AbstractContextManager[PostgresServer]:
    return running(postgres_bindir(), PostgresServer, "PostgreSQL's initdb not found: install Debian's postgresql "
                   "(make test does when it runs as root) to test the ledger on PostgreSQL")  # fmt: skip
