"""OpenTelemetry export over OTLP/HTTP to a real local receiver: one span per request with GenAI
attributes, parented on the client's traceparent."""

from __future__ import annotations

import http.server
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.procs import free_port, start_gateway

pytest.importorskip("opentelemetry.sdk", reason="tracing needs the otel extra (installed by make test)")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402


class Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        Receiver.bodies.append(self.rfile.read(int(self.headers["content-length"])))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_spans_reach_an_otlp_receiver(mock: str, tmp_path: Path) -> None:
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent(f"""
        version: v0.4.0
        llm_providers:
          - model: mock/traced
            base_url: {mock}/v1
            default: true
        tracing:
          otlp_endpoint: http://127.0.0.1:{receiver.server_address[1]}/v1/traces
          random_sampling: 100
    """))
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    try:
        proc, base = start_gateway(config, None, "--log-level", "warning")
        with proc:
            response = httpx.post(f"{base}/v1/chat/completions", timeout=20,
                                  headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
                                  json={"model": "claude-like", "messages": [{"role": "user", "content": "hi"}]})
            assert response.status_code == 200
        deadline = time.monotonic() + 5  # the batch exporter flushes at shutdown
        while not Receiver.bodies and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        receiver.shutdown()
    spans = []
    for body in Receiver.bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans += [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    (span,) = spans
    attrs = {a.key: a.value for a in span.attributes}
    assert span.trace_id.hex() == trace_id
    assert attrs["gen_ai.request.model"].string_value == "claude-like"
    assert attrs["gen_ai.response.model"].string_value == "traced"
    assert attrs["junction.model"].string_value == "mock/traced"
    assert attrs["gen_ai.usage.output_tokens"].int_value > 0
    assert attrs["http.response.status_code"].int_value == 200
