"""Stream state machine: Chat Completions chunks from an upstream -> Responses API SSE for the client.

Pure: the gateway feeds decoded upstream chunks (dicts) and writes the returned frames. The output
follows the grammar strict clients enforce (responses-reference §2.1-§2.3): `response.created`
first, every item announced by `output_item.added` before its deltas and ended by
`output_item.done`, `output_index` 0, 1, 2... in announcement order, `sequence_number` 0, 1, 2...
on every event, and exactly one terminal event, after which the object returns nothing.

Items must be strictly sequential, while Chat tool-call fragments may interleave between indexes,
reuse an index, or arrive all at the end. As in `stream.py`, items are kept in arrival order with
exactly one open at a time: content for the open item streams live, content for later items is
held. Reasoning and text close as soon as anything follows them; a function call once its
arguments form a complete JSON object, or at the end. Held calls are emitted when their turn
comes, as added -> one delta -> done.

A custom tool's input is wrapped upstream as `{"input": "..."}` and is only known unwrapped once the
call is complete, so its item is announced when the call starts and its input sent as one delta at
the end. While it is held the client sees no events: the gateway's keepalive timer should count
time since the last frame sent to the client, not only upstream silence.

`finish()` is the clean end of the upstream stream (a finish_reason, `[DONE]`, or EOF after them);
a cut connection or timeout is the gateway's to report through `fail()`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from models.sse import encode
from models.translate.errors import error_info, responses_error_code
from models.translate.response import OVERLOADED_FINISH, parse_arguments
from models.translate.responses_response import (
    wrapped_input_prefix,
    call_item,
    call_item_id,
    custom_input,
    error_event_fields,
    failed_response,
    finished_response,
    function_arguments,
    message_item,
    new_call_id,
    new_message_item_id,
    new_reasoning_item_id,
    new_response_id,
    outcome,
    output_text_part,
    reasoning_item,
    response_skeleton,
    summary_part,
    responses_usage,
)
from models.translate.fragments import Assembly, Pending
from models.translate.responses_tools import ToolSpec, ToolTable

@dataclass(eq=False, slots=True)
class _Item(Pending):
    """One future output item: reasoning, a message, or a tool call being assembled."""

    output_index: int | None = None  # once announced
    item_id: str = ""
    spec: ToolSpec | None = None  # the client tool, once announced
    call_id: str = ""
    live: str = ""  # a custom call's input streamed so far (decoded from the `{"input": ...}` wrapper)


class ChatToResponsesStream:
    """Chat Completions chunks -> Responses SSE frames (`event: <type>` + `data: <json>`)."""

    def __init__(
        self,
        request: dict[str, Any],
        tools: ToolTable,
        model: str,
        response_id: str | None = None,
        created_at: int | None = None,
    ) -> None:
        self._tools = tools
        # One skeleton for created, in_progress and the terminal event: same id, created_at, model.
        self._skeleton = response_skeleton(
            request, response_id or new_response_id(), created_at if created_at is not None else int(time.time()), model
        )
        self._seq = 0
        self._started = False
        self._done = False
        self._cut: _Item | None = None  # the item a truncated response was cut in
        self._next_index = 0
        self._output: list[dict[str, Any]] = []  # finished items, in output_index order
        self.final: dict[str, Any] | None = None  # the completed or incomplete response, once finished
        self._finish: str | None = None
        self._raw_usage: dict[str, Any] | None = None
        self.anomalies: list[str] = []  # upstream protocol oddities, for the gateway's logs
        self._assembly: Assembly[_Item] = Assembly(_Item, self.anomalies, "item", ("reasoning", "message", "call"))
        self._items = self._assembly.items

    # -- inspection ------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._done

    @property
    def response_id(self) -> str:
        return str(self._skeleton["id"])

    @property
    def usage(self) -> dict[str, Any] | None:
        return responses_usage(self._raw_usage)

    @property
    def finish_reason(self) -> str | None:
        return self._finish

    # -- public steps ----------------------------------------------------------------------

    def start(self) -> list[bytes]:
        """`response.created` (in progress, empty output) and `response.in_progress`, sent as soon
        as the upstream answers so headers flush before the first token."""
        if self._started or self._done:
            return []
        self._started = True
        return [
            self._event("response.created", response=self._skeleton),
            self._event("response.in_progress", response=self._skeleton),
        ]

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        """Frames for one decoded upstream chunk; an error chunk or DeepSeek's overload finish ends
        the stream as failed."""
        if self._done:
            return []
        out = self.start()
        if chunk.get("error"):
            return out + self._upstream_error(chunk)
        usage, choice = self._assembly.read(chunk)
        if usage is not None:
            self._raw_usage = usage
        if choice is None:
            return out
        finish = choice.get("finish_reason")
        if finish == OVERLOADED_FINISH:
            out += self._pump(final=False)
            return out + self.fail("server_is_overloaded", "upstream is overloaded (insufficient_system_resource)")
        if isinstance(finish, str) and finish:
            self._finish = finish  # remember, but keep reading: usage usually follows
        return out + self._pump(final=False)

    def keepalive(self) -> bytes:
        """A keepalive *data* event: SSE comments do not reset Codex's idle timer (§2.4). It takes a
        sequence number like any event; before `start()` the opening events come first."""
        if self._done:
            return b""
        return b"".join(self.start()) + self._event("keepalive")

    def finish(self) -> list[bytes]:
        """The upstream ended cleanly: close every item and send the terminal event."""
        if self._done:
            return []
        out = self.start()
        invalid = self._invalid_call()
        if invalid is not None:
            # Never pass a corrupted call on as a success; a `length` cut explains it.
            return out + self.fail("server_error", f"upstream sent invalid JSON arguments for tool '{invalid}'")
        out += self._pump(final=True)
        self._done = True
        response = self.final = finished_response(self._skeleton, self._output, self._finish, self.usage)
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return out + [self._event(kind, response=response)]

    def fail(self, code: str, message: str) -> list[bytes]:
        """An `error` event, then `response.failed` carrying `code` (after headers were sent).

        Open items are left unfinished on purpose: Codex runs tools from `output_item.done`, and a
        half-received call must never run. The failed response lists the items that did finish.
        """
        if self._done:
            return []
        out = self.start()
        self._done = True
        out.append(self._event("error", **error_event_fields(code, message)))
        response = failed_response(self._skeleton, self._output, code, message, self.usage)
        return out + [self._event("response.failed", response=response)]

    # -- chunk handling --------------------------------------------------------------------

    def _upstream_error(self, chunk: dict[str, Any]) -> list[bytes]:
        info = error_info(chunk)
        return self.fail(responses_error_code(None, info.message, info), info.message)

    def _invalid_call(self) -> str | None:
        """The name of a function call whose arguments cannot be passed on, unless `length` cut it."""
        if self._finish == "length":
            return None
        for item in self._items:
            if item.kind != "call" or item.name is None or self._tools.lookup(item.name).kind == "custom":
                continue
            if item.late or parse_arguments(function_arguments(item.text())) is None:
                return item.name
        return None

    # -- item emission ---------------------------------------------------------------------

    def _pump(self, final: bool) -> list[bytes]:
        """Emit what can be emitted: announce, feed and close items strictly in order."""
        self._cut = self._last_emitted() if final and outcome(self._finish)[0] == "incomplete" else None
        return self._assembly.pump(final, self)

    # Emitter hooks (fragments.Assembly.pump)
    def started(self, item: _Item) -> bool:
        return item.output_index is not None

    def open(self, item: _Item) -> list[bytes]:
        return self._open(item)

    def flush(self, item: _Item) -> list[bytes]:
        return self._flush(item)

    def close(self, item: _Item) -> list[bytes]:
        return self._close(item, truncated=item is self._cut)

    def _last_emitted(self) -> _Item | None:
        """The item that will end the output: the one a truncated response was cut in."""
        pending = reversed(self._items[self._assembly.cursor :])
        return next((i for i in pending if i.output_index is not None or self._assembly.startable(i, final=True)), None)

    def _open(self, item: _Item) -> list[bytes]:
        item.output_index = self._next_index
        self._next_index += 1
        if item.kind == "reasoning":
            item.item_id = new_reasoning_item_id()
            added = {"id": item.item_id, "type": "reasoning", "summary": []}
            # The upstream's reasoning goes out as the item's summary: Codex shows summaries (raw
            # reasoning text only with show_raw_agent_reasoning).
            return [self._item_event("response.output_item.added", item, item=added),
                    self._summary_event("response.reasoning_summary_part.added", item, part=summary_part(""))]  # fmt: skip
        elif item.kind == "message":
            item.item_id = new_message_item_id()
            added = {"id": item.item_id, "type": "message", "role": "assistant", "status": "in_progress",
                     "content": []}  # fmt: skip
            part = output_text_part("")
        else:
            assert item.name is not None  # Assembly.startable
            item.spec = self._tools.lookup(item.name)
            item.item_id = call_item_id(item.spec)
            item.call_id = item.upstream_id or new_call_id()
            added = call_item(item.item_id, item.spec, item.call_id, "", "in_progress")
            return [self._item_event("response.output_item.added", item, item=added)]
        return [
            self._item_event("response.output_item.added", item, item=added),
            self._part_event("response.content_part.added", item, part=part),
        ]

    def _flush(self, item: _Item) -> list[bytes]:
        """Send the open item's new content as one delta."""
        if item.sent == len(item.parts):
            return []
        if item.kind == "call" and item.spec is not None and item.spec.kind == "custom":
            return self._flush_custom(item)
        if item.kind == "call" and (not item.has_content() or item.spec is None):
            return []  # whitespace may still become `{}`
        text = "".join(item.parts[item.sent :])
        item.sent = len(item.parts)
        if not text:
            return []
        if item.kind == "reasoning":
            return [self._summary_event("response.reasoning_summary_text.delta", item, delta=text)]
        if item.kind == "message":
            return [self._part_event("response.output_text.delta", item, delta=text, logprobs=[])]
        return [self._item_event("response.function_call_arguments.delta", item, delta=text)]

    def _flush_custom(self, item: _Item) -> list[bytes]:
        """Stream a custom call's input live while its arguments read as the `{"input": "..."}` wrapper;
        anything else goes out whole when the call closes."""
        prefix = wrapped_input_prefix(item.text())
        if prefix is None or len(prefix) <= len(item.live) or not prefix.startswith(item.live):
            return []
        delta, item.live = prefix[len(item.live) :], prefix
        return [self._item_event("response.custom_tool_call_input.delta", item, delta=delta)]

    def _close(self, item: _Item, truncated: bool) -> list[bytes]:
        item.closed = True
        status = "incomplete" if truncated else "completed"
        if item.kind == "reasoning":
            text = item.text()
            out = [self._summary_event("response.reasoning_summary_text.done", item, text=text),
                   self._summary_event("response.reasoning_summary_part.done", item, part=summary_part(text))]  # fmt: skip
            done = reasoning_item(item.item_id, text, item.signature)
        elif item.kind == "message":
            text = item.text()
            out = [self._part_event("response.output_text.done", item, text=text, logprobs=[]),
                   self._part_event("response.content_part.done", item, part=output_text_part(text))]  # fmt: skip
            done = message_item(item.item_id, text, status)
        else:
            out, done = self._close_call(item, status)
        self._output.append(done)
        return out + [self._item_event("response.output_item.done", item, item=done)]

    def _close_call(self, item: _Item, status: str) -> tuple[list[bytes], dict[str, Any]]:
        assert item.spec is not None  # opened
        done = call_item(item.item_id, item.spec, item.call_id, item.text(), status)
        if item.spec.kind == "custom":
            value = custom_input(item.text())
            if item.live and not value.startswith(item.live):
                # Broken wrapper JSON (a `length` cut inside the string): keep to what was streamed.
                value = wrapped_input_prefix(item.text()) or item.live
            done["input"] = value
            rest = value[len(item.live) :]
            out = [self._item_event("response.custom_tool_call_input.delta", item, delta=rest)] if rest else []
            return out + [self._item_event("response.custom_tool_call_input.done", item, input=value)], done
        arguments = function_arguments(item.text())
        done["arguments"] = arguments
        out = []
        if item.sent == 0:  # nothing streamed: only whitespace came, sent as `{}`
            out.append(self._item_event("response.function_call_arguments.delta", item, delta=arguments))
        done_event = self._item_event(
            "response.function_call_arguments.done", item, arguments=arguments, name=item.spec.name
        )
        return out + [done_event], done

    # -- framing ---------------------------------------------------------------------------

    def _event(self, kind: str, /, **fields: Any) -> bytes:
        """One frame; every event, keepalive included, takes the next sequence number."""
        payload = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return encode(kind, orjson.dumps(payload))

    def _item_event(self, kind: str, source: _Item, /, **fields: Any) -> bytes:
        # Positional-only: output_item events carry a field named `item`.
        if kind.startswith("response.output_item."):
            return self._event(kind, output_index=source.output_index, **fields)
        return self._event(kind, item_id=source.item_id, output_index=source.output_index, **fields)

    def _summary_event(self, kind: str, source: _Item, /, **fields: Any) -> bytes:
        # A reasoning item has a single summary part.
        return self._event(kind, item_id=source.item_id, output_index=source.output_index, summary_index=0, **fields)

    def _part_event(self, kind: str, source: _Item, /, **fields: Any) -> bytes:
        # Every item here has a single content part.
        return self._event(kind, item_id=source.item_id, output_index=source.output_index, content_index=0, **fields)
