"""Provider catalog and URL joining."""

from __future__ import annotations

import pytest

from models.providers import CATALOG, ApiStyle, custom_spec, join_url

openai = CATALOG["openai"]
anthropic = CATALOG["anthropic"]


@pytest.mark.parametrize(
    ("spec", "base", "expected"),
    [
        (openai, None, "https://api.openai.com/v1/chat/completions"),
        (openai, "https://api.openai.com/v1/", "https://api.openai.com/v1/chat/completions"),
        (openai, "https://api.openai.com/v1//", "https://api.openai.com/v1/chat/completions"),
        (CATALOG["moonshotai"], "https://api.kimi.com/coding/v1", "https://api.kimi.com/coding/v1/chat/completions"),
        (CATALOG["moonshotai"], "https://api.kimi.com/coding/v1/", "https://api.kimi.com/coding/v1/chat/completions"),
        (CATALOG["zhipu"], "https://api.z.ai/api/coding/paas/v4", "https://api.z.ai/api/coding/paas/v4/chat/completions"),
        (CATALOG["ollama"], "http://localhost:11434", "http://localhost:11434/v1/chat/completions"),
        (openai, "https://proxy.test/v1/chat/completions", "https://proxy.test/v1/chat/completions"),
        (CATALOG["groq"], None, "https://api.groq.com/openai/v1/chat/completions"),
        (CATALOG["gemini"], None, "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"),
        (anthropic, None, "https://api.anthropic.com/v1/messages"),
        (anthropic, "https://api.anthropic.com", "https://api.anthropic.com/v1/messages"),
        (anthropic, "https://api.anthropic.com/", "https://api.anthropic.com/v1/messages"),
        (anthropic, "https://api.anthropic.com/v1/", "https://api.anthropic.com/v1/messages"),
        (custom_spec("kimi", ApiStyle.ANTHROPIC, "https://api.kimi.com/coding"), "https://api.kimi.com/coding",
         "https://api.kimi.com/coding/v1/messages"),
        (custom_spec("ds", ApiStyle.ANTHROPIC, "x"), "https://api.deepseek.com/anthropic/v1/messages",
         "https://api.deepseek.com/anthropic/v1/messages"),
    ],
)
def test_join_url(spec, base, expected) -> None:
    url = join_url(spec, base)
    assert url == expected
    assert "//" not in url.split("://", 1)[1]
    assert "/v1/v1" not in url


def test_count_tokens_endpoint_appended_after_suffix() -> None:
    assert join_url(anthropic, None, "/count_tokens") == "https://api.anthropic.com/v1/messages/count_tokens"


def test_azure_deployment_path_and_api_version() -> None:
    url = join_url(CATALOG["azure_openai"], "https://res.openai.azure.com/", "", "gpt-4o")
    assert url == "https://res.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2025-01-01-preview"


def test_every_builtin_prefix_from_the_issue_is_present() -> None:
    for prefix in ("openai", "anthropic", "deepseek", "moonshotai", "groq", "mistral", "gemini", "xai",
                   "together_ai", "openrouter", "zhipu", "qwen", "ollama", "azure_openai", "mock"):
        assert prefix in CATALOG


def test_responses_endpoint_urls() -> None:
    assert join_url(openai, None, api=ApiStyle.RESPONSES) == "https://api.openai.com/v1/responses"
    # a base URL naming either endpoint still gives one suffix
    assert join_url(openai, "https://proxy.test/v1/chat/completions", api=ApiStyle.RESPONSES) == "https://proxy.test/v1/responses"
    assert join_url(openai, "https://proxy.test/v1/responses/", api=ApiStyle.RESPONSES) == "https://proxy.test/v1/responses"
    assert join_url(CATALOG["xai"], "https://api.x.ai", api=ApiStyle.RESPONSES) == "https://api.x.ai/v1/responses"


def test_only_a_catalog_providers_own_host_serves_responses_natively() -> None:
    from models.providers import speaks_responses

    assert speaks_responses(openai, None) and speaks_responses(openai, "https://api.openai.com/v1")
    assert speaks_responses(CATALOG["xai"], None)
    assert not speaks_responses(openai, "https://api.deepseek.com/v1")  # openai/ prefix, another server
    assert not speaks_responses(CATALOG["deepseek"], None) and not speaks_responses(anthropic, None)
