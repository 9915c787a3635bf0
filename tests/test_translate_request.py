"""Request translation: golden bodies in, exact bodies out, plus properties over generated turns."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.providers import (
    CATALOG,
    DEEPSEEK_QUIRKS,
    KIMI_CODE_QUIRKS,
    MOONSHOT_QUIRKS,
    NO_QUIRKS,
    OPENAI_QUIRKS,
    Quirks,
    quirks_for,
)
from models.translate.ids import to_client_id
from models.translate.request import (
    EMPTY_TOOL_RESULT,
    IMAGE_MOVED,
    IMAGE_PLACEHOLDER,
    REASONING_PLACEHOLDER,
    Target,
    anthropic_to_openai,
    openai_to_anthropic,
    strip_gateway_thinking,
)
from models.translate.thinking import sign

DEEPSEEK = Target("deepseek-v4-pro", "deepseek", DEEPSEEK_QUIRKS)
KIMI = Target("kimi-k2.6", "moonshotai", MOONSHOT_QUIRKS)
KIMI_CODE = Target("kimi-for-coding", "moonshotai", KIMI_CODE_QUIRKS)
GPT5 = Target("gpt-5", "openai", OPENAI_QUIRKS)
PLAIN = Target("some-model", "mock", NO_QUIRKS)
CLAUDE = Target("claude-sonnet-4-5", "anthropic", NO_QUIRKS)

BILLING = "x-anthropic-billing-header: cc_version=2.1.200.abc; cc_entrypoint=cli; cch=1f2e3;"
KIMI_ID = "functions.Read:0"  # Kimi's own tool-call id, not valid on Anthropic
USER_ID = json.dumps({"device_id": "d" * 64, "account_uuid": "acc-1", "session_id": "sess-42"})
PNG = "iVBORw0KGgo="


def claude_code_request() -> dict:
    """A Claude-Code-shaped request exercising most mapping rules at once."""
    gateway_thought = "The user wants both files."
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": True,
        "temperature": 1,
        "top_k": 40,
        "system": [
            {"type": "text", "text": BILLING},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                    {"type": "text", "text": "Read a.py and b.png", "cache_control": {"type": "ephemeral"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": gateway_thought, "signature": sign(gateway_thought)},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "Reading both."},
                    {"type": "tool_use", "id": to_client_id(KIMI_ID), "name": "Read", "input": {"file_path": "/a.py"}},
                    {"type": "tool_use", "id": "toolu_b", "name": "Read", "input": {"file_path": "/b.png"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "also, hurry"},
                    {"type": "tool_result", "tool_use_id": to_client_id(KIMI_ID), "content": "print('é')"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_b",
                        "content": [
                            {"type": "text", "text": "b.png:"},
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                        ],
                    },
                ],
            },
            {"role": "system", "content": "Plan mode is on."},
            {"role": "assistant", "content": "Done."},
            {"role": "user", "content": "thanks"},
        ],
        "tools": [
            {
                "name": "Read",
                "description": "Read a file",
                "input_schema": {
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "properties": {"file_path": {"type": "string"}},
                    "required": ["file_path"],
                    "additionalProperties": False,
                },
                "cache_control": {"type": "ephemeral"},
            },
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        ],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "output_config": {"effort": "xhigh"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": USER_ID},
        "service_tier": "auto",
        "container": "c1",
        "inference_geo": "us",
        "mcp_servers": [],
        "cache_control": {"type": "ephemeral"},
    }


READ_TOOL = {
    "type": "function",
    "function": {
        "name": "Read",
        "description": "Read a file",
        "parameters": {
            "type": "object",
            "properties": {"file_path": {"type": "string"}},
            "required": ["file_path"],
            "additionalProperties": False,
        },
    },
}
HASHED_USER = "u_" + hashlib.sha256(USER_ID.encode()).hexdigest()[:32]
GATEWAY_THOUGHT = "The user wants both files."
# The translated turns of `claude_code_request` that every reasoning upstream gets alike.
CLAUDE_CODE_HEAD = [
    {"role": "system", "content": "You are Claude Code.\n\nBe brief."},
    {"role": "user", "content": "<system-reminder>ctx</system-reminder>\n\nRead a.py and b.png"},
    {
        "role": "assistant",
        "content": "Reading both.",
        "tool_calls": [
            {"id": KIMI_ID, "type": "function", "function": {"name": "Read", "arguments": '{"file_path": "/a.py"}'}},
            {"id": "toolu_b", "type": "function", "function": {"name": "Read", "arguments": '{"file_path": "/b.png"}'}},
        ],
        "reasoning_content": GATEWAY_THOUGHT,
    },
    {"role": "tool", "tool_call_id": KIMI_ID, "content": "print('é')"},
]
CLAUDE_CODE_TAIL = [
    {"role": "system", "content": "Plan mode is on."},
    {"role": "assistant", "content": "Done."},
    {"role": "user", "content": "thanks"},
]


def test_golden_claude_code_to_deepseek() -> None:
    assert anthropic_to_openai(claude_code_request(), DEEPSEEK) == {
        "model": "deepseek-v4-pro",
        "messages": [
            *CLAUDE_CODE_HEAD,
            {"role": "tool", "tool_call_id": "toolu_b", "content": "b.png:\n\n" + IMAGE_PLACEHOLDER},
            {"role": "user", "content": "also, hurry"},
            *CLAUDE_CODE_TAIL,
        ],
        "max_tokens": 32000,
        "temperature": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [READ_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "thinking": {"type": "enabled"},
        "reasoning_effort": "max",
        "user": HASHED_USER,
    }


def test_golden_claude_code_to_kimi_code() -> None:
    assert anthropic_to_openai(claude_code_request(), KIMI_CODE) == {
        "model": "kimi-for-coding",
        "messages": [
            *CLAUDE_CODE_HEAD,
            {"role": "tool", "tool_call_id": "toolu_b", "content": "b.png:\n\n" + IMAGE_MOVED},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "text", "text": "also, hurry"},
                ],
            },
            *CLAUDE_CODE_TAIL,
        ],
        "max_tokens": 32000,
        "stream": True,
        "tools": [READ_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "user": HASHED_USER,
        "prompt_cache_key": "sess-42",
    }


def test_golden_claude_code_to_openai_reasoning_model() -> None:
    body = claude_code_request()
    body["stop_sequences"] = ["a", "b", "c", "d", "e"]
    out = anthropic_to_openai(body, GPT5)
    assert {k: v for k, v in out.items() if k != "messages"} == {
        "model": "gpt-5",
        "max_completion_tokens": 32000,
        "stop": ["a", "b", "c", "d"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [READ_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning_effort": "high",
        "user": HASHED_USER,
        "prompt_cache_key": "sess-42",
    }
    assistant = out["messages"][2]
    assert "reasoning_content" not in assistant  # OpenAI takes no reasoning back


def test_translation_does_not_mutate_the_input() -> None:
    body = claude_code_request()
    before = copy.deepcopy(body)
    for target in (DEEPSEEK, KIMI, KIMI_CODE, GPT5, PLAIN):
        anthropic_to_openai(body, target)
    assert body == before


# --- system ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        ("Be terse.", [{"role": "system", "content": "Be terse."}]),
        (BILLING, []),
        (BILLING + "\n\nBe terse.", [{"role": "system", "content": "Be terse."}]),
        ([{"type": "text", "text": BILLING}], []),
        ([{"type": "text", "text": BILLING}, {"type": "text", "text": "A"}], [{"role": "system", "content": "A"}]),
        ([{"type": "text", "text": "A"}, {"type": "text", "text": "B"}], [{"role": "system", "content": "A\n\nB"}]),
        (None, []),
    ],
)
def test_system_first_and_billing_line_dropped(system, expected) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    if system is not None:
        body["system"] = system
    assert anthropic_to_openai(body, PLAIN)["messages"] == expected + [{"role": "user", "content": "hi"}]


def test_mid_conversation_system_block_stays_in_place() -> None:
    body = {
        "max_tokens": 5,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "before"},
                    {"type": "mid_conv_system", "content": [{"type": "text", "text": "rule"}], "cache_control": {}},
                    {"type": "text", "text": "after"},
                ],
            }
        ],
    }
    assert anthropic_to_openai(body, PLAIN)["messages"] == [
        {"role": "user", "content": "before"},
        {"role": "system", "content": "rule"},
        {"role": "user", "content": "after"},
    ]


def test_system_message_never_splits_tool_calls_from_results() -> None:
    body = {
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "X", "input": {}}]},
            {"role": "system", "content": "note"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
        ],
    }
    roles = [m["role"] for m in anthropic_to_openai(body, PLAIN)["messages"]]
    assert roles == ["user", "assistant", "tool", "system"]


# --- user content ---------------------------------------------------------------------------


def _user(*blocks: dict) -> dict:
    return {"max_tokens": 5, "messages": [{"role": "user", "content": list(blocks)}]}


def _image(source: dict) -> dict:
    return {"type": "image", "source": source}


def test_images_become_data_urls_or_urls() -> None:
    body = _user(
        {"type": "text", "text": "see"},
        _image({"type": "base64", "media_type": "image/webp", "data": "AAA"}),
        _image({"type": "url", "url": "https://x.test/a.png"}),
    )
    assert anthropic_to_openai(body, PLAIN)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": "data:image/webp;base64,AAA"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
            ],
        }
    ]


def test_images_become_placeholders_for_text_only_upstreams() -> None:
    body = _user({"type": "text", "text": "see"}, _image({"type": "base64", "media_type": "image/png", "data": "A"}))
    assert anthropic_to_openai(body, DEEPSEEK)["messages"] == [
        {"role": "user", "content": "see\n\n" + IMAGE_PLACEHOLDER}
    ]
    # Per-model: Kimi K2 (pre-2.5) reads no images, K2.6 does.
    assert anthropic_to_openai(body, Target("kimi-k2-0905-preview", "moonshotai", MOONSHOT_QUIRKS))["messages"][0][
        "content"
    ].endswith(IMAGE_PLACEHOLDER)
    assert isinstance(anthropic_to_openai(body, KIMI)["messages"][0]["content"], list)


@pytest.mark.parametrize(
    ("document", "text"),
    [
        ({"source": {"type": "text", "media_type": "text/plain", "data": "plain body"}}, "plain body"),
        ({"source": {"type": "text", "data": "body"}, "title": "notes.txt"}, "notes.txt\n\nbody"),
        ({"source": {"type": "content", "content": [{"type": "text", "text": "c1"}, {"type": "text", "text": "c2"}]}},
         "c1\n\nc2"),
        ({"source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}, "title": "spec"},
         "[document 'spec' omitted: this model cannot read PDF files]"),
        ({"source": {"type": "url", "url": "https://x.test/a.pdf"}},
         "[document (https://x.test/a.pdf) omitted: this model cannot read PDF files]"),
    ],
)
def test_documents_degrade_to_text(document, text) -> None:
    body = _user({"type": "document", **document})
    assert anthropic_to_openai(body, PLAIN)["messages"] == [{"role": "user", "content": text}]


# --- tool results ---------------------------------------------------------------------------


def _turns(results: list[dict]) -> dict:
    calls = [b for b in results if b.get("type") == "tool_result"]
    return {
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": b["tool_use_id"], "name": "T", "input": {}} for b in calls],
            },
            {"role": "user", "content": results},
        ],
    }


def test_tool_results_come_first_and_never_interleave_with_text() -> None:
    body = _turns(
        [
            {"type": "text", "text": "first"},
            {"type": "tool_result", "tool_use_id": "a", "content": "A"},
            {"type": "text", "text": "between"},
            {"type": "tool_result", "tool_use_id": "b", "content": [{"type": "text", "text": "B"}]},
        ]
    )
    assert anthropic_to_openai(body, PLAIN)["messages"][2:] == [
        {"role": "tool", "tool_call_id": "a", "content": "A"},
        {"role": "tool", "tool_call_id": "b", "content": "B"},
        {"role": "user", "content": "first\n\nbetween"},
    ]


def test_tool_error_is_marked_and_empty_results_are_never_empty() -> None:
    body = _turns(
        [
            {"type": "tool_result", "tool_use_id": "a", "content": "boom", "is_error": True},
            {"type": "tool_result", "tool_use_id": "b", "content": ""},
            {"type": "tool_result", "tool_use_id": "c", "is_error": True},
        ]
    )
    assert [m["content"] for m in anthropic_to_openai(body, PLAIN)["messages"][2:]] == [
        "[tool error] boom",
        EMPTY_TOOL_RESULT,
        "[tool error] the tool failed",
    ]


def test_tool_result_images_move_to_a_user_message_after_the_results() -> None:
    body = _turns(
        [{"type": "tool_result", "tool_use_id": "a", "content": [_image({"type": "url", "url": "https://x.test/s.png"})]}]
    )
    assert anthropic_to_openai(body, PLAIN)["messages"][2:] == [
        {"role": "tool", "tool_call_id": "a", "content": IMAGE_MOVED},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/s.png"}}]},
    ]
    assert anthropic_to_openai(body, DEEPSEEK)["messages"][2:] == [
        {"role": "tool", "tool_call_id": "a", "content": IMAGE_PLACEHOLDER}
    ]


def test_tool_ids_are_mapped_back_to_the_upstream_ids() -> None:
    client_id = to_client_id(KIMI_ID)
    assert client_id != KIMI_ID
    body = _turns([{"type": "tool_result", "tool_use_id": client_id, "content": "x"}])
    messages = anthropic_to_openai(body, KIMI)["messages"]
    assert messages[1]["tool_calls"][0]["id"] == KIMI_ID
    assert messages[2]["tool_call_id"] == KIMI_ID


# --- assistant turns ------------------------------------------------------------------------


def _assistant(*blocks: dict, thinking: dict | None = None) -> dict:
    body = {
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": list(blocks)}],
    }
    if thinking:
        body["thinking"] = thinking
    return body


TOOL_USE = {"type": "tool_use", "id": "t1", "name": "Write", "input": {"text": "日本語 ✓"}}


def test_assistant_tool_only_turn_has_null_content_and_unescaped_arguments() -> None:
    message = anthropic_to_openai(_assistant(TOOL_USE), PLAIN)["messages"][1]
    assert message == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "Write", "arguments": '{"text": "日本語 ✓"}'}}],
    }


def test_assistant_text_blocks_are_joined_and_empty_turns_dropped() -> None:
    body = _assistant({"type": "text", "text": "a"}, TOOL_USE, {"type": "text", "text": "b"})
    assert anthropic_to_openai(body, PLAIN)["messages"][1]["content"] == "a\n\nb"
    only_thinking = _assistant({"type": "thinking", "thinking": "hm", "signature": "s"})
    assert anthropic_to_openai(only_thinking, DEEPSEEK)["messages"] == [{"role": "user", "content": "q"}]


@pytest.mark.parametrize(
    ("target", "blocks", "thinking", "expected"),
    [
        # Thinking is replayed to DeepSeek / Kimi, joined; redacted thinking is dropped.
        (DEEPSEEK, [{"type": "thinking", "thinking": "a", "signature": "x"}, {"type": "redacted_thinking", "data": "z"},
                    {"type": "thinking", "thinking": "b", "signature": "y"}, TOOL_USE], None, "a\n\nb"),
        (KIMI, [{"type": "thinking", "thinking": "a", "signature": "x"}, {"type": "text", "text": "t"}], None, "a"),
        # A tool-call turn without thinking text gets the non-empty placeholder.
        (DEEPSEEK, [TOOL_USE], None, REASONING_PLACEHOLDER),
        (KIMI_CODE, [{"type": "thinking", "thinking": "", "signature": "x"}, TOOL_USE], None, REASONING_PLACEHOLDER),
        # ... but a text-only turn without thinking gets nothing.
        (DEEPSEEK, [{"type": "text", "text": "t"}], None, None),
        # Thinking switched off by the client: nothing is replayed (unless the model always thinks).
        (DEEPSEEK, [{"type": "thinking", "thinking": "a", "signature": "x"}, TOOL_USE], {"type": "disabled"}, None),
        (KIMI_CODE, [TOOL_USE], {"type": "disabled"}, REASONING_PLACEHOLDER),
        # Upstreams that take no reasoning back.
        (GPT5, [{"type": "thinking", "thinking": "a", "signature": "x"}, TOOL_USE], None, None),
        (PLAIN, [{"type": "thinking", "thinking": "a", "signature": "x"}, TOOL_USE], None, None),
    ],
)
def test_reasoning_replay(target, blocks, thinking, expected) -> None:
    message = anthropic_to_openai(_assistant(*blocks, thinking=thinking), target)["messages"][1]
    assert message.get("reasoning_content") == expected
    assert message.get("reasoning_content") != ""


# --- tools ----------------------------------------------------------------------------------


def _with_tools(tools: list[dict], choice: dict | None = None, thinking: dict | None = None) -> dict:
    body = {"max_tokens": 5, "messages": [{"role": "user", "content": "q"}], "tools": tools}
    if choice is not None:
        body["tool_choice"] = choice
    if thinking is not None:
        body["thinking"] = thinking
    return body


CUSTOM = {"type": "custom", "name": "Bash", "input_schema": {"type": "object", "properties": {}}}
NO_TYPE = {"name": "Read", "description": "d", "input_schema": {"type": "object"}, "strict": True}


def test_custom_tools_become_functions_and_server_tools_are_dropped() -> None:
    tools = [NO_TYPE, CUSTOM, {"type": "bash_20250124", "name": "bash"}, {"type": "web_fetch_20250910", "name": "f"}]
    assert anthropic_to_openai(_with_tools(tools), PLAIN)["tools"] == [
        {"type": "function", "function": {"name": "Read", "description": "d", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "Bash", "parameters": {"type": "object", "properties": {}}}},
    ]


def test_only_server_tools_means_no_tool_fields() -> None:
    out = anthropic_to_openai(
        _with_tools([{"type": "web_search_20250305", "name": "web_search"}], {"type": "any", "disable_parallel_tool_use": True}),
        PLAIN,
    )
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & out.keys()


@pytest.mark.parametrize(
    ("choice", "target", "thinking", "expected"),
    [
        ({"type": "auto"}, PLAIN, None, "auto"),
        ({"type": "any"}, PLAIN, None, "required"),
        ({"type": "tool", "name": "Bash"}, PLAIN, None, {"type": "function", "function": {"name": "Bash"}}),
        ({"type": "none"}, PLAIN, None, "none"),
        ({"type": "tool", "name": "web_search"}, PLAIN, None, "auto"),  # names a dropped tool
        # Kimi rejects forced tool use while thinking (on by default there).
        ({"type": "any"}, KIMI, None, "auto"),
        ({"type": "tool", "name": "Bash"}, KIMI, {"type": "enabled", "budget_tokens": 2000}, "auto"),
        ({"type": "any"}, KIMI, {"type": "disabled"}, "required"),
        ({"type": "any"}, KIMI_CODE, {"type": "disabled"}, "auto"),  # always thinks
        ({"type": "none"}, KIMI, None, "none"),
        ({"type": "any"}, DEEPSEEK, {"type": "enabled", "budget_tokens": 2000}, "required"),
    ],
)
def test_tool_choice_mapping(choice, target, thinking, expected) -> None:
    out = anthropic_to_openai(_with_tools([CUSTOM], choice, thinking), target)
    assert out["tool_choice"] == expected
    assert "parallel_tool_calls" not in out


def test_schema_keyword_is_stripped_from_parameters() -> None:
    tool = {"name": "T", "input_schema": {"$schema": "x", "type": "object", "properties": {"a": {"type": "string"}}}}
    parameters = anthropic_to_openai(_with_tools([tool]), PLAIN)["tools"][0]["function"]["parameters"]
    assert parameters == {"type": "object", "properties": {"a": {"type": "string"}}}


# --- reasoning controls ---------------------------------------------------------------------


def _reasoning(target: Target, thinking: dict | None, effort: str | None) -> dict:
    body: dict = {"max_tokens": 5, "messages": [{"role": "user", "content": "q"}]}
    if thinking:
        body["thinking"] = thinking
    if effort:
        body["output_config"] = {"effort": effort}
    out = anthropic_to_openai(body, target)
    return {k: out[k] for k in ("thinking", "reasoning_effort") if k in out}


ENABLED = {"type": "enabled", "budget_tokens": 31999, "display": "omitted"}
ADAPTIVE = {"type": "adaptive"}
DISABLED = {"type": "disabled"}


@pytest.mark.parametrize(
    ("target", "thinking", "effort", "expected"),
    [
        (DEEPSEEK, ENABLED, None, {"thinking": {"type": "enabled"}}),
        (DEEPSEEK, ADAPTIVE, "low", {"thinking": {"type": "enabled"}, "reasoning_effort": "high"}),
        (DEEPSEEK, ADAPTIVE, "medium", {"thinking": {"type": "enabled"}, "reasoning_effort": "high"}),
        (DEEPSEEK, ADAPTIVE, "high", {"thinking": {"type": "enabled"}, "reasoning_effort": "high"}),
        (DEEPSEEK, ADAPTIVE, "xhigh", {"thinking": {"type": "enabled"}, "reasoning_effort": "max"}),
        (DEEPSEEK, ADAPTIVE, "max", {"thinking": {"type": "enabled"}, "reasoning_effort": "max"}),
        (DEEPSEEK, DISABLED, "max", {"thinking": {"type": "disabled"}}),
        (DEEPSEEK, None, "max", {"reasoning_effort": "max"}),  # absent: the upstream's default
        (DEEPSEEK, None, None, {}),
        (Target("deepseek-reasoner", "deepseek", DEEPSEEK_QUIRKS), DISABLED, "low", {"reasoning_effort": "high"}),
        (KIMI, ENABLED, "max", {"thinking": {"type": "enabled"}}),
        (KIMI, ADAPTIVE, None, {"thinking": {"type": "enabled"}}),
        (KIMI, DISABLED, None, {"thinking": {"type": "disabled"}}),
        (Target("kimi-k2.7-code", "moonshotai", MOONSHOT_QUIRKS), DISABLED, None, {}),
        (KIMI_CODE, ENABLED, "high", {}),
        (KIMI_CODE, DISABLED, None, {}),
        (GPT5, ENABLED, "low", {"reasoning_effort": "low"}),
        (GPT5, ADAPTIVE, "medium", {"reasoning_effort": "medium"}),
        (GPT5, ADAPTIVE, "max", {"reasoning_effort": "high"}),
        (GPT5, {"type": "enabled", "budget_tokens": 2048}, None, {"reasoning_effort": "low"}),
        (GPT5, {"type": "enabled", "budget_tokens": 8000}, None, {"reasoning_effort": "medium"}),
        (GPT5, ENABLED, None, {"reasoning_effort": "high"}),
        (GPT5, DISABLED, "high", {}),
        (GPT5, ADAPTIVE, None, {}),
        (Target("gpt-4.1", "openai", OPENAI_QUIRKS), ENABLED, "high", {}),  # not a reasoning model
        (PLAIN, ENABLED, "high", {}),
    ],
)
def test_reasoning_controls(target, thinking, effort, expected) -> None:
    assert _reasoning(target, thinking, effort) == expected


# --- scalar fields --------------------------------------------------------------------------


def _scalars(target: Target, **fields) -> dict:
    out = anthropic_to_openai({"messages": [{"role": "user", "content": "q"}], **fields}, target)
    return {k: v for k, v in out.items() if k not in ("model", "messages")}


def test_sampling_kept_top_k_dropped_fixed_sampling_dropped() -> None:
    fields = {"max_tokens": 10, "temperature": 0.2, "top_p": 0.9, "top_k": 5}
    assert _scalars(PLAIN, **fields) == {"max_tokens": 10, "temperature": 0.2, "top_p": 0.9}
    assert _scalars(KIMI, **fields) == {"max_tokens": 10}
    assert _scalars(GPT5, **fields) == {"max_completion_tokens": 10}
    assert _scalars(Target("gpt-4o", "openai", OPENAI_QUIRKS), **fields) == {
        "max_completion_tokens": 10, "temperature": 0.2, "top_p": 0.9}  # fmt: skip


@pytest.mark.parametrize(
    ("target", "asked", "sent"),
    [
        (Target("deepseek-chat", "deepseek", DEEPSEEK_QUIRKS), 32000, 8192),
        (Target("deepseek-reasoner", "deepseek", DEEPSEEK_QUIRKS), 32000, 32000),
        (Target("gpt-4o-mini", "openai", OPENAI_QUIRKS), 32000, 16384),
        (PLAIN, 32000, 32000),
    ],
)
def test_max_tokens_clamped_to_the_model_limit(target, asked, sent) -> None:
    out = _scalars(target, max_tokens=asked)
    assert out[target.quirks.max_tokens_field] == sent


def test_stop_sequences_become_stop() -> None:
    assert _scalars(PLAIN, max_tokens=5, stop_sequences=["\n\nHuman:", ""])["stop"] == ["\n\nHuman:"]
    assert "stop" not in _scalars(PLAIN, max_tokens=5, stop_sequences=[])


def test_stream_requests_usage_unless_the_upstream_rejects_it() -> None:
    assert _scalars(PLAIN, max_tokens=5, stream=True) == {
        "max_tokens": 5, "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    assert _scalars(KIMI_CODE, max_tokens=5, stream=True) == {"max_tokens": 5, "stream": True}
    assert _scalars(PLAIN, max_tokens=5, stream=False) == {"max_tokens": 5}


@pytest.mark.parametrize(
    ("user_id", "user", "cache_key"),
    [
        ("short-id", "short-id", "short-id"),
        ("user_abc_account_123_session_s-9", "user_abc_account_123_session_s-9", "s-9"),
        (USER_ID, HASHED_USER, "sess-42"),
    ],
)
def test_metadata_user_id_becomes_user_and_kimi_prompt_cache_key(user_id, user, cache_key) -> None:
    assert _scalars(KIMI, max_tokens=5, metadata={"user_id": user_id}) == {
        "max_tokens": 5, "user": user, "prompt_cache_key": cache_key}  # fmt: skip
    assert _scalars(DEEPSEEK, max_tokens=5, metadata={"user_id": user_id}) == {"max_tokens": 5, "user": user}


def test_anthropic_only_fields_are_dropped_and_drop_fields_applies() -> None:
    fields = {"max_tokens": 5, "context_management": {}, "container": "c", "service_tier": "auto",
              "inference_geo": "eu", "mcp_servers": [], "cache_control": {}, "metadata": {"user_id": "u"}}  # fmt: skip
    assert _scalars(PLAIN, **fields) == {"max_tokens": 5, "user": "u"}
    assert _scalars(Target("m", "x", Quirks(drop_fields=("user",))), **fields) == {"max_tokens": 5}


# --- provider quirks ------------------------------------------------------------------------


def test_quirks_for_picks_kimi_code_by_host_and_known_hosts_under_other_prefixes() -> None:
    moonshot = CATALOG["moonshotai"]
    assert quirks_for(moonshot, None, "kimi-k2.6") is MOONSHOT_QUIRKS
    assert quirks_for(moonshot, "https://api.moonshot.ai/v1", "kimi-k2.6") is MOONSHOT_QUIRKS
    assert quirks_for(moonshot, "https://api.kimi.com/coding/v1", "kimi-for-coding") is KIMI_CODE_QUIRKS
    assert quirks_for(CATALOG["openai"], "https://api.deepseek.com/v1", "deepseek-chat") is DEEPSEEK_QUIRKS
    assert quirks_for(CATALOG["deepseek"], None, "deepseek-chat") is DEEPSEEK_QUIRKS
    assert quirks_for(CATALOG["groq"], None, "llama") is NO_QUIRKS
    assert quirks_for(CATALOG["anthropic"], "https://api.kimi.com/coding", "k") is NO_QUIRKS


# --- OpenAI Chat -> Anthropic ---------------------------------------------------------------


def openai_request() -> dict:
    return {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "developer", "content": [{"type": "text", "text": "Prefer Python."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/", "detail": "auto"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                    {"type": "text", "text": "   "},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "unsigned reasoning is dropped",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "Read", "arguments": '{"file_path":"/a"}'}},
                    {"id": KIMI_ID, "type": "function", "function": {"name": "Read", "arguments": "{bad json"}},
                    {"id": "call_3", "type": "function", "function": {"name": "Now", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "A"},
            {"role": "tool", "tool_call_id": KIMI_ID, "content": [{"type": "text", "text": "B"}]},
            {"role": "tool", "tool_call_id": "call_3", "content": ""},
            {"role": "user", "content": "Summarise."},
        ],
        "max_completion_tokens": 1000,
        "stop": "END",
        "temperature": 1.5,
        "top_p": 0.5,
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [READ_TOOL, {"type": "function", "function": {"name": "Now"}},
                  {"type": "custom", "custom": {"name": "grammar_tool"}}],  # fmt: skip
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "reasoning_effort": "high",
        "user": "user-7",
        "n": 1,
        "logprobs": False,
        "seed": 3,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.1,
        "response_format": {"type": "json_object"},
        "store": False,
        "metadata": {"k": "v"},
    }


def test_golden_openai_to_anthropic() -> None:
    assert openai_to_anthropic(openai_request(), CLAUDE) == {
        "model": "claude-sonnet-4-5",
        "system": "You are helpful.\n\nPrefer Python.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "call_1", "name": "Read", "input": {"file_path": "/a"}},
                    {"type": "tool_use", "id": to_client_id(KIMI_ID), "name": "Read", "input": {"_raw": "{bad json"}},
                    {"type": "tool_use", "id": "call_3", "name": "Now", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "A"},
                    {"type": "tool_result", "tool_use_id": to_client_id(KIMI_ID), "content": [{"type": "text", "text": "B"}]},
                    {"type": "tool_result", "tool_use_id": "call_3"},
                    {"type": "text", "text": "Summarise."},
                ],
            },
        ],
        "max_tokens": 1000,
        "stop_sequences": ["END"],
        "temperature": 1,
        "stream": True,
        "tools": [
            {
                "name": "Read",
                "description": "Read a file",
                "input_schema": {
                    "type": "object",
                    "properties": {"file_path": {"type": "string"}},
                    "required": ["file_path"],
                    "additionalProperties": False,
                },
            },
            {"name": "Now", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "user-7"},
    }


def _chat(**fields) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "q"}], **fields}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"max_tokens": 8192}),
        ({"max_tokens": 100}, {"max_tokens": 100}),
        ({"reasoning_effort": "low"}, {"max_tokens": 8192, "thinking": {"type": "enabled", "budget_tokens": 2048}}),
        ({"reasoning_effort": "high", "max_tokens": 4000},
         {"max_tokens": 4000, "thinking": {"type": "enabled", "budget_tokens": 3999}}),
        ({"reasoning_effort": "medium", "max_tokens": 1000}, {"max_tokens": 1000}),  # no room for a budget
        ({"reasoning_effort": "minimal"}, {"max_tokens": 8192}),
        ({"reasoning_effort": "none", "temperature": 0.3}, {"max_tokens": 8192, "temperature": 0.3}),
        ({"reasoning_effort": "low", "temperature": 0.3, "top_p": 0.9},
         {"max_tokens": 8192, "thinking": {"type": "enabled", "budget_tokens": 2048}}),
        ({"top_p": 0.9}, {"max_tokens": 8192, "top_p": 0.9}),
        ({"stop": ["a", " ", "b"]}, {"max_tokens": 8192, "stop_sequences": ["a", "b"]}),
        ({"safety_identifier": "s1"}, {"max_tokens": 8192, "metadata": {"user_id": "s1"}}),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}},
         {"max_tokens": 8192, "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}),
        ({"tool_choice": "auto", "parallel_tool_calls": False}, {"max_tokens": 8192}),  # no tools
        ({"stream": False, "n": 2, "logprobs": True}, {"max_tokens": 8192}),
    ],
)
def test_openai_scalar_fields(fields, expected) -> None:
    out = openai_to_anthropic(_chat(**fields), CLAUDE)
    assert {k: v for k, v in out.items() if k not in ("model", "messages")} == expected


def test_default_max_tokens_can_be_chosen() -> None:
    assert openai_to_anthropic(_chat(), CLAUDE, default_max_tokens=1234)["max_tokens"] == 1234


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", False, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "Now"}}, None, {"type": "tool", "name": "Now"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, True, None),
    ],
)
def test_openai_tool_choice_mapping(choice, parallel, expected) -> None:
    fields: dict = {"tools": [{"type": "function", "function": {"name": "Now"}}]}
    if choice is not None:
        fields["tool_choice"] = choice
    if parallel is not None:
        fields["parallel_tool_calls"] = parallel
    assert openai_to_anthropic(_chat(**fields), CLAUDE).get("tool_choice") == expected


def test_effort_never_enables_thinking_with_a_forced_tool_or_an_unthought_tool_loop() -> None:
    tools = [{"type": "function", "function": {"name": "Now"}}]
    forced = _chat(tools=tools, tool_choice="required", reasoning_effort="high")
    assert "thinking" not in openai_to_anthropic(forced, CLAUDE)
    loop = {
        "model": "m",
        "reasoning_effort": "high",
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "Now", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "12:00"},
        ],
    }
    assert "thinking" not in openai_to_anthropic(loop, CLAUDE)
    signed = copy.deepcopy(loop)
    signed["messages"][1]["thinking_blocks"] = [{"type": "thinking", "thinking": "t", "signature": "EqQBsig"}]
    out = openai_to_anthropic(signed, CLAUDE)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 8191}
    assert out["messages"][1]["content"][0] == {"type": "thinking", "thinking": "t", "signature": "EqQBsig"}


@pytest.mark.parametrize(
    ("extra", "blocks"),
    [
        ({"reasoning_content": "r", "reasoning_signature": "EqQBsig"}, [{"type": "thinking", "thinking": "r", "signature": "EqQBsig"}]),
        ({"reasoning_content": "r", "reasoning_signature": sign("r")}, []),
        ({"reasoning_content": "r"}, []),
        ({"thinking_blocks": [{"type": "thinking", "thinking": "r", "signature": sign("r")},
                              {"type": "redacted_thinking", "data": "opaque"},
                              {"type": "thinking", "thinking": "s", "signature": "Genuine"}]},
         [{"type": "redacted_thinking", "data": "opaque"}, {"type": "thinking", "thinking": "s", "signature": "Genuine"}]),
        ({"reasoning_details": [{"type": "reasoning.text", "text": "r", "signature": "Sig"},
                                {"type": "reasoning.encrypted", "data": "enc"},
                                {"type": "reasoning.text", "text": "x", "signature": None}]},
         [{"type": "thinking", "thinking": "r", "signature": "Sig"}, {"type": "redacted_thinking", "data": "enc"}]),
    ],
)
def test_reasoning_becomes_thinking_only_with_a_genuine_signature(extra, blocks) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", **extra}]}
    assert openai_to_anthropic(body, CLAUDE)["messages"][1]["content"] == blocks + [{"type": "text", "text": "a"}]


def test_openai_parts_files_refusals_and_empty_turns() -> None:
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBER"}},
                    {"type": "file", "file": {"filename": "n.txt", "file_data": "data:text/plain;base64,aGk="}},
                    {"type": "file", "file": {"file_id": "file-1"}},
                    {"type": "image_url", "image_url": {"url": "data:image/svg+xml;utf8,<svg/>"}},
                    {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}},
                ],
            },
            {"role": "assistant", "content": None, "refusal": "I can't."},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": " "},
        ],
    }
    assert openai_to_anthropic(body, CLAUDE)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"},
                 "title": "a.pdf"},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hi"}, "title": "n.txt"},
                {"type": "text", "text": "[file file-1 omitted: unsupported file]"},
                {"type": "text", "text": "[image omitted: unsupported image format]"},
                {"type": "text", "text": "[audio omitted: this model cannot hear audio]"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "I can't."}]},
    ]  # fmt: skip


# --- Anthropic -> Anthropic -----------------------------------------------------------------


def _history(*assistant_blocks: dict, thinking: dict | None = None) -> dict:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": list(assistant_blocks)},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
        ],
    }
    if thinking:
        body["thinking"] = thinking
    return body


GENUINE = {"type": "thinking", "thinking": "real", "signature": "EqQBCkgIARABGAIiQ"}
MINE = {"type": "thinking", "thinking": "mine", "signature": sign("mine")}
UNSIGNED = {"type": "thinking", "thinking": "other proxy", "signature": ""}
ANTHROPIC_TOOL = {"type": "tool_use", "id": "t1", "name": "X", "input": {}}


def test_strip_returns_the_same_object_when_nothing_changes() -> None:
    body = _history(GENUINE, {"type": "redacted_thinking", "data": "z"}, ANTHROPIC_TOOL, thinking=ENABLED)
    assert strip_gateway_thinking(body) is body


def test_strip_removes_gateway_and_unsigned_thinking_and_keeps_the_rest_untouched() -> None:
    body = _history(GENUINE, MINE, UNSIGNED, ANTHROPIC_TOOL)
    out = strip_gateway_thinking(body)
    assert out["messages"][1]["content"] == [GENUINE, ANTHROPIC_TOOL]
    assert out["messages"][1]["content"][0] is body["messages"][1]["content"][0]
    assert out["messages"][0] is body["messages"][0] and out["messages"][2] is body["messages"][2]
    assert body["messages"][1]["content"] == [GENUINE, MINE, UNSIGNED, ANTHROPIC_TOOL]  # input untouched
    assert "thinking" not in out


def test_strip_drops_emptied_turns_and_switches_thinking_off_for_an_unthought_tool_loop() -> None:
    body = _history(MINE, ANTHROPIC_TOOL, thinking=ENABLED)
    out = strip_gateway_thinking(body)
    assert out["messages"][1]["content"] == [ANTHROPIC_TOOL]
    assert out["thinking"] == {"type": "disabled"}
    assert body["thinking"] == ENABLED
    only_mine = {"model": "m", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": [MINE]},
                                            {"role": "user", "content": "again"}]}  # fmt: skip
    assert [m["role"] for m in strip_gateway_thinking(only_mine)["messages"]] == ["user", "user"]


# --- properties -----------------------------------------------------------------------------

_ids = st.text(min_size=1, max_size=24)


@given(_ids)
def test_tool_ids_round_trip_through_both_directions(upstream_id: str) -> None:
    client_id = to_client_id(upstream_id)
    body = _turns([{"type": "tool_result", "tool_use_id": client_id, "content": "x"}])
    messages = anthropic_to_openai(body, KIMI)["messages"]
    assert messages[1]["tool_calls"][0]["id"] == upstream_id
    assert messages[2]["tool_call_id"] == upstream_id
    back = openai_to_anthropic({"model": "m", "messages": messages}, CLAUDE)["messages"]
    assert back[1]["content"][0]["id"] == back[2]["content"][0]["tool_use_id"]


_filler = st.sampled_from(
    [
        {"type": "text", "text": "note"},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/i.png"}},
        {"type": "mid_conv_system", "content": [{"type": "text", "text": "sys"}]},
        {"type": "document", "source": {"type": "text", "data": "doc"}},
    ]
)


@st.composite
def _conversations(draw: st.DrawFn) -> dict:
    """Valid Anthropic histories: each tool-call turn answered by the next user turn, with
    results in any order mixed with other blocks, and stray system turns."""
    messages: list[dict] = [{"role": "user", "content": "start"}]
    for turn in range(draw(st.integers(1, 4))):
        ids = [f"t{turn}_{i}" for i in range(draw(st.integers(0, 3)))]
        blocks = [{"type": "text", "text": "thinking aloud"}] if draw(st.booleans()) else []
        blocks += [{"type": "tool_use", "id": i, "name": "T", "input": {"n": n}} for n, i in enumerate(ids)]
        messages.append({"role": "assistant", "content": blocks or "plain answer"})
        if draw(st.booleans()):
            messages.append({"role": "system", "content": "stray"})
        results = [{"type": "tool_result", "tool_use_id": i, "content": "r"} for i in ids]
        others = draw(st.lists(_filler, max_size=3))
        mixed = draw(st.permutations(results + others))
        messages.append({"role": "user", "content": mixed or "next"})
    return {"max_tokens": 10, "messages": messages}


def _check_tool_pairing(messages: list[dict]) -> None:
    """Every tool message sits in an unbroken run right after the assistant that called it,
    and every call is answered."""
    pending: list[str] = []
    for message in messages:
        if message["role"] == "tool":
            assert message["tool_call_id"] in pending, "tool message not answering the preceding assistant"
            pending.remove(message["tool_call_id"])
            continue
        assert not pending, f"calls left unanswered before a {message['role']} message"
        pending = [c["id"] for c in message.get("tool_calls", ())]
    assert not pending


@settings(max_examples=200, deadline=None)
@given(_conversations(), st.sampled_from([PLAIN, DEEPSEEK, KIMI, KIMI_CODE, GPT5]))
def test_tool_results_always_follow_their_calls(body: dict, target: Target) -> None:
    messages = anthropic_to_openai(body, target)["messages"]
    _check_tool_pairing(messages)
    roles = "".join(m["role"][0] for m in messages)  # never tool, user, tool
    assert "tut" not in roles
    for message in messages:
        assert message.get("content") != "" and message.get("reasoning_content") != ""
        if message["role"] == "assistant" and target.quirks.replay_reasoning and message.get("tool_calls"):
            assert message["reasoning_content"]


@settings(max_examples=200, deadline=None)
@given(_conversations())
def test_openai_round_trip_keeps_tool_turns_paired(body: dict) -> None:
    chat = anthropic_to_openai(body, PLAIN)
    messages = openai_to_anthropic(chat, CLAUDE)["messages"]
    for first, second in zip(messages, messages[1:]):
        assert first["role"] != second["role"]  # consecutive same-role turns are merged
    for i, message in enumerate(messages):
        calls = [b["id"] for b in message["content"] if b["type"] == "tool_use"]
        if calls:
            following = messages[i + 1]["content"]
            results = [b["tool_use_id"] for b in following if b["type"] == "tool_result"]
            assert sorted(results) == sorted(calls)  # one user turn answers every call
            kinds = [b["type"] for b in following]
            assert kinds[: len(results)] == ["tool_result"] * len(results)  # results first
