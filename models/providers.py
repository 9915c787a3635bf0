"""The provider catalog: one entry per provider prefix, pure data.

Everything that differs between providers (where they live, which wire API they speak, how they
authenticate, which headers they need) is looked up here, so no other module needs an
`if provider == ...` branch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from urllib.parse import urlsplit, urlunsplit


class ApiStyle(str, Enum):
    """The wire protocol an upstream speaks (and a client uses)."""

    OPENAI = "openai"  # Chat Completions
    ANTHROPIC = "anthropic"  # Messages
    RESPONSES = "responses"  # OpenAI Responses (an upstream that serves it natively; clients are OPENAI)


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
    """How one provider deviates from the plain wire protocol (one entry per provider).

    Fields named `*_models` / `always_thinking` / `fixed_sampling` hold model-id prefixes, for
    providers whose catalog mixes models that behave differently ("" matches every model).
    """

    # Largest max_tokens the provider accepts, by model id prefix; requests are clamped to it.
    max_output_tokens: tuple[tuple[str, int], ...] = ()
    # The upstream rejects image parts ("unknown variant `image_url`"): send a placeholder.
    text_only: bool = False
    # The same, for some models only.
    text_only_models: tuple[str, ...] = ()
    # How Anthropic `thinking` / `output_config.effort` map to the upstream's controls:
    # "deepseek" | "kimi" | "openai" | None (drop them).
    reasoning: str | None = None
    # With reasoning="openai": the models that take `reasoning_effort` (empty: every model).
    reasoning_models: tuple[str, ...] = ()
    # Models whose thinking cannot be switched: no switch is sent and thinking counts as on.
    always_thinking: tuple[str, ...] = ()
    # Assistant tool-call turns must carry their `reasoning_content` back (DeepSeek, Kimi).
    replay_reasoning: bool = False
    # tool_choice must be auto/none while thinking is on (Kimi).
    thinking_needs_auto_tool_choice: bool = False
    # Models whose temperature / top_p are fixed server-side and other values are rejected.
    fixed_sampling: tuple[str, ...] = ()
    # The request field for the output limit ("max_completion_tokens" for OpenAI proper).
    max_tokens_field: str = "max_tokens"
    # The upstream accepts `stream_options: {include_usage: true}`.
    stream_usage: bool = True
    # Most `stop` strings the upstream accepts (None: no known limit).
    max_stop_sequences: int | None = None
    # The upstream takes `prompt_cache_key` (set from the client's session id).
    prompt_cache_key: bool = False
    # Request fields the upstream rejects.
    drop_fields: tuple[str, ...] = ()

    def max_tokens_for(self, model_id: str) -> int | None:
        for prefix, limit in self.max_output_tokens:
            if model_id.startswith(prefix):
                return limit
        return None

    def is_text_only(self, model_id: str) -> bool:
        return self.text_only or model_id.startswith(self.text_only_models)

    def thinks_always(self, model_id: str) -> bool:
        return model_id.startswith(self.always_thinking)

    def has_fixed_sampling(self, model_id: str) -> bool:
        return model_id.startswith(self.fixed_sampling)

    def takes_reasoning_effort(self, model_id: str) -> bool:
        return not self.reasoning_models or model_id.startswith(self.reasoning_models)


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
    # Serves the Responses API (`/responses`) besides Chat Completions: Responses clients are relayed
    # to it natively rather than translated, when it is reached at its own host (`speaks_responses`).
    native_responses: bool = False


# OpenAI proper: o-series and gpt-5 are reasoning models (fixed sampling, `reasoning_effort`);
# `max_tokens` is deprecated in favour of `max_completion_tokens`; `stop` takes at most 4 strings;
# `prompt_cache_key` routes requests of one session to the same cache.
_OPENAI_REASONING = ("o1", "o3", "o4", "gpt-5")
OPENAI_QUIRKS = Quirks(
    max_output_tokens=(
        ("gpt-4o", 16384),
        ("gpt-4-turbo", 4096),
        ("gpt-4.1", 32768),
        ("gpt-4", 8192),
        ("gpt-3.5", 4096),
        ("o1-mini", 65536),
        ("o1-preview", 32768),
        ("o1", 100000),
        ("o3", 100000),
        ("o4", 100000),
        ("gpt-5-chat", 16384),
        ("gpt-5", 128000),
    ),
    reasoning="openai",
    reasoning_models=_OPENAI_REASONING,
    fixed_sampling=_OPENAI_REASONING,
    max_tokens_field="max_completion_tokens",
    max_stop_sequences=4,
    prompt_cache_key=True,
)

# DeepSeek: no image input; thinking via `thinking` + `reasoning_effort` (high|max), on by
# default on v4 and always on for deepseek-reasoner; tool-call turns must replay their reasoning.
DEEPSEEK_QUIRKS = Quirks(
    max_output_tokens=(("deepseek-chat", 8192), ("deepseek-reasoner", 65536), ("deepseek-v4", 393216)),
    text_only=True,
    reasoning="deepseek",
    always_thinking=("deepseek-reasoner",),
    replay_reasoning=True,
    max_stop_sequences=16,
)

# Moonshot platform: K2.5/K2.6 take `thinking: {type}`; K2-thinking, K2.7 Code and K3 always think
# and reject a switch; K2.5+ have fixed sampling; kimi-k2-* (pre-2.5) models read no images.
MOONSHOT_QUIRKS = Quirks(
    text_only_models=("kimi-k2-",),
    reasoning="kimi",
    always_thinking=("kimi-k2-thinking", "kimi-k2.7-code", "kimi-k3", "kimi-for-coding"),
    replay_reasoning=True,
    thinking_needs_auto_tool_choice=True,
    fixed_sampling=("kimi-k2.5", "kimi-k2.6", "kimi-k2.7", "kimi-k3", "kimi-for-coding"),
    prompt_cache_key=True,
)

# Kimi Code (api.kimi.com/coding): thinking is server-driven and cannot be switched (a `thinking`
# field is rejected by some of its models), sampling is fixed, and `stream_options` is not
# accepted (usage still arrives in the finish chunk).
KIMI_CODE_QUIRKS = replace(
    MOONSHOT_QUIRKS,
    text_only_models=(),
    always_thinking=("",),
    fixed_sampling=("",),
    stream_usage=False,
)

# Quirks by upstream host, for OpenAI-style providers configured under another prefix.
_HOST_QUIRKS: dict[str, Quirks] = {
    KIMI_CODE_HOST: KIMI_CODE_QUIRKS,
    "api.moonshot.ai": MOONSHOT_QUIRKS,
    "api.moonshot.cn": MOONSHOT_QUIRKS,
    "api.deepseek.com": DEEPSEEK_QUIRKS,
    "api.openai.com": OPENAI_QUIRKS,
}


def _openai(prefix: str, base_url: str | None, **kw: object) -> ProviderSpec:
    return ProviderSpec(prefix, ApiStyle.OPENAI, AuthStyle.BEARER, base_url, **kw)  # type: ignore[arg-type]


CATALOG: dict[str, ProviderSpec] = {
    spec.prefix: spec
    for spec in (
        _openai("openai", "https://api.openai.com/v1", description="OpenAI", quirks=OPENAI_QUIRKS,
                native_responses=True),
        ProviderSpec(
            "anthropic",
            ApiStyle.ANTHROPIC,
            AuthStyle.X_API_KEY,
            "https://api.anthropic.com/v1",
            description="Anthropic",
        ),
        _openai("deepseek", "https://api.deepseek.com/v1", description="DeepSeek", quirks=DEEPSEEK_QUIRKS),
        _openai("moonshotai", "https://api.moonshot.ai/v1", description="Moonshot / Kimi", quirks=MOONSHOT_QUIRKS),
        _openai("groq", "https://api.groq.com/openai/v1", description="Groq"),
        _openai("mistral", "https://api.mistral.ai/v1", description="Mistral"),
        _openai(
            "gemini",
            "https://generativelanguage.googleapis.com/v1beta/openai",
            description="Google Gemini (OpenAI-compatible surface)",
        ),
        _openai("xai", "https://api.x.ai/v1", description="xAI", native_responses=True),
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
    ApiStyle.RESPONSES: "/responses",
}


def custom_spec(prefix: str, interface: ApiStyle, base_url: str) -> ProviderSpec:
    """A provider with a prefix the catalog does not know, described by the config alone."""
    auth = AuthStyle.X_API_KEY if interface is ApiStyle.ANTHROPIC else AuthStyle.BEARER
    return ProviderSpec(prefix, interface, auth, base_url, description="custom")


def speaks_responses(spec: ProviderSpec, base_url: str | None) -> bool:
    """Whether Responses clients are relayed to this catalog provider natively: only at its own host
    (`openai/` pointed at a DeepSeek or local base URL speaks Chat Completions there). The config
    marks any other OpenAI-style upstream with `provider_interface: responses`."""
    if not spec.native_responses or spec.api is not ApiStyle.OPENAI:
        return False
    own = urlsplit(spec.base_url or "").hostname
    return base_url is None or urlsplit(base_url).hostname == own


def default_headers_for(base_url: str) -> dict[str, str]:
    """Headers an upstream needs by where it lives, when the config does not set them."""
    if urlsplit(base_url).hostname == KIMI_CODE_HOST:
        return {"User-Agent": KIMI_CODE_USER_AGENT}
    return {}


def quirks_for(spec: ProviderSpec, base_url: str | None, model_id: str) -> Quirks:
    """The quirks in force for `model_id` on `spec` at `base_url`.

    The upstream host decides first (Kimi Code differs from the Moonshot platform, and a known
    provider's host reached through another prefix, e.g. `openai/` with a DeepSeek base URL, keeps
    its quirks); otherwise the catalog entry's. Anthropic-style upstreams need none. Per-model
    differences are resolved later through the Quirks methods, so `model_id` is not needed yet.
    """
    del model_id
    if spec.api is not ApiStyle.OPENAI:
        return spec.quirks
    host = urlsplit(base_url or spec.base_url or "").hostname or ""
    return _HOST_QUIRKS.get(host, spec.quirks)


def join_url(
    spec: ProviderSpec,
    base_url: str | None,
    endpoint: str = "",
    model_id: str = "",
    api: ApiStyle | None = None,
) -> str:
    """The full upstream URL for `endpoint` ("" for the chat call, or e.g. "/count_tokens"), in the
    provider's own wire API or in `api` (RESPONSES: the native `/responses` endpoint).

    A `base_url` with a path replaces the provider's default version prefix
    (`https://api.kimi.com/coding/v1` -> `/coding/v1/chat/completions`); a bare host keeps the
    default prefix. Trailing slashes and an already-present suffix never give `//` or `/v1/v1`.
    """
    default = urlsplit(spec.base_url) if spec.base_url else None
    given = urlsplit(base_url) if base_url else default
    if given is None:
        raise ValueError(f"provider '{spec.prefix}' needs a base_url")
    api = api or spec.api
    suffix = ENDPOINT_SUFFIX[api]
    path = given.path.rstrip("/")
    if not path and default is not None and given is not default:
        path = default.path.rstrip("/")
    if spec.chat_path and api is spec.api:
        path = path + spec.chat_path.format(model=model_id)
    else:
        for named in dict.fromkeys((suffix, ENDPOINT_SUFFIX[spec.api])):
            if path.endswith(named):  # a base_url that already names the endpoint
                path = path[: -len(named)].rstrip("/")
        if spec.api is ApiStyle.ANTHROPIC:
            # Anthropic base URLs are written as the SDK takes them (ANTHROPIC_BASE_URL, no
            # /v1): the SDK appends /v1/messages, and so do we, once.
            path = path.removesuffix("/v1") + "/v1"
        path = path + suffix
    path += endpoint
    query = "&".join(q for q in (given.query, spec.query) if q)
    return urlunsplit((given.scheme, given.netloc, path, query, ""))
