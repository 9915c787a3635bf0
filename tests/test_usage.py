"""Output produced so far by a stream, for answers cut off before their usage report."""

from __future__ import annotations

from gateway.call import Call
from models.providers import ApiStyle
from models.usage import delta_chars


def test_anthropic_deltas_count_text_thinking_and_tool_json() -> None:
    assert delta_chars(ApiStyle.ANTHROPIC, {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "héllo"}}) == 5
    assert delta_chars(ApiStyle.ANTHROPIC, {"type": "content_block_delta",
                                            "delta": {"type": "thinking_delta", "thinking": "hmm"}}) == 3
    assert delta_chars(ApiStyle.ANTHROPIC, {"type": "content_block_delta",
                                            "delta": {"type": "input_json_delta", "partial_json": '{"a":'}}) == 5
    assert delta_chars(ApiStyle.ANTHROPIC, {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}) == 0
    assert delta_chars(ApiStyle.ANTHROPIC, ["not", "a", "dict"]) == 0


def test_openai_deltas_count_content_reasoning_and_arguments() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "abc", "reasoning_content": "de",
                                                "tool_calls": [{"index": 0, "function": {"arguments": '{"x"'}}]}}]}
    assert delta_chars(ApiStyle.OPENAI, chunk) == 9
    assert delta_chars(ApiStyle.OPENAI, {"choices": [{"delta": {"content": None}}]}) == 0
    assert delta_chars(ApiStyle.OPENAI, {"choices": "garbage"}) == 0


def test_cut_stream_usage_is_estimated_only_without_a_report() -> None:
    call = Call("r", ApiStyle.OPENAI, "chat", {})
    call.streamed_chars = 9
    call.estimate_cut_usage()
    assert call.output_tokens == 3 and call.usage_estimated
    reported = Call("r", ApiStyle.OPENAI, "chat", {})
    reported.streamed_chars, reported.output_tokens = 400, 7
    reported.estimate_cut_usage()
    assert reported.output_tokens == 7 and not reported.usage_estimated
