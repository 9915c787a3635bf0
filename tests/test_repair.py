"""The stream repair layer's bound on what it holds back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.call import Call
from gateway.chain.repair import MAX_EVENT_BYTES, OVERSIZED, StreamGuard, _Aborted
from gateway.config import parse
from models.providers import ApiStyle


def test_an_event_that_never_ends_is_cut_at_the_cap() -> None:
    config = parse("version: v0.4.0\nllm_providers:\n  - model: openai/gpt-x\n    access_key: k\n", {})
    call = Call("r", ApiStyle.OPENAI, "chat", {})
    call.provider = config.providers[0]
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        guard = StreamGuard(call, send, ping_interval=60)
        await guard.send({"type": "http.response.start", "status": 200,
                          "headers": [(b"content-type", b"text/event-stream")]})  # fmt: skip
        piece = b"data: " + b"x" * (1024 * 1024)  # no blank line: the event never ends
        with pytest.raises(_Aborted):
            for _ in range(MAX_EVENT_BYTES // len(piece) + 2):
                await guard.send({"type": "http.response.body", "body": piece, "more_body": True})
        guard.close()

    asyncio.run(run())
    last = sent[-1]
    assert last["more_body"] is False and OVERSIZED.encode() in last["body"]
    assert sum(len(m.get("body", b"")) for m in sent[1:-1]) == 0  # nothing of the endless event went out
