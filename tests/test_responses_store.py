"""The stored-Responses store behind `previous_response_id`: expiry, eviction, size bounds."""

from __future__ import annotations

import asyncio

from gateway.responses_store import ResponseStore, input_items


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def item(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def test_string_and_list_inputs_become_items() -> None:
    assert input_items("hi") == [item("hi")]
    assert input_items([item("a"), "junk", 3]) == [item("a")]
    assert input_items(None) == []


def test_entries_expire_after_their_ttl() -> None:
    store = ResponseStore(ttl_s=10)
    run(store.put("resp_1", [item("a")], now=100.0))
    assert run(store.get("resp_1", now=109.0)) == [item("a")]
    assert run(store.get("resp_1", now=110.0)) is None and len(store) == 0


def test_least_recently_used_goes_first_when_full() -> None:
    store = ResponseStore(max_entries=2)
    for name in ("a", "b"):
        run(store.put(f"resp_{name}", [item(name)], now=0.0))
    run(store.get("resp_a", now=1.0))  # a is now the most recently used
    run(store.put("resp_c", [item("c")], now=2.0))
    assert run(store.get("resp_b", now=3.0)) is None
    assert run(store.get("resp_a", now=3.0)) == [item("a")] and run(store.get("resp_c", now=3.0)) == [item("c")]


def test_byte_bound_evicts_and_an_oversized_conversation_is_not_kept() -> None:
    store = ResponseStore(max_bytes=400)
    run(store.put("resp_a", [item("x" * 150)], now=0.0))
    run(store.put("resp_b", [item("y" * 150)], now=0.0))
    assert run(store.get("resp_a", now=1.0)) is None and run(store.get("resp_b", now=1.0)) is not None
    run(store.put("resp_big", [item("z" * 1000)], now=1.0))
    assert run(store.get("resp_big", now=1.0)) is None and run(store.get("resp_b", now=1.0)) is not None


def test_returned_items_are_copies() -> None:
    store = ResponseStore()
    run(store.put("resp_a", [item("a")], now=0.0))
    got = run(store.get("resp_a", now=0.0))
    got[0]["role"] = "assistant"
    assert run(store.get("resp_a", now=0.0)) == [item("a")]


def test_the_response_object_is_kept_beside_the_conversation_and_deletion_forgets_both() -> None:
    store = ResponseStore()
    run(store.put("resp_a", [item("a")], now=0.0, response={"id": "resp_a", "object": "response"}))
    assert run(store.response("resp_a", now=1.0)) == {"id": "resp_a", "object": "response"}
    assert run(store.delete("resp_a")) is True and run(store.delete("resp_a")) is False
    assert run(store.get("resp_a", now=1.0)) is None and run(store.response("resp_a", now=1.0)) is None
