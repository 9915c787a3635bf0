"""Server-sent events: an incremental, UTF-8-safe decoder and the frame encoder.

Upstream bytes arrive in arbitrary pieces: a line, a multi-byte character or a `\\r\\n` pair can be
split between two reads. The decoder therefore splits lines on raw bytes (CR and LF never occur
inside a UTF-8 multi-byte sequence) and decodes only complete lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event, or one comment line (`comment=True`, text in `data`)."""

    event: str | None
    data: str
    comment: bool = False


class SSEDecoder:
    """Feed raw bytes, get complete events back (WHATWG event-stream interpretation).

    Comments (`: keep-alive`) are reported as they arrive so the caller can see that the upstream
    is alive; `id:` and `retry:` fields are accepted and ignored (the gateway never reconnects).
    """

    def __init__(self) -> None:
        self._tail = bytearray()  # the incomplete last line
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF belongs to it
        self._first_line = True
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        if self._skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._skip_lf = False
        pos = 0
        for match in _EOL.finditer(chunk):
            self._tail += chunk[pos : match.start()]
            self._line(bytes(self._tail), events)
            self._tail.clear()
            pos = match.end()
        self._tail += chunk[pos:]
        self._skip_lf = pos == len(chunk) and chunk.endswith(b"\r")
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: the unterminated last line and a pending event are still delivered.

        Strictly, an event without its blank line is incomplete; upstreams that end on
        `data: [DONE]` without a newline are common enough that dropping it would turn a finished
        answer into a truncated one.
        """
        events: list[SSEEvent] = []
        if self._tail:
            self._line(bytes(self._tail), events)
            self._tail.clear()
        self._line(b"", events)
        self._skip_lf = False
        return events

    def _line(self, raw: bytes, events: list[SSEEvent]) -> None:
        if self._first_line:
            self._first_line = False
            raw = raw.removeprefix(_BOM)
        line = raw.decode("utf-8", errors="replace")
        if not line:
            if self._data or self._event is not None:
                events.append(SSEEvent(self._event, "\n".join(self._data)))
            self._event, self._data = None, []
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if not name:
            events.append(SSEEvent(None, value, comment=True))
        elif name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value


def encode(event: str | None, data: bytes | str) -> bytes:
    """One SSE frame: `event:` line when named (Anthropic), then `data:` line(s), blank line."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if b"\n" in data or b"\r" in data:
        body = b"".join(b"data: " + part + b"\n" for part in _EOL.split(data))
    else:
        body = b"data: " + data + b"\n"
    if event is None:
        return body + b"\n"
    return b"event: " + event.encode("utf-8") + b"\n" + body + b"\n"
