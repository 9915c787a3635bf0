"""A native Responses stream relayed unchanged, and what the gateway may add to it.

An upstream that serves the Responses API itself (OpenAI, or one marked `provider_interface:
responses`) streams events the client reads as they are: the gateway never re-serialises them. It
follows them only to write, in the stream's own terms, the few events it must add itself:

* keepalive data events during upstream silence (comments do not reset Codex's idle timer). A
  keepalive repeats the sequence number of the event before it, so the upstream's own numbering
  reaches the client exactly as it was sent;
* when the upstream dies or breaks the stream, `error` + `response.failed` with the upstream's
  response id, continuing its sequence numbers and listing the items it had finished (a
  `response.created` first if the upstream never sent one).

Pure: the repair layer feeds decoded event payloads.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from models.sse import encode
from models.translate.responses_response import error_event_fields, failed_response, new_response_id

TERMINAL = frozenset(("response.completed", "response.incomplete", "response.failed"))
_OPENING = frozenset(("response.created", "response.in_progress", "response.queued"))


class ResponsesRelay:
    """What a relayed Responses stream has shown: its response, last sequence number, finished items."""

    def __init__(self, model: str) -> None:
        self.model = model  # for a failure before the upstream announced its response
        self.final: dict[str, Any] | None = None  # the completed or incomplete Response, once seen
        self._skeleton: dict[str, Any] | None = None
        self._seq = -1  # the last sequence number seen
        self._items: dict[int, dict[str, Any]] = {}  # finished output items by output_index
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def see(self, payload: Any) -> None:
        """Follow one upstream event (its decoded `data`)."""
        if not isinstance(payload, dict) or self._done:
            return
        seq = payload.get("sequence_number")
        if isinstance(seq, int) and not isinstance(seq, bool):
            self._seq = max(self._seq, seq)
        kind = payload.get("type")
        response = payload.get("response")
        if kind in _OPENING and isinstance(response, dict):
            self._skeleton = {k: v for k, v in response.items() if k not in ("output", "usage", "error")}
        elif kind == "response.output_item.done" and isinstance(payload.get("item"), dict):
            index = payload.get("output_index")
            self._items[index if isinstance(index, int) else len(self._items)] = payload["item"]
        elif kind in TERMINAL:
            self._done = True
            if kind != "response.failed" and isinstance(response, dict):
                self.final = response

    def keepalive(self) -> bytes:
        if self._done:
            return b""
        return encode("keepalive", orjson.dumps({"type": "keepalive", "sequence_number": max(self._seq, 0)}))

    def fail(self, code: str, message: str) -> list[bytes]:
        """`error` then `response.failed`, numbered after the upstream's last event (once)."""
        if self._done:
            return []
        self._done = True
        out = []
        if self._skeleton is None:
            self._skeleton = {"id": new_response_id(), "object": "response", "created_at": int(time.time()),
                              "status": "in_progress", "model": self.model, "output": []}  # fmt: skip
            out.append(self._event("response.created", response=self._skeleton))
        output = [self._items[i] for i in sorted(self._items)]
        out.append(self._event("error", **error_event_fields(code, message)))
        failed = failed_response({k: v for k, v in self._skeleton.items() if k != "output"}, output, code, message, None)
        out.append(self._event("response.failed", response=failed))
        return out

    def _event(self, kind: str, /, **fields: Any) -> bytes:
        self._seq += 1
        return encode(kind, orjson.dumps({"type": kind, "sequence_number": self._seq, **fields}))
