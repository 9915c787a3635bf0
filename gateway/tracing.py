"""Optional OpenTelemetry traces: one span per request with GenAI semantic-convention attributes.

Off unless the config's `tracing:` section names an exporter; needs the `otel` extra
(`pip install 'junction-gateway[otel]'`). The span is recorded when the request ends, with its
real start time, as a child of the client's `traceparent` when one was sent.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.call import Call
from gateway.config import TracingOptions

log = logging.getLogger("junction")


class Tracing:
    def __init__(self, options: TracingOptions) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

        self.provider = TracerProvider(resource=Resource.create({"service.name": options.service_name}),
                                       sampler=TraceIdRatioBased(options.sampling))  # fmt: skip
        if options.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=options.otlp_endpoint)))
        if options.console:
            self.provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        self.tracer = self.provider.get_tracer("junction")
        # Offset from perf_counter (the Call's clock) to wall-clock nanoseconds.
        self.offset_ns = time.time_ns() - time.perf_counter_ns()

    def record(self, call: Call) -> None:
        from opentelemetry.propagate import extract
        from opentelemetry.trace import Status, StatusCode

        start = int(call.started * 1e9) + self.offset_ns
        span = self.tracer.start_span(f"chat {call.requested_model or ''}".strip(), context=extract(call.headers),
                                      start_time=start, attributes=attributes(call))  # fmt: skip
        if call.status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def shutdown(self) -> None:
        self.provider.shutdown()


def attributes(call: Call) -> dict[str, Any]:
    provider = call.provider
    values: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": call.requested_model,
        "gen_ai.response.model": provider.model_id if provider else None,
        "gen_ai.system": provider.prefix if provider else None,
        "gen_ai.usage.input_tokens": call.input_tokens,
        "gen_ai.usage.output_tokens": call.output_tokens,
        "http.response.status_code": call.status,
        "junction.request_id": call.request_id,
        "junction.protocol": call.wire,
        "junction.model": provider.model if provider else None,
        "junction.route": call.route or "none",
        "junction.alias": call.alias,
        "junction.attempts": call.attempts,
        "junction.fallback_from": call.fallback_from,
        "junction.stream": call.stream,
        "junction.upstream_ms": call.upstream_ms,
        "junction.ttft_ms": call.ttft_ms,
        "error.type": call.error_type,
    }
    return {k: v for k, v in values.items() if v is not None}


def setup(options: TracingOptions) -> Tracing | None:
    if not options.enabled:
        return None
    try:
        return Tracing(options)
    except ImportError:
        log.error("tracing is configured but OpenTelemetry is not installed: pip install 'junction-gateway[otel]'")
        return None
