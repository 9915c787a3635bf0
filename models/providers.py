"""The provider catalog: one entry per provider prefix, pure data.

Everything that differs between providers (where they live, which wire API they speak, how they
authenticate, which headers they need) is looked up here, so no other module needs an
`if provider == ...` branch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import urlsplit, urlunsplit


class ApiStyle(str, Enum):
    """The wire protocol an upstream speaks (and a client uses)."""

    OPENAI = "openai"  # Chat Completions
    ANTHROPIC = "anthropic"  # Messages


class AuthStyle(str, Enum):
    BEARER = "bearer"  # Authorization: Bearer <key>
    X_API_KEY = "x-api-key"  # x-api-key: <key> plus anthropic-version
    API_KEY = "api-key"  # Azure OpenAI: api-key: <key>
    NONE = "none"


ANTHROPIC_VERSION = "2023-06-01"

# Kimi Code only serves recognised coding agents (403 access_terminated_error otherwise).
KIMI_CODE_HOST = "api.kimi.com"
KIMI_CODE_USER_AGENT = "KimiCLI/1.3"


@dataclass(frozen=True)
class Quirks:
    """How one provider deviates from the plain wire protocol (one entry per provider)."""

    # Largest max_tokens the provider accepts, by model id prefix; requests are clamped to it.
    max_output_tokens: tuple[tuple[str, int], ...] = ()
    # The upstream rejects image parts ("unknown variant `image_url`"): send a placeholder.
    text_only: bool = False
    # How Anthropic `thinking` / `output_config.effort` map to the upstream's controls:
    # "deepseek" | "kimi" | "openai" | None (drop them).
    reasoning: str | None = None
    # Assistant tool-call turns must carry their `reasoning_content` back (DeepSeek, Kimi).
    replay_reasoning: bool = False
    # tool_choice must be auto/none while thinking is on (Kimi).
    thinking_needs_auto_tool_choice: bool = False
    # Request fields the upstream rejects.
    drop_fields: tuple[str, ...] = ()

    def max_tokens_for(self, model_id: str) -> int | None:
        for prefix, limit in self.max_output_tokens:
            if model_id.startswith(prefix):
                return limit
        return None


NO_QUIRKS = Quirks()


@dataclass(frozen=True)
class ProviderSpec:
    prefix: str
    api: ApiStyle
    auth: AuthStyle
    # Default base URL including the version prefix, e.g. https://api.openai.com/v1.
    base_url: str | None
    # True when the provider has no usable public default and base_url must be configured.
    needs_base_url: bool = False
    # Extra headers this provider needs unless the config sets them.
    default_headers: dict[str, str] = field(default_factory=dict)
    # Path template for chat calls when it is not "<prefix>/chat/completions" (Azure).
    chat_path: str | None = None
    query: str = ""
    description: str = ""
    quirks: Quirks = NO_QUIRKS


def _openai(prefix: str, base_url: str | None, **kw: object) -> ProviderSpec:
    return ProviderSpec(prefix, ApiStyle.OPENAI, AuthStyle.BEARER, base_url, **kw)  # type: ignore[arg-type]


CATALOG: dict[str, ProviderSpec] = {
    spec.prefix: spec
    for spec in (
        _openai("openai", "https://api.openai.com/v1", description="OpenAI"),
        ProviderSpec(
            "anthropic",
            ApiStyle.ANTHROPIC,
            AuthStyle.X_API_KEY,
            "https://api.anthropic.com/v1",
            description="Anthropic",
        ),
        _openai("deepseek", "https://api.deepseek.com/v1", description="DeepSeek"),
        _openai("moonshotai", "https://api.moonshot.ai/v1", description="Moonshot / Kimi"),
        _openai("groq", "https://api.groq.com/openai/v1", description="Groq"),
        _openai("mistral", "https://api.mistral.ai/v1", description="Mistral"),
        _openai(
            "gemini",
            "https://generativelanguage.googleapis.com/v1beta/openai",
            description="Google Gemini (OpenAI-compatible surface)",
        ),
        _openai("xai", "https://api.x.ai/v1", description="xAI"),
        _openai("together_ai", "https://api.together.xyz/v1", description="Together AI"),
        _openai("openrouter", "https://openrouter.ai/api/v1", description="OpenRouter"),
        _openai("zhipu", "https://open.bigmodel.cn/api/paas/v4", description="Zhipu GLM"),
        _openai(
            "qwen",
            "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
            description="Qwen (DashScope compatible mode)",
        ),
        ProviderSpec(
            "ollama",
            ApiStyle.OPENAI,
            AuthStyle.NONE,
            "http://127.0.0.1:11434/v1",
            description="Ollama (local)",
        ),
        ProviderSpec(
            "azure_openai",
            ApiStyle.OPENAI,
            AuthStyle.API_KEY,
            None,
            needs_base_url=True,
            chat_path="/openai/deployments/{model}/chat/completions",
            query="api-version=2025-01-01-preview",
            description="Azure OpenAI (base_url is the resource endpoint)",
        ),
        # For tests and demos: `junction mock-upstream` answers in either wire style.
        ProviderSpec(
            "mock",
            ApiStyle.OPENAI,
            AuthStyle.BEARER,
            "http://127.0.0.1:9100/v1",
            description="Junction's local mock upstream (testing and demos only)",
        ),
    )
}

# Plano accepts `google/...` for Gemini.
CATALOG["google"] = CATALOG["gemini"]

ENDPOINT_SUFFIX = {
    ApiStyle.OPENAI: "/chat/completions",
    ApiStyle.ANTHROPIC: "/messages",
}


def custom_spec(prefix: str, interface: ApiStyle, base_url: str) -> ProviderSpec:
    """A provider with a prefix the catalog does not know, described by the config alone."""
    auth = AuthStyle.X_API_KEY if interface is ApiStyle.ANTHROPIC else AuthStyle.BEARER
    return ProviderSpec(prefix, interface, auth, base_url, description="custom")


def default_headers_for(base_url: str) -> dict[str, str]:
    """Headers an upstream needs by where it lives, when the config does not set them."""
    if urlsplit(base_url).hostname == KIMI_CODE_HOST:
        return {"User-Agent": KIMI_CODE_USER_AGENT}
    return {}


def join_url(
    spec: ProviderSpec,
    base_url: str | None,
    endpoint: str = "",
    model_id: str = "",
) -> str:
    """The full upstream URL for `endpoint` ("" for the chat call, or e.g. "/count_tokens").

    A `base_url` with a path replaces the provider's default version prefix
    (`https://api.kimi.com/coding/v1` -> `/coding/v1/chat/completions`); a bare host keeps the
    default prefix. Trailing slashes and an already-present suffix never give `//` or `/v1/v1`.
    """
    default = urlsplit(spec.base_url) if spec.base_url else None
    given = urlsplit(base_url) if base_url else default
    if given is None:
        raise ValueError(f"provider '{spec.prefix}' needs a base_url")
    suffix = ENDPOINT_SUFFIX[spec.api]
    path = given.path.rstrip("/")
    if not path and default is not None and given is not default:
        path = default.path.rstrip("/")
    if spec.chat_path:
        path = path + spec.chat_path.format(model=model_id)
    else:
        if path.endswith(suffix):  # a base_url that already names the endpoint
            path = path[: -len(suffix)].rstrip("/")
        if spec.api is ApiStyle.ANTHROPIC:
            # Anthropic base URLs are written as the SDK takes them (ANTHROPIC_BASE_URL, no
            # /v1): the SDK appends /v1/messages, and so do we, once.
            path = path.removesuffix("/v1") + "/v1"
        path = path + suffix
    path += endpoint
    query = "&".join(q for q in (given.query, spec.query) if q)
    return urlunsplit((given.scheme, given.netloc, path, query, ""))
