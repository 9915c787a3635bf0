"""Local token counts: a real offline tokenizer, everything in the request counted, fast, never raising."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from models import tokens
from models.tokens import (
    DOCUMENT_TOKENS,
    IMAGE_TOKENS,
    MESSAGE_TOKENS,
    TOOL_TOKENS,
    count_anthropic_tokens,
    count_text_tokens,
)


@pytest.fixture
def fresh_counter(monkeypatch: pytest.MonkeyPatch):
    """Forget the loaded tokenizer for one test (restored afterwards)."""
    monkeypatch.setattr(tokens, "_encode", None)


def test_the_real_tokenizer_loads_offline() -> None:
    assert tokens._counter() is not tokens._estimate
    # cl100k_base reference counts.
    assert count_text_tokens("hello world") == 2
    assert count_text_tokens("tiktoken is great!") == 6
    assert count_text_tokens("") == 0


def test_special_token_text_is_counted_as_plain_text() -> None:
    assert count_text_tokens("<|endoftext|>") > 1


def test_falls_back_to_four_characters_per_token(fresh_counter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_vocabulary_file", lambda: None)
    assert count_text_tokens("x" * 10) == 3
    assert count_anthropic_tokens({"messages": [{"role": "user", "content": "abcdefgh"}]}) == MESSAGE_TOKENS + 2


def test_concurrent_first_use_loads_once(fresh_counter, monkeypatch: pytest.MonkeyPatch) -> None:
    loads = []
    real_load = tokens._load

    def counting_load():
        loads.append(1)
        time.sleep(0.05)
        return real_load()

    monkeypatch.setattr(tokens, "_load", counting_load)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(count_text_tokens, ["hello world"] * 16))
    assert results == [2] * 16
    assert len(loads) == 1


def _expected(*texts: str, fixed: int = 0) -> int:
    return fixed + count_text_tokens("\n".join(t for t in texts if t))


def test_golden_count_covers_system_tools_and_every_block() -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "tools": [
            {"name": "Read", "description": "Read a file", "input_schema": {"type": "object", "properties": {"p": {"type": "string"}}}},
            {"type": "web_search_20250305", "name": "web_search"},
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Read it"}, {"type": "image", "source": {}}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Plan the read.", "signature": "s"},
                    {"type": "redacted_thinking", "data": "opaque-not-counted"},
                    {"type": "tool_use", "id": "t", "name": "Read", "input": {"p": "/a.py"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "print(1)"}]},
                    {"type": "document", "title": "notes", "source": {"type": "text", "data": "plain notes"}},
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}},
                ],
            },
        ],
    }
    fixed = 4 * MESSAGE_TOKENS + 2 * TOOL_TOKENS + IMAGE_TOKENS + DOCUMENT_TOKENS
    assert count_anthropic_tokens(body) == _expected(
        "You are Claude Code.",
        "Read", "Read a file", '{"type":"object","properties":{"p":{"type":"string"}}}',
        "web_search", "",
        "Read it",
        "Plan the read.", "Read", '{"p":"/a.py"}',
        "print(1)", "notes", "plain notes",
        fixed=fixed,
    )  # fmt: skip


def test_each_part_of_the_request_adds_tokens() -> None:
    base = {"messages": [{"role": "user", "content": "hi"}]}
    with_system = {**base, "system": "You are a careful assistant." * 10}
    schema = {"type": "object", "properties": {f"field_{i}": {"type": "string"} for i in range(20)}}
    with_tools = {**with_system, "tools": [{"name": "T", "input_schema": schema}]}
    counts = [count_anthropic_tokens(b) for b in (base, with_system, with_tools)]
    assert counts[0] < counts[1] < counts[2]
    assert counts[2] - counts[1] > 60  # the schema itself is counted, not just the name


@pytest.mark.parametrize(
    "body",
    [
        None,
        "text",
        {},
        {"messages": None, "system": 5, "tools": "x"},
        {"messages": ["x", {"role": "user"}, {"role": "user", "content": 3}, {"content": [None, 1, {"type": None}]}]},
        {"messages": [{"role": "user", "content": "lone surrogate \ud800 here"}]},
        {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "input": {1, 2}}]}]},
        {"messages": [{"role": "user", "content": [{"type": "document", "source": "bad"}]}]},
    ],
)
def test_never_raises(body) -> None:
    assert count_anthropic_tokens(body) >= 0


def test_a_100k_token_body_counts_in_well_under_a_second() -> None:
    code = "def handler(request):\n    return {'status': 200, 'body': request.json()}\n\n"
    turns = []
    for i in range(200):
        turns.append({"role": "user", "content": [{"type": "text", "text": f"Step {i}: " + code * 20}]})
        turns.append({"role": "assistant", "content": [
            {"type": "tool_use", "id": f"t{i}", "name": "Edit", "input": {"path": f"/src/{i}.py", "text": code * 5}}]})  # fmt: skip
    body = {"system": "You are Claude Code. " * 200, "messages": turns}
    count_text_tokens("warm up")
    start = time.perf_counter()
    total = count_anthropic_tokens(body)
    elapsed = time.perf_counter() - start
    assert 80_000 < total < 200_000
    assert elapsed < 1.0, f"{total} tokens took {elapsed:.3f}s"
