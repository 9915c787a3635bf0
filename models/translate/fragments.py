"""Pieces of a Chat Completions stream that become whole blocks or items: text, reasoning and tool
calls assembled from fragments. Shared by the stream translators to Messages (`stream.py`) and to
Responses (`responses_stream.py`), so fragment handling has one owner.

`Assembly` sorts each chunk's delta into pieces in arrival order. Chat tool-call fragments may interleave between indexes, reuse an index for the next call, carry
the id only on the first fragment, or (some servers) send every call on index 0 without ids.
`CallAssembler` decides which call each fragment continues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Protocol, TypeVar

from models.translate.response import arguments_text, parse_arguments, reasoning_of


@dataclass(eq=False, slots=True)
class Pending:
    """One future block or item: text, reasoning, or a tool call being assembled."""

    kind: str
    parts: list[str] = field(default_factory=list)  # text, reasoning or argument fragments
    sent: int = 0  # parts already emitted
    closed: bool = False
    upstream_id: str | None = None  # a tool call's Chat id
    name: str | None = None  # a tool call's upstream function name
    late: bool = False  # argument data arrived after the block or item had to be closed
    signature: str | None = None  # reasoning: the Anthropic signature of its thinking block (`reasoning_signature`)
    _checked: int = -1  # len(parts) at the last completeness check
    _complete: bool = False

    def text(self) -> str:
        return "".join(self.parts)

    def has_content(self) -> bool:
        return any(p.strip() for p in self.parts)

    def args_complete(self) -> bool:
        """True once the arguments parse as a JSON object: the call cannot continue."""
        if self._checked != len(self.parts):
            self._checked = len(self.parts)
            tail = next((p.rstrip() for p in reversed(self.parts) if p.strip()), "")
            # Cheap pre-check so long argument streams are not re-parsed on every fragment.
            self._complete = tail.endswith("}") and parse_arguments(self.text()) is not None
        return self._complete


P = TypeVar("P", bound=Pending)


class CallAssembler(Generic[P]):
    """Assigns Chat tool-call fragments to calls; `new_call()` creates (and places) a new one."""

    def __init__(self, new_call: Callable[[], P], anomalies: list[str], noun: str) -> None:
        self.new_call = new_call
        self.anomalies = anomalies  # the translator's list of upstream oddities, for the logs
        self.noun = noun  # "block" or "item", for those messages
        self.by_index: dict[int, P] = {}
        self.by_id: dict[str, P] = {}
        self.last: P | None = None

    def add(self, fragment: dict[str, Any]) -> P:
        """Add one `tool_calls[]` fragment; returns the call it belongs to."""
        index = fragment.get("index") if isinstance(fragment.get("index"), int) else None
        call_id = fragment.get("id") if isinstance(fragment.get("id"), str) and fragment.get("id") else None
        function = fragment.get("function") if isinstance(fragment.get("function"), dict) else {}
        name = function.get("name") if isinstance(function.get("name"), str) and function.get("name") else None
        arguments = arguments_text(function.get("arguments"))

        call = self._find(index, call_id, name)
        if call is None:
            call = self.new_call()
        if index is not None:
            self.by_index[index] = call
        if call_id and call.upstream_id is None:
            call.upstream_id = call_id
            self.by_id[call_id] = call
        if name and call.name is None:
            call.name = name
        if arguments:
            if call.closed:
                if arguments.strip():
                    call.late = True
                    self.anomalies.append(f"arguments for tool '{call.name}' arrived after its {self.noun} closed")
            else:
                call.parts.append(arguments)
        self.last = call
        return call

    def _find(self, index: int | None, call_id: str | None, name: str | None) -> P | None:
        """The call a fragment continues, or None when it starts a new one."""
        if call_id is not None and call_id in self.by_id:
            return self.by_id[call_id]
        call = self.by_index.get(index) if index is not None else None
        if call is not None:
            new_id = call_id is not None and call.upstream_id is not None and call_id != call.upstream_id
            new_name = name is not None and call.name is not None and name != call.name
            # A header for a call whose arguments are already a whole object starts another call
            # (servers that send every call on index 0 without ids).
            repeated = name is not None and call.args_complete()
            return None if new_id or new_name or repeated else call
        if call_id is None and name is None:
            # No header: it continues the latest call (also when a server moves a call's tail to
            # a fresh index, as deepseek-v4-flash has been seen to do).
            return self.last
        return None


class Emitter(Protocol[P]):  # type: ignore[misc]
    """What a translator does with a piece, in its client's protocol (frames as bytes)."""

    def started(self, piece: P) -> bool: ...
    def open(self, piece: P) -> list[bytes]: ...
    def flush(self, piece: P) -> list[bytes]: ...
    def close(self, piece: P) -> list[bytes]: ...


class Assembly(Generic[P]):
    """The pieces of one Chat answer in arrival order: consecutive reasoning or text deltas extend the
    open piece of their kind, tool-call fragments go to their call. `make(kind)` builds a piece;
    `kinds` names the reasoning, text and call pieces the way the translator calls them."""

    def __init__(self, make: Callable[[str], P], anomalies: list[str], noun: str,
                 kinds: tuple[str, str, str] = ("reasoning", "text", "call")) -> None:  # fmt: skip
        self.make = make
        self.reasoning, self.text, self.call = kinds
        self.items: list[P] = []
        self.cursor = 0  # first piece not yet closed (or skipped)
        self.anomalies = anomalies
        self.calls: CallAssembler[P] = CallAssembler(self._new_call, anomalies, noun)

    def read(self, chunk: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Take one chunk's delta into the pieces; returns the usage it carried (cumulative: the
        latest wins) and its first choice (for `finish_reason`), each None when absent."""
        usage = chunk["usage"] if isinstance(chunk.get("usage"), dict) else None
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        if choice is None:
            return usage, None  # e.g. the include_usage chunk (choices: [])
        if isinstance(choice.get("usage"), dict):
            usage = choice["usage"]  # Kimi puts stream usage inside the choice
        if isinstance(choice.get("delta"), dict):
            self.delta(choice["delta"])
        return usage, choice

    def delta(self, delta: dict[str, Any]) -> None:
        reasoning = reasoning_of(delta)
        if reasoning:
            self.append(self.reasoning, reasoning)
        signature = delta.get("reasoning_signature")
        last = self.items[-1] if self.items else None
        if isinstance(signature, str) and signature and last is not None and last.kind == self.reasoning:
            last.signature = signature  # it ends that thinking block: more reasoning is another one
        for key in ("content", "refusal"):  # a refusal reads as text to both clients
            value = delta.get(key)
            if isinstance(value, str) and value:
                self.append(self.text, value)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for fragment in calls:
                if isinstance(fragment, dict):
                    self.calls.add(fragment)
        elif isinstance(delta.get("function_call"), dict):  # legacy single-function streaming
            self.calls.add({"index": 0, "function": delta["function_call"]})

    def append(self, kind: str, text: str) -> None:
        last = self.items[-1] if self.items else None
        if last is None or last.kind != kind or last.closed or last.signature:
            last = self.make(kind)
            self.items.append(last)
        last.parts.append(text)

    def _new_call(self) -> P:
        call = self.make(self.call)
        self.items.append(call)
        return call

    def startable(self, piece: P, final: bool) -> bool:
        if piece.kind != self.call:
            return piece.has_content()  # never open a piece for empty or whitespace-only text
        # A call opens once named and either its id or its first arguments are known.
        return piece.name is not None and (piece.upstream_id is not None or bool(piece.parts) or final)

    def pump(self, final: bool, emit: Emitter[P]) -> list[bytes]:
        """Emit what can be emitted, strictly in order and one piece open at a time. A piece closes
        only when it is certainly finished: text and reasoning as soon as anything follows them, a
        call once its arguments form a whole JSON object, everything at the end (`final`)."""
        out: list[bytes] = []
        while self.cursor < len(self.items):
            piece = self.items[self.cursor]
            has_next = self.cursor + 1 < len(self.items)
            if not emit.started(piece) and not self.startable(piece, final):
                # Whitespace-only text or reasoning that something followed, or a nameless call at
                # the end, can never become a useful piece: skip it.
                if final or (has_next and piece.kind != self.call):
                    if piece.kind == self.call:
                        self.anomalies.append("a tool call without a name was dropped")
                    piece.closed = True
                    self.cursor += 1
                    continue
                break
            if not emit.started(piece):
                out += emit.open(piece)
            out += emit.flush(piece)
            if final or (has_next and (piece.kind != self.call or piece.args_complete())):
                out += emit.close(piece)
                self.cursor += 1
                continue
            break
        return out
