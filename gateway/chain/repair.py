"""Stream repair layer: whatever the upstream does, the stream that leaves it is well formed.

It sits between translation and the upstream call, so it works in the upstream's protocol:

* bytes are passed on only at event boundaries, so no event (and no UTF-8 character) is ever
  split, and a ping can be slipped in between events safely;
* every chunk carries its decoded events (`EVENTS_KEY`) so translation never parses SSE again;
  upstream `: keep-alive` comments count as silence;
* after `ping_interval` seconds without an event a ping goes out (`PING_KEY`), so idle
  connections and proxies stay open during long reasoning or queueing;
* a stream that dies, sends garbage, or ends without its terminator (`message_stop` / `error`
  for Anthropic, `[DONE]` or a finish_reason for OpenAI, a terminal `response.*` event for a
  native Responses upstream) ends with an error frame (`ERROR_KEY` carries status and message
  for translation), never a fake successful ending.

A native Responses stream is followed by `ResponsesRelay`, which writes its pings (keepalive data
events) and its failure events in the stream's own numbering.

For same-protocol traffic the frames it emits go to the client as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson

from gateway.call import Call, get_call
from gateway.errors import GatewayError
from gateway.lifecycle import Lifecycle
from models.providers import ApiStyle
from models.sse import SSEDecoder, SSEEvent
from models.usage import delta_chars, usage_of
from models.translate.errors import responses_error_code, stream_error_frame
from models.translate.responses_relay import ResponsesRelay

EVENTS_KEY = "junction.events"
PING_KEY = "junction.ping"
ERROR_KEY = "junction.error"
DEFAULT_PING_INTERVAL = 10.0

_PINGS = {
    ApiStyle.ANTHROPIC: b'event: ping\ndata: {"type":"ping"}\n\n',
    ApiStyle.OPENAI: b": ping\n\n",  # a comment: OpenAI clients skip it
}
_BOUNDARIES = (b"\r\n\r\n", b"\n\n", b"\r\r")
TRUNCATED = "upstream stream ended before the response was complete"
MALFORMED = "upstream sent a malformed stream event"
MAX_EVENT_BYTES = 16 * 1024 * 1024  # one SSE event held back while waiting for its end, at most
OVERSIZED = "upstream sent a stream event larger than 16 MiB"


def event_boundary(data: bytes) -> int:
    """The end of the last complete event in `data` (0 when there is none yet)."""
    end = 0
    for separator in _BOUNDARIES:
        at = data.rfind(separator)
        if at >= 0:
            end = max(end, at + len(separator))
    return end


class _Aborted(Exception):
    """The stream was ended with an error frame; stop reading the upstream."""


class Repair:
    def __init__(self, app: Any, ping_interval: float = DEFAULT_PING_INTERVAL, lifecycle: Lifecycle | None = None,
                 streams: Any = None) -> None:  # fmt: skip
        self.app = app
        self.ping_interval = ping_interval
        self.lifecycle = lifecycle or Lifecycle()
        self.streams = streams  # the in-flight streams gauge (gateway/observe.py), when metrics are on

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        call = get_call(scope)
        if not call.stream:
            await self.app(scope, receive, send)
            return
        guard = StreamGuard(call, send, self.ping_interval, self.streams)
        self.lifecycle.streams += 1
        try:
            await self.app(scope, receive, guard.send)
        except _Aborted:
            pass
        except GatewayError as exc:
            if not guard.streaming:
                raise
            await guard.fail(exc.status, exc.message)
        except asyncio.CancelledError:
            # Cut off by shutdown after the drain time: say so in-band rather than just stop.
            if guard.streaming and not call.client_gone:
                await guard.fail(529 if call.protocol is ApiStyle.ANTHROPIC else 503,
                                 "the gateway is shutting down; the response was interrupted")  # fmt: skip
            raise
        finally:
            self.lifecycle.streams -= 1
            guard.close()
            call.estimate_cut_usage()


class StreamGuard:
    """Per-stream state: the partial event held back, what the stream has shown so far."""

    def __init__(self, call: Call, send: Any, ping_interval: float, gauge: Any = None) -> None:
        self.call = call
        self.gauge = gauge  # counts this stream while it is being relayed
        self.api = ApiStyle.OPENAI  # set at response start: failover may change the model
        self.relay: ResponsesRelay | None = None  # a native Responses stream's state
        self._send = send
        self.ping_interval = ping_interval
        self.streaming = False
        self.ended = False
        self.terminated = False  # saw the protocol's terminator (or an in-band error)
        self.finished = False  # OpenAI: saw a finish_reason (EOF after it is a clean end)
        self.pending = b""
        self.decoder = SSEDecoder()
        self.last_out = time.monotonic()
        self.watchdog: asyncio.Task[None] | None = None

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert self.call.provider is not None
            self.api = self.call.upstream_api
            content_type = next((v for k, v in message.get("headers", []) if k == b"content-type"), b"")
            self.streaming = message["status"] == 200 and content_type.startswith(b"text/event-stream")
            if self.streaming and self.api is ApiStyle.RESPONSES:
                # Also the boundary's: a failure it reports after the headers continues this stream.
                self.relay = self.call.responses_stream = ResponsesRelay(self.call.requested_model or self.call.provider.model)
            await self._send(message)
            if self.streaming:
                if self.gauge is not None:
                    self.gauge.inc()
                self.last_out = time.monotonic()
                self.watchdog = asyncio.ensure_future(self._watch())
            return
        if not self.streaming:
            await self._send(message)
            return
        if self.ended:
            return
        more = message.get("more_body", False)
        data = self.pending + message.get("body", b"")
        cut = event_boundary(data) if more else len(data)
        ready, self.pending = data[:cut], data[cut:]
        if len(self.pending) > MAX_EVENT_BYTES:  # no boundary in sight: not a stream worth holding
            await self.fail(502, OVERSIZED)
            raise _Aborted
        events = [e for e in (self.decoder.feed(ready) if ready else []) if not e.comment]
        if not more:
            events += [e for e in self.decoder.flush() if not e.comment]
        if not self._inspect(events):
            await self.fail(502, MALFORMED)
            raise _Aborted
        complete = self.terminated or self.finished
        if ready or not more:
            await self._send({"type": "http.response.body", "body": ready, "more_body": more or not complete,
                              EVENTS_KEY: events})  # fmt: skip
        if events:
            self.last_out = time.monotonic()
        if not more:
            self.ended = complete
            if not complete:
                await self.fail(502, TRUNCATED)

    def _inspect(self, events: list[SSEEvent]) -> bool:
        """Track the terminator; False when an event is not valid JSON."""
        for event in events:
            data = event.data.strip()
            if data == "[DONE]" and self.api is not ApiStyle.ANTHROPIC:
                # Chat's terminator; Responses streams end with a terminal event, not with this.
                self.terminated = self.terminated or self.api is ApiStyle.OPENAI
                continue
            try:
                payload = orjson.loads(data)
            except orjson.JSONDecodeError:
                return False
            self.call.add_usage(usage_of(self.api, payload))
            self.call.streamed_chars += delta_chars(self.api, payload)
            if self.relay is not None:
                self.relay.see(payload)
                self.terminated = self.relay.done
            elif self.api is ApiStyle.ANTHROPIC:
                if event.event in ("message_stop", "error"):
                    self.terminated = True
            elif isinstance(payload, dict):
                if "error" in payload:
                    self.terminated = True
                elif any(isinstance(c, dict) and c.get("finish_reason") for c in payload.get("choices") or ()):
                    self.finished = True
        return True

    async def fail(self, status: int, message: str) -> None:
        """End the stream with an error frame (once)."""
        if self.ended:
            return
        self.ended = True
        if self.relay is not None:
            frame = b"".join(self.relay.fail(responses_error_code(status, message), message))
        else:
            frame = stream_error_frame(self.api, status, message)
        await self._send({"type": "http.response.body", "body": frame, "more_body": False,
                          ERROR_KEY: (status, message)})  # fmt: skip

    async def _watch(self) -> None:
        with contextlib.suppress(Exception):
            while not self.ended:
                wait = self.last_out + self.ping_interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                self.last_out = time.monotonic()
                if not self.pending:  # never inside a half-received event
                    ping = self.relay.keepalive() if self.relay is not None else _PINGS[self.api]
                    await self._send({"type": "http.response.body", "body": ping, "more_body": True,
                                      PING_KEY: True})  # fmt: skip

    def close(self) -> None:
        if self.streaming and self.gauge is not None:
            self.gauge.dec()
            self.gauge = None
        self.ended = True
        if self.watchdog is not None:
            self.watchdog.cancel()
