"""R25: a client that reads slowly (about 1 KB/s) from a fast upstream stream.

The gateway must hold the upstream back through TCP backpressure rather than buffer the stream:
its memory stays flat, the mock upstream (which could send 100 MiB in well under a second) gets
only as far as the socket buffers on the way let it, and the upstream request is closed as soon
as the client goes away. A client that stops reading altogether loses the stream once
`timeouts.idle` passes without the gateway being able to pass a chunk on: the upstream is dropped.

What holds the stream up, per stream (measured on Linux loopback; README, "Slow clients and big requests"):
the client's receive buffer, the gateway's socket send buffer to the client (kernel, up to
`net.ipv4.tcp_wmem` max), uvicorn's write buffer (64 KiB high-water mark: the relay's `send` waits
above it), one 16 KiB chunk in the relay, aiohttp's read buffer (reading pauses above 512 KiB),
the gateway's socket receive buffer from the upstream (kernel, `tcp_rmem`) and the upstream's own
send buffer. Only the middle part (under 1 MiB) is gateway memory.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.procs import ServerProcess, start_gateway, write_config

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024
CHUNK_BYTES = 16 * 1024
CHUNKS = 6400  # ~100 MiB: far more than every buffer on the way together
STREAM_BYTES = CHUNK_BYTES * CHUNKS
RSS_GROWTH_MAX_MB = 30.0
UPSTREAM_SHARE_MAX = 0.25  # of the stream the upstream may have sent while the client reads slowly
READ_RATE = 1024  # bytes per second
CLIENT_RCVBUF = 4096  # the kernel doubles it

CONFIG = """
version: v0.4.0
llm_providers:
  - model: mock/flood
    base_url: {mock}/v1
    headers: {{x-mock-chunk_bytes: "{chunk_bytes}", x-mock-chunks: "{chunks}", x-mock-gap_ms: "0.01"}}
  - model: mock/small
    base_url: {mock}/v1
timeouts:
  idle: {idle}
"""
# gap_ms 0.01: a 10 us pause between chunks, so the mock looks for a disconnect after each one
# (with 0 it would never look, and could not tell an abort from a finished stream).


def gateway_for(mock: str, folder: Path, idle: str) -> tuple[ServerProcess, str]:
    config = write_config(folder, CONFIG.format(mock=mock, chunk_bytes=CHUNK_BYTES, chunks=CHUNKS, idle=idle))
    return start_gateway(config, None, "--log-level", "warning", "--no-access-log")


@pytest.fixture(scope="module")
def gateway(mock: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A gateway whose idle timeout (60 s) is far longer than the tests' slow reads."""
    proc, base_url = gateway_for(mock, tmp_path_factory.mktemp("backpressure"), "60s")
    with proc:
        yield proc, base_url


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def mock_stats(mock: str) -> dict[str, int]:
    return httpx.get(f"{mock}/_mock/stats", timeout=5).json()


def gateway_metric(base_url: str, name: str) -> float:
    for line in httpx.get(f"{base_url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def wait_for(check: Any, timeout: float) -> float:
    """Seconds until `check()` held; fails after `timeout`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"condition not met within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - started


def chat_body(model: str) -> dict[str, Any]:
    """A streaming request valid in both protocols (Anthropic needs max_tokens)."""
    return {"model": model, "max_tokens": 16, "stream": True, "messages": [{"role": "user", "content": "hi"}]}


class SlowClient:
    """A raw socket with a small receive buffer that sends one streaming request and then reads it
    at `READ_RATE`: the TCP window it advertises is all that tells the gateway to slow down."""

    def __init__(self, base_url: str, path: str, model: str) -> None:
        port = int(base_url.rsplit(":", 1)[1])
        body = json.dumps(chat_body(model)).encode()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)  # before connect: sets the window
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                f"x-api-key: unused\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
        self.sock.sendall(head.encode() + body)
        self.received = bytearray()

    def read_for(self, seconds: float, step: float = 0.25) -> None:
        """Read about READ_RATE bytes per second for `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.received += self.sock.recv(int(READ_RATE * step))
            time.sleep(step)

    def read_all(self, timeout: float = 20) -> bytes:
        """Everything until the chunked body ends (or the server closes)."""
        deadline = time.monotonic() + timeout
        while not self.received.endswith(b"\r\n0\r\n\r\n") and time.monotonic() < deadline:
            data = self.sock.recv(1 << 20)
            if not data:
                break
            self.received += data
        return bytes(self.received)

    def __enter__(self) -> SlowClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.sock.close()


def warm_up(base_url: str, path: str) -> None:
    """One small stream on the same path first: module imports and first-use allocations are not
    what this test measures."""
    with httpx.stream("POST", f"{base_url}{path}", json=chat_body("small"), timeout=10) as response:
        assert response.status_code == 200
        response.read()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"], ids=["relay", "translated"])
def test_r25_slow_reader_holds_the_upstream_back_with_bounded_memory(
        gateway: tuple[ServerProcess, str], mock: str, path: str) -> None:  # fmt: skip
    proc, base_url = gateway
    warm_up(base_url, path)
    rss_before, before = rss_mb(proc.pid), mock_stats(mock)
    samples: list[tuple[float, int]] = []  # (gateway RSS growth in MB, bytes the upstream got out)
    with SlowClient(base_url, path, "flood") as client:
        for _ in range(4):
            client.read_for(1.0)
            samples.append((rss_mb(proc.pid) - rss_before, mock_stats(mock)["stream_bytes"] - before["stream_bytes"]))
        assert client.received.startswith(b"HTTP/1.1 200"), bytes(client.received[:200])
        during = mock_stats(mock)
        # (a) memory: the gateway did not take in what the upstream could send.
        growth = max(rss for rss, _ in samples)
        assert growth < RSS_GROWTH_MAX_MB, f"gateway RSS grew by {growth:.1f} MB while a client read slowly"
        # (b) backpressure: the upstream got a few socket buffers' worth out and then stood still,
        # still connected (paused, not dropped).
        sent = samples[-1][1]
        assert 0 < sent < STREAM_BYTES * UPSTREAM_SHARE_MAX, f"upstream sent {sent / MIB:.1f} of {STREAM_BYTES / MIB:.0f} MiB"
        assert samples[-1][1] - samples[1][1] < MIB, f"upstream kept sending: {samples}"
        assert during["open"] == before["open"] + 1 and during["aborted"] == before["aborted"]
    # (c) the client hangs up: the gateway closes the upstream request within a second.
    waited = wait_for(lambda: (s := mock_stats(mock))["open"] == before["open"]
                      and s["aborted"] == before["aborted"] + 1, timeout=1.0)  # fmt: skip
    assert waited < 1.0
    wait_for(lambda: gateway_metric(base_url, "junction_requests_in_flight") == 0, timeout=1.0)
    # The relay never blocked the event loop: the lag gauge stays far from a stall (a loose bound,
    # since a shared machine can delay the whole process).
    assert 0 <= gateway_metric(base_url, "junction_event_loop_lag_seconds") < 0.5


def test_r25_client_that_stops_reading_loses_the_stream_at_the_idle_timeout(
        mock: str, tmp_path_factory: pytest.TempPathFactory) -> None:  # fmt: skip
    proc, base_url = gateway_for(mock, tmp_path_factory.mktemp("stalled-reader"), "2s")
    with proc:
        warm_up(base_url, "/v1/chat/completions")
        rss_before, before = rss_mb(proc.pid), mock_stats(mock)
        with SlowClient(base_url, "/v1/chat/completions", "flood") as client:
            # The client reads nothing: the relay's send waits, and after `idle` (2 s) without
            # passing a chunk on, the gateway gives up on the stream and closes the upstream.
            wait_for(lambda: mock_stats(mock)["stream_bytes"] > before["stream_bytes"], timeout=5)
            dropped = wait_for(lambda: (s := mock_stats(mock))["open"] == before["open"]
                               and s["aborted"] == before["aborted"] + 1, timeout=6)  # fmt: skip
            assert dropped > 1.0  # not before the idle timeout
            sent = mock_stats(mock)["stream_bytes"] - before["stream_bytes"]
            assert sent < STREAM_BYTES * UPSTREAM_SHARE_MAX
            assert rss_mb(proc.pid) - rss_before < RSS_GROWTH_MAX_MB
            # Reading now, the client gets what was in the buffers and then an in-band error: the
            # stream was cut, not ended as if complete.
            body = client.read_all()
            assert body.startswith(b"HTTP/1.1 200")
            tail = body[-2000:]
            assert b'data: {"error"' in tail and b"[DONE]" not in tail, tail[-400:]
            assert b"the client stopped reading the stream" in tail
        wait_for(lambda: gateway_metric(base_url, "junction_requests_in_flight") == 0, timeout=1.0)
