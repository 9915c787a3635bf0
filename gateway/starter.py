"""`junction init`: a commented starter config for the providers named on the command line (pure text;
the command validates it before writing it, and never overwrites a file)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """One provider's entries in a starter config."""

    what: str  # shown in the comment above its entries
    models: tuple[str, ...]  # provider/model-id, the first one the provider's main model
    key_variable: str | None
    extra: str = ""  # more YAML lines under the first model (base_url, headers)
    fast: str | None = None  # the model for Claude Code's background work, when the provider has a cheap one


PRESETS: dict[str, Preset] = {
    "kimi": Preset("Kimi Code (Moonshot's coding plan)", ("moonshotai/kimi-for-coding",), "MOONSHOTAI_API_KEY",
                   '    base_url: https://api.kimi.com/coding/v1\n    headers:\n      User-Agent: "KimiCLI/1.3"\n'),
    "moonshot": Preset("Moonshot's platform API", ("moonshotai/kimi-k2-0905-preview",), "MOONSHOTAI_API_KEY"),
    "deepseek": Preset("DeepSeek", ("deepseek/deepseek-v4-pro", "deepseek/deepseek-v4-flash"), "DEEPSEEK_API_KEY",
                       fast="deepseek/deepseek-v4-flash"),
    "openai": Preset("OpenAI", ("openai/gpt-5", "openai/gpt-5-mini"), "OPENAI_API_KEY", fast="openai/gpt-5-mini"),
    "anthropic": Preset("Anthropic", ("anthropic/claude-sonnet-4-5", "anthropic/claude-haiku-4-5"), "ANTHROPIC_API_KEY",
                        fast="anthropic/claude-haiku-4-5"),
    "openrouter": Preset("OpenRouter", ("openrouter/qwen/qwen3-coder",), "OPENROUTER_API_KEY"),
    "ollama": Preset("Ollama on this machine (no key)", ("ollama/qwen3-coder",), None),
    "mock": Preset("Junction's mock upstream (`junction mock-upstream --port 9100`), for trying things out",
                   ("mock/demo",), None),
}  # fmt: skip

SEED_ROUTES = """
# Preference routing: each request goes to the route whose description fits its latest genuine user turn
# (see `junction route "<a prompt>" --explain`); `examples:` sharpen a route.
routing_preferences:
  - name: complex_reasoning
    description: deep analysis, mathematical problem solving, and logical reasoning
    models: [{reasoning}]
  - name: code_review
    description: reviewing and analyzing existing code for bugs and improvements
    models: [{review}]
  - name: creative_writing
    description: creative content generation, storytelling, and writing assistance
    models: [{writing}]
"""


class UnknownProvider(ValueError):
    pass


def starter_config(names: list[str]) -> str:
    """The config text for `names` (keys of PRESETS), in the order given."""
    unknown = [n for n in names if n not in PRESETS]
    if unknown or not names:
        raise UnknownProvider(f"unknown provider {', '.join(unknown) or '(none given)'}; known: {', '.join(PRESETS)}")
    presets = [PRESETS[n] for n in dict.fromkeys(names)]
    lines = ["# Junction (Plano config format). Check with `junction validate`, list with `junction models`.",
             "# Keys are read from the environment (or a .env file beside this config); never write them here.",
             "version: v0.4.0", "", "llm_providers:"]  # fmt: skip
    first = True
    for preset in presets:
        key = f"${preset.key_variable}" if preset.key_variable else None
        lines.append(f"  # {preset.what}" + (f": export {preset.key_variable}=..." if key else ""))
        for i, model in enumerate(preset.models):
            lines.append(f"  - model: {model}")
            if key:
                lines.append(f"    access_key: {key}")
            if i == 0 and preset.extra:
                lines.extend(preset.extra.rstrip("\n").split("\n"))
            if first:
                lines.append("    default: true            # requests no route or name claims go here")
                first = False
        lines.append("")
    models = [m for p in presets for m in p.models]
    fast = next((p.fast for p in presets if p.fast), models[-1])
    lines += ["model_aliases:", "  # Claude Code's background requests (titles, summaries) go to a fast, cheap model",
              f"  arch.claude.code.small.fast: {{target: {fast}}}"]  # fmt: skip
    if len(models) > 1:
        main = [p.models[0] for p in presets]
        lines.append(SEED_ROUTES.format(reasoning=main[0], review=main[-1] if len(main) > 1 else models[0],
                                        writing=fast).rstrip("\n"))  # fmt: skip
    lines += ["", "listeners:", "  - {type: model, name: gateway, address: 127.0.0.1, port: 12000}", "",
              "# Gateway keys: with none, the gateway serves whoever reaches the listener (keep it on 127.0.0.1).",
              "# gateway_keys:", "#   - {name: alice, key: $ALICE_GATEWAY_KEY, rpm: 120, budget_usd: 50, budget_window: 30d}",
              ""]  # fmt: skip
    return "\n".join(lines)
