"""Usage as upstreams report it (cache reads and writes included), and output produced so far by a
stream, for answers cut off before their usage report."""

from __future__ import annotations

from gateway.call import Call
from models.providers import ApiStyle
from models.usage import Usage, delta_chars, usage_of


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


def test_usage_with_prompt_cache_figures_in_each_providers_spelling() -> None:
    anthropic = {"type": "message_start", "message": {"usage": {"input_tokens": 5, "cache_read_input_tokens": 100,
                                                                "cache_creation_input_tokens": 20, "output_tokens": 1}}}
    assert usage_of(ApiStyle.ANTHROPIC, anthropic) == Usage(125, 1, 100, 20)  # input counts the cached part
    assert usage_of(ApiStyle.ANTHROPIC, {"type": "message_delta", "usage": {"output_tokens": 9}}) == Usage(None, 9)
    openai = {"usage": {"prompt_tokens": 50, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 32}}}
    assert usage_of(ApiStyle.OPENAI, openai) == Usage(50, 4, 32, None)
    deepseek = {"usage": {"prompt_tokens": 50, "completion_tokens": 4, "prompt_cache_hit_tokens": 40}}
    assert usage_of(ApiStyle.OPENAI, deepseek).cache_read == 40
    kimi = {"choices": [{"delta": {}, "usage": {"prompt_tokens": 7, "completion_tokens": 2, "cached_tokens": 3}}]}
    assert usage_of(ApiStyle.OPENAI, kimi) == Usage(7, 2, 3, None)


def test_a_call_keeps_the_latest_figure_of_each_kind() -> None:
    call = Call("r", ApiStyle.ANTHROPIC, "chat", {})
    call.add_usage(Usage(125, 1, 100, 20))
    call.add_usage(Usage(None, 9))
    assert (call.input_tokens, call.output_tokens, call.cache_read_tokens, call.cache_write_tokens) == (125, 9, 100, 20)
