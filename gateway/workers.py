"""`junction serve --workers N`: N gateway processes sharing one listening socket.

The supervisor binds the socket, forks the workers (each builds its own app, loads its own router model
and runs the draining server on the shared socket), passes SIGTERM, SIGINT and SIGHUP on to them, and
starts a worker again if one dies. Metrics are kept in prometheus-client's multiprocess mode: every
worker writes its values into files of one folder, emptied at start, and any worker's /metrics adds
them up. Per-key limits only hold across workers with a shared state store (`state: {backend: redis}`).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Callable

from gateway.observe import MULTIPROCESS_DIR

log = logging.getLogger("junction")
RESTART_BACKOFF_S = 1.0  # a worker that dies at once is not restarted in a tight loop


def needs_reexec() -> bool:
    """prometheus-client picks its value storage when imported: the folder must be in the environment
    before that, so the supervisor starts again in a fresh process with it set."""
    return MULTIPROCESS_DIR not in os.environ


def reexec_with_metrics_folder() -> None:
    folder = tempfile.mkdtemp(prefix="junction-metrics-")
    os.environ[MULTIPROCESS_DIR] = folder
    os.execv(sys.executable, [sys.executable, "-m", "gateway.cli", *sys.argv[1:]])


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def supervise(workers: int, host: str, port: int, run_worker: Callable[[socket.socket], None]) -> int:
    """Fork `workers` processes running `run_worker(sock)`; return once every one has stopped after a stop signal."""
    folder = os.environ[MULTIPROCESS_DIR]
    for name in os.listdir(folder):  # values of an earlier run
        os.unlink(os.path.join(folder, name))
    sock = listening_socket(host, port)
    children: dict[int, int] = {}  # pid -> worker number
    stopping = False

    def spawn(number: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            code = 0
            try:
                run_worker(sock)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 0
            except BaseException:  # noqa: BLE001 - the worker's own logs say what; the supervisor restarts it
                log.exception("worker %d failed", number)
                code = 1
            finally:
                os._exit(code)
        children[pid] = number

    def forward(sig: int, _frame: object) -> None:
        nonlocal stopping
        if sig in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for pid in list(children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for number in range(workers):
        spawn(number)
    log.info("junction: %d workers on %s:%d (pids %s)", workers, host, port, ", ".join(map(str, children)))
    from prometheus_client import multiprocess

    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        number = children.pop(pid, None)
        multiprocess.mark_process_dead(pid)  # its live gauges no longer count
        if number is not None and not stopping:
            log.warning("worker %d (pid %d) exited with status %d; starting it again", number, pid, status)
            time.sleep(RESTART_BACKOFF_S)
            spawn(number)
    sock.close()
    shutil.rmtree(folder, ignore_errors=True)
    return 0
